"""What the Training page shows about the queue, as plain data: progress, elapsed time and ETA per
job, the live jobs' per-epoch histories and the recent jobs' final figures.

Progress counts finished epochs plus the batch fraction of the current one. The ETA uses the mean
seconds of the finished epochs; before the first epoch ends it extrapolates from the time the
first batches took (including model building, so it starts pessimistic).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from cifar_core.jobs import queue
from cifar_core.jobs import results
from cifar_core.jobs import store
from cifar_core.jobs.worker import list_workers


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
    elapsed: float | None  # seconds since it started (until it ended, once finished); None while queued
    eta: float | None  # seconds left; None when unknown (queued, finished, nothing measured yet)
    seconds_per_epoch: float | None  # mean of the finished epochs
    cancel_requested: bool
    error: str | None
    attempts: int
    note: str | None = None  # what its worker says now (a pause for disk space)
    node: str | None = None  # where its last epoch trained (host, or Ray node)

    @property
    def active(self) -> bool:
        return self.state in (queue.QUEUED, queue.RUNNING)

    @property
    def label(self) -> str:
        """One line for a progress bar: "epoch 3/10 · batch 120/1563"."""
        if self.state == queue.QUEUED:
            return "queued" + (f" (attempt {self.attempts + 1}, resumes after epoch {self.epoch})" if self.epoch else "")
        if self.state == queue.RUNNING:
            text = f"epoch {min(self.epoch + 1, self.epochs)}/{self.epochs}"
            text += f" · batch {self.batch}/{self.batches}" if self.batches else " · starting"
            return text + (" · cancelling" if self.cancel_requested else "")
        return f"{self.state} after {self.epoch}/{self.epochs} epochs"


@dataclass(frozen=True)
class QueueView:
    active: list[JobProgress]  # running first, then queued in the order they will start
    recent: list[JobProgress]  # finished jobs, newest first
    counts: dict[str, int]  # jobs per state
    workers_alive: int
    history: pd.DataFrame = field(repr=False)  # per-epoch metrics of the running jobs (long, `run` column)
    finished: pd.DataFrame = field(repr=False)  # leaderboard rows of the recent jobs

    @property
    def refresh(self) -> bool:
        """Whether the page should keep polling: something is queued or running."""
        return bool(self.active)


def job_progress(job: queue.Job, epoch_seconds: Sequence[float] = (), now: float | None = None) -> JobProgress:
    """Progress, elapsed time and ETA of one job; `epoch_seconds` are its finished epochs' durations."""
    now = store.now() if now is None else now
    measured = [float(s) for s in epoch_seconds if s is not None and s == s]  # drop None and NaN
    per_epoch = sum(measured) / len(measured) if measured else None
    in_epoch = job.batch / job.batches if job.batches and job.state == queue.RUNNING else 0.0
    return JobProgress(
        id=job.id, name=job.name, state=job.state, epoch=job.epoch, epochs=job.epochs, batch=job.batch,
        batches=job.batches, fraction=_fraction(job, in_epoch), elapsed=_elapsed(job, now),
        eta=_eta(job, in_epoch, per_epoch, now), seconds_per_epoch=per_epoch,
        cancel_requested=job.cancel_requested, error=job.error, attempts=job.attempts, note=job.note,
        node=job.node,
    )


def _fraction(job: queue.Job, in_epoch: float) -> float:
    if job.state == queue.SUCCEEDED:
        return 1.0
    if job.epochs <= 0:
        return 0.0
    return min(1.0, max(0.0, (job.epoch + in_epoch) / job.epochs))


def _elapsed(job: queue.Job, now: float) -> float | None:
    if job.started_at is None:
        return None
    end = job.ended_at if job.finished and job.ended_at is not None else now
    return max(0.0, end - job.started_at)


def _eta(job: queue.Job, in_epoch: float, per_epoch: float | None, now: float) -> float | None:
    if job.state != queue.RUNNING or job.epochs <= 0:
        return None
    left = max(0.0, job.epochs - job.epoch - in_epoch)  # epochs still to train
    if per_epoch is None:
        if job.epoch > 0 or in_epoch <= 0 or job.started_at is None or job.progress_at is None:
            return None
        per_epoch = (job.progress_at - job.started_at) / in_epoch  # first epoch, extrapolated
    since_report = max(0.0, now - job.progress_at) if job.progress_at is not None else 0.0
    return max(0.0, left * per_epoch - since_report)


def queue_view(conn: sqlite3.Connection, recent: int = 10, now: float | None = None) -> QueueView:
    """Everything the Training page draws, read in one go."""
    now = store.now() if now is None else now
    active_jobs = queue.list_jobs(conn, (queue.RUNNING, queue.QUEUED), limit=1000)
    running = sorted((j for j in active_jobs if j.state == queue.RUNNING), key=lambda j: j.id)
    waiting = sorted((j for j in active_jobs if j.state == queue.QUEUED), key=lambda j: j.id)
    done = queue.list_jobs(conn, tuple(sorted(queue.TERMINAL)), limit=recent) if recent > 0 else []
    history = results.histories(conn, [j.id for j in running])
    seconds = history.groupby("run")["seconds"].apply(list).to_dict() if not history.empty else {}
    return QueueView(
        active=[job_progress(j, seconds.get(j.id, ()), now) for j in (*running, *waiting)],
        recent=[job_progress(j, (), now) for j in done],
        counts=queue.counts(conn),
        workers_alive=sum(w.alive for w in list_workers(conn)),
        history=history,
        finished=results.leaderboard_rows(conn, [j.id for j in done]),
    )


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
