"""Which swept setting mattered: Optuna's fANOVA importance over a sweep's complete trials.

`fanova(space, trials, whole)` rebuilds an in-memory study from the trials that completed (each
trial's value: its best validation accuracy) and asks `optuna.importance.get_param_importances`
with `FanovaImportanceEvaluator(seed=0)` (a random forest fitted on params -> value, then the
share of the value's variance each param explains on its own). Unlike a per-setting variance
split, a continuous setting drawn once per trial is not credited with everything by construction.
Needs scikit-learn (Optuna fits the forest with it) and at least MIN_TRIALS complete trials.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import optuna

from cifar_core.search import samplers
from cifar_core.search import study as studies
from cifar_core.search.config import COMPLETE, TrialCurve
from cifar_core.spec.space import SweepSpace

NAME = "fANOVA importance (Optuna)"
MIN_TRIALS = 3


@dataclass(frozen=True)
class Importance:
    """Each swept path's share of the variance in best validation accuracy (summing to 1 over the
    paths that varied; 0.0 for the ones that did not), highest first, over `trials` complete
    trials; or, when it cannot be told, `why_not` in words and no shares."""

    ranked: list[tuple[str, float]]
    trials: int
    why_not: str | None = None


def fanova(space: SweepSpace, trials: Sequence[TrialCurve], whole: Collection[str] = ()) -> Importance:
    dists = samplers.distributions(space, whole)
    study = studies.new_study()
    seen: dict[str, set] = {p.path: set() for p in space.params}
    values = []
    for t in trials:
        internal = samplers.to_optuna(space, t.params, dists) if t.state == COMPLETE and t.curve else None
        if internal is None:
            continue
        best = max(t.curve.values())
        studies.add(study, TrialCurve(t.trial_id, t.params, t.curve, COMPLETE, best), internal,
                    {k: dists[k] for k in internal})
        for k, v in internal.items():
            seen[k].add(v)
        values.append(best)
    n = len(values)
    if n < MIN_TRIALS:
        return Importance([], n, f"{n} trial(s) complete: {NAME} needs at least {MIN_TRIALS}")
    varied = [p for p, vs in seen.items() if len(vs) > 1]
    if not varied:
        return Importance([], n, f"the {n} complete trials share every swept value: nothing to compare")
    if max(values) == min(values):
        return Importance([], n, f"the {n} complete trials scored the same: no spread to explain")
    shares = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=varied)
    ranked = [(p, float(shares.get(p, 0.0))) for p in seen]
    return Importance(sorted(ranked, key=lambda item: -item[1]), n)
