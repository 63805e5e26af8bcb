import { api, badge, bytes, datasetLink, el, fill, num, pager, panel, params, progressBar, siteLink, start, table, when } from "../core.js";

/** Replicas in flight of one kind (copies or deletions), stuck ones first and in red. */
const STUCK = [["", "5 days (default)"], ["86400", "1 day"], ["3600", "1 hour"], ["60", "1 minute"]];
const stuckWindow = params().get("stuck") || "";
if (stuckWindow && !STUCK.some(([v]) => v === stuckWindow)) STUCK.push([stuckWindow, `${stuckWindow} s`]);

function inFlight(body, kind, offset = 0) {
  return fill(body, async () => {
    const page = await api("/transfers/replicas", { kind, limit: 50, offset, stuck_window: stuckWindow });
    return [
      table(
        [
          { label: "Dataset", value: (r) => datasetLink(r.dataset) },
          { label: "Block", value: (r) => el("span", { class: "mono" }, r.block) },
          { label: "Site", value: (r) => siteLink(r.site) },
          { label: "Group", value: (r) => r.group || "–" },
          { label: kind === "transfer" ? "Copied" : "Deleted", value: (r) => progressBar(r.bytes_done, r.bytes_total, r.stuck) },
          { label: "Files", num: true, value: (r) => `${num(r.files_done)} / ${num(r.files_total)}` },
          { label: "Held", num: true, cls: (r) => (r.files_held ? "bad" : ""), value: (r) => num(r.files_held) },
          { label: "Volume", num: true, value: (r) => `${bytes(r.bytes_done)} / ${bytes(r.bytes_total)}` },
          { label: "Requested", value: (r) => when(r.created) },
          { label: "Last progress", value: (r) => when(r.last_progress) },
          { label: "", value: (r) => (r.stuck ? badge("stuck") : "") },
        ],
        page.items,
        { id: `${kind}-requests`, rowClass: (r) => (r.stuck ? "stuck" : ""), empty: `No ${kind === "transfer" ? "copy" : "deletion"} in flight.` },
      ),
      pager(page, (o) => inFlight(body, kind, o)),
    ];
  });
}

function section(title, kind) {
  const body = el("div");
  const stuck =
    kind === "transfer"
      ? el(
          "form",
          { class: "inline", method: "get", action: "/requests" },
          el("span", { class: "muted" }, "Red rows are stuck: less than 1% copied within "),
          el("select", { name: "stuck", onchange: (e) => e.target.form.submit() }, STUCK.map(([v, t]) => el("option", { value: v, selected: v === stuckWindow }, t))),
        )
      : null;
  const node = el("section", { class: "panel" }, el("h2", {}, title), stuck, body);
  node.loaded = inFlight(body, kind);
  return node;
}

start(async (content) => {
  const dealer = panel("Copy requests (dealer)", async () => {
    const page = await api("/dealer/requests", { limit: 100 });
    return table(
      [
        { label: "Request", num: true, value: (r) => `#${r.id}` },
        { label: "Requester", value: (r) => r.requester },
        { label: "State", value: (r) => badge(r.state, { completed: "done", rejected: "failed", cancelled: "failed", activated: "running", new: "queued" }[r.state]) },
        { label: "Items", cls: () => "wrap", value: (r) => el("span", { class: "mono" }, r.items.join(" ")) },
        { label: "Sites", value: (r) => (r.sites.length ? r.sites.join(", ") : `${r.n_copies} copies anywhere`) },
        { label: "Group", value: (r) => r.group },
        { label: "Size", num: true, value: (r) => bytes(r.size) },
        { label: "Comment", cls: () => "wrap", value: (r) => r.comment },
        { label: "Reason", cls: () => "wrap", value: (r) => r.reason || "" },
        { label: "Created", value: (r) => when(r.created) },
      ],
      page.items,
      { id: "dealer-requests", empty: "No copy request.", rowClass: (r) => (r.state === "rejected" ? "attention" : "") },
    );
  });
  const parts = [dealer, section("Copies in flight", "transfer"), section("Deletions in flight", "deletion")];
  content.append(...parts);
  return parts;
});
