import { api, apiUrl, badge, bytes, el, link, num, panel, pathRest, start, table, when } from "../core.js";
import { beforeAfterChart, cycleSites, decisions, sitesTable } from "./detoxshared.js";

const id = Number(pathRest("/detox/cycles/"));

function comparison(cycle) {
  return panel("Difference with the last real cycle", async () => {
    const cmp = await api(`/test-runs/${cycle.id}/compare`, { limit: 500 });
    return [
      el("p", { id: "comparison-totals" }, `Against real cycle `, link(`/detox/cycles/${cmp.real_cycle}`, `#${cmp.real_cycle}`), `: ${num(cmp.additional)} additional deletions (${bytes(cmp.additional_bytes)}), ${num(cmp.kept)} kept that the real cycle deleted (${bytes(cmp.kept_bytes)}).`),
      table(
        [
          { label: "Site", value: (r) => r.site },
          { label: "Dataset", value: (r) => el("span", { class: "mono" }, r.dataset) },
          { label: "Change", value: (r) => badge(r.change, r.change === "additional" ? "delete" : "keep") },
          { label: "Test", num: true, value: (r) => bytes(r.test_bytes) },
          { label: "Real", num: true, value: (r) => bytes(r.real_bytes) },
        ],
        cmp.items,
        { id: "comparison-table", empty: "The same decisions as the real cycle." },
      ),
    ];
  });
}

start(async (content) => {
  const cycle = await api(`/cycles/${id}`);
  const facts = el(
    "section",
    { class: "panel" },
    el(
      "div",
      { class: "grid2" },
      el(
        "dl",
        { class: "facts", id: "cycle-facts" },
        el("dt", {}, "Kind"), el("dd", {}, badge(cycle.kind, cycle.kind === "test" ? "test" : "")),
        el("dt", {}, "Partition"), el("dd", {}, cycle.partition),
        el("dt", {}, "Status"), el("dd", {}, badge(cycle.status), cycle.error ? el("span", { class: "bad" }, ` ${cycle.error}`) : ""),
        el("dt", {}, "Started"), el("dd", {}, `${when(cycle.started)} → ${when(cycle.finished)}`),
        el("dt", {}, "Requested by"), el("dd", {}, cycle.requested_by || "schedule", cycle.comment ? ` · ${cycle.comment}` : ""),
        el("dt", {}, "Inventory seq"), el("dd", {}, num(cycle.inventory_seq)),
        el("dt", {}, "Iterations"), el("dd", {}, num(cycle.iterations)),
        el("dt", {}, "Sites triggered"), el("dd", {}, `${num(cycle.sites_triggered)} of ${num(cycle.sites)}`),
        el("dt", {}, "Deleted"), el("dd", { id: "cycle-deleted" }, `${num(cycle.replicas_deleted)} replicas, ${bytes(cycle.bytes_deleted)}`),
        el("dt", {}, "Handed over"), el("dd", {}, bytes(cycle.bytes_handed_over)),
        cycle.commands ? [el("dt", {}, "Commands"), el("dd", {}, `${num(cycle.commands.batches)} batches: ${num(cycle.commands.accepted)} accepted, ${num(cycle.commands.rejected)} rejected, ${num(cycle.commands.pending)} pending`)] : null,
        cycle.warnings.length ? [el("dt", {}, "Warnings"), el("dd", { class: "bad" }, cycle.warnings.join("; "))] : null,
        cycle.missing_providers.length ? [el("dt", {}, "Missing variables"), el("dd", { class: "bad" }, cycle.missing_providers.join(", "))] : null,
        el("dt", {}, "Deletion list"), el("dd", {}, link(apiUrl(`/cycles/${id}/deletions.txt`), "text", { id: "download-txt", download: "" }), " · ", link(apiUrl(`/cycles/${id}/deletions.json`), "JSON", { download: "" })),
      ),
      el("div", {}, el("h3", {}, `Policy ${cycle.policy_digest.slice(0, 12)}`), el("pre", { class: "policy", id: "policy-text" }, cycle.policy_text)),
    ),
  );
  content.append(facts);
  const decisionsBody = el("div", { id: "decisions" }, el("p", { class: "muted" }, "Choose a site to see every decision there with the line that decided it."));
  const sites = panel("Sites: occupancy before and after", async () => {
    const rows = await cycleSites(id);
    return [beforeAfterChart("cycle-chart", rows), sitesTable(id, rows, (site) => decisions(decisionsBody, id, site))];
  });
  const parts = [sites];
  if (cycle.kind === "test" && cycle.status === "done") parts.push(comparison(cycle));
  parts.push(el("section", { class: "panel" }, decisionsBody));
  content.append(...parts);
  return parts;
}, `Detox cycle #${id}`);
