import { all, badge, bytes, el, link, num, panel, params, start, table, when } from "../core.js";

const site = (name) => link(`/consistency/${encodeURIComponent(name)}`, name);

/** The summary table of the monitoring seed: one row per site, red where a person is needed. */
export function summaryTable(rows) {
  return table(
    [
      { label: "Last update", value: (r) => (r.run_id ? when(r.last_update) : el("span", { class: "muted" }, "never checked")) },
      { label: "Site", value: (r) => site(r.site) },
      { label: "State", value: (r) => [badge(r.state), r.running ? [" ", badge("running")] : null, r.approval_pending ? [" ", badge("approval queued", "queued")] : null] },
      { label: "Time [min]", num: true, value: (r) => num(r.time_minutes) },
      { label: "Files", num: true, value: (r) => num(r.files) },
      { label: "Directories", num: true, value: (r) => num(r.nodes) },
      { label: "Unlisted", num: true, cls: (r) => (r.unlisted ? "bad" : ""), value: (r) => num(r.unlisted) },
      { label: "Empty", num: true, value: (r) => num(r.empty_nodes) },
      { label: "Missing", num: true, cls: (r) => (r.missing ? "warn" : ""), value: (r) => (r.missing === null ? "–" : `${num(r.missing)} [${num(r.missing_blocks)} blocks]`) },
      { label: "No source", num: true, cls: (r) => (r.no_source ? "bad" : ""), value: (r) => num(r.no_source) },
      { label: "Size", num: true, title: "missing volume", value: (r) => bytes(r.missing_bytes) },
      { label: "Orphans", num: true, cls: (r) => (r.orphans ? "warn" : ""), value: (r) => num(r.orphans) },
      { label: "Size", num: true, title: "orphan volume", value: (r) => bytes(r.orphan_bytes) },
      { label: "Action", value: (r) => (r.action ? badge(r.action) : "–") },
      { label: "Why", cls: () => "wrap", value: (r) => r.reason || r.state_reason || "" },
    ],
    rows,
    { id: "consistency-summary", rowClass: (r) => (r.attention ? "attention" : ""), empty: "No site." },
  );
}

start(async (content) => {
  const view = params().get("view") || "all";
  const tabs = el(
    "div",
    { class: "tabs" },
    [["all", "All sites"], ["attention", "Sites that need a person"], ["ok", "Debugged sites"]].map(([k, label]) => el("a", { href: `/consistency?view=${k}` }, el("button", { type: "button", class: k === view ? "current" : "" }, label))),
  );
  const summary = panel(null, async () => {
    const attention = view === "attention" ? true : view === "ok" ? false : undefined;
    const rows = await all("/consistency/sites", { attention });
    const flagged = rows.filter((r) => r.attention).length;
    return [
      el("p", { class: "muted" }, `${num(rows.length)} sites${view === "all" ? `, ${num(flagged)} need a person (red: halted, flagged by the safety valve, failed, unlisted directories or refused requests)` : ""}.`),
      summaryTable(rows),
    ];
  });
  content.append(tabs, summary);
  return [summary];
});
