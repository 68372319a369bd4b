"""The Ray dispatcher: the same queue, the same lease protocol, the jobs trained on a Ray cluster.

`python -m cifar_core worker --ray ADDRESS` runs a `Dispatcher` on the dashboard's machine (which
must be a node of the cluster: the head, or one that joined with `ray start --address=...`). It
claims jobs from the SQLite queue like a local worker and runs each on a warm `Trainer` actor (a
Ray process per job slot, kept and reused job after job, TensorFlow loaded once) calling the same
store-free `train(...)`, keeping as many in flight as the cluster's free resources hold (each
asks for `$CIFAR_LAB_JOB_CPUS` CPUs, default 2, and `$CIFAR_LAB_JOB_GPUS` GPUs, default 0). How
each attempt ends is decided by jobs/attempt.py, the protocol the local worker shares. The store
stays on the dashboard's machine and only the dispatcher writes it:

- **Live metrics.** Each task reports to the dispatcher's `Hub` actor (pinned to the dispatcher's
  node): finished epochs as they end, batch progress, the phase and the running loss and
  accuracy about once a second. The dispatcher drains the hub and writes them to the store with
  the job's lease; a heartbeat thread renews the leases of every job in flight, publishes the
  progress and phase (and a running curve point every few seconds) and reads cancel requests.
- **Data.** The dispatcher loads each data source once and `ray.put`s it; tasks read it from the
  object store, so no node needs the data files.
- **Checkpoints.** A job trains in a temporary folder on its node; each finished epoch goes to
  the hub together with its checkpoint files, and the dispatcher stores the epoch, then writes
  the checkpoint atomically into the run folder. A job, first thing, takes the checkpoint the
  dispatcher seeded from the run folder when it claimed it. Ray retries nothing: when a Trainer
  or its node dies, the attempt ends as a dead local training process's does (a crash unless it
  finished an epoch) and the next claim resumes from the last stored epoch on any node: every
  epoch once, none lost. The final model, predictions and history come back with the result;
  the deployment cost is measured on this machine, in a short-lived child
  process (`python -m cifar_core _measure-cost`).
- **Memory.** TensorFlow never loads into the dispatcher (loading the data, moving checkpoints and
  measuring keep it out), so it holds about 150 MB, idle or between jobs.
- **Cancel** asks the job through the hub (it stops at the next batch), and after
  `CANCEL_GRACE` seconds its Trainer is killed (and replaced when next needed). A dispatcher
  that dies takes its Trainers with it (Ray kills the actors a dead driver owned), and a job that
  cannot reach the hub stops by itself. Its leases lapse and the jobs go back to the queue.
  Trainers idle for IDLE_SECONDS give their CPUs back to the cluster.

Ray's token authentication stays on: nothing here turns it off. The dispatcher reads the cluster's
token where Ray looks for it (`~/.ray/auth_token`, `$RAY_AUTH_TOKEN_PATH` or `$RAY_AUTH_TOKEN`, with
`RAY_AUTH_MODE=token`; see the README, "On a cluster").
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cifar_core import config
from cifar_core.errors import LabError
from cifar_core.jobs import launcher, queue, store
from cifar_core.jobs.attempt import (HEARTBEAT_BUSY_MS, REAP_BEATS, Ending, PointClock, close_attempt, fail_attempt,
                                     hold_if_asked, next_phase, record_epoch, results_record, retry_while_locked,
                                     usable_seconds)
from cifar_core.jobs.pace import PACE_ENV, pace_from_env
from cifar_core.train.phases import MEASURING, TRAINING, WAITING, Phase

log = logging.getLogger("cifar_lab.ray")

JOB_CPUS_ENV = "CIFAR_LAB_JOB_CPUS"  # CPUs each job asks of the cluster (default 2)
JOB_GPUS_ENV = "CIFAR_LAB_JOB_GPUS"  # GPUs each job asks of the cluster (default 0)
HEARTBEAT_SECONDS = 0.5  # lease renewal and cancel checks, dispatcher side; progress and stop checks, task side
POLL_SECONDS = 0.25  # between passes of the dispatcher's loop
CANCEL_GRACE = 2.0  # seconds a task has to stop by itself before it is killed (cancel within 5 s in all)
KILL_GRACE = 5.0  # seconds a killed Trainer's call has to end before it counts as ended anyway
HUB_TIMEOUT = 20.0  # a task that cannot reach its hub for this long stops: its dispatcher is gone
CLUSTER_SECONDS = 2.0  # between records of the cluster's state in the store
JOIN_CHECK_SECONDS = 5.0  # a cluster's address must answer within this
ROOM_SECONDS = 1.0  # the cluster's free resources are read at most this often
IDLE_SECONDS = 300.0  # a warm Trainer left without a job this long gives its CPUs back
WAIT_SECONDS = 10.0  # a job waiting this long for a node has the idle Trainers give their CPUs back
STOP_HUB_GONE = "hub-gone"
DECIDED = (queue.STOP_LOST, queue.STOP_PRUNED, queue.STOP_PAUSED)  # an attempt stopped so stores no more epochs


def job_resources() -> tuple[float, float]:
    """(CPUs, GPUs) each job asks of the cluster, from the environment."""
    out = []
    for name, default in ((JOB_CPUS_ENV, "2"), (JOB_GPUS_ENV, "0")):
        raw = os.environ.get(name) or default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 1024 or (name == JOB_CPUS_ENV and value == 0):
            raise LabError(f"{name}={raw!r} is not a usable count (CPUs 0 < n <= 1024, GPUs 0..1024); unset it for {default}")
        out.append(value)
    return out[0], out[1]


def node_label(node_id: str, host: str) -> str:
    """How a node is named in the store and on the Training page: its host and the start of its id."""
    return f"{host}/{node_id[:8]}"


# --------------------------------------------------------------------------- the hub (an actor)


class Hub:
    """The dispatcher's mailbox on the cluster, one per dispatcher, on the dispatcher's node (so
    it dies with it). Tasks post epochs and checkpoints and beat with their progress; the
    dispatcher drains them, asks tasks to stop, and seeds checkpoints for jobs it resumes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inbox: list[dict] = []
        self._progress: dict[int, dict] = {}
        self._stop: dict[int, str] = {}
        self._checkpoints: dict[int, dict[str, bytes]] = {}

    def ping(self) -> bool:
        return True

    def seed(self, job_id: int, files: dict[str, bytes]) -> None:
        """The checkpoint an attempt resumes from, until its task takes it."""
        with self._lock:
            self._checkpoints[job_id] = files
            self._stop.pop(job_id, None)

    def checkpoint(self, job_id: int) -> dict[str, bytes]:
        with self._lock:
            return self._checkpoints.pop(job_id, {})

    def post(self, message: dict) -> None:
        """A finished epoch with its checkpoint, for the dispatcher."""
        with self._lock:
            self._inbox.append(message)

    def beat(self, job_id: int, progress: dict) -> str | None:
        """A task's progress; returns why it must stop, or None."""
        with self._lock:
            self._progress[job_id] = progress
            return self._stop.get(job_id)

    def stop(self, job_id: int, reason: str) -> None:
        with self._lock:
            self._stop[job_id] = reason

    def forget(self, job_id: int) -> None:
        with self._lock:
            for d in (self._progress, self._stop, self._checkpoints):
                d.pop(job_id, None)

    def take(self) -> tuple[list[dict], dict[int, dict]]:
        """Everything posted since the last take, and each task's latest progress."""
        with self._lock:
            inbox, self._inbox = self._inbox, []
            return inbox, dict(self._progress)


