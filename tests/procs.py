"""Run the lab's real processes from tests: the CLI and workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
