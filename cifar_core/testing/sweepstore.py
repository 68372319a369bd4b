"""A searching sweep of many trials put in the store through the real queue, without training, for
the benchmarks of the stop decision and of the Sweeps page (scripts/bench_search_decision.py,
scripts/bench_pages.py): submitted as the lab submits a sweep, each trial claimed, its epochs
recorded, then finished, pruned or paused as a worker would leave it.

Curves are made up and seeded: two thirds of the trials complete all their epochs (with a measured
latency and multiply-adds), the rest stop part-way, pruned or paused. The last trial is left
running after `judged_epoch` epochs, its lease returned, so a caller can time the decision on it.
"""

from __future__ import annotations

import random
import sqlite3

from cifar_core.analysis import sweeps
from cifar_core.jobs import queue
from cifar_core.search.config import SearchConfig
from cifar_core.testing.datagen import tiny_spec

SPACE = {"method": "random", "params": {"learning_rate": {"log_uniform": [0.0001, 0.01]},
                                        "batch_size": {"values": [16, 32, 64]},
                                        "layers.0.filters": {"values": [4, 8, 16]}}}


def fill_sweep(conn: sqlite3.Connection, search: SearchConfig, epochs: int = 10, judged_epoch: int = 3,
               seed: int = 0, source: str = "bench") -> tuple[int, queue.Lease]:
    """A sweep of `search.max_trials` trials of `epochs` epochs (random draws, all queued at once),
    all ended but the last, which holds `judged_epoch` epochs: (its group id, the last trial's lease)."""
    base = tiny_spec(epochs=epochs, name="bench", learning_rate=0.001)
    plan = sweeps.plan_sweep(base, SPACE, search=search)
    checked = list(zip(plan.docs, plan.params))
    group_id = queue.submit_many(conn, checked, source, sweeps.group_of(plan, base)).group_id
    rng = random.Random(seed)
    for i in range(plan.runs):
        lease = queue.claim(conn, "bench").lease
        final = rng.uniform(0.4, 0.9)
        last = judged_epoch if i == plan.runs - 1 else epochs if i % 3 else rng.randint(1, epochs - 1)
        for e in range(1, last + 1):
            acc = round(final * (0.5 + 0.5 * e / epochs), 4)
            queue.record_epoch(conn, lease, {"epoch": e, "loss": 1.0, "accuracy": acc, "val_loss": 1.0,
                                             "val_accuracy": acc, "seconds": 1.0, "learning_rate": 0.001})
        if i == plan.runs - 1:
            return group_id, lease
        if last == epochs:
            queue.finish(conn, lease, queue.SUCCEEDED, results={
                "test_accuracy": final, "test_loss": 1.0, "latency_p50_ms": rng.uniform(0.5, 5.0),
                "macs": rng.randint(10_000, 100_000)})
            continue
        action = rng.choice((queue.PRUNE, queue.PAUSE))
        queue.decide_stop(conn, lease, action, f"{action} after epoch {last} (made up)")
        queue.end_stopped(conn, lease)
    raise ValueError(f"a sweep needs at least one trial, got max_trials={search.max_trials}")
