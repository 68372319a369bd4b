"""Benchmark: the recommended presets on the real data, through the queue, over several seeds.

    .venv/bin/python scripts/bench_presets.py [--presets fast] [--seeds 3] [--first-seed 0] [--data ../shared/datasets/cifar10-jpeg.tar.gz]

Each run validates on the 5,000-image holdout and scores the test set once at the end. Prints, per
run: seed, epochs, wall-clock training time, test accuracy, and the time until the validation
accuracy first reached the notebook's best (75.6%). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
NOTEBOOK_BEST = 0.756


def time_to(history, target: float) -> float | None:
    """Seconds of training until the validation accuracy first reached `target` (None if never)."""
    elapsed = 0.0
    for row in history.itertuples():
        elapsed += row.seconds
        if row.val_accuracy >= target:
            return elapsed
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/cifar10-jpeg.tar.gz"))
    parser.add_argument("--presets", default="fast")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one up (to add seeds to an earlier run)")
    args = parser.parse_args()
    os.environ["CIFAR_LAB_HOME"] = os.environ.get("CIFAR_LAB_HOME") or tempfile.mkdtemp(prefix="bench-presets-")

    from cifar_core.jobs import queue
    from cifar_core.jobs import results
    from cifar_core.jobs import store
    from cifar_core.lab import Lab
    from cifar_core.spec.presets import get_preset

    conn = store.connect()
    jobs = {name: Lab().submit(get_preset(name), args.data, repeats=args.seeds, seed=args.first_seed).job_ids
            for name in args.presets.split(",")}
    print(f"home {os.environ['CIFAR_LAB_HOME']}; jobs {jobs}", flush=True)
    subprocess.run([sys.executable, "-m", "cifar_core", "worker", "--exit-when-idle"], cwd=ROOT, check=True)
    print("preset  seed  epochs  train wall (s)  test accuracy  time to 75.6% val (s)")
    for name, ids in jobs.items():
        for job_id in ids:
            detail = results.run_detail(conn, job_id)
            reach = time_to(detail.history, NOTEBOOK_BEST)
            ok = detail.job.state == queue.SUCCEEDED
            print(f"{name:6}  {detail.seed:4}  {len(detail.history):6}  {detail.train_seconds or 0:14.0f}  "
                  f"{(detail.test_accuracy or 0) if ok else float('nan'):13.4f}  {'never' if reach is None else f'{reach:.0f}':>21}")


if __name__ == "__main__":
    main()
