"""Background workers: separate OS processes that claim jobs from the queue and train them.

A worker is light: it never imports TensorFlow nor loads a data set. It trains each job it
claims in a child process of its own (`cifar_core/jobs/child.py` runs `train_job` there), so an
idle worker holds little memory and a crash inside TensorFlow takes down the child, not the
worker: the job goes back to the queue by the rule for a dead worker (`queue.expire`), counting
a crash unless it finished an epoch, and the worker goes on.

In the child, a heartbeat thread renews the lease, publishes batch progress and the phase
(training, validating, scoring...) about once a second, a running point of the training curve
every few seconds, and picks up cancel requests; the training thread itself only writes finished
epochs. The worker watches the store meanwhile: a cancel the child has not obeyed within
`CANCEL_GRACE_SECONDS` (it may be scoring the test set, or measuring latency) kills the child,
and the worker records the job cancelled after the epochs that were stored. SIGTERM/SIGINT are
passed to the child, which stops at the next batch and hands the job back to the queue.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cifar_core import config
from cifar_core.jobs import queue
from cifar_core.jobs import store
from cifar_core.jobs.pace import Pace, pace_from_env
from cifar_core.errors import LabError
from cifar_core.train.phases import MEASURING, TRAINING, VALIDATING, Phase

log = logging.getLogger("cifar_lab.worker")

HEARTBEAT_SECONDS = 1.0  # batch progress and lease renewal
POINT_SECONDS = 3.0  # a running point of the training curve at most this often
HEARTBEAT_BUSY_MS = 2_000  # a heartbeat waits this long for a locked store, then the next one tries
REAP_BEATS = 5  # a training worker returns expired leases to the queue every this many beats
RETRY_SECONDS = 0.5  # between tries of a store write that found the store locked or full
BACKUP_SECONDS = 600.0  # a worker backs the store up between jobs when the last backup is older
MIN_FREE_ENV = "CIFAR_LAB_MIN_FREE_MB"  # a job pauses before an epoch while less is free (default 200)
ALIVE_SECONDS = 15.0  # a worker not heard from for this long is taken for dead
WATCH_SECONDS = 0.5  # how often a worker looks at the store while its child trains
CANCEL_GRACE_SECONDS = 3.0  # a child that has not obeyed a cancel by then is killed (it obeys within a
# heartbeat and a batch while it trains or validates; not while it scores the test set or measures latency)
SHUTDOWN_GRACE_SECONDS = 20.0  # a child that has not handed its job back by then is killed
STOP_WORDS = {queue.STOP_CANCEL: "the cancel", queue.STOP_LOST: "losing its lease", queue.STOP_SHUTDOWN: "the shutdown"}
ROOT = Path(__file__).resolve().parents[2]  # the folder `python -m cifar_core` runs from


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str | None = None
    threads: int | None = None  # TensorFlow intra-op threads; default: cores / live workers
    lease_seconds: float = queue.DEFAULT_LEASE_SECONDS
    poll_seconds: float = 1.0  # idle wait between claims
    exit_when_idle: bool = False
    max_jobs: int | None = None
    min_free_bytes: int = field(default_factory=lambda: min_free_bytes())


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    pid: int
    host: str
    threads: int
    started_at: float
    heartbeat_at: float
    current_job: int | None
    alive: bool


def min_free_bytes() -> int:
    """The free space a job needs before each epoch (`$CIFAR_LAB_MIN_FREE_MB`, default 200 MB)."""
    raw = os.environ.get(MIN_FREE_ENV) or "200"
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not 0 <= mb <= 1e7:
        raise LabError(f"{MIN_FREE_ENV}={raw!r} is not a number of megabytes from 0 to 10000000; unset it for 200")
    return int(mb * 1e6)


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


class StoreReporter:
    """The training reporter of one job: epochs go straight to the store, progress and cancel
    checks through the heartbeat thread so each batch costs only an attribute write.

    Leases are the truth: every write names this attempt's lease, and training stops at the next
    batch once the lease could have lapsed (no renewal for `lease_seconds` minus a margin), even
    while the store is locked and the heartbeat cannot get through. Before each epoch it waits,
    with a note the Training page shows, while the run folder's disk has less than
    `min_free_bytes` free. A test's `pace` (jobs/pace.py) makes it publish in lockstep with
    training, or hold training at one place."""

    def __init__(self, job: queue.Job, worker_id: str, lease_seconds: float, shutdown: threading.Event,
                 workdir: Path, min_free_bytes: int = 0, pace: Pace | None = None):
        self.lease = job.lease
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.stop_reason: str | None = None
        self.workdir = workdir
        self.min_free_bytes = min_free_bytes
        self._shutdown = shutdown
        self._stop = threading.Event()
        self._done = threading.Event()
        self._batch = 0
        self._batches = 0
        self._note: str | None = None
        self._phase: Phase | None = None
        self._running: tuple = ()  # (epoch, batch, batches, loss, accuracy) of the latest batch
        self._pace = pace or Pace()
        self._wake = threading.Event()  # a beat at once, not at the next second
        self._served = threading.Condition()
        self._asked = self._answered = 0  # lockstep publications asked for and stored
        self._point_asked = False  # in lockstep, a running point only where asked for
        self._said_phase: tuple = ()  # (name, steps) of the last phase asked to be published in lockstep
        self._valid_until = time.monotonic() + self._usable(lease_seconds)
        self._conn = store.connect(busy_ms=HEARTBEAT_BUSY_MS)  # never blocked past the lease by a locked store
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.id}", daemon=True)

    @staticmethod
    def _usable(lease_seconds: float) -> float:
        """How long after a renewal training may go on: the lease, less a margin for the batch
        in flight and the clocks."""
        return lease_seconds - min(5.0, 0.25 * lease_seconds)

    def __enter__(self) -> "StoreReporter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._wake.set()
        self._thread.join()
        self._conn.close()

    def epoch_end(self, record: dict) -> bool:
        stored = _retry_while_locked(
            lambda: queue.record_epoch(self._conn, self.lease, record, socket.gethostname(), os.getpid()),
            until=self._valid_until,
        )
        if stored is None:  # the store stayed locked until the lease could have lapsed
            self._lapsed()
        elif not stored:  # another attempt holds the job now
            self._request_stop(queue.STOP_LOST)
        return bool(stored)

    def progress(self, epoch: int, batch: int, batches: int, *, loss: float | None = None,
                 accuracy: float | None = None) -> None:
        self._batch, self._batches = batch, batches
        self._running = (epoch, batch, batches, loss, accuracy)
        if batch == 0:
            self._wait_for_room()
        elif self._pace.point_due(batch, batches):
            self._point_asked = True
            self._publish_now()
        self._hold_if_asked(TRAINING, epoch + 1, batch)

    def phase(self, name: str, step: int = 0, steps: int = 0) -> None:
        current = self._phase
        since = current.since if current is not None and current.name == name else store.now()
        self._phase = Phase(name, step, steps, since)
        if self._pace.lockstep and (name, steps) != self._said_phase:
            self._said_phase = (name, steps)
            self._publish_now()
        if self._running:
            self._hold_if_asked(name, self._running[0] + 1, step)

    def _publish_now(self) -> None:
        """Wake the heartbeat and wait until it has stored what this thread set (lockstep pace)."""
        with self._served:
            self._asked += 1
            asked = self._asked
            self._wake.set()
            while self._answered < asked and not self._stop.is_set() and not self._done.is_set():
                self._served.wait(HEARTBEAT_SECONDS)

    def _hold_if_asked(self, phase: str, epoch: int, step: int) -> None:
        if self._pace.holds_at(phase, epoch, step):
            log.info("job %s: held at %s step %s of epoch %s", self.lease.job_id, phase, step, epoch)
            obeys = phase in (TRAINING, VALIDATING)  # as the phase would: scoring, saving, measuring never stop
            while not (obeys and self.should_stop()) and not self._pace.released(phase, epoch, step):
                time.sleep(HEARTBEAT_SECONDS / 4)

    def should_stop(self) -> bool:
        if not self._stop.is_set() and time.monotonic() > self._valid_until:
            self._lapsed()
        return self._stop.is_set()

    def _lapsed(self) -> None:
        log.warning("job %s: lease not renewed in time; stopping before another worker may take it", self.lease.job_id)
        self._request_stop(queue.STOP_LOST)

    def _wait_for_room(self) -> None:
        while not self.should_stop():
            free = shutil.disk_usage(self.workdir).free
            if free >= self.min_free_bytes:
                self._note = None
                return
            self._note = (f"paused: {free / 1e6:.0f} MB free on the disk of {self.workdir}, it needs "
                          f"{self.min_free_bytes / 1e6:.0f} MB; free some space and it goes on")
            self._stop.wait(HEARTBEAT_SECONDS)

    def _beat(self) -> None:
        conn = store.connect(busy_ms=HEARTBEAT_BUSY_MS)  # a locked store fails this beat; the next one retries
        beats = 0
        stored, stored_at = (), -POINT_SECONDS  # the last running point kept, and when (monotonic)
        shown = None  # the phase name last published, logged when it changes
        self._wake.set()  # the first beat at once: the lease began at the claim, before this process started
        try:
            while not self._done.is_set():
                self._wake.wait(HEARTBEAT_SECONDS)
                self._wake.clear()
                if self._done.is_set():
                    break
                beats += 1
                asked = time.monotonic()
                answering = self._asked  # read before what it publishes: that is then at least as new
                running, phase = self._running, self._phase
                due = self._point_asked if self._pace.lockstep else asked - stored_at >= POINT_SECONDS
                point = running_point(running, stored) if due else None
                try:
                    verdict = queue.heartbeat(conn, self.lease, self.lease_seconds, self._batch, self._batches, self._note,
                                              phase, point)
                    if point is not None:
                        stored, stored_at = running, asked
                    if self._pace.lockstep and due:
                        self._point_asked = False  # training waits for this answer: nothing newer was asked
                    if phase is not None and phase.name != shown:
                        shown = phase.name
                        log.info("job %s: %s (%s steps)", self.lease.job_id, phase.name, phase.steps)
                    self._answer(answering)
                    store.touch_worker(conn, self.worker_id, self.lease.job_id)
                    if beats % REAP_BEATS == 0:
                        queue.reap_expired(conn)
                except sqlite3.OperationalError as exc:
                    log.warning("job %s: heartbeat failed (%s); retrying", self.lease.job_id, exc)
                    continue
                if verdict == queue.KEEP_GOING:
                    self._valid_until = asked + self._usable(self.lease_seconds)
                    if self._shutdown.is_set():
                        self._request_stop(queue.STOP_SHUTDOWN)
                else:
                    self._request_stop(verdict)
        finally:
            conn.close()
            self._answer(self._asked)  # nobody waits for a heartbeat that has stopped

    def _answer(self, asked: int) -> None:
        with self._served:
            self._answered = max(self._answered, asked)
            self._served.notify_all()

    def _request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()
        self._answer(self._asked)


class Worker:
    def __init__(self, cfg: WorkerConfig):
        self.cfg = cfg
        self.id = cfg.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.shutdown = threading.Event()
        self.conn = store.connect()
        self.threads = cfg.threads or default_threads(self.conn)

    def run(self) -> int:
        """Claim and train jobs until idle (with exit_when_idle), max_jobs, or a signal. Returns jobs done."""
        self._register()
        done = 0
        self._housekeeping()
        try:
            while not self.shutdown.is_set() and (self.cfg.max_jobs is None or done < self.cfg.max_jobs):
                if self._store_is_newer():
                    break
                job = queue.claim(self.conn, self.id, self.cfg.lease_seconds)
                if job is None:
                    if self.cfg.exit_when_idle and not queue.counts(self.conn)[queue.RUNNING]:
                        break  # a running job may still be orphaned: stay to take it back when its lease expires
                    store.touch_worker(self.conn, self.id, None)
                    self.shutdown.wait(self.cfg.poll_seconds)
                    continue
                self.run_job(job)
                done += 1
                self._housekeeping()
        finally:
            store.stop_worker(self.conn, self.id)
        return done

    def _store_is_newer(self) -> bool:
        """True (with the error logged) once newer code has upgraded the store this worker uses:
        this worker's code could no longer run a job (its training process, a new connection,
        refuses the store), so it stops before claiming instead of failing every queued job."""
        found = store.schema_version(self.conn)
        if found <= store.SCHEMA_VERSION:
            return False
        log.error("the lab store now has schema version %s, newer than this worker's %s (CIFAR Lab was updated "
                  "while it ran); stopping without claiming. Restart the app or `make worker` to start the new "
                  "code's worker", found, store.SCHEMA_VERSION)
        return True

    def _housekeeping(self) -> None:
        """Return expired leases to the queue, and back the store up when the last backup is old."""
        queue.reap_expired(self.conn)
        age = store.newest_backup_age()
        if age is None or age > BACKUP_SECONDS:
            try:
                store.backup(self.conn)
            except (OSError, sqlite3.Error) as exc:  # a backup that cannot be written must not stop the work
                log.warning("could not back up the store: %s", exc)

    def run_job(self, job: queue.Job) -> None:
        """Train `job` in a child process and watch it until it exits; then settle what the child
        left open (a cancel it did not obey, a shutdown, a crash)."""
        from cifar_core.jobs import child

        log.info("job %s (%s) attempt %s: starting", job.id, job.name, job.attempts)
        store.touch_worker(self.conn, self.id, job.id)
        try:
            proc = subprocess.Popen(child.command(job.lease, self.cfg, self.threads), cwd=ROOT, stdin=subprocess.DEVNULL)
        except OSError as exc:  # e.g. no memory left to start it: the job goes back, counting a crash
            self._expire(job.lease, f"worker {self.id} could not start a training process ({exc})")
            return
        watch = store.connect(busy_ms=HEARTBEAT_BUSY_MS)  # a locked store delays a look, never the watch
        try:
            killed = self._watch(watch, proc, job.lease)
        finally:
            watch.close()
        self._settle(job.lease, killed, proc.returncode)

    def _watch(self, conn, proc: subprocess.Popen, lease: queue.Lease) -> str | None:
        """Wait for the child training `lease`'s job, renewing the lease and this worker's
        heartbeat. Kill the child once a cancel (or the loss of the lease) has gone unobeyed for
        CANCEL_GRACE_SECONDS, or a shutdown (passed on to it as SIGTERM) for
        SHUTDOWN_GRACE_SECONDS. Returns why it was killed (STOP_CANCEL, STOP_LOST or
        STOP_SHUTDOWN), or None when it exited by itself."""
        stop = shutdown = None  # (when it was seen, why)
        while True:
            try:
                proc.wait(timeout=WATCH_SECONDS)
                return None
            except subprocess.TimeoutExpired:
                pass
            if self.shutdown.is_set() and shutdown is None:
                shutdown = (time.monotonic(), queue.STOP_SHUTDOWN)
                proc.send_signal(signal.SIGTERM)
            verdict = self._renew(conn, lease)
            if stop is None and verdict in (queue.STOP_CANCEL, queue.STOP_LOST):
                stop = (time.monotonic(), verdict)
            for seen, grace in ((stop, CANCEL_GRACE_SECONDS), (shutdown, SHUTDOWN_GRACE_SECONDS)):
                if seen is not None and time.monotonic() - seen[0] > grace:
                    log.warning("job %s: its training process did not stop within %s s of %s; killing it",
                                lease.job_id, grace, STOP_WORDS[seen[1]])
                    proc.kill()
                    proc.wait()
                    return seen[1]

    def _renew(self, conn, lease: queue.Lease) -> str | None:
        """Renew the lease of the job the child trains (its own heartbeat starts only once it has
        started) and this worker's heartbeat; the verdict, or None while the store is locked."""
        try:
            verdict = queue.renew(conn, lease, self.cfg.lease_seconds)
            store.touch_worker(conn, self.id, lease.job_id)
        except sqlite3.OperationalError as exc:  # the next look tries again
            log.warning("job %s: could not renew its lease (%s); retrying", lease.job_id, exc)
            return None
        return verdict

    def _settle(self, lease: queue.Lease, killed: str | None, returncode: int) -> None:
        """After the child exited: a job it left running on this lease is recorded cancelled after
        its stored epochs (cancel), handed back (shutdown: the child may have died of the SIGTERM
        before it could hand it back itself), or returned to the queue by the rule for a dead
        worker (`queue.expire`: a crash unless the attempt finished an epoch)."""
        job = queue.get_job(self.conn, lease.job_id)
        if job.state != queue.RUNNING or job.lease != lease:
            return  # the child closed it, or another worker holds it now
        if job.cancel_requested:
            if finish(self.conn, lease, queue.CANCELLED, self.cfg.lease_seconds, error=cancelled_after(job.epoch)):
                log.info("job %s cancelled after epoch %s; its checkpoint stays for a retry", job.id, job.epoch)
        elif killed == queue.STOP_SHUTDOWN or self.shutdown.is_set():
            if queue.requeue(self.conn, lease, "worker shut down; resumes from its last finished epoch"):
                log.info("job %s handed back to the queue", job.id)
        else:
            how = (f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
                   if returncode else "stopped without closing the job")  # 0: e.g. its own renewals failed
            self._expire(lease, f"the training process of worker {self.id} {how}")

    def _expire(self, lease: queue.Lease, why: str) -> None:
        log.error("job %s: %s; it goes back to the queue", lease.job_id, why)
        _retry_while_locked(lambda: queue.expire(self.conn, lease, why), until=time.monotonic() + self.cfg.lease_seconds)

    def _register(self) -> None:
        store.register_worker(self.conn, self.id, os.getpid(), socket.gethostname(), self.threads)

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.shutdown.set())


