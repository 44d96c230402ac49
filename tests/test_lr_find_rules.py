"""The range test's arithmetic (core/lr_find.py) on synthetic curves, no torch: its rates,
fastai's smoothing, when it stops, and the three suggestion rules. Where fastai's own code is
short, it is repeated here as a second way to compute the same thing."""

from __future__ import annotations

import math
import random

import pytest

from core.lr_find import (
    DivergenceWatch,
    SmoothedLoss,
    minimum,
    rate_at,
    steep,
    suggest,
    valley,
)


def fastai_valley(losses: list[float]) -> int:
    """fastai/callback/schedule.py's valley, as it is written there (O(n^2)), returning the
    index; a negative one (a flat curve) clamped to 0 as core/lr_find.py does."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max(0, max_start + int(sections) + int(sections / 2))


def rates(n: int, start: float = 1e-7, end: float = 10.0) -> list[float]:
    return [rate_at(i, start, end, n) for i in range(n)]


def range_curve(lrs: list[float], best: float = 1e-2) -> list[float]:
    """A classic range-test curve: flat at low rates, falling between 1e-5 and `best`, then
    blowing up."""
    losses = []
    for lr in lrs:
        x = math.log10(lr)
        fall = 1 / (1 + math.exp(-2.5 * (x - (math.log10(best) - 1.5))))
        rise = max(0.0, x - math.log10(best)) ** 2 * 3
        losses.append(2.3 - 2.0 * fall + rise)
    return losses


def test_rates_rise_by_a_constant_factor_from_start_to_end() -> None:
    lrs = rates(100)
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    factors = [b / a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert max(factors) == pytest.approx(min(factors))
    assert factors[0] == pytest.approx(1e8 ** (1 / 99))


def test_smoothing_is_fastai_bias_corrected_average() -> None:
    losses = [2.3, 2.1, 2.4, 1.9, 1.7, 1.8, 1.2]
    smoother = SmoothedLoss(0.98)
    ours = [smoother.add(loss) for loss in losses]
    # fastai's AvgSmoothLoss: val = torch.lerp(loss, val, beta); value = val / (1 - beta**n)
    val, theirs = 0.0, []
    for n, loss in enumerate(losses, start=1):
        val = loss + 0.98 * (val - loss)
        theirs.append(val / (1 - 0.98 ** n))
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert ours[0] == pytest.approx(2.3)  # bias-corrected: no pull towards 0 at the start
    constant = SmoothedLoss(0.98)
    assert [constant.add(0.5) for _ in range(5)] == pytest.approx([0.5] * 5)
    raw = SmoothedLoss(0.0)
    assert [raw.add(v) for v in losses] == pytest.approx(losses)


def test_the_watch_stops_above_the_factor_times_the_best_or_on_a_non_finite_loss() -> None:
    watch = DivergenceWatch(4.0)
    assert not any(watch.diverged(v) for v in (2.0, 1.0, 0.5, 2.0))  # 2.0 is exactly 4 x 0.5
    assert watch.diverged(2.01)
    assert DivergenceWatch(4.0).diverged(math.nan)
    assert DivergenceWatch(None).diverged(math.inf)
    unbounded = DivergenceWatch(None)
    assert not any(unbounded.diverged(v) for v in (1.0, 0.1, 1e6))


@pytest.mark.parametrize("seed", range(40))
def test_valley_agrees_with_fastais_quadratic_version(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 120)
    kind = seed % 4
    if kind == 0:  # noise
        losses = [rng.random() for _ in range(n)]
    elif kind == 1:  # few distinct values: ties must not count as descents
        losses = [float(rng.randint(0, 3)) for _ in range(n)]
    elif kind == 2:  # a range-test curve with noise
        losses = [v + rng.gauss(0, 0.05) for v in range_curve(rates(n))]
    else:  # steadily falling: the descent starts at the first point
        losses = sorted((rng.random() for _ in range(n)), reverse=True)
    assert valley(rates(n), losses) == fastai_valley(losses)


def test_valley_sits_in_the_descent_of_a_range_curve() -> None:
    lrs = rates(100)
    index = valley(lrs, range_curve(lrs, best=1e-2))
    # The curve falls between about 1e-5 and 1e-2; the valley is about half way down.
    assert 1e-5 < lrs[index] < 1e-2, lrs[index]


def test_steep_is_the_steepest_fall_against_log_rate() -> None:
    lrs = rates(100)
    # A tanh step in log10(rate) centred on 1e-4: steepest exactly there.
    losses = [2.0 - math.tanh(2 * (math.log10(lr) + 4)) for lr in lrs]
    index = steep(lrs, losses)
    factor = lrs[1] / lrs[0]
    assert 1e-4 / factor <= lrs[index] <= 1e-4 * factor, lrs[index]
    # The slope is taken against log(rate): uneven spacing does not move the answer.
    uneven = [1e-6, 1e-5, 2e-5, 1e-3, 1.1e-3, 1e-1]
    drops = [5.0, 4.9, 4.8, 2.0, 1.9, 1.8]
    # 1e-5 -> 2e-5 falls 0.1 over log 2 (-0.144); 2e-5 -> 1e-3 falls 2.8 over log 50 (-0.716);
    # 1e-3 -> 1.1e-3 falls 0.1 over log 1.1 (-1.049): the steepest.
    assert steep(uneven, drops) == 3


def test_minimum_points_at_the_lowest_loss() -> None:
    lrs = rates(100)
    losses = range_curve(lrs, best=1e-2)
    index = minimum(lrs, losses)
    assert losses[index] == min(losses)
    assert 3e-3 < lrs[index] < 3e-2


def test_suggest_trims_the_start_and_the_blow_up_and_divides_minimum_by_ten() -> None:
    lrs = rates(100)
    losses = range_curve(lrs, best=1e-2)
    # The last 5 points hold the lowest loss of all: the trimming must leave them out.
    losses[-5:] = [0.0] * 5
    report = suggest(lrs, losses, 100, "valley", "end of range")
    used = losses[10:-5]
    best = lrs[10 + min(range(len(used)), key=used.__getitem__)]
    assert report.suggestions["minimum"] == pytest.approx(best / 10)
    assert report.marks["minimum"] == {"lr": best, "loss": min(used)}
    assert report.suggestions["valley"] == lrs[10 + valley(lrs[10:-5], used)]
    assert report.suggestions["steep"] == lrs[10 + steep(lrs[10:-5], used)]
    assert report.suggested_lr == report.suggestions["valley"]
    as_dict = report.as_dict()
    assert as_dict["rule"] == "valley" and as_dict["points"] == 100
    assert as_dict["stopped"] == "end of range" and "note" not in as_dict
    steep_report = suggest(lrs, losses, 100, "steep", "end of range")
    assert steep_report.suggested_lr == steep_report.suggestions["steep"]


def test_too_few_points_give_no_suggestion_and_say_what_to_change() -> None:
    lrs = rates(100)[:18]
    report = suggest(lrs, range_curve(lrs), 100, "valley", "diverged at lr 1e-6")
    assert report.suggested_lr is None
    assert report.suggestions == {"valley": None, "steep": None, "minimum": None}
    assert "only 18 points" in report.note and "lr_find.start_lr" in report.note
    empty = suggest([], [], 100, "minimum", "diverged at lr 1e-07 (the loss became nan)")
    assert empty.as_dict()["suggested_lr"] is None and empty.points == 0
