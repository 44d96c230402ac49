"""A range test's job page in Chromium, against the real API and worker: the loss against the
rate on a log axis, each rule's suggestion drawn on the canvas where its rate falls and
listed in text below. (Browser, page and job helpers: tests/test_dashboard.py.)"""

from __future__ import annotations

from tests.conftest import wait_for_state
from tests.test_dashboard import (  # noqa: F401 - browser and page are fixtures
    ARTIFACTS,
    FINAL,
    browser,
    expect,
    page,
    screenshot,
    submit,
)

# The canvas's colour at a rule's dashed line, as lr_find.js draws it (PALETTE[3..5]).
COLORS = {"valley": (0xd6, 0x27, 0x28), "steep": (0x94, 0x67, 0xbd),
          "minimum": (0x8c, 0x56, 0x4b)}

# Which of a column of canvas pixels, at the rate's x, has the rule's colour.
COLUMN_COLOURS = """([rate, rgb]) => {
  const plot = window.traindock.rangeTest.plot;
  const x = Math.round(plot.valToPos(rate, "x", true));
  const { top, height } = plot.bbox;
  const pixels = plot.ctx.getImageData(x - 1, top, 3, height).data;
  let hits = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const d = Math.abs(pixels[i] - rgb[0]) + Math.abs(pixels[i + 1] - rgb[1])
      + Math.abs(pixels[i + 2] - rgb[2]);
    if (d < 40 && pixels[i + 3] > 200) hits += 1;
  }
  return hits;
}"""


def test_a_range_test_page_charts_loss_against_rate_with_the_suggestions_marked(
    page, client, worker,  # noqa: F811 - page is the fixture imported above
):
    spec = {"name": "dashboard-lr-find", "mode": "lr_find",
            "lr_find": {"end_lr": 100.0, "steps": 80},
            "dataset": {"name": "spirals", "val_fraction": 0.1},
            "model": {"layers": [{"type": "linear", "out_features": 32}, {"type": "relu"},
                                 {"type": "linear", "out_features": 3}]},
            "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "training": {"batch_size": 32}}
    job_id = submit(client, spec)
    done = wait_for_state(client, job_id, FINAL, timeout=120)
    assert done["state"] == "succeeded", done["error"]
    report = done["summary"]["lr_find"]

    page.goto(f"/jobs/{job_id}")
    page.wait_for_function("() => window.traindock.settled === true")
    chart = page.locator("#chart-lrfind")
    expect(page.locator("#card-lrfind")).to_be_visible()
    expect(chart).to_have_attribute("data-points", str(report["points"]))
    expect(chart).to_have_attribute("data-marks", "3")
    expect(page.locator("#card-loss")).to_be_hidden()  # no training loss against steps
    assert page.evaluate("() => window.traindock.rangeTest.plot.scales.x.distr") == 3  # log

    legend = page.locator("#lrfind-report li")
    rule = report["rule"]
    expect(page.locator(f"#lrfind-report li[data-rule={rule}]")).to_have_text(
        f" {rule} {report['suggested_lr']:.2e} (suggested)".replace("e-0", "e-"))
    expect(legend.last).to_contain_text(f"{report['points']} points; {report['stopped']}")
    expect(page.locator(".stat").first).to_contain_text("suggested lr")

    rules = list(COLORS)  # in the order they are drawn: a later line covers an earlier one
    for i, (name, rgb) in enumerate(COLORS.items()):
        if report["suggestions"][name] in [report["suggestions"][r] for r in rules[i + 1:]]:
            continue
        hits = page.evaluate(COLUMN_COLOURS, [report["suggestions"][name], list(rgb)])
        assert hits > 20, f"no {name} line at {report['suggestions'][name]:g} ({hits} pixels)"
    # A rate where no rule points has none of their colours.
    assert page.evaluate(COLUMN_COLOURS, [1e-7 * 1.3, list(COLORS["valley"])]) == 0
    screenshot(page, "lr-find")
    page.locator("#card-lrfind").screenshot(path=ARTIFACTS / "dashboard-lr-find-chart.png")