def train_job(conn, job: queue.Job, cfg: WorkerConfig, shutdown: threading.Event) -> None:
    """Train `job` in this process (a worker's child) on the lease the worker claimed, measure
    the saved model's cost and close the job: succeeded, failed, cancelled, or handed back when
    `shutdown` is set. Writes nothing once the lease is lost."""
    from cifar_core.train import loop as training

    workdir = config.runs_dir() / str(job.id)
    lease = job.lease
    try:
        with StoreReporter(job, lease.worker_id, cfg.lease_seconds, shutdown, workdir, cfg.min_free_bytes,
                           pace_from_env()) as reporter:
            training.limit_threads(cfg.threads)  # before TensorFlow's first op
            outcome, cost = _train_job(job, workdir, reporter)
    except Exception as exc:  # a failing job must never take its worker down
        reason = _failure(exc, job.id, workdir)
        if reason.startswith("disk full"):
            _drop_partial_checkpoint(workdir)  # the half-written file took the space the store needs
        log.error("job %s failed: %s", job.id, reason, exc_info=not isinstance(exc, LabError))
        finish(conn, lease, queue.FAILED, cfg.lease_seconds, error=reason)
        return
    if outcome.status == training.COMPLETED:
        if finish(conn, lease, queue.SUCCEEDED, cfg.lease_seconds, results=_results(outcome, cost)):
            log.info("job %s succeeded: test accuracy %.4f", job.id, outcome.test_accuracy)
    elif reporter.stop_reason == queue.STOP_CANCEL:
        if finish(conn, lease, queue.CANCELLED, cfg.lease_seconds, error=cancelled_after(len(outcome.history))):
            log.info("job %s cancelled; its checkpoint stays for a retry", job.id)
    elif reporter.stop_reason == queue.STOP_SHUTDOWN:
        queue.requeue(conn, lease, "worker shut down; resumes from its last finished epoch")
        log.info("job %s handed back to the queue", job.id)
    else:
        log.warning("job %s: lease lost, another worker owns it now; nothing more is written", job.id)


