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


def new_study(sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """An empty in-memory study, maximizing; Optuna's per-study INFO lines silenced."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler is None:
        sampler = optuna.samplers.RandomSampler(seed=0)  # never asked: pruning studies only
    return optuna.create_study(study_name=STUDY_NAME, direction="maximize", sampler=sampler)


def add(
    study: optuna.Study,
    trial: TrialCurve,
    params: dict | None = None,
    distributions: dict | None = None,
    system_attrs: dict | None = None,
) -> None:
    """Add one TrialCurve to `study`: its state, its objective (if complete), its epochs as
    intermediate values, and the Optuna params/system attributes the caller built for it."""
    state = OPTUNA_STATE[trial.state]
    value = trial.objective if state == TrialState.COMPLETE else None
    if state == TrialState.COMPLETE and value is None:
        state = TrialState.PRUNED  # a complete trial with no epoch recorded: nothing to learn from
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=value,
            params=params or {},
            distributions=distributions or {},
            intermediate_values=dict(trial.curve),
            system_attrs=system_attrs or {},
        )
    )
