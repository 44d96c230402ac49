"""Every threshold the diagnosis rules use, named, with where it comes from. The sources:
TheDeepChecker (Ben Braiek & Khomh, TOSEM 2022), AutoTrainer (Zhang et al., ICSE 2021),
BTTackler (KDD 2024), cs231n's notes on babysitting the learning process. Where a published
value raised false alarms on healthy runs, the change and the reason are said here and in
docs/diagnosis.md. Rules read these names, so a change here is a change of the rule."""

from __future__ import annotations

# --- false-alarm control, shared by the trend rules ------------------------------------------
WARMUP_SHARE = 0.10  # no trend rule before 10% of the run's steps ...
WARMUP_CHECKS = 2  # ... and before 2 checks (evaluations or epoch ends) have been seen
PERSIST_CHECKS = 2  # a trend rule must hold at this many consecutive checks to be reported

# --- divergence (TheDeepChecker; fastai's LR finder stops at the same 4x) ---------------------
DIVERGE_FACTOR = 4.0  # smoothed training loss above 4x its best ...
DIVERGE_POINTS = 3  # ... at 3 consecutive logged points ...
DIVERGE_MIN_POINTS = 10  # ... after the first 10 logged points and WARMUP_SHARE / 2 of the run
DIVERGE_SMOOTHING = 0.9  # the smoothing: a debiased exponential moving average (fastai's beta)
# Our addition: the smoothed loss must also be above the run's first logged loss. A run that
# reached a loss near zero (0.002) can move to 4x that (0.008) by noise without diverging;
# a divergence loses all the progress made. And the logged point itself must be above the
# bound, not only the average: an average remembers an early spike for some 20 points after
# the run has recovered from it.

# --- initial loss (TheDeepChecker) -------------------------------------------------------------
INITIAL_LOSS_TOLERANCE = 1.0  # |L0 - ln C| >= 1.0 * ln C is suspicious (C balanced classes)
# Ours: and at least 1.5 nats off. With few classes ln C is a small margin: a healthy He-
# initialised binary network's first batch scored 1.77 against ln 2 = 0.69 (logits of std
# about 1.5 add about s^2/2 to the loss whatever C is).
INITIAL_LOSS_FLOOR = 1.5

# --- stuck at chance -------------------------------------------------------------------------
CHANCE_LOSS_TOLERANCE = 0.05  # loss within 5% of ln C ...
CHANCE_ACCURACY_MARGIN = 0.05  # ... and accuracy at most 1/C + 0.05
STUCK_SHARE = 0.20  # judged from 20% of the run on

# --- learning rate (TheDeepChecker's update-ratio bounds; cs231n's ~1e-3) ---------------------
UPDATE_RATIO_HIGH_LOG10 = -1.0  # windowed mean of log10(|dw|/|w|) above -1: too high
UPDATE_RATIO_LOW_LOG10 = -4.0  # below -4: too low
UPDATE_RATIO_WINDOW = 3  # checks in the window
SLOW_PROGRESS = 0.05  # the loss falling less than 5% per period ...
SLOW_PERIODS = 5  # ... for 5 periods (epochs)
# Our gate for lr_too_low: the loss is still above half its first value (a run that has
# converged has small updates too, and nothing to gain from a higher rate).
LOW_LR_LOSS_SHARE = 0.5

# --- gradients (AutoTrainer) -----------------------------------------------------------------
VANISHING_RATIO = 1e-3  # first/last layer gradient norm below 1e-3 ...
VANISHING_FIRST = 1e-4  # ... with the first layer's below 1e-4
GRADIENT_WINDOW = 3  # (ours) both norms as geometric means over the last 3 checks: one step's
# norm swings tenfold from batch to batch, so a rule on one step comes and goes
EXPLODING_RATIO = 70.0  # first/last above 70
EXPLODING_DOUBLINGS = 5  # or the largest layer norm doubling at 5 consecutive checks
# Our gate (the issue's): gradient findings only while learning stalls: the training loss fell
# less than STALL_PROGRESS over the last STALL_CHECKS checks, or the accuracy is at chance.
STALL_PROGRESS = 0.02
STALL_CHECKS = 3

# --- units (TheDeepChecker, SageMaker Debugger) ----------------------------------------------
DEAD_SHARE = 0.5  # more than half of a layer's units inactive on the whole evaluation batch
SATURATED_SHARE = 0.5  # more than half of a sigmoid/tanh layer's outputs near their bounds
# (saturation is reported only while learning stalls: a trained classifier's last hidden
# layer may be confidently saturated and fine)

# --- fit (BTTackler) -------------------------------------------------------------------------
OVERFIT_GAP = 0.10  # (val - train) / train loss above 0.1 ...
OVERFIT_WINDOW = 3  # ... and the mean of the last 3 validation losses above the 3 before ...
OVERFIT_RISE = 0.05  # ... by more than 5% (ours: BTTackler's bare "rising" fired on noise)
# Ours, the stalled form: the best validation loss is at least max(2 x OVERFIT_WINDOW, a third
# of the evaluations) old and the training loss has fallen by more than a quarter since then.
# A window of 3 against 3 misses a validation loss that rises 1% an epoch (blobs: 2.16 to 2.41
# over 30 epochs) or levels off far above the training loss (digits on 150 samples: val 0.25
# flat, train 0.0004).
OVERFIT_STALE_SHARE = 1 / 3
OVERFIT_TRAIN_FALL = 0.25
# Ours, for both forms: not while the validation accuracy has risen more than 2 points since the
# best validation loss (a high-rate run's loss can bounce up while its accuracy climbs from 88%
# to 94%: its confident mistakes cost more, but it generalises better).
OVERFIT_ACCURACY_GAIN = 0.02
UNDERFIT_SHARE = 0.30  # judged from 30% of the run on
UNDERFIT_REACH = 0.5  # training accuracy covers less than half the way from chance to 1 ...
UNDERFIT_CLOSE = 0.05  # ... and validation accuracy is within 5 points of it ...
UNDERFIT_PLATEAU = 0.01  # ... and training accuracy rose less than 1 point over STALL_CHECKS

# --- noise -----------------------------------------------------------------------------------
NOISE_POINTS = 50  # the last 50 logged training-loss points
NOISE_SMOOTHNESS = 0.5  # share of points without a change of the slope's sign below 0.5 ...
# ... and (ours) the typical step-to-step change above 30% of the loss's level, with the level
# above 10% of the first loss: minibatch losses always zigzag (i.i.d. noise scores 1/3 on
# smoothness alone), and a converged loss zigzags around a level near zero.
NOISE_AMPLITUDE = 0.3
NOISE_LEVEL_SHARE = 0.1

# --- activation statistics (worker/activation_probe.py) -------------------------------------
PROBE_SAMPLES = 512  # evaluation batch for the activation statistics
SATURATION_MARGIN = 1e-2  # sigmoid output < 0.01 or > 0.99; tanh |output| > 0.99
ZERO_WEIGHT_RELATIVE = 1e-3  # |w| < 1e-3 x the layer's largest |w| counts as zero
