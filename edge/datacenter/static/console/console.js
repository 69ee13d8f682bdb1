// The data center's console: plain JavaScript over the /v1 API (no framework, charts drawn as SVG by hand).
// The token lives in this tab's sessionStorage and goes out as a Bearer header; no cookie is ever used.
"use strict";

const T = {
  en: {
    title: "Greenhouse console", logout: "Log out", login_title: "Log in",
    login_help: "Paste a token from edge dc token create. It stays in this tab only.", login_button: "Log in",
    filter_placeholder: "Filter by id or name", all_states: "All", online: "online", offline: "offline",
    alerts_only: "with alerts", refresh: "Refresh", col_id: "Gateway", col_name: "Name", col_state: "State",
    col_last_seen: "Last seen", col_backlog: "Backlog", col_clock: "Clock", col_alerts: "Alerts",
    col_coverage: "24 h coverage", prev: "Previous", next: "Next", back: "← All gateways", range: "Range",
    custom: "custom", from: "From", to: "To", show: "Show", csv: "Download CSV", sensors: "Sensors",
    commands: "Commands", op_actuate: "switch an output", output_placeholder: "output, e.g. heater-1",
    on: "on", off: "off", auto: "auto", for_placeholder: "for: 10m", send: "Send", sent: "Sent",
    what: "Command", by: "By", answer: "Answer", coverage: "Coverage (received ÷ expected, per hour)",
    events: "Events and alerts", lang: "فارسی", unsynced: "unsynced", synced: "synced", corrected: "corrected",
    pending: "pending", done: "done", refused: "refused", expired: "expired",
    fleet_summary: (n, shown, on, off, al) => `${n} gateways · ${on} online · ${off} offline · ${al} with alerts` +
      (shown !== n ? ` · ${shown} match` : ""),
    page: (a, b, n) => `${a}–${b} of ${n}`, never: "never", ago: s => `${s} ago`,
    read_only: "read-only token", control: "control token",
    no_data: "No readings in this range.", loading: "Loading…", bad_token: "That token is not accepted: ",
    gh_status: (state, seen, backlog, version) => `${state} · last seen ${seen} · backlog ${backlog} · ${version}`,
    every: e => `averages per ${e}; gaps are left open`, on_periods: "Outputs on", no_events: "No events.",
    none: "none",
  },
  fa: {
    title: "کنسول گلخانه‌ها", logout: "خروج", login_title: "ورود",
    login_help: "توکنی را که edge dc token create داده است بچسبانید. فقط در همین زبانه می‌ماند.",
    login_button: "ورود", filter_placeholder: "جستجو با شناسه یا نام", all_states: "همه", online: "برخط",
    offline: "قطع", alerts_only: "دارای هشدار", refresh: "تازه‌سازی", col_id: "درگاه", col_name: "نام",
    col_state: "وضعیت", col_last_seen: "آخرین تماس", col_backlog: "صف ارسال", col_clock: "ساعت",
    col_alerts: "هشدار", col_coverage: "پوشش ۲۴ ساعت", prev: "قبلی", next: "بعدی", back: "→ همه درگاه‌ها",
    range: "بازه", custom: "دلخواه", from: "از", to: "تا", show: "نمایش", csv: "دریافت CSV",
    sensors: "حسگرها", commands: "فرمان‌ها", op_actuate: "روشن/خاموش کردن خروجی",
    output_placeholder: "خروجی، مثلاً heater-1", on: "روشن", off: "خاموش", auto: "خودکار",
    for_placeholder: "مدت: 10m", send: "ارسال", sent: "زمان ارسال", what: "فرمان", by: "فرستنده",
    answer: "پاسخ", coverage: "پوشش داده (دریافتی ÷ مورد انتظار، هر ساعت)", events: "رویدادها و هشدارها",
    lang: "English", unsynced: "تنظیم‌نشده", synced: "تنظیم", corrected: "اصلاح‌شده",
    pending: "در انتظار", done: "انجام شد", refused: "رد شد", expired: "منقضی شد",
    fleet_summary: (n, shown, on, off, al) => `${n} درگاه · ${on} برخط · ${off} قطع · ${al} دارای هشدار` +
      (shown !== n ? ` · ${shown} مورد یافت شد` : ""),
    page: (a, b, n) => `${a}–${b} از ${n}`, never: "هرگز", ago: s => `${s} پیش`,
    read_only: "توکن فقط‌خواندنی", control: "توکن فرمان",
    no_data: "در این بازه داده‌ای نیست.", loading: "در حال بارگذاری…", bad_token: "این توکن پذیرفته نشد: ",
    gh_status: (state, seen, backlog, version) =>
      `${state} · آخرین تماس ${seen} · صف ارسال ${backlog} · ${version}`,
    every: e => `میانگین هر ${e}؛ جاهای خالی داده باز مانده‌اند`, on_periods: "خروجی‌های روشن",
    no_events: "رویدادی نیست.", none: "هیچ",
  },
};