# --------------------------------------------------------------------------- the task (on a node)


class HubReporter:
    """The `Reporter` of a task: each finished epoch goes to the hub together with its checkpoint
    (in order, before training goes on), so the dispatcher stores an epoch only with the files
    that resume from it; progress and the stop question go through a beat thread."""

    def __init__(self, hub, job_id: int, attempt: int, workdir: Path) -> None:
        import ray

        self.hub, self.job_id, self.attempt, self.workdir = hub, job_id, attempt, workdir
        ctx = ray.get_runtime_context()
        self.node = node_label(ctx.get_node_id(), socket.gethostname())
        self.pid = os.getpid()
        self.stop_reason: str | None = None
        self._batch = self._batches = self._epoch = 0
        self._phase: Phase | None = None
        self._running: tuple = ()  # (epoch, batch, batches, loss, accuracy) of the latest batch
        self._record: dict | None = None  # the finished epoch waiting for its checkpoint
        self._pace = pace_from_env()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"beat-{job_id}", daemon=True)

    def __enter__(self) -> "HubReporter":
        self._send("beat", self.job_id, self._progress())  # fails early if the hub is gone
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _progress(self) -> dict:
        return {"attempt": self.attempt, "epoch": self._epoch, "batch": self._batch, "batches": self._batches,
                "node": self.node, "pid": self.pid, "phase": self._phase, "running": self._running}

    def _send(self, method: str, *args):
        import ray

        return ray.get(getattr(self.hub, method).remote(*args), timeout=HUB_TIMEOUT)

    def _post(self, message: dict) -> bool:
        try:
            self._send("post", {"job": self.job_id, "attempt": self.attempt, "node": self.node, "pid": self.pid, **message})
            return True
        except _unreachable() as exc:  # the hub (its dispatcher) is gone: nobody would record what this trains
            log.warning("job %s: cannot reach the dispatcher (%s); stopping", self.job_id, exc)
            self._request_stop(STOP_HUB_GONE)
            return False

    def epoch_end(self, record: dict) -> bool:
        """Kept until its checkpoint is written; False once the task has been told to stop (the
        run then stops without checkpointing it)."""
        self._record = record
        return self.stop_reason is None

    def checkpoint_saved(self, epoch: int) -> None:
        from cifar_core.train.checkpoint import checkpoint_files

        record, self._record = self._record, None
        self._post({"kind": "epoch", "epoch": epoch, "record": record, "files": checkpoint_files(self.workdir)})

    def progress(self, epoch: int, batch: int, batches: int, *, loss: float | None = None,
                 accuracy: float | None = None) -> None:
        self._epoch, self._batch, self._batches = epoch, batch, batches
        self._running = (epoch, batch, batches, loss, accuracy)
        hold_if_asked(self._pace, TRAINING, epoch + 1, batch, self.should_stop, self.job_id)

    def phase(self, name: str, step: int = 0, steps: int = 0) -> None:
        self._phase = next_phase(self._phase, name, step, steps)
        if self._running:
            hold_if_asked(self._pace, name, self._running[0] + 1, step, self.should_stop, self.job_id)

    def should_stop(self) -> bool:
        return self.stop_reason is not None

    def _request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def _beat(self) -> None:
        while not self._done.wait(HEARTBEAT_SECONDS):
            try:
                reason = self._send("beat", self.job_id, self._progress())
            except _unreachable() as exc:
                log.warning("job %s: cannot reach the dispatcher (%s); stopping", self.job_id, exc)
                reason = STOP_HUB_GONE
            if reason:
                self._request_stop(reason)


