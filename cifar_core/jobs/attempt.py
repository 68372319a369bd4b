"""One attempt at a job: the protocol that a local worker's training process and the Ray
dispatcher share, written once.

An attempt begins with a claim (`queue.claim`, which gives it a `Lease`) and ends in exactly
one way, decided here by `close_attempt`:

- its training completed: the job succeeds with its results (`results_record`);
- it was stopped by a cancel: the job is cancelled "after epoch N", N the epochs the store holds
  (their checkpoint stays for a retry);
- it was stopped by a shutdown: the job is handed back to the queue (not a crash);
- it was stopped by its sweep's pruner (`record_epoch` asks it after every stored epoch): the job
  ends PRUNED, or PAUSED at a rung for a later promotion, saying why in words; never a failure,
  never retried; or its sweep was stopped or spent its budget: the job ends CANCELLED after that
  epoch, saying why, and resuming the sweep queues it again;
- it lost its lease: nothing more is written, another attempt owns the job;
- its training process died without closing it (a kill, a crash, a lost node): by the rule for
  a dead worker (`queue.expire`), a crash unless the attempt finished an epoch, and the job
  fails after `queue.MAX_ATTEMPTS` crashes in a row; a cancel asked meanwhile ends it cancelled;
- the training raised: the job fails with one line (`failure`).

While it runs, whoever beats for it publishes progress, the phase and running points of the
training curve (`PointClock`, `next_phase`), and every store write retries while SQLite says
the store is locked, busy or full (`retry_while_locked`): a full disk pauses the attempt
instead of failing it, until its lease could have lapsed.
"""

from __future__ import annotations

import errno
import logging
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from cifar_core.errors import LabError
from cifar_core.jobs import queue, store
from cifar_core.jobs.pace import Pace
from cifar_core.train.phases import Phase

log = logging.getLogger("cifar_lab.worker")

HEARTBEAT_BUSY_MS = 2_000  # a heartbeat waits this long for a locked store, then the next one tries
POINT_SECONDS = 3.0  # a running point of the training curve at most this often (unless paced)
REAP_BEATS = 5  # a heartbeat returns expired leases to the queue every this many beats
RETRY_SECONDS = 0.5  # between tries of a store write that found the store locked or full


@dataclass(frozen=True)
class Ending:
    """How an attempt's training ended, as the process that ran it (or watched it) saw it."""

    completed: bool = False
    stop_reason: str | None = None  # queue.STOP_*: why it was stopped
    results: dict | None = None  # the run's results, when completed
    died: str | None = None  # how its training process died without closing the job


def usable_seconds(lease_seconds: float) -> float:
    """How long after a renewal training may go on: the lease, less a margin for the batch in
    flight and the clocks."""
    return lease_seconds - min(5.0, 0.25 * lease_seconds)


def retry_while_locked(write, until: float):
    """`write()`, tried again every half second while SQLite says the store is locked, busy or
    full, until the monotonic time `until`; None if it never went through."""
    while True:
        try:
            return write()
        except sqlite3.OperationalError as exc:
            if time.monotonic() + RETRY_SECONDS > until:
                log.error("store write failed for good: %s", exc)
                return None
            log.warning("store write failed (%s); retrying", exc)
            time.sleep(RETRY_SECONDS)


def finish(conn, lease: queue.Lease, state: str, lease_seconds: float, **kw) -> bool:
    """Close the job if `lease` still holds it (retrying a locked or full store for the length
    of a lease). False, with a warning, when the lease was lost meanwhile."""
    done = retry_while_locked(lambda: queue.finish(conn, lease, state, **kw), until=time.monotonic() + lease_seconds)
    if not done:
        log.warning("job %s: could not record it as %s: the lease was lost or the store stayed unwritable; "
                    "another worker owns it now, or it returns to the queue", lease.job_id, state)
    return bool(done)


def cancelled_after(epochs: int) -> str:
    """What a cancelled job says: how many of its epochs were stored (they stay, and so does
    their checkpoint, for a retry)."""
    return f"cancelled after epoch {epochs}"


