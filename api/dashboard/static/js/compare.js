// Several jobs' curves of one metric on one chart, labelled by what differs in their specs.
import {
  FINAL_STATES, badge, el, fetchMetrics, formatValue, getJSON, showError,
} from "./api.js";
import { LineChart, PALETTE } from "./charts.js";

const REFRESH_MS = 5000;
const MAX_LABEL_PATHS = 4;
const params = new URLSearchParams(location.search);
const ids = (params.get("ids") || "").split(",").map((id) => id.trim()).filter(Boolean);
const metricSelect = document.getElementById("metric");
const xSelect = document.getElementById("x-axis");
const logBox = document.getElementById("log-y");
const errorBox = document.getElementById("error");
const chart = new LineChart(document.getElementById("chart-compare"));
let runs = []; // [{job, series, label, color}]
let paths = [];

window.traindock = { get runs() { return runs; }, chart };

// {"optimizer": {"lr": 0.1}, "model": {"layers": [{...}]}} -> {"optimizer.lr": 0.1,
// "model.layers[0].type": ...}
export function flatten(value, path = "", out = {}) {
  if (Array.isArray(value)) {
    if (!value.length) out[path] = [];
    value.forEach((item, i) => flatten(item, `${path}[${i}]`, out));
  } else if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length && path) out[path] = {};
    for (const key of keys) flatten(value[key], path ? `${path}.${key}` : key, out);
  } else {
    out[path] = value;
  }
  return out;
}

// The dotted paths whose values are not the same in every spec (the name excluded: it is the
// fallback label), in the order they first appear.
export function differingPaths(flatSpecs) {
  const all = [...new Set(flatSpecs.flatMap((flat) => Object.keys(flat)))];
  return all.filter((path) => path !== "name"
    && new Set(flatSpecs.map((flat) => JSON.stringify(flat[path]))).size > 1);
}

function show(value) {
  if (value === undefined) return "(unset)";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function labelFor(job, flat) {
  if (!paths.length) return job.name;
  const shown = paths.slice(0, MAX_LABEL_PATHS).map((path) => `${path}=${show(flat[path])}`);
  const more = paths.length > MAX_LABEL_PATHS ? ` (+${paths.length - MAX_LABEL_PATHS} more)` : "";
  return shown.join(", ") + more;
}

async function load() {
  if (!ids.length) {
    showError(errorBox, "No jobs to compare: tick two or more on the job list, then Compare.");
    return;
  }
  const loaded = await Promise.all(ids.map(async (id) => {
    try {
      return { job: await getJSON(`/v1/jobs/${id}`), series: await fetchMetrics(id) };
    } catch (error) {
      return { id, error };
    }
  }));
  const missing = loaded.filter((run) => run.error);
  showError(errorBox, missing.length
    ? `Could not load ${missing.map((run) => `${run.id} (${run.error.message})`).join(", ")}`
    : "");
  runs = loaded.filter((run) => !run.error);
  const flats = runs.map((run) => flatten(run.job.spec));
  paths = differingPaths(flats);
  const labels = runs.map((run, i) => labelFor(run.job, flats[i]));
  runs.forEach((run, i) => {
    const twin = labels.filter((label) => label === labels[i]).length > 1;
    run.flat = flats[i];
    run.label = twin ? `${labels[i]} [${run.job.id.slice(0, 8)}]` : labels[i];
    run.color = PALETTE[i % PALETTE.length];
  });
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
  renderDifferences(metric);
}

function renderDifferences(metric) {
  const table = document.getElementById("differences");
  const last = (run) => {
    const values = run.series[metric]?.value || [];
    return values.length ? formatValue(metric, values[values.length - 1]) : "–";
  };
  table.replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, "job"), el("th", {}, "state"),
      paths.map((path) => el("th", {}, path)), el("th", { class: "num" }, `last ${metric}`))),
    el("tbody", {}, runs.map((run) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = run.color;
      return el("tr", {},
        el("td", {}, swatch),
        el("td", {}, el("a", { href: `/jobs/${run.job.id}` }, run.job.name)),
        el("td", {}, badge(run.job.state)),
        paths.map((path) => el("td", {}, show(run.flat[path]))),
        el("td", { class: "num" }, last(run)));
    })),
  );
  if (!paths.length && runs.length > 1) {
    table.append(el("caption", { class: "muted" }, "The specs are the same apart from the name."));
  }
}

function saveChoicesInAddress() {
  const query = new URLSearchParams({ ids: ids.join(","), metric: metricSelect.value });
  if (xSelect.value !== "epoch") query.set("x", xSelect.value);
  if (logBox.checked) query.set("log", "1");
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

load();
