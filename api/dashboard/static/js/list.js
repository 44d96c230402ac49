// The job list: polled every 2 s, filtered by state (server side) and name (here). A sweep's
// trials are one collapsible row (trials listed, trials ended, best objective, a link to the
// sweep's page) instead of a row per trial; expanded, its trials' rows follow it.
import {
  FINAL_STATES, badge, bestValidation, duration, el, formatTime, formatValue, getJSON,
  progressBar, progressText, showError,
} from "./api.js";

const POLL_MS = 2000;
const stateFilter = document.getElementById("state-filter");
const nameFilter = document.getElementById("name-filter");
const compareButton = document.getElementById("compare");
const rows = document.getElementById("job-rows");
const errorBox = document.getElementById("error");
const selected = new Set();
const sweeps = new Map(); // sweep id -> the sweep as GET /v1/sweeps lists it
const expanded = new Set(); // sweep ids whose trials are shown
const unlisted = new Set(); // sweep ids not among the newest 100 sweeps: not asked again
let jobs = [];
let timer = null;

const params = new URLSearchParams(location.search);
stateFilter.value = params.get("state") || "";
nameFilter.value = params.get("name") || "";

async function refresh() {
  clearTimeout(timer);
  const query = new URLSearchParams({ limit: "100" });
  if (stateFilter.value) query.set("state", stateFilter.value);
  try {
    const page = await getJSON(`/v1/jobs?${query}`);
    jobs = page.items;
    await readSweeps();
    document.getElementById("more").hidden = !page.next_cursor;
    showError(errorBox, "");
    render();
  } catch (error) {
    showError(errorBox, `Cannot read the job list: ${error.message}`);
  }
  timer = setTimeout(refresh, POLL_MS);
}

function render() {
  const needle = nameFilter.value.trim().toLowerCase();
  const shown = jobs.filter((job) => job.name.toLowerCase().includes(needle)
    || (job.sweep_id && sweeps.get(job.sweep_id)?.name.toLowerCase().includes(needle)));
  // Filtered by state, the trials are listed as they are: "which jobs were pruned" asks for
  // jobs, and the sweep's row would count trials the filter left out.
  rows.replaceChildren(...(stateFilter.value ? shown.map(jobRow) : grouped(shown)));
  document.getElementById("empty").hidden = shown.length > 0;
  compareButton.disabled = selected.size < 2;
  compareButton.textContent = selected.size ? `Compare (${selected.size})` : "Compare";
}

function jobRow(job) {
  const best = bestValidation(job.summary);
  const pick = el("input", {
    type: "checkbox", "aria-label": `select ${job.name}`, checked: selected.has(job.id),
    onchange: (event) => {
      if (event.target.checked) selected.add(job.id);
      else selected.delete(job.id);
      render();
    },
  });
  return el("tr", {
    class: job.sweep_id ? "clickable trial-row" : "clickable",
    dataset: { jobId: job.id, state: job.state },
    onclick: (event) => {
      if (!event.target.closest("input, a, label")) location.href = `/jobs/${job.id}`;
    },
  },
  el("td", {}, el("label", { class: "pick" }, pick)),
  el("td", {}, badge(job.state)),
  el("td", {}, el("a", { href: `/jobs/${job.id}` }, job.name), sweepTag(job), specTag(job)),
  el("td", { class: "progress-cell" },
    el("div", { class: "muted small" }, progressText(job.progress)), progressBar(job.progress)),
  el("td", { class: "num" }, best
    ? [formatValue(best.name, best.value), el("span", { class: "muted small" }, ` ${best.name}`)]
    : ""),
  el("td", { class: "num" }, duration(job)),
  el("td", { title: job.created_at }, formatTime(job.created_at)),
  );
}

// The rows in list order: a job alone, or, where a sweep's newest listed trial is, the
// sweep's row followed (when expanded) by its listed trials.
function grouped(shown) {
  const trialsOf = new Map();
  for (const job of shown) {
    if (job.sweep_id) {
      if (!trialsOf.has(job.sweep_id)) trialsOf.set(job.sweep_id, []);
      trialsOf.get(job.sweep_id).push(job);
    }
  }
  const out = [];
  for (const job of shown) {
    if (!job.sweep_id) {
      out.push(jobRow(job));
    } else if (trialsOf.get(job.sweep_id)[0] === job) {
      const trials = trialsOf.get(job.sweep_id);
      out.push(sweepRow(job.sweep_id, trials));
      if (expanded.has(job.sweep_id)) out.push(...trials.map(jobRow));
    }
  }
  return out;
}

