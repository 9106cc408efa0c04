// The chat page: one prompt at a time against /prompt (or streamed through /v1/chat/completions).
// All state lives in localStorage under "mentator.chat"; answers are shown with textContent only.
"use strict";

const STORE = "mentator.chat";
const FRESH = {
  messageType: "user", user: "", system: "", model: "", gpulayer: "", contextSize: "",
  format: { schema: "", useGrammar: true }, options: "", ratio: 0.5, stream: false, fileName: "",
};
let state = load();
let last = null; // {ok, body, payload, isError}

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE) || "{}");
    return { ...FRESH, ...saved, format: { ...FRESH.format, ...(saved.format || {}) } };
  } catch {
    return structuredClone(FRESH);
  }
}

function save() { localStorage.setItem(STORE, JSON.stringify(state)); }

// ---- editor, controls --------------------------------------------------------------------------

function showEditor() {
  $("message-type").value = state.messageType;
  $("editor").value = state.messageType === "system" ? state.system : state.user;
  $("editor").placeholder = state.messageType + " message";
}

function showControls() {
  showEditor();
  $("gpulayer").value = state.gpulayer;
  $("context-size").value = state.contextSize;
  $("stream").checked = !!state.stream;
  if (state.model) $("model").value = state.model;
  summary();
  applyRatio();
}

function summary() {
  const parts = [];
  parts.push(state.format.schema.trim() ?
    `format: JSON schema${state.format.useGrammar ? " + grammar" : ", no grammar"}` : "format: text");
  parts.push(state.options.trim() ? "options: set" : "options: service defaults");
  if (state.system.trim()) parts.push("system: set");
  if (state.fileName) parts.push("file: " + state.fileName);
  $("summary").textContent = parts.join(" · ");
}

async function loadModels() {
  const select = $("model");
  try {
    const response = await api("/state/models");
    const models = (await response.json()).models || [];
    // Sorted by size, then name (reference §6).
    models.sort((a, b) => (a.sizeKb - b.sizeKb) || a.name.localeCompare(b.name));
    select.replaceChildren(...models.map((m) =>
      el("option", { value: m.name }, `${m.name} (${Math.ceil(m.sizeKb / 1024)} MB)`)));
    if (!models.length) select.append(el("option", { value: "" }, "no models found"));
  } catch (error) {
    select.replaceChildren(el("option", { value: "" }, "models unavailable"));
  }
  if (state.model && [...select.options].some((o) => o.value === state.model)) select.value = state.model;
  else state.model = select.value;
  save();
}

// ---- modals ------------------------------------------------------------------------------------

function result(node, text, ok) {
  node.textContent = text;
  node.className = "result " + (ok ? "ok" : "bad");
}

function parseJsonText(text, what) {
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { error: `${what} is not valid JSON: ${error.message}` };
  }
}

function setupFormat() {
  const dialog = $("format-dialog");
  $("format-open").onclick = () => {
    $("format-schema").value = state.format.schema;
    $("format-grammar").checked = state.format.useGrammar;
    $("format-result").textContent = "";
    dialog.showModal();
  };
  // FIX of the original (reference §6): the example is the schema itself, not the
  // {"schema": "..."} wrapper the helper route answers with.
  $("format-example").onclick = async () => {
    const body = await (await api("/helper/example/jsonresponse")).json();
    $("format-schema").value = typeof body.schema === "string" ? body.schema : JSON.stringify(body.schema, null, 2);
  };
  $("format-check").onclick = async () => {
    const text = $("format-schema").value.trim();
    if (!text) return result($("format-result"), "empty: the answer will be plain text", true);
    const parsed = parseJsonText(text, "the schema");
    if (parsed.error) return result($("format-result"), parsed.error, false);
    const answer = await (await apiJson("/check/gbnf", { schema: parsed.value })).json();
    if (answer.error) result($("format-result"), answer.error, false);
    else result($("format-result"), "ok: the schema converts to a grammar", true);
  };
  $("format-cancel").onclick = () => dialog.close();
  $("format-ok").onclick = () => {
    state.format = { schema: $("format-schema").value, useGrammar: $("format-grammar").checked };
    save(); summary(); dialog.close();
  };
}