const PAGE_SIZE = 50;
const COLORS = ["#2f7d32", "#1565c0", "#c62828", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#ad1457"];
const $ = id => document.getElementById(id);
const state = {
  lang: localStorage.getItem("edge-console-lang") || ((navigator.language || "").startsWith("fa") ? "fa" : "en"),
  token: sessionStorage.getItem("edge-console-token"), me: null,
  fleet: null, fields: null, sort: {key: "id", dir: 1}, page: 0, shown: [],
  gateway: null, series: [], commandTimer: null,
};

// ---------------------------------------------------------------------------------------------------- helpers

function t(key, ...args) {
  const value = (T[state.lang] || T.en)[key] ?? T.en[key] ?? key;
  return typeof value === "function" ? value(...args) : value;
}
function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                                                        "'": "&#39;"}[c]));
}
function locale() { return state.lang === "fa" ? "fa-IR-u-ca-persian" : "en-GB"; }
function num(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return new Intl.NumberFormat(state.lang === "fa" ? "fa-IR" : "en-US",
                               {maximumFractionDigits: digits, minimumFractionDigits: 0}).format(value);
}
function digits(text) { return state.lang === "fa" ? String(text).replace(/\d/g, d => "۰۱۲۳۴۵۶۷۸۹"[d]) : text; }
function when(iso, withDate = true) {
  if (!iso) return t("never");
  const options = withDate ? {dateStyle: "short", timeStyle: "short"} : {timeStyle: "short"};
  return new Intl.DateTimeFormat(locale(), options).format(new Date(iso));
}
function today(iso) { return new Date(iso).toDateString() === new Date().toDateString(); }
function age(iso) {
  if (!iso) return t("never");
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  const [v, u] = s < 90 ? [s, "s"] : s < 5400 ? [s / 60, "m"] : s < 129600 ? [s / 3600, "h"] : [s / 86400, "d"];
  const units = state.lang === "fa" ? {s: "ثانیه", m: "دقیقه", h: "ساعت", d: "روز"} : {s: "s", m: "m", h: "h", d: "d"};
  return t("ago", num(Math.round(v)) + (state.lang === "fa" ? " " : "") + units[u]);
}
function localInput(date) {  // a Date as the value of a datetime-local input (the browser's zone)
  const pad = n => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:` +
         `${pad(date.getMinutes())}`;
}
function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }

async function api(path, options = {}) {
  const headers = Object.assign({"Authorization": "Bearer " + state.token}, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, {headers}));
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch (e) { /* not a problem document */ }
    const error = new Error(problem && problem.detail ? problem.detail : response.status + " " + response.statusText);
    error.status = response.status;
    error.problem = problem;
    if (response.status === 401 || (response.status === 403 && problem && /token-(revoked|expired)/.test(problem.type))) {
      logout(t("bad_token") + error.message);
    }
    throw error;
  }
  return options.raw ? response : response.json();
}

// ------------------------------------------------------------------------------------------------ language, login

function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.documentElement.dir = state.lang === "fa" ? "rtl" : "ltr";
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const el of document.querySelectorAll("[data-tp]")) el.placeholder = t(el.dataset.tp);
  $("lang").textContent = t("lang");
  showWho();
}
function showWho() {
  $("who").textContent = state.me ? `${state.me.name} · ${t(state.me.scope === "control" ? "control" : "read_only")}` : "";
}

async function login(secret) {
  state.token = secret;
  try {
    state.me = await api("/v1/token");
  } catch (error) {
    state.token = null;
    state.me = null;
    $("login-error").textContent = t("bad_token") + error.message;
    return false;
  }
  sessionStorage.setItem("edge-console-token", secret);
  $("login-error").textContent = "";
  return true;
}
function logout(message) {
  sessionStorage.removeItem("edge-console-token");
  state.token = null; state.me = null; state.fleet = null;
  $("login-error").textContent = message || "";
  route();
}

// ------------------------------------------------------------------------------------------------------ routing

function show(section) {
  for (const id of ["login", "fleet", "greenhouse"]) $(id).hidden = id !== section;
  $("logout").hidden = section === "login";
  showWho();
}
async function route() {
  showError(null);
  clearTimeout(state.commandTimer);
  if (!state.token) { show("login"); $("token").focus(); return; }
  if (!state.me && !(await login(state.token))) { show("login"); return; }
  const match = location.hash.match(/^#\/g\/(.+)$/);
  if (match) { show("greenhouse"); await openGateway(decodeURIComponent(match[1])); }
  else { show("fleet"); if (!state.fleet) await loadFleet(); else renderFleet(); }
}

// -------------------------------------------------------------------------------------------------------- fleet

async function loadFleet() {
  $("fleet-summary").textContent = t("loading");
  try {
    const data = await api("/v1/fleet");
    state.fields = data.fields;
    const at = Object.fromEntries(data.fields.map((f, i) => [f, i]));
    state.fleet = data.gateways.map(row => Object.fromEntries(Object.entries(at).map(([f, i]) => [f, row[i]])));
  } catch (error) { showError(error); state.fleet = []; }
  renderFleet();
}

function filteredFleet() {
  const text = $("filter").value.trim().toLowerCase();
  const wanted = $("state-filter").value;
  const alerts = $("alerts-only").checked;
  const rows = state.fleet.filter(g => (!text || g.id.toLowerCase().includes(text) ||
                                        (g.name || "").toLowerCase().includes(text)) &&
                                       (!wanted || g.state === wanted) && (!alerts || g.alerts > 0));
  const {key, dir} = state.sort;
  rows.sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === y) return a.id < b.id ? -1 : 1;
    if (x === null || x === undefined) return 1;  // unknown last, either way
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
  return rows;
}

function renderFleet() {
  const all = state.fleet || [];
  const rows = filteredFleet();
  state.shown = rows;
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const first = state.page * PAGE_SIZE;
  const page = rows.slice(first, first + PAGE_SIZE);
  $("fleet-rows").innerHTML = page.map(g => {
    const cover = g.coverage_24h === null ? "–" :
      `<svg class="cover" viewBox="0 0 100 8" aria-hidden="true"><rect width="100" height="8" fill="#e6e6e6"/>` +
      `<rect width="${Math.round(g.coverage_24h * 100)}" height="8" fill="#2f7d32"/></svg> ` +
      num(g.coverage_24h * 100) + "%";
    return `<tr data-id="${esc(g.id)}"><td dir="ltr"><a href="#/g/${encodeURIComponent(g.id)}">${esc(g.id)}</a></td>` +
      `<td class="hide-phone">${esc(g.name || "")}</td>` +
      `<td><span class="badge ${esc(g.state)}">${esc(t(g.state))}</span></td>` +
      `<td title="${esc(g.last_seen || "")}">${esc(age(g.last_seen))}</td>` +
      `<td class="num hide-phone">${num(g.backlog)}</td>` +
      `<td class="hide-phone">${g.clock ? esc(t(g.clock)) : "–"}</td>` +
      `<td class="num">${g.alerts ? `<span class="badge alerts">${num(g.alerts)}</span>` : num(0)}</td>` +
      `<td class="num">${cover}</td></tr>`;
  }).join("");
  const online = all.filter(g => g.state === "online").length;
  $("fleet-summary").textContent = t("fleet_summary", num(all.length), num(rows.length), num(online),
                                     num(all.length - online), num(all.filter(g => g.alerts > 0).length));
  $("page").textContent = rows.length ? t("page", num(first + 1), num(first + page.length), num(rows.length)) : "";
  $("prev").disabled = state.page === 0;
  $("next").disabled = state.page >= pages - 1;
  for (const th of document.querySelectorAll("#fleet-table th[data-sort]")) {
    th.setAttribute("aria-sort", th.dataset.sort === state.sort.key ?
                    (state.sort.dir > 0 ? "ascending" : "descending") : "none");
  }
}

// --------------------------------------------------------------------------------------------------- greenhouse

function everyFor(ms) { return ms <= 2 * 86400e3 ? "1m" : ms <= 62 * 86400e3 ? "1h" : "1d"; }
const BUCKET_MS = {"1m": 60e3, "1h": 3600e3, "1d": 86400e3};

function rangeFromPreset() {
  const preset = $("preset").value;
  if (preset === "custom") return;
  const hours = {"6h": 6, "24h": 24, "7d": 168, "30d": 720}[preset];
  const end = new Date(Math.ceil(Date.now() / 60e3) * 60e3);
  $("to").value = localInput(end);
  $("from").value = localInput(new Date(end - hours * 3600e3));
}
function chosenRange() {
  const start = new Date($("from").value), end = new Date($("to").value);
  if (Number.isNaN(+start) || Number.isNaN(+end) || start >= end) throw new Error("from must be before to");
  return [start, end];
}
function chosenSeries() {
  return state.series.filter((s, i) => $("s-" + i) && $("s-" + i).checked);
}
function readingsUrl(format) {
  const [start, end] = chosenRange();
  const params = new URLSearchParams({from: start.toISOString(), to: end.toISOString(), every: everyFor(end - start),
                                      format});
  const chosen = chosenSeries();
  for (const sensor of new Set(chosen.map(s => s.sensor))) params.append("sensor", sensor);
  for (const quantity of new Set(chosen.map(s => s.quantity))) params.append("quantity", quantity);
  return `/v1/gateways/${encodeURIComponent(state.gateway.id)}/readings?${params}`;
}

async function openGateway(id) {
  $("gh-title").textContent = id;
  $("charts").innerHTML = $("onoff").innerHTML = $("heatmap").innerHTML = $("timeline").innerHTML = "";
  $("command-rows").innerHTML = "";
  let gateway, series;
  try {
    [gateway, series] = await Promise.all([api(`/v1/gateways/${encodeURIComponent(id)}`),
                                           api(`/v1/gateways/${encodeURIComponent(id)}/sensors`)]);
  } catch (error) { showError(error); return; }
  state.gateway = gateway;
  state.series = series;
  $("gh-title").textContent = gateway.name ? `${gateway.name} (${id})` : id;
  $("gh-status").textContent = t("gh_status", t(gateway.state), age(gateway.last_seen), num(gateway.backlog),
                                 gateway.version || "–");
  $("series-list").innerHTML = series.map((s, i) =>
    `<label><input type="checkbox" id="s-${i}" ${i < 3 ? "checked" : ""}> ` +
    `<span>${esc(s.name || s.sensor)} · ${esc(s.quantity)} (${esc(s.unit)})</span></label>`).join("");
  const outputs = Object.keys(gateway.names || {}).filter(k => !series.some(s => s.sensor === k));
  $("outputs").innerHTML = outputs.map(o => `<option value="${esc(o)}">${esc(gateway.names[o])}</option>`).join("");
  $("command-box").hidden = !(state.me && state.me.scope === "control");
  if (!$("from").value || $("preset").value !== "custom") rangeFromPreset();
  await Promise.all([drawAll(), loadCommands()]);
}

async function drawAll() {
  showError(null);
  let start, end;
  try { [start, end] = chosenRange(); } catch (error) { showError(error); return; }
  const id = encodeURIComponent(state.gateway.id);
  const span = {from: start.toISOString(), to: end.toISOString()};
  const chosen = chosenSeries();
  const every = everyFor(end - start);
  $("chart-note").textContent = t("every", {"1m": "1 min", "1h": "1 h", "1d": "1 d"}[every]);
  const coverageEnd = new Date(Math.min(+end, +start + 31 * 86400e3));
  const coverageParams = new URLSearchParams({from: start.toISOString(), to: coverageEnd.toISOString(),
                                              format: "json"});
  for (const sensor of new Set(chosen.map(s => s.sensor))) coverageParams.append("sensor", sensor);
  const tasks = [
    chosen.length ? api(readingsUrl("json")) : Promise.resolve([]),
    api(`/v1/gateways/${id}/events?${new URLSearchParams({...span, format: "json"})}`),
    chosen.length ? api(`/v1/gateways/${id}/coverage?${coverageParams}`).catch(e => e) : Promise.resolve([]),
  ];
  let readings, events, coverage;
  try { [readings, events, coverage] = await Promise.all(tasks); } catch (error) { showError(error); return; }
  measure();
  drawCharts(readings, chosen, start, end, BUCKET_MS[every]);
  drawOnPeriods(events, start, end);
  drawTimeline(events);
  if (coverage instanceof Error) $("heatmap").textContent = coverage.message;
  else drawHeatmap(coverage, chosen, start, coverageEnd);
}

// ----------------------------------------------------------------------------------------------------- charts

// drawn at the width of the page (CSS pixels), so that text keeps its size on a phone and on a desktop
let W = 900, H = 220;
const M = {l: 52, r: 12, t: 10, b: 24};
function measure() {
  W = Math.max(300, Math.round($("charts").clientWidth || 900) - 10);
  H = W < 500 ? 180 : 220;
}

function timeTicks(start, end) {
  const span = end - start, steps = [3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3, 2 * 86400e3,
                                     7 * 86400e3, 30 * 86400e3, 365 * 86400e3];
  const most = W < 500 ? 4 : 8;
  const step = steps.find(s => span / s <= most) || steps[steps.length - 1];
  const ticks = [];
  for (let x = Math.ceil(+start / step) * step; x <= +end; x += step) ticks.push(x);
  return [ticks, step];
}
function tickLabel(ms, step) {
  const options = step >= 86400e3 ? {month: "short", day: "numeric"} : {hour: "2-digit", minute: "2-digit"};
  return new Intl.DateTimeFormat(locale(), options).format(new Date(ms));
}
function niceTicks(lo, hi) {
  if (lo === hi) { lo -= 1; hi += 1; }
  const raw = (hi - lo) / 5, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(f => f * mag).find(s => s >= raw);
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step / 2; v += step) ticks.push(+v.toFixed(10));
  return ticks;
}
function axes(xs, ys, start, end, y0, y1) {
  const [ticks, step] = timeTicks(start, end);
  let out = "";
  for (const v of niceTicks(y0, y1)) {
    const y = ys(v);
    if (y < M.t - 1 || y > H - M.b + 1) continue;
    out += `<line x1="${M.l}" x2="${W - M.r}" y1="${y}" y2="${y}" stroke="#e4e9e4"/>` +
           `<text x="${M.l - 4}" y="${y + 4}" text-anchor="end">${esc(num(v, 2))}</text>`;
  }
  for (const ms of ticks) {
    const x = xs(ms);
    out += `<line x1="${x}" x2="${x}" y1="${M.t}" y2="${H - M.b}" stroke="#eef2ee"/>` +
           `<text x="${x}" y="${H - 8}" text-anchor="middle">${esc(tickLabel(ms, step))}</text>`;
  }
  return out;
}

function drawCharts(rows, chosen, start, end, bucket) {
  const charts = $("charts");
  if (!chosen.length) { charts.innerHTML = ""; return; }
  if (!rows.length) { charts.innerHTML = `<p class="muted" id="no-data">${esc(t("no_data"))}</p>`; return; }
  const byQuantity = new Map();
  for (const s of chosen) {
    const key = s.quantity + "|" + s.unit;
    if (!byQuantity.has(key)) byQuantity.set(key, []);
    byQuantity.get(key).push(s);
  }
  const xs = ms => M.l + (ms - start) / (end - start) * (W - M.l - M.r);
  let html = "";
  let colour = 0;
  for (const [key, list] of byQuantity) {
    const [quantity, unit] = key.split("|");
    const lines = list.map(s => ({s, colour: COLORS[colour++ % COLORS.length],
                                  points: rows.filter(r => r.sensor === s.sensor && r.quantity === s.quantity &&
                                                           r.mean !== null)
                                              .map(r => [Date.parse(r.ts), r.mean])}));
    const values = lines.flatMap(l => l.points.map(p => p[1]));
    if (!values.length) continue;
    let y0 = Math.min(...values), y1 = Math.max(...values);
    const pad = (y1 - y0) * 0.08 || 1;
    y0 -= pad; y1 += pad;
    const ys = v => H - M.b - (v - y0) / (y1 - y0) * (H - M.t - M.b);
    let paths = "";
    for (const line of lines) {
      let d = "", last = null;
      for (const [ms, v] of line.points) {
        // a missing bucket is a gap: the line stops there rather than bridging it
        d += (last === null || ms - last > bucket * 1.5 ? "M" : "L") + xs(ms).toFixed(1) + " " + ys(v).toFixed(1);
        last = ms;
      }
      paths += `<path class="series" data-sensor="${esc(line.s.sensor)}" data-points="${line.points.length}" ` +
               `d="${d}" fill="none" stroke="${line.colour}" stroke-width="1.6" stroke-linejoin="round"/>`;
    }
    const legend = lines.map(l => `<span><svg width="14" height="4" aria-hidden="true"><rect width="14" height="4" fill="${l.colour}"/></svg> ` +
                                   `${esc(l.s.name || l.s.sensor)}</span>`)
                        .join("");
    html += `<div class="chart" data-quantity="${esc(quantity)}"><h4>${esc(quantity)} (${esc(unit)})</h4>` +
            `<div class="legend">${legend}</div>` +
            `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(quantity)}">` +
            `${axes(xs, ys, start, end, y0, y1)}${paths}</svg></div>`;
  }
  charts.innerHTML = html;
}

