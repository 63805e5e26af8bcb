import { api, badge, bytes, chartBox, datasetLink, el, fill, num, pager, panel, params, pct, progressBar, siteLink, start, stat, table, when } from "../core.js";

/** Copied versus total volume of the dealer's replicas in flight, in total and per site. */
async function volume() {
  const m = await api("/dealer/monitoring");
  const t = m.total;
  const sites = [...m.sites].sort((a, b) => b.total - a.total || a.site.localeCompare(b.site));
  return [
    el(
      "div",
      { class: "stats", id: "dealer-totals" },
      stat("copied", bytes(t.copied)),
      stat("total in flight", bytes(t.total)),
      stat("progress", t.total ? pct(t.copied / t.total) : "–"),
      stat("replicas in flight", num(t.replicas)),
      stat(`stuck (< 1% in ${num(m.stuck_days)} days)`, num(t.stuck), t.stuck ? "bad" : ""),
    ),
    sites.length
      ? chartBox(
          "dealer-volume-chart",
          {
            type: "bar",
            data: {
              labels: sites.map((s) => s.site),
              datasets: [
                { label: "copied", data: sites.map((s) => s.copied), backgroundColor: "#2f7bd3", stack: "v" },
                { label: "still missing", data: sites.map((s) => s.total - s.copied), backgroundColor: "#c9d6e6", stack: "v" },
              ],
            },
            options: {
              indexAxis: "y",
              scales: { x: { stacked: true, ticks: { callback: (v) => bytes(v) } }, y: { stacked: true } },
              plugins: { legend: { position: "bottom" }, tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${bytes(c.parsed.x)}` } } },
            },
          },
          Math.max(160, 60 + sites.length * 28),
        )
      : null,
    table(
      [
        { label: "Site", value: (s) => siteLink(s.site) },
        { label: "Copied", value: (s) => progressBar(s.copied, s.total, false) },
        { label: "Copied", num: true, value: (s) => bytes(s.copied) },
        { label: "Total", num: true, value: (s) => bytes(s.total) },
        { label: "Replicas", num: true, value: (s) => num(s.replicas) },
        { label: "Stuck", num: true, cls: (s) => (s.stuck ? "bad" : ""), value: (s) => num(s.stuck) },
      ],
      sites,
      { id: "dealer-sites", empty: "Nothing in flight." },
    ),
  ];
}

function inFlight(body, site, offset = 0) {
  return fill(body, async () => {
    const page = await api("/dealer/monitoring/replicas", { site, limit: 50, offset });
    return [
      table(
        [
          { label: "Dataset", value: (r) => datasetLink(r.dataset) },
          { label: "Block", value: (r) => el("span", { class: "mono" }, r.block || "all") },
          { label: "Site", value: (r) => siteLink(r.site) },
          { label: "Progress", value: (r) => progressBar(r.copied, r.total, r.stuck) },
          { label: "Copied (total)", num: true, value: (r) => `${bytes(r.copied)} / ${bytes(r.total)}` },
          { label: "Placed", value: (r) => when(r.placed) },
          { label: "Last 1% step", value: (r) => when(r.last_progress) },
          { label: "", value: (r) => (r.stuck ? badge("stuck") : "") },
        ],
        page.items,
        { id: "dealer-replicas", rowClass: (r) => (r.stuck ? "stuck" : ""), empty: "No replica in flight." },
      ),
      pager(page, (o) => inFlight(body, site, o)),
    ];
  });
}

async function compliance() {
  const page = await api("/dealer/compliance", { limit: 500 });
  return table(
    [
      { label: "Rule", value: (r) => el("strong", {}, r.rule) },
      { label: "File", value: (r) => el("span", { class: "mono" }, r.file) },
      { label: "Copies", num: true, value: (r) => num(r.num_copies) },
      { label: "Protect", value: (r) => (r.protect ? "yes" : "") },
      { label: "Datasets", num: true, value: (r) => num(r.datasets) },
      { label: "Compliant", value: (r) => progressBar(r.there, r.datasets, r.missing > 0) },
      { label: "There", num: true, value: (r) => num(r.there) },
      { label: "In flight", num: true, value: (r) => num(r.in_flight) },
      { label: "Missing", num: true, cls: (r) => (r.missing ? "bad" : ""), value: (r) => num(r.missing) },
    ],
    page.items,
    { id: "compliance-table", empty: "No enforcer rule configured." },
  );
}

function decisions(body, cycleId, decision = "", offset = 0) {
  return fill(body, async () => {
    const page = await api(`/dealer/cycles/${cycleId}/decisions`, { decision, limit: 100, offset });
    const select = el(
      "select",
      { onchange: () => decisions(body, cycleId, select.value) },
      ["", "accepted", "rejected", "deferred", "merged"].map((d) => el("option", { value: d, selected: d === decision }, d || "every decision")),
    );
    return [
      el("div", { class: "inline" }, el("h3", {}, `Decisions of cycle #${cycleId} `), select),
      table(
        [
          { label: "Plugin", value: (d) => d.plugin },
          { label: "Reference", value: (d) => d.reference },
          { label: "Dataset", value: (d) => datasetLink(d.dataset) },
          { label: "Block", value: (d) => d.block || "all" },
          { label: "Site", value: (d) => (d.site ? siteLink(d.site) : "–") },
          { label: "Priority", num: true, value: (d) => d.priority },
          { label: "Decision", value: (d) => badge(d.decision, d.decision === "accepted" ? "done" : d.decision === "rejected" ? "failed" : "queued") },
          { label: "Reason", cls: () => "wrap", value: (d) => d.reason || d.proposal_reason },
          { label: "Volume", num: true, value: (d) => bytes(d.volume) },
        ],
        page.items,
        { id: "dealer-decisions", empty: "No decision of this kind." },
      ),
      pager(page, (o) => decisions(body, cycleId, decision, o)),
    ];
  });
}

start(async (content) => {
  const site = params().get("site") || "";
  const decisionsBody = el("div", { id: "dealer-decisions-box" });
  const cycles = panel("Cycles", async () => {
    const page = await api("/dealer/cycles", { limit: 20 });
    if (page.items.length) decisions(decisionsBody, page.items[0].id);
    return table(
      [
        { label: "Cycle", value: (c) => el("a", { href: "#dealer-decisions-box", onclick: () => decisions(decisionsBody, c.id) }, `#${c.id}`) },
        { label: "Status", value: (c) => [badge(c.status), c.dry_run ? [" ", badge("dry run", "test")] : null] },
        { label: "Started", value: (c) => when(c.started || c.created) },
        { label: "By", value: (c) => c.requested_by || "schedule" },
        { label: "Proposals", num: true, value: (c) => num(c.proposals) },
        { label: "Accepted", num: true, value: (c) => num(c.accepted) },
        { label: "Rejected", num: true, value: (c) => num(c.rejected) },
        { label: "Deferred", num: true, value: (c) => num(c.deferred) },
        { label: "Merged", num: true, value: (c) => num(c.merged) },
        { label: "Placed", num: true, value: (c) => bytes(c.bytes_placed) },
        { label: "Per plugin", value: (c) => Object.entries(c.per_plugin).map(([p, n]) => el("div", {}, el("strong", {}, p), ": ", Object.entries(n).map(([k, v]) => (k === "bytes" ? bytes(v) : `${num(v)} ${k}`)).join(", "))) },
      ],
      page.items,
      { id: "dealer-cycles", empty: "No cycle yet.", rowClass: (c) => (c.status === "failed" ? "attention" : "") },
    );
  });
  const flightBody = el("div");
  const flight = el("section", { class: "panel" }, el("h2", {}, "Replicas in flight"), el("p", { class: "muted" }, "Red rows are stuck: less than 1% copied in the stuck window."), flightBody);
  flight.loaded = inFlight(flightBody, site);
  const parts = [
    panel("Copied versus total volume", volume),
    flight,
    panel("Enforcer compliance per rule", compliance),
    cycles,
  ];
  const decisionsPanel = el("section", { class: "panel" }, decisionsBody);
  content.append(...parts, decisionsPanel);
  return parts;
});
