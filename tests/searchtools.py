"""Drive a searching sweep through the real attempt protocol with chosen curves (no training): the
curves are the test's, every stop decision, pause and promotion is the lab's own."""

from __future__ import annotations

import time

from cifar_core.jobs import queue
from cifar_core.jobs.attempt import Ending, close_attempt, record_epoch
from cifar_core.lab import Lab
from cifar_core.search.config import PrunerConfig, SearchConfig
from cifar_core.testing.datagen import tiny_spec

LEASE = 30.0
RATES = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]
SPACE = {"method": "grid", "params": {"learning_rate": {"values": RATES}}}


def searching_sweep(source, pruner: PrunerConfig, trials: int = 6, epochs: int = 4, name: str = "srch"):
    """A grid sweep over six learning rates that searches with `pruner`: its Submitted."""
    search = SearchConfig(sampler="grid", pruner=pruner, seed=0, max_trials=trials)
    base = tiny_spec(epochs=epochs, name=name, learning_rate=0.001)
    return Lab().submit_sweep(base, SPACE, str(source), search)


def train(conn, curve: list[float], seconds: float = 1.0, cost: dict | None = None) -> tuple[queue.Job, list[str]]:
    """Claim the oldest queued job and record `curve` as its epochs' validation accuracy through the
    attempt protocol, stopping where the verdict says; close the attempt as a consumer would (a
    completed run with `cost`'s figures too, e.g. latency_p50_ms and macs)."""
    job = queue.claim(conn, "test-worker", LEASE)
    verdicts = []
    for epoch, acc in enumerate(curve, start=job.epoch + 1):
        record = {"epoch": epoch, "loss": 1.0, "accuracy": acc, "val_loss": 1.0, "val_accuracy": acc,
                  "seconds": seconds, "learning_rate": 0.001}
        verdict = record_epoch(conn, job.lease, record, "here", 1, time.monotonic() + LEASE)
        verdicts.append(verdict)
        if verdict != queue.KEEP_GOING:
            close_attempt(conn, job.lease, Ending(stop_reason=verdict), LEASE)
            return queue.get_job(conn, job.id), verdicts
    results = {"test_accuracy": curve[-1], "test_loss": 1.0, **(cost or {})}
    close_attempt(conn, job.lease, Ending(completed=True, results=results), LEASE)
    return queue.get_job(conn, job.id), verdicts
