"""The process that trains one job for a worker: `python -m cifar_core _train-job ...`.

A worker (jobs/worker.py) never imports TensorFlow: for each job it claims it starts this
process with the job's lease, and watches it. Here `train_job` starts renewing the lease (the
`StoreReporter`'s heartbeat thread), sets TensorFlow's threads before its first op (importing it
takes seconds, so only then), loads the data set, trains, measures and closes the attempt on
that lease by the one protocol the Ray dispatcher shares (jobs/attempt.py). SIGTERM/SIGINT hand
the job back to the queue at the next batch. The process dies with its worker (a worker killed
with SIGKILL leaves no training orphan behind to race the worker that takes its job back).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shutil
import signal
import socket
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cifar_core import config
from cifar_core.jobs import queue, store
from cifar_core.jobs.attempt import (HEARTBEAT_BUSY_MS, REAP_BEATS, Ending, PointClock, close_attempt, fail_attempt,
                                     hold_if_asked, next_phase, record_epoch, results_record, usable_seconds)
from cifar_core.jobs.pace import Pace, pace_from_env
from cifar_core.train.phases import MEASURING, TRAINING, Phase

COMMAND = "_train-job"  # hidden from the command line's help: only a worker starts it
PR_SET_PDEATHSIG = 1  # linux/prctl.h
HEARTBEAT_SECONDS = 1.0  # batch progress and lease renewal

log = logging.getLogger("cifar_lab.worker")


@dataclass(frozen=True)
class ChildConfig:
    """What a worker hands the process that trains one of its jobs."""

    lease_seconds: float
    threads: int  # TensorFlow intra-op threads
    min_free_bytes: int  # a job pauses before an epoch while its run folder's disk has less free


def command(lease: queue.Lease, cfg: ChildConfig) -> list[str]:
    """The command line of the process that trains the job `lease` holds, for this worker."""
    return [
        sys.executable, "-m", "cifar_core", COMMAND, str(lease.job_id), lease.worker_id, str(lease.attempt),
        "--lease-seconds", repr(cfg.lease_seconds), "--threads", str(cfg.threads),
        "--min-free-bytes", str(cfg.min_free_bytes), "--parent", str(os.getpid()),
    ]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m cifar_core {COMMAND}",
                                description="train one claimed job (started by a worker, not by hand)")
    p.add_argument("job_id", type=int)
    p.add_argument("worker_id")
    p.add_argument("attempt", type=int)
    p.add_argument("--lease-seconds", type=float, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--min-free-bytes", type=int, required=True)
    p.add_argument("--parent", type=int, required=True, help="the worker's pid: this process dies with it")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not _die_with(args.parent):
        log.error("job %s: worker %s (pid %s) is gone; not training", args.job_id, args.worker_id, args.parent)
        return 1
    shutdown = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: shutdown.set())
    lease = queue.Lease(args.job_id, args.worker_id, args.attempt)
    cfg = ChildConfig(lease_seconds=args.lease_seconds, threads=args.threads, min_free_bytes=args.min_free_bytes)
    conn = store.connect()
    try:
        job = queue.get_job(conn, lease.job_id)
        if job.state != queue.RUNNING or job.lease != lease:
            log.warning("job %s: attempt %s is no longer %s's (the job is %s); nothing to train",
                        lease.job_id, lease.attempt, lease.worker_id, job.state)
            return 0
        train_job(conn, job, cfg, shutdown)
    finally:
        conn.close()
    return 0


def _die_with(parent: int) -> bool:
    """Ask Linux to SIGKILL this process when `parent` dies; False if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent  # checked after the request: a parent that died before it is seen here


