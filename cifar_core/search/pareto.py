"""The Pareto front of a two-objective sweep: its complete trials that no other beats on both
validation accuracy (higher) and the second objective (latency or multiply-adds, lower).

Optuna's own front: an in-memory two-objective study rebuilt from the TrialCurves (as the NSGA-II
sampler sees them) and its `best_trials`. A trial is dominated when another is at least as good on
both objectives and better on one; two trials with the same values are both on the front. Pure
over TrialCurves.
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import TrialState

from cifar_core.search import study as studies
from cifar_core.search.config import COMPLETE, TrialCurve


def scored(trials: Sequence[TrialCurve]) -> list[TrialCurve]:
    """The complete trials with both objectives: the ones a front is drawn from."""
    return [t for t in trials if t.state == COMPLETE and t.objective is not None and t.value2 is not None]


def front(trials: Sequence[TrialCurve]) -> list[int]:
    """The trial ids on the Pareto front, by the second objective (cheapest first)."""
    both = scored(trials)
    if not both:
        return []
    study = studies.new_study(objectives=2)
    for t in both:
        studies.add(study, t)
    ids = [t.trial_id for t in both]
    best = [ids[t.number] for t in study.best_trials if t.state == TrialState.COMPLETE]
    cost = {t.trial_id: t.value2 for t in both}
    return sorted(best, key=lambda i: (cost[i], i))
