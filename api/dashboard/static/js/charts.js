// Line charts on uPlot (vendored, loaded as the global `uPlot` before the page's module).

export const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

const HEIGHT = 240;
const GRID = { stroke: "rgba(0, 0, 0, 0.07)", width: 1 };
// Steps and epochs are whole numbers: no ticks between them.
const WHOLE_NUMBER_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5,
  2e5, 5e5, 1e6, 2e6, 5e6, 1e7];

// A chart in `container` that is rebuilt when its set of lines changes and redrawn in place
// when the lines only grow. The container's data-points attribute counts the points drawn.
export class LineChart {
  constructor(container, { title, logY = false, xLabel = "step" } = {}) {
    this.container = container;
    this.title = title;
    this.logY = logY;
    this.xLabel = xLabel;
    this.plot = null;
    this.key = null;
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(container);
  }

  size() {
    return { width: Math.max(280, this.container.clientWidth), height: HEIGHT };
  }

  // lines: [{label, x: [...], y: [...], stroke?, width?, faint?}]; empty lines are left out.
  draw(lines) {
    const shown = lines.filter((line) => line.x.length);
    const tables = shown.map((line) => [line.x, this.logY ? line.y.map(positiveOrNull) : line.y]);
    const data = shown.length ? uPlot.join(tables) : [[]];
    const key = shown.map((line) => line.label).join("\n");
    if (key !== this.key) {
      this.plot?.destroy();
      this.plot = shown.length ? new uPlot(this.options(shown), data, this.container) : null;
      this.key = key;
    } else if (this.plot) {
      this.plot.setData(data);
    }
    const points = shown.reduce((sum, line) => sum + line.x.length, 0);
    this.container.dataset.points = String(points);
    this.container.dataset.series = String(shown.length);
    return shown.length > 0;
  }

  options(lines) {
    return {
      title: this.title,
      ...this.size(),
      scales: { x: { time: false }, y: this.logY ? { distr: 3 } : {} },
      axes: [
        { label: this.xLabel, incrs: WHOLE_NUMBER_TICKS, grid: GRID },
        { size: 60, values: (_, ticks) => ticks.map(formatAxis), grid: GRID },
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: this.xLabel },
        ...lines.map((line, i) => ({
          label: line.label,
          stroke: line.stroke || PALETTE[i % PALETTE.length],
          width: line.width ?? (line.faint ? 1 : 2),
          alpha: line.faint ? 0.35 : 1,
          points: { show: false },
          spanGaps: true,
          value: (_, v) => (v == null ? "–" : formatTick(v)),
        })),
      ],
    };
  }
}

function positiveOrNull(value) {
  return value > 0 ? value : null;
}

function formatAxis(value) {
  return value == null ? "" : String(Number(value.toPrecision(3)));
}

function formatTick(value) {
  if (value === 0) return "0";
  return Math.abs(value) >= 1000 || Math.abs(value) < 1e-3 ? value.toExponential(3)
    : value.toPrecision(4);
}
