"""Where the lab keeps its files, and which data source it reads by default."""

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
