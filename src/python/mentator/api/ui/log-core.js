// The core log page: follows /log/core/byid (see logFollower in common.js), newest first.
"use strict";

let rows = [];

function isError(row) { return row.kind === "error"; }

function lineText(row, withExtra) {
  let text = `[${localTime(row.ts)}] [${row.kind}] [${row.pipe}] ${row.message}`;
  if (withExtra && row.extra) text += "\n" + row.extra.split("\n").map((l) => "        " + l).join("\n");
  return text;
}

function visible() { return $("errors-only").checked ? rows.filter(isError) : rows; }

function render() {
  const withExtra = $("extra").checked;
  const table = el("table", { class: "log", id: "log-table" }, visible().map((row) => el("tr",
    { class: isError(row) ? "error" : null, "data-id": row.id },
    el("td", {}, localTime(row.ts)), el("td", {}, row.kind), el("td", {}, row.pipe),
    el("td", {}, row.message, withExtra && row.extra ? el("div", { class: "extra" }, row.extra) : null))));
  $("rows").replaceChildren(table);
}

function currentText() { return visible().map((r) => lineText(r, $("extra").checked) + "\n").join(""); }

document.addEventListener("DOMContentLoaded", () => {
  const poll = logFollower("core", (fresh) => { rows = mergeRows(rows, fresh); render(); });
  for (const id of ["errors-only", "extra"]) $(id).onchange = render;
  $("download").onclick = () => {
    const date = window.prompt("Day to download (yyyymmdd):", today());
    if (date) downloadByDate("core", date.trim());
  };
  $("copy-current").onclick = () => copyText(currentText());
  $("file-current").onclick = () => download(`mentator-llm-service-corelogs-current-${stamp()}.txt`, currentText());
  poll();
  setInterval(() => { if ($("follow").checked) poll(); }, 5000);
});
