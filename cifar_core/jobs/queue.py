"""The job queue: submit, claim with a lease, renew, report, finish, cancel, retry.

A job is claimed atomically (BEGIN IMMEDIATE) with a lease that its worker renews while it trains.
Leases are the truth: every write a worker makes for a job (progress, an epoch, the finish)
names its `Lease` (job, worker, attempt) and is taken only while that attempt is still the job's
current one, so a worker that lost its job can never write over the one that took it. A worker
that dies stops renewing; `reap_expired` (run by every claim, by workers every few seconds and by
the app when it reads the queue) puts the job back in the queue, and the next worker resumes it
from its last per-epoch checkpoint. Only attempts that finished no epoch count as crashes: a job
fails after `max_attempts` crashes in a row, never for making progress.

Train time: a run's `train_seconds` are the seconds workers held its job, summed over its
attempts (each from its claim to its end: finished, handed back, or its worker gone), so a
retried run counts the attempt that was cancelled as well as the retry, and never the time it
waited in the queue. Only this module writes it (`store.end_attempt`, in the transaction that
ends an attempt); every page, the CLI and the reports read that one figure.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from cifar_core import config
from cifar_core.errors import LabError, NotFound
from cifar_core.jobs import store
from cifar_core.train.phases import Phase

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
PRUNED = "pruned"  # a sweep's pruner stopped it: its curve and checkpoint stay; never a failure, never retried
PAUSED = "paused"  # stopped at a rung by successive halving or Hyperband; promotion queues it again
STATES = (QUEUED, RUNNING, PAUSED, SUCCEEDED, PRUNED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, PRUNED, FAILED, CANCELLED})

# What a heartbeat tells the training thread, and why a worker stops a job it holds.
KEEP_GOING, STOP_CANCEL, STOP_LOST, STOP_SHUTDOWN = "keep-going", "stop-cancel", "stop-lost", "shutdown"
STOP_PRUNED, STOP_PAUSED = "stop-pruned", "stop-paused"  # a sweep's pruner decided at a recorded epoch
PRUNE, PAUSE = "prune", "pause"  # a stop decision's action
HALT = "halt"  # its sweep was stopped, or spent its budget: the job ends cancelled, and resuming the sweep queues it again

# Kinds of job group.
GROUP_REPEATS, GROUP_SWEEP, GROUP_REPRODUCE = "repeats", "sweep", "reproduce"
GROUP_REFIT = "refit"  # a run trained again on train + holdout; its detail names the source run

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "learning_rate", "val_seconds")  # per epoch
SYSTEM_METRICS = ("cpu_seconds", "peak_rss_bytes", "node", "cpu_model", "cores")  # per epoch: train/sysmetrics.py

DEFAULT_LEASE_SECONDS = 30.0
MAX_ATTEMPTS = 3  # crashes in a row without progress before a job fails
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
    crashes: int = 0  # attempts in a row that ended without finishing an epoch
    note: str | None = None  # what its worker says now (e.g. paused for disk space)
    node: str | None = None  # where its last epoch trained
    worker_pid: int | None = None
    phase: Phase | None = None  # what its attempt does now (None: not said yet)
    attempt_at: float | None = None  # when its current (or last) attempt was claimed
    stop_decision: dict | None = None  # {"action": PRUNE | PAUSE, "reason": ...} once a sweep's pruner stopped it
    train_seconds: float | None = None  # its ended attempts' seconds (see the module docstring)
    submitted_by: str | None = None  # the signed-in user who queued it (None: a lab without a login)

    def trained(self, now: float) -> float | None:
        """Seconds spent training so far, summed over attempts (the running one up to `now`);
        None before its first claim."""
        if self.attempts == 0:
            return None
        running = max(0.0, now - (self.attempt_at or self.started_at or now)) if self.state == RUNNING else 0.0
        return (self.train_seconds or 0.0) + running

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @property
    def lease(self) -> "Lease":
        """The lease of the attempt now running (meaningful for a claimed job)."""
        return Lease(self.id, self.worker_id or "", self.attempts)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunningPoint:
    """A point of the running training curve: `epoch` is fractional (epoch - 1 + batch / batches),
    loss and accuracy the running means of that epoch so far."""

    epoch: float
    loss: float | None
    accuracy: float | None


@dataclass(frozen=True)
class Lease:
    """A worker's hold on one attempt of one job: its fencing token."""

    job_id: int
    worker_id: str
    attempt: int


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
        progress_at=row["progress_at"], epochs=int(spec.get("epochs", 0)), crashes=row["crashes"],
        note=row["note"], node=row["node"], worker_pid=row["worker_pid"],
        phase=None if row["phase"] is None else Phase(row["phase"], row["phase_step"], row["phase_steps"], row["phase_at"]),
        attempt_at=row["attempt_at"], train_seconds=row["train_seconds"], submitted_by=row["submitted_by"],
        stop_decision=json.loads(row["stop_decision"]) if row["stop_decision"] else None,
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
    tags: list[str] = (),
    submitted_by: str | None = None,
) -> Submitted:
    """Enqueue several (spec doc, parameter count) pairs as one transaction, optionally grouped,
    each run tagged with `tags` (checked already); `submitted_by` is the signed-in user who queues
    them (None: a lab without a login)."""
    created = store.now()
    runs_root = config.runs_dir()
    with store.transaction(conn):
        group_id = store.insert_group(conn, *group, created) if group is not None else None
        ids = [
            store.insert_job(conn, group_id, doc, data_source, QUEUED, MAX_ATTEMPTS, params, runs_root, created,
                             submitted_by)
            for doc, params in docs
        ]
        store.add_run_tags(conn, ids, list(tags))
    return Submitted(group_id, ids)