class Trainer:
    """A warm training process on a node: one per job slot, reused job after job (TensorFlow
    imported and its threads set once, at its start; the data read from the object store), so a
    job on a node where the lab has run before starts training within seconds of its claim. A
    killed one is not restarted by Ray: the dispatcher starts another when it next needs one."""

    def __init__(self, threads: int) -> None:
        from cifar_core.train import loop as training

        training.limit_threads(threads)  # before TensorFlow's first op
        import keras  # noqa: F401  (warm: imported before the first job, not during it)

    def pid(self) -> int:
        return os.getpid()

    def train(self, job_id: int, attempt: int, spec_doc: dict, ds, hub) -> dict:
        import keras

        try:
            return train_task(job_id, attempt, spec_doc, ds, hub)
        finally:
            keras.backend.clear_session()  # the next job starts from a clean graph


def train_task(job_id: int, attempt: int, spec_doc: dict, ds, hub) -> dict:
    """The body of one job on a node: take the checkpoint the dispatcher seeded, train in a
    temporary folder, report through the hub, and return the outcome with the final files."""
    from cifar_core.spec.validate import parse_spec
    from cifar_core.train import loop as training
    from cifar_core.train.checkpoint import write_checkpoint_files

    workdir = Path(tempfile.mkdtemp(prefix=f"cifar-lab-job{job_id}-"))
    try:
        reporter = HubReporter(hub, job_id, attempt, workdir)
        import ray

        files = ray.get(hub.checkpoint.remote(job_id), timeout=HUB_TIMEOUT)
        if files:
            write_checkpoint_files(workdir, files)
        with reporter:
            spec = parse_spec(spec_doc, ds.input_shape, ds.num_classes)
            outcome = training.train(spec, ds, workdir, reporter)
        result = {
            "status": outcome.status, "stop_reason": reporter.stop_reason, "history": outcome.history,
            "params": outcome.params, "train_seconds": outcome.train_seconds, "test_loss": outcome.test_loss,
            "test_accuracy": outcome.test_accuracy, "stopped_epoch": outcome.stopped_epoch,
            "early_stop_reason": outcome.stop_reason, "node": reporter.node, "pid": reporter.pid, "files": {},
        }
        if outcome.status == training.COMPLETED:
            result["files"] = {Path(p).name: Path(p).read_bytes() for p in outcome.files.values()}
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- the dispatcher


@dataclass
class InFlight:
    job: queue.Job
    ref: object  # the ObjectRef of its Trainer's `train` call
    trainer: object  # the Trainer actor training it
    workdir: Path  # the run folder on this machine
    valid_until: float  # monotonic: past it, the lease may have lapsed
    progress: dict = field(default_factory=dict)
    stop_reason: str | None = None  # why this dispatcher stops it
    stop_sent_at: float | None = None
    force_cancelled: bool = False
    killed_at: float | None = None  # monotonic: when its Trainer was killed
    closing: bool = False  # its task ended; the closer thread is storing its outcome
    epochs: int = 0  # epochs stored by this attempt
    points: PointClock = field(default_factory=PointClock)  # when its running points are stored
    claimed_at: float = field(default_factory=store.now)


@dataclass(frozen=True)
class DispatcherConfig:
    address: str  # host:port, auto, or local
    worker_id: str | None = None
    lease_seconds: float = queue.DEFAULT_LEASE_SECONDS
    exit_when_idle: bool = False
    max_jobs: int | None = None


