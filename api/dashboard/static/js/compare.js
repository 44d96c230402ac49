// Several jobs' curves of one metric on one chart, labelled by what differs in their specs.
// The labels, the differing fields, the architectures and the values side by side come from
// GET /v1/compare (core/compare_labels.py): this page only draws them.
import {
  FINAL_STATES, badge, el, fetchMetrics, formatValue, getJSON, showError,
} from "./api.js";
import { LineChart, PALETTE } from "./charts.js";

const REFRESH_MS = 5000;
const MAX_FIELD_COLUMNS = 6; // more differing fields: one wrapped cell per job instead
const MODES = ["best", "final", "test"];
const params = new URLSearchParams(location.search);
const ids = (params.get("ids") || "").split(",").map((id) => id.trim()).filter(Boolean);
const metricSelect = document.getElementById("metric");
const xSelect = document.getElementById("x-axis");
const logBox = document.getElementById("log-y");
const modeButtons = [...document.querySelectorAll("#value-mode button")];
const errorBox = document.getElementById("error");
const chart = new LineChart(document.getElementById("chart-compare"));
let comparison = null; // GET /v1/compare
let runs = []; // [{job, series, label, color}]
let mode = MODES.includes(params.get("values")) ? params.get("values") : "best";

window.traindock = { get runs() { return runs; }, get comparison() { return comparison; }, chart };

function show(value) {
  if (value === undefined || value === null) return "unset";
  return typeof value === "string" ? value : JSON.stringify(value);
}

async function load() {
  if (!ids.length) {
    showError(errorBox, "No jobs to compare: tick two or more on the job list, then Compare.");
    return;
  }
  try {
    comparison = await getJSON(`/v1/compare?ids=${ids.join(",")}`);
  } catch (error) {
    showError(errorBox, `Cannot compare these jobs: ${error.message}`);
    return;
  }
  const loaded = await Promise.all(comparison.jobs.map(async (job) => {
    try {
      return { job, series: await fetchMetrics(job.id) };
    } catch (error) {
      return { job, series: {}, error };
    }
  }));
  const problems = [
    ...comparison.missing.map((id) => `${id} (no job with this id)`),
    ...loaded.filter((run) => run.error).map((run) => `${run.job.id} (${run.error.message})`),
  ];
  showError(errorBox, problems.length ? `Could not load ${problems.join(", ")}` : "");
  runs = loaded.map((run, i) => ({ ...run, label: run.job.label, color: PALETTE[i % PALETTE.length] }));
  fillMetricChoices();
  draw();
  if (runs.some((run) => !FINAL_STATES.has(run.job.state))) setTimeout(load, REFRESH_MS);
}

function fillMetricChoices() {
  const names = [...new Set(runs.flatMap((run) => Object.keys(run.series)))].sort();
  const wanted = metricSelect.value || params.get("metric") || "val_loss";
  metricSelect.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
  metricSelect.value = names.includes(wanted) ? wanted : names[0] || "";
}

// On the epoch axis a metric logged several times per epoch keeps its last value per epoch.
function pointsOf(run, metric, xAxis) {
  const points = run.series[metric];
  if (!points) return { x: [], y: [] };
  if (xAxis === "step") return { x: points.step, y: points.value };
  const byEpoch = new Map();
  points.epoch.forEach((epoch, i) => byEpoch.set(epoch, points.value[i]));
  return { x: [...byEpoch.keys()], y: [...byEpoch.values()] };
}

function draw() {
  const metric = metricSelect.value;
  const xAxis = xSelect.value;
  chart.title = metric;
  chart.xLabel = xAxis;
  chart.logY = logBox.checked;
  chart.key = null; // title and axis may have changed: rebuild
  chart.draw(runs.map((run) => ({
    label: run.label, stroke: run.color, ...pointsOf(run, metric, xAxis),
  })));
  renderDifferences();
  renderValues();
}

function jobCells(run) {
  const swatch = el("span", { class: "swatch" });
  swatch.style.background = run.color;
  return [el("td", {}, swatch),
    el("td", {}, el("a", { href: `/jobs/${run.job.id}` }, run.label)),
    el("td", {}, badge(run.job.state))];
}

// A column per differing field while they are few; else one cell per job listing them, and
// the architecture in one line when the architectures differ.
function renderDifferences() {
  const table = document.getElementById("differences");
  const { fields, architectures_differ: archDiffer } = comparison;
  const columns = fields.length <= MAX_FIELD_COLUMNS;
  document.getElementById("architecture-note").hidden = !archDiffer;
  table.replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "job"), el("th", {}, "state"),
      columns ? fields.map((name) => el("th", { dataset: { field: name } }, name))
        : el("th", {}, `differs (${fields.length} fields)`),
      archDiffer ? el("th", {}, "architecture") : null)),
    el("tbody", {}, runs.map((run) => el("tr", { dataset: { jobId: run.job.id } },
      jobCells(run),
      columns ? fields.map((name) => el("td", {}, show(run.job.differs[name])))
        : el("td", { class: "small" }, fields.map((name) =>
          `${name}=${show(run.job.differs[name])}`).join(" · ")),
      archDiffer ? el("td", { class: "arch" }, run.job.architecture) : null))),
  );
  if (!fields.length && !archDiffer && runs.length > 1) {
    table.append(el("caption", { class: "muted" }, "The specs are the same apart from the name."));
  }
}

// Each metric's best, final or test value per job; ★ on the column's leader (the lowest loss,
// the highest accuracy: the API says which way each metric is better).
function renderValues() {
  for (const button of modeButtons) button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  const table = document.getElementById("values");
  const names = comparison.metrics[mode] || [];
  const leaders = comparison.leaders[mode] || {};
  table.dataset.mode = mode;
  table.replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "job"), el("th", {}, "state"),
      names.map((name) => el("th", { class: "num", dataset: { metric: name },
        title: comparison.directions[name] === "max" ? "higher is better" : "lower is better" },
      mode === "test" ? name : `${mode} ${name}`)))),
    el("tbody", {}, runs.map((run) => el("tr", { dataset: { jobId: run.job.id } },
      jobCells(run),
      names.map((name) => {
        const lead = (leaders[name] || []).includes(run.job.id);
        return el("td", { class: lead ? "num leader" : "num", dataset: { metric: name } },
          formatValue(name, run.job.values[mode]?.[name]), lead ? " ★" : "");
      })))),
  );
  if (!names.length) {
    table.append(el("caption", { class: "muted" }, mode === "test"
      ? "No test values: a job measures them on its test split once it ends."
      : "No values yet."));
  }
}

function saveChoicesInAddress() {
  const query = new URLSearchParams({ ids: ids.join(","), metric: metricSelect.value });
  if (xSelect.value !== "epoch") query.set("x", xSelect.value);
  if (logBox.checked) query.set("log", "1");
  if (mode !== "best") query.set("values", mode);
  history.replaceState(null, "", `/compare?${query}`.replaceAll("%2C", ","));
}

xSelect.value = params.get("x") === "step" ? "step" : "epoch";
logBox.checked = params.get("log") === "1";
for (const select of [metricSelect, xSelect, logBox]) {
  select.addEventListener("change", () => {
    saveChoicesInAddress();
    draw();
  });
}
for (const button of modeButtons) {
  button.addEventListener("click", () => {
    mode = button.dataset.mode;
    saveChoicesInAddress();
    if (comparison) renderValues();
  });
}

load();