def record_epoch(conn, lease: queue.Lease, record: dict, node: str | None, pid: int | None, until: float) -> str | None:
    """Store one finished epoch of the attempt `lease` holds, then ask its sweep's pruner, if it
    has one, whether it goes on (jobs/sweeping.py): KEEP_GOING, STOP_PRUNED or STOP_PAUSED
    (decided and recorded in the store), STOP_LOST when another attempt holds the job, or None
    when the store stayed locked until `until`. The one place where a stop is decided, whatever
    trained the epoch."""
    stored = retry_while_locked(lambda: queue.record_epoch(conn, lease, record, node, pid), until)
    if stored is None:
        return None
    if not stored:
        return queue.STOP_LOST
    from cifar_core.jobs import sweeping

    try:
        return retry_while_locked(lambda: sweeping.after_epoch(conn, lease, int(record["epoch"])), until) or \
            queue.KEEP_GOING
    except Exception:  # a search that cannot decide must not cost the trial its epochs: it goes on
        log.exception("job %s: the sweep's pruner could not decide after epoch %s; it goes on", lease.job_id,
                      record["epoch"])
        return queue.KEEP_GOING


def handed_back(who: str) -> str:
    return f"{who} shut down; resumes from its last finished epoch"


def close_attempt(conn, lease: queue.Lease, ending: Ending, lease_seconds: float, who: str = "worker",
                  workdir: Path | None = None) -> None:
    """End the attempt `lease` holds the one way `ending` says (the module's docstring lists
    them). Writes nothing once the lease is lost. A succeeded job's checkpoint (in its run
    folder `workdir`) goes only once the store says succeeded: a consumer killed before that
    (measuring the model takes seconds) leaves a job that resumes from it, not from epoch 0."""
    until = time.monotonic() + lease_seconds
    job = retry_while_locked(lambda: queue.get_job(conn, lease.job_id), until)
    if job is None or job.state != queue.RUNNING or job.lease != lease:
        log.info("job %s: attempt %s no longer holds it; nothing more is written", lease.job_id, lease.attempt)
        return
    halted = (job.stop_decision or {}).get("action") == queue.HALT and not job.cancel_requested  # by its sweep
    stands = bool(job.stop_decision) and not halted  # a pruner's prune or pause stands, whatever finished after it
    if ending.completed and not stands:
        if finish(conn, lease, queue.SUCCEEDED, lease_seconds, results=ending.results or {}):
            if workdir is not None:
                from cifar_core.train.checkpoint import discard_checkpoint

                discard_checkpoint(workdir)
            log.info("job %s succeeded: test accuracy %.4f", job.id, (ending.results or {}).get("test_accuracy", 0.0))
    elif (ending.stop_reason == queue.STOP_CANCEL and not halted) or (ending.died and job.cancel_requested):
        if finish(conn, lease, queue.CANCELLED, lease_seconds, error=cancelled_after(job.epoch)):
            log.info("job %s cancelled after epoch %s; its checkpoint stays for a retry", job.id, job.epoch)
    elif ending.stop_reason in (queue.STOP_PRUNED, queue.STOP_PAUSED, queue.STOP_CANCEL) or \
            ((ending.died or ending.completed) and job.stop_decision):
        state = retry_while_locked(lambda: queue.end_stopped(conn, lease), until)
        if state:
            log.info("job %s %s: %s", job.id, state, (job.stop_decision or {}).get("reason", ""))
    elif ending.stop_reason == queue.STOP_SHUTDOWN:
        if retry_while_locked(lambda: queue.requeue(conn, lease, handed_back(who)), until):
            log.info("job %s handed back to the queue", job.id)
    elif ending.died:
        log.error("job %s: %s; it goes back to the queue", job.id, ending.died)
        retry_while_locked(lambda: queue.expire(conn, lease, ending.died), until)
    else:
        log.warning("job %s: lease lost (%s), another worker owns it now; nothing more is written", job.id,
                    ending.stop_reason)
        return
    _after_trial(conn, job.id, until)


