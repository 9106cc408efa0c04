// The stat page's "Resident models" block (issue 21): the models held in memory now, with their
// expiry. It reads the /state that stat.js polls (its global `state`) and sends no request of
// its own; it is kept apart from stat.js so the two can change independently.
"use strict";

function residentExpiry(m) {
  if (m.pinned) return "never (pinned)";
  if (m.inFlight) return "not while in use";
  if (m.expiresAt === null || m.expiresAt === undefined) return "when evicted";
  const left = Math.max(0, Math.round((m.expiresAt - Date.now()) / 1000));
  return `in ${left} s (${new Date(m.expiresAt).toLocaleTimeString()})`;
}

function renderResident() {
  const s = typeof state === "undefined" ? null : state;
  const box = $("resident");
  if (!box || !s || !Array.isArray(s.loadedModels)) return;
  $("resident-count").textContent = `${s.loadedModels.length} of ${s.maxLoadedModels ?? "?"}`;
  if (!s.loadedModels.length) {
    box.replaceChildren(el("p", { class: "muted" }, "no model in memory"));
    return;
  }
  const head = ["name", "backend", "context", "estimated memory", "in flight", "last used", "unloads"];
  box.replaceChildren(el("table", { class: "log", id: "resident-table" },
    el("tr", {}, ...head.map((title) => el("td", {}, title))),
    ...s.loadedModels.map((m) => el("tr", {},
      el("td", {}, m.name), el("td", {}, m.backend),
      el("td", {}, m.contextSize ? `${m.contextSize} tokens` : "default"),
      el("td", {}, `${m.estimatedMemoryMb} MB`), el("td", {}, String(m.inFlight)),
      el("td", {}, new Date(m.lastUsedAt).toLocaleTimeString()),
      el("td", { class: "resident-expiry" }, residentExpiry(m))))));
}

document.addEventListener("DOMContentLoaded", () => {
  renderResident();
  setInterval(renderResident, 1000);
});
