"""After an epoch of a trial: go on, prune it, or pause it at a rung. Optuna's pruners decide.

`decide(pruner, trials, trial_id, epoch)` is pure: it rebuilds an in-memory study from the sweep's
TrialCurves (in the order they started; the judged trial as running, cut at `epoch`) and asks the
Optuna pruner about that one trial, on validation accuracy (maximized). The reason is one line
with the numbers compared: for median/percentile those Optuna's rule uses (the trial's best so far
against the percentile of the completed trials at that epoch, recomputed here from the same
study); for successive halving and Hyperband the rung values Optuna recorded in the study.

Successive halving (asynchronous, as Optuna runs it) and Hyperband judge a trial at its rungs,
epochs min_epochs * eta**k (Hyperband: per bracket, from the trial's start order): a trial not in
the top 1/eta of the values recorded at its rung so far is PAUSED (its checkpoint kept: as more
trials reach the rung it may rank in the top 1/eta and be promoted, see `promotion`). The rung
values of the other trials are read from their curves (the first epoch at or past each rung).
Median and percentile PRUNE for good. An epoch at or past `max_epochs` always continues: the
trial has finished.
"""

from __future__ import annotations

import math
import types
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from cifar_core.errors import NotFound
from cifar_core.search import study as studies
from cifar_core.search.config import CONTINUE, PAUSE, PRUNE, RUNG_PRUNERS, RUNNING, PrunerConfig, TrialCurve


@dataclass(frozen=True)
class Decision:
    """What to do with a trial after an epoch, and why in one line."""

    action: str  # continue | prune | pause
    reason: str  # "pruned after epoch 2: best so far 61.0% < median 66.2% of the 5 completed trials at epoch 2"
    value: float | None = None  # the number judged (best so far; SH/Hyperband: the value at the rung)
    threshold: float | None = None  # what it was compared with
    rung: int | None = None  # SH/Hyperband: the rung judged at this epoch (0 = the first)

    @property
    def stops(self) -> bool:
        return self.action != CONTINUE


def optuna_pruner(pruner: PrunerConfig) -> optuna.pruners.BasePruner:
    """Optuna's pruner for a PrunerConfig (a new one each time: Hyperband keeps state)."""
    if pruner.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pruner.startup_trials, n_warmup_steps=pruner.min_epochs)
    if pruner.kind == "percentile":
        return optuna.pruners.PercentilePruner(
            pruner.percentile, n_startup_trials=pruner.startup_trials, n_warmup_steps=pruner.min_epochs
        )
    if pruner.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=pruner.min_epochs, reduction_factor=pruner.eta)
    if pruner.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_epochs, max_resource=pruner.max_epochs, reduction_factor=pruner.eta
        )
    return optuna.pruners.NopPruner()


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def decide(pruner: PrunerConfig, trials: Sequence[TrialCurve], trial_id: int, epoch: int) -> Decision:
    """Continue, prune or pause trial `trial_id` after `epoch` (its curve must hold that epoch).
    `trials` are the sweep's trials in the order they started, `trial_id` among them."""
    index = next((i for i, t in enumerate(trials) if t.trial_id == trial_id), None)
    if index is None:
        raise NotFound(f"trial {trial_id} is not among the {len(trials)} trials given: pass the sweep's trials")
    me = trials[index]
    if epoch not in me.curve:
        raise ValueError(f"trial {trial_id} has no validation accuracy for epoch {epoch}: record the epoch first")
    if pruner.kind == "none":
        return Decision(CONTINUE, f"epoch {epoch}: no pruner, every trial runs all its epochs")
    if pruner.max_epochs is not None and epoch >= pruner.max_epochs:
        return Decision(CONTINUE, f"epoch {epoch} is the last (max_epochs {pruner.max_epochs}): the trial completes")
    judged = [me.upto(epoch, RUNNING) if i == index else t for i, t in enumerate(trials)]
    if pruner.kind in RUNG_PRUNERS:
        return _decide_rungs(pruner, judged, index, epoch)
    return _decide_percentile(pruner, judged, index, epoch)


# ---------------------------------------------------------------------------------------------
# Median and percentile


def _decide_percentile(pruner: PrunerConfig, trials: list[TrialCurve], index: int, epoch: int) -> Decision:
    study = studies.new_study()
    for t in trials:
        studies.add(study, t)
    frozen = study.get_trials(deepcopy=False)[index]
    stop = optuna_pruner(pruner).prune(study, frozen)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    at_epoch = [t.intermediate_values[epoch] for t in completed if epoch in t.intermediate_values]
    best = float(np.nanmax(list(frozen.intermediate_values.values())))
    keep = 50.0 if pruner.kind == "median" else pruner.percentile
    line = "median" if pruner.kind == "median" else f"top-{keep:g}% line (the {100 - keep:g}th percentile)"
    if math.isnan(best):
        return Decision(PRUNE if stop else CONTINUE, f"pruned after epoch {epoch}: validation accuracy is not a number")
    if len(completed) < max(1, pruner.startup_trials):
        why = f"epoch {epoch}: {len(completed)} of the {pruner.startup_trials} startup trials completed, no pruning yet"
        return Decision(PRUNE if stop else CONTINUE, why, best)
    if epoch < pruner.min_epochs:
        return Decision(PRUNE if stop else CONTINUE, f"epoch {epoch}: within the first {pruner.min_epochs} epochs", best)
    if not at_epoch:
        return Decision(PRUNE if stop else CONTINUE, f"epoch {epoch}: no completed trial reached epoch {epoch}", best)
    threshold = float(np.nanpercentile(np.array(at_epoch, dtype=float), 100 - keep))
    of = f"of the {len(at_epoch)} completed trials at epoch {epoch}"
    if stop:
        return Decision(PRUNE, f"pruned after epoch {epoch}: best so far {pct(best)} < {line} {pct(threshold)} {of}",
                        best, threshold)
    return Decision(CONTINUE, f"epoch {epoch}: best so far {pct(best)} >= {line} {pct(threshold)} {of}", best, threshold)


