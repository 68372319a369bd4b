"""Benchmark: what one pruning decision costs, which the job protocol pays after every epoch of a
sweep's trial. Budget: under 50 ms.

    .venv/bin/python scripts/bench_search_decision.py [--trials 200] [--epochs 10] [--repeats 20]

Made-up curves, no training: `--trials` trials of `--epochs` epochs (two thirds complete, the rest
pruned or paused part-way), then one running trial judged after its 3rd epoch. Prints, per pruner,
the median and the worst time of one decision over the repeats, and the time of `promotions`:
first of the search core alone (cifar_core.search.pruners.decide over TrialCurves), then through
the real path the attempt protocol takes (cifar_core.jobs.sweeping.after_epoch: read the sweep and
its trials from a real SQLite store in a temp home, decide, promote, record the stop), on a sweep
of `--trials` trials put in the store by cifar_core.testing.sweepstore.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time

from _bootstrap import ROOT  # noqa: F401  (the checkout, put on sys.path)

from cifar_core.search.config import COMPLETE, PAUSED, PRUNED, RUNNING, PrunerConfig, TrialCurve
from cifar_core.search.promotion import promotions
from cifar_core.search.pruners import decide


def made_up(trials: int, epochs: int, seed: int = 0) -> list[TrialCurve]:
    rng = random.Random(seed)
    out = []
    for i in range(trials):
        final = rng.uniform(0.4, 0.9)
        state = COMPLETE if i % 3 else rng.choice((PRUNED, PAUSED))
        last = epochs if state == COMPLETE else rng.randint(1, epochs - 1)
        curve = {e: round(final * (0.5 + 0.5 * e / epochs), 4) for e in range(1, last + 1)}
        out.append(TrialCurve(i, {"lr": rng.uniform(1e-4, 1e-2)}, curve, state))
    out.append(TrialCurve(trials, {"lr": 1e-3}, {1: 0.3, 2: 0.4, 3: 0.45}, RUNNING))
    return out


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    trials = made_up(args.trials, args.epochs)
    judged = trials[-1].trial_id
    decide(PrunerConfig("median"), trials, judged, 3)  # warm up: imports, Optuna's first study
    print(f"{args.trials} trials of {args.epochs} epochs, one decision after epoch 3, {args.repeats} repeats")
    print(f"{'pruner':<20} {'median ms':>10} {'worst ms':>10}")
    for kind in ("median", "percentile", "successive_halving", "hyperband"):
        config = PrunerConfig(kind, max_epochs=args.epochs)
        times = timed(lambda: decide(config, trials, judged, 3), args.repeats)
        print(f"{kind:<20} {statistics.median(times):>10.1f} {max(times):>10.1f}")
    for kind, short in (("successive_halving", "SH"), ("hyperband", "Hyperband")):
        config = PrunerConfig(kind, max_epochs=args.epochs)
        times = timed(lambda: promotions(config, trials), args.repeats)
        print(f"{'promotions, ' + short:<20} {statistics.median(times):>10.1f} {max(times):>10.1f}")
    through_store(args.trials, args.epochs, args.repeats)


def through_store(trials: int, epochs: int, repeats: int) -> None:
    """The decision through jobs/sweeping.after_epoch against a real SQLite store, per pruner."""
    home = tempfile.mkdtemp(prefix="cifar-bench-decision-")
    os.environ["CIFAR_LAB_HOME"] = home
    try:
        from cifar_core.jobs import store, sweeping
        from cifar_core.search.config import SearchConfig
        from cifar_core.testing.sweepstore import fill_sweep

        print(f"\nthrough the store (jobs/sweeping.after_epoch, SQLite in {home}): {trials} trials of {epochs} epochs, "
              f"the last judged after epoch 3, {repeats} repeats")
        print(f"{'pruner':<20} {'median ms':>10} {'worst ms':>10}  first verdict")
        for kind in ("median", "percentile", "successive_halving", "hyperband"):
            conn = store.connect()
            search = SearchConfig("random", PrunerConfig(kind, max_epochs=epochs), max_trials=trials)
            _, lease = fill_sweep(conn, search, epochs)
            verdict = sweeping.after_epoch(conn, lease, 3)  # the first call may promote or stop: the store changes
            times = timed(lambda: sweeping.after_epoch(conn, lease, 3), repeats)
            print(f"{kind:<20} {statistics.median(times):>10.1f} {max(times):>10.1f}  {verdict}")
            conn.close()
    finally:
        shutil.rmtree(home)


if __name__ == "__main__":
    main()
