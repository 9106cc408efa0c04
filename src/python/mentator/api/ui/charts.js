// Small SVG charts for the stat page, our own code (no library: a time axis, lines and stacked
// bars are all these charts need; docs/ui.md says why). Everything is built with
// createElementNS and text nodes; colours are presentation attributes and CSS classes, which the
// pages' Content-Security-Policy allows (inline style attributes it does not).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { width: 560, height: 170, left: 46, right: 10, top: 10, bottom: 22 };
const PALETTE = ["#2f6fb3", "#e08a1e", "#2e8b47", "#c0392b", "#7b4fb3", "#5c6773", "#1b9aaa", "#b3a12f"];

function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A "nice" upper bound for the y axis: 1, 2 or 5 times a power of ten, at least the largest value.
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function formatNumber(value) {
  if (value === null || value === undefined) return "—";
  if (Math.abs(value) >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return value.toFixed(Math.abs(value) >= 10 ? 1 : 2);
}

// The frame of one chart: grid lines with their values, the time labels under the x axis.
// `xs` are the slots' labels (oldest first); returns {svg, x(i), y(v), band}.
function frame(xs, yMax, unit, xLabels) {
  const { width, height, left, right, top, bottom } = CHART;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const band = plotW / Math.max(1, xs.length);
  const x = (i) => left + band * (i + 0.5);
  const y = (v) => top + plotH - (Math.min(v, yMax) / yMax) * plotH;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  for (const share of [0, 0.5, 1]) {
    const value = yMax * share;
    svg.append(
      svgEl("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid" }),
      svgEl("text", { x: left - 4, y: y(value) + 4, "text-anchor": "end", class: "tick" },
        formatNumber(value) + (share === 1 && unit ? ` ${unit}` : "")),
    );
  }
  for (const [index, label] of xLabels) {
    svg.append(svgEl("text", { x: x(index), y: height - 6, "text-anchor": "middle", class: "tick" }, label));
  }
  return { svg, x, y, band };
}

// Lines: `series` = [{name, values: [number|null]}]; a null leaves a gap.
function lineChart(xs, series, { unit = "", xLabels = [] } = {}) {
  const all = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const yMax = niceMax(Math.max(0, ...all));
  const { svg, x, y } = frame(xs, yMax, unit, xLabels);
  series.forEach((s, n) => {
    const colour = PALETTE[n % PALETTE.length];
    let run = [];
    const flush = () => {
      if (run.length > 1) svg.append(svgEl("polyline", { points: run.join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
      run = [];
    };
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { flush(); return; }
      run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      svg.append(svgEl("circle", { cx: x(i), cy: y(v), r: 2.2, fill: colour, class: "point", "data-series": s.name },
        svgEl("title", {}, `${xs[i]}: ${s.name} ${formatNumber(v)}${unit ? " " + unit : ""}`)));
    });
    flush();
  });
  return svg;
}

// Stacked bars: `series` = [{name, values: [number]}], stacked in that order.
function barChart(xs, series, { unit = "", xLabels = [] } = {}) {
  const sums = xs.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const yMax = niceMax(Math.max(0, ...sums));
  const { svg, x, y, band } = frame(xs, yMax, unit, xLabels);
  const width = Math.max(1, band * 0.8);
  xs.forEach((label, i) => {
    let base = 0;
    series.forEach((s, n) => {
      const value = s.values[i] || 0;
      if (!value) return;
      svg.append(svgEl("rect", {
        x: x(i) - width / 2, y: y(base + value), width, height: y(base) - y(base + value),
        fill: PALETTE[n % PALETTE.length], class: "bar", "data-series": s.name, "data-value": value,
      }, svgEl("title", {}, `${label}: ${s.name} ${value}`)));
      base += value;
    });
  });
  return svg;
}

// A chart in its figure: title, the chart, a legend (a swatch per series) and a caption line.
function chartFigure(id, title, chart, series, caption) {
  return el("figure", { class: "chart-card", id },
    el("h3", {}, title),
    chart,
    el("div", { class: "legend" }, series.map((s, n) =>
      el("span", { class: `swatch s${n % PALETTE.length}` }, s.name))),
    el("figcaption", { class: "muted" }, caption));
}