def finish(conn, lease: queue.Lease, state: str, lease_seconds: float, **kw) -> bool:
    """Close the job if `lease` still holds it (retrying a locked or full store for the length
    of a lease). False, with a warning, when the lease was lost meanwhile."""
    done = _retry_while_locked(lambda: queue.finish(conn, lease, state, **kw), until=time.monotonic() + lease_seconds)
    if not done:
        log.warning("job %s: could not record it as %s: the lease was lost or the store stayed unwritable; "
                    "another worker owns it now, or it returns to the queue", lease.job_id, state)
    return bool(done)


def cancelled_after(epochs: int) -> str:
    """What a cancelled job says: how many of its epochs were stored (they stay, and so does
    their checkpoint, for a retry)."""
    return f"cancelled after epoch {epochs}"


def _retry_while_locked(write, until: float):
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


def _drop_partial_checkpoint(workdir: Path) -> None:
    """Remove checkpoint files the checkpoint pointer does not name (a write cut short)."""
    from cifar_core.train.checkpoint import read_checkpoint

    state = read_checkpoint(workdir)
    keep = {p.name for p in (state.weights, state.best_weights) if p is not None} if state else set()
    for path in (workdir / "backup").glob("*"):
        if path.suffix in (".h5", ".npz", ".tmp") and path.name not in keep:
            path.unlink(missing_ok=True)


