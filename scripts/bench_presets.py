"""Benchmark: the recommended presets on the real data, through the queue, over several seeds.

    .venv/bin/python scripts/bench_presets.py [--presets fast,best] [--seeds 3] [--first-seed 0]
        [--epochs N] [--data ../shared/datasets/cifar10-jpeg.tar.gz]

Each run validates on the 5,000-image holdout and scores the test set once at the end. This host's
speed drifts up to 2x within an hour, so the runs alternate with the unit of training time, a
reference epoch (scripts/reference_epoch.py: plain Keras, the notebook's original exp4, batch 32),
and each run's training time is also given as a multiple of the mean of the reference epochs timed
just before and just after it. Prints, per run: seed, epochs, training time (seconds and reference
epochs), test accuracy, and the time until the validation accuracy first reached the notebook's
best (75.6%); then per preset the mean and spread over the seeds. Run it on an otherwise idle host.
Presets may be spec JSON files too (to try a network before it becomes a preset).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _bootstrap import ROOT  # the checkout, put on sys.path

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


def reference_epoch(data: str) -> float:
    """Seconds of one reference epoch (the second of two: the first includes tracing)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts/reference_epoch.py"), "--data", data, "--epochs", "2"],
                         capture_output=True, text=True, check=True).stdout
    seconds = json.loads(out.strip().splitlines()[-1])["reference_epoch_seconds"][-1]
    print(f"reference epoch: {seconds:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    return seconds


def load_doc(name: str) -> dict:
    from cifar_core.spec.presets import PRESETS, get_preset

    return get_preset(name) if name in PRESETS else json.loads(Path(name).read_text())


def run_one(doc: dict, data: str, seed: int, epochs: int | None):
    """Train one seed through the queue and a worker; its run detail."""
    from cifar_core.jobs import results, store
    from cifar_core.testing.procs import run_until_idle

    [job_id], _ = run_until_idle([dict(doc, seed=seed, **({"epochs": epochs} if epochs else {}))], data)
    conn = store.connect()
    try:
        return results.run_detail(conn, job_id)
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/cifar10-jpeg.tar.gz"))
    parser.add_argument("--presets", default="fast", help="preset names or spec JSON paths, comma-separated")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one up (to add seeds to an earlier run)")
    parser.add_argument("--epochs", type=int, help="override the presets' epochs")
    args = parser.parse_args()
    os.environ["CIFAR_LAB_HOME"] = os.environ.get("CIFAR_LAB_HOME") or tempfile.mkdtemp(prefix="bench-presets-")
    print(f"home {os.environ['CIFAR_LAB_HOME']}", flush=True)

    from cifar_core.jobs import queue

    rows: dict[str, list[tuple]] = {}
    ref_before = reference_epoch(args.data)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in args.presets.split(","):
            detail = run_one(load_doc(name), args.data, seed, args.epochs)
            ref_after = reference_epoch(args.data)
            ref = (ref_before + ref_after) / 2
            ref_before = ref_after
            ok = detail.job.state == queue.SUCCEEDED
            reach = time_to(detail.history, NOTEBOOK_BEST)
            row = (seed, len(detail.history), detail.train_seconds or 0, (detail.train_seconds or 0) / ref,
                   detail.test_accuracy if ok else float("nan"), reach, ref)
            rows.setdefault(Path(name).stem, []).append(row)
            print(f"{Path(name).stem}: seed {seed}: {row[1]} epochs, {row[2]:.0f} s = {row[3]:.1f} reference epochs "
                  f"of {ref:.1f} s, test accuracy {row[4]:.4f}, 75.6% val after "
                  f"{'never' if reach is None else f'{reach:.0f} s = {reach / ref:.1f} ref epochs'}", flush=True)
            print("  val accuracy by epoch: " + " ".join(f"{v:.3f}" for v in detail.history.val_accuracy), flush=True)
    print("\npreset  seed  epochs  train (s)  (ref epochs)  test accuracy  75.6% val after (s)  ref epoch (s)")
    for name, runs in rows.items():
        for seed, epochs, seconds, multiple, acc, reach, ref in runs:
            print(f"{name:6}  {seed:4}  {epochs:6}  {seconds:9.0f}  {multiple:12.1f}  {acc:13.4f}  "
                  f"{'never' if reach is None else f'{reach:.0f}':>19}  {ref:13.1f}")
        accs = [r[4] for r in runs]
        mults = [r[3] for r in runs]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{name}: test accuracy {statistics.mean(accs):.4f} ± {spread:.4f} over {len(runs)} seeds; training "
              f"{statistics.mean(mults):.1f} reference epochs on average (max {max(mults):.1f})")


if __name__ == "__main__":
    main()
