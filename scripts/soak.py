"""Soak test of the queue's crash safety: N small jobs train on generated data while a chaos loop
kills what runs them for M minutes. At the end every job must have succeeded, with every epoch
stored exactly once (never trained again after it was stored: its checkpoint was there) and its
run folder's history holding each epoch, the store must pass SQLite's integrity check, and
nothing may be left running. Prints its figures; exits 1 if any check fails.

Local (default): `--workers` local workers, random ones SIGKILLed (and replaced).
`--ray`: a Ray dispatcher on a two-node Ray cluster on this machine (cifar_core/testing/
raycluster.py, 1 CPU per node, one job per node), and the chaos picks among: SIGKILL a job's
training process (its warm Trainer), stop the second node (SIGKILL to all of it; started again
a few seconds later), SIGKILL the dispatcher (a new one is started at once).

The soak tests that nothing is lost or done twice, not that enough kills fail a job: a job fails,
by design, after `max_attempts` (3) attempts in a row that finished no epoch, and an attempt after
a job's last epoch (scoring, measuring) can finish none, so kills there could fail a healthy job.
So no strike ever ends the attempt of a job that already has 2 such crashes in a row (`fragile`,
read from the store's jobs.crashes): a worker or trainer is picked among the others, and the
dispatcher and the node are struck only while no unfinished job is fragile; a strike with no
such victim is held back (and counted).

    .venv/bin/python scripts/soak.py --jobs 20 --minutes 3 --workers 2
    .venv/bin/python scripts/soak.py --ray --jobs 12 --epochs 3 --minutes 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _bootstrap import ROOT  # the checkout, put on sys.path

NODE_DOWN_SECONDS = (5.0, 20.0)  # how long the second node stays down (uniform)


class EpochLog:
    """Every stored epoch as the chaos loop sees it: an epoch whose row is written again later (a
    re-run epoch replaces its row) was trained twice, a retrain."""

    def __init__(self) -> None:
        self.first: dict[tuple[int, int], float] = {}
        self.retrained: set[tuple[int, int]] = set()

    def see(self, conn, ids: list[int]) -> None:
        from cifar_core.jobs import store

        for r in store.metric_rows(conn, ids, ("recorded_at",)):
            key = (r["run"], r["epoch"])
            if self.first.setdefault(key, r["recorded_at"]) != r["recorded_at"]:
                self.retrained.add(key)


def check(conn, ids: list[int], epochs: int, seen: EpochLog, runs_dir: Path) -> dict[str, bool]:
    """The soak's verdict on the lab's store and run folders once the chaos is over."""
    from cifar_core.jobs import queue, store

    seen.see(conn, ids)
    jobs = [queue.get_job(conn, i) for i in ids]
    stored = {i: [r["epoch"] for r in store.metric_rows(conn, [i], ("loss",))] for i in ids}
    counts = queue.counts(conn)
    return {
        "every job succeeded": all(j.state == queue.SUCCEEDED for j in jobs),
        "every epoch stored exactly once": all(e == list(range(1, epochs + 1)) for e in stored.values())
        and not seen.retrained,
        "every run folder's history has each epoch once": all(_history(runs_dir / str(i)) == list(range(1, epochs + 1))
                                                              for i in ids),
        "integrity_check ok": conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok",
        "no job left queued or running": counts[queue.QUEUED] + counts[queue.RUNNING] == 0,
    }


def _history(run_dir: Path) -> list[int]:
    try:
        return [h["epoch"] for h in json.loads((run_dir / "history.json").read_text())]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def fragile(conn) -> set[int]:
    """The queued or running jobs that one more attempt without a finished epoch would fail."""
    from cifar_core.jobs import queue

    return {j.id for j in queue.list_jobs(conn, (queue.QUEUED, queue.RUNNING), limit=1_000_000)
            if j.crashes >= j.max_attempts - 1}


def local_victims(conn, pids: list[int]) -> list[int]:
    """The worker pids a strike may SIGKILL: those whose job is not fragile; an idle one only while
    no fragile job waits in the queue (it could claim one at any moment)."""
    from cifar_core.jobs import queue, store

    pid_of = {w["id"]: w["pid"] for w in store.worker_rows(conn)}
    held = {pid_of.get(j.worker_id): j.id for j in queue.list_jobs(conn, (queue.RUNNING,), limit=1_000_000)}
    spared = fragile(conn)
    queued_spared = spared - set(held.values())
    return [pid for pid in pids if (held[pid] not in spared if pid in held else not queued_spared)]


def ray_targets(conn, trainer_pids: list[int], node_up: bool) -> tuple[list[str], list]:
    """What a Ray strike may hit: the kinds ("dispatcher", "node", "trainer") and the running jobs
    whose trainer may be SIGKILLed (training now, not fragile). The dispatcher and the node end
    every attempt they hold (or are about to claim), so neither while any job is fragile."""
    from cifar_core.jobs import queue

    spared = fragile(conn)
    running = [j for j in queue.list_jobs(conn, (queue.RUNNING,), limit=1_000_000)
               if j.worker_pid and j.batch and j.worker_pid in trainer_pids and j.id not in spared]
    kinds = [] if spared else ["dispatcher"] + (["node"] if node_up else [])
    return kinds + (["trainer"] if running else []), running


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--epochs", type=int, default=4, help="epochs of each job")
    p.add_argument("--minutes", type=float, default=3.0, help="how long the chaos loop kills")
    p.add_argument("--workers", type=int, default=2, help="local workers kept alive (not with --ray)")
    p.add_argument("--ray", action="store_true", help="a Ray dispatcher on a two-node Ray cluster on this machine")
    p.add_argument("--kill-every", type=float, default=12.0, help="mean seconds between kills")
    p.add_argument("--lease", type=float, default=3.0, help="lease seconds of the workers (dispatchers)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cifar-soak-"))
    os.environ["CIFAR_LAB_HOME"] = str(home)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cifar_core.testing.datagen import tiny_spec, write_image_folder

    from cifar_core import config
    from cifar_core.jobs import queue, store
    from cifar_core.lab import Lab

    data = write_image_folder(home / "data", n_train_per_class=40, n_test_per_class=10)
    ids = Lab().submit(tiny_spec(epochs=args.epochs), str(data), repeats=args.jobs).job_ids
    kind = "a Ray dispatcher on two nodes" if args.ray else f"{args.workers} workers"
    print(f"home {home}: {len(ids)} jobs of {args.epochs} epochs, {kind}, lease {args.lease:g} s", flush=True)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    conn = store.connect()
    seen = EpochLog()
    chaos = (RayChaos if args.ray else LocalChaos)(args, home, logs, random.Random(args.seed))

    def unfinished() -> int:
        counts = queue.counts(conn)
        return counts[queue.QUEUED] + counts[queue.RUNNING]

    t0 = time.monotonic()
    chaos_until = t0 + args.minutes * 60
    next_kill = t0 + chaos.rng.expovariate(1 / args.kill_every)
    try:
        chaos.start()
        while unfinished() and time.monotonic() < chaos_until + 1800:
            now = time.monotonic()
            if now < chaos_until and now >= next_kill:
                chaos.strike(conn)
                next_kill = now + chaos.rng.expovariate(1 / args.kill_every)
            chaos.tick(now >= chaos_until)
            seen.see(conn, ids)
            time.sleep(0.2)
    finally:
        left = chaos.stop()
    wall = time.monotonic() - t0

    checks = check(conn, ids, args.epochs, seen, config.runs_dir())
    checks["nothing left running"] = not left
    jobs = [queue.get_job(conn, i) for i in ids]
    states = {s: sum(j.state == s for j in jobs) for s in queue.STATES}
    attempts = sum(j.attempts for j in jobs)
    kills = ", ".join(f"{n} {what}" for what, n in chaos.kills.items()) or "none"
    print(f"wall {wall:.0f} s; chaos {args.minutes:g} min; kills: {kills}; {chaos.held_back} strikes held back "
          f"(every victim had a job with {queue.MAX_ATTEMPTS - 1} crashes in a row); {chaos.started} consumers started in all")
    print(f"jobs by state: {states}; attempts {attempts} for {len(ids)} jobs (retaken {attempts - len(ids)} times); "
          f"most attempts of one job {max(j.attempts for j in jobs)}")
    print(f"epochs stored {len(seen.first)} of {len(ids) * args.epochs}; retrained after being stored "
          f"{len(seen.retrained)}{' ' + str(sorted(seen.retrained)) if seen.retrained else ''}")
    if left:
        print(f"left running: {left}")
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


class LocalChaos:
    """Local workers, a random one SIGKILLed and replaced at each strike."""

    def __init__(self, args, home: Path, logs: Path, rng: random.Random) -> None:
        self.args, self.home, self.logs, self.rng = args, home, logs, rng
        self.kills: Counter = Counter()
        self.held_back = 0  # strikes not made: each would have ended a fragile job's attempt
        self.started = 0
        self.workers: list[subprocess.Popen] = []

    def spawn(self, *worker_args: str, env: dict | None = None) -> subprocess.Popen:
        self.started += 1
        out = open(self.logs / f"worker-{self.started}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "cifar_core", "worker", "--lease", str(self.args.lease),
                                 *worker_args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)

    def start(self) -> None:
        self.workers = [self.spawn("--threads", "1") for _ in range(self.args.workers)]

    def strike(self, conn) -> None:
        pids = local_victims(conn, [w.pid for w in self.workers])
        if not pids:
            self.held_back += 1
            return
        victim = [w.pid for w in self.workers].index(self.rng.choice(pids))
        self.workers[victim].send_signal(signal.SIGKILL)
        self.workers[victim].wait()
        self.workers[victim] = self.spawn("--threads", "1")
        self.kills["workers SIGKILLed"] += 1

    def tick(self, calm: bool) -> None:
        pass

    def stop(self) -> list[str]:
        """SIGTERM every worker; what is still alive after (named), if anything."""
        for w in self.workers:
            w.send_signal(signal.SIGTERM)
        left = []
        for w in self.workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                left.append(f"worker {w.pid}")
                w.kill()
        return left


class RayChaos(LocalChaos):
    """One dispatcher on a two-node cluster; each strike SIGKILLs a training process (a running
    job's Trainer), the dispatcher, or the second node (restarted NODE_DOWN_SECONDS later): the
    kind struck least so far (a trainer only while one trains, the node only while it is up), and
    never one that would end a fragile job's attempt (see the module docstring)."""

    def start(self) -> None:
        from cifar_core.testing.procs import wait_for
        from cifar_core.testing.raycluster import Cluster, cluster_env

        self.env = {**cluster_env(), "CIFAR_LAB_JOB_CPUS": "1"}
        self.cluster = Cluster(Path(tempfile.mkdtemp(prefix="soak-ray-")), self.env)
        wait_for(lambda: self.cluster.alive_nodes() == 2, timeout=180, interval=2, what="two Ray nodes")
        self.node_back_at: float | None = None
        self.struck: Counter = Counter()
        self.workers = [self.dispatcher()]

    def dispatcher(self) -> subprocess.Popen:
        return self.spawn("--ray", self.cluster.address, env=self.env)

    def strike(self, conn) -> None:
        kinds, running = ray_targets(conn, self.cluster.trainer_pids(), self.node_back_at is None)
        if not kinds:
            self.held_back += 1
            return
        kind = min(kinds, key=lambda k: (self.struck[k], self.rng.random()))  # each kind in turn, in random order
        self.struck[kind] += 1
        if kind == "trainer":
            os.kill(self.rng.choice(running).worker_pid, signal.SIGKILL)
            self.kills["training processes SIGKILLed"] += 1
        elif kind == "node":
            self.cluster.stop_node()
            self.node_back_at = time.monotonic() + self.rng.uniform(*NODE_DOWN_SECONDS)
            self.kills["second node stopped"] += 1
        else:
            self.workers[0].send_signal(signal.SIGKILL)
            self.workers[0].wait()
            self.workers[0] = self.dispatcher()
            self.kills["dispatchers SIGKILLed"] += 1

    def tick(self, calm: bool) -> None:
        if self.node_back_at is not None and (calm or time.monotonic() >= self.node_back_at):
            self.cluster.restart_node()
            self.node_back_at = None

    def stop(self) -> list[str]:
        left = super().stop()
        deadline = time.monotonic() + 30  # a dead driver's actors go with it
        while self.cluster.trainer_pids() and time.monotonic() < deadline:
            time.sleep(0.5)
        left += [f"trainer {pid}" for pid in self.cluster.trainer_pids()]
        self.cluster.stop()
        return left


if __name__ == "__main__":
    sys.exit(main())
