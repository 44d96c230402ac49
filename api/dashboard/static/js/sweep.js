// One sweep: its trials as a sortable table (a row per trial job: each seed of a repeated
// configuration, with the configuration's mean ± std), the best configuration, Optuna's
// parameter importances, the objective against trial number, a parallel-coordinates plot and
// the top 3 trials' curves; Cancel and Promote buttons. Polled while the sweep runs: one
// request per poll (GET /v1/sweeps/{id} carries each trial job's best and final objective).
import {
  FINAL_STATES, badge, describeDetail, el, fetchMetrics, formatTime, formatValue, getJSON,
  prettyJSON, request, showError,
} from "./api.js";
import { LineChart, PALETTE } from "./charts.js";
import { drawParallel } from "./parallel.js";

const POLL_MS = 3000;
const TOP = 3;
const sweepId = decodeURIComponent(location.pathname.split("/")[2] || "");
const errorBox = document.getElementById("error");
const objectiveChart = new LineChart(document.getElementById("chart-objective"),
  { xLabel: "trial" });
const topChart = new LineChart(document.getElementById("chart-top"), { xLabel: "step" });
const canvas = document.getElementById("parallel");
const cancelButton = document.getElementById("cancel-sweep");
const promoteButton = document.getElementById("promote");
const actionResult = document.getElementById("action-result");
let sweep = null;
let rows = [];
let sort = { key: "trial", descending: false };
let topKey = "";

window.traindock = { get sweep() { return sweep; }, get rows() { return rows; },
  objectiveChart, topChart };

async function refresh() {
  try {
    sweep = await getJSON(`/v1/sweeps/${sweepId}`);
  } catch (error) {
    showError(errorBox, error.status === 404 ? `No sweep with id ${sweepId}.` : error.message);
    document.getElementById("sweep-name").textContent = "Sweep not found";
    return;
  }
  showError(errorBox, "");
  rows = tableRows();
  render();
  await drawTop();
  if (!FINAL_STATES.has(sweep.state)) setTimeout(refresh, POLL_MS);
}

const metric = () => sweep.objective.metric;
const isBest = (trial) => sweep.best?.trial_number === trial.number;

function tableRows() {
  return sweep.trials.flatMap((trial) => trial.jobs.map((job) => ({
    trial: trial.number, params: trial.params, repeat: job.repeat, seed: job.seed,
    state: job.state, best: job.best ?? null, final: job.final ?? null,
    duration: job.duration_s, id: job.id, value: trial.value, std: trial.std,
    isBest: isBest(trial),
  })));
}

function paramNames() {
  return [...new Set(sweep.trials.flatMap((trial) => Object.keys(trial.params)))];
}

function show(value) {
  if (value === undefined || value === null) return "–";
  if (typeof value === "number") return String(Number(value.toPrecision(4)));
  return typeof value === "string" ? value : JSON.stringify(value);
}

function columns() {
  const name = metric();
  return [
    { key: "trial", label: "trial", num: true, get: (r) => r.trial },
    ...paramNames().map((path) => ({ key: `param:${path}`, label: path,
      get: (r) => r.params[path], text: (r) => show(r.params[path]) })),
    { key: "repeat", label: "repeat (seed)", num: true, get: (r) => r.repeat,
      text: (r) => `${r.repeat} (${r.seed ?? "–"})` },
    ...(sweep.repeats > 1 ? [{ key: "mean", label: `mean ± std ${name}`, num: true,
      get: (r) => r.value, text: (r) => (r.value == null ? "–" : `${formatValue(name, r.value)}`
        + (r.std == null ? "" : ` ± ${formatValue(name, r.std)}`)) }] : []),
    // Any state string is a badge, so a state added to the API later still shows.
    { key: "state", label: "state", get: (r) => r.state, node: (r) => badge(r.state) },
    { key: "best", label: `best ${name}`, num: true, get: (r) => r.best,
      text: (r) => formatValue(name, r.best) },
    { key: "final", label: `final ${name}`, num: true, get: (r) => r.final,
      text: (r) => formatValue(name, r.final) },
    { key: "duration", label: "duration", num: true, get: (r) => r.duration,
      text: (r) => (r.duration == null ? "–" : `${r.duration.toFixed(1)}s`) },
  ];
}