def _after_trial(conn, job_id: int, until: float) -> None:
    """A trial of a sweep that searches ended: its sweep may promote a paused trial or ask its
    sampler for the next one (jobs/sweeping.py)."""
    from cifar_core.jobs import sweeping

    try:
        retry_while_locked(lambda: sweeping.after_trial(conn, job_id), until)
    except Exception:  # the trial's own end is stored; the sweep goes on with what it has
        log.exception("job %s: its sweep could not promote or ask for the next trial", job_id)


def fail_attempt(conn, lease: queue.Lease, exc: BaseException, workdir: Path, lease_seconds: float) -> str:
    """The training raised: the job fails with `failure`'s one line, which is returned."""
    reason = failure(exc, lease.job_id, workdir)
    log.error("job %s failed: %s", lease.job_id, reason, exc_info=not isinstance(exc, LabError))
    if finish(conn, lease, queue.FAILED, lease_seconds, error=reason):
        _after_trial(conn, lease.job_id, time.monotonic() + lease_seconds)
    return reason


def failure(exc: BaseException, job_id: int, workdir: Path) -> str:
    """The one line a failed job keeps: a full disk says which file, other errors their message."""
    seen = exc
    while seen is not None:
        if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or "No space left on device" in str(seen):
            named = re.search(r"filename = '([^']+)'", str(seen))  # h5py names the file only in its message
            where = getattr(seen, "filename", None) or (named.group(1) if named else workdir)
            return (f"disk full writing {where}: free some space, then `python -m cifar_core retry {job_id}` "
                    "resumes it from its last checkpoint")
        seen = seen.__cause__ or seen.__context__
    return str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"


def results_record(cost: dict, *, params, test_loss, test_accuracy, stopped_epoch, stop_reason) -> dict:
    """What a succeeded run's row keeps besides its epochs (train_seconds: `queue.finish` adds
    the attempt's own to the run's)."""
    return {
        **cost,  # model_bytes, latency figures, measured_load, measured_while_busy, macs (train.latency.measure_cost)
        "params": params,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "stopped_epoch": stopped_epoch,
        "stop_reason": stop_reason,
    }


def next_phase(current: Phase | None, name: str, step: int = 0, steps: int = 0) -> Phase:
    """The phase a run reports now; it keeps its start time while its name stays the same."""
    since = current.since if current is not None and current.name == name else store.now()
    return Phase(name, step, steps, since)


def running_point(running: tuple, last: tuple) -> queue.RunningPoint | None:
    """A batch's `running` figures, (epoch (0-based), batch, batches, loss, accuracy) as a reporter
    keeps them, as a curve point; None before an epoch's first batch, without a loss, or when it
    is the point stored `last`."""
    if not running or running == last:
        return None
    epoch, batch, batches, loss, accuracy = running
    if not batch or not batches or loss is None:
        return None
    return queue.RunningPoint(epoch + batch / batches, loss, accuracy)


class PointClock:
    """When a heartbeat stores a running point of one attempt's curve: at most every
    POINT_SECONDS, or (paced, in tests) exactly where the training asked for one."""

    def __init__(self, pace: Pace | None = None) -> None:
        self.pace = pace or Pace()
        self.stored: tuple = ()  # the running figures last stored
        self.stored_at = float("-inf")  # when (monotonic)

    def point(self, running: tuple, now: float, asked: bool = False) -> queue.RunningPoint | None:
        due = asked if self.pace.lockstep else now - self.stored_at >= POINT_SECONDS
        return running_point(running, self.stored) if due else None

    def kept(self, running: tuple, now: float) -> None:
        self.stored, self.stored_at = running, now


def hold_if_asked(pace: Pace, phase: str, epoch: int, step: int, should_stop, job_id: int) -> None:
    """Wait where the test's pace holds training (see jobs/pace.py): until released, or, in the
    phases that obey a stop at every batch (training, validating), until `should_stop()`."""
    from cifar_core.train.phases import TRAINING, VALIDATING

    if not pace.holds_at(phase, epoch, step):
        return
    log.info("job %s: held at %s step %s of epoch %s", job_id, phase, step, epoch)
    obeys = phase in (TRAINING, VALIDATING)  # as the phase would: scoring, saving, measuring never stop
    while not (obeys and should_stop()) and not pace.released(phase, epoch, step):
        time.sleep(0.25)
