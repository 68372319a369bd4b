"""What the Training page shows about the queue, as plain data: progress, the phase, train time
(the run's one figure, `queue.Job.trained`), time queued and ETA per job, the live jobs' per-epoch histories and running points, and the recent jobs' final
figures.

Progress counts finished epochs plus the share of the current one done: its trained batches'
share of the epoch's training part, then its validated batches' share of the validation part
(each part's share of an epoch as the finished epochs measured it; before any, the training part
is the whole epoch). It never goes backwards: validating comes after every batch is trained.
The ETA is the sum of
  - the epochs not begun yet, each taking the mean `seconds` of the finished epochs (training and
    validation: the relay times an epoch from its start to its end, and fit validates before the
    epoch ends);
  - what is left of the current epoch: its untrained batches' share of the training part, plus
    the validation part (`val_seconds`) or, while validating, its unvalidated batches' share;
  - the end phases (`end_phases`): scoring the test set, about one validation pass times the
    test-time views times the test/validation size ratio, then saving and measuring latency,
    a few seconds each;
less the seconds since the worker last reported. In an end phase the ETA counts down what is left
of the end phases' estimate from the phase's start (0 once it overruns). Before the first epoch
ends it extrapolates from the batches trained so far, timed from the start of the epoch (not of
the job: loading the data and building the model are behind it), and leaves the unmeasured
validation and scoring out; such an ETA is `rough` (its first batches include TensorFlow's
tracing, so it errs long) until an epoch has finished to go on.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import pandas as pd

from cifar_core.jobs import queue
from cifar_core.jobs import results
from cifar_core.jobs import store
from cifar_core.jobs import launcher
from cifar_core.jobs.worker import list_workers
from cifar_core.spec.training import tta_views
from cifar_core.train.phases import END_PHASES, MEASURING, SAVING, SCORING, TRAINING, VALIDATING, WAITING, Phase

# The end phases' estimates (see the module docstring).
SAVE_SECONDS = 2.0  # model.keras, predictions.npz and the history
MEASURE_SECONDS = 5.0  # latency.measure_cost (batch-1 latency and batch-256 throughput) of a CIFAR-sized net
# Test images per validation image: with validation "test" they are the same images; the holdout is
# CIFAR-10's 5,000 of the train set against its 10,000 test images (a data set of other sizes makes
# the scoring estimate off by its own ratio, nothing worse).
TEST_RATIO = {"test": 1.0, "holdout": 2.0}


@dataclass(frozen=True)
class JobProgress:
    id: int
    name: str
    state: str
    epoch: int  # epochs completed
    epochs: int  # epochs planned
    batch: int  # batches done in the current epoch
    batches: int  # batches per epoch; 0 until the worker first reports
    fraction: float  # 0..1 of the whole run
    trained: float | None  # seconds spent training, summed over attempts; None before its first attempt
    queued: float  # seconds it waited in the queue: from its submission to now (or its end), less `trained`
    eta: float | None  # seconds left; None when unknown (queued, finished, nothing measured yet)
    seconds_per_epoch: float | None  # mean of the finished epochs
    cancel_requested: bool
    error: str | None
    attempts: int
    note: str | None = None  # what its worker says now (a pause for disk space)
    node: str | None = None  # where its last epoch trained (host, or Ray node)
    phase: Phase | None = None  # what a running job does now (None: not said yet)
    rough: bool = False  # the ETA is extrapolated from the first epoch's batches, not from a finished epoch
    submitted_by: str | None = None  # the signed-in user who queued it (None: a lab without a login)

    @property
    def active(self) -> bool:
        return self.state in (queue.QUEUED, queue.RUNNING)

    @property
    def attempts_line(self) -> str:
        """The card's caption under the bar: time queued, and the attempt that runs now or how many
        ended (a queued job's bar already names the attempt it waits to start)."""
        ended = f"{self.attempts} attempt{'' if self.attempts == 1 else 's'} so far"
        now = f"attempt {self.attempts}" if self.state == queue.RUNNING else ended
        return f"Queued {format_seconds(self.queued)} in all · {now}"

    @property
    def label(self) -> str:
        """One line for a progress bar naming the phase: "training epoch 3/10 · batch 120/1563",
        "validating (4/20) · epoch 3/10", "scoring the test set with 2 views", "saving the model",
        "measuring latency"."""
        if self.state == queue.QUEUED:
            return "queued" + (f" (attempt {self.attempts + 1}, resumes after epoch {self.epoch})" if self.epoch else "")
        if self.state == queue.RUNNING:
            return phase_label(self.phase, self.epoch, self.epochs, self.batch, self.batches) + (
                " · cancelling" if self.cancel_requested else "")
        return f"{self.state} after {self.epoch}/{self.epochs} epochs"


def phase_label(phase: Phase | None, epoch: int, epochs: int, batch: int, batches: int) -> str:
    """The running part of a job's progress line; `epoch` counts finished epochs."""
    name = TRAINING if phase is None else phase.name
    current = f"epoch {min(epoch + 1, epochs)}/{epochs}"
    if name == VALIDATING:
        return f"validating ({phase.step}/{phase.steps}) · {current}"
    if name == SCORING:
        return f"scoring the test set with {phase.steps} view{'' if phase.steps == 1 else 's'}"
    if name == SAVING:
        return "saving the model"
    if name == MEASURING:
        return "measuring latency"
    if name == WAITING:
        return f"waiting for a node · {current}"
    return f"training {current} · " + (f"batch {batch}/{batches}" if batches else "starting")


def end_phases(spec: dict, val_seconds: float | None) -> dict[str, float]:
    """Estimated seconds of each end phase of a job with this spec doc, given the mean seconds
    of its validation passes (None: not measured yet, scoring counts 0)."""
    views = len(tta_views(bool(spec.get("tta_flip", False)), int(spec.get("tta_shift", 0))))
    ratio = TEST_RATIO.get(spec.get("validation", "holdout"), TEST_RATIO["holdout"])
    return {SCORING: (val_seconds or 0.0) * views * ratio, SAVING: SAVE_SECONDS, MEASURING: MEASURE_SECONDS}


@dataclass(frozen=True)
class QueueView:
    active: list[JobProgress]  # running first, then queued in the order they will start
    recent: list[JobProgress]  # finished jobs, newest first
    counts: dict[str, int]  # jobs per state
    workers_alive: int
    history: pd.DataFrame = field(repr=False)  # per-epoch metrics of the running jobs (long, `run` column)
    finished: pd.DataFrame = field(repr=False)  # leaderboard rows of the recent jobs
    running: pd.DataFrame = field(repr=False, default_factory=lambda: pd.DataFrame(columns=results.RUNNING_COLUMNS))
    # running training loss and accuracy inside the running jobs' epochs (fractional `epoch`)
    start_problem: str | None = None  # why the Ray dispatcher this app wants could not start

    @property
    def refresh(self) -> bool:
        """Whether the page should keep polling: something is queued or running."""
        return bool(self.active)


def job_progress(job: queue.Job, epoch_seconds: Sequence[float] = (), now: float | None = None,
                 val_seconds: Sequence[float] = ()) -> JobProgress:
    """Progress, phase, train time, time queued and ETA of one job; `epoch_seconds` are its finished epochs'
    durations (training and validation), `val_seconds` their validation parts."""
    now = store.now() if now is None else now
    per_epoch, per_val = _mean(epoch_seconds), _mean(val_seconds)
    in_epoch = job.batch / job.batches if job.batches and job.state == queue.RUNNING else 0.0
    trained = job.trained(now)
    eta = _eta(job, in_epoch, per_epoch, per_val, now)
    return JobProgress(
        id=job.id, name=job.name, state=job.state, epoch=job.epoch, epochs=job.epochs, batch=job.batch,
        batches=job.batches, fraction=_fraction(job, in_epoch, per_epoch, per_val), trained=trained, queued=_queued(job, trained, now),
        eta=eta, rough=eta is not None and per_epoch is None, seconds_per_epoch=per_epoch,
        cancel_requested=job.cancel_requested, error=job.error, attempts=job.attempts, note=job.note,
        node=job.node, phase=job.phase if job.state == queue.RUNNING else None, submitted_by=job.submitted_by,
    )


def _mean(values: Sequence[float]) -> float | None:
    measured = [float(v) for v in values if v is not None and v == v]  # drop None and NaN
    return sum(measured) / len(measured) if measured else None


def _fraction(job: queue.Job, in_epoch: float, per_epoch: float | None = None, per_val: float | None = None) -> float:
    if job.state == queue.SUCCEEDED:
        return 1.0
    if job.epochs <= 0:
        return 0.0
    phase = job.phase.name if job.state == queue.RUNNING and job.phase is not None else TRAINING
    if phase in END_PHASES:
        return 1.0  # every epoch is done
    train_share = 1.0 if not per_epoch or per_val is None else min(1.0, max(0.0, 1 - per_val / per_epoch))
    if phase == VALIDATING:  # every batch of this epoch is trained: its validation goes on from there
        validated = min(1.0, job.phase.step / job.phase.steps) if job.phase.steps else 0.0
        in_epoch = train_share + (1 - train_share) * validated
    else:
        in_epoch *= train_share
    return min(1.0, max(0.0, (job.epoch + in_epoch) / job.epochs))


def _queued(job: queue.Job, trained: float | None, now: float) -> float:
    end = job.ended_at if job.finished and job.ended_at is not None else now
    return max(0.0, end - job.created_at - (trained or 0.0))


def _eta(job: queue.Job, in_epoch: float, per_epoch: float | None, per_val: float | None,
         now: float) -> float | None:
    if job.state != queue.RUNNING or job.epochs <= 0:
        return None
    ends = end_phases(job.spec, per_val)
    phase = job.phase or Phase(TRAINING)
    if phase.name in END_PHASES:
        left = sum(ends[p] for p in END_PHASES[END_PHASES.index(phase.name):])  # this phase and the later ones
        return max(0.0, left - (max(0.0, now - phase.since) if phase.since is not None else 0.0))
    since_report = max(0.0, now - job.progress_at) if job.progress_at is not None else 0.0
    if per_epoch is None:
        began = phase.since if phase.since is not None else job.attempt_at or job.started_at  # the epoch's start
        if job.epoch > 0 or in_epoch <= 0 or began is None or job.progress_at is None:
            return None
        per_epoch = max(0.0, job.progress_at - began) / in_epoch  # first epoch, extrapolated
        return max(0.0, (job.epochs - in_epoch) * per_epoch + sum(ends.values()) - since_report)
    return max(0.0, _epochs_left(job, in_epoch, phase, per_epoch, per_val or 0.0) + sum(ends.values()) - since_report)


def _epochs_left(job: queue.Job, in_epoch: float, phase: Phase, per_epoch: float, per_val: float) -> float:
    """Seconds of training and validation left: the rest of the current epoch, then the epochs
    not begun."""
    if job.epoch >= job.epochs:
        return 0.0  # the last epoch is done; the end phases come next
    if phase.name == VALIDATING:
        current = per_val * (1 - min(1.0, phase.step / phase.steps)) if phase.steps else per_val
    else:
        current = max(0.0, per_epoch - per_val) * (1 - in_epoch) + per_val
    return current + (job.epochs - job.epoch - 1) * per_epoch


def queue_view(conn: sqlite3.Connection, recent: int = 10, now: float | None = None,
               hide: Collection[int] = ()) -> QueueView:
    """Everything the Training page draws, read in one go; the recent finished jobs leave out
    those in `hide` (keeping.Hidden.runs)."""
    now = store.now() if now is None else now
    active_jobs = queue.list_jobs(conn, (queue.RUNNING, queue.QUEUED), limit=1000)
    running = sorted((j for j in active_jobs if j.state == queue.RUNNING), key=lambda j: j.id)
    waiting = sorted((j for j in active_jobs if j.state == queue.QUEUED), key=lambda j: j.id)
    ended = (*sorted(queue.TERMINAL), queue.PAUSED)  # a paused trial waits for promotion, not for a worker
    done = [j for j in queue.list_jobs(conn, ended, limit=recent + len(hide)) if j.id not in hide][:recent] if recent > 0 else []
    history = results.histories(conn, [j.id for j in running])
    seconds = history.groupby("run")["seconds"].apply(list).to_dict() if not history.empty else {}
    val_seconds = history.groupby("run")["val_seconds"].apply(list).to_dict() if not history.empty else {}
    return QueueView(
        active=[job_progress(j, seconds.get(j.id, ()), now, val_seconds.get(j.id, ())) for j in (*running, *waiting)],
        recent=[job_progress(j, (), now) for j in done],
        counts=queue.counts(conn),
        workers_alive=sum(w.alive for w in list_workers(conn)),
        history=history,
        finished=results.leaderboard_rows(conn, [j.id for j in done]),
        running=results.running_points(conn, [j.id for j in running]),
        start_problem=start_problem(),
    )


def start_problem() -> str | None:
    """Why the Ray dispatcher that `$CIFAR_LAB_RAY` asks for could not start (said once, by the
    dispatcher), or None."""
    problem = launcher.start_problem()
    if problem is None or problem.address != os.environ.get(launcher.RAY_ENV, "").strip():
        return None
    return (f"The Ray dispatcher could not start, so no job runs on the cluster: {problem.reason} "
            "Fix that, then try again.")


@dataclass(frozen=True)
class ClusterNode:
    node: str  # host/start of the Ray node id, as jobs record it
    address: str | None
    alive: bool
    cpus: float
    cpus_free: float
    gpus: float
    gpus_free: float
    jobs: list[int]  # the dispatcher's jobs training there now
    head: bool = False  # the cluster's head node


@dataclass(frozen=True)
class ClusterView:
    """The Ray cluster as its dispatcher last recorded it (every few seconds)."""

    address: str
    job_cpus: float
    job_gpus: float
    nodes: list[ClusterNode]
    age: float  # seconds since it was recorded
    stale: bool  # no news for a while: the dispatcher may be gone

    @property
    def table(self) -> pd.DataFrame:
        """One row per node: CPUs and GPUs in use and free, and its jobs."""
        return pd.DataFrame(
            [{"node": n.node + (" (head)" if n.head else ""), "address": n.address, "alive": n.alive, "CPUs in use": n.cpus - n.cpus_free,
              "CPUs free": n.cpus_free, "GPUs in use": n.gpus - n.gpus_free, "GPUs free": n.gpus_free,
              "jobs": ", ".join(f"#{j}" for j in n.jobs)} for n in self.nodes],
            columns=["node", "address", "alive", "CPUs in use", "CPUs free", "GPUs in use", "GPUs free", "jobs"],
        )


CLUSTER_STALE_SECONDS = 15.0


def cluster_view(conn: sqlite3.Connection, now: float | None = None) -> ClusterView | None:
    """The cluster a Ray dispatcher recorded, or None when no dispatcher runs."""
    doc = store.cluster_doc(conn)
    if doc is None:
        return None
    now = store.now() if now is None else now
    nodes = [ClusterNode(n["node"], n.get("address"), bool(n["alive"]), float(n["cpus"]), float(n["cpus_free"]),
                         float(n["gpus"]), float(n["gpus_free"]), [int(j) for j in n.get("jobs", [])],
                         bool(n.get("head")))
             for n in doc.get("nodes", [])]
    age = max(0.0, now - float(doc["updated_at"]))
    return ClusterView(doc.get("address", "?"), float(doc.get("job_cpus", 0)), float(doc.get("job_gpus", 0)),
                       nodes, age, age > CLUSTER_STALE_SECONDS)


def format_seconds(seconds: float | None) -> str:
    """A short duration: "42s", "3m 05s", "1h 02m"; "–" when unknown."""
    if seconds is None or seconds != seconds:
        return "–"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
