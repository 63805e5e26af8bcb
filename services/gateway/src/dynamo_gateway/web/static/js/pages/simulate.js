// "What if": run a packaged scenario of the decision simulator with a changed detox policy
// (detox's /simulations), follow it, and show its table and charts; past runs below.
import { ApiError, PALETTE, api, badge, bytes, chartBox, clear, drawCharts, el, num, pager, params, pct, problemBox, start, table, token, when } from "../core.js";

const POLL_MS = 1000;
const MAX_DAYS = 14;
// Smallest grid first: the first choice should be the quick one.
const SCALES = ["tiny", "ci", "tenth", "cms"];
const bySize = (a, b) => SCALES.indexOf(a.grid) - SCALES.indexOf(b.grid) || a.name.localeCompare(b.name);

async function finished(id, status) {
  for (;;) {
    const run = await api(`/simulations/${id}`);
    if (run.status === "done" || run.status === "failed") return run;
    clear(status, el("p", { class: "muted", id: "simulation-progress" }, `Simulation #${id} is ${run.status}${run.progress ? `: ${run.progress}` : "…"}`));
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

// ------------------------------------------------------------------------------ the result

function strategyTable(strategies) {
  const s = (row) => row.summary;
  return table(
    [
      { label: "Strategy", value: (r) => el("span", { title: r.description }, r.name) },
      { label: "Accesses", num: true, value: (r) => num(s(r).accesses) },
      { label: "Served from disk", num: true, value: (r) => pct(s(r).hit_rate) },
      { label: "No disk copy anywhere", num: true, value: (r) => num(s(r).no_copy) },
      { label: "Transferred", num: true, value: (r) => bytes(s(r).bytes_transferred) },
      { label: "Deleted", num: true, value: (r) => bytes(s(r).bytes_deleted) },
      { label: "Site-hours above 90%", num: true, title: "share of site-hours above 90% occupancy", value: (r) => pct(s(r).share_of_site_hours_above_90) },
      { label: "Last copies deleted", num: true, cls: (r) => (s(r).last_copies_deleted ? "warn" : ""), value: (r) => num(s(r).last_copies_deleted) },
    ],
    strategies,
    { id: "simulation-table", rowClass: (r) => (r.baseline ? "baseline" : "") },
  );
}

const lineOptions = (days, yTitle, yMax, yMin = 0) => ({
  parsing: false,
  scales: {
    x: { type: "linear", min: 0, max: days, title: { display: true, text: "simulated day" } },
    y: { min: yMin, max: yMax, title: { display: true, text: yTitle } },
  },
  plugins: { legend: { position: "bottom" } },
});

function dailyChart(id, days, strategies, value, yTitle, yMax, yMin) {
  return chartBox(id, {
    type: "line",
    data: {
      datasets: strategies.map((st) => ({
        label: st.name,
        data: st.series.daily.map((d) => ({ x: d.day + 0.5, y: value(d) })),
        borderColor: st.colour,
        backgroundColor: st.colour,
        borderDash: st.baseline ? [6, 4] : undefined,
      })),
    },
    options: lineOptions(days, yTitle, yMax, yMin),
  });
}

function occupancyChart(days, strategy) {
  const hours = strategy.series.sample_hours;
  const sites = Object.entries(strategy.series.occupancy).filter(([, values]) => values.some((v) => v > 0));
  return chartBox(
    "chart-occupancy",
    {
      type: "line",
      data: {
        datasets: sites.map(([site, values], i) => ({
          label: site,
          data: values.map((v, j) => ({ x: hours[j] / 24, y: 100 * v })),
          borderColor: PALETTE[i % PALETTE.length],
          backgroundColor: PALETTE[i % PALETTE.length],
          borderWidth: 1.5,
          pointRadius: 0,
        })),
      },
      options: lineOptions(days, "occupancy (%)", 105),
    },
    340,
  );
}

const signed = (x) => (x === null || x === undefined ? "–" : `${x > 0 ? "+" : ""}${pct(x)}`);

/** The newest finished run of the same scenario, days and seed with the scenario's own policy. */
async function baselineOf(run) {
  const page = await api("/simulations", { scenario: run.scenario, status: "done", limit: 200 });
  const same = page.items.find((r) => !r.policy_changed && r.days === run.days && r.seed === run.seed);
  return same ? api(`/simulations/${same.id}`) : null;
}

async function showResult(result, run, again) {
  const data = run.result;
  const strategies = data.strategies;
  const agents = strategies.find((st) => st.kind === "agents") || strategies[0];
  const trace = data.trace;
  // A changed policy is read beside the scenario's own: its Dynamo strategy, dashed.
  const shown = strategies.map((st, i) => ({ ...st, colour: PALETTE[i % PALETTE.length] }));
  let baseline = null;
  let offer = null;
  if (run.policy_changed) {
    baseline = await baselineOf(run);
    if (baseline) {
      const own = baseline.result.strategies.find((st) => st.name === agents.name);
      const at = shown.findIndex((st) => st.name === agents.name);
      shown.splice(at + 1, 0, { ...own, name: `${own.name}, scenario's policy (#${baseline.id})`, colour: shown[at].colour, baseline: true });
    } else {
      const button = el("button", { type: "button", id: "run-baseline", class: "secondary" }, "Run the scenario's own policy beside it");
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          const submitted = await api("/simulations", undefined, { method: "POST", body: { scenario: run.scenario, days: run.days, seed: run.seed, comment: `baseline of #${run.id}` } });
          clear(offer, el("p", { class: "muted" }, `Simulation #${submitted.id} (the scenario's own policy) is queued…`));
          await finished(submitted.id, offer);
          await again();
        } catch (err) {
          clear(offer, problemBox(err));
        }
      });
      offer = el("div", { id: "baseline-offer" }, el("p", {}, "No run of this scenario, period and seed with its own policy yet. ", button));
    }
  }
  clear(
    result,
    el(
      "div",
      { class: "notice ok", id: "simulation-summary" },
      el("strong", {}, `Simulation #${run.id}: ${data.scenario}, ${num(data.days)} days, seed ${run.seed}, ${run.policy_changed ? "changed detox policy" : "the scenario's own policy"}.`),
      el("div", {}, `${num(trace.accesses)} accesses, ${num(trace.datasets_produced)} datasets produced · grid ${data.grid.scale} · by ${run.requested_by || "–"} · ${when(run.finished)}`),
      // Older stored runs predate the bound: say nothing rather than a wrong number.
      trace.cpu_bound === undefined ? null : el("div", { id: "simulation-cpu-bound" }, `Best any placement could do (every dataset at every site, the grid's CPU slots the only limit): ${(100 * trace.cpu_bound).toFixed(1)}% from disk.`),
    ),
    strategyTable(shown),
    offer,
    el("ul", { id: "simulation-comparison" }, Object.entries(data.comparison).map(([name, c]) => el("li", {}, el("strong", {}, name.replaceAll("_", " ")), `: ${signed(c.more_accesses_from_disk)} accesses served from disk, transfer volume ×${c.transfer_ratio === null ? "–" : c.transfer_ratio.toFixed(2)}`))),
    el("h3", {}, "Share of accesses served from disk, per day"),
    dailyChart("chart-hit-rate", data.days, shown, (d) => (d.accesses ? (100 * d.hits) / d.accesses : 0), "served from disk (%)", undefined, undefined),
    el("h3", {}, `Occupancy per site over time: ${agents.name}`),
    occupancyChart(data.days, agents),
    el("h3", {}, "Volume transferred per day"),
    dailyChart("chart-transfers", data.days, shown, (d) => d.bytes_transferred / 1e12, "TB transferred"),
    run.policy_changed ? el("details", {}, el("summary", {}, "The detox policy that ran"), el("pre", { class: "mono", id: "simulation-policy" }, run.policy)) : null,
  );
  drawCharts(result);
}

