import { api, apiUrl, badge, bytes, clear, duration, el, fill, link, num, pager, panel, pathRest, start, table, when } from "../core.js";

const site = pathRest("/consistency/");
const LISTS = [
  ["missing", "Missing"],
  ["orphans", "Orphans"],
  ["unrecoverable", "No source"],
  ["unlisted", "Unlisted directories"],
  ["empty", "Empty directories removed"],
];

function list(body, runId, kind, offset = 0) {
  return fill(body, async () => {
    const page = await api(`/consistency/runs/${runId}/${kind}`, { limit: 100, offset });
    return [
      el("p", {}, link(apiUrl(`/consistency/runs/${runId}/${kind}`, { format: "text" }), `Download the whole list (${num(page.total)} lines)`, { download: "" })),
      table(
        [
          { label: "Path", cls: () => "wrap", value: (f) => el("span", { class: "mono" }, f.path) },
          { label: "Size", num: true, value: (f) => bytes(f.size) },
          { label: "Dataset", value: (f) => el("span", { class: "mono" }, f.dataset || "–") },
          { label: "Strike", num: true, value: (f) => num(f.strike) },
          { label: "Source", value: (f) => f.source || (f.unrecoverable ? el("span", { class: "bad" }, "none") : "–") },
          { label: "Acted", value: (f) => (f.acted ? "yes" : "") },
          { label: "Note", value: (f) => f.note || "" },
        ],
        page.items,
        { id: `list-${kind}`, empty: "Empty list." },
      ),
      pager(page, (o) => list(body, runId, kind, o)),
    ];
  });
}

function runFacts(run) {
  return el(
    "dl",
    { class: "facts", id: "run-facts" },
    el("dt", {}, "Check"), el("dd", {}, `#${run.id} by ${run.worker}${run.dry_run ? " (dry run)" : ""}`),
    el("dt", {}, "When"), el("dd", {}, `${when(run.started)} → ${when(run.finished)} (${duration(run.duration)})`),
    el("dt", {}, "Status"), el("dd", {}, badge(run.status), " ", badge(run.action), run.reason ? ` ${run.reason}` : ""),
    el("dt", {}, "Listed"), el("dd", {}, `${num(run.files_listed)} files in ${num(run.dirs_listed)} directories (${num(run.unlisted_dirs)} unlisted) over ${run.protocol || "–"}`),
    el("dt", {}, "Expected"), el("dd", {}, `${num(run.expected_files)} files`),
    el("dt", {}, "Missing"), el("dd", {}, `${num(run.missing_files)} files, ${bytes(run.missing_bytes)} in ${num(run.missing_blocks)} blocks; ${num(run.missing_confirmed)} confirmed, ${num(run.unrecoverable_files)} with no source`),
    el("dt", {}, "Orphans"), el("dd", {}, `${num(run.orphan_files)} files, ${bytes(run.orphan_bytes)}; ${num(run.ignored_files)} ignored`),
    el("dt", {}, "Skipped"), el("dd", {}, `${num(run.skipped_recent)} recent, ${num(run.skipped_in_flight)} in flight, ${num(run.skipped_unlisted)} in unlisted directories`),
    el("dt", {}, "Requested"), el("dd", {}, `${num(run.transfers_requested)} transfers, ${num(run.deletions_requested)} deletions, ${num(run.replicas_reported)} replicas reported`),
    run.error ? [el("dt", {}, "Error"), el("dd", { class: "bad" }, run.error)] : null,
  );
}

start(async (content) => {
  const state = await api(`/consistency/sites/${encodeURIComponent(site)}`);
  const head = el(
    "section",
    { class: "panel" },
    el("dl", { class: "facts" },
      el("dt", {}, "State"), el("dd", {}, badge(state.state), state.state_reason ? ` ${state.state_reason}` : ""),
      el("dt", {}, "Last check"), el("dd", {}, when(state.last_check)),
      el("dt", {}, "Approval"), el("dd", {}, state.approval_pending ? `run #${state.approval_pending} approved, waiting` : "–"),
      el("dt", {}, "Inventory"), el("dd", {}, link(`/sites/${encodeURIComponent(site)}`, "the site's replicas")),
    ),
  );
  const runs = await api(`/consistency/sites/${encodeURIComponent(site)}/runs`, { limit: 20 });
  const history = panel("Checks", async () =>
    table(
      [
        { label: "#", value: (r) => el("a", { href: "#run", onclick: () => show(r) }, `#${r.id}`) },
        { label: "Finished", value: (r) => when(r.finished) },
        { label: "Time", num: true, value: (r) => duration(r.duration) },
        { label: "Files", num: true, value: (r) => num(r.files_listed) },
        { label: "Missing", num: true, value: (r) => num(r.missing_files) },
        { label: "No source", num: true, value: (r) => num(r.unrecoverable_files) },
        { label: "Orphans", num: true, value: (r) => num(r.orphan_files) },
        { label: "Action", value: (r) => badge(r.action) },
      ],
      runs.items,
      { id: "runs-table", empty: "Never checked.", rowClass: (r) => (r.status === "failed" || r.action === "flagged" ? "attention" : "") },
    ),
  );
  const detail = el("section", { class: "panel", id: "run" });
  function show(run) {
    const body = el("div");
    const tabs = el(
      "div",
      { class: "tabs" },
      LISTS.map(([kind, label]) => {
        const b = el("button", { type: "button", "data-list": kind }, label);
        b.addEventListener("click", () => {
          for (const other of tabs.children) other.classList.toggle("current", other === b);
          list(body, run.id, kind);
        });
        return b;
      }),
    );
    clear(detail, el("h2", {}, `Check #${run.id}`), runFacts(run), el("h3", {}, "Lists"), tabs, body);
    tabs.children[0].classList.add("current");
    return list(body, run.id, "missing");
  }
  content.append(head, history, detail);
  if (runs.items.length) detail.loaded = show(runs.items[0]);
  else detail.append(el("p", { class: "muted" }, "No check yet."));
  return [history, detail];
}, `Consistency: ${site}`);