def connect(address: str) -> str:
    """Join the Ray cluster at `address` (`local` starts a private one on this machine, `auto`
    joins the one this machine runs), shipping the lab's code to the nodes with the tasks.
    Returns the address joined (`auto` resolved to HOST:PORT)."""
    if address == "local":
        _private_token()  # before Ray is imported: its core reads the token once, when it loads
    import ray

    if ray.is_initialized():
        return address
    package = Path(__file__).resolve().parents[1]
    env = config.tf_env()
    shipped = [*config.TF_ENV_DEFAULTS, *([PACE_ENV] if os.environ.get(PACE_ENV) else [])]  # the pace: tests only
    runtime_env = {"py_modules": [str(package)], "env_vars": {k: env[k] for k in shipped},
                   "excludes": ["__pycache__", "*.pyc"]}
    kw = dict(namespace="cifar_lab", runtime_env=runtime_env, logging_level=logging.WARNING)
    joined = address
    try:
        if address == "auto":
            joined = _this_machines_cluster()
            log.info("--ray auto: joining the Ray cluster at %s (%s)", joined,
                     "$RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "the one a `ray start` on this machine runs")
        _reachable(joined)  # Ray itself waits minutes on an address where nothing listens
        if address == "local":  # always a new private instance, whatever else runs on this machine
            ray.init(address="local", include_dashboard=False, **kw)
        else:
            ray.init(address=joined, **kw)
    except LabError as error:
        launcher.record_start_problem(address, str(error))
        raise
    except (ConnectionError, OSError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = LabError(
            f"cannot join the Ray cluster at {joined!r}{' (--ray auto)' if joined != address else ''}: {first}. "
            "Is `ray start --head` running there, is this machine a node of it (`ray start --address=...`), and "
            "does it have the cluster's token (~/.ray/auth_token, $RAY_AUTH_TOKEN_PATH or $RAY_AUTH_TOKEN) with "
            "RAY_AUTH_MODE=token set?"
        )
        launcher.record_start_problem(address, str(error))  # said once, on the Training page
        raise error from exc
    launcher.clear_start_problem()
    return joined


def _this_machines_cluster() -> str:
    """What `--ray auto` joins: $RAY_ADDRESS, else the one cluster whose node runs on this machine
    (`local_clusters`). Only a live node counts: an address a stopped cluster left behind (Ray's
    own `auto` trusts its "current cluster" file, and waits minutes on it) never does. Never starts a Ray."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    found = local_clusters()
    if len(found) == 1:
        return found[0]
    if found:
        raise LabError(f"--ray auto found {len(found)} Ray clusters on this machine ({', '.join(found)}): give the one "
                       "to join (`--ray HOST:PORT`, or $RAY_ADDRESS)")
    raise LabError(
        "--ray auto found no Ray cluster on this machine ($RAY_ADDRESS unset and no `ray start` running "
        "here): start one (`ray start --head`, README \"On a cluster\"), give its address (`--ray HOST:PORT`), "
        "or use `--ray local` for a private Ray on this machine alone"
    )


def local_clusters() -> list[str]:
    """The addresses (HOST:PORT) of the Ray clusters with a node on this machine: the
    `--gcs-address` its raylet runs with (read from /proc; Ray has no public call for it)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"/raylet"):
            found.update(a.split(b"=", 1)[1].decode() for a in args if a.startswith(b"--gcs-address="))
    return sorted(found)


def _private_token() -> None:
    """A private Ray (`--ray local`) keeps token authentication on: with no token where Ray looks
    for one, it gets a fresh one in this process's environment (never written to a file)."""
    import secrets

    os.environ.setdefault("RAY_AUTH_MODE", "token")
    have = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not have and not (Path.home() / ".ray" / "auth_token").exists():
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def _reachable(address: str) -> None:
    """Raise ConnectionError when nothing answers at a HOST:PORT address within JOIN_CHECK_SECONDS
    (`local` and `auto` are not network addresses)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=JOIN_CHECK_SECONDS).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc.strerror or exc})") from exc


class Dispatcher:
    def __init__(self, cfg: DispatcherConfig):
        self.cfg = cfg
        self.address = cfg.address  # the address joined, once run() has joined it (`auto` resolved)
        self.job_cpus, self.job_gpus = job_resources()
        self.id = cfg.worker_id or f"{launcher.DISPATCHER_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.shutdown = threading.Event()
        self._beating = threading.Event()  # set once the heartbeat may stop: every job in flight is closed
        self._handles_signals = False
        self.conn = store.connect()
        self.inflight: dict[int, InFlight] = {}
        self._slots, self._slots_at = 0, float("-inf")  # new Trainers the free resources hold, and when read
        self._lock = threading.Lock()  # guards inflight between the loop and the heartbeat thread
        self._data: dict[str, object] = {}  # data source -> (ObjectRef of the Dataset, input shape)
        self._last_cluster = 0.0
        self._started = 0
        self.hub = None
        self._trainer_class = None  # the Trainer actor class, made once connected
        self._spare: list[tuple[object, float]] = []  # warm Trainers waiting for a job, and since when (monotonic)
        # Ended tasks are closed on their own thread (writing the files, measuring the model's
        # cost takes seconds), so the other jobs' epochs keep flowing meanwhile.
        self._closer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="closer")
        self._ended = 0

    # ---------------------------------------------------------------- the loop

    def run(self) -> int:
        """Dispatch until idle (with exit_when_idle), max_jobs, or a signal. Returns the jobs ended."""
        self.address = connect(self.cfg.address)  # first: it may set Ray's token before Ray is imported
        import ray

        if self._handles_signals:
            self.install_signal_handlers()
        here = ray.get_runtime_context().get_node_id()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.hub = ray.remote(Hub).options(
            num_cpus=0, max_concurrency=32, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        ).remote()
        ray.get(self.hub.ping.remote())
        store.register_worker(self.conn, self.id, os.getpid(), socket.gethostname(), int(self.job_cpus))
        log.info("dispatcher %s on Ray %s: %s CPU(s) and %s GPU(s) per job", self.id, self.address,
                 self.job_cpus, self.job_gpus)
        beat = threading.Thread(target=self._heartbeat, name="leases", daemon=True)
        beat.start()
        try:
            while True:
                try:
                    if self._pass():
                        break
                except sqlite3.OperationalError as exc:  # a locked or full store pauses dispatching, never ends it
                    log.warning("the store is not writable (%s); dispatching waits for it", exc)
                time.sleep(POLL_SECONDS)
        finally:
            self.shutdown.set()
            # Each step on its own: one that fails (a locked store) must not skip the others. The
            # leases are renewed until every job in flight has been closed.
            _step("stop the jobs in flight", self._stop_everything)
            _step("close the ended jobs", lambda: self._closer.shutdown(wait=True))
            self._beating.set()
            _step("stop the heartbeat", beat.join)
            _step("unregister", lambda: retry_while_locked(lambda: store.stop_worker(self.conn, self.id),
                                                           time.monotonic() + self.cfg.lease_seconds))
            _step("clear the cluster's state", lambda: retry_while_locked(lambda: store.put_cluster(self.conn, None),
                                                                         time.monotonic() + self.cfg.lease_seconds))
            _step("leave Ray", ray.shutdown)
            _step("close the store", self.conn.close)
        return self._ended

    def _pass(self) -> bool:
        """One pass of the loop; True when the dispatcher is done."""
        self._drain()
        self._collect()
        self._send_stops()
        self._retire_idle()
        self._record_cluster()
        if self.shutdown.is_set():
            return not self.inflight
        if self.cfg.max_jobs is None or self._started < self.cfg.max_jobs:
            self._fill()
        return not self.inflight and self._idle()

    def _idle(self) -> bool:
        if self.cfg.max_jobs is not None and self._started >= self.cfg.max_jobs:
            return True
        if not self.cfg.exit_when_idle:
            return False
        counts = queue.counts(self.conn)
        return not counts[queue.QUEUED] and not counts[queue.RUNNING]

    def _room(self) -> int:
        """How many more jobs may start now: an idle Trainer each, and as many as the cluster's free
        CPUs (and GPUs) hold, read from Ray at most every ROOM_SECONDS (so other work on a shared
        cluster keeps its share, and Ray is not asked four times a second) and counted down as
        new Trainers are asked for in between."""
        import ray

        t = time.monotonic()
        if t - self._slots_at >= ROOM_SECONDS:
            free = ray.available_resources()
            slots = int(free.get("CPU", 0) // self.job_cpus)
            if self.job_gpus:
                slots = min(slots, int(free.get("GPU", 0) // self.job_gpus))
            self._slots, self._slots_at = slots, t
        with self._lock:
            return len(self._spare) + self._slots

    def _fill(self) -> None:
        while self._room() > 0 and (self.cfg.max_jobs is None or self._started < self.cfg.max_jobs):
            job = queue.claim(self.conn, self.id, self.cfg.lease_seconds)
            if job is None:
                queue.reap_expired(self.conn)
                return
            self._started += 1
            try:
                self._submit(job)
            except Exception as exc:  # a job that cannot start must not take the dispatcher down
                fail_attempt(self.conn, job.lease, exc, config.runs_dir() / str(job.id), self.cfg.lease_seconds)

    def _dataset(self, source: str):
        import ray

        if source not in self._data:
            from cifar_core.data.sources import load_dataset

            ds = load_dataset(source)
            self._data[source] = (ray.put(ds), ds.input_shape, ds.num_classes)
        return self._data[source]

    def _trainer(self):
        """A warm Trainer for the next job: an idle one, else a new one (where Ray finds room)."""
        import ray

        with self._lock:
            if self._spare:
                return self._spare.pop()[0]
            self._slots -= 1
        if self._trainer_class is None:
            self._trainer_class = ray.remote(max_restarts=0, max_task_retries=0)(Trainer)
        return self._trainer_class.options(num_cpus=self.job_cpus, num_gpus=self.job_gpus).remote(
            max(1, int(self.job_cpus)))

    def _release(self, trainer) -> None:
        """A Trainer whose job ended normally waits, warm, for the next one."""
        with self._lock:
            self._spare.append((trainer, time.monotonic()))

    def _retire_idle(self) -> None:
        """Trainers idle for IDLE_SECONDS give their CPUs back to the cluster, and all of them do at
        once while a job has waited WAIT_SECONDS for a node (a Trainer asked for before an idle one
        came free, or on a node that was lost, may need those very CPUs)."""
        import ray

        t = time.monotonic()
        now = store.now()
        with self._lock:
            blocked = any(not f.progress and not f.closing and now - f.claimed_at > WAIT_SECONDS
                          for f in self.inflight.values())
            old = [a for a, since in self._spare if blocked or t - since > IDLE_SECONDS]
            self._spare = [(a, since) for a, since in self._spare if not blocked and t - since <= IDLE_SECONDS]
        for actor in old:
            _step("retire an idle trainer", lambda: ray.kill(actor, no_restart=True))

    def _submit(self, job: queue.Job) -> None:
        import ray

        from cifar_core.spec.validate import parse_spec
        from cifar_core.train.checkpoint import checkpoint_files

        ds_ref, shape, classes = self._dataset(job.data_source)
        parse_spec(job.spec, shape, classes)  # a spec that cannot train fails here, not on a node
        workdir = config.runs_dir() / str(job.id)
        ray.get(self.hub.seed.remote(job.id, checkpoint_files(workdir)))
        # Loading a data source the first time takes seconds (longer than a short lease on a busy
        # machine), and the heartbeat renews only the jobs in flight: renew before it counts.
        verdict = queue.renew(self.conn, job.lease, self.cfg.lease_seconds)
        if verdict != queue.KEEP_GOING:  # lost meanwhile (nothing to write), or cancelled before it started
            close_attempt(self.conn, job.lease, Ending(stop_reason=verdict), self.cfg.lease_seconds, who="dispatcher")
            return
        trainer = self._trainer()
        ref = trainer.train.remote(job.id, job.attempts, job.spec, ds_ref, self.hub)
        with self._lock:
            self.inflight[job.id] = InFlight(job, ref, trainer, workdir,
                                             time.monotonic() + usable_seconds(self.cfg.lease_seconds))
        store.touch_worker(self.conn, self.id, job.id)
        log.info("job %s (%s) attempt %s: sent to the cluster", job.id, job.name, job.attempts)

    def _drain(self) -> None:
        """Store what the tasks posted: each finished epoch with its lease, then its checkpoint into
        the run folder (the order a local worker keeps; both came in one message, so a lost node
        never leaves an epoch without its checkpoint)."""
        import ray

        inbox, progress = ray.get(self.hub.take.remote())
        for message in inbox:
            f = self.inflight.get(message["job"])
            if f is None or message["attempt"] != f.job.attempts or f.stop_reason in DECIDED:
                # From an attempt that is over, or one its sweep's pruner has stopped (a task
                # trains on while the stop travels to it; a local one stops at the epoch): refused.
                continue
            self._store_epoch(f, message)
        for job_id, p in progress.items():
            f = self.inflight.get(job_id)
            if f is not None and not f.closing and p.get("attempt") == f.job.attempts:
                f.progress = p

    def _store_epoch(self, f: InFlight, message: dict) -> None:
        from cifar_core.train.checkpoint import write_checkpoint_files

        until = time.monotonic() + self.cfg.lease_seconds
        verdict = record_epoch(self.conn, f.job.lease, message["record"], message["node"], message["pid"], until)
        if verdict in (None, queue.STOP_LOST):
            self._ask_stop(f, queue.STOP_LOST)
            return
        if verdict != queue.KEEP_GOING:  # its sweep's pruner stopped it: this epoch and its checkpoint stay
            self._ask_stop(f, verdict)
        f.epochs += 1
        try:  # the checkpoint and the history, each by an atomic rename
            write_checkpoint_files(f.workdir, message["files"])
        except OSError as exc:  # e.g. a full disk: the job fails saying so, as a local one does
            self._ask_stop(f, queue.STOP_LOST)
            fail_attempt(self.conn, f.job.lease, exc, f.workdir, self.cfg.lease_seconds)

    def _collect(self) -> None:
        """Hand the jobs whose tasks ended to the closer thread."""
        import ray

        open_ = [f for f in list(self.inflight.values()) if not f.closing]
        if not open_:
            return
        ready, _ = ray.wait([f.ref for f in open_], num_returns=len(open_), timeout=0)
        # A Trainer killed before Ray had placed it (its node lost meanwhile) may leave its call
        # pending for good: past KILL_GRACE it counts as ended (`_close` finds it died).
        t = time.monotonic()
        ready += [f.ref for f in open_ if f.killed_at is not None and t - f.killed_at > KILL_GRACE and f.ref not in ready]
        if not ready:
            return
        self._drain()  # what a task posted before it returned comes first
        for f in [f for f in list(self.inflight.values()) if f.ref in ready]:
            f.closing = True
            self._closer.submit(self._close_and_forget, f)

    def _close_and_forget(self, f: InFlight) -> None:
        conn = store.connect()
        try:
            self._close(f, conn)
        except Exception:  # the dispatcher goes on; the job's lease lapses and it is taken again
            log.exception("job %s: could not store how its task ended", f.job.id)
        finally:
            conn.close()
            with self._lock:
                del self.inflight[f.job.id]
                self._ended += 1
                used = {g.job.data_source for g in self.inflight.values()}
                for source in [s for s in self._data if s not in used]:  # the object store frees it
                    del self._data[source]
            self.hub.forget.remote(f.job.id)

    def _close(self, f: InFlight, conn) -> None:
        """End the attempt of a task that ended, by the protocol a local worker shares
        (jobs/attempt.py)."""
        import ray

        lease = f.job.lease
        node = f.progress.get("node") or "its node"
        try:
            result = ray.get(f.ref, timeout=None if f.killed_at is None else KILL_GRACE)
        except ray.exceptions.RayTaskError as exc:  # the training raised: the job fails with its reason
            self._release(f.trainer)
            fail_attempt(conn, lease, exc.cause if getattr(exc, "cause", None) is not None else exc, f.workdir,
                         self.cfg.lease_seconds)
            return
        except ray.exceptions.RayError as exc:  # its Trainer was killed, or its process or node died
            _step("discard a dead trainer", lambda: ray.kill(f.trainer, no_restart=True))
            how = "was killed" if f.force_cancelled else f"died ({type(exc).__name__})"
            ending = Ending(stop_reason=f.stop_reason, died=f"its Ray task on {node} {how}")
        else:
            self._release(f.trainer)
            if result["status"] == "completed" and f.stop_reason not in DECIDED:
                ending = Ending(completed=True, results=self._succeed(f, result, conn))
            else:
                ending = Ending(stop_reason=f.stop_reason or result.get("stop_reason"))
        close_attempt(conn, lease, ending, self.cfg.lease_seconds, who="dispatcher", workdir=f.workdir)

    def _succeed(self, f: InFlight, result: dict, conn) -> dict:
        """Write the final files into the run folder and measure the model here: its results."""
        from cifar_core.train.atomic import write_bytes
        from cifar_core.train.latency import measure_cost_apart

        f.workdir.mkdir(parents=True, exist_ok=True)
        for name, data in result["files"].items():
            write_bytes(f.workdir / name, data)
        _, shape, _ = self._dataset(f.job.data_source)
        # Written here, not left to the heartbeat (which only renews the lease of a closing job):
        # the task may have ended before its last phases reached the hub.
        measuring = Phase(MEASURING, since=store.now())
        p = f.progress
        retry_while_locked(lambda: queue.heartbeat(conn, f.job.lease, self.cfg.lease_seconds, p.get("batch", 0),
                                                   p.get("batches", 0), phase=measuring),
                           time.monotonic() + self.cfg.lease_seconds)
        # On the dashboard's machine, in a child process: TensorFlow never loads into the dispatcher,
        # which stays small while idle. The load it measured (other processes' CPU) says how busy it was.
        cost = measure_cost_apart(f.workdir / "model.keras", shape, f.job.spec)
        return results_record(cost, params=result["params"], test_loss=result["test_loss"],
                              test_accuracy=result["test_accuracy"], stopped_epoch=result["stopped_epoch"],
                              stop_reason=result["early_stop_reason"])

    # ---------------------------------------------------------------- stopping

    def _ask_stop(self, f: InFlight, reason: str) -> None:
        if f.stop_reason is None:
            f.stop_reason = reason

    def _send_stops(self) -> None:
        """Tell tasks to stop; kill those that did not within CANCEL_GRACE seconds."""
        import ray

        t = time.monotonic()
        for f in list(self.inflight.values()):
            if f.stop_reason is None and self.shutdown.is_set():
                f.stop_reason = queue.STOP_SHUTDOWN
            if f.stop_reason is None:
                continue
            if f.stop_sent_at is None:
                self.hub.stop.remote(f.job.id, f.stop_reason)
                f.stop_sent_at = t
            elif not f.force_cancelled and t - f.stop_sent_at > CANCEL_GRACE:
                log.warning("job %s did not stop within %.0f s; killing its trainer", f.job.id, CANCEL_GRACE)
                ray.kill(f.trainer, no_restart=True)
                f.force_cancelled, f.killed_at = True, t

    def _stop_everything(self) -> None:
        """On the way out: stop what still runs and hand its jobs back (the heartbeat renews their
        leases meanwhile)."""
        import ray

        deadline = time.monotonic() + CANCEL_GRACE + 5
        while self.inflight and time.monotonic() < deadline:
            for step in (self._send_stops, self._drain, self._collect):
                _step(step.__name__, step)
            time.sleep(POLL_SECONDS)
        self._closer.shutdown(wait=True)  # the ended ones are stored first
        with self._lock:
            idle, self._spare = self._spare, []
        for actor, _ in idle:
            _step("stop an idle trainer", lambda: ray.kill(actor, no_restart=True))
        for f in [f for f in list(self.inflight.values()) if not f.closing]:
            _step(f"kill the trainer of job {f.job.id}", lambda: ray.kill(f.trainer, no_restart=True))
            close_attempt(self.conn, f.job.lease, Ending(stop_reason=queue.STOP_SHUTDOWN), self.cfg.lease_seconds,
                          who="dispatcher")
            with self._lock:
                del self.inflight[f.job.id]

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT hand the jobs back and stop. Installed again once Ray has joined: Ray's
        own core worker replaces the SIGTERM handler with one that exits at once (code 15)."""
        self._handles_signals = True
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.shutdown.set())

    # ---------------------------------------------------------------- leases and the cluster's state

    def _heartbeat(self) -> None:
        """Renew the lease of every job in flight, publish its progress, and pick up cancels,
        until every job in flight has been closed (`_beating`). A job whose lease could have
        lapsed (the store stayed locked) is stopped."""
        conn = store.connect(busy_ms=HEARTBEAT_BUSY_MS)
        beats = 0
        try:
            while not self._beating.wait(HEARTBEAT_SECONDS):
                beats += 1
                with self._lock:
                    flights = list(self.inflight.values())
                for f in flights:
                    self._beat(conn, f)
                try:
                    store.touch_worker(conn, self.id, flights[0].job.id if flights else None)
                    if beats % REAP_BEATS == 0:
                        queue.reap_expired(conn)
                except sqlite3.OperationalError as exc:
                    log.warning("heartbeat failed (%s); retrying", exc)
        finally:
            conn.close()

    def _beat(self, conn, f: InFlight) -> None:
        asked = time.monotonic()
        p = f.progress
        running = p.get("running", ())
        point = f.points.point(running, asked)
        phase = p.get("phase") or Phase(WAITING, since=f.claimed_at)  # its task has not started on a node yet
        try:
            if f.closing:  # its task ended: the closer writes what follows
                verdict = queue.renew(conn, f.job.lease, self.cfg.lease_seconds)
            else:
                verdict = queue.heartbeat(conn, f.job.lease, self.cfg.lease_seconds, p.get("batch", 0),
                                          p.get("batches", 0), phase=phase, point=point, node=p.get("node"),
                                          pid=p.get("pid"))
            if point is not None:
                f.points.kept(running, asked)
        except sqlite3.OperationalError as exc:
            log.warning("job %s: heartbeat failed (%s); retrying", f.job.id, exc)
            if time.monotonic() > f.valid_until:
                self._ask_stop(f, queue.STOP_LOST)
            return
        if verdict == queue.KEEP_GOING:
            f.valid_until = asked + usable_seconds(self.cfg.lease_seconds)
        else:
            self._ask_stop(f, verdict)

    def _record_cluster(self) -> None:
        """Every CLUSTER_SECONDS, the cluster's nodes, their CPUs and GPUs in use and free, and
        which of this dispatcher's jobs each runs, for the Training page."""
        t = time.monotonic()
        if t - self._last_cluster < CLUSTER_SECONDS:
            return
        self._last_cluster = t
        try:
            store.put_cluster(self.conn, cluster_state(self.address, self.id, self.inflight, self.job_cpus, self.job_gpus))
        except Exception as exc:  # the picture of the cluster is a nicety; dispatching goes on
            log.warning("could not record the cluster's state: %s", exc)


