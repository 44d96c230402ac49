// One job: header (the diagnosis's findings first), live curves (server-sent events, or
// polling when there is no stream), model summary, checkpoints, spec.
import {
  FINAL_STATES, badge, duration, el, fetchMetrics, formatTime, formatValue, getJSON, lastStep,
  mergeSeries, prettyJSON, progressBar, progressText, request, showError,
} from "./api.js";
import { LineChart, PALETTE } from "./charts.js";
import { renderEvaluation } from "./evaluation.js";
import { renderFindings } from "./findings.js";
import { RangeTestChart } from "./lr_find.js";
import { renderStartup } from "./startup.js";

const POLL_MS = 2000;
const [TRAIN, VAL] = PALETTE;
const CHARTS = [
  { id: "loss", title: "Loss: training vs validation", logY: true, lines: [
    { name: "train_loss_step", label: "train_loss (per step)", stroke: TRAIN, faint: true },
    { name: "train_loss", stroke: TRAIN },
    { name: "val_loss", stroke: VAL },
  ] },
  { id: "accuracy", title: "Accuracy", lines: [
    { name: "train_accuracy", stroke: TRAIN }, { name: "val_accuracy", stroke: VAL },
  ] },
  { id: "rmse", title: "RMSE", lines: [
    { name: "train_rmse", stroke: TRAIN }, { name: "val_rmse", stroke: VAL },
  ] },
  { id: "lr", title: "Learning rate", lines: [{ name: "lr", stroke: PALETTE[2] }] },
  { id: "grad", title: "Gradient norm per layer (log scale)", logY: true, prefix: "grad_norm/" },
  { id: "update", title: "Update / weight ratio per layer (log scale)", logY: true,
    prefix: "update_ratio/" },
  // The diagnosis's statistics (docs/diagnosis.md), at each evaluation.
  { id: "dead", title: "Inactive units per layer (share, evaluation batch)",
    prefix: "dead_share/" },
  { id: "saturated", title: "Saturated units per layer (share, evaluation batch)",
    prefix: "saturated_share/" },
  { id: "zero", title: "Near-zero weights per layer (share: L1 sparsity)",
    prefix: "zero_weight_share/" },
];

const jobId = decodeURIComponent(location.pathname.split("/")[2] || "");
const series = {};
const charts = Object.fromEntries(CHARTS.map((def) => [def.id, new LineChart(
  document.getElementById(`chart-${def.id}`), { title: def.title, logY: def.logY },
)]));
const rangeTest = new RangeTestChart(document.getElementById("chart-lrfind"),
  document.getElementById("lrfind-report"));
const errorBox = document.getElementById("error");
const cancelButton = document.getElementById("cancel");
let job = null;
let drawPending = false;
let checkpointsLoadedAt = 0;
let evaluationShown = null;

// For tests and for poking around in the console.
window.traindock = { series, charts, rangeTest, transport: "none", get job() { return job; } };

async function start() {
  try {
    job = await getJSON(`/v1/jobs/${jobId}`);
  } catch (error) {
    showError(errorBox, error.status === 404 ? `No job with id ${jobId}.` : error.message);
    document.getElementById("job-name").textContent = "Job not found";
    return;
  }
  renderJob();
  renderModel(job.model);
  document.getElementById("spec").textContent = prettyJSON(readingOrder(job.spec));
  try {
    mergeSeries(series, await fetchMetrics(jobId));
  } catch (error) {
    showError(errorBox, `Cannot read the metrics: ${error.message}`);
  }
  drawCharts();
  if (FINAL_STATES.has(job.state)) {
    finish();
    return;
  }
  loadCheckpoints();
  if (await streamExists()) followStream();
  else followPolling();
}

// ---- live updates ----------------------------------------------------------------------

async function streamExists() {
  try {
    const doc = await getJSON("/openapi.json");
    const events = /^\/v1\/jobs\/\{[^}]+\}\/events$/;
    return Object.keys(doc.paths || {}).some((path) => events.test(path));
  } catch {
    return false;
  }
}

