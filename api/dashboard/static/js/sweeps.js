// The sweep list: the owner's sweeps, polled every 3 s while one runs. The list's rows do not
// count ended trials, so each sweep's detail is read for it (an ended sweep's once).
import { FINAL_STATES, badge, el, formatTime, formatValue, getJSON, showError } from "./api.js";

const POLL_MS = 3000;
const SHOWN = 50;
const rows = document.getElementById("sweep-rows");
const errorBox = document.getElementById("error");
const details = new Map(); // sweep id -> its detail

async function refresh() {
  let sweeps = [];
  try {
    sweeps = (await getJSON("/v1/sweeps")).slice(0, SHOWN);
    await Promise.all(sweeps.filter((s) => !FINAL_STATES.has(details.get(s.id)?.state))
      .map(async (s) => {
        try {
          details.set(s.id, await getJSON(`/v1/sweeps/${s.id}`));
        } catch {
          details.delete(s.id);
        }
      }));
    showError(errorBox, "");
  } catch (error) {
    showError(errorBox, `Cannot read the sweeps: ${error.message}`);
  }
  rows.replaceChildren(...sweeps.map(sweepRow));
  document.getElementById("empty").hidden = sweeps.length > 0;
  if (sweeps.some((s) => !FINAL_STATES.has(s.state))) setTimeout(refresh, POLL_MS);
}

function sweepRow(sweep) {
  const trials = details.get(sweep.id)?.trials;
  const ended = trials ? trials.filter((t) => FINAL_STATES.has(t.state)).length : "–";
  const metric = sweep.objective.metric;
  const best = sweep.best
    ? [formatValue(metric, sweep.best.value), el("span", { class: "muted small" },
      ` ${metric}, trial ${sweep.best.trial_number}`)]
    : "–";
  return el("tr", {
    class: "clickable", dataset: { sweepId: sweep.id, state: sweep.state },
    onclick: (event) => {
      if (!event.target.closest("a")) location.href = `/sweeps/${sweep.id}`;
    },
  },
  el("td", {}, badge(sweep.state)),
  el("td", {}, el("a", { href: `/sweeps/${sweep.id}` }, sweep.name)),
  el("td", {}, sweep.method),
  el("td", { class: "num" }, `${ended}/${sweep.trials_planned}`),
  el("td", { class: "num" }, best),
  el("td", { title: sweep.created_at }, formatTime(sweep.created_at)));
}

refresh();
