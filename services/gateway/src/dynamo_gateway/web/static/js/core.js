// Shared by every page: the API client, DOM building, formatting, tables, bars and charts.
// Pages are plain ES modules that build their content from the public REST API.

const TOKEN_KEY = "dynamo.token";

export class ApiError extends Error {
  constructor(status, problem, path) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.path = path;
  }
  get unavailable() {
    return this.status === 503;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** The URL of an API path (for links: downloads). */
export function apiUrl(path, params) {
  return `/api/v1${path}${query(params)}`;
}

/** GET (or another method with a JSON body) on /api/v1; throws ApiError with the problem. */
export async function api(path, params, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(apiUrl(path, params), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, typeof data === "object" ? data : { detail: data }, path);
  return data;
}

/** Every item of a paged list (up to ``max``). */
export async function all(path, params = {}, max = 10000) {
  const items = [];
  for (let offset = 0; ; ) {
    const page = await api(path, { ...params, limit: Math.min(1000, max), offset });
    items.push(...page.items);
    offset += page.items.length;
    if (!page.items.length || offset >= page.total || items.length >= max) return items;
  }
}

// ------------------------------------------------------------------------------ DOM

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export function link(href, text, attrs = {}) {
  return el("a", { href, ...attrs }, text);
}

export const siteLink = (name) => link(`/sites/${encodeURIComponent(name)}`, name);
export const datasetLink = (name) => link(`/datasets${name.startsWith("/") ? "" : "/"}${name.split("/").map(encodeURIComponent).join("/")}`, name, { class: "mono" });

export function section(title, ...children) {
  return el("section", { class: "panel" }, title ? el("h2", {}, title) : null, ...children);
}

export function stat(label, value, cls) {
  return el("div", { class: `stat ${cls || ""}` }, el("div", { class: "stat-value" }, value), el("div", { class: "stat-label" }, label));
}

export function badge(text, cls) {
  return el("span", { class: `badge ${cls || text}` }, text);
}

// ------------------------------------------------------------------------------ formatting

const UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i += 1;
  }
  const digits = i === 0 && Number.isInteger(v) ? 0 : v < 10 ? 2 : v < 100 ? 1 : 0;
  return `${v.toFixed(digits)} ${UNITS[i]}`;
}

/** The unit (and its divisor) that suits the largest of some byte counts. */
export function byteUnit(max) {
  let i = 0;
  while (max >= 1000 && i < UNITS.length - 1) {
    max /= 1000;
    i += 1;
  }
  return { unit: UNITS[i], divisor: 1000 ** i };
}

export function num(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

export function pct(x, digits = 1) {
  return x === null || x === undefined ? "–" : `${(x * 100).toFixed(digits)}%`;
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return `${d.toISOString().slice(0, 16).replace("T", " ")}`;
}

export function ago(iso) {
  if (!iso) return "never";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 90) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// ------------------------------------------------------------------------------ tables

/**
 * columns: [{label, value: row => node|text, num: bool, cls: row => class, title}]
 * Rows get ``rowClass(row)``. An empty list says so instead of showing a bare header.
 */
export function table(columns, rows, { rowClass, empty = "Nothing to show.", id } = {}) {
  if (!rows.length) return el("p", { class: "muted empty", id }, empty);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "data", id },
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : "", title: c.title }, c.label)))),
      el(
        "tbody",
        {},
        rows.map((row) =>
          el(
            "tr",
            { class: rowClass ? rowClass(row) : "" },
            columns.map((c) => el("td", { class: `${c.num ? "num" : ""} ${c.cls ? c.cls(row) || "" : ""}` }, c.value(row))),
          ),
        ),
      ),
    ),
  );
}