def _failure(exc: BaseException, job_id: int, workdir: Path) -> str:
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


def _train_job(job: queue.Job, workdir: Path, reporter: StoreReporter):
    """Train the job, then measure what its saved model costs to run on this machine: returns
    the outcome and that cost (empty unless training completed)."""
    from cifar_core.train import loop as training
    from cifar_core.train.latency import measure_cost
    from cifar_core.data.sources import load_dataset
    from cifar_core.spec.validate import parse_spec

    ds = load_dataset(job.data_source)
    spec = parse_spec(job.spec, ds.input_shape, ds.num_classes)
    outcome = training.train(spec, ds, workdir, reporter)
    if outcome.status != training.COMPLETED:
        return outcome, {}
    reporter.phase(MEASURING)
    return outcome, measure_cost(outcome.files["model"], ds.input_shape, spec)


def _results(outcome, cost: dict) -> dict:
    return {
        **cost,  # model_bytes, latency figures, measured_load, measured_while_busy, macs (deploy.measure_cost)
        "params": outcome.params,
        "test_loss": outcome.test_loss,
        "test_accuracy": outcome.test_accuracy,
        "stopped_epoch": outcome.stopped_epoch,
        "stop_reason": outcome.stop_reason,
    }  # train_seconds: queue.finish adds this attempt's to the run's


