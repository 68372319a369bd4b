"""The model helper: one warm process that loads finished models for the dashboard, so TensorFlow
never loads into the Streamlit server (README, "Memory").

The server's `Lab.predict_image` and `Lab.export` call `call(...)`, which hands the request to the
helper, `python -m cifar_core _helper`, and returns its answer: plain data (a DataFrame, an
ExportResult). The helper is started on the first request, imports Keras at once (so the first
prediction does not wait for it twice), keeps its loaded models (`prediction.load_trained_model`
caches them) and serves every later request of this server process, one at a time. A helper that
died (killed, out of memory) is replaced on the next request; one that dies while answering costs
that request a one-line LabError. It exits when the server does: its requests come over its stdin,
whose end it reads as the signal to stop.

The wire: each message is an 8-byte big-endian length and a pickle, over the helper's stdin and a
private copy of its stdout (the helper points its own fd 1 at stderr, so nothing a library prints
can break a message). Requests are (method, args, kwargs); answers ("ok", value) or ("error",
exception class name, one-line message). Both ends are this lab's own processes, started by the
server, so pickle is safe here; nothing else can reach the pipe.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cifar_core import config, errors
from cifar_core.errors import LabError

COMMAND = "_helper"  # python -m cifar_core _helper: not a user's command
_HEADER = struct.Struct(">Q")
START_TIMEOUT = 120.0  # seconds for a new helper to answer that it is ready
STOP_GRACE = 3.0


class HelperDied(LabError):
    """The helper exited or broke the pipe while answering."""


class _NotSent(Exception):
    """The request never reached the helper (its pipe was closed): safe to send again."""


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------- the wire


def _write(fd: int, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """n bytes from fd, or None at end of file; TimeoutError past the deadline."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read(fd: int, deadline: float | None = None):
    header = _read_exact(fd, _HEADER.size, deadline)
    if header is None:
        raise EOFError
    body = _read_exact(fd, _HEADER.unpack(header)[0], deadline)
    if body is None:
        raise EOFError
    return pickle.loads(body)


# ---------------------------------------------------------------- the helper's side


def serve(handlers: Mapping[str, Callable], warm: Callable[[], None] | None = None) -> int:
    """The helper's loop: answer requests from stdin until it closes. `warm` runs in a thread at
    start (importing Keras) while the first request is read."""
    out = os.dup(1)
    os.dup2(2, 1)  # whatever prints goes to the log, never into a message
    sys.stdout = sys.stderr
    if warm is not None:
        threading.Thread(target=warm, name="warm", daemon=True).start()
    _write(out, ("ready", os.getpid()))
    while True:
        try:
            method, args, kwargs = _read(0)
        except EOFError:
            return 0
        try:
            if method not in handlers:
                raise LabError(f"the model helper has no request {method!r}")
            answer = ("ok", handlers[method](*args, **kwargs))
        except LabError as exc:
            answer = ("error", type(exc).__name__, _first_line(exc))
        except Exception as exc:  # noqa: BLE001  (one line back to the page, the trace to the log)
            import traceback

            traceback.print_exc()
            answer = ("error", "LabError", f"{type(exc).__name__}: {_first_line(exc)}")
        try:
            _write(out, answer)
        except BrokenPipeError:
            return 0


# ---------------------------------------------------------------- the server's side


class Helper:
    """One helper process and its pipe; `request` sends one request and waits for the answer."""

    def __init__(self, log: Path):
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cifar_core", COMMAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, cwd=Path(__file__).resolve().parents[2], env=config.tf_env(), close_fds=True,
            )
        try:
            ready = _read(self.proc.stdout.fileno(), time.monotonic() + START_TIMEOUT)
        except (EOFError, TimeoutError):
            self.stop()
            raise HelperDied(f"the model helper did not start (exit status {self.proc.returncode}); see {log}") from None
        if ready[0] != "ready":
            self.stop()
            raise HelperDied(f"the model helper said {ready!r} instead of ready; see {log}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, method: str, args: tuple, kwargs: dict, timeout: float):
        try:
            _write(self.proc.stdin.fileno(), (method, args, kwargs))
        except OSError:  # BrokenPipeError: it died before reading the request
            raise _NotSent from None
        try:
            answer = _read(self.proc.stdout.fileno(), time.monotonic() + timeout)
        except TimeoutError:
            self.stop()
            raise LabError(f"the model helper took over {timeout:.0f} s to answer {method}; it was stopped and "
                           "starts again on the next request") from None
        except EOFError:
            self.proc.wait(timeout=STOP_GRACE)
            raise HelperDied(f"the model helper stopped (exit status {self.proc.returncode}) while answering {method}; "
                             f"it starts again on the next request; see {self.log}") from None
        if answer[0] == "ok":
            return answer[1]
        _, name, message = answer
        cls = getattr(errors, name, LabError)
        if not (isinstance(cls, type) and issubclass(cls, LabError)):
            cls = LabError
        try:
            exc = cls(message)
        except Exception:  # noqa: BLE001  (an error class built otherwise: the message still arrives)
            exc = LabError(message)
        raise exc

    def stop(self) -> None:
        """Close its stdin (it exits by itself), then kill it if it does not."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_helpers: dict[tuple, Helper] = {}
_lock = threading.Lock()


def _key() -> tuple:
    """A helper serves one lab home and data source (tests and scripts switch them in one process)."""
    return str(config.lab_home()), config.default_source()


def current() -> Helper:
    """This process's helper for the current lab home, started (or replaced, if it died) as needed.
    Call with the lock held."""
    key = _key()
    helper = _helpers.get(key)
    if helper is not None and helper.alive:
        return helper
    for other in [k for k in _helpers if k != key or not _helpers[k].alive]:
        _helpers.pop(other).stop()  # one helper at a time: another home's is done with
    helper = _helpers[key] = Helper(config.logs_dir() / "helper.log")
    return helper


def call(method: str, *args, timeout: float = 300, **kwargs):
    """`method` run in the helper with these arguments; its return value, or the LabError it raised
    (same class, one line). A helper found dead is replaced first; a request it could not even take
    (the pipe broke as it was written) is sent once more to a new one; a helper that dies while
    answering costs this request a HelperDied, and the next request starts a new helper."""
    with _lock:
        for attempt in (1, 2):
            helper = current()
            try:
                return helper.request(method, args, kwargs, timeout)
            except _NotSent:
                _forget(helper)
                if attempt == 2:
                    raise HelperDied(f"the model helper could not take {method}; see {helper.log}") from None
            except HelperDied:
                _forget(helper)
                raise


def _forget(helper: Helper) -> None:
    for key in [k for k, h in _helpers.items() if h is helper]:
        del _helpers[key]
    helper.stop()


def running() -> Helper | None:
    """The live helper serving the current lab home, if one is running (none is started)."""
    with _lock:
        helper = _helpers.get(_key())
        return helper if helper is not None and helper.alive else None


def stop_all() -> None:
    with _lock:
        while _helpers:
            _helpers.popitem()[1].stop()
