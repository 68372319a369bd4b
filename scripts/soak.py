"""Soak test of the queue's crash safety: N small jobs train on generated data while a chaos loop
SIGKILLs random workers (and starts replacements) for M minutes. At the end every job must have
succeeded, with every epoch stored exactly once, the store must pass SQLite's integrity check, and
nothing may be left running. Prints its figures; exits 1 if any check fails.

    .venv/bin/python scripts/soak.py --jobs 20 --minutes 3 --workers 2
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bootstrap import ROOT  # the checkout, put on sys.path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--epochs", type=int, default=4, help="epochs of each job")
    p.add_argument("--minutes", type=float, default=3.0, help="how long the chaos loop kills workers")
    p.add_argument("--workers", type=int, default=2, help="workers kept alive")
    p.add_argument("--kill-every", type=float, default=12.0, help="mean seconds between kills")
    p.add_argument("--lease", type=float, default=3.0, help="lease seconds of the workers")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cifar-soak-"))
    os.environ["CIFAR_LAB_HOME"] = str(home)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cifar_core.testing.datagen import tiny_spec, write_image_folder

    from cifar_core.jobs import queue, store
    from cifar_core.lab import Lab

    data = write_image_folder(home / "data", n_train_per_class=40, n_test_per_class=10)
    ids = Lab().submit(tiny_spec(epochs=args.epochs), str(data), repeats=args.jobs).job_ids
    print(f"home {home}: {len(ids)} jobs of {args.epochs} epochs, {args.workers} workers, lease {args.lease:g} s",
          flush=True)

    rng = random.Random(args.seed)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    started = 0

    def spawn() -> subprocess.Popen:
        nonlocal started
        started += 1
        out = open(logs / f"worker-{started}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "cifar_core", "worker", "--lease", str(args.lease),
                                 "--threads", "1"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    conn = store.connect()

    def unfinished() -> int:
        counts = queue.counts(conn)
        return counts[queue.QUEUED] + counts[queue.RUNNING]

    workers = [spawn() for _ in range(args.workers)]
    kills = 0
    t0 = time.monotonic()
    chaos_until = t0 + args.minutes * 60
    next_kill = t0 + rng.expovariate(1 / args.kill_every)
    try:
        while unfinished() and time.monotonic() < t0 + args.minutes * 60 + 1800:
            now = time.monotonic()
            if now < chaos_until and now >= next_kill:
                victim = rng.randrange(len(workers))
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                workers[victim] = spawn()
                kills += 1
                next_kill = now + rng.expovariate(1 / args.kill_every)
            time.sleep(0.2)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.kill()
    wall = time.monotonic() - t0

    jobs = [queue.get_job(conn, i) for i in ids]
    epochs = {i: [r["epoch"] for r in store.metric_rows(conn, [i], ("loss",))] for i in ids}
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    states = {s: sum(j.state == s for j in jobs) for s in queue.STATES}
    checks = {
        "every job succeeded": states[queue.SUCCEEDED] == len(ids),
        "every epoch stored exactly once": all(e == list(range(1, args.epochs + 1)) for e in epochs.values()),
        "integrity_check ok": integrity == "ok",
        "nothing left running or queued": unfinished() == 0,
    }
    attempts = sum(j.attempts for j in jobs)
    print(f"wall {wall:.0f} s; chaos {args.minutes:g} min; {kills} workers SIGKILLed; {started} started in all")
    print(f"jobs by state: {states}; attempts {attempts} for {len(ids)} jobs (retaken {attempts - len(ids)} times); "
          f"most attempts of one job {max(j.attempts for j in jobs)}")
    print(f"epochs stored {sum(len(e) for e in epochs.values())} of {len(ids) * args.epochs}; integrity_check {integrity}")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