# ---------------------------------------------------------------------------------------------
# Successive halving and Hyperband


def rung_key(rung: int) -> str:
    return f"completed_rung_{rung}"  # the system attribute Optuna's SuccessiveHalvingPruner writes


@dataclass(frozen=True)
class Standing:
    """Where a value stands among the values recorded at a rung (itself among them)."""

    rank: int  # 1 = the best (ties share the better rank)
    of: int  # values recorded at the rung
    top: int  # how many go on: max(1, of // eta), Optuna's rule
    threshold: float  # the value the top-th best holds; at least this goes on

    @property
    def goes_on(self) -> bool:
        return self.rank <= self.top


def standing(value: float, values: Sequence[float], eta: int) -> Standing:
    """Optuna's promotion rule (SuccessiveHalvingPruner): a value goes on when it is at least the
    (of // eta)-th best value at the rung (the best, while fewer than eta are there)."""
    ranked = sorted(values, reverse=True)
    top = max(1, len(ranked) // eta)
    rank = 1 + sum(1 for v in ranked if v > value)
    return Standing(rank, len(ranked), top, ranked[top - 1])


def rung_epoch(pruner: PrunerConfig, bracket: int, rung: int) -> int:
    """The epoch of `rung` in `bracket` (successive halving has bracket 0 only)."""
    return pruner.min_epochs * pruner.eta ** (bracket + rung)


class RungStudy:
    """The in-memory study of a sweep under SH/Hyperband: every trial with the rung values Optuna
    would have recorded for it (its curve at each of its bracket's rungs up to its last epoch)."""

    def __init__(self, pruner: PrunerConfig, trials: Sequence[TrialCurve], open_index: int | None = None):
        """`open_index`: the judged trial, whose rung at its last epoch is left for the pruner to record."""
        self.config = pruner
        self.pruner = optuna_pruner(pruner)
        self.study = studies.new_study()
        self.brackets = self._brackets(len(trials))
        for i, t in enumerate(trials):
            last = t.last_epoch if i == open_index else t.last_epoch + 1
            studies.add(self.study, t, system_attrs=self._rung_values(t, self.brackets[i], before=last))
        self.trials = list(trials)

    def _brackets(self, n: int) -> list[int]:
        """Each trial's Hyperband bracket, from its start order (Optuna's own rule); 0 under SH."""
        if not isinstance(self.pruner, optuna.pruners.HyperbandPruner):
            return [0] * n
        self.pruner._try_initialization(self.study)  # max_resource is given: reads no trial
        return [self.pruner._get_bracket_id(self.study, types.SimpleNamespace(number=i)) for i in range(n)]

    def _rung_values(self, trial: TrialCurve, bracket: int, before: int) -> dict:
        attrs, rung, i = {}, 0, 0
        epochs = sorted(trial.curve)
        while True:  # each rung's value: the first epoch at or past it (rungs rise, so one pass)
            target = rung_epoch(self.config, bracket, rung)
            while i < len(epochs) and epochs[i] < target:
                i += 1
            if i == len(epochs) or epochs[i] >= before:
                return attrs
            attrs[rung_key(rung)] = trial.curve[epochs[i]]
            rung += 1

    def frozen(self, index: int) -> optuna.trial.FrozenTrial:
        return self.study.get_trials(deepcopy=False)[index]

    def rung_values(self, bracket: int, rung: int) -> list[float]:
        """The values recorded at `rung` by the trials of `bracket` (the judged one included once
        the pruner recorded it)."""
        return [
            t.system_attrs[rung_key(rung)]
            for i, t in enumerate(self.study.get_trials(deepcopy=False))
            if self.brackets[i] == bracket and rung_key(rung) in t.system_attrs
        ]

    def where(self, index: int) -> str:
        return f" (bracket {self.brackets[index]})" if self.config.kind == "hyperband" else ""


def _decide_rungs(pruner: PrunerConfig, trials: list[TrialCurve], index: int, epoch: int) -> Decision:
    rs = RungStudy(pruner, trials, open_index=index)
    before = set(rs.frozen(index).system_attrs)
    stop = rs.pruner.prune(rs.study, rs.frozen(index))
    recorded = sorted(int(k.rsplit("_", 1)[1]) for k in set(rs.frozen(index).system_attrs) - before)
    bracket, value = rs.brackets[index], trials[index].curve[epoch]
    if stop and math.isnan(value):
        return Decision(PRUNE, f"pruned after epoch {epoch}: validation accuracy is not a number")
    if not recorded:
        rung = len(before)
        nxt = rung_epoch(pruner, bracket, rung)
        return Decision(CONTINUE, f"epoch {epoch}: next rung {rung}{rs.where(index)} at epoch {nxt}")
    rung = recorded[-1]
    s = standing(value, rs.rung_values(bracket, rung), pruner.eta)
    told = (
        f"{pct(value)} ranks {ordinal(s.rank)} of {s.of} at rung {rung}{rs.where(index)}; "
        f"the top 1/{pruner.eta} ({s.top}) go on, the {ordinal(s.top)} best has {pct(s.threshold)}"
    )
    if stop:
        return Decision(PAUSE, f"paused after epoch {epoch}: {told}", value, s.threshold, rung)
    nxt = rung_epoch(pruner, bracket, rung + 1)
    return Decision(CONTINUE, f"epoch {epoch}: {told}; next rung at epoch {nxt}", value, s.threshold, rung)