function sweepRow(sweepId, trials) {
  const sweep = sweeps.get(sweepId);
  const open = expanded.has(sweepId);
  const toggle = el("button", {
    type: "button", class: "toggle", "aria-expanded": String(open),
    "aria-label": `${open ? "hide" : "show"} the trials`,
    onclick: () => {
      if (open) expanded.delete(sweepId);
      else expanded.add(sweepId);
      render();
    },
  }, open ? "▾" : "▸");
  const metric = sweep?.objective?.metric;
  const best = sweep?.best
    ? [formatValue(metric, sweep.best.value), el("span", { class: "muted small" }, ` ${metric}`)]
    : "–";
  const counts = sweep ? ` · ${sweep.trials_ended}/${sweep.trials_planned} ended` : "";
  return el("tr", { class: "sweep-group", dataset: { sweepId, trials: trials.length } },
    el("td", {}, toggle),
    el("td", {}, badge(sweep?.state || trials[0].state)),
    el("td", {}, el("a", { href: `/sweeps/${sweepId}` }, sweep?.name || `sweep ${sweepId.slice(0, 8)}`),
      el("div", { class: "muted small sweep-count" },
        `sweep: ${trials.length} trial job${trials.length === 1 ? "" : "s"} listed${counts}`)),
    el("td", {}, ""),
    el("td", { class: "num" }, best),
    el("td", {}, ""),
    el("td", { title: sweep?.created_at || "" }, formatTime(sweep?.created_at)));
}

// A trial job names its sweep (a link to the sweep's page) and its trial number.
function sweepTag(job) {
  if (!job.sweep_id) return "";
  const name = sweeps.get(job.sweep_id)?.name || job.sweep_id.slice(0, 8);
  return el("div", { class: "small sweep-tag" }, `trial ${job.trial_number} of sweep `,
    el("a", { href: `/sweeps/${job.sweep_id}` }, name));
}

// The sweeps the listed trials belong to (one request, the newest 100 sweeps): read when a
// trial of an unknown sweep appears or while a listed sweep runs, not on every poll.
async function readSweeps() {
  const wanted = new Set(jobs.filter((job) => job.sweep_id).map((job) => job.sweep_id));
  const stale = [...wanted].some((id) => !unlisted.has(id)
    && !FINAL_STATES.has(sweeps.get(id)?.state));
  if (!stale) return;
  try {
    for (const sweep of (await getJSON("/v1/sweeps?limit=100")).items) sweeps.set(sweep.id, sweep);
    for (const id of wanted) if (!sweeps.has(id)) unlisted.add(id); // older than the newest 100
  } catch {
    // the short ids stand in
  }
}

// What tells this job apart from the listed jobs of its name: the spec's digest, and the
// fields whose values differ (the API's `differs`), e.g. "optimizer.lr=0.01".
function specTag(job) {
  const differs = Object.entries(job.differs || {});
  const shown = differs.slice(0, 3).map(([path, value]) =>
    `${path}=${typeof value === "string" ? value : JSON.stringify(value)}`);
  if (differs.length > 3) shown.push(`(+${differs.length - 3})`);
  return el("div", { class: "muted small spec-tag", title: "spec digest; fields that differ "
    + "from the listed jobs of this name" },
  el("code", {}, job.spec_digest || ""), shown.length ? ` ${shown.join(" ")}` : "");
}

function saveFiltersInAddress() {
  const query = new URLSearchParams();
  if (stateFilter.value) query.set("state", stateFilter.value);
  if (nameFilter.value.trim()) query.set("name", nameFilter.value.trim());
  history.replaceState(null, "", query.size ? `/?${query}` : "/");
}

stateFilter.addEventListener("change", () => {
  saveFiltersInAddress();
  refresh();
});
nameFilter.addEventListener("input", () => {
  saveFiltersInAddress();
  render();
});
compareButton.addEventListener("click", () => {
  const ids = jobs.filter((job) => selected.has(job.id)).map((job) => job.id);
  for (const id of selected) if (!ids.includes(id)) ids.push(id);
  location.href = `/compare?ids=${ids.join(",")}`;
});

refresh();