// Missing values sort last whichever way; numbers as numbers, the rest as text.
function compare(a, b) {
  const none = (v) => v === undefined || v === null;
  if (none(a) || none(b)) return none(a) - none(b);
  if (typeof a === "number" && typeof b === "number") return a - b;
  return show(a).localeCompare(show(b), undefined, { numeric: true });
}

function sortedRows(cols) {
  const col = cols.find((c) => c.key === sort.key) || cols[0];
  const sign = sort.descending ? -1 : 1;
  return [...rows].sort((a, b) => {
    const [va, vb] = [col.get(a), col.get(b)];
    const none = (v) => v === undefined || v === null;
    if (none(va) || none(vb)) return compare(va, vb) || a.trial - b.trial;
    return sign * compare(va, vb) || a.trial - b.trial || a.repeat - b.repeat;
  });
}

function render() {
  document.title = `${sweep.name} · sweep · traindock`;
  document.getElementById("sweep-name").textContent = sweep.name;
  document.getElementById("sweep-state").replaceChildren(badge(sweep.state));
  document.getElementById("sweep-head").dataset.state = sweep.state;
  const ended = sweep.trials_ended;
  const pruned = sweep.trials.filter((t) => t.state === "pruned").length;
  const pruner = sweep.spec?.pruner?.type;
  const objective = sweep.objective;
  const facts = [
    ["method", sweep.method],
    ["objective", `${objective.mode} ${objective.metric}${objective.at ? ` at ${objective.at}` : ""}`],
    ["trials", `${ended} of ${sweep.trials_planned} ended${pruned ? `, ${pruned} pruned` : ""}`],
    ...(pruner && pruner !== "none" ? [["pruner", pruner.replace("_", " ")]] : []),
    ["repeats", sweep.repeats],
    ["parallelism", sweep.parallelism],
    ["created", formatTime(sweep.created_at)],
    ["id", sweep.id],
  ];
  document.getElementById("sweep-facts").replaceChildren(...facts.map(([term, value]) =>
    el("span", {}, el("span", { class: "muted small" }, term), ` ${value}`)));
  cancelButton.hidden = FINAL_STATES.has(sweep.state);
  promoteButton.disabled = !sweep.best;
  const errorText = document.getElementById("sweep-error");
  errorText.hidden = !sweep.error;
  errorText.textContent = sweep.error || "";
  renderBest();
  renderImportances();
  renderTable();
  drawObjective();
  drawParallelPlot();
}

function renderBest() {
  const box = document.getElementById("best");
  const best = sweep.best;
  if (!best) return;
  const spread = best.std != null ? ` ± ${formatValue(metric(), best.std)} over ${best.values.length} seeds` : "";
  box.className = "";
  box.replaceChildren(
    el("div", { class: "stat-value" }, `${formatValue(metric(), best.value)}${spread}`),
    el("div", { class: "muted small" }, `${metric()}, trial ${best.trial_number}`),
    el("table", { class: "compact params" }, el("tbody", {}, Object.entries(best.params).map(
      ([path, value]) => el("tr", {}, el("th", {}, path), el("td", {}, el("code", {},
        typeof value === "object" ? prettyJSON(value) : show(value))))))));
}

function renderImportances() {
  const entries = Object.entries(sweep.importances || {}).sort((a, b) => b[1] - a[1]);
  document.getElementById("importances-panel").hidden = !entries.length;
  document.getElementById("importances").replaceChildren(el("tbody", {}, entries.map(
    ([path, share]) => {
      const fill = el("div", { class: "bar-fill" });
      fill.style.width = `${(share * 100).toFixed(1)}%`;
      return el("tr", {}, el("th", {}, path),
        el("td", { class: "num" }, `${(share * 100).toFixed(0)}%`),
        el("td", { class: "progress-cell" }, el("div", { class: "bar" }, fill)));
    })));
}