// Each event's id is the step through which every point has been sent; EventSource sends the
// last one back when it reconnects. The stream starts a step back, as catchUp reads.
function followStream() {
  const from = Math.max(-1, lastStep(series) - 1);
  const source = new EventSource(`/v1/jobs/${jobId}/events?last_event_id=${from}`);
  let failures = 0;
  setTransport("stream");
  const on = (type, handle) => source.addEventListener(type, (event) => {
    failures = 0;
    handle(event.data ? JSON.parse(event.data) : {});
  });
  on("state", (data) => {
    if (data.state) job.state = data.state;
    renderJob();
    refreshJob().catch(() => {});
  });
  on("progress", (data) => {
    job.progress = data.progress ?? data;
    renderJob();
  });
  on("diagnosis", (data) => {
    job.diagnosis = data;
    renderFindings(document.getElementById("job-findings"), job.diagnosis);
  });
  on("metrics", (data) => {
    mergeSeries(series, data.series);
    scheduleDraw();
  });
  on("end", () => {
    source.close();
    finish();
  });
  source.addEventListener("error", () => {
    failures += 1;
    if (source.readyState === EventSource.CLOSED || failures >= 3) {
      source.close();
      if (!FINAL_STATES.has(job.state)) followPolling();
    }
  });
}

function followPolling() {
  setTransport("polling");
  const tick = async () => {
    try {
      await refreshJob(); // the state first, so the metrics read after a final state are complete
      await catchUp();
      showError(errorBox, "");
    } catch (error) {
      showError(errorBox, `Lost the API: ${error.message}; retrying.`);
    }
    if (FINAL_STATES.has(job.state)) finish();
    else setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}

// The newest step's points may be stored in two flushes (the step's loss, then the epoch's
// metrics), so each read starts a step back; mergeSeries drops what is already here.
async function catchUp() {
  mergeSeries(series, await fetchMetrics(jobId, { sinceStep: Math.max(-1, lastStep(series) - 1) }));
  scheduleDraw();
}

async function refreshJob() {
  job = await getJSON(`/v1/jobs/${jobId}`);
  renderJob();
}

// Once the job is final: the last state, points and checkpoints, read once.
let finishing = null;

function finish() {
  finishing ??= (async () => {
    setTransport("finished");
    try {
      await refreshJob();
      await catchUp();
    } catch (error) {
      showError(errorBox, error.message);
    }
    await loadCheckpoints();
    window.traindock.settled = true;
  })();
  return finishing;
}

function setTransport(transport) {
  window.traindock.transport = transport;
  const text = { stream: "live (stream)", polling: "live (polling every 2 s)" }[transport];
  document.getElementById("transport").textContent = text || "";
}

// ---- header ----------------------------------------------------------------------------

function renderJob() {
  document.title = `${job.name} · traindock`;
  document.getElementById("job-name").textContent = job.name;
  document.getElementById("job-state").replaceChildren(badge(job.state));
  document.getElementById("job-head").dataset.state = job.state;
  renderFindings(document.getElementById("job-findings"), job.diagnosis);
  renderFacts();
  const progress = document.getElementById("job-progress");
  progress.replaceChildren(progressBar(job.progress),
    el("span", { class: "muted small" }, progressText(job.progress)));
  const errorText = document.getElementById("job-error");
  errorText.hidden = !job.error;
  errorText.textContent = job.error || "";
  // A pruned job's `error` is its pruner's reason: an account, not a failure.
  errorText.classList.toggle("pruned-note", job.state === "pruned");
  renderStats();
  renderNotes();
  renderStartup(document.getElementById("job-startup"), job.startup);
  // Stored once, at the run's end: drawn when it first arrives, not on every poll.
  const evaluation = JSON.stringify(job.evaluation ?? null);
  if (evaluation !== evaluationShown) {
    evaluationShown = evaluation;
    renderEvaluation(document.getElementById("evaluation"), job.evaluation);
  }
  cancelButton.hidden = FINAL_STATES.has(job.state);
  cancelButton.disabled = Boolean(job.cancel_requested);
  cancelButton.textContent = job.cancel_requested ? "Cancelling…" : "Cancel";
  // A new checkpoint may come with every epoch; look again at most every 5 s.
  if (checkpointsLoadedAt && Date.now() - checkpointsLoadedAt > 5000) loadCheckpoints();
}

// Attempts spent against the budget: `attempt` also counts the runs that a worker's shutdown
// stopped (`preemptions`), and those spend none (docs/reliability.md).
function attemptsText(job) {
  const preemptions = job.preemptions || 0;
  const text = `${job.attempt - preemptions} of ${job.max_attempts}`;
  if (!preemptions) return text;
  return `${text} (${preemptions} preemption${preemptions > 1 ? "s" : ""})`;
}

function renderFacts() {
  const facts = [
    ["attempt", attemptsText(job)],
    ["created", formatTime(job.created_at)],
    ["started", formatTime(job.started_at) || "–"],
    ["finished", formatTime(job.finished_at) || "–"],
    ["duration", duration(job) || "–"],
    ["id", job.id],
  ];
  const items = facts.map(([term, value]) =>
    el("span", {}, el("span", { class: "muted small" }, term), ` ${value}`));
  if (job.sweep_id) items.unshift(sweepLink(job));
  document.getElementById("job-facts").replaceChildren(...items);
}

// A trial job says which of its sweep's trials it is, with a link to the sweep's page.
function sweepLink(trial) {
  return el("span", { id: "job-sweep" }, `trial ${trial.trial_number} of sweep `,
    el("a", { href: `/sweeps/${trial.sweep_id}` }, trial.sweep_id.slice(0, 8)));
}

function renderStats() {
  const best = job.summary?.best || {};
  const test = job.summary?.test || {};
  const report = job.summary?.lr_find;
  const stats = [
    ...(report?.suggested_lr ? [["suggested lr", report.suggested_lr.toExponential(2),
      `${report.rule} rule`]] : []),
    ...["val_accuracy", "val_exact_match", "val_loss", "val_rmse", "val_mae", "val_r2"]
      .filter((name) => best[name]).map((name) => [
      `best ${name}`, formatValue(name, best[name].value), `epoch ${best[name].epoch}`]),
    ...Object.entries(test).map(([name, value]) => [name, formatValue(name, value), "at the end"]),
  ];
  document.getElementById("job-stats").replaceChildren(...stats.map(([name, value, note]) =>
    el("div", { class: "stat" }, el("div", { class: "muted small" }, name),
      el("div", { class: "stat-value" }, value), el("div", { class: "muted small" }, note))));
}

// What the job said beyond its metrics: validation warnings, the run's notes (early
// stopping, a precision or compile fallback), the preflight checks that did not pass and the
// gradient check's verdict.
function renderNotes() {
  const items = [
    ...(job.model?.warnings || []).map((text) => ["warning", `warning: ${text}`]),
    ...(job.summary?.notes || []).map((text) => ["note", text]),
  ];
  for (const item of job.summary?.preflight?.checks || []) {
    if (item.verdict === "warn" || item.verdict === "fail") {
      items.push([`preflight-${item.verdict}`,
        `preflight ${item.name}: ${item.verdict}: ${item.evidence}`]);
    }
  }
  const check = job.summary?.gradcheck;
  if (check) {
    const worst = [...check.tensors].sort((a, b) => b.relative_error - a.relative_error)[0];
    const detail = worst
      ? `; worst ${worst.name}, relative error ${worst.relative_error.toExponential(2)}` : "";
    items.push([`gradcheck-${check.verdict.replace(/ /g, "-")}`,
      `gradient check: ${check.verdict} (${check.tensors.length} tensors${detail})`]);
  }
  const list = document.getElementById("job-notes");
  list.hidden = items.length === 0;
  list.replaceChildren(...items.map(([kind, text]) => el("li", { class: kind }, text)));
}

setInterval(() => {
  if (job && !FINAL_STATES.has(job.state)) renderFacts();
}, 1000);

cancelButton.addEventListener("click", async () => {
  cancelButton.disabled = true;
  const { ok, data } = await request("POST", `/v1/jobs/${jobId}/cancel`);
  if (ok) job = data;
  else showError(errorBox, data?.detail || "Cancel failed.");
  await refreshJob().catch(() => {});
  if (FINAL_STATES.has(job.state)) finish();
});

// ---- charts ----------------------------------------------------------------------------

function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  setTimeout(() => {
    drawPending = false;
    drawCharts();
  }, 200);
}

