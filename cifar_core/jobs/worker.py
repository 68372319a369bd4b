"""Background workers: separate OS processes that claim jobs from the queue and train them.

A worker survives its jobs: an error in one job marks that job failed and the loop goes on.
While a job trains, a heartbeat thread renews the lease, publishes batch progress about once a
second and picks up cancel requests; the training thread itself only writes finished epochs.
SIGTERM/SIGINT stop the current job at the next batch and hand it back to the queue.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cifar_core import config
from cifar_core.jobs import queue
from cifar_core.jobs import store
from cifar_core.errors import LabError

log = logging.getLogger("cifar_lab.worker")

HEARTBEAT_SECONDS = 1.0  # batch progress and lease renewal
ALIVE_SECONDS = 15.0  # a worker not heard from for this long is taken for dead


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str | None = None
    threads: int | None = None  # TensorFlow intra-op threads; default: cores / live workers
    lease_seconds: float = queue.DEFAULT_LEASE_SECONDS
    poll_seconds: float = 1.0  # idle wait between claims
    exit_when_idle: bool = False
    max_jobs: int | None = None


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


class StoreReporter:
    """The training reporter of one job: epochs go straight to the store, progress and cancel
    checks through the heartbeat thread so each batch costs only an attribute write."""

    def __init__(self, job: queue.Job, worker_id: str, lease_seconds: float, shutdown: threading.Event):
        self.job = job
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.stop_reason: str | None = None
        self._shutdown = shutdown
        self._stop = threading.Event()
        self._done = threading.Event()
        self._batch = 0
        self._batches = 0
        self._conn = store.connect()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.id}", daemon=True)

    def __enter__(self) -> "StoreReporter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self._conn.close()

    def epoch_end(self, record: dict) -> None:
        queue.record_epoch(self._conn, self.job.id, record)

    def progress(self, epoch: int, batch: int, batches: int) -> None:
        self._batch, self._batches = batch, batches

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def _beat(self) -> None:
        conn = store.connect()
        try:
            while not self._done.wait(HEARTBEAT_SECONDS):
                verdict = queue.heartbeat(conn, self.job.id, self.worker_id, self.lease_seconds, self._batch, self._batches)
                store.touch_worker(conn, self.worker_id, self.job.id)
                if verdict != queue.KEEP_GOING:
                    self._request_stop(verdict)
                elif self._shutdown.is_set():
                    self._request_stop(queue.STOP_SHUTDOWN)
        finally:
            conn.close()

    def _request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()


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
        _limit_threads(self.threads)
        done = 0
        try:
            while not self.shutdown.is_set() and (self.cfg.max_jobs is None or done < self.cfg.max_jobs):
                job = queue.claim(self.conn, self.id, self.cfg.lease_seconds)
                if job is None:
                    if self.cfg.exit_when_idle:
                        break
                    store.touch_worker(self.conn, self.id, None)
                    self.shutdown.wait(self.cfg.poll_seconds)
                    continue
                self.run_job(job)
                done += 1
        finally:
            store.stop_worker(self.conn, self.id)
        return done

    def run_job(self, job: queue.Job) -> None:
        from cifar_core.train import loop as training
        from cifar_core.train.checkpoint import discard_checkpoint

        log.info("job %s (%s) attempt %s: starting", job.id, job.name, job.attempts)
        workdir = config.runs_dir() / str(job.id)
        store.touch_worker(self.conn, self.id, job.id)
        try:
            with StoreReporter(job, self.id, self.cfg.lease_seconds, self.shutdown) as reporter:
                outcome, cost = _train_job(job, workdir, reporter)
        except LabError as exc:
            log.error("job %s failed: %s", job.id, exc)
            queue.finish(self.conn, job.id, self.id, queue.FAILED, error=str(exc))
            return
        except Exception as exc:  # a failing job must never take its worker down
            log.exception("job %s failed", job.id)
            queue.finish(self.conn, job.id, self.id, queue.FAILED, error=f"{type(exc).__name__}: {exc}")
            return
        finally:
            _clear_keras()
        if outcome.status == training.COMPLETED:
            busy = queue.counts(self.conn)[queue.RUNNING] > 1
            queue.finish(self.conn, job.id, self.id, queue.SUCCEEDED, results=_results(outcome, cost, busy))
            log.info("job %s succeeded: test accuracy %.4f", job.id, outcome.test_accuracy)
        elif reporter.stop_reason == queue.STOP_CANCEL:
            discard_checkpoint(workdir)
            queue.finish(self.conn, job.id, self.id, queue.CANCELLED, error=f"cancelled after epoch {len(outcome.history)}",
                         results={"train_seconds": outcome.train_seconds})
            log.info("job %s cancelled", job.id)
        elif reporter.stop_reason == queue.STOP_SHUTDOWN:
            queue.requeue(self.conn, job.id, self.id, "worker shut down; resumes from its last finished epoch")
            log.info("job %s handed back to the queue", job.id)
        else:
            log.warning("job %s: lease lost, another worker owns it now", job.id)

    def _register(self) -> None:
        store.register_worker(self.conn, self.id, os.getpid(), socket.gethostname(), self.threads)

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.shutdown.set())


def _train_job(job: queue.Job, workdir: Path, reporter: StoreReporter):
    """Train the job, then measure what its saved model costs to run on this machine: returns
    the outcome and that cost (empty unless training completed)."""
    from cifar_core.train import loop as training
    from cifar_core.analysis.deploy import measure_cost
    from cifar_core.data.sources import load_dataset
    from cifar_core.spec.schema import parse_spec

    ds = load_dataset(job.data_source)
    spec = parse_spec(job.spec, ds.input_shape, ds.num_classes)
    outcome = training.train(spec, ds, workdir, reporter)
    if outcome.status != training.COMPLETED:
        return outcome, {}
    return outcome, measure_cost(outcome.files["model"], ds.input_shape)


def _results(outcome, cost: dict, busy: bool) -> dict:
    return {
        **cost,  # model_bytes, latency_p50_ms, latency_p95_ms, throughput_ips
        "measured_while_busy": int(busy),
        "params": outcome.params,
        "test_loss": outcome.test_loss,
        "test_accuracy": outcome.test_accuracy,
        "stopped_epoch": outcome.stopped_epoch,
        "stop_reason": outcome.stop_reason,
        "train_seconds": outcome.train_seconds,
    }


def _limit_threads(threads: int) -> None:
    """Must run before TensorFlow's first op, so each worker sets it at its start."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))


def _clear_keras() -> None:
    import keras

    keras.backend.clear_session()


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

    The worker runs in its own session, so stopping or restarting the app never stops it."""
    import fcntl

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
            start_new_session=True, cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")},
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
