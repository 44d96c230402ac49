// Write a spec, validate it (shapes and parameter counts, or the fields to change), submit it.
import { el, getJSON, prettyJSON, request } from "./api.js";

// Used when the API's OpenAPI document has no example (it normally carries this one).
const FALLBACK_EXAMPLE = {
  name: "digits-mlp",
  dataset: { name: "digits", val_fraction: 0.1 },
  model: {
    init: "he_normal",
    layers: [
      { type: "flatten" }, { type: "linear", out_features: 128 }, { type: "relu" },
      { type: "dropout", p: 0.2 }, { type: "linear", out_features: 10 },
    ],
  },
  loss: { type: "cross_entropy" },
  optimizer: { type: "adam", lr: 0.001, weight_decay: 0.0 },
  schedule: { type: "constant" },
  training: { epochs: 20, batch_size: 64, seed: 0 },
  resources: { device: "auto" },
};

const textarea = document.getElementById("spec");
const result = document.getElementById("result");
const buttons = ["validate", "submit", "reset"].map((id) => document.getElementById(id));

async function example() {
  try {
    const doc = await getJSON("/openapi.json");
    const examples = doc.paths["/v1/jobs"].post.requestBody.content["application/json"].examples;
    return Object.values(examples)[0].value;
  } catch {
    return FALLBACK_EXAMPLE;
  }
}

async function resetToExample() {
  textarea.value = prettyJSON(await example());
}

function readSpec() {
  try {
    JSON.parse(textarea.value);
    return textarea.value;
  } catch (error) {
    showProblems([{ field: "body", message: `not valid JSON: ${error.message}` }]);
    return null;
  }
}

function showProblems(detail) {
  const problems = Array.isArray(detail) ? detail : [{ field: "", message: String(detail) }];
  result.dataset.outcome = "invalid";
  result.replaceChildren(
    el("h2", { class: "bad" }, "Change these fields"),
    el("ul", { class: "problems" }, problems.map((problem) => el("li", {},
      problem.field ? el("code", { class: "field" }, problem.field) : "",
      el("span", {}, problem.message)))),
  );
}

function describeTargets(dataset) {
  if (dataset.task === "multilabel") return `, ${dataset.target_shape[0]} labels each`;
  return dataset.num_classes ? `, ${dataset.num_classes} classes` : ", regression";
}

function showModel({ model, dataset, warnings }) {
  result.dataset.outcome = "valid";
  const classes = describeTargets(dataset);
  result.replaceChildren(
    el("h2", { class: "good" }, "Valid"),
    el("p", {}, `${dataset.name}: ${dataset.n_samples} samples of shape `
      + `(${dataset.input_shape.join(", ")})${classes}.`),
    warnings.length ? el("ul", { class: "warnings" }, warnings.map((w) => el("li", {}, w))) : "",
    el("table", { class: "compact" },
      el("thead", {}, el("tr", {}, ["layer", "type", "output shape", "params"].map((h) =>
        el("th", {}, h)))),
      el("tbody", {}, model.layers.map((layer) => el("tr", {},
        el("td", {}, layer.name), el("td", {}, layer.type),
        el("td", {}, `(${layer.output_shape.join(", ")})`),
        el("td", { class: "num" }, layer.params.toLocaleString())))),
      el("tfoot", {}, el("tr", {}, el("td", { colspan: 3 }, "total"),
        el("td", { class: "num" }, model.total_params.toLocaleString())))),
  );
}

async function send(path) {
  const body = readSpec();
  if (body === null) return null;
  buttons.forEach((button) => { button.disabled = true; });
  try {
    const response = await request("POST", path, body);
    if (!response.ok) showProblems(response.data?.detail ?? `HTTP ${response.status}`);
    return response;
  } catch (error) {
    showProblems(`Cannot reach the API: ${error.message}`);
    return null;
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
  }
}

document.getElementById("validate").addEventListener("click", async () => {
  const response = await send("/v1/jobs/validate");
  if (response?.ok) showModel(response.data);
});

document.getElementById("submit").addEventListener("click", async () => {
  const response = await send("/v1/jobs");
  if (response?.ok) location.href = `/jobs/${response.data.id}`;
});

document.getElementById("reset").addEventListener("click", resetToExample);

resetToExample();
