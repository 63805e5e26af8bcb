import { all, api, badge, bytes, el, link, num, occupancyBar, panel, problemBox, siteLink, start, stat, when } from "../core.js";

/** Per partition, one bar per site with a quota, fullest first. */
export function occupancyPanels(sites) {
  const partitions = new Map();
  for (const site of sites) {
    for (const u of site.usage) {
      if (!u.quota) continue;
      if (!partitions.has(u.partition)) partitions.set(u.partition, []);
      partitions.get(u.partition).push({ site: site.name, ...u });
    }
  }
  if (!partitions.size) return [el("p", { class: "muted" }, "No site has a quota.")];
  return [...partitions.entries()].map(([partition, rows]) =>
    el(
      "div",
      { class: "occ-partition", "data-partition": partition },
      el("h3", {}, `Partition ${partition}`),
      el("div", { class: "legend" }, el("span", {}, el("i", { style: { background: "#8a5d00" } }), "85% target"), el("span", {}, el("i", { style: { background: "#d2413a" } }), "90% trigger")),
      rows
        .sort((a, b) => b.occupancy - a.occupancy)
        .map((r) => el("div", { class: "occ-row" }, el("span", { class: "name" }, siteLink(r.site)), occupancyBar(r.used, r.quota), el("span", { class: "fig" }, `${bytes(r.used)} / ${bytes(r.quota)}`))),
    ),
  );
}

async function totals() {
  const [sites, datasets, stats] = await Promise.all([all("/sites"), api("/datasets", { limit: 1 }), api("/stats", { group_by: "site" })]);
  const blockReplicas = stats.rows.reduce((n, r) => n + r.replicas, 0);
  const volume = stats.rows.reduce((n, r) => n + r.size, 0);
  const replicas = sites.reduce((n, s) => n + s.dataset_replicas, 0);
  return el(
    "div",
    { class: "stats", id: "totals" },
    stat("sites", num(sites.length)),
    stat("datasets", num(datasets.total)),
    stat("dataset replicas", num(replicas)),
    stat("block replicas", num(blockReplicas)),
    stat("volume on sites", bytes(volume)),
    stat("inventory seq", num(stats.seq)),
  );
}

function alert(count, text, href, bad = count > 0) {
  return el("div", { class: `alert ${bad ? "bad" : "ok"}` }, el("span", { class: "count" }, num(count)), el("span", {}, link(href, text)));
}

async function alerts() {
  const rows = await Promise.allSettled([
    api("/transfers/replicas", { stuck_only: true, limit: 1 }).then((p) => alert(p.total, "stuck replicas (< 1% copied in the stuck window)", "/requests")),
    api("/transfers/held", { limit: 1 }).then((p) => alert(p.total, "held files waiting for an operator", "/transfers#held")),
    api("/consistency/sites", { attention: true, limit: 1 }).then((p) => alert(p.total, "sites flagged by consistency", "/consistency")),
  ]);
  return el(
    "div",
    { class: "alerts", id: "alerts" },
    rows.map((r, i) =>
      r.status === "fulfilled"
        ? r.value
        : el("div", { class: "alert" }, el("span", { class: "count" }, "?"), el("span", { class: "muted" }, `${["transfer", "transfer", "consistency"][i]}: ${r.reason.message}`)),
    ),
  );
}

async function cycles() {
  const parts = [];
  const detox = await api("/cycles", { limit: 5, kind: "real" }).catch((e) => e);
  parts.push(el("h3", {}, "Detox"));
  if (detox instanceof Error) parts.push(el("p", { class: "muted" }, detox.message));
  else
    parts.push(
      detox.items.length
        ? el(
            "table",
            { class: "data", id: "recent-detox" },
            el("tbody", {}, detox.items.map((c) => el("tr", {}, el("td", {}, link(`/detox/cycles/${c.id}`, `#${c.id}`)), el("td", {}, c.partition), el("td", {}, badge(c.status)), el("td", {}, when(c.started)), el("td", { class: "num" }, `${num(c.replicas_deleted)} deleted`), el("td", { class: "num" }, bytes(c.bytes_deleted))))),
          )
        : el("p", { class: "muted" }, "No cycle yet."),
    );
  const dealer = await api("/dealer/cycles", { limit: 5 }).catch((e) => e);
  parts.push(el("h3", {}, "Dealer"));
  if (dealer instanceof Error) parts.push(el("div", { id: "recent-dealer" }, problemBox(dealer)));
  else
    parts.push(
      el(
        "table",
        { class: "data", id: "recent-dealer" },
        el("tbody", {}, dealer.items.map((c) => el("tr", {}, el("td", {}, link("/dealer", `#${c.id}`)), el("td", {}, badge(c.status)), el("td", {}, when(c.started || c.created)), el("td", { class: "num" }, `${num(c.accepted)} accepted`), el("td", { class: "num" }, bytes(c.bytes_placed))))),
      ),
    );
  const checks = await api("/consistency/sites", { limit: 1000 }).catch((e) => e);
  parts.push(el("h3", {}, "Consistency"));
  if (checks instanceof Error) parts.push(el("div", { id: "recent-consistency" }, problemBox(checks)));
  else {
    const recent = checks.items.filter((r) => r.last_update).sort((a, b) => b.last_update.localeCompare(a.last_update)).slice(0, 5);
    parts.push(
      recent.length
        ? el(
            "table",
            { class: "data", id: "recent-consistency" },
            el("tbody", {}, recent.map((r) => el("tr", { class: r.attention ? "attention" : "" }, el("td", {}, link(`/consistency/${encodeURIComponent(r.site)}`, r.site)), el("td", {}, badge(r.action || r.status || "")), el("td", {}, when(r.last_update)), el("td", { class: "num" }, `${num(r.missing)} missing`), el("td", { class: "num" }, `${num(r.orphans)} orphans`)))),
          )
        : el("p", { class: "muted", id: "recent-consistency" }, "No check yet."),
    );
  }
  return parts;
}

start(async (content) => {
  const parts = [
    panel("Totals", totals),
    el("div", { class: "grid2" }, panel("Alerts", alerts), panel("Recent cycles", cycles)),
    panel("Occupancy per site and partition", async () => occupancyPanels(await all("/sites")), { id: "occupancy" }),
  ];
  content.append(...parts);
  return [parts[0], ...parts[1].children, parts[2]];
});
