// A finished job's test evaluation (GET /v1/jobs/{id} `evaluation`, worker/evaluation_report.py):
// classification: the confusion matrix as a heat map with the classes' names, and per-class
// precision, recall, F1 and support; multi-label: the per-label table; regression: predicted
// against true values with the y = x line.
import { el } from "./api.js";
import { PALETTE } from "./charts.js";

// More classes than this: the page lists the largest confusions instead of the matrix.
const MAX_DRAWN_CLASSES = 50;
const HEIGHT = 320;

const ratio = (value) => (value == null ? "–" : value.toFixed(3));

export function renderEvaluation(section, evaluation) {
  const body = section.querySelector("#evaluation-body");
  section.hidden = !evaluation;
  if (!evaluation) {
    body.replaceChildren();
    return;
  }
  section.dataset.task = evaluation.task;
  const caption = el("p", { class: "muted small" },
    `test split, ${evaluation.samples} samples`,
    evaluation.accuracy != null ? `, accuracy ${ratio(evaluation.accuracy)}` : "");
  if (evaluation.task === "classification") {
    body.replaceChildren(caption, ...confusion(evaluation),
      metricsTable(evaluation.per_class, evaluation.macro, "class"));
  } else if (evaluation.task === "multilabel") {
    body.replaceChildren(caption, metricsTable(evaluation.per_label, evaluation.macro, "label"));
  } else {
    body.replaceChildren(caption, ...evaluation.outputs.map(scatter));
  }
}

function confusion(evaluation) {
  const names = evaluation.class_names;
  if (!evaluation.matrix || names.length > MAX_DRAWN_CLASSES) {
    return [
      el("h3", {}, `Largest confusions (${names.length} classes)`),
      el("table", { id: "top-confusions", class: "compact" },
        el("tr", {}, el("th", {}, "true"), el("th", {}, "predicted"), el("th", {}, "count")),
        ...evaluation.top_confusions.map((c) => el("tr", {},
          el("td", {}, c.true), el("td", {}, c.predicted), el("td", { class: "num" }, c.count)))),
    ];
  }
  const header = el("tr", {}, el("th", { class: "corner small muted" }, "true \\ predicted"),
    ...names.map((name) => el("th", { scope: "col" }, name)));
  const rows = evaluation.matrix.map((counts, i) => {
    const support = counts.reduce((a, b) => a + b, 0);
    return el("tr", {}, el("th", { scope: "row" }, names[i]), ...counts.map((count, j) => {
      const cell = el("td", {
        class: `num ${i === j ? "hit" : "miss"}`,
        title: `true ${names[i]}, predicted ${names[j]}: ${count} of ${support}`,
        dataset: { count: String(count) },
      }, count);
      // The share of the true class's samples, as the cell's colour (through the CSSOM: the
      // pages' CSP forbids style attributes).
      const share = support ? count / support : 0;
      if (count) {
        cell.style.backgroundColor = i === j
          ? `rgba(44, 160, 44, ${(0.15 + 0.75 * share).toFixed(3)})`
          : `rgba(214, 39, 40, ${(0.15 + 0.75 * share).toFixed(3)})`;
      }
      return cell;
    }));
  });
  return [el("table", { id: "confusion", class: "compact confusion" }, header, ...rows)];
}

function metricsTable(rows, macro, kind) {
  return el("table", { id: "per-class", class: "compact" },
    el("tr", {}, el("th", {}, kind), el("th", {}, "precision"), el("th", {}, "recall"),
      el("th", {}, "F1"), el("th", {}, "support")),
    ...rows.map((row) => el("tr", { dataset: { name: row.name } },
      el("td", {}, row.name), el("td", { class: "num" }, ratio(row.precision)),
      el("td", { class: "num" }, ratio(row.recall)), el("td", { class: "num" }, ratio(row.f1)),
      el("td", { class: "num" }, row.support))),
    el("tr", { class: "muted" }, el("td", {}, "macro average"),
      el("td", { class: "num" }, ratio(macro.precision)),
      el("td", { class: "num" }, ratio(macro.recall)), el("td", { class: "num" }, ratio(macro.f1)),
      el("td", {}, "")));
}

function scatter(output) {
  const card = el("div", { class: "card wide" });
  const chart = el("div", { class: "chart scatter", dataset: { points: String(output.true.length) } });
  const r = output.residual;
  card.append(chart, el("p", { class: "small muted" },
    `residual (predicted − true): mean ${r.mean.toPrecision(3)}, std ${r.std.toPrecision(3)}, `
    + `MAE ${r.mae.toPrecision(3)}, RMSE ${r.rmse.toPrecision(3)}, `
    + `|residual| p50 ${r.abs_p50.toPrecision(3)}, p90 ${r.abs_p90.toPrecision(3)}`));
  // Sorted by the true value: uPlot wants its x values in order. The y = x line shares them.
  const order = output.true.map((_, i) => i).sort((a, b) => output.true[a] - output.true[b]);
  const x = order.map((i) => output.true[i]);
  const data = [x, order.map((i) => output.predicted[i]), x];
  const options = {
    title: `${output.name}: predicted against true (${x.length} test points)`,
    width: 480, height: HEIGHT,
    scales: { x: { time: false } },
    axes: [{ label: `true ${output.name}` }, { label: "predicted", size: 60 }],
    legend: { live: false },
    series: [
      {},
      { label: "predicted", stroke: PALETTE[0], paths: () => null,
        points: { show: true, size: 4, fill: PALETTE[0] } },
      { label: "y = x", stroke: PALETTE[3], width: 1, dash: [6, 4], points: { show: false } },
    ],
  };
  // Drawn once the card is in the page, so that it has a width to fill.
  requestAnimationFrame(() => {
    options.width = Math.max(280, chart.clientWidth);
    chart.plot = new uPlot(options, data, chart);
  });
  return card;
}