def add_to_group(conn: sqlite3.Connection, group_id: int, docs: list[tuple[dict, int]], data_source: str) -> list[int]:
    """Enqueue more (spec doc, parameter count) pairs into an existing group (a sweep whose sampler
    asks for its next trials); their ids. They carry the tags every run of the group carries and
    belong to whoever queued the group."""
    created = store.now()
    runs_root = config.runs_dir()
    with store.transaction(conn):
        tags = store.shared_group_tags(conn, group_id)
        owner = store.group_submitter(conn, group_id)
        ids = [store.insert_job(conn, group_id, doc, data_source, QUEUED, MAX_ATTEMPTS, params, runs_root, created, owner)
               for doc, params in docs]
        store.add_run_tags(conn, ids, tags)
        return ids


def claim(conn: sqlite3.Connection, worker_id: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Job | None:
    """Take the oldest queued job (after reaping expired leases), or None when there is none."""
    t = store.now()
    with store.transaction(conn):
        _reap(conn, t)
        job_id = store.oldest_claimable(conn, QUEUED)
        if job_id is None:
            return None
        row = store.job_row(conn, job_id)
        store.update_job(
            conn, job_id, state=RUNNING, worker_id=worker_id, lease_expires_at=t + lease_seconds,
            attempts=store.Expr("attempts + 1"), started_at=t if row["started_at"] is None else row["started_at"],
            batch=0, progress_at=t, claimed_epoch=row["epoch"], note=None, phase=None, phase_step=0, phase_steps=0,
            phase_at=None, attempt_at=t, stop_decision=None,
        )
        return _job(store.job_row(conn, job_id))


def reap_expired(conn: sqlite3.Connection) -> int:
    """Return the jobs whose lease expired to the queue (or end them); how many there were.
    Cheap when there are none: it reads before it takes the write lock."""
    t = store.now()
    if not store.expired_leases(conn, RUNNING, t):
        return 0
    with store.transaction(conn):
        return _reap(conn, t)


def expire(conn: sqlite3.Connection, lease: Lease, why: str) -> bool:
    """End `lease` now, as if its worker had stopped renewing it (a worker whose training process
    died says so): the job goes back to the queue, or ends, by `_reap`'s rule for a dead worker,
    with `why` as the cause. False, and nothing changed, if the lease was no longer held."""
    t = store.now()
    with store.transaction(conn):
        if not store.update_job(conn, lease.job_id, _held(lease), lease_expires_at=t - 1):
            return False
        _reap(conn, t, {lease.job_id: why})
    return True


def _reap(conn: sqlite3.Connection, t: float, causes: dict[int, str] | None = None) -> int:
    """Inside a transaction: jobs whose worker stopped renewing go back to the queue; one whose
    attempt finished no epoch counts a crash, and `max_attempts` crashes in a row fail it.
    `causes` names what happened to some of them (default: their worker stopped responding)."""
    rows = store.expired_leases(conn, RUNNING, t)
    for row in rows:
        cause = (causes or {}).get(row["id"]) or f"worker {row['worker_id']} stopped responding"
        lost = f"{cause} during attempt {row['attempts']} (after epoch {row['epoch']})"
        store.end_attempt(conn, row["id"], t if row["id"] in (causes or {}) else (row["progress_at"] or t))  # last heard of
        progressed = row["epoch"] > row["claimed_epoch"]
        crashes = 0 if progressed else row["crashes"] + 1
        decided = json.loads(row["stop_decision"]) if row["stop_decision"] else None
        if row["cancel_requested"]:
            _set_final(conn, row["id"], CANCELLED, f"cancelled; {lost}", t)
        elif decided is not None:  # the pruner had stopped it: that stands, whatever became of its worker
            _end_stopped(conn, row["id"], decided, t)
        elif crashes >= row["max_attempts"]:
            _set_final(conn, row["id"], FAILED,
                       f"gave up after {crashes} attempts in a row that finished no epoch: {lost}", t)
            store.update_job(conn, row["id"], crashes=crashes)
        else:
            store.update_job(conn, row["id"], state=QUEUED, worker_id=None, lease_expires_at=None, crashes=crashes,
                             error=lost + ("; it had made progress, so this does not count as a crash" if progressed
                                           else f"; crash {crashes} of {row['max_attempts']}"))
    return len(rows)


def _end_stopped(conn: sqlite3.Connection, job_id: int, decided: dict, t: float) -> None:
    if decided["action"] == HALT:
        _set_final(conn, job_id, CANCELLED, decided["reason"], t)
    elif decided["action"] == PAUSE:
        store.update_job(conn, job_id, state=PAUSED, worker_id=None, lease_expires_at=None, error=decided["reason"],
                         note=None)
    else:
        _set_final(conn, job_id, PRUNED, decided["reason"], t)


def decide_stop(conn: sqlite3.Connection, lease: Lease, action: str, reason: str) -> bool:
    """A sweep's pruner stops the attempt `lease` holds (PRUNE or PAUSE, with why in words), or its
    sweep halts it (HALT): its heartbeat then answers STOP_PRUNED, STOP_PAUSED or STOP_CANCEL, and
    however the attempt ends, the job ends so. False, and nothing written, if the lease was lost."""
    if action not in (PRUNE, PAUSE, HALT):
        raise LabError(f"a stop decision is {PRUNE!r}, {PAUSE!r} or {HALT!r}, got {action!r}")
    with store.transaction(conn):
        return bool(store.update_job(conn, lease.job_id, _held(lease),
                                     stop_decision=json.dumps({"action": action, "reason": reason})))


def end_stopped(conn: sqlite3.Connection, lease: Lease) -> str | None:
    """Close the attempt `lease` holds as its stop decision says: PRUNED (final, with the reason),
    PAUSED (back in the queue's keeping, claimable only once promoted) or CANCELLED (halted by its
    sweep). The state, or None if the lease was lost or nothing was decided."""
    t = store.now()
    with store.transaction(conn):
        row = store.job_row(conn, lease.job_id)
        if row is None or not row["stop_decision"] or not store.update_job(conn, lease.job_id, _held(lease),
                                                                           lease_expires_at=None):
            return None
        decided = json.loads(row["stop_decision"])
        _end_stopped(conn, lease.job_id, decided, t)
        store.end_attempt(conn, lease.job_id, t)
    return {PAUSE: PAUSED, HALT: CANCELLED}.get(decided["action"], PRUNED)


def halt_queued(conn: sqlite3.Connection, job_ids: list[int], reason: str) -> list[int]:
    """Cancel those of `job_ids` still queued, as halted by their sweep (`requeue_halted` queues
    them again); the ids cancelled."""
    t = store.now()
    decided = json.dumps({"action": HALT, "reason": reason})
    with store.transaction(conn):
        return [i for i in job_ids if store.update_job(conn, i, {"state": QUEUED}, state=CANCELLED, error=reason,
                                                         ended_at=t, stop_decision=decided)]


def requeue_halted(conn: sqlite3.Connection, job_ids: list[int], reason: str) -> list[int]:
    """Queue again those of `job_ids` that their sweep halted (cancelled with a HALT decision); a
    trial that had run resumes from its checkpoint. The ids queued."""
    queued = []
    with store.transaction(conn):
        for i in job_ids:
            row = store.job_row(conn, i)
            decided = json.loads(row["stop_decision"]) if row is not None and row["stop_decision"] else {}
            if row["state"] == CANCELLED and decided.get("action") == HALT and store.update_job(
                    conn, i, {"state": CANCELLED}, state=QUEUED, stop_decision=None, ended_at=None, crashes=0,
                    cancel_requested=0, error=reason):
                queued.append(i)
    return queued


def promote(conn: sqlite3.Connection, job_id: int, reason: str) -> bool:
    """A paused trial that now ranks in the top 1/eta of its rung goes back to the queue; it
    resumes from its checkpoint. False if it was not paused."""
    with store.transaction(conn):
        return bool(store.update_job(conn, job_id, {"state": PAUSED}, state=QUEUED, stop_decision=None,
                                     error=reason, crashes=0))


def _set_final(conn: sqlite3.Connection, job_id: int, state: str, error: str | None, t: float) -> None:
    store.update_job(conn, job_id, state=state, error=error, ended_at=t, lease_expires_at=None, note=None)


def _held(lease: Lease) -> dict:
    """The conditions under which a write for `lease` is taken: its attempt is still current."""
    return {"worker_id": lease.worker_id, "attempts": lease.attempt, "state": RUNNING}


def heartbeat(conn: sqlite3.Connection, lease: Lease, lease_seconds: float, batch: int, batches: int,
              note: str | None = None, phase: Phase | None = None, point: RunningPoint | None = None,
              node: str | None = None, pid: int | None = None) -> str:
    """Renew the lease and record batch progress (and the worker's note, the phase, a running
    curve point, and the node and process that train the attempt now, when given). Returns
    KEEP_GOING, STOP_CANCEL (a cancel was asked: stop and mark it cancelled) or STOP_LOST (the
    lease was lost: stop, write nothing)."""
    said = {} if phase is None else dict(phase=phase.name, phase_step=phase.step, phase_steps=phase.steps,
                                         phase_at=phase.since)
    if node is not None:
        said.update(node=node, worker_pid=pid)
    return _renew(conn, lease, lease_seconds, point, batch=batch, batches=batches, progress_at=store.now(), note=note,
                  **said)


def renew(conn: sqlite3.Connection, lease: Lease, lease_seconds: float) -> str:
    """Renew the lease alone, leaving the progress to whoever reports it: a worker renews the
    lease of the job its training process holds, so that the lease outlives the process's start
    (importing TensorFlow can hold Python's lock for seconds). Returns what `heartbeat` does."""
    return _renew(conn, lease, lease_seconds)


def _renew(conn: sqlite3.Connection, lease: Lease, lease_seconds: float, point: RunningPoint | None = None,
           **values) -> str:
    t = store.now()
    with store.transaction(conn):
        if not store.update_job(conn, lease.job_id, _held(lease), lease_expires_at=t + lease_seconds, **values):
            return STOP_LOST
        if point is not None:
            store.insert_batch_point(conn, lease.job_id, lease.attempt, point.epoch, point.loss, point.accuracy, t)
        row = store.job_row(conn, lease.job_id)
        if row["cancel_requested"]:
            return STOP_CANCEL
        if row["stop_decision"]:
            return {PAUSE: STOP_PAUSED, HALT: STOP_CANCEL}.get(json.loads(row["stop_decision"])["action"], STOP_PRUNED)
        return KEEP_GOING


def record_epoch(conn: sqlite3.Connection, lease: Lease, record: dict, node: str | None = None,
                 pid: int | None = None) -> bool:
    """Store one finished epoch (1-based `epoch`) of the attempt `lease` holds, with what its
    training process used (SYSTEM_METRICS: the record's, and the `node` that trained it); a
    re-run epoch after a resume replaces its row. False, and nothing written, if the lease was lost."""
    t = store.now()
    with store.transaction(conn):
        if not store.update_job(conn, lease.job_id, _held(lease), epoch=record["epoch"], batch=0, progress_at=t,
                                crashes=0, node=node, worker_pid=pid):
            return False
        store.insert_metrics(conn, lease.job_id, {**record, "node": node}, METRICS + SYSTEM_METRICS, t)
    return True


def finish(conn: sqlite3.Connection, lease: Lease, state: str, error: str | None = None,
           results: dict | None = None) -> bool:
    """Close the job `lease` holds; `results` go to its run row (never `train_seconds`: this
    attempt's seconds are added to it here). False if the lease was lost."""
    if state not in TERMINAL:
        raise LabError(f"finish() needs a final state ({', '.join(sorted(TERMINAL))}), got {state!r}")
    if "train_seconds" in (results or {}):
        raise LabError("finish() adds the attempt's seconds to train_seconds itself; leave it out of results")
    t = store.now()
    with store.transaction(conn):
        if not store.update_job(conn, lease.job_id, _held(lease), state=state, error=error, ended_at=t,
                                lease_expires_at=None, note=None):
            return False
        store.update_run(conn, lease.job_id, **(results or {}))
        store.end_attempt(conn, lease.job_id, t)
    return True


def requeue(conn: sqlite3.Connection, lease: Lease, reason: str) -> bool:
    """Hand a job back (its worker is shutting down); this attempt does not count as a crash."""
    t = store.now()
    with store.transaction(conn):
        if not store.update_job(conn, lease.job_id, _held(lease), state=QUEUED, worker_id=None,
                                lease_expires_at=None, error=reason, note=None):
            return False
        store.end_attempt(conn, lease.job_id, t)
    return True


def retry(conn: sqlite3.Connection, job_id: int) -> str:
    """Queue a failed or cancelled job again; it resumes from its last checkpoint. Returns the
    new state; LabError for a job that is queued, running or succeeded."""
    with store.transaction(conn):
        row = store.job_row(conn, job_id)
        if row is None:
            raise NotFound(f"no job {job_id}; `python -m cifar_core runs` lists the jobs")
        if row["state"] not in (FAILED, CANCELLED):
            raise LabError(f"job {job_id} is {row['state']}: only a failed or cancelled job can be retried")
        store.update_job(conn, job_id, state=QUEUED, crashes=0, cancel_requested=0, ended_at=None, worker_id=None,
                         lease_expires_at=None, error=f"retried after epoch {row['epoch']} ({row['state']}: {row['error']})")
    return QUEUED


def cancel(conn: sqlite3.Connection, job_id: int) -> str:
    """Cancel a job: a queued one never starts; a running one is asked to stop (its worker marks
    it cancelled within a few seconds and keeps its finished epochs). Returns the state now."""
    t = store.now()
    with store.transaction(conn):
        row = store.job_row(conn, job_id)
        if row is None:
            raise NotFound(f"no job {job_id}; `python -m cifar_core runs` lists the jobs")
        if row["state"] in (QUEUED, PAUSED):
            _set_final(conn, job_id, CANCELLED, "cancelled before it started" if row["state"] == QUEUED else
                       f"cancelled while paused after epoch {row['epoch']}", t)
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
