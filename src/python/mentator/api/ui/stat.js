// The stat page: /state every 10 s (uptime ticks every second), /state/models, and the live
// tokens/s from the counter mentator_tokens_generated_total of /metrics (every 3 s).
"use strict";

let state = null;
let stateAt = 0;
let models = [];
let tokens = null; // {total, at}
let tokensPerSecond = null;

function card(title, rows, extra = {}) {
  return el("div", { class: "card" + (extra.alert ? " alert" : ""), id: extra.id },
    el("h3", {}, title),
    rows.length ? el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])) : null,
    extra.children || null);
}

function mb(value) { return value === null || value === undefined ? "—" : `${value} MB`; }

function backendCard(s) {
  const backend = s.backend;
  const gpu = s.gpuInfo;
  const rows = [];
  if (backend) {
    rows.push(["backend", backend.name + (backend.cpuVariant ? ` (${backend.cpuVariant})` : "")]);
    rows.push(["why", backend.reason || "—"]);
    for (const [tier, why] of Object.entries(backend.skipped || {})) rows.push([`skipped ${tier}`, why]);
    for (const device of backend.devices || []) {
      rows.push(["device", `${device.name}` + (device.totalMb ? `, ${device.usedMb ?? "?"} / ${device.totalMb} MB` : "")]);
    }
  }
  if (gpu) {
    rows.push(["gpu type", gpu.type]);
    if (gpu.device) rows.push(["gpu device", gpu.device]);
    if (gpu.totalVramMb !== null && gpu.totalVramMb !== undefined) {
      rows.push(["VRAM", `${gpu.usedVramMb ?? "?"} / ${gpu.totalVramMb} MB used`]);
    }
  }
  if (!rows.length) rows.push(["gpu", "gpu info unavailable (the backend is not decided yet)"]);
  return card("Backend and GPU", rows, { id: "card-backend" });
}

// The start-up canary (backend.canary of /state): every tier's correctness and speed, the choice,
// and the run-time tripwire (state.backendSpeed). Its own small card, apart from the others.
function canaryCard(s) {
  const canary = s.backend && s.backend.canary;
  if (!canary) return null;
  const rows = [];
  if (canary.skipped) rows.push(["canary", `skipped: ${canary.skipped}`]);
  for (const tier of canary.tiers || []) rows.push([tier.name, tier.summary]);
  if (!canary.skipped) {
    rows.push(["chosen", `${canary.chosen}` + (canary.cached ? " (cached)" : ` (${canary.seconds} s)`)]);
  }
  if (canary.warning) rows.push(["warning", canary.warning]);
  const speed = s.backendSpeed;
  if (speed && speed.degraded) rows.push(["slowdown", speed.reason]);
  return card("Backend canary", rows, { id: "card-canary", alert: Boolean(canary.warning || (speed && speed.degraded)) });
}

function render() {
  if (!state) return;
  const s = state;
  const up = s.serverUptimeSeconds + (Date.now() - stateAt) / 1000;
  const model = s.currentModel;
  const totalMb = Math.ceil(models.reduce((sum, m) => sum + (m.sizeKb || 0), 0) / 1024);
  const modelsCard = card("Available models", [
    ["count", el("a", { href: "#", id: "models-count", onclick: (e) => { e.preventDefault(); showModels(); } },
      String(models.length))],
    ["total size", `${totalMb} MB`],
  ], { id: "card-models" });
  const loaded = model ? card("Loaded model", [
    ["name", model.name], ["size", mb(model.sizeMb)],
    ["context", model.contextSize ? `${model.contextSize} tokens` : "default"],
    ["gpu layers", model.gpulayer !== undefined && model.gpulayer !== null ? String(model.gpulayer) : "auto"],
    ["loaded at", new Date(model.loadTimestamp).toLocaleString()],
  ], { id: "card-loaded" }) : card("Loaded model", [["", "no model in memory"]], { id: "card-loaded" });
  $("cards").replaceChildren(
    card("Server", [
      ["started", new Date(s.serverStartTimestamp).toLocaleString()],
      ["uptime", uptime(up)],
      ["queue", `${s.queueSize} waiting` + (s.queueRunning !== undefined ? `, ${s.queueRunning} running` : "")],
      ["tokens/s", tokensPerSecond === null ? "measuring…" : tokensPerSecond.toFixed(1)],
    ], { id: "card-server" }),
    backendCard(s), ...[canaryCard(s)].filter(Boolean), modelsCard, loaded,
    card("System resources", [
      ["service RSS", mb(s.memoryUsageMb)], ["service heap", mb(s.memoryHeapMb)],
      ["engine RSS", mb(s.memoryExternalMb)],
    ], { id: "card-resources" }),
  );
  if (!s.savePromptEnabled) {
    $("stats").replaceChildren(el("div", { class: "notice", id: "stats-disabled" },
      "Request statistics are disabled: log.savePrompt is off, so successful requests are not " +
      "stored (errors still are, in the chat log). Turn savePrompt on in the config to see them."));
    return;
  }
  $("stats").replaceChildren(...[["last hour", s.stats1h], ["last 3 hours", s.stats3h], ["last 24 hours", s.stats24h]]
    .map(([title, w]) => card(title, [
      ["successful", String(w.success)], ["failed", String(w.failed)],
      ["p95 execution", duration(w.p95PromptDuration)], ["p95 queue wait", duration(w.p95QueueDuration)],
      ["avg execution", duration(w.avgPromptDuration)],
    ], { alert: w.failed > 0 })));
}

function showModels() {
  const rows = [...models].sort((a, b) => (a.sizeKb - b.sizeKb) || a.name.localeCompare(b.name));
  $("models-table").replaceChildren(
    el("tr", {}, el("td", {}, "name"), el("td", {}, "file"), el("td", {}, "size"), el("td", {}, "layers")),
    ...rows.map((m) => el("tr", {}, el("td", {}, m.name), el("td", {}, m.relativeFileName || ""),
      el("td", {}, `${Math.ceil(m.sizeKb / 1024)} MB`), el("td", {}, m.layerCount ?? ""))));
  $("models-dialog").showModal();
}

async function poll() {
  try {
    const [stateResponse, modelsResponse] = await Promise.all([api("/state"), api("/state/models")]);
    if (stateResponse.ok) { state = await stateResponse.json(); stateAt = Date.now(); }
    if (modelsResponse.ok) models = (await modelsResponse.json()).models || [];
    $("updated").textContent = "updated " + new Date().toLocaleTimeString() + " (every 10 s)";
  } catch (error) {
    $("updated").textContent = "service unreachable: " + error;
  }
  render();
}

// Sum of mentator_tokens_generated_total over its labels; the rate is the difference per second.
async function pollTokens() {
  try {
    const response = await api("/metrics");
    if (!response.ok) return;
    let total = 0;
    for (const line of (await response.text()).split("\n")) {
      if (line.startsWith("mentator_tokens_generated_total")) total += Number(line.split(" ").pop()) || 0;
    }
    const now = performance.now();
    if (tokens) tokensPerSecond = Math.max(0, (total - tokens.total) / ((now - tokens.at) / 1000));
    tokens = { total, at: now };
  } catch { /* keep the last value */ }
}

document.addEventListener("DOMContentLoaded", () => {
  $("models-close").onclick = () => $("models-dialog").close();
  poll();
  pollTokens();
  setInterval(poll, 10000);
  setInterval(pollTokens, 3000);
  setInterval(render, 1000);
});
