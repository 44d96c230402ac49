// Talking to the v1 API, and the small DOM and formatting helpers every page shares.

export const FINAL_STATES = new Set(["succeeded", "failed", "cancelled", "pruned"]);
export const STATES = ["queued", "running", "succeeded", "failed", "cancelled", "pruned"];

export class ApiError extends Error {
  constructor(status, detail) {
    super(describeDetail(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

// {status, ok, data}; throws only when the server cannot be reached.
export async function request(method, path, body) {
  const init = { method, headers: { accept: "application/json" } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && !path.startsWith("/signin")) {
    // The sign-in cookie expired or its key was revoked: sign in again, then come back here.
    window.location.assign(`/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, ok: response.ok, data };
}

export async function getJSON(path) {
  const { ok, status, data } = await request("GET", path);
  if (!ok) throw new ApiError(status, data?.detail);
  return data;
}

// A 422's detail is a list of {field, message}; other errors carry a sentence.
export function describeDetail(detail) {
  if (Array.isArray(detail)) return detail.map((d) => d.message || JSON.stringify(d)).join("; ");
  return typeof detail === "string" ? detail : "";
}

// A job's metrics after sinceStep: {name: {step: [...], value: [...], epoch: [...]}}. One
// request: the API does not page, it returns every series whole, a long one downsampled to
// at most maxPoints buckets (docs/api.md, GET /v1/jobs/{id}/metrics).
export async function fetchMetrics(jobId, { sinceStep = -1, maxPoints = 2000 } = {}) {
  const query = `since_step=${sinceStep}&max_points=${maxPoints}`;
  const data = await getJSON(`/v1/jobs/${jobId}/metrics?${query}`);
  const series = {};
  mergeSeries(series, data.series);
  return series;
}

// Append the incoming points that are newer than what each series holds, so that repeated or
// overlapping deliveries (a poll after a stream, a reconnect) never draw a point twice.
export function mergeSeries(target, incoming) {
  for (const [name, points] of Object.entries(incoming || {})) {
    const values = points.value ?? points.mean ?? [];
    const into = (target[name] ??= { step: [], value: [], epoch: [] });
    const last = into.step.length ? into.step[into.step.length - 1] : -Infinity;
    points.step.forEach((step, i) => {
      if (step <= last) return;
      into.step.push(step);
      into.value.push(values[i]);
      into.epoch.push(points.epoch ? points.epoch[i] : null);
    });
  }
  return target;
}

export function lastStep(series) {
  let last = -1;
  for (const points of Object.values(series)) {
    if (points.step.length) last = Math.max(last, points.step[points.step.length - 1]);
  }
  return last;
}

// el("a", {href: "/", class: "x"}, "text", child): children are text or nodes, never HTML.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child != null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function badge(state) {
  return el("span", { class: `badge state-${state}` }, state);
}

export function progressBar(progress) {
  const total = progress?.total_steps || 0;
  const share = total ? Math.min(1, (progress.step || 0) / total) : 0;
  const fill = el("div", { class: "bar-fill" });
  // Through the CSSOM: the pages' CSP forbids style attributes.
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  return el("div", { class: "bar", title: `${Math.round(share * 100)}%` }, fill);
}

export function progressText(progress) {
  if (!progress) return "";
  const epochs = progress.epochs ? `/${progress.epochs}` : "";
  const steps = progress.total_steps ? `/${progress.total_steps}` : "";
  return `epoch ${progress.epoch ?? 0}${epochs} · step ${progress.step ?? 0}${steps}`;
}

// The headline number of a job: best validation accuracy, else best validation loss or rmse.
export function bestValidation(summary) {
  const best = summary?.best || {};
  for (const name of ["val_accuracy", "val_loss", "val_rmse"]) {
    if (best[name]) return { name, ...best[name] };
  }
  return null;
}

export function formatValue(name, value) {
  if (value == null || Number.isNaN(value)) return "–";
  if (name.endsWith("accuracy") || name.endsWith("exact_match")) {
    return `${(value * 100).toFixed(2)}%`;
  }
  return Math.abs(value) >= 1000 ? value.toFixed(0) : value.toPrecision(4);
}

export function duration(job, now = Date.now()) {
  if (!job.started_at) return "";
  const end = job.finished_at ? Date.parse(job.finished_at) : now;
  const seconds = Math.max(0, Math.round((end - Date.parse(job.started_at)) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
  return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
}

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

// JSON indented by two spaces, with every object or list that fits in `width` on one line.
export function prettyJSON(value, indent = "", width = 88) {
  const inline = JSON.stringify(value, null, 1)?.replace(/\n\s*/g, " ") ?? "null";
  if (value === null || typeof value !== "object" || indent.length + inline.length <= width) {
    return inline;
  }
  const inner = `${indent}  `;
  const items = Array.isArray(value)
    ? value.map((item) => inner + prettyJSON(item, inner, width))
    : Object.entries(value).map(([key, item]) =>
      `${inner}${JSON.stringify(key)}: ${prettyJSON(item, inner, width)}`);
  const [open, close] = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  return `${open}\n${items.join(",\n")}\n${indent}${close}`;
}

export function showError(container, message) {
  container.replaceChildren(message ? el("div", { class: "alert" }, message) : "");
}
