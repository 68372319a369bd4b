"""The job queue: submit, claim with a lease, renew, report, finish, cancel.

A job is claimed atomically (BEGIN IMMEDIATE) with a lease that its worker renews while it trains.
A worker that dies stops renewing; the next claim after the lease has expired puts the job back
in the queue (or fails it after `max_attempts`), and the next worker resumes it from its last
per-epoch checkpoint.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import NamedTuple

from cifar_core import config
from cifar_core.errors import LabError, NotFound
from cifar_core.jobs import store

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})

# What a heartbeat tells the training thread, and why a worker stops a job it holds.
KEEP_GOING, STOP_CANCEL, STOP_LOST, STOP_SHUTDOWN = "keep-going", "stop-cancel", "stop-lost", "shutdown"

# Kinds of job group.
GROUP_REPEATS, GROUP_SWEEP, GROUP_REPRODUCE = "repeats", "sweep", "reproduce"

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "learning_rate")  # per epoch

DEFAULT_LEASE_SECONDS = 30.0
MAX_ATTEMPTS = 3
MAX_REPEATS = 100


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    group_id: int | None
    state: str
    spec: dict
    data_source: str
    attempts: int
    max_attempts: int
    worker_id: str | None
    cancel_requested: bool
    created_at: float
    started_at: float | None
    ended_at: float | None
    error: str | None
    epoch: int  # epochs completed
    batch: int
    batches: int
    progress_at: float | None
    epochs: int = field(default=0)  # epochs planned

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Submitted(NamedTuple):
    """What a submit enqueued: its group (None for a single run) and the job ids, in order."""

    group_id: int | None
    job_ids: list[int]


def _job(row: sqlite3.Row) -> Job:
    spec = json.loads(row["spec_json"])
    return Job(
        id=row["id"], name=row["name"], group_id=row["group_id"], state=row["state"], spec=spec,
        data_source=row["data_source"], attempts=row["attempts"], max_attempts=row["max_attempts"],
        worker_id=row["worker_id"], cancel_requested=bool(row["cancel_requested"]),
        created_at=row["created_at"], started_at=row["started_at"], ended_at=row["ended_at"],
        error=row["error"], epoch=row["epoch"], batch=row["batch"], batches=row["batches"],
        progress_at=row["progress_at"], epochs=int(spec.get("epochs", 0)),
    )


def repeated(spec_doc: dict, repeats: int) -> tuple[list[dict], tuple[str, str, dict] | None]:
    """`repeats` copies of a spec doc with seeds seed..seed+repeats-1, and their group: several
    repeats are grouped (GROUP_REPEATS) so the leaderboard can show mean and spread."""
    if not 1 <= repeats <= MAX_REPEATS:
        raise LabError(f"repeats={repeats} is out of range: use 1..{MAX_REPEATS}")
    docs = [dict(spec_doc, seed=int(spec_doc.get("seed", 0)) + i) for i in range(repeats)]
    group = (GROUP_REPEATS, spec_doc["name"], {"seeds": [d["seed"] for d in docs]}) if repeats > 1 else None
    return docs, group


def submit(conn: sqlite3.Connection, spec_doc: dict, data_source: str, repeats: int = 1, params: int = 0) -> Submitted:
    """Enqueue `repeats` runs of one validated spec doc (see `repeated`)."""
    docs, group = repeated(spec_doc, repeats)
    return submit_many(conn, [(d, params) for d in docs], data_source, group)


def submit_many(
    conn: sqlite3.Connection,
    docs: list[tuple[dict, int]],
    data_source: str,
    group: tuple[str, str, dict] | None = None,
) -> Submitted:
    """Enqueue several (spec doc, parameter count) pairs as one transaction, optionally grouped."""
    created = store.now()
    runs_root = config.runs_dir()
    with store.transaction(conn):
        group_id = store.insert_group(conn, *group, created) if group is not None else None
        ids = [
            store.insert_job(conn, group_id, doc, data_source, QUEUED, MAX_ATTEMPTS, params, runs_root, created)
            for doc, params in docs
        ]
    return Submitted(group_id, ids)


def claim(conn: sqlite3.Connection, worker_id: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Job | None:
    """Take the oldest queued job (after reaping expired leases), or None when there is none."""
    t = store.now()
    with store.transaction(conn):
        _reap_expired(conn, t)
        job_id = store.oldest_claimable(conn, QUEUED)
        if job_id is None:
            return None
        started = store.job_row(conn, job_id)["started_at"]
        store.update_job(
            conn, job_id, state=RUNNING, worker_id=worker_id, lease_expires_at=t + lease_seconds,
            attempts=store.Expr("attempts + 1"), started_at=t if started is None else started, batch=0, progress_at=t,
        )
        return _job(store.job_row(conn, job_id))


def _reap_expired(conn: sqlite3.Connection, t: float) -> None:
    """Jobs whose worker stopped renewing: back to the queue, or failed after the last attempt."""
    for row in store.expired_leases(conn, RUNNING, t):
        lost = f"worker {row['worker_id']} stopped responding during attempt {row['attempts']} (after epoch {row['epoch']})"
        if row["cancel_requested"]:
            _set_final(conn, row["id"], CANCELLED, f"cancelled; {lost}", t)
        elif row["attempts"] >= row["max_attempts"]:
            _set_final(conn, row["id"], FAILED, f"gave up after {row['attempts']} attempts: {lost}", t)
        else:
            store.update_job(conn, row["id"], state=QUEUED, worker_id=None, lease_expires_at=None, error=lost)


def _set_final(conn: sqlite3.Connection, job_id: int, state: str, error: str | None, t: float) -> None:
    store.update_job(conn, job_id, state=state, error=error, ended_at=t, lease_expires_at=None)


def _owned(worker_id: str) -> dict:
    return {"worker_id": worker_id, "state": RUNNING}


def heartbeat(
    conn: sqlite3.Connection, job_id: int, worker_id: str, lease_seconds: float, batch: int, batches: int
) -> str:
    """Renew the lease and record batch progress. Returns KEEP_GOING, STOP_CANCEL (a cancel was
    asked: stop and mark it cancelled) or STOP_LOST (the lease was lost: stop, write nothing)."""
    t = store.now()
    with store.transaction(conn):
        updated = store.update_job(
            conn, job_id, _owned(worker_id), lease_expires_at=t + lease_seconds, batch=batch, batches=batches,
            progress_at=t,
        )
        if not updated:
            return STOP_LOST
        return STOP_CANCEL if store.job_row(conn, job_id)["cancel_requested"] else KEEP_GOING


def record_epoch(conn: sqlite3.Connection, job_id: int, record: dict) -> None:
    """Store one finished epoch (1-based `epoch`); a re-run epoch after a resume replaces its row."""
    t = store.now()
    with store.transaction(conn):
        store.insert_metrics(conn, job_id, record, METRICS, t)
        store.update_job(conn, job_id, epoch=record["epoch"], batch=0, progress_at=t)


def finish(
    conn: sqlite3.Connection,
    job_id: int,
    worker_id: str,
    state: str,
    error: str | None = None,
    results: dict | None = None,
) -> bool:
    """Close a job this worker holds; `results` go to its run row. False if it was not ours."""
    if state not in TERMINAL:
        raise LabError(f"finish() needs a final state ({', '.join(sorted(TERMINAL))}), got {state!r}")
    t = store.now()
    with store.transaction(conn):
        if not store.update_job(conn, job_id, _owned(worker_id), state=state, error=error, ended_at=t,
                                lease_expires_at=None):
            return False
        store.update_run(conn, job_id, **(results or {}))
    return True


def requeue(conn: sqlite3.Connection, job_id: int, worker_id: str, reason: str) -> None:
    """Hand a job back (worker shutting down); this attempt does not count against it."""
    with store.transaction(conn):
        store.update_job(conn, job_id, _owned(worker_id), state=QUEUED, worker_id=None, lease_expires_at=None,
                         error=reason, attempts=store.Expr("MAX(attempts - 1, 0)"))


def cancel(conn: sqlite3.Connection, job_id: int) -> str:
    """Cancel a job: a queued one never starts; a running one is asked to stop (its worker marks
    it cancelled within a few seconds and keeps its finished epochs). Returns the state now."""
    t = store.now()
    with store.transaction(conn):
        row = store.job_row(conn, job_id)
        if row is None:
            raise NotFound(f"no job {job_id}; `python -m cifar_core runs` lists the jobs")
        if row["state"] == QUEUED:
            _set_final(conn, job_id, CANCELLED, "cancelled before it started", t)
            return CANCELLED
        if row["state"] == RUNNING:
            store.update_job(conn, job_id, cancel_requested=1)
        return row["state"]


def get_job(conn: sqlite3.Connection, job_id: int) -> Job:
    row = store.job_row(conn, job_id)
    if row is None:
        raise NotFound(f"no job {job_id}; `python -m cifar_core runs` lists the jobs")
    return _job(row)


def list_jobs(conn: sqlite3.Connection, states: tuple[str, ...] = STATES, limit: int = 200) -> list[Job]:
    """Jobs in the given states, newest first."""
    return [_job(r) for r in store.job_rows(conn, states, limit)]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    got = store.state_counts(conn)
    return {s: got.get(s, 0) for s in STATES}
