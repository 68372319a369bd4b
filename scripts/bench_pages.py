"""Time the heaviest pages under AppTest: the leaderboard over many runs, the dataset gallery
once the dataset is cached in the process, and the Sweeps page showing a searching sweep of many
trials.

    .venv/bin/python scripts/bench_pages.py [--runs 500] [--epochs 20] [--data SOURCE] [--data-cache DIR]
                                            [--only leaderboard,gallery,sweeps] [--trials 200]

The store is filled through the real queue (submit, claim, record each epoch, finish) in a new
temp home; --data-cache keeps the decoded dataset in DIR between benchmark runs. The gallery uses /work/shared/datasets/cifar10-jpeg.tar.gz if present, else generated data.
AppTest gives every run a fresh st.cache_data, so the gallery's grid is composed on every timed
run: the browser sees the same or better. The sweep (cifar_core.testing.sweepstore: `--trials`
trials of 10 epochs under Hyperband, curves made up, most complete, some pruned or paused) is shown
with every figure: its status, curves, rung table, parallel coordinates and fANOVA importance.
Targets: leaderboard < 1 s, gallery < 1.5 s, sweeps < 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _bootstrap import ROOT  # the checkout, put on sys.path

REAL_DATA = Path("/work/shared/datasets/cifar10-jpeg.tar.gz")
TARGETS = {"leaderboard": 1.0, "gallery": 1.5, "sweeps": 1.5}


def fill_store(runs: int, epochs: int) -> float:
    """`runs` runs of `epochs` epochs each through the real queue; returns the seconds it took."""
    from cifar_core.jobs import queue
    from cifar_core.jobs import store
    from cifar_core.spec.presets import PRESETS
    from cifar_core.spec.summary import summarize
    from cifar_core.spec.validate import parse_spec

    started = time.perf_counter()
    conn = store.connect()
    names = list(PRESETS)
    docs = []
    for i in range(runs):
        doc = parse_spec(PRESETS[names[i % len(names)]]).to_dict()
        doc.update(name=f"{doc['name']} v{i // 50}", seed=i % 5, epochs=epochs, learning_rate=0.001 * (1 + i % 3))
        docs.append((doc, summarize(doc).total_params))
    ids = queue.submit_many(conn, docs, "bench").job_ids
    for i, job_id in enumerate(ids):
        lease = queue.claim(conn, "bench").lease
        assert lease.job_id == job_id
        for e in range(1, epochs + 1):
            acc = 0.3 + 0.4 * (1 - 0.85 ** e) + (i % 7) / 100
            queue.record_epoch(conn, lease, {"epoch": e, "loss": 2.0 * 0.9 ** e, "accuracy": acc, "val_loss": 2.1 * 0.92 ** e,
                                              "val_accuracy": acc - 0.05, "seconds": 3.0 + i % 4, "learning_rate": 0.001})
        state = queue.FAILED if i % 50 == 7 else queue.SUCCEEDED
        queue.finish(conn, lease, state, results={"test_accuracy": 0.6 + (i % 7) / 100, "test_loss": 1.1})
    conn.close()
    return time.perf_counter() - started


def time_runs(at, repeats: int, action=None) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        (action(at) if action else at).run()
        times.append(time.perf_counter() - started)
        if at.exception:
            raise SystemExit(f"the page raised: {at.exception[0].message}")
    return times


def app(page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.switch_page(page)
    return at


def report(name: str, times: list[float], target: float | None = None) -> None:
    median = statistics.median(times)
    verdict = "" if target is None else (f"  (target < {target:g} s: {'ok' if median < target else 'MISSED'})")
    print(f"{name:44} median {median:6.3f} s  min {min(times):6.3f} s  over {len(times)} runs{verdict}")


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="cifar-bench-"))
    try:
        return bench(home)
    finally:
        shutil.rmtree(home)  # a symlinked --data-cache is unlinked, not emptied


def bench(home: Path) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=500)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data", help="data source for the gallery (default: the real tarball if present)")
    p.add_argument("--data-cache", help="folder keeping the decoded dataset between runs (default: none, decode afresh)")
    p.add_argument("--only", default="leaderboard,gallery,sweeps", help="the pages to time, comma-separated")
    p.add_argument("--trials", type=int, default=200, help="trials of the sweep the Sweeps page shows (at most 200)")
    args = p.parse_args()
    pages = set(args.only.split(","))

    if args.data_cache:
        Path(args.data_cache).mkdir(parents=True, exist_ok=True)
        (home / "cache").symlink_to(Path(args.data_cache).resolve(), target_is_directory=True)
    data = args.data or (str(REAL_DATA) if REAL_DATA.exists() else None)
    if data is None:
        from cifar_core.testing.datagen import write_image_folder

        data = str(write_image_folder(home / "generated", n_train_per_class=500, n_test_per_class=100))
    os.environ.update(CIFAR_LAB_HOME=str(home), CIFAR_LAB_DATA=data, CIFAR_LAB_NO_WORKER="1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"home {home}\ndata {data}")

    if "sweeps" in pages:
        bench_sweeps(args.trials, args.repeats)
    if "leaderboard" in pages:
        bench_leaderboard(args.runs, args.epochs, args.repeats)
    if "gallery" in pages:
        bench_gallery(args.repeats)
    return 0


def bench_sweeps(trials: int, repeats: int) -> None:
    from cifar_core.jobs import store
    from cifar_core.search.config import PrunerConfig, SearchConfig
    from cifar_core.testing.sweepstore import fill_sweep

    started = time.perf_counter()
    conn = store.connect()
    search = SearchConfig("random", PrunerConfig("hyperband", max_epochs=10), max_trials=trials)
    group_id, _ = fill_sweep(conn, search, epochs=10)
    conn.close()
    print(f"put a {trials}-trial Hyperband sweep of 10 epochs in the store in {time.perf_counter() - started:.1f} s")
    at = app("pages/sweeps.py")
    at.query_params["sweep"] = str(group_id)
    report("sweeps, first run (imports)", time_runs(at, 1))
    report(f"sweeps, a {trials}-trial sweep with its figures", time_runs(at, repeats), TARGETS["sweeps"])


def bench_leaderboard(runs: int, epochs: int, repeats: int) -> None:
    seconds = fill_store(runs, epochs)
    print(f"filled the store with {runs} runs x {epochs} epochs through the queue in {seconds:.1f} s")
    at = app("pages/leaderboard.py")
    report("leaderboard, first run (imports)", time_runs(at, 1))
    report("leaderboard", time_runs(at, repeats), TARGETS["leaderboard"])
    at.multiselect(key="lb_runs").set_value([1, 2, 3, 4, 5]).run()
    report("leaderboard comparing 5 runs", time_runs(at, repeats), TARGETS["leaderboard"])


def bench_gallery(repeats: int) -> None:
    at = app("pages/gallery.py")
    started = time.perf_counter()
    at.run()
    print(f"gallery first run (loads and caches the dataset): {time.perf_counter() - started:.1f} s")
    report("gallery (dataset cached)", time_runs(at, repeats), TARGETS["gallery"])
    report("gallery reshuffle", time_runs(at, repeats, lambda a: a.button(key="gallery_reshuffle").click()),
           TARGETS["gallery"])


if __name__ == "__main__":
    sys.exit(main())
