// The stat page's charts (the "Activity" section): GET /state/activity every 10 s, drawn with
// charts.js. The last hour by minute comes from the service's own reports (the same ones
// /metrics counts); the last 24 h by hour from the chat log. Its own section and its own file,
// so the page's cards (stat.js) and this part change independently.
"use strict";

const ACTIVITY_EVERY_MS = 10000;

function clock(ms, withMinutes = true) {
  const date = new Date(ms);
  return withMinutes ? `${pad(date.getHours())}:${pad(date.getMinutes())}` : `${pad(date.getHours())}:00`;
}

// Labels under the x axis: every `step`-th slot and the last one.
function everyNth(starts, step, format) {
  const labels = [];
  starts.forEach((start, i) => { if (i % step === 0 || i === starts.length - 1) labels.push([i, format(start)]); });
  if (labels.length > 1 && labels[labels.length - 1][0] - labels[labels.length - 2][0] < step / 2) labels.splice(-2, 1);
  return labels;
}

function outcomeSeries(rows, totals) {
  // ok first, then the failures in name order: the stacking is the same at every refresh.
  const names = Object.keys(totals).sort((a, b) => (a === "ok" ? -1 : b === "ok" ? 1 : a.localeCompare(b)));
  return names.map((name) => ({ name, values: rows.map((m) => m.requests[name] || 0) }));
}

function hourCharts(hour) {
  const minutes = hour.minutes;
  const xs = minutes.map((m) => clock(m.start));
  const xLabels = everyNth(minutes.map((m) => m.start), 15, (ms) => clock(ms));
  const totals = hour.totals;
  const tokens = [{ name: "tokens/s", values: minutes.map((m) => m.tokensPerSecond) }];
  const latency = [
    { name: "p50 latency", values: minutes.map((m) => m.latencyP50) },
    { name: "p95 latency", values: minutes.map((m) => m.latencyP95) },
    { name: "p50 first token", values: minutes.map((m) => m.firstTokenP50) },
    { name: "p95 first token", values: minutes.map((m) => m.firstTokenP95) },
  ];
  const queue = [
    { name: "waiting", values: minutes.map((m) => m.queueWaiting) },
    { name: "running", values: minutes.map((m) => m.queueRunning) },
  ];
  const outcomes = outcomeSeries(minutes, totals.requests);
  const byOutcome = Object.entries(totals.requests).map(([name, count]) => `${name} ${count}`).join(", ");
  const latest = minutes[minutes.length - 1];
  return [
    chartFigure("chart-tokens", "Tokens per second (last hour)", lineChart(xs, tokens, { xLabels }), tokens,
      ["generated in the last hour: ", el("b", { id: "total-tokens" }, String(totals.tokens)),
        " tokens; this minute ", formatNumber(latest.tokensPerSecond), " tokens/s"]),
    chartFigure("chart-latency", "Latency and time to first token (last hour)",
      lineChart(xs, latency, { unit: "s", xLabels }), latency,
      "per minute, answered requests, nearest-rank percentiles, seconds (queue included)"),
    chartFigure("chart-queue", "Queue depth (last hour)", lineChart(xs, queue, { xLabels }), queue,
      "the most requests seen waiting for and holding an engine slot in each minute"),
    chartFigure("chart-outcomes", "Requests by outcome (last hour)", barChart(xs, outcomes, { xLabels }), outcomes,
      ["requests in the last hour: ", el("b", { id: "total-requests" }, String(totals.requestCount)),
        byOutcome ? ` (${byOutcome})` : ""]),
  ];
}

function dayCharts(day) {
  if (!day) {
    return [el("div", { class: "notice", id: "day-unavailable" },
      "The last 24 hours come from the chat log, which is not available now (see /health).")];
  }
  const hours = day.hours;
  const xs = hours.map((h) => clock(h.start, false));
  const xLabels = everyNth(hours.map((h) => h.start), 6, (ms) => clock(ms, false));
  const requests = [
    { name: "success", values: hours.map((h) => h.success) },
    { name: "failed", values: hours.map((h) => h.failed) },
  ];
  const latency = [
    { name: "p50 latency", values: hours.map((h) => (h.latencyP50Ms === null ? null : h.latencyP50Ms / 1000)) },
    { name: "p95 latency", values: hours.map((h) => (h.latencyP95Ms === null ? null : h.latencyP95Ms / 1000)) },
  ];
  const success = hours.reduce((sum, h) => sum + h.success, 0);
  const failed = hours.reduce((sum, h) => sum + h.failed, 0);
  const note = day.savePrompt ? "" : " — savePrompt is off: only failures are stored, so successes are missing";
  return [
    chartFigure("chart-day-requests", "Requests by outcome (last 24 h, chat log)", barChart(xs, requests, { xLabels }),
      requests, [`${success} successful, ${failed} failed`, note]),
    chartFigure("chart-day-latency", "Latency (last 24 h, chat log)", lineChart(xs, latency, { unit: "s", xLabels }),
      latency, "per hour, successful requests, seconds (queue included)"),
  ];
}

function shadowCard(shadow) {
  if (!shadow) return null;
  return el("figure", { class: "chart-card", id: "card-shadow" },
    el("h3", {}, "Shadow comparison"),
    el("dl", {}, [
      ["copies to", shadow.target], ["sampled", `${Math.round(shadow.share * 1000) / 10} %`],
      ["identical", String(shadow.identical)], ["different", String(shadow.different)],
      ["error", String(shadow.error)], ["dropped (queue full)", String(shadow.dropped)],
      ["waiting", String(shadow.queued)],
    ].map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
}

async function pollActivity() {
  try {
    const response = await api("/state/activity");
    if (!response.ok) return;
    const activity = await response.json();
    $("charts").replaceChildren(...hourCharts(activity.lastHour), ...dayCharts(activity.lastDay));
    $("charts-shadow").replaceChildren(...[shadowCard(activity.shadow)].filter(Boolean));
    $("charts").dataset.updated = String(activity.lastHour.now);
  } catch { /* the next poll tries again; the cards above say when the service is unreachable */ }
}

document.addEventListener("DOMContentLoaded", () => {
  pollActivity();
  setInterval(pollActivity, ACTIVITY_EVERY_MS);
});