function onPeriods(events, start, end) {
  // per output: [from, to] while on, from actuator.change events (the first change's "previous" says how it began)
  const outputs = new Map();
  for (const e of events) {
    if (e.kind !== "actuator.change" || !e.data || typeof e.data.value !== "number") continue;
    if (!outputs.has(e.source)) outputs.set(e.source, {on: e.data.previous > 0 ? +start : null, periods: []});
    const o = outputs.get(e.source);
    const at = Date.parse(e.ts);
    if (e.data.value > 0 && o.on === null) o.on = at;
    else if (e.data.value <= 0 && o.on !== null) { o.periods.push([o.on, at]); o.on = null; }
  }
  for (const o of outputs.values()) if (o.on !== null) o.periods.push([o.on, Math.min(+end, Date.now())]);
  return outputs;
}

function drawOnPeriods(events, start, end) {
  const outputs = onPeriods(events, start, end);
  if (!outputs.size) { $("onoff").innerHTML = ""; return; }
  const row = 18, height = outputs.size * row + 24;
  const xs = ms => M.l + (ms - start) / (end - start) * (W - M.l - M.r);
  let body = "", i = 0;
  for (const [id, o] of outputs) {
    const y = i * row + 4;
    body += `<text x="${M.l - 4}" y="${y + 12}" text-anchor="end">${esc(id)}</text>` +
            `<line x1="${M.l}" x2="${W - M.r}" y1="${y + 8}" y2="${y + 8}" stroke="#e4e9e4"/>`;
    for (const [a, b] of o.periods) {
      const x0 = xs(Math.max(a, +start)), x1 = xs(Math.min(b, +end));
      body += `<rect class="on" data-output="${esc(id)}" x="${x0.toFixed(1)}" y="${y + 2}" ` +
              `width="${Math.max(1, x1 - x0).toFixed(1)}" height="12" fill="${COLORS[i % COLORS.length]}" ` +
              `opacity=".75"><title>${esc(id)}: ${esc(when(new Date(a).toISOString()))} – ` +
              `${esc(when(new Date(b).toISOString()))}</title></rect>`;
    }
    i++;
  }
  const [ticks, step] = timeTicks(start, end);
  for (const ms of ticks) {
    body += `<text x="${xs(ms)}" y="${height - 6}" text-anchor="middle">${esc(tickLabel(ms, step))}</text>`;
  }
  $("onoff").innerHTML = `<div class="chart"><h4>${esc(t("on_periods"))}</h4>` +
                         `<svg viewBox="0 0 ${W} ${height}" data-plot-width="${W - M.l - M.r}">${body}</svg></div>`;
}

