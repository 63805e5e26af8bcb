import { PALETTE, api, badge, byteUnit, bytes, chartBox, el, fill, num, pager, panel, params, pct, siteLink, start, table, when } from "../core.js";

const WINDOWS = [["3600", "last hour"], ["21600", "6 hours"], ["86400", "24 hours"], ["604800", "7 days"], ["2592000", "30 days"]];
const GROUPS = [["link", "per link"], ["source", "per source"], ["destination", "per destination"]];
const BUCKETS = 24;

function key(link, by) {
  if (by === "source") return link.source || "(none)";
  if (by === "destination") return link.destination;
  return `${link.source || "(none)"} → ${link.destination}`;
}

/** Sum the links' buckets per group: bytes, done and failed per time bucket. */
export function grouped(links, by) {
  const groups = new Map();
  for (const l of links) {
    const k = key(l, by);
    if (!groups.has(k)) groups.set(k, { key: k, done: 0, failed: 0, bytes: 0, buckets: l.buckets.map((b) => ({ start: b.start, bytes: 0, done: 0, failed: 0 })) });
    const g = groups.get(k);
    g.done += l.done;
    g.failed += l.failed;
    g.bytes += l.bytes;
    l.buckets.forEach((b, i) => {
      g.buckets[i].bytes += b.bytes;
      g.buckets[i].done += b.done;
      g.buckets[i].failed += b.failed;
    });
  }
  return [...groups.values()].sort((a, b) => b.bytes - a.bytes || a.key.localeCompare(b.key));
}

function label(iso, window) {
  const d = new Date(iso).toISOString();
  return window > 86400 ? d.slice(5, 16).replace("T", " ") : d.slice(11, 16);
}

