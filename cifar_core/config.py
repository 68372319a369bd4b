"""Where the lab keeps its files, which data source it reads by default, and the environment its
TensorFlow processes start in."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "CIFAR_LAB_HOME"
DATA_ENV = "CIFAR_LAB_DATA"
DEFAULT_SOURCE = "keras"


def lab_home() -> Path:
    """The lab's home folder (`$CIFAR_LAB_HOME`, default `~/.cifar_lab`), created on first use."""
    home = Path(os.environ.get(HOME_ENV) or Path.home() / ".cifar_lab").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def db_path() -> Path:
    return lab_home() / "lab.sqlite3"


def cache_dir() -> Path:
    path = lab_home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    path = lab_home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir() -> Path:
    path = lab_home() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_source() -> str:
    """`$CIFAR_LAB_DATA` if set, else the official download through Keras."""
    return os.environ.get(DATA_ENV) or DEFAULT_SOURCE


def resolve_source(source: str | None) -> str:
    """The source a worker should read (default: `default_source()`): paths made absolute, so any
    working directory finds them."""
    source = source or default_source()
    return source if source == DEFAULT_SOURCE else str(Path(source).expanduser().resolve())


# TensorFlow's settings for every process the lab starts that trains or measures a model (a job's
# process, a Ray task, latency measurements); a value already in the environment wins.
# oneDNN: TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI or newer;
# on an AVX2-only CPU (Zen 3 here) they double the train step of the airbench net (1.2-1.5 against
# 2.6 s per batch of 1024; scripts/bench_steptime.py --onednn 1,0) and speed up the others too.
TF_ENV_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}


def tf_env() -> dict[str, str]:
    """This process's environment with the lab's TensorFlow settings added where unset."""
    return {**TF_ENV_DEFAULTS, **os.environ}


def run_cli_json(args: list[str], timeout: float, too_long: str):
    """Run `python -m cifar_core ARGS` (a command that prints JSON) in a child process with the
    lab's TensorFlow settings, so TensorFlow loads there and never in the caller (the Streamlit
    server, the Ray dispatcher); returns what it printed, parsed. LabError saying `too_long` when
    it runs over `timeout` seconds, or with the child's own last error line when it fails."""
    import json
    import subprocess
    import sys

    from cifar_core.errors import LabError

    cmd = [sys.executable, "-m", "cifar_core", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              cwd=Path(__file__).resolve().parents[1], env=tf_env())
    except subprocess.TimeoutExpired:
        raise LabError(too_long) from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise LabError(lines[-1].removeprefix("error: "))
    return json.loads(done.stdout)