function describeEvent(e) {
  const d = e.data || {};
  switch (e.kind) {
    case "actuator.change": return `${e.source}: ${d.previous > 0 ? t("on") : t("off")} → ` +
                                   `${d.value > 0 ? t("on") : t("off")} (${d.reason || ""})`;
    case "alert.fired": return `⚠ ${e.source} ${d.severity || ""} ${d.value ?? ""}`;
    case "alert.resolved": return `✓ ${e.source}`;
    case "command.result": return `${d.id || ""} ${d.op || ""}: ${d.ok ? t("done") : t("refused") + " " + (d.error || "")}`;
    default: {
      const text = JSON.stringify(d);
      return `${e.source} ${text.length > 100 ? text.slice(0, 99) + "…" : text}`;
    }
  }
}
function drawTimeline(events) {
  const latest = events.slice(-300).reverse();
  $("timeline").innerHTML = latest.length ? latest.map(e =>
    `<li class="${e.kind.startsWith("alert.") ? "alert" : ""}" data-kind="${esc(e.kind)}">` +
    `<time datetime="${esc(e.ts)}">${esc(when(e.ts))}</time><b>${esc(e.kind)}</b> ` +
    `<span dir="auto">${esc(describeEvent(e))}</span></li>`).join("") : `<li>${esc(t("no_events"))}</li>`;
}

