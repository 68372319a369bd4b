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

from cifar_core import config
from cifar_core.errors import LabError, NotFound
from cifar_core.jobs.store import now, transaction

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})

KEEP_GOING, STOP_CANCEL, STOP_LOST = "keep-going", "stop-cancel", "stop-lost"

DEFAULT_LEASE_SECONDS = 30.0
MAX_ATTEMPTS = 3


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


def submit(
    conn: sqlite3.Connection,
    spec_doc: dict,
    data_source: str,
    repeats: int = 1,
    params: int = 0,
    group: tuple[str, str, dict] | None = None,
) -> list[int]:
    """Enqueue `repeats` runs of one validated spec doc with seeds seed..seed+repeats-1.

    Several repeats are grouped (kind 'repeats') so the leaderboard can show mean and spread;
    `group=(kind, name, detail)` names another group (a sweep). Returns the job ids.
    """
    if not 1 <= repeats <= 100:
        raise LabError(f"repeats={repeats} is out of range: use 1..100")
    docs = [dict(spec_doc, seed=int(spec_doc.get("seed", 0)) + i) for i in range(repeats)]
    if group is None and repeats > 1:
        group = ("repeats", spec_doc["name"], {"seeds": [d["seed"] for d in docs]})
    return submit_many(conn, [(d, params) for d in docs], data_source, group)


def submit_many(
    conn: sqlite3.Connection,
    docs: list[tuple[dict, int]],
    data_source: str,
    group: tuple[str, str, dict] | None = None,
) -> list[int]:
    """Enqueue several (spec doc, parameter count) pairs as one transaction, optionally grouped."""
    created = now()
    ids = []
    with transaction(conn):
        group_id = None
        if group is not None:
            kind, name, detail = group
            group_id = conn.execute(
                "INSERT INTO groups (kind, name, detail_json, created_at) VALUES (?, ?, ?, ?)",
                (kind, name, json.dumps(detail), created),
            ).lastrowid
        for doc, params in docs:
            job_id = conn.execute(
                "INSERT INTO jobs (group_id, name, spec_json, data_source, state, max_attempts, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (group_id, doc["name"], json.dumps(doc), data_source, QUEUED, MAX_ATTEMPTS, created),
            ).lastrowid
            conn.execute(
                "INSERT INTO runs (id, params, seed, epochs_planned, artifacts_dir) VALUES (?, ?, ?, ?, ?)",
                (job_id, params, int(doc.get("seed", 0)), int(doc.get("epochs", 0)), str(config.runs_dir() / str(job_id))),
            )
            ids.append(job_id)
    return ids