function setupOptions() {
  const dialog = $("options-dialog");
  $("options-open").onclick = () => {
    $("options-text").value = state.options;
    $("options-result").textContent = "";
    dialog.showModal();
  };
  $("options-example").onclick = async () => {
    $("options-text").value = await (await api("/helper/example/options")).text();
  };
  $("options-example-json").onclick = async () => {
    $("options-text").value = await (await api("/helper/example/optionsjson")).text();
  };
  $("options-check").onclick = async () => {
    const parsed = parseJsonText($("options-text").value.trim() || "{}", "the options");
    if (parsed.error) return result($("options-result"), parsed.error, false);
    const answer = await (await apiJson("/check/options", { options: parsed.value })).json();
    if (answer.error) result($("options-result"), answer.error, false);
    else result($("options-result"), "ok, as the service reads them:\n" + JSON.stringify(answer.options, null, 2), true);
  };
  $("options-cancel").onclick = () => dialog.close();
  $("options-ok").onclick = () => { state.options = $("options-text").value; save(); summary(); dialog.close(); };
}

// ---- LOAD / SAVE / CLEAR -----------------------------------------------------------------------

async function loadFile(file) {
  const content = await file.text();
  const response = await apiJson("/helper/prompt/fromstring", { content });
  const prompts = await response.json();
  if (!response.ok || !Array.isArray(prompts) || !prompts.length) {
    return showResponse(false, { error: "no prompt in this file (a block $$begin … $$user … $$end)", answer: prompts });
  }
  const first = prompts[0];
  let useGrammar = true;
  const segment = (first.segment || {})["mentator-llm-service"];
  if (segment) { try { useGrammar = JSON.parse(segment).useGrammar !== false; } catch { /* keep */ } }
  const model = (first.llm && first.llm.model) || (first.segment && first.segment.model) || state.model;
  state = {
    ...state,
    user: first.user || "", system: first.system || "",
    options: first.options && Object.keys(first.options).length ? JSON.stringify(first.options, null, 2) : "",
    format: { schema: first.jsonresponse || "", useGrammar },
    model,
    gpulayer: first.llm && first.llm.gpulayer !== undefined ? String(first.llm.gpulayer) : state.gpulayer,
    fileName: prompts.length === 1 ? file.name : "",
  };
  save(); showControls();
}

async function saveFile() {
  const prompt = { llm: { model: state.model }, user: state.user };
  if (state.system.trim()) prompt.system = state.system;
  const options = parseJsonText(state.options.trim() || "{}", "the options");
  if (options.error) return showResponse(false, { error: options.error });
  if (Object.keys(options.value).length) prompt.options = options.value;
  prompt.segment = { "mentator-llm-service": JSON.stringify({ useGrammar: state.format.useGrammar }) };
  // The original wrote the schema only with "use grammar" on, so a schema used for validation
  // alone was lost on SAVE; here it is always written and the segment says whether to use grammar.
  if (state.format.schema.trim()) prompt.jsonresponse = state.format.schema;
  if (state.gpulayer !== "") prompt.llm.gpulayer = Number(state.gpulayer);
  const response = await apiJson("/helper/prompt/tostring", { prompts: [prompt] });
  const text = await response.text();
  if (!response.ok) return showResponse(false, { error: text });
  download(state.fileName || `prompt-${stamp()}.txt`, text);
}

function clearAll() {
  if (!window.confirm("Clear the message, format, options and the answer?")) return;
  state = { ...structuredClone(FRESH), model: state.model, ratio: state.ratio };
  last = null;
  $("response").textContent = "";
  $("response").className = "response";
  save(); showControls();
}