function renderTable() {
  const cols = columns();
  const header = el("tr", {}, el("th", {}, ""), cols.map((col) => {
    const arrow = sort.key === col.key ? (sort.descending ? " ▼" : " ▲") : "";
    return el("th", {
      class: col.num ? "num sort" : "sort", dataset: { key: col.key },
      "aria-sort": sort.key === col.key ? (sort.descending ? "descending" : "ascending") : null,
      onclick: () => {
        sort = { key: col.key, descending: sort.key === col.key && !sort.descending };
        renderTable();
      },
    }, col.label, arrow);
  }));
  const body = sortedRows(cols).map((row) => el("tr", {
    class: row.isBest ? "best clickable" : "clickable",
    dataset: { trial: row.trial, repeat: row.repeat, jobId: row.id, state: row.state },
    onclick: (event) => {
      if (!event.target.closest("a")) location.href = `/jobs/${row.id}`;
    },
  },
  el("td", {}, row.isBest ? el("span", { class: "badge best-mark", title: "best configuration" }, "★ best") : ""),
  cols.map((col) => el("td", { class: col.num ? "num" : null },
    col.node ? col.node(row) : col.key === "trial"
      ? el("a", { href: `/jobs/${row.id}` }, String(row.trial))
      : (col.text ? col.text(row) : show(col.get(row)))))));
  document.getElementById("trials").replaceChildren(el("thead", {}, header),
    el("tbody", {}, body));
}

function drawObjective() {
  const scored = sweep.trials.filter((t) => t.value != null);
  const better = sweep.objective.mode === "max" ? Math.max : Math.min;
  let best = null;
  const running = scored.map((t) => (best = best == null ? t.value : better(best, t.value)));
  objectiveChart.title = `${metric()} by trial`;
  objectiveChart.draw([
    { label: metric(), x: scored.map((t) => t.number), y: scored.map((t) => t.value),
      stroke: PALETTE[0] },
    { label: "best so far", x: scored.map((t) => t.number), y: running, stroke: PALETTE[2] },
  ]);
}

function drawParallelPlot() {
  const trials = sweep.trials;
  const axes = paramNames().map((path) => ({ label: path,
    values: trials.map((t) => t.params[path]) }));
  axes.push({ label: metric(), values: trials.map((t) => t.value ?? undefined) });
  drawParallel(canvas, axes, sweep.objective.mode);
  const [good, bad] = sweep.objective.mode === "max" ? ["highest", "lowest"] : ["lowest", "highest"];
  document.getElementById("parallel-legend").textContent =
    `green: ${good} ${metric()}, red: ${bad}; dashed: no value yet`;
}

// The objective's curve (its validation metric for a test_ objective) of the best 3 trials'
// first repeats, read again only when the 3 change or one of them is still running.
async function drawTop() {
  const better = sweep.objective.mode === "max" ? -1 : 1;
  const top = sweep.trials.filter((t) => t.value != null)
    .sort((a, b) => better * (a.value - b.value)).slice(0, TOP);
  const key = top.map((t) => t.number).join(",");
  if (key === topKey && top.every((t) => FINAL_STATES.has(t.state))) return;
  const name = metric().startsWith("test_") ? `val_${metric().slice(5)}` : metric();
  const lines = await Promise.all(top.map(async (trial, i) => {
    const first = trial.jobs[0];
    let points = { step: [], value: [] };
    try {
      points = (await fetchMetrics(first.id))[name] || points;
    } catch {
      // its metrics are gone: no line
    }
    return { label: `trial ${trial.number}`, x: points.step, y: points.value,
      stroke: PALETTE[i % PALETTE.length] };
  }));
  topChart.title = `${name}: the best ${TOP} trials`;
  topChart.key = null;
  topChart.draw(lines);
  topKey = key;
}

// POST an action; its answer (or the API's reason for refusing, e.g. a read-only key's 403)
// is shown under the title.
async function act(button, path, body, done) {
  button.disabled = true;
  actionResult.replaceChildren();
  try {
    const { ok, status, data } = await request("POST", path, body);
    if (ok) {
      done(data);
    } else {
      actionResult.replaceChildren(el("div", { class: "alert", dataset: { status } },
        describeDetail(data?.detail) || `HTTP ${status}`));
    }
  } catch (error) {
    actionResult.replaceChildren(el("div", { class: "alert" }, error.message));
  }
  button.disabled = false;
}

cancelButton.addEventListener("click", () => act(cancelButton, `/v1/sweeps/${sweepId}/cancel`,
  undefined, () => {
    actionResult.replaceChildren(el("span", { class: "muted" },
      "Cancelled: no more trials start; running ones stop within about a second."));
    refresh();
  }));
promoteButton.addEventListener("click", () => act(promoteButton, `/v1/sweeps/${sweepId}/promote`,
  {}, (job) => {
    actionResult.replaceChildren(el("span", { class: "muted" }, "Promoted: the best configuration "
      + "trains as job "), el("a", { id: "promoted-job", href: `/jobs/${job.id}` }, job.name));
  }));
window.addEventListener("resize", () => sweep && drawParallelPlot());
refresh();
