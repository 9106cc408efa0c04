// The chat log page: follows /log/chat/byid (see logFollower in common.js), newest first; each
// record shows its header and collapsible request / response / answer blocks.
"use strict";

let rows = [];
const expanded = new Set(); // "<id>:<block>" opened by a click
const SHORT_CHARS = 500;
const SHORT_LINES = 3;

function isError(row) { return row.code !== 200; }

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}

function shorten(text) {
  const lines = text.split("\n");
  let short = lines.slice(0, SHORT_LINES).join("\n");
  if (short.length > SHORT_CHARS) short = short.slice(0, SHORT_CHARS);
  return short.length < text.length ? short + " …" : text;
}

function recordHeader(row) {
  return `[${localTime(row.ts)}] [${row.code}] duration prompt ${duration(row.durationPromptMsec)}; ` +
    `duration queue ${duration(row.durationQueueMsec)}`;
}

function block(row, name, text) {
  if (!text) return null;
  const full = pretty(text);
  const key = `${row.id}:${name}`;
  // Collapsed: the stored text as it is (compact JSON), cut; expanded: pretty-printed in full.
  const pre = el("pre", { title: "click to expand / collapse" }, expanded.has(key) ? full : shorten(text));
  pre.onclick = () => {
    if (expanded.has(key)) expanded.delete(key); else expanded.add(key);
    pre.textContent = expanded.has(key) ? full : shorten(text);
  };
  return el("div", { class: "block" }, el("span", { class: "label" }, name),
    el("button", { onclick: () => copyText(full) }, "copy"), pre);
}

function visible() { return $("errors-only").checked ? rows.filter(isError) : rows; }

function render() {
  if (!visible().length) {
    $("rows").replaceChildren(el("div", { class: "empty" }, "no chat log records (yet)"));
    return;
  }
  $("rows").replaceChildren(...visible().map((row) => el("div",
    { class: "chatrec" + (isError(row) ? " error" : ""), "data-id": row.id },
    el("div", { class: "head" }, recordHeader(row)),
    block(row, "request", row.request), block(row, "response", row.response),
    block(row, "answer", row.answerRaw))));
}

function recordText(row) {
  const parts = [recordHeader(row)];
  for (const text of [row.request, row.response, row.answerRaw]) {
    if (text) parts.push(text.split("\n").map((l) => "        " + l).join("\n"));
  }
  return parts.join("\n") + "\n";
}

async function readSavePrompt() {
  try {
    const state = await (await api("/state")).json();
    if (state.savePromptEnabled === false) {
      $("errors-only").checked = true;
      $("warning").replaceChildren(el("div", { class: "notice", id: "saveprompt-off" },
        "log.savePrompt is off: only failed requests are stored, so this page shows errors only."));
    }
  } catch { /* the log still works */ }
}

document.addEventListener("DOMContentLoaded", async () => {
  await readSavePrompt();
  const poll = logFollower("chat", (fresh) => { rows = mergeRows(rows, fresh); render(); });
  $("errors-only").onchange = render;
  $("clear").onclick = async () => {
    if (!window.confirm("Delete the whole chat log on the service?")) return;
    const response = await api("/log/chat", { method: "DELETE" });
    const body = await response.json();
    $("status").textContent = response.ok ? `deleted ${body.deleted} records` : (body.error || "failed");
    if (response.ok) { rows = []; render(); }
  };
  $("download").onclick = () => {
    const previous = new Date(Date.now() - 3600 * 1000);
    const suggestion = `${previous.getFullYear()}${pad(previous.getMonth() + 1)}${pad(previous.getDate())} ${pad(previous.getHours())}`;
    const answer = window.prompt("Day and hour to download (yyyymmdd hh; leave out hh for the whole day):", suggestion);
    if (!answer) return;
    const [date, hour] = answer.trim().split(/\s+/);
    downloadByDate("chat", date, hour);
  };
  $("copy-current").onclick = () => copyText(visible().map(recordText).join(""));
  $("file-current").onclick = () => download(`mentator-llm-service-chatlogs-current-${stamp()}.txt`, visible().map(recordText).join(""));
  render();
  poll();
  setInterval(() => { if ($("follow").checked) poll(); }, 5000);
});
