"""A sweep's search settings as typed data, and the records the search reads.

`SearchConfig` is stored with a sweep (`to_dict`/`from_dict`, like an experiment spec) so that the
sweep can always be continued or replayed as it was run. Every setting is checked when the config
is built; a bad value raises SpecError(field="search") naming the value and the fix.

Epochs are 1-based, as the store records them: "min_epochs=2" means a trial always finishes its
second epoch before it may be stopped.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from cifar_core.errors import SpecError
from cifar_core.spec.space import MAX_RUNS

SAMPLERS = ("grid", "random", "tpe", "nsga2")
LEARNING_SAMPLERS = ("tpe", "nsga2")  # learn from the ended trials: a sweep asks for the next as each ends
# The second objective of a two-objective sweep (NSGA-II), minimised, and the runs column that holds it.
OBJECTIVE2_COLUMNS = {"latency": "latency_p50_ms", "macs": "macs"}
OBJECTIVE2_WORDS = {"latency": "batch-1 p50 latency (ms)", "macs": "multiply-adds per image"}
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
RUNG_PRUNERS = ("successive_halving", "hyperband")  # the ones that pause at rungs and promote
# eta when none is given: Optuna's and Ray Tune's defaults (SuccessiveHalvingPruner and ASHA 4, Hyperband 3). On
# `fast`'s curves successive halving from epoch 1 kept a near-best configuration in 20 of 20 shuffled orders with
# eta 4 and in 2 of 20 with eta 3 (docs/search.md, "Benchmark").
DEFAULT_ETA = {"successive_halving": 4, "hyperband": 3}

# What a trial is doing, as the caller's store says (a crashed and retried trial is one trial).
RUNNING, COMPLETE, PRUNED, PAUSED = "running", "complete", "pruned", "paused"
STATES = (RUNNING, COMPLETE, PRUNED, PAUSED)

# What `pruners.decide` tells the caller to do with the trial.
CONTINUE, PRUNE, PAUSE = "continue", "prune", "pause"


def _error(message: str) -> SpecError:
    return SpecError(message, field="search")


def _whole(name: str, value, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(f"{name} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise _error(f"{name}={value} is out of range: use a whole number {bound}")


def _number(name: str, value, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _error(f"{name} must be a number, got {value!r}")
    if not low < value < high:
        raise _error(f"{name}={value} is out of range: use a number strictly between {low:g} and {high:g}")


def _keys(doc, cls, name: str) -> dict:
    if not isinstance(doc, dict):
        raise _error(f"{name} must be an object like {cls().to_dict()!r}, got {doc!r}")
    allowed = [f for f in cls.__dataclass_fields__]
    for key in doc:
        if key not in allowed:
            raise _error(f"{name} takes no {key!r}: allowed keys are {', '.join(allowed)}")
    return dict(doc)


@dataclass(frozen=True)
class PrunerConfig:
    """Which Optuna pruner stops losing trials, judged on validation accuracy after each epoch."""

    kind: str = "none"  # none | median | percentile | successive_halving | hyperband
    min_epochs: int = 1  # epochs every trial finishes before it may be stopped (SH/Hyperband: the first rung)
    startup_trials: int = 5  # median/percentile: no pruning until this many trials completed
    percentile: float = 25.0  # percentile: keep the trials in the top `percentile` % at each epoch
    eta: int | None = None  # SH/Hyperband: reduction factor; the top 1/eta of a rung go on, rungs at min_epochs * eta**k
    # (None: DEFAULT_ETA)
    max_epochs: int | None = None  # epochs a trial trains at most (the spec's epochs); needed by hyperband

    def __post_init__(self):
        if self.kind not in PRUNERS:
            raise _error(f"pruner {self.kind!r} is unknown: use one of {', '.join(PRUNERS)}")
        if self.eta is None:
            object.__setattr__(self, "eta", DEFAULT_ETA.get(self.kind, 3))
        _whole("pruner min_epochs", self.min_epochs, 1)
        _whole("pruner startup_trials", self.startup_trials, 0)
        _number("pruner percentile", self.percentile, 0.0, 100.0)
        _whole("pruner eta", self.eta, 2)
        if self.max_epochs is not None:
            _whole("pruner max_epochs", self.max_epochs, 1)
            if self.min_epochs > self.max_epochs:
                raise _error(
                    f"pruner min_epochs={self.min_epochs} is more than max_epochs={self.max_epochs}: "
                    f"lower min_epochs to at most {self.max_epochs}"
                )
        if self.kind == "hyperband" and self.max_epochs is None:
            raise _error("pruner hyperband needs max_epochs (the epochs a trial trains at most): set max_epochs")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> PrunerConfig:
        return cls(**_keys(doc, cls, "pruner"))


@dataclass(frozen=True)
class SearchConfig:
    """How a sweep searches: the sampler, the pruner, the seed and the budgets."""

    sampler: str = "random"  # grid | random | tpe | nsga2
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    seed: int = 0  # the same seed, space and trials give the same proposals
    max_trials: int = 20  # trials the sweep starts at most
    max_epochs: int | None = None  # epochs the whole sweep trains at most, summed over trials; None: no cap
    max_minutes: float | None = None  # wall-clock minutes the sweep may take; None: no cap
    objective2: str | None = None  # nsga2 only: latency | macs, minimised beside validation accuracy (maximised)
    population: int = 8  # nsga2 only: trials per generation (Optuna's default, 50, outlasts the lab's budgets)

    def __post_init__(self):
        if isinstance(self.pruner, dict):  # allow SearchConfig(pruner={...})
            object.__setattr__(self, "pruner", PrunerConfig.from_dict(self.pruner))
        if self.sampler not in SAMPLERS:
            raise _error(f"sampler {self.sampler!r} is unknown: use one of {', '.join(SAMPLERS)}")
        if not isinstance(self.pruner, PrunerConfig):
            raise _error(f"pruner must be a PrunerConfig or an object like {PrunerConfig().to_dict()!r}")
        self._check_objectives()
        _whole("seed", self.seed, 0, 2**31 - 1)
        _whole("max_trials", self.max_trials, 1, MAX_RUNS)
        if self.max_epochs is not None:
            _whole("max_epochs", self.max_epochs, 1)
        if self.max_minutes is not None:
            _number("max_minutes", self.max_minutes, 0.0, math.inf)

    def _check_objectives(self) -> None:
        _whole("population", self.population, 2, MAX_RUNS)
        if self.sampler != "nsga2":
            if self.objective2 is not None:
                raise _error(f"objective2={self.objective2!r} needs sampler nsga2 (the one that searches two "
                             "objectives): set sampler nsga2, or leave objective2 out")
            return
        if self.objective2 not in OBJECTIVE2_COLUMNS:
            raise _error(f"sampler nsga2 searches validation accuracy and a second objective, got objective2="
                         f"{self.objective2!r}: set objective2 to one of {', '.join(OBJECTIVE2_COLUMNS)}")
        if self.pruner.kind != "none":
            raise _error(f"pruner {self.pruner.kind!r} cannot judge a two-objective sweep (no trial is worse on both "
                         "objectives part-way, and Optuna's pruners judge one): use pruner none with sampler nsga2, "
                         "or sampler tpe to prune")

    @property
    def objectives(self) -> int:
        return 2 if self.objective2 else 1

    def to_dict(self) -> dict:
        return {**asdict(self), "pruner": self.pruner.to_dict()}

    @classmethod
    def from_dict(cls, doc: dict) -> SearchConfig:
        return cls(**_keys(doc, cls, "search"))


@dataclass(frozen=True)
class TrialCurve:
    """One trial of a sweep as the store holds it: its params, its validation accuracy after each
    epoch so far ({1: 0.41, 2: 0.55, ...}), and what it is doing. `value` is its final objective
    (None: the last epoch's validation accuracy); `value2`, a two-objective sweep's second one
    (latency in ms or multiply-adds, as its run recorded them; None until it completes)."""

    trial_id: int
    params: dict
    curve: dict[int, float]
    state: str = RUNNING  # running | complete | pruned | paused
    value: float | None = None
    value2: float | None = None

    def __post_init__(self):
        if self.state not in STATES:
            raise ValueError(f"trial {self.trial_id} state {self.state!r} is unknown: use one of {', '.join(STATES)}")

    @property
    def last_epoch(self) -> int:
        return max(self.curve, default=0)

    @property
    def objective(self) -> float | None:
        if self.value is not None:
            return self.value
        return self.curve[self.last_epoch] if self.curve else None

    def upto(self, epoch: int, state: str | None = None) -> TrialCurve:
        """The same trial as it stood after `epoch` (its later epochs left out)."""
        curve = {e: v for e, v in self.curve.items() if e <= epoch}
        state = state or self.state
        done = state == COMPLETE
        return TrialCurve(self.trial_id, self.params, curve, state, self.value if done else None,
                          self.value2 if done else None)