async function follow(result, id, onDone) {
  try {
    const run = await finished(id, result);
    if (run.status === "failed") {
      clear(result, el("div", { class: "notice error", id: "simulation-failed" }, el("strong", {}, `Simulation #${run.id} failed`), el("div", {}, run.error || "")));
    } else {
      await showResult(result, run, () => follow(result, id, onDone));
    }
  } catch (err) {
    clear(result, problemBox(err));
  }
  if (onDone) await onDone();
}

// ------------------------------------------------------------------------------ past runs

async function pastRuns(node, show, offset = 0) {
  try {
    const page = await api("/simulations", { limit: 20, offset });
    clear(
      node,
      table(
        [
          { label: "Run", value: (r) => el("a", { href: `?id=${r.id}`, onclick: (e) => { e.preventDefault(); show(r.id); } }, `#${r.id}`) },
          { label: "Scenario", value: (r) => r.scenario },
          { label: "Days", num: true, value: (r) => num(r.days) },
          { label: "Seed", num: true, value: (r) => num(r.seed) },
          { label: "Policy", value: (r) => (r.policy_changed ? badge("changed", "test") : "scenario's") },
          { label: "Status", value: (r) => badge(r.status) },
          { label: "By", value: (r) => r.requested_by || "–" },
          { label: "Submitted", value: (r) => when(r.created) },
          { label: "Error", value: (r) => r.error || "" },
        ],
        page.items,
        { id: "simulation-list", empty: "No simulation yet.", rowClass: (r) => (r.status === "failed" ? "attention" : "") },
      ),
      pager(page, (next) => pastRuns(node, show, next)),
    );
  } catch (err) {
    clear(node, problemBox(err));
  }
}

// ------------------------------------------------------------------------------ the form