function rateChart(groups, window) {
  const seconds = window / BUCKETS;
  const peak = Math.max(0, ...groups.flatMap((g) => g.buckets.map((b) => b.bytes / seconds)));
  const { unit, divisor } = byteUnit(peak);
  return chartBox("rate-chart", {
    type: "bar",
    data: {
      labels: (groups[0]?.buckets || []).map((b) => label(b.start, window)),
      datasets: groups.map((g, i) => ({ label: g.key, data: g.buckets.map((b) => b.bytes / seconds / divisor), backgroundColor: PALETTE[i % PALETTE.length], stack: "rate" })),
    },
    options: {
      scales: { x: { stacked: true, title: { display: true, text: "time (UTC)" } }, y: { stacked: true, beginAtZero: true, title: { display: true, text: `${unit}/s` } } },
      plugins: { legend: { position: "bottom" }, tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.parsed.y.toFixed(2)} ${unit}/s` } } },
    },
  });
}

function qualityChart(groups, window) {
  return chartBox("quality-chart", {
    type: "line",
    data: {
      labels: (groups[0]?.buckets || []).map((b) => label(b.start, window)),
      datasets: groups.map((g, i) => ({
        label: g.key,
        data: g.buckets.map((b) => (b.done + b.failed ? (100 * b.done) / (b.done + b.failed) : null)),
        borderColor: PALETTE[i % PALETTE.length],
        backgroundColor: PALETTE[i % PALETTE.length],
        spanGaps: false,
        pointRadius: 4,
      })),
    },
    options: {
      scales: { y: { min: 0, max: 100, title: { display: true, text: "successful attempts (%)" } }, x: { title: { display: true, text: "time (UTC)" } } },
      plugins: { legend: { position: "bottom" } },
    },
  });
}

function queue(body, path, offset = 0, site) {
  return fill(body, async () => {
    const page = await api(path, { limit: 50, offset, site });
    return [
      table(
        [
          { label: "Kind", value: (t) => t.kind },
          { label: "State", value: (t) => badge(t.state) },
          { label: "File", cls: () => "wrap", value: (t) => el("span", { class: "mono" }, t.lfn) },
          { label: "Source", value: (t) => (t.source ? siteLink(t.source) : "–") },
          { label: "Destination", value: (t) => siteLink(t.destination) },
          { label: "Size", num: true, value: (t) => bytes(t.size) },
          { label: "Attempts", num: true, value: (t) => num(t.attempts) },
          { label: "Reason", cls: () => "wrap", value: (t) => t.reason || "" },
          { label: "Updated", value: (t) => when(t.updated) },
        ],
        page.items,
        { id: path.endsWith("held") ? "held-table" : "current-table", empty: "Empty." },
      ),
      pager(page, (o) => queue(body, path, o, site)),
    ];
  });
}

start(async (content) => {
  const q = params();
  const window = Number(q.get("window") || 86400);
  const by = q.get("by") || "link";
  const kind = q.get("kind") || "transfer";
  const site = q.get("site") || "";
  const form = el(
    "form",
    { class: "inline", method: "get", action: "/transfers", id: "window-form" },
    el("label", {}, "Window ", el("select", { name: "window", onchange: (e) => e.target.form.submit() }, WINDOWS.map(([v, t]) => el("option", { value: v, selected: Number(v) === window }, t)))),
    el("label", {}, "Group ", el("select", { name: "by", onchange: (e) => e.target.form.submit() }, GROUPS.map(([v, t]) => el("option", { value: v, selected: v === by }, t)))),
    el("label", {}, "Kind ", el("select", { name: "kind", onchange: (e) => e.target.form.submit() }, ["transfer", "deletion"].map((v) => el("option", { value: v, selected: v === kind }, v)))),
    el("input", { type: "text", name: "site", value: site, placeholder: "site (source or destination)", style: { minWidth: "200px" } }),
    el("button", { type: "submit" }, "Show"),
  );
  const plots = panel(null, async () => {
    const data = await api("/transfers/links", { window, buckets: BUCKETS });
    const links = data.links.filter((l) => l.kind === kind && (!site || l.source === site || l.destination === site));
    const groups = grouped(links, by);
    if (!groups.length) return el("p", { class: "muted" }, `No ${kind} finished in this window.`);
    return [
      el("div", { class: "grid2" }, el("div", {}, el("h2", {}, "Rate"), rateChart(groups, window)), el("div", {}, el("h2", {}, "Quality"), qualityChart(groups, window))),
      el("h3", {}, `Totals ${GROUPS.find(([v]) => v === by)[1]}`),
      table(
        [
          { label: by === "link" ? "Link" : by === "source" ? "Source" : "Destination", value: (g) => g.key },
          { label: "Done", num: true, value: (g) => num(g.done) },
          { label: "Failed", num: true, cls: (g) => (g.failed ? "bad" : ""), value: (g) => num(g.failed) },
          { label: "Volume", num: true, value: (g) => bytes(g.bytes) },
          { label: "Rate", num: true, value: (g) => `${bytes(g.bytes / window)}/s` },
          { label: "Quality", num: true, cls: (g) => (g.done + g.failed && g.done / (g.done + g.failed) < 0.5 ? "bad" : ""), value: (g) => (g.done + g.failed ? pct(g.done / (g.done + g.failed)) : "–") },
        ],
        groups,
        { id: "links-table" },
      ),
    ];
  });
  const summary = panel("Open files per state", async () => {
    const s = await api("/transfers/summary");
    return el("div", { class: "stats", id: "queue-totals" }, Object.entries(s.totals).map(([state, t]) => el("div", { class: `stat ${state === "held" ? "bad" : ""}` }, el("div", { class: "stat-value" }, num(t.files)), el("div", { class: "stat-label" }, `${state} · ${bytes(t.bytes)}`))), Object.keys(s.totals).length ? null : el("p", { class: "muted" }, "The queue is empty."));
  });
  const currentBody = el("div");
  const current = el("section", { class: "panel" }, el("h2", {}, "Current queue"), currentBody);
  current.loaded = queue(currentBody, "/transfers/current", 0, site);
  const heldBody = el("div");
  const held = el("section", { class: "panel", id: "held" }, el("h2", {}, "Held: waiting for an operator"), el("p", { class: "muted" }, "Release with POST /api/v1/transfers/held/release (operator)."), heldBody);
  held.loaded = queue(heldBody, "/transfers/held", 0, site);
  content.append(form, plots, summary, current, held);
  return [plots, summary, current, held];
});
