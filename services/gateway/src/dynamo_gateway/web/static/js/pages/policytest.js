import { ApiError, api, badge, bytes, clear, drawCharts, el, link, num, problemBox, start, token, when } from "../core.js";
import { beforeAfterChart, cycleSites, sitesTable } from "./detoxshared.js";

const POLL_MS = 500;

async function finished(id) {
  for (;;) {
    const cycle = await api(`/cycles/${id}`);
    if (cycle.status === "done" || cycle.status === "failed") return cycle;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function comparison(cycle) {
  try {
    const cmp = await api(`/test-runs/${cycle.id}/compare`, { limit: 500 });
    return [
      el("h3", {}, "Difference with the last real cycle"),
      el("p", { id: "comparison-totals" }, "Against real cycle ", link(`/detox/cycles/${cmp.real_cycle}`, `#${cmp.real_cycle}`), `: ${num(cmp.additional)} additional deletions (${bytes(cmp.additional_bytes)}), ${num(cmp.kept)} kept that the real cycle deleted (${bytes(cmp.kept_bytes)}).`),
      cmp.items.length
        ? el("table", { class: "data", id: "comparison-table" }, el("tbody", {}, cmp.items.map((r) => el("tr", {}, el("td", {}, r.site), el("td", { class: "mono" }, r.dataset), el("td", {}, badge(r.change, r.change === "additional" ? "delete" : "keep")), el("td", { class: "num" }, bytes(r.test_bytes || r.real_bytes))))))
        : el("p", { class: "muted" }, "The same decisions as the real cycle."),
    ];
  } catch (err) {
    return [el("h3", {}, "Difference with the last real cycle"), problemBox(err)];
  }
}

async function run(result, text, button) {
  button.disabled = true;
  clear(result, el("p", { class: "muted" }, "Submitting…"));
  try {
    const submitted = await api("/test-runs", undefined, { method: "POST", body: { policy: text, comment: "web policy test" } });
    clear(result, el("p", { class: "muted" }, `Test run #${submitted.id} of partition ${submitted.partition} is running…`));
    const cycle = await finished(submitted.id);
    if (cycle.status === "failed") {
      clear(result, el("div", { class: "notice error" }, el("strong", {}, `Test run #${cycle.id} failed`), el("div", {}, cycle.error || "")));
      return;
    }
    const sites = await cycleSites(cycle.id);
    clear(
      result,
      el("div", { class: "notice ok", id: "test-summary" }, el("strong", {}, `Test run #${cycle.id} (partition ${cycle.partition}) would delete ${num(cycle.replicas_deleted)} replicas, ${bytes(cycle.bytes_deleted)}, at ${num(cycle.sites_triggered)} triggered sites.`), el("div", {}, "Nothing was deleted. ", link(`/detox/cycles/${cycle.id}`, "Full record"), ` · ${when(cycle.finished)}`)),
      beforeAfterChart("test-chart", sites),
      sitesTable(cycle.id, sites),
      await comparison(cycle),
    );
    drawCharts(result);
  } catch (err) {
    if (err instanceof ApiError && err.status === 422 && err.problem.errors) {
      clear(result, el("div", { class: "notice error", id: "policy-errors" }, el("strong", {}, err.message), el("ul", { class: "errors" }, err.problem.errors.map((e) => el("li", { class: "mono" }, `line ${e.line}, column ${e.column}: ${e.message}`)))));
    } else {
      clear(result, problemBox(err), err instanceof ApiError && (err.status === 401 || err.status === 403) ? el("p", {}, "Test runs need a user's API token: set one with “API token” at the top.") : null);
    }
  } finally {
    button.disabled = false;
  }
}

start(async (content) => {
  const text = el("textarea", { id: "policy-input", spellcheck: "false", placeholder: "Partition Physics\nOn site.storage_type == DISK\nWhen site.occupancy > 0.9\nUntil site.occupancy < 0.85\n..." });
  const upload = el("input", { type: "file", id: "policy-file", accept: ".txt,.policy,text/plain" });
  upload.addEventListener("change", async () => {
    if (upload.files.length) text.value = await upload.files[0].text();
  });
  const result = el("div", { id: "test-result" });
  const hint = el("span", { class: "muted", id: "token-hint" });
  const showHint = () => {
    hint.textContent = token() ? "" : "No API token set: the gateway will refuse the test run.";
  };
  showHint();
  document.addEventListener("dynamo-token", showHint);
  const button = el("button", { type: "submit", id: "run-test" }, "Run as a test");
  const form = el(
    "form",
    { onsubmit: (e) => { e.preventDefault(); run(result, text.value, button); } },
    text,
    el("div", { class: "row" }, button, el("label", {}, "or load a file: ", upload), hint),
  );
  const current = el("div");
  try {
    const policies = await api("/policies");
    if (policies.length) {
      text.value = policies[0].text;
      current.append(el("p", { class: "muted" }, `Loaded the policy of partition ${policies[0].partition} (${policies[0].file}); edit it or paste another.`));
    }
  } catch (err) {
    current.append(problemBox(err));
  }
  content.append(el("section", { class: "panel" }, el("p", {}, "Paste or upload a detox policy: it runs like a real cycle against the current inventory and deletes nothing."), current, form), el("section", { class: "panel" }, result));
  return [];
});
