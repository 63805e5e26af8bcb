import { api, badge, bytes, datasetLink, el, fill, num, pager, params, start, table, when } from "../core.js";

function results(body, pattern, status, offset = 0) {
  return fill(body, async () => {
    const page = await api("/datasets", { name: pattern, status, limit: 100, offset });
    return [
      table(
        [
          { label: "Dataset", value: (d) => datasetLink(d.name) },
          { label: "Status", value: (d) => badge(d.status) },
          { label: "Type", value: (d) => d.data_type },
          { label: "Blocks", num: true, value: (d) => num(d.num_blocks) },
          { label: "Files", num: true, value: (d) => num(d.num_files) },
          { label: "Size", num: true, value: (d) => bytes(d.size) },
          { label: "Replicas", num: true, value: (d) => num(d.num_replicas) },
          { label: "Open", value: (d) => (d.is_open ? "open" : "closed") },
          { label: "Updated", value: (d) => when(d.last_update) },
        ],
        page.items,
        { id: "datasets-table", empty: "No dataset matches." },
      ),
      pager(page, (o) => results(body, pattern, status, o)),
    ];
  });
}

start(async (content) => {
  const q = params();
  const pattern = q.get("q") || "";
  const status = q.get("status") || "";
  const form = el(
    "form",
    { class: "inline", method: "get", action: "/datasets" },
    el("input", { type: "search", name: "q", value: pattern, placeholder: "name with wildcards, e.g. /SingleMuon/*/AOD" }),
    el("select", { name: "status" }, ["", "valid", "production", "invalid", "deprecated", "deleted", "unknown"].map((s) => el("option", { value: s, selected: s === status }, s || "any status"))),
    el("button", { type: "submit" }, "Search"),
  );
  const body = el("div");
  const box = el("section", { class: "panel" }, form, body);
  box.loaded = results(body, pattern, status);
  content.append(box);
  return [box];
});