function linesFor(def) {
  if (def.prefix) {
    // In the model's order: layers.2 before layers.10.
    return Object.keys(series).filter((name) => name.startsWith(def.prefix))
      .sort((a, b) => a.localeCompare(b, "en", { numeric: true }))
      .map((name) => ({ name, label: name.slice(def.prefix.length) }));
  }
  return def.lines.filter((line) => series[line.name]);
}

function drawCharts() {
  // A range test (mode lr_find) draws its loss against the rate, not the step.
  let any = rangeTest.draw(series, job?.summary?.lr_find);
  document.getElementById("card-lrfind").hidden = !any;
  for (const def of CHARTS) {
    const lines = linesFor(def).map((line) => ({
      ...line, label: line.label || line.name,
      x: series[line.name].step, y: series[line.name].value,
    }));
    const card = document.getElementById(`card-${def.id}`);
    card.hidden = lines.length === 0;
    if (lines.length) charts[def.id].draw(lines);
    any ||= lines.length > 0;
  }
  const none = document.getElementById("no-metrics");
  none.hidden = any;
  if (job && FINAL_STATES.has(job.state)) none.textContent = "This job recorded no metrics.";
}

document.getElementById("loss-log").addEventListener("change", (event) => {
  charts.loss.logY = event.target.checked;
  charts.loss.key = null; // rebuild with the other scale
  drawCharts();
});

