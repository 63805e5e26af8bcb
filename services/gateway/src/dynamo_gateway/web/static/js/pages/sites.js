import { all, badge, bytes, el, num, occupancyBar, panel, params, siteLink, start, table } from "../core.js";

start(async (content) => {
  const pattern = params().get("q") || "";
  const form = el(
    "form",
    { class: "inline", method: "get", action: "/sites" },
    el("input", { type: "search", name: "q", value: pattern, placeholder: "site pattern, e.g. T2_*" }),
    el("button", { type: "submit" }, "Filter"),
  );
  const list = panel(null, async () => {
    const sites = await all("/sites", { name: pattern });
    const partitions = [...new Set(sites.flatMap((s) => s.usage.filter((u) => u.quota).map((u) => u.partition)))].sort();
    const columns = [
      { label: "Site", value: (s) => siteLink(s.name) },
      { label: "Type", value: (s) => s.storage_type },
      { label: "Status", value: (s) => badge(s.status) },
      { label: "Replicas", num: true, value: (s) => num(s.dataset_replicas) },
      { label: "Used", num: true, value: (s) => bytes(s.used) },
      ...partitions.map((p) => ({
        label: p,
        value: (s) => {
          const u = s.usage.find((x) => x.partition === p);
          return u && u.quota ? occupancyBar(u.used, u.quota) : el("span", { class: "muted" }, "–");
        },
      })),
    ];
    return [table(columns, sites, { id: "sites-table", empty: "No site matches." }), el("p", { class: "muted count" }, `${num(sites.length)} sites`)];
  });
  content.append(form, list);
  return [list];
});