/** "12 of 340" and previous/next buttons for a paged list; ``load(offset)`` redraws. */
export function pager(page, load) {
  const { total, limit, offset } = page;
  if (total === 0) return null;
  if (total <= limit && offset === 0) return el("p", { class: "muted count" }, `${num(total)} in all`);
  return el(
    "div",
    { class: "pager" },
    el("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: () => load(Math.max(0, offset - limit)) }, "‹ previous"),
    el("span", { class: "muted" }, `${num(offset + 1)}–${num(Math.min(offset + limit, total))} of ${num(total)}`),
    el("button", { type: "button", class: "secondary", disabled: offset + limit >= total, onclick: () => load(offset + limit) }, "next ›"),
  );
}

// ------------------------------------------------------------------------------ bars

const level = (occ) => (occ === null ? "none" : occ >= 0.9 ? "over" : occ >= 0.85 ? "high" : "ok");
const width = (x) => `${Math.min(100, Math.max(0, x || 0) * 100).toFixed(2)}%`;

/**
 * An occupancy bar with the 85% (target) and 90% (trigger) marks. With ``after``, the bar shows
 * the occupancy after a cycle solid and what was freed from the occupancy before as a pale tail.
 */
export function occupancyBar(used, quota, { after } = {}) {
  const occ = quota ? used / quota : null;
  const hasAfter = after !== undefined && quota;
  const occAfter = hasAfter ? after / quota : null;
  const title = hasAfter ? `${bytes(used)} → ${bytes(after)} of ${bytes(quota)}` : `${bytes(used)} of ${bytes(quota)} (${pct(occ)})`;
  return el(
    "div",
    { class: `occ ${level(hasAfter ? occAfter : occ)}`, title },
    hasAfter ? el("div", { class: `occ-before ${level(occ)}`, style: { width: width(occ) } }) : null,
    el("div", { class: "occ-fill", style: { width: width(hasAfter ? occAfter : occ) } }),
    el("div", { class: "occ-mark m85", title: "85%" }),
    el("div", { class: "occ-mark m90", title: "90%" }),
    el("span", { class: "occ-label" }, occ === null ? "no quota" : hasAfter && after !== used ? `${pct(occ)} → ${pct(occAfter)}` : pct(occ)),
  );
}

/** Copied versus total. */
export function progressBar(done, total, stuck) {
  const f = total ? done / total : 0;
  return el(
    "div",
    { class: `progress ${stuck ? "stuck" : ""}`, title: `${bytes(done)} of ${bytes(total)}` },
    el("div", { class: "progress-fill", style: { width: `${Math.min(100, f * 100).toFixed(2)}%` } }),
    el("span", { class: "progress-label" }, pct(f, 0)),
  );
}

// ------------------------------------------------------------------------------ charts

export const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

export function chart(canvas, config) {
  const Chart = window.Chart;
  Chart.defaults.animation = false;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.maintainAspectRatio = false;
  return new Chart(canvas, config);
}

/** A chart drawn once its box is in the document (a detached canvas has no size). */
export function chartBox(id, config, height = 280) {
  const box = el("div", { class: "chart", "data-chart": id, style: { height: `${height}px` } }, el("canvas", { id }));
  box.draw = () => {
    if (!box.chart) box.chart = chart(box.querySelector("canvas"), config);
  };
  return box;
}

export function drawCharts(root) {
  for (const box of root.querySelectorAll("[data-chart]")) if (box.draw) box.draw();
}

// ------------------------------------------------------------------------------ errors

/** What a section says when its service cannot answer. */
export function problemBox(err) {
  if (err instanceof ApiError) {
    const service = err.problem.service;
    if (err.unavailable) {
      return el(
        "div",
        { class: "notice unavailable", role: "status" },
        el("strong", {}, service ? `The ${service} service is not available` : "Service not available"),
        el("div", {}, err.message),
      );
    }
    return el("div", { class: "notice error", role: "alert" }, el("strong", {}, `${err.status} ${err.problem.title || "Error"}`), el("div", {}, err.message));
  }
  return el("div", { class: "notice error", role: "alert" }, el("strong", {}, "Error"), el("div", {}, String(err && err.message ? err.message : err)));
}

/** Fill ``node`` from ``build`` (async, returns nodes); a failure shows its reason in place. */
export async function fill(node, build) {
  clear(node, el("p", { class: "muted" }, "Loading…"));
  try {
    clear(node, await build());
    drawCharts(node);
  } catch (err) {
    clear(node, problemBox(err));
  }
  return node;
}

/** A panel that loads on its own: one service down leaves the other panels working. */
export function panel(title, build, attrs = {}) {
  const body = el("div", { class: "panel-body" });
  const node = el("section", { class: "panel", ...attrs }, title ? el("h2", {}, title) : null, body);
  node.loaded = fill(body, build);
  return node;
}

// ------------------------------------------------------------------------------ page start

async function whoami() {
  const name = document.getElementById("who-name");
  try {
    const me = await api("/auth/whoami");
    name.textContent = me.method === "anonymous" ? "anonymous" : `${me.name} (${me.role})`;
  } catch (err) {
    name.textContent = err instanceof ApiError && err.status === 401 ? "token refused" : "?";
  }
}

function tokenDialog() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-button").addEventListener("click", () => {
    input.value = token();
    dialog.showModal();
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save" && input.value.trim()) localStorage.setItem(TOKEN_KEY, input.value.trim());
    if (dialog.returnValue === "clear") localStorage.removeItem(TOKEN_KEY);
    if (dialog.returnValue === "save" || dialog.returnValue === "clear") {
      whoami();
      document.dispatchEvent(new CustomEvent("dynamo-token"));
    }
  });
}

/**
 * Run a page: ``build(content)`` appends its panels and returns them (or promises); when every
 * panel has loaded, ``body[data-ready]`` is set (the browser tests wait for it).
 */
export async function start(build, title) {
  tokenDialog();
  const who = whoami();
  const content = document.getElementById("content");
  const main = document.getElementById("main");
  if (title) {
    document.getElementById("page-title").textContent = title;
    document.title = `${title} · Dynamo`;
  }
  clear(content);
  try {
    const parts = (await build(content)) || [];
    await Promise.allSettled(parts.map((p) => (p && p.loaded ? p.loaded : p)));
  } catch (err) {
    content.append(problemBox(err));
  }
  drawCharts(content);
  await who;
  main.setAttribute("aria-busy", "false");
  document.body.dataset.ready = "1";
}

/** The decoded path segments after ``prefix`` (``/sites/`` → the site name). */
export function pathRest(prefix) {
  return location.pathname.slice(prefix.length).split("/").map(decodeURIComponent).join("/");
}

export function params() {
  return new URLSearchParams(location.search);
}
