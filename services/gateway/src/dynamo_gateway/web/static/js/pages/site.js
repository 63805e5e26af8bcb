import { api, badge, bytes, datasetLink, el, fill, link, num, occupancyBar, pager, panel, pathRest, start, stat, table, when } from "../core.js";

const name = pathRest("/sites/");

function replicas(body, offset = 0, pattern = "") {
  return fill(body, async () => {
    const page = await api(`/sites/${encodeURIComponent(name)}/replicas`, { limit: 50, offset, dataset: pattern });
    return [
      table(
        [
          { label: "Dataset", value: (r) => datasetLink(r.dataset) },
          { label: "Group", value: (r) => r.group },
          { label: "Blocks", num: true, value: (r) => num(r.num_blocks) },
          { label: "Size", num: true, value: (r) => bytes(r.size) },
          { label: "Complete", value: (r) => (r.is_complete ? badge("complete", "done") : badge("incomplete", "running")) },
          { label: "Updated", value: (r) => when(r.last_update) },
        ],
        page.items,
        { id: "site-replicas", empty: "No replica here." },
      ),
      pager(page, (o) => replicas(body, o, pattern)),
    ];
  });
}

start(async (content) => {
  // An unknown site is one message, not one per panel.
  const site = await api(`/sites/${encodeURIComponent(name)}`);
  const facts = panel(null, async () =>
    el(
      "div",
      { class: "grid2" },
      el(
        "dl",
        { class: "facts", id: "site-facts" },
        el("dt", {}, "Storage"), el("dd", {}, site.storage_type),
        el("dt", {}, "Status"), el("dd", {}, badge(site.status)),
        el("dt", {}, "Host"), el("dd", {}, site.host || "–"),
        el("dt", {}, "Dataset replicas"), el("dd", {}, num(site.dataset_replicas)),
        el("dt", {}, "Volume"), el("dd", {}, bytes(site.used)),
        el("dt", {}, "Protocols"), el("dd", {}, site.protocols.map((p) => el("div", { class: "mono" }, `${p.name}: ${p.rules.map((r) => `${r.match} → ${r.result}`).join("; ")}`))),
        el("dt", {}, "Elsewhere"), el("dd", {}, link(`/consistency/${encodeURIComponent(name)}`, "consistency checks"), " · ", link(`/transfers?site=${encodeURIComponent(name)}`, "transfers")),
      ),
      el("div", {}, site.usage.map((u) => el("div", { class: "occ-row" }, el("span", {}, u.partition), occupancyBar(u.used, u.quota), el("span", { class: "fig" }, `${bytes(u.used)} / ${bytes(u.quota)}`)))),
    ),
  );
  const body = el("div");
  const filter = el("input", { type: "search", placeholder: "dataset pattern, e.g. /A*/*/AOD" });
  const list = el(
    "section",
    { class: "panel" },
    el("h2", {}, "Dataset replicas"),
    el("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); replicas(body, 0, filter.value); } }, filter, el("button", { type: "submit" }, "Filter")),
    body,
  );
  list.loaded = replicas(body);
  const enc = encodeURIComponent(name);
  const transfers = panel("Transfers", async () => {
    const [incoming, outgoing, held] = await Promise.all([
      api("/transfers/current", { site: name, limit: 1 }),
      api("/transfers/current", { source: name, limit: 1 }),
      api("/transfers/held", { site: name, limit: 1 }),
    ]);
    return el(
      "div",
      { class: "stats", id: "site-transfers" },
      stat("files coming in", num(incoming.total)),
      stat("files going out", num(outgoing.total)),
      stat("held here", num(held.total), held.total ? "bad" : ""),
      el("div", { class: "stat" }, link(`/transfers?site=${enc}`, "rates and queues ›")),
    );
  });
  const consistency = panel("Consistency", async () => {
    const runs = await api(`/consistency/sites/${enc}/runs`, { limit: 1 });
    if (!runs.items.length) return el("p", { class: "muted" }, "Never checked.");
    const r = runs.items[0];
    return el(
      "div",
      { class: "stats", id: "site-consistency" },
      stat("last check", when(r.finished)),
      stat("files listed", num(r.files_listed)),
      stat("missing", num(r.missing_files), r.missing_files ? "warn" : ""),
      stat("no source", num(r.unrecoverable_files), r.unrecoverable_files ? "bad" : ""),
      stat("orphans", num(r.orphan_files), r.orphan_files ? "warn" : ""),
      el("div", { class: "stat" }, badge(r.action), " ", link(`/consistency/${enc}`, "details ›")),
    );
  });
  content.append(facts, el("div", { class: "grid2" }, transfers, consistency), list);
  return [facts, transfers, consistency, list];
}, name);