def claim(conn: sqlite3.Connection, worker_id: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Job | None:
    """Take the oldest queued job (after reaping expired leases), or None when there is none."""
    t = now()
    with transaction(conn):
        _reap_expired(conn, t)
        row = conn.execute(
            "SELECT id FROM jobs WHERE state = ? AND cancel_requested = 0 ORDER BY id LIMIT 1", (QUEUED,)
        ).fetchone()
        if row is None:
            return None
        conn.execute(
            "UPDATE jobs SET state = ?, worker_id = ?, lease_expires_at = ?, attempts = attempts + 1,"
            " started_at = COALESCE(started_at, ?), batch = 0, progress_at = ? WHERE id = ?",
            (RUNNING, worker_id, t + lease_seconds, t, t, row["id"]),
        )
        return _job(conn.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())


def _reap_expired(conn: sqlite3.Connection, t: float) -> None:
    """Jobs whose worker stopped renewing: back to the queue, or failed after the last attempt."""
    for row in conn.execute(
        "SELECT id, attempts, max_attempts, worker_id, cancel_requested, epoch FROM jobs"
        " WHERE state = ? AND lease_expires_at < ?",
        (RUNNING, t),
    ).fetchall():
        lost = f"worker {row['worker_id']} stopped responding during attempt {row['attempts']} (after epoch {row['epoch']})"
        if row["cancel_requested"]:
            _set_final(conn, row["id"], CANCELLED, f"cancelled; {lost}", t)
        elif row["attempts"] >= row["max_attempts"]:
            _set_final(conn, row["id"], FAILED, f"gave up after {row['attempts']} attempts: {lost}", t)
        else:
            conn.execute(
                "UPDATE jobs SET state = ?, worker_id = NULL, lease_expires_at = NULL, error = ? WHERE id = ?",
                (QUEUED, lost, row["id"]),
            )


def _set_final(conn: sqlite3.Connection, job_id: int, state: str, error: str | None, t: float) -> None:
    conn.execute(
        "UPDATE jobs SET state = ?, error = ?, ended_at = ?, lease_expires_at = NULL WHERE id = ?",
        (state, error, t, job_id),
    )


def heartbeat(
    conn: sqlite3.Connection, job_id: int, worker_id: str, lease_seconds: float, batch: int, batches: int
) -> str:
    """Renew the lease and record batch progress. Returns KEEP_GOING, STOP_CANCEL (a cancel was
    asked: stop and mark it cancelled) or STOP_LOST (the lease was lost: stop, write nothing)."""
    t = now()
    with transaction(conn):
        updated = conn.execute(
            "UPDATE jobs SET lease_expires_at = ?, batch = ?, batches = ?, progress_at = ?"
            " WHERE id = ? AND worker_id = ? AND state = ?",
            (t + lease_seconds, batch, batches, t, job_id, worker_id, RUNNING),
        ).rowcount
        if not updated:
            return STOP_LOST
        cancel = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
        return STOP_CANCEL if cancel else KEEP_GOING


def record_epoch(conn: sqlite3.Connection, job_id: int, record: dict) -> None:
    """Store one finished epoch (1-based `epoch`); a re-run epoch after a resume replaces its row."""
    t = now()
    with transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO metrics (run_id, epoch, loss, accuracy, val_loss, val_accuracy, seconds,"
            " learning_rate, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, record["epoch"], record.get("loss"), record.get("accuracy"), record.get("val_loss"),
             record.get("val_accuracy"), record.get("seconds"), record.get("learning_rate"), t),
        )
        conn.execute("UPDATE jobs SET epoch = ?, batch = 0, progress_at = ? WHERE id = ?", (record["epoch"], t, job_id))


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
    t = now()
    with transaction(conn):
        owned = conn.execute(
            "SELECT 1 FROM jobs WHERE id = ? AND worker_id = ? AND state = ?", (job_id, worker_id, RUNNING)
        ).fetchone()
        if not owned:
            return False
        _set_final(conn, job_id, state, error, t)
        if results:
            cols = ", ".join(f"{k} = ?" for k in results)
            conn.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*results.values(), job_id))
    return True


def requeue(conn: sqlite3.Connection, job_id: int, worker_id: str, reason: str) -> None:
    """Hand a job back (worker shutting down); this attempt does not count against it."""
    with transaction(conn):
        conn.execute(
            "UPDATE jobs SET state = ?, worker_id = NULL, lease_expires_at = NULL, error = ?,"
            " attempts = MAX(attempts - 1, 0) WHERE id = ? AND worker_id = ? AND state = ?",
            (QUEUED, reason, job_id, worker_id, RUNNING),
        )


def cancel(conn: sqlite3.Connection, job_id: int) -> str:
    """Cancel a job: a queued one never starts; a running one is asked to stop (its worker marks
    it cancelled within a few seconds and keeps its finished epochs). Returns the state now."""
    t = now()
    with transaction(conn):
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id}; `python -m cifar_core runs` lists the jobs")
        if row["state"] == QUEUED:
            _set_final(conn, job_id, CANCELLED, "cancelled before it started", t)
            return CANCELLED
        if row["state"] == RUNNING:
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return row["state"]


def get_job(conn: sqlite3.Connection, job_id: int) -> Job:
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job {job_id}; `python -m cifar_core runs` lists the jobs")
    return _job(row)


def list_jobs(conn: sqlite3.Connection, states: tuple[str, ...] = STATES, limit: int = 200) -> list[Job]:
    """Jobs in the given states, newest first."""
    marks = ",".join("?" * len(states))
    rows = conn.execute(
        f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id DESC LIMIT ?", (*states, limit)
    ).fetchall()
    return [_job(r) for r in rows]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    got = dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    return {s: got.get(s, 0) for s in STATES}
