"""Refit: a finished holdout run's configuration trained again on the training set plus the
holdout, validating on nothing, the test set scored once at the end (what scikit-learn's
`refit=True` does once the search has chosen). The refit is its own run, labelled as such in its
spec (`validation: "none"`, `refit_of`: the source run) and grouped apart (`queue.GROUP_REFIT`,
the group's detail naming the source run), so it never pools with the holdout runs it came from.
"""

from __future__ import annotations

import sqlite3

from cifar_core.errors import LabError
from cifar_core.jobs import queue, store

REFIT_SUFFIX = "-refit"


def refit_request(conn: sqlite3.Connection, run_id: int) -> tuple[dict, str, tuple[str, str, dict]]:
    """The spec doc, data source and group of a refit of run `run_id`. LabError, saying what to
    do, for a run that is not finished, is a refit already, or validated on the test set."""
    job = queue.get_job(conn, run_id)
    spec = job.spec
    if spec.get("refit_of") or spec.get("validation") == "none":
        source = spec.get("refit_of")
        raise LabError(f"run {run_id} is already a refit" + (f" of run {source}" if source else " (validation 'none')")
                       + ": use it as it is, or refit its holdout run" + (f" ({source})" if source else ""))
    if spec.get("validation") == "test":
        raise LabError(f"run {run_id} validated on the test set (validation 'test'): it holds no images out, so a "
                       "refit would add none, and the test set already chose it; train its spec with validation "
                       "'holdout' first, then refit that run")
    if job.state != queue.SUCCEEDED:
        raise LabError(f"run {run_id} is {job.state}: only a succeeded run can be refit; wait for it to finish "
                       f"(or `retry {run_id}`), then refit it")
    return refit_doc(spec, run_id, store.run_row(conn, run_id)["stopped_epoch"]), job.data_source, refit_group(run_id, spec)


def refit_doc(spec: dict, run_id: int, stopped_epoch: int | None) -> dict:
    """Run `run_id`'s spec as a refit: every training image, no validation, the same seed, and the
    epochs it trained (the epoch early stopping chose, when it stopped early: there is no
    validation set to stop on now)."""
    doc = {k: v for k, v in spec.items() if k != "early_stopping"}
    name = f"{spec['name'][:64 - len(REFIT_SUFFIX)]}{REFIT_SUFFIX}"  # names hold 64 characters
    epochs = int(stopped_epoch) if spec.get("early_stopping") and stopped_epoch else spec["epochs"]
    return {**doc, "name": name, "validation": "none", "refit_of": int(run_id), "epochs": epochs}


def refit_group(run_id: int, spec: dict) -> tuple[str, str, dict]:
    return queue.GROUP_REFIT, f"{spec['name']} refit of run {run_id}", {"source_run": int(run_id)}
