"""Run the lab's real processes from tests and scripts: the CLI and workers, as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `python -m cifar_core` runs from here


def cli(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m cifar_core ARGS` as a user would, in the current environment."""
    proc = subprocess.run(
        [sys.executable, "-m", "cifar_core", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"cifar_core {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def start_worker(*args: str, log: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "cifar_core", "worker", *args], cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT, env=env)


def paced(pace: str) -> dict[str, str]:
    """This environment with `$CIFAR_LAB_PACE` set to `pace` (cifar_core/jobs/pace.py): workers
    started with it, and their training processes, publish and hold where the test says."""
    return {**os.environ, "CIFAR_LAB_PACE": pace}


def wait_for(predicate, timeout: float = 120, interval: float = 0.2, what: str = "condition"):
    """predicate() until it returns something truthy (returned); its last value in the failure."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")


def run_until_idle(docs: list[dict], source: str | None = None, *worker_args: str, env: dict[str, str] | None = None,
                   quiet: bool = False) -> tuple[list[int], float]:
    """Submit `docs` (one job each, validated against `source`, no group) to the lab at
    $CIFAR_LAB_HOME, then run `python -m cifar_core worker --exit-when-idle WORKER_ARGS` in the
    foreground until the queue is idle (`env`: the worker's environment, this one's by default;
    `quiet`: its output dropped). Returns the job ids and the worker's wall seconds. The jobs may
    have failed: read their state from the store."""
    from cifar_core.lab import Lab

    ids = list(Lab().enqueue(docs, None, source).job_ids)
    out = subprocess.DEVNULL if quiet else None
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cifar_core", "worker", "--exit-when-idle", *worker_args], cwd=ROOT,
                   check=True, env=env, stdout=out, stderr=out)
    return ids, time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
