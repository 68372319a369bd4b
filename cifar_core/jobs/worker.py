"""Background workers: separate OS processes that claim jobs from the queue and train them.

A worker is light: it never imports TensorFlow nor loads a data set. It trains each job it
claims in a child process of its own (`cifar_core/jobs/child.py`), so an idle worker holds little
memory and a crash inside TensorFlow takes down the child, not the worker: the job goes back to
the queue by the rule for a dead worker (`queue.expire`), counting a crash unless it finished an
epoch, and the worker goes on. How an attempt ends is decided by jobs/attempt.py, the protocol
the Ray dispatcher shares.

In the child, a heartbeat thread renews the lease, publishes batch progress and the phase
(training, validating, scoring...) about once a second, a running point of the training curve
every few seconds, and picks up cancel requests; the training thread itself only writes finished
epochs. The worker watches the store meanwhile: a cancel the child has not obeyed within
`CANCEL_GRACE_SECONDS` (it may be scoring the test set, or measuring latency) kills the child,
and the worker records the job cancelled after the epochs that were stored. SIGTERM/SIGINT are
passed to the child, which stops at the next batch and hands the job back to the queue.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cifar_core.jobs import child, queue
from cifar_core.jobs import store
from cifar_core.errors import LabError
from cifar_core.jobs.attempt import HEARTBEAT_BUSY_MS, Ending, close_attempt, retry_while_locked

log = logging.getLogger("cifar_lab.worker")

BACKUP_SECONDS = 600.0  # a worker backs the store up between jobs when the last backup is older
MIN_FREE_ENV = "CIFAR_LAB_MIN_FREE_MB"  # a job pauses before an epoch while less is free (default 200)
ALIVE_SECONDS = 15.0  # a worker not heard from for this long is taken for dead
WATCH_SECONDS = 0.5  # how often a worker looks at the store while its child trains
CANCEL_GRACE_SECONDS = 3.0  # a child that has not obeyed a cancel by then is killed (it obeys within a
# heartbeat and a batch while it trains or validates; not while it scores the test set or measures latency)
SHUTDOWN_GRACE_SECONDS = 20.0  # a child that has not handed its job back by then is killed
STOP_WORDS = {queue.STOP_CANCEL: "the cancel", queue.STOP_LOST: "losing its lease", queue.STOP_SHUTDOWN: "the shutdown",
              queue.STOP_PRUNED: "its sweep's pruner", queue.STOP_PAUSED: "its sweep's pruner"}
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


class Worker:
    def __init__(self, cfg: WorkerConfig):
        self.cfg = cfg
        self.id = cfg.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.shutdown = threading.Event()
        self.conn = store.connect()
        self.threads = cfg.threads or default_threads(self.conn)

    def run(self) -> int:
        """Claim and train jobs until idle (with exit_when_idle), max_jobs, or a signal. Returns jobs
        done. A store that is locked or full (SQLITE_FULL) pauses the worker until it is writable
        again, as a low disk pauses a job before its epoch: it never ends the worker."""
        self._register()
        done = 0
        try:
            while not self.shutdown.is_set() and (self.cfg.max_jobs is None or done < self.cfg.max_jobs):
                try:
                    step = self._step()
                except sqlite3.OperationalError as exc:
                    log.warning("the store is not writable (%s); waiting for it", exc)
                    self.shutdown.wait(self.cfg.poll_seconds)
                    continue
                if step is None:
                    break
                done += step
        finally:
            retry_while_locked(lambda: store.stop_worker(self.conn, self.id), time.monotonic() + self.cfg.lease_seconds)
        return done

    def _step(self) -> int | None:
        """Housekeeping, then claim and train one job: 1 when it trained one, 0 when idle, None when
        the worker is done."""
        self._housekeeping()
        if self._store_is_newer():
            return None
        job = queue.claim(self.conn, self.id, self.cfg.lease_seconds)
        if job is None:
            if self.cfg.exit_when_idle and not queue.counts(self.conn)[queue.RUNNING]:
                return None  # a running job may still be orphaned: stay to take it back when its lease expires
            store.touch_worker(self.conn, self.id, None)
            self.shutdown.wait(self.cfg.poll_seconds)
            return 0
        self.run_job(job)
        return 1

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
        log.info("job %s (%s) attempt %s: starting", job.id, job.name, job.attempts)
        store.touch_worker(self.conn, self.id, job.id)
        try:
            cfg = child.ChildConfig(self.cfg.lease_seconds, self.threads, self.cfg.min_free_bytes)
            proc = subprocess.Popen(child.command(job.lease, cfg), cwd=ROOT, stdin=subprocess.DEVNULL)
        except OSError as exc:  # e.g. no memory left to start it: the job goes back, counting a crash
            self._close(job.lease, Ending(died=f"worker {self.id} could not start a training process ({exc})"))
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
            if stop is None and verdict in (queue.STOP_CANCEL, queue.STOP_LOST, queue.STOP_PRUNED, queue.STOP_PAUSED):
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
        """After the child exited: close what it left open on this lease by the attempt protocol
        (jobs/attempt.py): a cancel it did not obey ends the job cancelled after its stored
        epochs, a shutdown hands it back (the child may have died of the SIGTERM before it could
        hand it back itself), anything else is a dead training process (a crash unless the
        attempt finished an epoch). Nothing, when the child closed it or lost it."""
        how = (f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
               if returncode else "stopped without closing the job")  # 0: e.g. its own renewals failed
        stop = queue.STOP_SHUTDOWN if killed == queue.STOP_SHUTDOWN or self.shutdown.is_set() else killed
        self._close(lease, Ending(stop_reason=stop, died=f"the training process of worker {self.id} {how}"))

    def _close(self, lease: queue.Lease, ending: Ending) -> None:
        close_attempt(self.conn, lease, ending, self.cfg.lease_seconds)

    def _register(self) -> None:
        store.register_worker(self.conn, self.id, os.getpid(), socket.gethostname(), self.threads)

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.shutdown.set())


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
