"""Starting the lab's consumer: a local worker, or a Ray dispatcher when `$CIFAR_LAB_RAY` names a
cluster. The app calls `ensure_worker` on every page, so it never waits for the process it
starts; a dispatcher that cannot join its cluster records why once (`record_start_problem`),
and is not started again for that address until the Training page's "try again"."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cifar_core import config
from cifar_core.jobs import store
from cifar_core.jobs.worker import ROOT, WorkerInfo, list_workers

log = logging.getLogger("cifar_lab.worker")

RAY_ENV = "CIFAR_LAB_RAY"  # the app starts a Ray dispatcher on this address instead of a local worker
DISPATCHER_PREFIX = "ray-"  # a Ray dispatcher's worker id starts so
START_SECONDS = 20.0  # a worker started this long ago has registered, or failed to
SPAWNED_FILE = "worker-spawned.json"  # in the lab's home: the worker this lab started last
PROBLEM_FILE = "worker-problem.json"  # in the lab's home: why the wanted dispatcher could not start


def ensure_worker(extra_args: tuple[str, ...] = ()) -> int | None:
    """Start a background worker process of the kind this app wants unless one is alive, without
    waiting for it. Returns its pid, or None when none was started. With `$CIFAR_LAB_RAY` set (a
    Ray address) the kind is a Ray dispatcher, else a local worker; a live worker of the other
    kind on this machine is asked to stop (SIGTERM: it hands its job back) and replaced. A
    dispatcher that could not join its cluster is not started again for the same address until
    `clear_start_problem()` (the Training page says why, and offers to try again).

    The worker runs in its own session, so stopping or restarting the app never stops it."""
    import fcntl

    address = os.environ.get(RAY_ENV, "").strip()
    if address:
        extra_args = ("--ray", address, *extra_args)
    with open(config.lab_home() / "worker-spawn.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two app sessions starting at once start one worker
        problem = start_problem()
        if problem is not None and problem.address == address:
            return None
        if _spawned_alive():
            return None
        conn = store.connect()
        try:
            alive = [w for w in list_workers(conn) if w.alive]
        finally:
            conn.close()
        if any(is_dispatcher(w) == bool(address) for w in alive):
            return None
        _stop_other_kind(alive)
        pid = spawn_worker(extra_args, wait=False)
        _write_json(config.lab_home() / SPAWNED_FILE, {"pid": pid, "at": time.time()})
        return pid


def is_dispatcher(w: WorkerInfo) -> bool:
    return w.id.startswith(DISPATCHER_PREFIX)


def _stop_other_kind(alive: list[WorkerInfo]) -> None:
    here = socket.gethostname()
    for w in alive:
        if w.host != here:
            continue  # another machine's worker is its owner's to stop
        kind = "a Ray dispatcher" if is_dispatcher(w) else "a local worker"
        log.warning("stopping %s (pid %s): this app asks for the other kind", kind, w.pid)
        try:
            os.kill(w.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def _spawned_alive() -> bool:
    """Whether the worker this lab started last is still starting (alive, not yet registered for
    long): a second caller must not start another meanwhile."""
    seen = _read_json(config.lab_home() / SPAWNED_FILE)
    if not seen:
        return False
    pid = int(seen.get("pid", 0))
    if time.time() - float(seen.get("at", 0)) > START_SECONDS or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"cifar_core" in cmdline


@dataclass(frozen=True)
class StartProblem:
    address: str  # the Ray address it could not join
    reason: str  # the error, naming the fix
    at: float  # when (time.time())


def record_start_problem(address: str, reason: str) -> None:
    """A dispatcher that could not join its cluster says so once, for the Training page."""
    _write_json(config.lab_home() / PROBLEM_FILE, {"address": address, "reason": reason, "at": time.time()})


def start_problem() -> StartProblem | None:
    seen = _read_json(config.lab_home() / PROBLEM_FILE)
    if not seen:
        return None
    return StartProblem(str(seen.get("address", "")), str(seen.get("reason", "")), float(seen.get("at", 0)))


def clear_start_problem() -> None:
    (config.lab_home() / PROBLEM_FILE).unlink(missing_ok=True)


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def spawn_worker(extra_args: tuple[str, ...] = (), wait: bool = True) -> int:
    """Start `python -m cifar_core worker EXTRA_ARGS` in its own session, logging to worker.log;
    with `wait`, until it has registered (or exited, or 20 s passed)."""
    log_path = config.logs_dir() / "worker.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cifar_core", "worker", *extra_args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=ROOT,
            env=config.tf_env(),
        )
    if not wait:
        return proc.pid
    conn = store.connect()
    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and proc.poll() is None:
            if store.worker_registered(conn, proc.pid):
                break
            time.sleep(0.2)
    finally:
        conn.close()
    return proc.pid