async function submit(form, result, refresh) {
  const { button } = form;
  button.disabled = true;
  clear(result, el("p", { class: "muted" }, "Submitting…"));
  try {
    const body = { scenario: form.scenario.value, days: Number(form.days.value), comment: "web what if" };
    const policy = form.policy.value;
    // The scenario's own text unchanged: the run says so rather than "changed".
    if (policy.trim() && policy !== form.ownPolicy()) body.policy = policy;
    if (form.seed.value.trim()) body.seed = Number(form.seed.value.trim());
    const submitted = await api("/simulations", undefined, { method: "POST", body });
    history.replaceState(null, "", `?id=${submitted.id}`);
    await refresh();
    await follow(result, submitted.id, refresh);
  } catch (err) {
    if (err instanceof ApiError && err.status === 422 && err.problem.errors) {
      clear(result, el("div", { class: "notice error", id: "policy-errors" }, el("strong", {}, err.message), el("ul", { class: "errors" }, err.problem.errors.map((e) => el("li", { class: "mono" }, `line ${e.line}, column ${e.column}: ${e.message}`)))));
    } else {
      clear(result, problemBox(err), err instanceof ApiError && (err.status === 401 || err.status === 403) ? el("p", {}, "Simulations need an operator's API token: set one with “API token” at the top.") : null);
    }
  } finally {
    button.disabled = false;
  }
}

function buildForm(scenarios, result, refresh) {
  const select = el("select", { id: "scenario" }, scenarios.map((s) => el("option", { value: s.name }, `${s.name} (${s.grid} grid, ${num(s.days)} days)`)));
  const description = el("p", { class: "muted", id: "scenario-description" });
  const policy = el("textarea", { id: "policy-input", spellcheck: "false" });
  const upload = el("input", { type: "file", id: "policy-file", accept: ".txt,.policy,text/plain" });
  upload.addEventListener("change", async () => {
    if (upload.files.length) policy.value = await upload.files[0].text();
  });
  const days = el("select", { id: "days" }, Array.from({ length: MAX_DAYS }, (_, i) => el("option", { value: i + 1 }, `${i + 1}`)));
  const seed = el("input", { type: "text", id: "seed", inputmode: "numeric", size: 8, placeholder: "scenario's" });
  const button = el("button", { type: "submit", id: "run-simulation" }, "Run the simulation");
  const hint = el("span", { class: "muted", id: "token-hint" });
  const showHint = () => {
    hint.textContent = token() ? "" : "No API token set: the gateway will refuse the run.";
  };
  showHint();
  document.addEventListener("dynamo-token", showHint);
  const chosen = () => scenarios.find((s) => s.name === select.value);
  const pick = () => {
    const s = chosen();
    description.textContent = `${s.description} Strategies: ${s.strategies.join(", ")}.`;
    policy.value = s.policy || "";
    days.value = String(Math.min(MAX_DAYS, Math.max(1, Math.round(s.days))));
  };
  select.addEventListener("change", pick);
  pick();
  const form = { scenario: select, policy, days, seed, button, ownPolicy: () => chosen().policy || "" };
  return el(
    "form",
    { id: "simulate-form", onsubmit: (e) => { e.preventDefault(); submit(form, result, refresh); } },
    el("div", { class: "row" }, el("label", {}, "Scenario ", select), el("label", {}, "Days ", days), el("label", {}, "Seed ", seed)),
    description,
    el("p", {}, "Detox policy (the scenario's, prefilled): edit it, paste another, or load a file."),
    policy,
    el("div", { class: "row" }, button, el("label", {}, "or load a file: ", upload), hint),
  );
}

start(async (content) => {
  const result = el("div", { id: "simulation-result" }, el("p", { class: "muted" }, "Run a simulation, or pick a past run below."));
  const list = el("div", { id: "simulation-runs" });
  const show = (id) => {
    history.replaceState(null, "", `?id=${id}`);
    clear(result, el("p", { class: "muted" }, `Loading simulation #${id}…`));
    return follow(result, id, refresh);
  };
  const refresh = () => pastRuns(list, show);
  const formPanel = el("section", { class: "panel" }, el("p", {}, "Replay days of data use on a synthetic grid with a changed detox policy, beside LRU deletion and static placement on the same trace (the decision simulator, run by detox). Nothing in the real grid changes."));
  content.append(formPanel, el("section", { class: "panel" }, el("h2", {}, "Result"), result), el("section", { class: "panel" }, el("h2", {}, "Past runs"), list));
  try {
    const scenarios = (await api("/simulations/scenarios")).sort(bySize);
    formPanel.append(buildForm(scenarios, result, refresh));
  } catch (err) {
    formPanel.append(problemBox(err));
  }
  const parts = [refresh()];
  const id = Number(params().get("id"));
  if (id > 0) parts.push(show(id));
  return parts;
});
