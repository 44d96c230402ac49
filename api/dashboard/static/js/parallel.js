// A parallel-coordinates plot on a canvas, drawn here rather than by a library (the dashboard
// vendors only uPlot, which has no such plot): one vertical axis per swept parameter and one
// for the objective, one polyline per trial coloured by the rank of its objective, from best
// (green) to worst (red).

const PAD = { top: 28, bottom: 34, left: 48, right: 64 };
const BEST = [18, 183, 106];
const WORST = [217, 45, 32];
const MAX_TICKS = 6; // a grid's few values are each labelled; more, only the ends
const NO_VALUE = "rgba(102, 112, 133, 0.45)";

// An axis's scale: numbers linearly (log when they are all positive and span 20x or more),
// anything else as evenly spaced categories in sorted order. position(v) is 0 (bottom) to 1.
export function scaleFor(values) {
  const known = values.filter((v) => v !== undefined && v !== null);
  if (known.length && known.every((v) => typeof v === "number" && Number.isFinite(v))) {
    let lo = Math.min(...known);
    let hi = Math.max(...known);
    const log = lo > 0 && hi / lo >= 20;
    const f = log ? Math.log10 : (v) => v;
    if (lo === hi) {
      return { position: () => 0.5, ticks: [[lo, 0.5]] };
    }
    [lo, hi] = [f(lo), f(hi)];
    const position = (v) => (f(v) - lo) / (hi - lo);
    const distinct = [...new Set(known)];
    const ticks = distinct.length <= MAX_TICKS ? distinct : [Math.min(...known), Math.max(...known)];
    return { position, ticks: ticks.map((v) => [v, position(v)]) };
  }
  const names = [...new Set(known.map(category))].sort();
  const at = (name) => (names.length === 1 ? 0.5 : names.indexOf(name) / (names.length - 1));
  return { position: (v) => at(category(v)), ticks: names.map((name) => [name, at(name)]) };
}

function category(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function label(value) {
  if (typeof value !== "number") return String(value).slice(0, 18);
  return Math.abs(value) >= 1e4 || (value !== 0 && Math.abs(value) < 1e-3)
    ? value.toExponential(1) : String(Number(value.toPrecision(3)));
}

function colour(share) {
  const rgb = BEST.map((from, i) => Math.round(from + (WORST[i] - from) * share));
  return `rgb(${rgb.join(", ")})`;
}

// axes: [{label, values}], values by trial (undefined where a trial has none); the last axis
// is the objective, whose values colour the lines; direction "min" or "max" says which end is
// best. Returns how many lines were drawn (also kept in canvas.dataset.lines).
export function drawParallel(canvas, axes, direction = "min") {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(320, canvas.parentElement.clientWidth - 16);
  const height = Number(canvas.getAttribute("height")) || 320;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const count = axes.length ? axes[0].values.length : 0;
  if (axes.length < 2 || !count) {
    canvas.dataset.lines = "0";
    return 0;
  }
  const scales = axes.map((axis) => scaleFor(axis.values));
  const x = (i) => PAD.left + (i * (width - PAD.left - PAD.right)) / (axes.length - 1);
  const y = (share) => height - PAD.bottom - share * (height - PAD.top - PAD.bottom);
  const objective = axes[axes.length - 1].values;
  // Coloured by rank, not value: one diverged trial would otherwise paint all others green.
  const ranked = [...new Set(objective.filter((v) => typeof v === "number"))]
    .sort((a, b) => (direction === "max" ? b - a : a - b));
  const badness = (v) => (ranked.length < 2 ? 0 : ranked.indexOf(v) / (ranked.length - 1));
  // Worst first, so that the best lines are drawn on top; trials with no value under all.
  const order = [...Array(count).keys()].sort((a, b) => {
    const [va, vb] = [objective[a], objective[b]];
    if (typeof va !== "number" || typeof vb !== "number") return typeof va === "number" ? 1 : -1;
    return badness(vb) - badness(va);
  });
  let drawn = 0;
  ctx.lineWidth = 2;
  for (const trial of order) {
    const value = objective[trial];
    ctx.strokeStyle = typeof value === "number" ? colour(badness(value)) : NO_VALUE;
    ctx.setLineDash(typeof value === "number" ? [] : [4, 4]);
    ctx.beginPath();
    let started = false;
    axes.forEach((axis, i) => {
      const v = axis.values[trial];
      if (v === undefined || v === null) return;
      const point = [x(i), y(scales[i].position(v))];
      if (started) ctx.lineTo(...point);
      else ctx.moveTo(...point);
      started = true;
    });
    ctx.stroke();
    drawn += 1;
  }
  ctx.setLineDash([]);
  drawAxes(ctx, axes, scales, x, y);
  canvas.dataset.lines = String(drawn);
  return drawn;
}

function drawAxes(ctx, axes, scales, x, y) {
  ctx.font = "11px system-ui, sans-serif";
  axes.forEach((axis, i) => {
    ctx.strokeStyle = "#667085";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x(i), y(0));
    ctx.lineTo(x(i), y(1));
    ctx.stroke();
    ctx.fillStyle = "#1d2430";
    ctx.textAlign = i === 0 ? "left" : i === axes.length - 1 ? "right" : "center";
    ctx.fillText(axis.label, x(i), PAD.top - 12);
    ctx.textAlign = "left";
    ctx.fillStyle = "#667085";
    for (const [value, share] of scales[i].ticks) {
      ctx.fillText(label(value), x(i) + 5, y(share) + (share > 0.5 ? 10 : -3));
    }
  });
}