function drawHeatmap(rows, chosen, start, end) {
  if (!chosen.length || !rows.length) { $("heatmap").innerHTML = ""; return; }
  const keys = chosen.map(s => s.sensor + "|" + s.quantity);
  const first = Math.floor(+start / 3600e3) * 3600e3, hours = Math.max(1, Math.ceil((+end - first) / 3600e3));
  const left = Math.min(150, Math.round(W * 0.32));  // room for "soil-bed-1 soil_moisture"
  const cell = Math.max(2, (W - left - M.r) / hours), row = 16;
  let body = "";
  keys.forEach((key, i) => {
    body += `<text x="${left - 4}" y="${i * row + 12}" text-anchor="end">${esc(key.replace("|", " "))}</text>`;
  });
  for (const r of rows) {
    const i = keys.indexOf(r.sensor + "|" + r.quantity);
    if (i < 0) continue;
    const share = r.expected ? Math.min(1, r.received / r.expected) : (r.received ? 1 : 0);
    const x = left + (Date.parse(r.hour) - first) / 3600e3 * cell;
    const colour = share >= 0.95 ? "#2f7d32" : share >= 0.5 ? "#9ccc65" : share > 0 ? "#ffb74d" : "#e57373";
    body += `<rect class="hour" x="${x.toFixed(1)}" y="${i * row + 1}" width="${Math.max(1, cell - 0.5).toFixed(1)}" ` +
            `height="${row - 2}" fill="${colour}"><title>${esc(when(r.hour))}: ${num(r.received)} / ` +
            `${num(r.expected)}</title></rect>`;
  }
  $("heatmap").innerHTML = `<div class="chart"><svg viewBox="0 0 ${W} ${keys.length * row + 4}">${body}</svg></div>`;
}

