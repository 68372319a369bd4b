"""The lab's one embedded store: a SQLite file under the lab's home.

WAL mode so pages read while workers write; a busy timeout so writers wait instead of failing;
writes go through `transaction()`, which takes the write lock up front (BEGIN IMMEDIATE) so a
read-then-write (claiming a job) is atomic across processes. Open a connection inside each
process (and each thread) that uses it: never share one across a fork.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cifar_core import config
from cifar_core.errors import StoreError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,              -- 'repeats' | 'sweep'
    name TEXT NOT NULL,
    detail_json TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    group_id INTEGER REFERENCES groups(id),
    name TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    data_source TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    worker_id TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    error TEXT,
    epoch INTEGER NOT NULL DEFAULT 0,     -- epochs completed
    batch INTEGER NOT NULL DEFAULT 0,     -- batches done in the current epoch
    batches INTEGER NOT NULL DEFAULT 0,   -- batches per epoch
    progress_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, id);
CREATE INDEX IF NOT EXISTS jobs_by_group ON jobs(group_id);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY REFERENCES jobs(id),   -- a run is the result side of its job
    params INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    epochs_planned INTEGER NOT NULL,
    artifacts_dir TEXT NOT NULL,
    test_loss REAL,
    test_accuracy REAL,
    stopped_epoch INTEGER,
    stop_reason TEXT,
    train_seconds REAL,
    model_bytes INTEGER,
    latency_p50_ms REAL,          -- batch 1, measured by the worker right after training
    latency_p95_ms REAL,
    throughput_ips REAL,          -- images per second at batch 256
    measured_while_busy INTEGER   -- other jobs were running while it was measured
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    epoch INTEGER NOT NULL,               -- 1-based
    loss REAL, accuracy REAL, val_loss REAL, val_accuracy REAL,
    seconds REAL, learning_rate REAL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    threads INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    stopped_at REAL,
    current_job INTEGER
);
"""


def connect(path: Path | str | None = None) -> sqlite3.Connection:
    """Open (and if new, create) the store. Autocommit; use `transaction()` for writes."""
    path = Path(path) if path is not None else config.db_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the lab store {path}: {exc}; move the file away to start afresh") from exc
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row["value"]) > SCHEMA_VERSION:
            raise StoreError(
                f"the lab store has schema version {row['value']}, newer than this code's "
                f"{SCHEMA_VERSION}; update CIFAR Lab or point CIFAR_LAB_HOME elsewhere"
            )


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()["value"])


def now() -> float:
    return time.time()
