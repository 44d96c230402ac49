// The job list: polled every 2 s, filtered by state (server side) and name (here).
import {
  badge, bestValidation, duration, el, formatTime, formatValue, getJSON, progressBar,
  progressText, showError,
} from "./api.js";

const POLL_MS = 2000;
const stateFilter = document.getElementById("state-filter");
const nameFilter = document.getElementById("name-filter");
const compareButton = document.getElementById("compare");
const rows = document.getElementById("job-rows");
const errorBox = document.getElementById("error");
const selected = new Set();
const sweepNames = new Map(); // sweep id -> name
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
    await nameSweeps();
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
  const shown = jobs.filter((job) => job.name.toLowerCase().includes(needle));
  rows.replaceChildren(...shown.map(jobRow));
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
    class: "clickable", dataset: { jobId: job.id, state: job.state },
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

// A trial job names its sweep (a link to the sweep's page) and its trial number.
function sweepTag(job) {
  if (!job.sweep_id) return "";
  const name = sweepNames.get(job.sweep_id) || job.sweep_id.slice(0, 8);
  return el("div", { class: "small sweep-tag" }, `trial ${job.trial_number} of sweep `,
    el("a", { href: `/sweeps/${job.sweep_id}` }, name));
}

// The names of the sweeps the listed trials belong to: read when a trial of an unnamed one
// appears, not on every poll.
async function nameSweeps() {
  const unnamed = jobs.some((job) => job.sweep_id && !sweepNames.has(job.sweep_id));
  if (!unnamed) return;
  try {
    for (const sweep of await getJSON("/v1/sweeps")) sweepNames.set(sweep.id, sweep.name);
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
