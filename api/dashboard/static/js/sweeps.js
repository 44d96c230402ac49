// The sweep list: the owner's newest sweeps, polled every 3 s while one runs. One request
// per poll: each item of GET /v1/sweeps carries its state, trials ended and best so far.
import { FINAL_STATES, badge, el, formatTime, formatValue, getJSON, showError } from "./api.js";

const POLL_MS = 3000;
const SHOWN = 50;
const rows = document.getElementById("sweep-rows");
const errorBox = document.getElementById("error");

async function refresh() {
  let sweeps = [];
  let more = false;
  try {
    const page = await getJSON(`/v1/sweeps?limit=${SHOWN}`);
    sweeps = page.items;
    more = Boolean(page.next_cursor);
    showError(errorBox, "");
  } catch (error) {
    showError(errorBox, `Cannot read the sweeps: ${error.message}`);
  }
  rows.replaceChildren(...sweeps.map(sweepRow));
  document.getElementById("empty").hidden = sweeps.length > 0;
  document.getElementById("more").hidden = !more;
  if (sweeps.some((s) => !FINAL_STATES.has(s.state))) setTimeout(refresh, POLL_MS);
}

function sweepRow(sweep) {
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
  el("td", { class: "num" }, `${sweep.trials_ended}/${sweep.trials_planned}`),
  el("td", { class: "num" }, best),
  el("td", { title: sweep.created_at }, formatTime(sweep.created_at)));
}

refresh();
