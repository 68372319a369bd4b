"""Benchmark: what the Ray dispatcher costs over a local worker, and what a two-node cluster buys.

Prints, in one run:
- **the same job** (default: preset exp4, 3 epochs, on the real data) through a local worker
  (`worker --exit-when-idle --threads C`) and through the Ray dispatcher on a one-node Ray
  cluster on this machine (`worker --ray ADDRESS`, each job asking for C CPUs), alternating for
  `--rounds` rounds: seconds per epoch of each, the ratio Ray/local of the mean epoch (goal:
  <= 1.05), and the extra start-up seconds per job (from the claim to the first epoch's start,
  Ray minus local: a fresh Ray worker process imports TensorFlow and receives the data);
- **N small jobs** (default: 6 jobs of exp4, 1 epoch) through a two-node Ray cluster on this
  machine (C/2 CPUs per node, one job per node) against one local worker with C threads:
  wall time and jobs per hour of each, and each job's start-up (claim to its first epoch's
  start): the local worker's (a new training process per job) against Ray's with a new trainer
  and with a warm one (a job on a node where the lab ran before: goal <= 3 s);
- Ray's memory: the resident memory (RSS) of each node's processes while idle.

Each Ray cluster is started here (token authentication on, temp dirs in a temporary folder) and
stopped at the end. Run it on a quiet machine: nothing else heavy at the same time.

    .venv/bin/python scripts/bench_cluster.py [--data ../shared/datasets/cifar10-jpeg.tar.gz] [--preset exp4]
        [--epochs 3] [--rounds 2] [--jobs 6] [--cpus 2] [--spec spec.json]

On a machine shared with other work, exp4 on the full data can take minutes per epoch; a small
net on small data (`--spec`, `--data` an image folder, e.g. cifar_core/testing/datagen.py's) still
shows the per-job start-up and the cluster's overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from _bootstrap import ROOT  # the checkout, put on sys.path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_jobs(docs: list[dict], source: str, worker_args: list[str], env: dict) -> tuple[list[int], float]:
    """Submit `docs`, run one worker (or dispatcher) until idle, quietly; (job ids, wall seconds)."""
    from cifar_core.testing.procs import run_until_idle

    return run_until_idle(docs, source, *worker_args, env=env, quiet=True)


def job_figures(job_id: int) -> dict:
    """Epoch seconds, and the start-up: from the claim to the start of the first epoch."""
    from cifar_core.jobs import queue, results, store

    conn = store.connect()
    try:
        job = queue.get_job(conn, job_id)
        assert job.state == queue.SUCCEEDED, f"job {job_id} {job.state}: {job.error}"
        first = conn.execute("SELECT recorded_at FROM metrics WHERE run_id = ? AND epoch = 1", (job_id,)).fetchone()[0]
        seconds = list(results.run_history(conn, job_id)["seconds"])
    finally:
        conn.close()
    return {"seconds": seconds, "startup": first - seconds[0] - job.started_at, "node": job.node,
            "pid": job.worker_pid, "claimed": job.started_at}


def startups(ids: list[int]) -> dict[str, list[float]]:
    """Each job's start-up (claim to its first epoch's start), split by its training process: the
    first job a process trained paid its start ("new"), the later ones found it ready ("warm")."""
    seen, out = set(), {"new": [], "warm": []}
    for f in sorted((job_figures(i) for i in ids), key=lambda f: f["claimed"]):
        out["warm" if f["pid"] in seen else "new"].append(f["startup"])
        seen.add(f["pid"])
    return out


def spread(xs: list[float]) -> str:
    return f"mean {sum(xs) / len(xs):.1f} s ({min(xs):.1f}-{max(xs):.1f}, {len(xs)} jobs)" if xs else "no job"


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes and all their descendants, in MB."""
    seen, todo, total = set(), list(pids), 0
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def start_cluster(base: Path, env: dict, cpus: int, nodes: int):
    from cifar_core.testing.procs import wait_for
    from cifar_core.testing.raycluster import Cluster

    cluster = Cluster(base, env, cpus=cpus, nodes=nodes)
    wait_for(lambda: cluster.alive_nodes() == nodes, timeout=180, interval=2, what=f"{nodes} Ray node(s)")
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/cifar10-jpeg.tar.gz"))
    parser.add_argument("--preset", default="exp4")
    parser.add_argument("--spec", help="a JSON spec file instead of the preset (e.g. a small net on small data)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=6, help="small jobs (1 epoch each) for the throughput part")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs per job (and per machine) for the local worker")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    os.environ["CIFAR_LAB_HOME"] = os.environ.get("CIFAR_LAB_HOME") or str(tmp / "home")
    Path(os.environ["CIFAR_LAB_HOME"]).mkdir(parents=True, exist_ok=True)

    from cifar_core.testing.raycluster import cluster_env

    from cifar_core.data.sources import load_dataset
    from cifar_core.spec.presets import get_preset

    load_dataset(args.data)  # the cache, once
    env = cluster_env()
    base = json.loads(Path(args.spec).read_text()) if args.spec else get_preset(args.preset)
    doc = dict(base, epochs=args.epochs)
    print(f"{doc['name']}, {args.epochs} epochs, {args.cpus} CPU(s) per job, data {args.data}", flush=True)

    # 1. The same job, local worker vs Ray dispatcher on a one-node cluster, alternating.
    cluster = start_cluster(tmp / "one", env, cpus=args.cpus, nodes=1)
    try:
        idle = rss_mb(cluster.pids())
        print(f"Ray, one idle node ({args.cpus} CPUs): {idle:.0f} MB RSS across its processes", flush=True)
        local, ray_ = [], []
        for round_ in range(1, args.rounds + 1):
            [i], _ = run_jobs([doc], args.data, ["--threads", str(args.cpus)], env)
            local.append(job_figures(i))
            [i], _ = run_jobs([doc], args.data, ["--ray", cluster.address], {**env, "CIFAR_LAB_JOB_CPUS": str(args.cpus)})
            ray_.append(job_figures(i))
            for label, runs in (("local worker", local), ("Ray task    ", ray_)):
                f = runs[-1]
                print(f"  round {round_} {label} s/epoch: " + ", ".join(f"{t:.2f}" for t in f["seconds"])
                      + f"   start-up {f['startup']:.1f} s", flush=True)
    finally:
        cluster.stop()
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    epochs_local = [t for f in local for t in f["seconds"]]
    epochs_ray = [t for f in ray_ for t in f["seconds"]]
    print(f"  ratio Ray/local of the mean epoch: {mean(epochs_ray) / mean(epochs_local):.3f}"
          f" (after the first epoch: {mean([t for f in ray_ for t in f['seconds'][1:]] or [0]) / max(1e-9, mean([t for f in local for t in f['seconds'][1:]] or [1])):.3f})")
    print(f"  extra start-up per job: {mean([f['startup'] for f in ray_]) - mean([f['startup'] for f in local]):+.1f} s", flush=True)

    # 2. N small jobs: a two-node cluster on this machine vs one local worker.
    small = [dict(base, epochs=1, seed=s) for s in range(args.jobs)]
    local_ids, wall_local = run_jobs(small, args.data, ["--threads", str(args.cpus)], env)
    per_node = max(1, args.cpus // 2)
    cluster = start_cluster(tmp / "two", env, cpus=per_node, nodes=2)
    try:
        idle = rss_mb(cluster.pids())
        print(f"Ray, two idle nodes ({per_node} CPU each): {idle:.0f} MB RSS in all, {idle / 2:.0f} MB per node", flush=True)
        ids, wall_ray = run_jobs(small, args.data, ["--ray", cluster.address], {**env, "CIFAR_LAB_JOB_CPUS": str(per_node)})
        nodes = {job_figures(i)["node"] for i in ids}
    finally:
        cluster.stop()
    print(f"{args.jobs} jobs of 1 epoch: one local worker {wall_local:.0f} s ({args.jobs * 3600 / wall_local:.0f} jobs/h);"
          f" two-node cluster {wall_ray:.0f} s ({args.jobs * 3600 / wall_ray:.0f} jobs/h, on {len(nodes)} nodes)", flush=True)
    local, ray_ = startups(local_ids), startups(ids)
    print(f"start-up per job, from its claim to its first epoch's start: local worker (a new training process each) "
          f"{spread(local['new'] + local['warm'])}; Ray, new trainer {spread(ray_['new'])}; Ray, warm trainer "
          f"{spread(ray_['warm'])} (goal: <= 3 s)", flush=True)


if __name__ == "__main__":
    main()