async function downloadCsv() {
  showError(null);
  try {
    const url = readingsUrl("csv");
    const response = await api(url, {raw: true});
    const blob = await response.blob();
    const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name ? name[1] : "readings.csv";
    link.id = "csv-link";
    link.dataset.url = url;
    document.body.appendChild(link);
    link.click();
    setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 60000);
  } catch (error) { showError(error); }
}

// ---------------------------------------------------------------------------------------------------- commands

async function loadCommands() {
  if (!state.gateway) return;
  let list;
  try { list = await api(`/v1/gateways/${encodeURIComponent(state.gateway.id)}/commands`); }
  catch (error) { showError(error); return; }
  $("commands-table").hidden = !list.length;
  $("command-rows").innerHTML = list.map(c => {
    const r = c.result || {};
    const what = c.op === "actuate" ? `${c.args.actuator} ${t(c.args.action)}` +
                 (c.args.for ? ` ${digits(Math.round(c.args.for / 60))}′` : "") : c.op;
    const answer = c.state === "refused" ? r.error || "" :
                   c.state === "done" ? (r.result && r.result.actuator ?
                                         `${r.result.actuator}: ${r.result.state || ""} ${r.result.reason || ""}` :
                                         r.result && r.result.pong ? "pong" : "ok") : "";
    return `<tr data-command="${esc(c.id)}" data-state="${esc(c.state)}"><td>${esc(when(c.sent, !today(c.sent)))}</td>` +
           `<td dir="ltr">${esc(what)}</td><td dir="ltr" class="hide-phone">${esc(c.by)}</td>` +
           `<td><span class="badge ${esc(c.state)}">${esc(t(c.state))}</span></td>` +
           `<td dir="auto" class="answer">${esc(answer)}</td></tr>`;
  }).join("");
  clearTimeout(state.commandTimer);
  if (list.some(c => c.state === "pending")) state.commandTimer = setTimeout(loadCommands, 1000);
}

