// The job page's Logs panel: the latest attempt's log, followed while it runs (and the next
// attempt's when the job is retried), with an attempt selector once there are several.
// Log text goes into the page as text nodes only: it is never parsed as HTML.
import { FINAL_STATES, describeDetail, getJSON } from "./api.js";

const WAIT_MS = 2000;
const KEEP_CHARS = 1_000_000; // of a chatty live log, the panel keeps the newest part

const jobId = decodeURIComponent(location.pathname.split("/")[2] || "");
const panel = document.getElementById("log");
const picker = document.getElementById("log-attempt");
const status = document.getElementById("log-status");
let reading = null; // the AbortController of the log being read
let chars = 0;
let pickedByUser = false;

// For tests and for poking around in the console.
window.traindockLogs = { attempt: null, live: false };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function readJob() {
  try {
    return await getJSON(`/v1/jobs/${jobId}`);
  } catch {
    return null; // the page's header says why
  }
}

async function start() {
  picker.addEventListener("change", () => {
    pickedByUser = true;
    show(Number(picker.value));
  });
  let job = await readJob();
  if (!job) return;
  // A log is asked for only once an attempt has begun: the answer before would be a 404.
  while (job.attempt === 0 && !FINAL_STATES.has(job.state)) {
    status.textContent = "No log yet: it begins when a worker starts the job.";
    await sleep(WAIT_MS);
    job = (await readJob()) ?? job;
  }
  if (job.attempt === 0) {
    status.textContent = "No log: the job ended before an attempt began.";
    return;
  }
  while (!pickedByUser) {
    const shown = await show(null); // until the attempt is over
    if (pickedByUser) return;
    job = (await readJob()) ?? job;
    if (FINAL_STATES.has(job.state)) return;
    // Retried: wait for the next attempt to begin, then follow it.
    while (!pickedByUser && job.attempt === shown && !FINAL_STATES.has(job.state)) {
      await sleep(WAIT_MS);
      job = (await readJob()) ?? job;
    }
    if (shown === null) await sleep(WAIT_MS);
  }
}

// Read one attempt's log (the latest when `attempt` is null), following it while it runs.
// Resolves to the attempt shown once its log has ended, or to null when it was not read.
async function show(attempt) {
  reading?.abort();
  const controller = new AbortController();
  reading = controller;
  const query = new URLSearchParams({ follow: "true" });
  if (attempt) query.set("attempt", attempt);
  let response;
  try {
    response = await fetch(`/v1/jobs/${jobId}/logs?${query}`,
      { signal: controller.signal, headers: { accept: "text/plain" } });
  } catch (error) {
    if (!controller.signal.aborted) status.textContent = `Cannot read the log: ${error.message}`;
    return null;
  }
  if (!response.ok) {
    let detail = null;
    try {
      detail = (await response.json()).detail;
    } catch {
      detail = null;
    }
    status.textContent = describeDetail(detail) || `Cannot read the log: HTTP ${response.status}`;
    return null;
  }
  const shown = Number(response.headers.get("X-Log-Attempt"));
  const attempts = (response.headers.get("X-Log-Attempts") || "").split(",").filter(Boolean);
  const leftOut = Number(response.headers.get("X-Log-Start") || 0);
  fillPicker(attempts, shown);
  panel.replaceChildren();
  panel.hidden = false;
  chars = 0;
  setStatus(shown, leftOut, true);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      append(value);
    }
  } catch (error) {
    if (!controller.signal.aborted) status.textContent = `The log stopped: ${error.message}`;
    return null;
  }
  if (controller.signal.aborted) return null;
  setStatus(shown, leftOut, false);
  return shown;
}

function append(text) {
  const atBottom = panel.scrollHeight - panel.scrollTop - panel.clientHeight < 24;
  panel.append(document.createTextNode(text));
  chars += text.length;
  if (chars > KEEP_CHARS) {
    const kept = panel.textContent.slice(-KEEP_CHARS);
    panel.textContent = kept.slice(kept.indexOf("\n") + 1);
    chars = panel.textContent.length;
  }
  if (atBottom) panel.scrollTop = panel.scrollHeight;
}

function fillPicker(attempts, shown) {
  picker.replaceChildren(...attempts.map((n) => {
    const option = document.createElement("option");
    option.value = n;
    option.textContent = `attempt ${n}`;
    return option;
  }));
  picker.value = String(shown);
  picker.hidden = attempts.length < 2;
}

function setStatus(attempt, leftOut, live) {
  window.traindockLogs.attempt = attempt;
  window.traindockLogs.live = live;
  const parts = [`attempt ${attempt}`, live ? "live" : "ended"];
  if (leftOut) parts.push(`its first ${leftOut.toLocaleString()} bytes are left out`);
  status.textContent = parts.join(" · ");
}

start();
