// The job page's "Try it" panel: once the job has finished with a checkpoint, send it inputs
// and draw the answer as probability bars. Image models (digits, image-folder uploads): draw
// on a canvas with the mouse or a finger, or drop an image on it; the drawing is scaled down
// to the model's input size with the training data's value range (digits: 0..16). Tables: a
// form with one number per feature. Everything goes through POST /v1/jobs/{id}/predict.
import { FINAL_STATES, describeDetail, el, getJSON, request } from "./api.js";

const WAIT_MS = 3000;
const CANVAS_PX = 192;
const MAX_FORM_VALUES = 64; // more values than this are asked for as a JSON array

const jobId = decodeURIComponent(location.pathname.split("/")[2] || "");
const panel = document.getElementById("try-it");
const inputBox = document.getElementById("try-it-input");
const bars = document.getElementById("try-it-bars");
const hint = document.getElementById("try-it-hint");

// For tests and for poking around in the console: the last answer and the rows sent.
window.traindockTryIt = { answer: null, inputs: null, ready: false };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function start() {
  let job = null;
  for (;;) {
    try {
      job = await getJSON(`/v1/jobs/${jobId}`);
    } catch {
      return; // the page's header says why
    }
    if (FINAL_STATES.has(job.state)) break;
    await sleep(WAIT_MS);
  }
  let inputs;
  try {
    inputs = await getJSON(`/v1/jobs/${jobId}/predict`);
  } catch {
    return;
  }
  if (!inputs.has_checkpoint) return;
  panel.hidden = false;
  if (inputs.input === "image") imagePanel(inputs);
  else tablePanel(inputs);
  window.traindockTryIt.ready = true;
}

async function predict(rows) {
  window.traindockTryIt.inputs = rows;
  const { ok, data, status } = await request("POST", `/v1/jobs/${jobId}/predict`,
    { inputs: rows });
  if (!ok) {
    bars.replaceChildren(el("div", { class: "alert" },
      describeDetail(data?.detail) || `HTTP ${status}`));
    return;
  }
  window.traindockTryIt.answer = data;
  showAnswer(data.predictions[0], data);
}

function showAnswer(prediction, data) {
  const rows = [];
  if (prediction.values) {
    rows.push(el("p", { class: "try-value" }, `predicted: ${prediction.values
      .map((v) => v.toPrecision(4)).join(", ")}`));
  } else {
    const headline = prediction.class ?? (prediction.labels || []).join(", ") ?? "";
    rows.push(el("p", { class: "try-value" }, prediction.class !== undefined
      ? `predicted: ${headline}` : `labels: ${headline || "none"}`));
    for (const [name, p] of Object.entries(prediction.probabilities || {})) {
      const fill = el("div", { class: "bar-fill" });
      fill.style.width = `${(p * 100).toFixed(1)}%`; // the CSP forbids style attributes
      const chosen = name === prediction.class || (prediction.labels || []).includes(name);
      rows.push(el("div", { class: `try-bar${chosen ? " chosen" : ""}`, dataset: { cls: name } },
        el("span", { class: "try-name" }, name),
        el("div", { class: "bar" }, fill),
        el("span", { class: "try-p small" }, `${(p * 100).toFixed(1)}%`)));
    }
  }
  rows.push(el("p", { class: "muted small" },
    `checkpoint at step ${data.checkpoint.step}`));
  bars.replaceChildren(...rows);
}

// --- images -------------------------------------------------------------------------------

