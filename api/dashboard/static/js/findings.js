// The job's diagnosis at the top of its page: each finding's name, severity, the step it
// has held since, its evidence and the spec changes to try (GET /v1/jobs/{id} `diagnosis`,
// updated by the events stream's `diagnosis` event or by polling). Text nodes only.
import { el } from "./api.js";

const SEVERITIES = new Set(["error", "warning", "info"]);

// As the spec holds it: 0.001, "sgd", {"type": "he_normal"}.
const valueText = (value) => JSON.stringify(value) ?? "null";

function actionItem(action) {
  return el("li", { class: "action" }, "set ", el("code", {}, action.field), " to ",
    el("code", {}, valueText(action.value)), `: ${action.why}`);
}

function findingItem(finding) {
  const severity = SEVERITIES.has(finding.severity) ? finding.severity : "warning";
  const actions = finding.actions || [];
  return el("li", { class: `finding severity-${severity}`, dataset: { name: finding.name } },
    el("div", { class: "finding-title" },
      el("span", { class: `badge severity-${severity}` }, severity), " ",
      el("strong", { class: "finding-name" }, finding.name), " ",
      el("span", { class: "muted small" }, `since step ${finding.since_step}`)),
    el("div", { class: "evidence" }, finding.evidence),
    actions.length ? el("ul", { class: "actions" }, actions.map(actionItem)) : null);
}

export function renderFindings(node, diagnosis) {
  const findings = diagnosis?.findings || [];
  const step = diagnosis?.step || 0;
  // Nothing to say before the rules have found anything, or for a run never diagnosed.
  const nothing = findings.length === 0 && !(diagnosis?.final && step);
  node.hidden = nothing;
  node.dataset.findings = String(findings.length);
  if (nothing) {
    node.replaceChildren();
    return;
  }
  const status = diagnosis.final ? "final" : "so far";
  const count = `${findings.length} finding${findings.length > 1 ? "s" : ""}`;
  const head = findings.length
    ? `Diagnosis: ${count} at step ${step} (${status})`
    : `Diagnosis: nothing found (the run's steps through ${step} were read)`;
  const list = el("ul", { class: "finding-list" }, findings.map(findingItem));
  node.replaceChildren(el("div", { class: "findings-head" }, head),
    ...(findings.length ? [list] : []));
}
