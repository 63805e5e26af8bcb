import { api, badge, bytes, el, fill, link, pager, panel, params, start, table, when } from "../core.js";
import { beforeAfterChart, cycleSites, cyclesTable } from "./detoxshared.js";

function cycles(body, kind, offset = 0) {
  return fill(body, async () => {
    const page = await api("/cycles", { kind, limit: 25, offset });
    return [cyclesTable(page.items), pager(page, (o) => cycles(body, kind, o))];
  });
}

/** "Why was X deleted": every decision about a dataset across real cycles. */
function why(body, dataset, site) {
  return fill(body, async () => {
    const page = await api("/decisions", { dataset, site, limit: 200 });
    return table(
      [
        { label: "Cycle", value: (d) => link(`/detox/cycles/${d.cycle_id}`, `#${d.cycle_id}`) },
        { label: "Started", value: (d) => when(d.started) },
        { label: "Site", value: (d) => d.site },
        { label: "Dataset", value: (d) => el("span", { class: "mono" }, d.dataset) },
        { label: "Decision", value: (d) => badge(d.decision) },
        { label: "Line", num: true, value: (d) => d.line },
        { label: "Because", value: (d) => el("span", { class: "mono" }, d.rule) },
        { label: "Size", num: true, value: (d) => bytes(d.size) },
      ],
      page.items,
      { id: "why-table", empty: "No decision about it in any real cycle." },
    );
  });
}

start(async (content) => {
  const q = params();
  const kind = q.get("kind") || "";
  const cycleBody = el("div");
  const tabs = el(
    "div",
    { class: "tabs" },
    [["", "All"], ["real", "Real cycles"], ["test", "Test runs"]].map(([k, label]) => el("a", { href: k ? `/detox?kind=${k}` : "/detox" }, el("button", { type: "button", class: k === kind ? "current" : "" }, label))),
    el("a", { href: "/detox/test", style: { marginLeft: "auto" } }, el("button", { type: "button" }, "Test a policy…")),
  );
  const list = el("section", { class: "panel" }, el("h2", {}, "Cycles"), tabs, cycleBody);
  list.loaded = cycles(cycleBody, kind);

  const latest = panel("Last real cycle: occupancy before and after", async () => {
    const page = await api("/cycles", { kind: "real", status: "done", limit: 1 });
    if (!page.items.length) return el("p", { class: "muted" }, "No finished real cycle yet.");
    const c = page.items[0];
    const sites = await cycleSites(c.id);
    return [el("p", {}, link(`/detox/cycles/${c.id}`, `Cycle #${c.id}`), ` · partition ${c.partition} · ${when(c.started)} · ${bytes(c.bytes_deleted)} deleted`), beforeAfterChart("latest-chart", sites)];
  });

  const whyBody = el("div", { id: "why" });
  const dataset = el("input", { type: "search", name: "dataset", value: q.get("dataset") || "", placeholder: "dataset name or pattern", required: true });
  const site = el("input", { type: "text", name: "site", value: q.get("site") || "", placeholder: "site (optional)", style: { minWidth: "180px" } });
  const whyPanel = el(
    "section",
    { class: "panel" },
    el("h2", {}, "Why was it deleted?"),
    el("form", { class: "inline", id: "why-form", onsubmit: (e) => { e.preventDefault(); why(whyBody, dataset.value, site.value); } }, dataset, site, el("button", { type: "submit" }, "Search")),
    whyBody,
  );
  if (dataset.value) whyPanel.loaded = why(whyBody, dataset.value, site.value);
  content.append(el("div", { class: "grid2" }, latest, whyPanel), list);
  return [latest, whyPanel, list];
});
