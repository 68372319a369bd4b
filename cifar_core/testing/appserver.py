"""Run the real app (`make run`, or a bare Streamlit server) for a browser test or a benchmark and
clean up every process it started.

The app starts a background worker in its own session (it must outlive the app), so killing the
app's process group does not stop it: `stop_workers` finds workers through the store's workers
table, and `stray_pids` finds anything else still carrying the test's unique CIFAR_LAB_HOME.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cifar_core.testing.procs import free_port

CHROMIUM = "/usr/bin/chromium"
# Connection attempts this network refuses; each would only add noise and delay.
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu"]


def start_app(root: Path, port: int, env: dict, log: Path) -> subprocess.Popen:
    """`make run PORT=port` in root, as the README says, in its own process group."""
    with open(log, "ab") as out:
        return subprocess.Popen(["make", "run", f"PORT={port}"], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def start_server(root: Path, lab_home: Path, data, log: Path, args: tuple[str, ...] = (),
                 port: int | None = None) -> tuple[subprocess.Popen, int]:
    """A newly started Streamlit server on app.py (with Streamlit's `args`, e.g. --secrets.files),
    healthy, without a background worker (nothing trains), in its own process group; returns it and
    its port (a free one unless given). Stop it with `stop_app`."""
    env = {**os.environ, "CIFAR_LAB_HOME": str(lab_home), "CIFAR_LAB_DATA": str(data), "CIFAR_LAB_NO_WORKER": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    port = port or free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                 "--server.headless", "true", *args], cwd=root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_healthy(port, proc, log)
    except BaseException:
        stop_app(proc)
        raise
    return proc, port


def wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> float:
    """Seconds until /_stcore/health answers ok; fails early (with the log) if the app exits."""
    url = f"http://127.0.0.1:{port}/_stcore/health"
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"`make run` exited {proc.returncode} before it was healthy:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200 and resp.read().strip() == b"ok":
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer ok within {timeout}s:\n{tail(log)}")


def stop_app(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the whole process group (make, streamlit), SIGKILL it if it lingers."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc.pid, signal.SIGKILL)  # members that outlived make (streamlit) die too
    proc.wait(grace)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def worker_pids() -> list[int]:
    """Pids of every worker ever registered in the store of $CIFAR_LAB_HOME."""
    from cifar_core.jobs import store

    conn = store.connect()
    try:
        return [int(r["pid"]) for r in conn.execute("SELECT pid FROM workers")]
    finally:
        conn.close()


def stop_workers(home: Path, grace: float = 15) -> list[int]:
    """SIGTERM the workers of $CIFAR_LAB_HOME (= home), SIGKILL those that linger. Only pids that
    still carry home in their environment are signalled (pids get reused)."""
    pids = [p for p in worker_pids() if _belongs(p, home)]
    return terminate(pids, grace)


def stray_pids(home: Path) -> list[int]:
    """Live processes whose environment holds this (unique, temporary) CIFAR_LAB_HOME."""
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _belongs(int(d.name), home)]


def terminate(pids: list[int], grace: float = 15) -> list[int]:
    """SIGTERM pids, wait up to grace seconds, SIGKILL the rest. Returns those that needed SIGKILL."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    killed = [p for p in pids if _alive(p)]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in killed):
        time.sleep(0.1)
    return killed


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    """Running and not a zombie (an orphan's zombie waits for whoever adopted it to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _belongs(pid: int, home: Path) -> bool:
    if pid == os.getpid() or not _alive(pid):
        return False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return f"CIFAR_LAB_HOME={home}".encode() in environ


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"