function imagePanel(inputs) {
  const shape = inputs.input_shape;
  const channels = shape.length === 3 ? shape[0] : 1;
  const [height, width] = shape.slice(-2);
  hint.textContent = `Draw a ${inputs.class_names ? "character" : "shape"} (light on dark, as ` +
    `the training images are) or drop a PNG or JPEG on the canvas; it is scaled to ` +
    `${width}x${height}.`;
  const canvas = el("canvas", { id: "try-canvas", width: CANVAS_PX, height: CANVAS_PX,
    "aria-label": "drawing area" });
  const context = canvas.getContext("2d");
  const clear = () => {
    context.fillStyle = "#000";
    context.fillRect(0, 0, CANVAS_PX, CANVAS_PX);
    bars.replaceChildren();
  };
  clear();
  const send = () => predict([pixels(canvas, channels, height, width, inputs.image_value_max)]);
  let last = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (CANVAS_PX / box.width),
      (event.clientY - box.top) * (CANVAS_PX / box.height)];
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = at(event);
    stroke(context, last, last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = at(event);
    stroke(context, last, next);
    last = next;
  });
  const end = () => {
    if (!last) return;
    last = null;
    send();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("dragover", (event) => event.preventDefault());
  canvas.addEventListener("drop", async (event) => {
    event.preventDefault();
    const file = event.dataTransfer?.files?.[0];
    if (!file) return;
    const image = await createImageBitmap(file).catch(() => null);
    if (!image) {
      bars.replaceChildren(el("div", { class: "alert" }, `${file.name} is not an image`));
      return;
    }
    clear();
    context.drawImage(image, 0, 0, CANVAS_PX, CANVAS_PX);
    send();
  });
  inputBox.replaceChildren(canvas, el("div", { class: "try-actions" },
    el("button", { type: "button", id: "try-clear", onclick: clear }, "Clear"),
    el("button", { type: "button", id: "try-predict", onclick: send }, "Predict")));
}

function stroke(context, [x0, y0], [x1, y1]) {
  context.strokeStyle = "#fff";
  context.lineWidth = CANVAS_PX / 9;
  context.lineCap = "round";
  context.beginPath();
  context.moveTo(x0, y0);
  context.lineTo(x1, y1);
  context.stroke();
}

// The canvas scaled to width x height, as rows of (C, H, W) values 0..valueMax.
function pixels(canvas, channels, height, width, valueMax) {
  const small = document.createElement("canvas");
  small.width = width;
  small.height = height;
  const context = small.getContext("2d");
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = "high";
  context.drawImage(canvas, 0, 0, width, height);
  const { data } = context.getImageData(0, 0, width, height);
  const scale = (valueMax ?? 255) / 255;
  const values = [];
  for (let c = 0; c < channels; c += 1) {
    for (let i = 0; i < width * height; i += 1) {
      const [r, g, b] = [data[4 * i], data[4 * i + 1], data[4 * i + 2]];
      const v = channels === 1 ? (r + g + b) / 3 : [r, g, b][c];
      values.push(Math.round(v * scale * 1000) / 1000);
    }
  }
  return values;
}

// --- tables -------------------------------------------------------------------------------

function tablePanel(inputs) {
  const size = inputs.input_shape.reduce((a, b) => a * b, 1);
  const names = inputs.feature_names
    || (size <= MAX_FORM_VALUES ? Array.from({ length: size }, (_, i) => `x[${i}]`) : null);
  const form = el("form", { id: "try-form", class: "try-form" });
  if (names) {
    hint.textContent = "One number per feature, as in the training data (the model " +
      "applies the training normalisation itself).";
    for (const name of names) {
      form.append(el("label", {}, el("span", {}, name),
        el("input", { type: "number", step: "any", required: true, name, value: "0" })));
    }
  } else {
    hint.textContent = `A JSON array of ${size} numbers (shape ${inputs.input_shape.join("x")}).`;
    form.append(el("textarea", { name: "array", rows: 4, required: true }, "[]"));
  }
  form.append(el("button", { type: "submit", id: "try-predict" }, "Predict"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    let row;
    if (names) {
      row = names.map((name) => Number(form.elements.namedItem(name).value));
    } else {
      try {
        row = JSON.parse(form.elements.namedItem("array").value);
      } catch (error) {
        bars.replaceChildren(el("div", { class: "alert" }, `not JSON: ${error.message}`));
        return;
      }
    }
    predict([row]);
  });
  inputBox.replaceChildren(form);
}

start();