// ---- SEND --------------------------------------------------------------------------------------

function showResponse(ok, body, payload) {
  const pane = $("response");
  pane.textContent = typeof body === "string" ? body : JSON.stringify(body, null, 2);
  pane.className = "response " + (ok ? "ok" : "bad");
  last = { ok, body, payload: payload !== undefined ? payload : (body && body.error !== undefined ? body.error : body) };
}

function promptBody() {
  const body = { model: state.model, message: { user: state.user }, durationMsec: 3600000 };
  if (state.system.trim()) body.message.system = state.system;
  if (state.gpulayer !== "" && Number(state.gpulayer) >= 0) body.gpulayer = Number(state.gpulayer);
  if (state.contextSize !== "") body.contextSize = Number(state.contextSize);
  if (state.options.trim()) {
    const options = parseJsonText(state.options, "the options");
    if (options.error) throw new Error(options.error);
    body.options = options.value;
  }
  if (state.format.schema.trim()) {
    const schema = parseJsonText(state.format.schema, "the FORMAT schema");
    if (schema.error) throw new Error(schema.error);
    body.format = { useGrammar: state.format.useGrammar, jsonSchema: schema.value };
  }
  return body;
}

async function sendPrompt(body) {
  const response = await api("/prompt", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const text = await response.text();
  let answer;
  try { answer = JSON.parse(text); } catch { answer = text; }
  const ok = response.ok && answer && answer.result && answer.result.data !== undefined;
  showResponse(ok, answer, ok ? answer.result.data : (answer && answer.error !== undefined ? answer.error : answer));
}

// The same prompt through the OpenAI-compatible route, shown token by token.
async function sendStream(body) {
  const messages = [];
  if (body.message.system) messages.push({ role: "system", content: body.message.system });
  messages.push({ role: "user", content: body.message.user });
  const request = { model: body.model, messages, stream: true };
  const o = body.options || {};
  if (o.temperature !== undefined) request.temperature = o.temperature;
  if (o.topP !== undefined) request.top_p = o.topP;
  if (o.maxTokens !== undefined) request.max_tokens = o.maxTokens;
  if (o.seed !== undefined) request.seed = o.seed;
  if (o.presencePenalty !== undefined) request.presence_penalty = o.presencePenalty;
  if (o.frequencyPenalty !== undefined) request.frequency_penalty = o.frequencyPenalty;
  if (Array.isArray(o.stopSequences) && o.stopSequences.length) request.stop = o.stopSequences;
  if (body.format) {
    request.response_format = { type: "json_schema", json_schema: { name: "answer", schema: body.format.jsonSchema } };
  }
  const response = await api("/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
  });
  if (!response.ok || !response.body) {
    const text = await response.text();
    let answer; try { answer = JSON.parse(text); } catch { answer = text; }
    return showResponse(false, answer, answer && answer.error ? answer.error.message : answer);
  }
  const pane = $("response");
  pane.className = "response";
  pane.textContent = "";
  let content = "", buffer = "", error = null;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        let chunk; try { chunk = JSON.parse(data); } catch { continue; }
        if (chunk.error) { error = chunk.error; continue; }
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) { content += delta.content; pane.textContent = content; }
      }
    }
  }
  let data = content;
  if (body.format && !error) {
    try { data = JSON.parse(content); } catch (e) { error = { message: "the answer is not JSON: " + e.message }; }
  }
  if (error) showResponse(false, { error: error.message || error, answerRaw: content }, error.message || String(error));
  else showResponse(true, { result: { data } }, data);
}