async function sendCommand(event) {
  event.preventDefault();
  $("cmd-error").textContent = "";
  const op = $("cmd-op").value;
  const body = op === "ping" ? {op} : {op, actuator: $("cmd-output").value.trim(), action: $("cmd-action").value};
  if (op === "actuate" && $("cmd-for").value.trim() && body.action !== "auto") body.for = $("cmd-for").value.trim();
  $("cmd-send").disabled = true;
  try {
    await api(`/v1/gateways/${encodeURIComponent(state.gateway.id)}/commands`,
              {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  } catch (error) {
    $("cmd-error").textContent = error.message;
  } finally {
    $("cmd-send").disabled = false;
  }
  await loadCommands();
}

// ------------------------------------------------------------------------------------------------------- wiring

function wire() {
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "fa" ? "en" : "fa";
    localStorage.setItem("edge-console-lang", state.lang);
    applyLanguage();
    route();
  });
  $("logout").addEventListener("click", () => { location.hash = "#/"; logout(""); });
  $("login-form").addEventListener("submit", async event => {
    event.preventDefault();
    if (await login($("token").value.trim())) { $("token").value = ""; state.fleet = null; route(); }
  });
  let typing = null;
  $("filter").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.page = 0; renderFleet(); }, 120);
  });
  $("state-filter").addEventListener("change", () => { state.page = 0; renderFleet(); });
  $("alerts-only").addEventListener("change", () => { state.page = 0; renderFleet(); });
  $("refresh").addEventListener("click", loadFleet);
  $("prev").addEventListener("click", () => { state.page--; renderFleet(); });
  $("next").addEventListener("click", () => { state.page++; renderFleet(); });
  for (const th of document.querySelectorAll("#fleet-table th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      state.sort = {key, dir: state.sort.key === key ? -state.sort.dir : 1};
      renderFleet();
    });
  }
  $("preset").addEventListener("change", () => { rangeFromPreset(); if ($("preset").value !== "custom") drawAll(); });
  for (const id of ["from", "to"]) $(id).addEventListener("change", () => { $("preset").value = "custom"; });
  $("chart-form").addEventListener("submit", event => { event.preventDefault(); drawAll(); });
  $("series-list").addEventListener("change", drawAll);
  $("csv").addEventListener("click", downloadCsv);
  $("command-form").addEventListener("submit", sendCommand);
  $("cmd-op").addEventListener("change", () => {
    const ping = $("cmd-op").value === "ping";
    for (const id of ["cmd-output", "cmd-action", "cmd-for"]) $(id).hidden = ping;
  });
  window.addEventListener("hashchange", route);
}

document.addEventListener("DOMContentLoaded", () => { wire(); applyLanguage(); route(); });
