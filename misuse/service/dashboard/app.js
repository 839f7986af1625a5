// misuse dashboard: a token login, the live alert feed (SSE read through fetch so the token travels
// in a header), alert detail with typical-vs-actual charts, entity profiles, model status.
// All data is inserted with textContent / DOM nodes, never as HTML.
"use strict";

const state = { token: sessionStorage.getItem("misuse-token") || "", feed: null, alerts: new Map() };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.token}` }, options.headers || {});
  const resp = await fetch(path, Object.assign({}, options, { headers }));
  if (resp.status === 401) { logout("Your token was refused; log in again."); throw new Error("unauthorized"); }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error ? body.error.message : resp.statusText);
  return body;
}

function show(view) {
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
  $("nav").hidden = view === "login";
}

function logout(message) {
  state.token = "";
  sessionStorage.removeItem("misuse-token");
  if (state.feed) { state.feed.abort(); state.feed = null; }
  $("login-error").textContent = message || "";
  location.hash = "#/login";
  show("login");
}

async function login(token) {
  state.token = token;
  try {
    const who = await api("/api/whoami");
    sessionStorage.setItem("misuse-token", token);
    $("who").textContent = `${who.name} (${who.role})`;
    location.hash = "#/alerts";
    route();
  } catch (e) {
    if (state.token) logout(`Login failed: ${e.message}`);
  }
}

const fmt = (v) => (v === null || v === undefined ? "–" : Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
const time = (iso) => new Date(iso).toISOString().replace("T", " ").slice(0, 19);

function alertRow(a, fresh) {
  const tr = el("tr", { class: fresh ? "new" : "", "data-alert": a.alert_id },
    el("td", {}, time(a.window_end)),
    el("td", {}, el("a", { href: `#/entity/${encodeURIComponent(a.entity)}` }, a.entity)),
    el("td", {}, a.misuse_type),
    el("td", { class: `sev-${a.severity}` }, a.severity),
    el("td", {}, a.score.toFixed(3)),
    el("td", {}, a.status),
    el("td", {}, el("a", { href: `#/alert/${a.alert_id}` }, a.summary)));
  return tr;
}

function addAlert(a, fresh) {
  if (state.alerts.has(a.alert_id)) return;
  state.alerts.set(a.alert_id, a);
  const rows = $("alert-rows");
  rows.insertBefore(alertRow(a, fresh), rows.firstChild);
  while (rows.children.length > 500) rows.lastChild.remove();
}

async function startFeed() {
  if (state.feed) return;
  const ctrl = new AbortController();
  state.feed = ctrl;
  const badge = $("live-state");
  try {
    const resp = await fetch("/api/alerts/stream", { headers: { Authorization: `Bearer ${state.token}` }, signal: ctrl.signal });
    if (!resp.ok) throw new Error(`feed refused: ${resp.status}`);
    badge.textContent = "live"; badge.className = "badge live";
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
        const ev = /^event: (.*)$/m.exec(block); const data = /^data: (.*)$/m.exec(block);
        if (ev && ev[1] === "alert" && data) addAlert(JSON.parse(data[1]), true);
      }
    }
  } catch (e) {
    if (ctrl.signal.aborted) return;
  }
  badge.textContent = "reconnecting"; badge.className = "badge";
  state.feed = null;
  if (state.token) setTimeout(startFeed, 2000);
}

async function showAlerts() {
  show("alerts");
  const page = await api("/api/alerts?limit=200");
  for (const a of page.alerts.slice().reverse()) addAlert(a, false);
  startFeed();
}

function contributionChart(contribs) {
  const NS = "http://www.w3.org/2000/svg";
  const rowH = 38, w = 640, left = 170, barW = w - left - 90;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", rowH * contribs.length + 30);
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", "typical vs actual values");
  const text = (x, y, s, anchor) => { const t = document.createElementNS(NS, "text"); t.setAttribute("x", x); t.setAttribute("y", y);
    t.setAttribute("font-size", "12"); if (anchor) t.setAttribute("text-anchor", anchor); t.textContent = s; svg.append(t); };
  const rect = (x, y, width, fill, cls) => { const r = document.createElementNS(NS, "rect"); r.setAttribute("x", x); r.setAttribute("y", y);
    r.setAttribute("width", Math.max(1, width)); r.setAttribute("height", 12); r.setAttribute("fill", fill); r.setAttribute("class", cls); svg.append(r); };
  contribs.forEach((c, i) => {
    const y = 10 + i * rowH;
    const vals = [c.typical, c.actual].filter((v) => v !== null && Number.isFinite(v)).map(Math.abs);
    const scale = vals.length ? Math.max(...vals) || 1 : 1;
    text(left - 8, y + 16, c.feature, "end");
    rect(left, y, c.typical === null ? 0 : (Math.abs(c.typical) / scale) * barW, "#9aa5b8", "typical");
    rect(left, y + 14, c.actual === null ? 0 : (Math.abs(c.actual) / scale) * barW, "#c0392b", "actual");
    text(w - 85, y + 10, `typ ${fmt(c.typical)}`); text(w - 85, y + 24, `act ${fmt(c.actual)}`);
  });
  text(left, rowH * contribs.length + 24, "grey: typical for this entity / population · red: this window");
  return svg;
}

