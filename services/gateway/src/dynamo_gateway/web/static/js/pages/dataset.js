import { api, badge, bytes, el, fill, num, pager, panel, pathRest, progressBar, siteLink, start, table, when } from "../core.js";

const name = `/${pathRest("/datasets/")}`;

function files(body, block, offset = 0) {
  return fill(body, async () => {
    const page = await api("/files", { dataset: name, block, limit: 100, offset });
    return [
      el("h3", {}, `Files of block ${block}`),
      table(
        [
          { label: "LFN", value: (f) => el("span", { class: "mono" }, f.lfn) },
          { label: "Size", num: true, value: (f) => bytes(f.size) },
          { label: "adler32", value: (f) => el("span", { class: "mono" }, f.adler32 || "–") },
        ],
        page.items,
        { id: "files-table", empty: "No file registered." },
      ),
      pager(page, (o) => files(body, block, o)),
    ];
  });
}

start(async (content) => {
  const dataset = await api("/dataset", { name });
  const facts = el(
    "section",
    { class: "panel" },
    el("div", { class: "stats", id: "dataset-facts" },
      el("div", { class: "stat" }, el("div", { class: "stat-value" }, badge(dataset.status)), el("div", { class: "stat-label" }, "status")),
      el("div", { class: "stat" }, el("div", { class: "stat-value" }, bytes(dataset.size)), el("div", { class: "stat-label" }, "size")),
      el("div", { class: "stat" }, el("div", { class: "stat-value" }, num(dataset.num_blocks)), el("div", { class: "stat-label" }, "blocks")),
      el("div", { class: "stat" }, el("div", { class: "stat-value" }, num(dataset.num_files)), el("div", { class: "stat-label" }, "files")),
      el("div", { class: "stat" }, el("div", { class: "stat-value" }, num(dataset.num_replicas)), el("div", { class: "stat-label" }, "replicas")),
      el("div", { class: "stat" }, el("div", { class: "stat-value" }, dataset.data_type || "–"), el("div", { class: "stat-label" }, "type")),
      el("div", { class: "stat" }, el("div", { class: "stat-value" }, dataset.is_open ? "open" : "closed"), el("div", { class: "stat-label" }, when(dataset.last_update))),
    ),
  );
  const where = panel("Where its replicas are", async () =>
    table(
      [
        { label: "Site", value: (r) => siteLink(r.site) },
        { label: "Group", value: (r) => r.group },
        { label: "Blocks", num: true, value: (r) => `${num(r.num_blocks)} / ${num(dataset.num_blocks)}` },
        { label: "Present", value: (r) => progressBar(r.size, dataset.size) },
        { label: "Size", num: true, value: (r) => bytes(r.size) },
        { label: "State", value: (r) => (r.is_complete ? badge("complete", "done") : badge("incomplete", "running")) },
        { label: "Custodial", value: (r) => ((r.block_replicas || []).some((b) => b.is_custodial) ? "yes" : "") },
        { label: "Updated", value: (r) => when(r.last_update) },
      ],
      dataset.replicas,
      { id: "replicas-table", empty: "No replica anywhere." },
    ),
  );
  const filesBody = el("div", { id: "files" }, el("p", { class: "muted" }, "Choose a block to list its files."));
  const blocks = panel("Blocks", async () =>
    table(
      [
        { label: "Block", value: (b) => el("a", { href: "#files", class: "mono", onclick: () => files(filesBody, b.name) }, b.name) },
        { label: "Files", num: true, value: (b) => num(b.num_files) },
        { label: "Size", num: true, value: (b) => bytes(b.size) },
        { label: "Open", value: (b) => (b.is_open ? "open" : "closed") },
        { label: "Replicas at", value: (b) => (b.replicas.length ? b.replicas.flatMap((s, i) => [i ? ", " : "", siteLink(s)]) : el("span", { class: "bad" }, "nowhere")) },
        { label: "Updated", value: (b) => when(b.last_update) },
      ],
      dataset.blocks,
      { id: "blocks-table", empty: "No block." },
    ),
  );
  const filesPanel = el("section", { class: "panel" }, filesBody);
  content.append(facts, where, blocks, filesPanel);
  return [where, blocks];
}, name);
