// A learning-rate range test's chart (jobs in mode lr_find): the smoothed loss, and the raw
// one faint, against the rate on a log axis, with each rule's suggestion marked by a dashed
// line at its rate and a dot where it reads the curve (docs/lr_find.md). The marks are drawn
// on uPlot's canvas; the list below the chart says the same in text.
import { el } from "./api.js";
import { PALETTE } from "./charts.js";

const HEIGHT = 300;
const RULES = ["valley", "steep", "minimum"];
const COLORS = { valley: PALETTE[3], steep: PALETTE[4], minimum: PALETTE[5] };
const SKIP_END = 5; // the blow-up that stopped the test: not used to scale the loss axis
const GRID = { stroke: "rgba(0, 0, 0, 0.07)", width: 1 };

export class RangeTestChart {
  constructor(container, legend) {
    this.container = container;
    this.legend = legend;
    this.plot = null;
    this.report = null;
    this.yRange = [0, 1];
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(container);
  }

  size() {
    return { width: Math.max(280, this.container.clientWidth), height: HEIGHT };
  }

  // series: the job's, by name; report: summary.lr_find (absent until the test ends).
  // Returns whether there is a curve to show.
  draw(series, report) {
    const smoothed = series["lr_find/loss"];
    const rates = series.lr;
    if (!smoothed?.step.length || !rates?.step.length) return false;
    const rateAt = new Map(rates.step.map((step, i) => [step, rates.value[i]]));
    const raw = new Map((series["lr_find/loss_raw"]?.step || [])
      .map((step, i) => [step, series["lr_find/loss_raw"].value[i]]));
    const xs = [];
    const ys = [];
    const raws = [];
    smoothed.step.forEach((step, i) => {
      const lr = rateAt.get(step);
      if (!(lr > 0)) return; // its rate not read yet: the next poll brings it
      xs.push(lr);
      ys.push(smoothed.value[i]);
      raws.push(raw.get(step) ?? null);
    });
    this.yRange = lossRange(ys);
    this.report = report || null;
    const data = [xs, ys, raws];
    // setData redraws, marks included. Not redraw(): called before a new plot's first
    // commit, it leaves uPlot 1.6's log x scale without a range (nothing is drawn).
    if (!this.plot) this.plot = new uPlot(this.options(), data, this.container);
    else this.plot.setData(data);
    this.container.dataset.points = String(xs.length);
    this.container.dataset.marks = String(this.marked().length);
    this.renderLegend();
    return true;
  }

  // The rules with a suggestion: [{rule, rate, mark: {lr, loss}}].
  marked() {
    const suggestions = this.report?.suggestions || {};
    return RULES.filter((rule) => suggestions[rule] > 0).map((rule) => ({
      rule, rate: suggestions[rule], mark: this.report.marks?.[rule],
    }));
  }

  options() {
    return {
      title: "Learning-rate range test: loss against rate (log scale)",
      ...this.size(),
      scales: {
        x: { time: false, distr: 3, log: 10 },
        y: { range: () => this.yRange },
      },
      axes: [
        { label: "learning rate", grid: GRID, values: (_, ticks) => ticks.map(formatTick) },
        { size: 60, grid: GRID, values: (_, ticks) => ticks.map((v) => String(Number(v.toPrecision(3)))) },
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: "lr", value: (_, v) => (v == null ? "–" : formatRate(v)) },
        { label: "loss (smoothed)", stroke: PALETTE[0], width: 2, points: { show: false } },
        { label: "loss (raw)", stroke: PALETTE[0], width: 1, alpha: 0.3, points: { show: false } },
      ],
      hooks: { draw: [(u) => this.drawMarks(u)] },
    };
  }

  drawMarks(u) {
    const { ctx } = u;
    const { left, top, width, height } = u.bbox;
    const ratio = devicePixelRatio || 1;
    ctx.save();
    ctx.font = `${12 * ratio}px sans-serif`;
    this.marked().forEach(({ rule, rate, mark }, i) => {
      const x = u.valToPos(rate, "x", true);
      if (x < left || x > left + width) return;
      ctx.strokeStyle = ctx.fillStyle = COLORS[rule];
      ctx.lineWidth = 1.5 * ratio;
      ctx.setLineDash([5 * ratio, 4 * ratio]);
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.setLineDash([]);
      if (mark) {
        ctx.beginPath();
        ctx.arc(u.valToPos(mark.lr, "x", true), u.valToPos(mark.loss, "y", true), 4 * ratio, 0,
          2 * Math.PI);
        ctx.fill();
      }
      ctx.fillText(rule, x + 4 * ratio, top + (14 + 14 * i) * ratio);
    });
    ctx.restore();
  }

  renderLegend() {
    const report = this.report;
    if (!report) {
      this.legend.replaceChildren(el("li", { class: "muted" },
        "The suggestions appear when the test ends."));
      return;
    }
    const items = this.marked().map(({ rule, rate }) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = COLORS[rule];
      const chosen = rule === report.rule;
      return el("li", { class: chosen ? "suggested" : null, dataset: { rule } }, swatch,
        ` ${rule} ${formatRate(rate)}`, chosen ? " (suggested)" : "");
    });
    items.push(el("li", { class: "muted" }, `${report.points} points; ${report.stopped}`));
    if (report.note) items.push(el("li", { class: "warning" }, report.note));
    this.legend.replaceChildren(...items);
  }
}

// From the lowest loss to the highest before the last SKIP_END points, with a margin: the
// blow-up that ends a test would otherwise flatten the curve that matters.
function lossRange(values) {
  const body = values.length > 2 * SKIP_END ? values.slice(0, -SKIP_END) : values;
  const low = Math.min(...values);
  const high = Math.max(...body);
  const pad = (high - low) * 0.05 || Math.abs(low) * 0.05 || 1;
  return [low - pad, high + pad];
}

function formatTick(value) {
  return value == null ? "" : value.toExponential(0);
}

function formatRate(value) {
  return value == null ? "" : value.toExponential(2);
}
