// Mentator web UI, shared helpers. Plain browser JavaScript, no framework, no build step.
// Rule for every page: text that came from the service (log lines, model answers, model names)
// reaches the page ONLY through textContent / value (el() below), never as parsed HTML.
"use strict";

const KEY_STORE = "mentator.apiKey";

// fetch() with the API key (docs/ui.md): the key from localStorage goes out as a Bearer header;
// on a 401 the user is asked for it once, it is stored and the request is sent again.
async function api(path, init = {}) {
  const send = (key) => {
    const headers = new Headers(init.headers || {});
    if (key) headers.set("Authorization", "Bearer " + key);
    return fetch(path, { ...init, headers });
  };
  const used = localStorage.getItem(KEY_STORE);
  let response = await send(used);
  if (response.status === 401) {
    // Requests that failed together ask once: a key stored meanwhile is simply used.
    let key = localStorage.getItem(KEY_STORE);
    if (key === used) {
      key = window.prompt("This service needs an API key (kept in this browser's localStorage):", "");
      key = key ? key.trim() : "";
      if (key) localStorage.setItem(KEY_STORE, key);
    }
    if (key && key !== used) response = await send(key);
  }
  return response;
}

async function apiJson(path, body, method = "POST") {
  return api(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// el("div", {class: "x", onclick: f}, "text", child): children are text (as text nodes) or nodes.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function $(id) { return document.getElementById(id); }

function pad(n, width = 2) { return String(n).padStart(width, "0"); }

// yyyymmddhhmmss of now (file names), local time.
function stamp(date = new Date()) {
  return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}` +
    `${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}`;
}

// YYYY-MM-DDTHH:mm:ss.SSS local time, as the log files print it.
function localTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function duration(msec) {
  const ms = Math.max(0, Math.round(msec || 0));
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(3)}s`;
  return `${Math.floor(ms / 60000)}m ${((ms % 60000) / 1000).toFixed(3)}s`;
}

function uptime(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return (d ? `${d}d ` : "") + `${pad(h)}:${pad(m)}:${pad(s % 60)}`;
}

function download(name, text, type = "text/plain") {
  const url = URL.createObjectURL(new Blob([text], { type: type + ";charset=utf-8" }));
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard permission (plain http on another host): fall back to a selection copy.
    const area = el("textarea", {}, text);
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

// The header every page shares: name, version (from /state/version) and the page links.
const PAGES = [["/", "home"], ["/chat", "chat"], ["/stat", "stat"], ["/log/core", "core log"],
  ["/log/chat", "chat log"], ["/doc", "api doc"]];

function header() {
  const top = $("top");
  if (!top) return;
  const version = el("span", { class: "muted" });
  const nav = el("nav", {}, PAGES.map(([href, name]) =>
    el("a", { href, class: location.pathname === href ? "here" : null }, name)));
  top.replaceChildren(el("span", { class: "brand" }, "MENTATOR-LLM-SERVICE"), version, nav);
  api("/state/version").then((r) => r.ok ? r.json() : null)
    .then((body) => { if (body) version.textContent = "version " + body.version; })
    .catch(() => {});
}

document.addEventListener("DOMContentLoaded", header);

// ---- the two log pages ---------------------------------------------------------------------------
// Follow rule of /log/*/byid (docs/ui.md): the first call has no afterId and gets the newest rows;
// then each call passes the largest id seen, and the service answers the OLDEST rows after it,
// so nothing is skipped even when more than one page of rows arrived between two polls.
const LOG_KEEP = 200;

function logFollower(kind, onRows) {
  let maxId = 0;
  let busy = false;
  async function poll() {
    if (busy) return;
    busy = true;
    try {
      for (let pages = 0; pages < 10; pages++) {
        const query = maxId ? `?afterId=${maxId}&limit=200` : "?limit=200";
        const response = await api(`/log/${kind}/byid${query}`);
        if (!response.ok) {
          $("status").textContent = `reading the log failed: HTTP ${response.status}`;
          break;
        }
        const rows = (await response.json()).logs || [];
        if (!rows.length) break;
        maxId = Math.max(maxId, ...rows.map((r) => r.id));
        onRows(rows);
        $("status").textContent = "updated " + new Date().toLocaleTimeString();
        if (rows.length < 200) break;
      }
    } catch (error) {
      $("status").textContent = "service unreachable: " + error;
    } finally {
      busy = false;
    }
  }
  return poll;
}

// Rows kept newest first, at most LOG_KEEP.
function mergeRows(kept, rows) {
  const byId = new Map(kept.map((r) => [r.id, r]));
  for (const row of rows) byId.set(row.id, row);
  return [...byId.values()].sort((a, b) => b.id - a.id).slice(0, LOG_KEEP);
}

function today() {
  const d = new Date();
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}`;
}

async function downloadByDate(kind, date, hour) {
  const query = `date=${encodeURIComponent(date)}` + (hour !== undefined && hour !== "" ? `&hour=${encodeURIComponent(hour)}` : "");
  const response = await api(`/log/${kind}/bydate?${query}`);
  const body = await response.json();
  if (!response.ok) return window.alert(body.error || `HTTP ${response.status}`);
  if (!body.length) return window.alert("no log rows in that period");
  for (const file of body) download(file.filename, file.content);
}