def cluster_state(address: str, dispatcher: str, inflight: dict[int, InFlight], job_cpus: float, job_gpus: float) -> dict:
    """The cluster as the Training page shows it, from Ray's public API: each node's CPUs and GPUs
    with what this dispatcher's jobs leave free there (Ray tells free resources per cluster, not
    per node), and the cluster's own free total (`free_cpus`, `free_gpus`), other work counted."""
    import ray

    jobs_on: dict[str, list[int]] = {}
    for f in list(inflight.values()):
        if f.progress.get("node"):
            jobs_on.setdefault(f.progress["node"], []).append(f.job.id)
    nodes = []
    for n in ray.nodes():
        label = node_label(n["NodeID"], n.get("NodeManagerHostname", "?"))
        res = n.get("Resources", {}) if n.get("Alive") else {}
        cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
        mine = jobs_on.get(label, [])
        cpus_free = max(0.0, cpus - job_cpus * len(mine)) if n.get("Alive") else 0.0
        gpus_free = max(0.0, gpus - job_gpus * len(mine)) if n.get("Alive") else 0.0
        nodes.append({"node": label, "address": n.get("NodeManagerAddress"), "alive": bool(n.get("Alive")),
                      "head": "node:__internal_head__" in n.get("Resources", {}),
                      "cpus": cpus, "cpus_free": cpus_free, "gpus": gpus, "gpus_free": gpus_free, "jobs": sorted(mine)})
    free = ray.available_resources()
    return {"address": address, "dispatcher": dispatcher, "updated_at": store.now(), "job_cpus": job_cpus,
            "job_gpus": job_gpus, "nodes": nodes, "free_cpus": float(free.get("CPU", 0)),
            "free_gpus": float(free.get("GPU", 0))}


def _unreachable() -> tuple[type[BaseException], ...]:
    """What a call to the hub raises when the hub (its dispatcher, or the network to it) is gone;
    anything else is a bug, and raised as one."""
    import ray

    return ray.exceptions.RayError, TimeoutError, ConnectionError


def _step(what: str, do) -> None:
    """One cleanup step, whose failure is logged and does not stop the next ones."""
    try:
        do()
    except Exception:
        log.exception("dispatcher: could not %s", what)