async function send() {
  const button = $("send");
  if (button.disabled) return;
  let body;
  try { body = promptBody(); } catch (error) { return showResponse(false, { error: error.message }); }
  button.disabled = true;
  const started = performance.now();
  const tick = () => { $("elapsed").textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`; };
  tick();
  const timer = setInterval(tick, 100);
  $("response").className = "response";
  $("response").textContent = "…";
  try {
    if (state.stream) await sendStream(body); else await sendPrompt(body);
  } catch (error) {
    showResponse(false, { error: String(error && error.message || error) });
  } finally {
    clearInterval(timer);
    tick();
    button.disabled = false;
  }
}

// ---- exports -----------------------------------------------------------------------------------

function asText(value) { return typeof value === "string" ? value : JSON.stringify(value, null, 2); }

function setupExports() {
  $("copy-all").onclick = () => last && copyText(asText(last.body));
  $("copy-data").onclick = () => last && copyText(asText(last.payload));
  $("file-all").onclick = () => last && download(`response-all-${stamp()}.json`, asText(last.body), "application/json");
  $("file-data").onclick = () => {
    if (!last) return;
    if (last.ok) download(`response-data-${stamp()}.json`, asText(last.payload), "application/json");
    else download(`response-error-${stamp()}.txt`, asText(last.payload));
  };
}

// ---- splitter ----------------------------------------------------------------------------------

function applyRatio() {
  const ratio = Math.min(0.8, Math.max(0.2, Number(state.ratio) || 0.5));
  $("left").style.flex = `${ratio} 1 0`;
  $("right").style.flex = `${1 - ratio} 1 0`;
}

function setupSplitter() {
  const splitter = $("splitter");
  splitter.addEventListener("pointerdown", (down) => {
    down.preventDefault();
    splitter.setPointerCapture(down.pointerId);
    splitter.classList.add("dragging");
    const box = $("split").getBoundingClientRect();
    const move = (event) => {
      state.ratio = Math.min(0.8, Math.max(0.2, (event.clientX - box.left) / box.width));
      applyRatio();
    };
    const up = () => {
      splitter.classList.remove("dragging");
      splitter.removeEventListener("pointermove", move);
      save();
    };
    splitter.addEventListener("pointermove", move);
    splitter.addEventListener("pointerup", up, { once: true });
  });
}

// ---- start -------------------------------------------------------------------------------------

function takeExample() {
  // /chat?example=<JSON> from the index page: messageType, messageUser, format, options.
  const raw = new URLSearchParams(location.search).get("example");
  if (!raw) return;
  try {
    const example = JSON.parse(raw);
    state.messageType = example.messageType === "system" ? "system" : "user";
    state.user = String(example.messageUser || "");
    if (example.format) {
      const schema = example.format.jsonSchema;
      state.format = { schema: typeof schema === "string" ? schema : JSON.stringify(schema, null, 2),
        useGrammar: example.format.useGrammar !== false };
    }
    if (example.options !== undefined) {
      state.options = typeof example.options === "string" ? example.options : JSON.stringify(example.options, null, 2);
    }
    save();
    history.replaceState(null, "", "/chat");
  } catch { /* a broken link: keep the saved state */ }
}

document.addEventListener("DOMContentLoaded", async () => {
  takeExample();
  showControls();
  $("message-type").onchange = () => { state.messageType = $("message-type").value; save(); showEditor(); };
  $("editor").oninput = () => {
    if (state.messageType === "system") state.system = $("editor").value; else state.user = $("editor").value;
    save(); summary();
  };
  $("model").onchange = () => { state.model = $("model").value; save(); };
  $("gpulayer").oninput = () => { state.gpulayer = $("gpulayer").value; save(); };
  $("context-size").oninput = () => { state.contextSize = $("context-size").value; save(); };
  $("stream").onchange = () => { state.stream = $("stream").checked; save(); };
  $("load").onclick = () => $("load-file").click();
  $("load-file").onchange = async () => {
    const file = $("load-file").files[0];
    $("load-file").value = "";
    if (file) await loadFile(file);
  };
  $("save").onclick = saveFile;
  $("clear").onclick = clearAll;
  $("send").onclick = send;
  $("editor").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) send();
  });
  setupFormat(); setupOptions(); setupExports(); setupSplitter();
  await loadModels();
});