async function showAlert(id) {
  show("alert");
  const a = await api(`/api/alerts/${encodeURIComponent(id)}`);
  $("alert-id").textContent = a.alert_id;
  $("alert-summary").textContent = a.summary;
  const meta = $("alert-meta"); meta.replaceChildren();
  for (const [k, v] of [["entity", a.entity], ["type", a.misuse_type], ["severity", a.severity], ["score", `${a.score.toFixed(3)} (threshold ${a.threshold.toFixed(3)})`],
    ["window", `${time(a.window_start)} – ${time(a.window_end)}`], ["status", a.status], ["feedback", a.feedback.map((f) => f.verdict).join(", ") || "none"]]) {
    meta.append(el("dt", {}, k), el("dd", {}, v));
  }
  $("alert-chart").replaceChildren(contributionChart(a.contributions));
  const ev = $("alert-evidence"); ev.replaceChildren();
  for (const e of a.evidence_events.slice(0, 20)) ev.append(el("li", {}, `${time(new Date(e.ts * 1000).toISOString())} ${e.action} → ${e.peer || "–"} (${e.event_id})`));
  if (!a.evidence_events.length) ev.append(el("li", {}, `${a.evidence.length} event ids: ${a.evidence.slice(0, 10).join(", ")}`));
  const msg = $("alert-msg"); msg.textContent = "";
  const act = (path, body) => async () => {
    try { await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: body ? JSON.stringify(body) : undefined });
      msg.textContent = "saved"; } catch (e) { msg.textContent = e.message; }
  };
  $("ack").onclick = act(`/api/alerts/${a.alert_id}/ack`);
  $("fb-tp").onclick = act(`/api/alerts/${a.alert_id}/feedback`, { verdict: "true_positive" });
  $("fb-fp").onclick = act(`/api/alerts/${a.alert_id}/feedback`, { verdict: "false_positive" });
}

async function showEntities() {
  show("entities");
  const rows = $("entity-rows"); rows.replaceChildren();
  for (const e of await api("/api/entities")) {
    rows.append(el("tr", {}, el("td", {}, el("a", { href: `#/entity/${encodeURIComponent(e.entity)}` }, e.entity)),
      el("td", {}, e.events), el("td", {}, time(e.last_seen)), el("td", {}, e.alerts), el("td", {}, e.open_alerts)));
  }
}

function bars(target, items) {
  const box = $(target); box.replaceChildren();
  const max = Math.max(1, ...items.map((i) => i.count));
  for (const i of items) {
    box.append(el("div", { class: "bar" }, el("span", { class: "label", title: i.name }, i.name),
      el("span", { class: "fill", style: `width:${(i.count / max) * 220}px` }), el("span", {}, i.count)));
  }
}

async function showEntity(name) {
  show("entity");
  const p = await api(`/api/entities/${encodeURIComponent(name)}/profile`);
  $("entity-name").textContent = p.entity;
  const grid = $("heatmap"); grid.replaceChildren(el("div", {}));
  for (let h = 0; h < 24; h++) grid.append(el("div", {}, h % 3 === 0 ? h : ""));
  const max = Math.max(1, ...p.activity.flat());
  ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].forEach((day, d) => {
    grid.append(el("div", {}, day));
    for (let h = 0; h < 24; h++) {
      const v = p.activity[d][h];
      grid.append(el("div", { class: "cell", title: `${day} ${h}:00 — ${v} events`, "data-count": v,
        style: `background: rgba(36, 86, 214, ${v ? 0.15 + 0.85 * (v / max) : 0.04})` }));
    }
  });
  bars("bars-actions", p.actions); bars("bars-peers", p.peers);
  const list = $("entity-alerts"); list.replaceChildren();
  for (const a of p.recent_alerts) list.append(el("li", {}, el("a", { href: `#/alert/${a.alert_id}` }, `${time(a.window_end)} ${a.misuse_type} (${a.score.toFixed(3)})`)));
  if (!p.recent_alerts.length) list.append(el("li", {}, "none"));
}

async function showModels() {
  show("models");
  const rows = $("model-rows"); rows.replaceChildren();
  for (const m of await api("/api/models")) {
    rows.append(el("tr", {}, el("td", {}, m.name), el("td", {}, m.info.detector || m.kind), el("td", {}, m.info.window ?? "–"),
      el("td", {}, time(m.created_at)), el("td", {}, m.loaded ? "scoring the stream" : m.active ? "active" : "stored")));
  }
}

async function route() {
  if (!state.token) { show("login"); return; }
  const [, view, arg] = (location.hash || "#/alerts").split("/");
  try {
    if (view === "alert") await showAlert(decodeURIComponent(arg));
    else if (view === "entities") await showEntities();
    else if (view === "entity") await showEntity(decodeURIComponent(arg));
    else if (view === "models") await showModels();
    else await showAlerts();
  } catch (e) { console.error(e); }
}

$("login-form").addEventListener("submit", (ev) => { ev.preventDefault(); login($("token").value.trim()); });
$("logout").addEventListener("click", () => logout());
window.addEventListener("hashchange", route);
if (state.token) login(state.token); else show("login");