def default_threads(conn) -> int:
    """Share the cores among the live workers (counting the one starting) so N workers do not
    oversubscribe the machine."""
    return max(1, (os.cpu_count() or 1) // (len([w for w in list_workers(conn) if w.alive]) + 1))


def list_workers(conn) -> list[WorkerInfo]:
    t = store.now()
    rows = store.worker_rows(conn)
    return [
        WorkerInfo(r["id"], r["pid"], r["host"], r["threads"], r["started_at"], r["heartbeat_at"], r["current_job"],
                   alive=t - r["heartbeat_at"] < ALIVE_SECONDS)
        for r in rows
    ]


def ensure_worker(extra_args: tuple[str, ...] = ()) -> int | None:
    """Start a background worker process if none is alive. Returns its pid, or None if one runs.
    With `$CIFAR_LAB_RAY` set (a Ray address), it is a Ray dispatcher instead of a local worker.

    The worker runs in its own session, so stopping or restarting the app never stops it."""
    import fcntl

    address = os.environ.get("CIFAR_LAB_RAY", "").strip()
    if address:
        extra_args = ("--ray", address, *extra_args)

    with open(config.lab_home() / "worker-spawn.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two app sessions starting at once start one worker
        conn = store.connect()
        try:
            if any(w.alive for w in list_workers(conn)):
                return None
        finally:
            conn.close()
        return spawn_worker(extra_args)


def spawn_worker(extra_args: tuple[str, ...] = ()) -> int:
    log_path = config.logs_dir() / "worker.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cifar_core", "worker", *extra_args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=ROOT,
            env=config.tf_env(),
        )
    # Wait for it to register so a second caller sees it alive.
    conn = store.connect()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if store.worker_registered(conn, proc.pid):
                break
            time.sleep(0.2)
    finally:
        conn.close()
    return proc.pid
