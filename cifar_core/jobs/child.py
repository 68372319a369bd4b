"""The process that trains one job for a worker: `python -m cifar_core _train-job ...`.

A worker (jobs/worker.py) never imports TensorFlow: for each job it claims it starts this
process with the job's lease, and watches it. Here `worker.train_job` starts renewing the lease,
sets TensorFlow's threads before its first op (importing it takes seconds, so only then), loads
the data set, trains, measures and closes the job on that lease, exactly as a worker once did
in-process. SIGTERM/SIGINT hand the job back to the queue at the next batch. The process dies
with its worker (a worker killed with SIGKILL leaves no training orphan behind to race the
worker that takes its job back).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import threading

from cifar_core.jobs import queue, store
from cifar_core.jobs.worker import WorkerConfig, train_job

COMMAND = "_train-job"  # hidden from the command line's help: only a worker starts it
PR_SET_PDEATHSIG = 1  # linux/prctl.h

log = logging.getLogger("cifar_lab.worker")


def command(lease: queue.Lease, cfg: WorkerConfig, threads: int) -> list[str]:
    """The command line of the process that trains the job `lease` holds, for this worker."""
    return [
        sys.executable, "-m", "cifar_core", COMMAND, str(lease.job_id), lease.worker_id, str(lease.attempt),
        "--lease-seconds", repr(cfg.lease_seconds), "--threads", str(threads),
        "--min-free-bytes", str(cfg.min_free_bytes), "--parent", str(os.getpid()),
    ]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m cifar_core {COMMAND}",
                                description="train one claimed job (started by a worker, not by hand)")
    p.add_argument("job_id", type=int)
    p.add_argument("worker_id")
    p.add_argument("attempt", type=int)
    p.add_argument("--lease-seconds", type=float, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--min-free-bytes", type=int, required=True)
    p.add_argument("--parent", type=int, required=True, help="the worker's pid: this process dies with it")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not _die_with(args.parent):
        log.error("job %s: worker %s (pid %s) is gone; not training", args.job_id, args.worker_id, args.parent)
        return 1
    shutdown = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: shutdown.set())
    lease = queue.Lease(args.job_id, args.worker_id, args.attempt)
    cfg = WorkerConfig(worker_id=args.worker_id, threads=args.threads, lease_seconds=args.lease_seconds,
                       min_free_bytes=args.min_free_bytes)
    conn = store.connect()
    try:
        job = queue.get_job(conn, lease.job_id)
        if job.state != queue.RUNNING or job.lease != lease:
            log.warning("job %s: attempt %s is no longer %s's (the job is %s); nothing to train",
                        lease.job_id, lease.attempt, lease.worker_id, job.state)
            return 0
        train_job(conn, job, cfg, shutdown)
    finally:
        conn.close()
    return 0


def _die_with(parent: int) -> bool:
    """Ask Linux to SIGKILL this process when `parent` dies; False if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent  # checked after the request: a parent that died before it is seen here