def train_job(conn, job: queue.Job, cfg: ChildConfig, shutdown: threading.Event) -> None:
    """Train `job` in this process on the lease its worker claimed, measure the saved model's
    cost and close the attempt (jobs/attempt.py). Writes nothing once the lease is lost."""
    from cifar_core.train import loop as training

    workdir = config.runs_dir() / str(job.id)
    lease = job.lease
    try:
        with StoreReporter(job, lease.worker_id, cfg.lease_seconds, shutdown, workdir, cfg.min_free_bytes,
                           pace_from_env()) as reporter:
            training.limit_threads(cfg.threads)  # before TensorFlow's first op
            outcome, cost = _train_job(job, workdir, reporter)
    except Exception as exc:  # a failing job must never take its worker down
        if fail_attempt(conn, lease, exc, workdir, cfg.lease_seconds).startswith("disk full"):
            _drop_partial_checkpoint(workdir)  # the half-written file took the space the store needs
        return
    completed = outcome.status == training.COMPLETED
    results = results_record(cost, params=outcome.params, test_loss=outcome.test_loss,
                             test_accuracy=outcome.test_accuracy, stopped_epoch=outcome.stopped_epoch,
                             stop_reason=outcome.stop_reason) if completed else None
    close_attempt(conn, lease, Ending(completed=completed, stop_reason=reporter.stop_reason, results=results),
                  cfg.lease_seconds, workdir=workdir)


def _train_job(job: queue.Job, workdir: Path, reporter: "StoreReporter"):
    """Train the job, then measure what its saved model costs to run on this machine: returns
    the outcome and that cost (empty unless training completed)."""
    from cifar_core.data.sources import load_dataset
    from cifar_core.spec.validate import parse_spec
    from cifar_core.train import loop as training
    from cifar_core.train.latency import measure_cost

    ds = load_dataset(job.data_source)
    spec = parse_spec(job.spec, ds.input_shape, ds.num_classes)
    outcome = training.train(spec, ds, workdir, reporter)
    if outcome.status != training.COMPLETED:
        return outcome, {}
    reporter.phase(MEASURING)
    return outcome, measure_cost(outcome.files["model"], ds.input_shape, spec)


def _drop_partial_checkpoint(workdir: Path) -> None:
    """Remove checkpoint files the checkpoint pointer does not name (a write cut short)."""
    from cifar_core.train.checkpoint import read_checkpoint

    state = read_checkpoint(workdir)
    keep = {p.name for p in (state.weights, state.best_weights) if p is not None} if state else set()
    for path in (workdir / "backup").glob("*"):
        if path.suffix in (".h5", ".npz", ".tmp") and path.name not in keep:
            path.unlink(missing_ok=True)


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
        self._valid_until = time.monotonic() + usable_seconds(lease_seconds)
        self._conn = store.connect(busy_ms=HEARTBEAT_BUSY_MS)  # never blocked past the lease by a locked store
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.id}", daemon=True)

    def __enter__(self) -> "StoreReporter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._wake.set()
        self._thread.join()
        self._conn.close()

    def epoch_end(self, record: dict) -> bool:
        """Store the epoch and take its sweep's stop decision (jobs/attempt.record_epoch): a pruned
        or paused trial keeps this epoch and its checkpoint and stops at the next batch."""
        verdict = record_epoch(self._conn, self.lease, record, socket.gethostname(), os.getpid(), self._valid_until)
        if verdict is None:  # the store stayed locked until the lease could have lapsed
            self._lapsed()
        elif verdict != queue.KEEP_GOING:  # another attempt holds the job now, or the pruner stopped it
            self._request_stop(verdict)
        return verdict not in (None, queue.STOP_LOST)

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
        self._phase = next_phase(self._phase, name, step, steps)
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
        hold_if_asked(self._pace, phase, epoch, step, self.should_stop, self.lease.job_id)

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
        points = PointClock(self._pace)
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
                due = self._point_asked
                point = points.point(running, asked, due)
                try:
                    verdict = queue.heartbeat(conn, self.lease, self.lease_seconds, self._batch, self._batches, self._note,
                                              phase, point, node=socket.gethostname(), pid=os.getpid())
                    if point is not None:
                        points.kept(running, asked)
                    if due:
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
                    self._valid_until = asked + usable_seconds(self.lease_seconds)
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
