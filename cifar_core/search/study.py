"""The in-memory Optuna study a decision is asked of, rebuilt from the store's records.

Optuna keeps its own trials; the lab keeps them in its store. Each decision therefore builds a
throw-away in-memory study (maximizing validation accuracy) from the TrialCurves it is given
(`optuna.trial.create_trial` + `study.add_trial`), in the order given: the caller passes the
sweep's trials in the order they started, so Optuna's trial number is the start order (Hyperband
assigns brackets from it and the study's fixed name).
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from cifar_core.search.config import COMPLETE, PAUSED, PRUNED, RUNNING, TrialCurve

STUDY_NAME = "cifar-lab-search"  # fixed: Hyperband's brackets hash it with the trial number

# A paused trial stopped at a rung, as an Optuna trial pruned there (SH/Hyperband never resume one).
OPTUNA_STATE = {
    RUNNING: TrialState.RUNNING,
    COMPLETE: TrialState.COMPLETE,
    PRUNED: TrialState.PRUNED,
    PAUSED: TrialState.PRUNED,
}


TWO_DIRECTIONS = ["maximize", "minimize"]  # validation accuracy up, latency or multiply-adds down


class _OwnedTrials(optuna.storages.InMemoryStorage):
    """Optuna's in-memory storage, keeping the trial `add` hands it instead of a deep copy of it:
    `add` builds each trial afresh for one study, so nothing else holds it, and the copy was most
    of a decision's cost (scripts/bench_search_decision.py: 200 trials, two studies per decision).
    The body is Optuna 5.0's `InMemoryStorage.create_new_trial` without the copy."""

    def create_new_trial(self, study_id: int, template_trial: optuna.trial.FrozenTrial | None = None) -> int:
        if template_trial is None:
            return super().create_new_trial(study_id)
        with self._lock:
            self._check_study_id(study_id)
            trial = template_trial
            self._max_trial_id += 1
            trial.number = len(self._studies[study_id].trials)
            trial._trial_id = self._max_trial_id
            self._trial_id_to_study_id_and_number[trial._trial_id] = (study_id, trial.number)
            self._studies[study_id].trials.append(trial)
            self._update_cache(trial._trial_id, study_id)
            return trial._trial_id


def new_study(sampler: optuna.samplers.BaseSampler | None = None, objectives: int = 1) -> optuna.Study:
    """An empty in-memory study, maximizing (two objectives: accuracy up, `value2` down); Optuna's
    per-study INFO lines silenced."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler is None:
        sampler = optuna.samplers.RandomSampler(seed=0)  # never asked: pruning studies only
    directions = TWO_DIRECTIONS if objectives == 2 else ["maximize"]
    return optuna.create_study(storage=_OwnedTrials(), study_name=STUDY_NAME, directions=directions, sampler=sampler)


def add(
    study: optuna.Study,
    trial: TrialCurve,
    params: dict | None = None,
    distributions: dict | None = None,
    system_attrs: dict | None = None,
) -> None:
    """Add one TrialCurve to `study`: its state, its objective (if complete), its epochs as
    intermediate values, and the Optuna params/system attributes the caller built for it. In a
    two-objective study a complete trial without its second value (its cost was not measured)
    counts as failed: Optuna learns nothing from it."""
    state = OPTUNA_STATE[trial.state]
    values = [trial.objective] if state == TrialState.COMPLETE else None
    if len(study.directions) == 2 and values is not None:
        values = None if trial.value2 is None or values[0] is None else [values[0], float(trial.value2)]
        state = TrialState.COMPLETE if values else TrialState.FAIL
    if state == TrialState.COMPLETE and values[0] is None:
        state, values = TrialState.PRUNED, None  # a complete trial with no epoch recorded: nothing to learn from
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            values=values,
            params=params or {},
            distributions=distributions or {},
            intermediate_values=dict(trial.curve),
            system_attrs=system_attrs or {},
        )
    )
