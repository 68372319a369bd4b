"""Time a leaderboard filter over a lab of 1,000 runs with tags and notes.

    .venv/bin/python scripts/bench_filter.py [--runs 1000] [--epochs 10] [--repeats 7]

Fills a new temp home through the real queue (scripts/bench_pages.fill_store: submit, claim,
record each epoch, finish), tags every run (one to three tags) and writes a Markdown note on
every run, then times `Lab.leaderboard(where=...)` end to end (what `leaderboard --filter` and
the Leaderboard page call: the store read, the diagnosis, the filter) for each expression and
prints the median of the repeats. Target: under 1 s each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from _bootstrap import ROOT  # noqa: F401  (the checkout, put on sys.path)
from bench_pages import fill_store

TARGET = 1.0  # seconds
EXPRESSIONS = (
    "tag:muon",
    "learning_rate < 0.002 and tag:muon",
    "test_accuracy > 0.63 and status:succeeded",
    "optimizer = adam and epochs >= 10 and tag:lr-sweep",
)
TAGS = ("muon", "lr-sweep", "baseline-candidate", "v2", "ablation")


def tag_everything(runs: int) -> None:
    from cifar_core.jobs import store

    conn = store.connect()
    ids = [r["run"] for r in store.run_keeping_rows(conn)]
    with store.transaction(conn):
        for i, run in enumerate(ids):
            store.add_run_tags(conn, [run], [TAGS[(i + k) % len(TAGS)] for k in range(1 + i % 3)])
            store.set_run_note(conn, run, f"**Run {run}**: tried a *different* learning rate; see the sweep notes.\n\n- idea {i}")
    conn.close()
    assert len(ids) == runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    home = tempfile.mkdtemp(prefix="bench-filter-")
    os.environ["CIFAR_LAB_HOME"] = home
    try:
        filled = fill_store(args.runs, args.epochs)
        tag_everything(args.runs)
        print(f"store: {args.runs} runs x {args.epochs} epochs, tagged and noted, filled in {filled:.1f} s ({home})")
        from cifar_core.lab import Lab

        lab = Lab()
        worst = 0.0
        print(f"{'expression':55} {'rows':>5} {'median s':>9} {'max s':>7}")
        for expr in ("", *EXPRESSIONS):
            times, rows = [], 0
            for _ in range(args.repeats):
                t = time.perf_counter()
                rows = len(lab.leaderboard(where=expr))
                times.append(time.perf_counter() - t)
            median = statistics.median(times)
            worst = max(worst, median)
            print(f"{expr or '(no filter)':55} {rows:>5} {median:>9.3f} {max(times):>7.3f}")
        verdict = "PASS" if worst < TARGET else "FAIL"
        print(f"{verdict}: the slowest median is {worst:.3f} s (target < {TARGET:.0f} s)")
        return 0 if worst < TARGET else 1
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
