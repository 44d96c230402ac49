// The job's start-up line: where the seconds before its first training step went
// (GET /v1/jobs/{id} `startup`, worker/startup.py).
import { el } from "./api.js";

// In the order they run; their times add up to total_s.
const PHASES = [
  ["interpreter_s", "interpreter"], ["imports_s", "imports"], ["job_s", "job"],
  ["data_s", "data"], ["model_s", "model"], ["optimizer_s", "optimizer"],
  ["resume_s", "resume"], ["preflight_s", "preflight"], ["first_step_s", "first step"],
];

const seconds = (value) => `${value < 10 ? value.toFixed(2) : value.toFixed(1)} s`;

export function renderStartup(node, startup) {
  node.hidden = !startup;
  if (!startup) {
    node.replaceChildren();
    return;
  }
  const kind = startup.warm ? "warm process" : "new process";
  const parts = PHASES.filter(([key]) => startup[key] != null).map(([key, label]) =>
    el("span", { class: "phase", dataset: { phase: key } },
      el("span", { class: "muted" }, label), ` ${seconds(startup[key])}`));
  node.replaceChildren(
    el("span", { class: "muted small" }, "start-up"),
    el("strong", { dataset: { phase: "total_s" } }, ` ${seconds(startup.total_s)}`),
    el("span", { class: "muted" }, ` (${kind}, attempt ${startup.attempt}`,
      startup.queue_s != null ? `, queued ${seconds(startup.queue_s)} before` : "", ")"),
    ...parts,
  );
}
