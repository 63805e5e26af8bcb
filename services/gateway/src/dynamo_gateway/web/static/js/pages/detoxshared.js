// Pieces of the detox pages: the per-site record of a cycle as a chart and a table.
import { all, api, badge, bytes, chartBox, el, fill, link, num, occupancyBar, pager, pct, table, when } from "../core.js";

export function cyclesTable(items, id = "cycles-table") {
  return table(
    [
      { label: "Cycle", value: (c) => link(`/detox/cycles/${c.id}`, `#${c.id}`) },
      { label: "Kind", value: (c) => badge(c.kind, c.kind === "test" ? "test" : "") },
      { label: "Partition", value: (c) => c.partition },
      { label: "Status", value: (c) => badge(c.status) },
      { label: "Started", value: (c) => when(c.started || c.created) },
      { label: "By", value: (c) => c.requested_by || "schedule" },
      { label: "Sites", num: true, value: (c) => num(c.sites) },
      { label: "Triggered", num: true, cls: (c) => (c.sites_triggered ? "warn" : ""), value: (c) => num(c.sites_triggered) },
      { label: "Replicas deleted", num: true, value: (c) => num(c.replicas_deleted) },
      { label: "Volume deleted", num: true, value: (c) => bytes(c.bytes_deleted) },
      { label: "Handed over", num: true, value: (c) => bytes(c.bytes_handed_over) },
      { label: "Policy", value: (c) => el("span", { class: "mono", title: c.policy_digest }, c.policy_digest.slice(0, 8)) },
    ],
    items,
    { id, empty: "No cycle yet.", rowClass: (c) => (c.status === "failed" ? "attention" : "") },
  );
}

/** Occupancy before and after per site, with the 85% and 90% lines. */
export function beforeAfterChart(id, sites) {
  const rows = sites.filter((s) => s.quota > 0);
  return chartBox(
    id,
    {
      type: "bar",
      data: {
        labels: rows.map((s) => s.site),
        datasets: [
          { label: "before", data: rows.map((s) => 100 * s.occupancy_before), backgroundColor: "#9fb8d6" },
          { label: "after", data: rows.map((s) => 100 * s.occupancy_after), backgroundColor: "#1f4e79" },
        ],
      },
      options: {
        indexAxis: "y",
        scales: { x: { min: 0, suggestedMax: 100, title: { display: true, text: "occupancy (%)" } } },
        plugins: {
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.parsed.x.toFixed(1)}%` } },
          legend: { position: "bottom" },
        },
      },
      plugins: [marks],
    },
    Math.max(220, 60 + rows.length * 26),
  );
}

/** Vertical lines at 85% and 90% on a horizontal bar chart. */
const marks = {
  id: "marks",
  afterDatasetsDraw(c) {
    const x = c.scales.x;
    const { top, bottom } = c.chartArea;
    const ctx = c.ctx;
    for (const [v, colour] of [[85, "#8a5d00"], [90, "#d2413a"]]) {
      const px = x.getPixelForValue(v);
      ctx.save();
      ctx.strokeStyle = colour;
      ctx.setLineDash([4, 3]);
      ctx.beginPath();
      ctx.moveTo(px, top);
      ctx.lineTo(px, bottom);
      ctx.stroke();
      ctx.restore();
    }
  },
};

export function sitesTable(cycleId, sites, onSite) {
  return table(
    [
      { label: "Site", value: (s) => (onSite ? el("a", { href: `#decisions`, onclick: () => onSite(s.site) }, s.site) : s.site) },
      { label: "Before → after", value: (s) => occupancyBar(s.used_before, s.quota, { after: s.used_after }) },
      { label: "Before", num: true, value: (s) => pct(s.occupancy_before) },
      { label: "After", num: true, value: (s) => pct(s.occupancy_after) },
      { label: "Quota", num: true, value: (s) => bytes(s.quota) },
      { label: "Deleted", num: true, value: (s) => bytes(s.deleted) },
      { label: "Handed over", num: true, value: (s) => bytes(s.handed_over) },
      { label: "Protected", num: true, value: (s) => bytes(s.protected) },
      { label: "Triggered", value: (s) => (s.triggered ? badge("triggered", "running") : "") },
      { label: "Until held", value: (s) => (s.triggered ? (s.stopped ? "yes" : el("span", { class: "bad" }, "no")) : "") },
      { label: "Candidates left", num: true, value: (s) => num(s.candidates_left) },
    ],
    sites,
    { id: `cycle-${cycleId}-sites`, empty: "No site in this partition." },
  );
}

export async function cycleSites(cycleId) {
  return all(`/cycles/${cycleId}/sites`);
}

export function decisions(body, cycleId, site, decision = "", offset = 0) {
  return fill(body, async () => {
    const page = await api(`/cycles/${cycleId}/sites/${encodeURIComponent(site)}/decisions`, { decision, limit: 100, offset });
    const select = el(
      "select",
      { onchange: () => decisions(body, cycleId, site, select.value) },
      ["", "delete", "keep", "protect"].map((d) => el("option", { value: d, selected: d === decision }, d || "every decision")),
    );
    return [
      el("div", { class: "inline" }, el("h3", {}, `Decisions at ${site} `), select),
      table(
        [
          { label: "Dataset", value: (d) => el("span", { class: "mono" }, d.dataset) },
          { label: "Blocks", value: (d) => (d.blocks ? d.blocks.join(", ") : "all") },
          { label: "Decision", value: (d) => badge(d.decision) },
          { label: "Action", value: (d) => d.action },
          { label: "Line", num: true, value: (d) => d.line },
          { label: "Rule", value: (d) => el("span", { class: "mono" }, d.rule) },
          { label: "Size", num: true, value: (d) => bytes(d.size) },
          { label: "Iteration", num: true, value: (d) => d.iteration },
        ],
        page.items,
        { id: "decisions-table", empty: "No decision of this kind." },
      ),
      pager(page, (o) => decisions(body, cycleId, site, decision, o)),
    ];
  });
}