// ---- model, checkpoints ----------------------------------------------------------------

function renderModel(model) {
  const table = document.getElementById("model");
  if (!model?.layers) return;
  table.replaceChildren(
    el("thead", {}, el("tr", {}, ["layer", "type", "output shape", "params", "fixed", "FLOPs"]
      .map((h, i) => el("th", { class: i >= 3 ? "num" : null,
        title: h === "fixed" ? "not trained: frozen layers, batchnorm's running statistics"
          : h === "FLOPs" ? "per example; a multiply-add counts 2" : null }, h)))),
    el("tbody", {},
      el("tr", { class: "muted" }, el("td", {}, "input"), el("td", {}),
        el("td", {}, `(${(model.input_shape || []).join(", ")})`), el("td", {}), el("td", {}),
        el("td", {})),
      model.layers.map((layer) => el("tr", {},
        el("td", {}, layer.name), el("td", {}, layer.type),
        el("td", {}, `(${layer.output_shape.join(", ")})`),
        el("td", { class: "num" }, layer.params.toLocaleString()),
        el("td", { class: "num" }, (layer.non_trainable_params ?? 0).toLocaleString()),
        el("td", { class: "num" }, (layer.flops ?? 0).toLocaleString())))),
    el("tfoot", {}, el("tr", {}, el("td", { colspan: 3 }, "total"),
      el("td", { class: "num" }, model.total_params.toLocaleString()),
      el("td", { class: "num" }, (model.non_trainable_params ?? 0).toLocaleString()),
      el("td", { class: "num" }, (model.total_flops ?? 0).toLocaleString()))),
  );
}

// The stored spec comes back in the database's key order; show it in the order one writes it.
const SPEC_ORDER = ["name", "mode", "lr_find", "dataset", "model", "loss", "optimizer", "schedule",
  "training", "regularization", "metrics", "resources", "max_attempts", "preflight", "gradcheck",
  "gradcheck_eps"];

function readingOrder(spec) {
  const keys = Object.keys(spec).sort((a, b) =>
    (SPEC_ORDER.indexOf(a) + 1 || 99) - (SPEC_ORDER.indexOf(b) + 1 || 99));
  return Object.fromEntries(keys.map((key) => [key, spec[key]]));
}

async function loadCheckpoints() {
  checkpointsLoadedAt = Date.now();
  let checkpoints;
  try {
    checkpoints = await getJSON(`/v1/jobs/${jobId}/checkpoints`);
  } catch {
    return;
  }
  const table = document.getElementById("checkpoints");
  document.getElementById("no-checkpoints").hidden = checkpoints.length > 0;
  table.hidden = checkpoints.length === 0;
  table.replaceChildren(
    el("thead", {}, el("tr", {}, ["step", "epoch", "val_loss", "size", ""].map((h) =>
      el("th", {}, h)))),
    el("tbody", {}, checkpoints.map((c) => el("tr", { class: c.best ? "best" : null },
      el("td", { class: "num" }, c.step), el("td", { class: "num" }, c.epoch),
      el("td", { class: "num" }, formatValue("val_loss", c.metrics?.val_loss)),
      el("td", { class: "num" }, `${(c.size / 1024).toFixed(1)} KiB`),
      el("td", {}, el("a", {
        href: `/v1/jobs/${jobId}/checkpoints/${c.id}/download`, title: `sha256 ${c.sha256}`,
        download: c.filename,
      }, "download"), c.best ? [" ", el("span", {
        class: "badge best-mark",
        title: "the best checkpoint by the monitored metric (else val_loss); retention keeps it",
      }, "best")] : null)))),
  );
}

start();
