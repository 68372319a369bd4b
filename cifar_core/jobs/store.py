"""The lab's one embedded store: a SQLite file under the lab's home, and every SQL statement the
lab runs. Other modules call the functions below and get plain rows or records back; none of them
writes SQL.

WAL mode so pages read while workers write; a busy timeout so writers wait instead of failing;
writes go through `transaction()`, which takes the write lock up front (BEGIN IMMEDIATE) so a
read-then-write (claiming a job) is atomic across processes. Open a connection inside each
process (and each thread) that uses it: never share one across a fork.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cifar_core import config
from cifar_core.errors import StoreError

SCHEMA_VERSION = 9
BACKUPS_KEPT = 5  # rolling online backups of the store under <home>/backups
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
    kind TEXT NOT NULL,              -- queue.GROUP_*: 'repeats' | 'sweep' | 'reproduce'
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
    attempts INTEGER NOT NULL DEFAULT 0,      -- claims so far (with worker_id, the fencing token of a lease)
    max_attempts INTEGER NOT NULL DEFAULT 3,  -- crashes without progress before the job fails
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
    progress_at REAL,
    crashes INTEGER NOT NULL DEFAULT 0,       -- attempts that ended without finishing an epoch
    claimed_epoch INTEGER NOT NULL DEFAULT 0, -- epochs done when the current attempt began
    note TEXT,                                -- what the worker says now (a pause for disk space)
    node TEXT,                                -- host (or cluster node) that trained its last epoch
    worker_pid INTEGER,                       -- the process that trained it
    phase TEXT,                               -- train.phases name of what it does now (NULL: not yet said)
    phase_step INTEGER NOT NULL DEFAULT 0,    -- validating: batches done (scoring: 0)
    phase_steps INTEGER NOT NULL DEFAULT 0,   -- validating: batches per pass (scoring: test-time views)
    phase_at REAL,                            -- when the phase began
    attempt_at REAL,                          -- when the current (or last) attempt was claimed
    stop_decision TEXT,                       -- a sweep's pruner stopped it: {"action": "prune"|"pause", "reason": ...}
    submitted_by TEXT                         -- the signed-in user who queued it (NULL: a lab without a login)
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
    train_seconds REAL,           -- seconds workers held the job, summed over its ended attempts (queue.py)
    model_bytes INTEGER,
    latency_p50_ms REAL,          -- batch 1, measured by the worker right after training
    latency_p95_ms REAL,
    throughput_ips REAL,          -- images per second at batch 256
    measured_while_busy INTEGER,  -- measured_load was above hostload.BUSY_CORES (or unreadable)
    macs INTEGER,                 -- multiply-adds per image (spec.cost), set with the latency
    latency_spread_pct REAL,      -- p50 spread between the measurement's rounds, % of p50
    measured_load REAL,           -- cores other processes used while it was measured
    latency_session INTEGER,      -- latency_measurements.session of its last joint measurement
    notes_md TEXT,                -- the team's Markdown note on the run
    archived_at REAL,             -- hidden from the pages by default (NULL: shown)
    trashed_at REAL,              -- in the trash (NULL: not), its folder moved to trash_dir
    trash_dir TEXT
);
CREATE TABLE IF NOT EXISTS run_tags (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    tag TEXT NOT NULL,
    PRIMARY KEY (run_id, tag)
);
CREATE INDEX IF NOT EXISTS run_tags_by_tag ON run_tags(tag);
CREATE TABLE IF NOT EXISTS config_tags (     -- tags of a seed group: its spec.identity.config_key
    config TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (config, tag)
);
CREATE TABLE IF NOT EXISTS config_notes (
    config TEXT PRIMARY KEY,
    notes_md TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS exports (         -- which run each export was made from
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    exported_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS latency_measurements (
    id INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,     -- the runs measured together, interleaved, share a session
    run_id INTEGER NOT NULL REFERENCES runs(id),
    measured_at REAL NOT NULL,
    rounds INTEGER NOT NULL,
    p50_ms REAL NOT NULL,         -- median of the rounds' batch-1 p50s
    spread_pct REAL NOT NULL,     -- (max - min) of the rounds' p50s, % of p50_ms
    p95_ms REAL NOT NULL,
    throughput_ips REAL NOT NULL,
    other_load REAL,              -- cores other processes used meanwhile (NULL: unreadable)
    busy INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS latency_by_run ON latency_measurements(run_id, session);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    epoch INTEGER NOT NULL,               -- 1-based
    loss REAL, accuracy REAL, val_loss REAL, val_accuracy REAL,
    seconds REAL, learning_rate REAL,
    recorded_at REAL NOT NULL,
    val_seconds REAL,                     -- the validation part of `seconds`
    cpu_seconds REAL,                     -- CPU time of the training process over `seconds` (every thread)
    peak_rss_bytes INTEGER,               -- its peak resident memory since its training began
    node TEXT,                            -- the host (or cluster node) that trained the epoch
    cpu_model TEXT,                       -- that machine's CPU
    cores INTEGER,                        -- and its logical CPUs (NULL in all five: not recorded)
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS batch_points (   -- running training loss and accuracy inside epochs
    job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,             -- the attempt that trained it
    epoch INTEGER NOT NULL,               -- 1-based epoch it falls in
    epoch_float REAL NOT NULL,            -- epoch - 1 + batch / batches
    loss REAL, accuracy REAL,             -- the epoch's running means up to that batch
    t REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_points_by_job ON batch_points(job_id, epoch);
CREATE TABLE IF NOT EXISTS audit (   -- who did what, in a lab with a login (team.py)
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,                 -- team.NEEDS key: submit, cancel, retry, export, restore...
    run_id INTEGER,                       -- the run acted on (NULL: none), no foreign key: a deleted run keeps its record
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_user ON audit(user, id);
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


def connect(path: Path | str | None = None, busy_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """Open (and if new, create) the store. Autocommit; use `transaction()` for writes.

    A store that is missing or empty while run folders exist beside it is refused: creating a
    new one would forget those runs and hand their ids, and folders, to new jobs."""
    path = Path(path) if path is not None else config.db_path()
    _refuse_a_lost_store(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=busy_ms / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the lab store {path}: {exc}; {_restore_hint(path)}") from exc
    return conn


def _run_folders(path: Path) -> list[Path]:
    runs = path.parent / "runs"
    return [p for p in runs.iterdir() if p.name.isdigit()] if runs.is_dir() else []


def _refuse_a_lost_store(path: Path) -> None:
    if path.exists() and path.stat().st_size > 0:
        return
    folders = _run_folders(path)
    if folders:
        state = "is empty" if path.exists() else "is missing"
        raise StoreError(f"the lab store {path} {state} but {path.parent / 'runs'} holds {len(folders)} run folder(s); "
                         f"{_restore_hint(path)}")


def _restore_hint(path: Path) -> str:
    backups = sorted(backups_dir(path).glob("lab-*.sqlite3"))
    if backups:
        return f"restore the newest backup with `python -m cifar_core restore` ({backups[-1].name} in {backups[-1].parent})"
    return f"restore it from a copy of your own, or move {path.parent / 'runs'} away to start afresh"


# ---------------------------------------------------------------- backups


def backups_dir(path: Path | None = None) -> Path:
    return (Path(path) if path is not None else config.db_path()).parent / "backups"


def backup(conn: sqlite3.Connection, keep: int = BACKUPS_KEPT) -> Path:
    """An online copy of the store (SQLite's backup API: consistent while others write) in
    <home>/backups, keeping the newest `keep`. Returns the new file."""
    folder = backups_dir(Path(conn.execute("PRAGMA database_list").fetchone()["file"]))
    folder.mkdir(parents=True, exist_ok=True)
    t = time.time_ns()  # one clock for the second and its fraction, so the names sort in time order
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(t // 10**9))
    target = folder / f"lab-{stamp}-{t % 10**9:09d}.sqlite3"
    partial = target.with_suffix(".partial")
    with sqlite3.connect(partial) as dest:
        conn.backup(dest)
    dest.close()
    partial.replace(target)
    for old in sorted(folder.glob("lab-*.sqlite3"))[:-keep]:
        old.unlink()
    return target


def newest_backup_age(path: Path | None = None) -> float | None:
    """Seconds since the newest backup was written (None: there is none)."""
    found = sorted(backups_dir(path).glob("lab-*.sqlite3"))
    return None if not found else max(0.0, time.time() - found[-1].stat().st_mtime)


def restore(source: Path | None = None, path: Path | None = None) -> tuple[Path, Path | None]:
    """Put a backup (default: the newest) in place of the store. The store it replaces, if any,
    is kept beside it as lab.sqlite3.replaced-<time>. Returns (backup used, store kept)."""
    path = Path(path) if path is not None else config.db_path()
    if source is None:
        found = sorted(backups_dir(path).glob("lab-*.sqlite3"))
        if not found:
            raise StoreError(f"no backup in {backups_dir(path)} to restore")
        source = found[-1]
    source = Path(source)
    if not source.is_file():
        raise StoreError(f"no backup at {source}; `ls {backups_dir(path)}` lists them")
    try:
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as check:
            ok = check.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{source} is not a readable store ({exc}); pick another backup") from exc
    if ok != "ok":
        raise StoreError(f"{source} fails SQLite's integrity check ({ok}); pick another backup")
    kept = None
    if path.exists():
        kept = path.with_name(f"{path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(kept)
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        extra.unlink(missing_ok=True)
    staged = path.with_suffix(".restoring")
    with sqlite3.connect(source) as src, sqlite3.connect(staged) as dest:
        src.backup(dest)
    staged.replace(path)
    return source, kept


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
        elif int(row["value"]) < SCHEMA_VERSION:
            _upgrade(conn, int(row["value"]))
        elif int(row["value"]) > SCHEMA_VERSION:
            raise StoreError(
                f"the lab store has schema version {row['value']}, newer than this code's "
                f"{SCHEMA_VERSION}; update CIFAR Lab or point CIFAR_LAB_HOME elsewhere"
            )


_ADDED_IN_2 = ("crashes INTEGER NOT NULL DEFAULT 0", "claimed_epoch INTEGER NOT NULL DEFAULT 0", "note TEXT",
               "node TEXT", "worker_pid INTEGER")


_ADDED_IN_3 = {
    "jobs": ("phase TEXT", "phase_step INTEGER NOT NULL DEFAULT 0", "phase_steps INTEGER NOT NULL DEFAULT 0",
             "phase_at REAL"),
    "metrics": ("val_seconds REAL",),
}  # and the batch_points table, which SCHEMA creates
_ADDED_IN_4 = ("macs INTEGER", "latency_spread_pct REAL", "measured_load REAL", "latency_session INTEGER")  # runs; and the latency_measurements table
_ADDED_IN_5 = ("attempt_at REAL",)  # jobs
_ADDED_IN_6 = ("stop_decision TEXT",)  # jobs
_ADDED_IN_7 = ("cpu_seconds REAL", "peak_rss_bytes INTEGER", "node TEXT", "cpu_model TEXT", "cores INTEGER")  # metrics
_ADDED_IN_8 = ("notes_md TEXT", "archived_at REAL", "trashed_at REAL", "trash_dir TEXT")  # runs; and run_tags, config_tags, config_notes, exports
_ADDED_IN_9 = ("submitted_by TEXT",)  # jobs; and the audit table


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    """Inside the migration's transaction: bring a store of an older schema up to this one."""
    if version < 2:
        _add_columns(conn, "jobs", _ADDED_IN_2)
    if version < 3:
        for table, columns in _ADDED_IN_3.items():
            _add_columns(conn, table, columns)
    if version < 4:
        _add_columns(conn, "runs", _ADDED_IN_4)
    if version < 5:
        _add_columns(conn, "jobs", _ADDED_IN_5)
    if version < 6:
        _add_columns(conn, "jobs", _ADDED_IN_6)
    if version < 7:
        _add_columns(conn, "metrics", _ADDED_IN_7)
    if version < 8:
        _add_columns(conn, "runs", _ADDED_IN_8)
        _add_columns(conn, "jobs", _ADDED_IN_9)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _add_columns(conn: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> None:
    have = {r["name"] for r in conn.execute(f"PRAGMA table_info({_column(table)})")}
    for column in columns:
        if column.split()[0] not in have:
            conn.execute(f"ALTER TABLE {_column(table)} ADD COLUMN {column}")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()["value"])


def now() -> float:
    return time.time()


def _marks(values) -> str:
    return ",".join("?" * len(values))


def _where(conditions: list[tuple[str, object]], column: str, ids: list[int] | None) -> tuple[str, list]:
    """A WHERE clause of `column = ?` conditions and, unless `ids` is None, `column IN (ids)`."""
    parts = [f"{_column_ref(c)} = ?" for c, _ in conditions]
    args = [v for _, v in conditions]
    if ids is not None:
        parts.append(f"{_column_ref(column)} IN ({_marks(ids)})")
        args += [int(i) for i in ids]
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


# ---------------------------------------------------------------- experiments (saved specs)


def save_experiment(conn: sqlite3.Connection, name: str, doc: dict) -> None:
    t = now()
    with transaction(conn):
        conn.execute(
            "INSERT INTO experiments (name, spec_json, created_at, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET spec_json = excluded.spec_json, updated_at = excluded.updated_at",
            (name, json.dumps(doc), t, t),
        )


def experiment_names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM experiments ORDER BY name").fetchall()]


def experiment_doc(conn: sqlite3.Connection, name: str) -> dict | None:
    row = conn.execute("SELECT spec_json FROM experiments WHERE name = ?", (name,)).fetchone()
    return None if row is None else json.loads(row[0])


# ---------------------------------------------------------------- groups and jobs


def insert_group(conn: sqlite3.Connection, kind: str, name: str, detail: dict, t: float) -> int:
    """Inside a transaction: a new group's id."""
    return conn.execute(
        "INSERT INTO groups (kind, name, detail_json, created_at) VALUES (?, ?, ?, ?)",
        (kind, name, json.dumps(detail), t),
    ).lastrowid


def insert_job(conn: sqlite3.Connection, group_id: int | None, doc: dict, data_source: str, state: str,
               max_attempts: int, params: int, artifacts_root: Path, t: float, submitted_by: str | None = None) -> int:
    """Inside a transaction: a new job and its run row; returns the id both share. An id whose
    run folder already exists is refused: its files belong to a run this store does not know."""
    job_id = conn.execute(
        "INSERT INTO jobs (group_id, name, spec_json, data_source, state, max_attempts, created_at, submitted_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (group_id, doc["name"], json.dumps(doc), data_source, state, max_attempts, t, submitted_by),
    ).lastrowid
    if (artifacts_root / str(job_id)).exists():
        raise StoreError(f"run folder {artifacts_root / str(job_id)} exists but the store has no run {job_id}: "
                         f"the store was replaced; {_restore_hint(artifacts_root.parent / 'lab.sqlite3')}")
    conn.execute(
        "INSERT INTO runs (id, params, seed, epochs_planned, artifacts_dir) VALUES (?, ?, ?, ?, ?)",
        (job_id, params, int(doc.get("seed", 0)), int(doc.get("epochs", 0)), str(artifacts_root / str(job_id))),
    )
    return job_id


def job_names(conn: sqlite3.Connection, prefix: str) -> list[str]:
    """The distinct names of jobs that start with `prefix` (compared exactly, no wildcards)."""
    rows = conn.execute("SELECT DISTINCT name FROM jobs WHERE substr(name, 1, ?) = ?", (len(prefix), prefix))
    return [r[0] for r in rows.fetchall()]


_JOB = "SELECT j.*, r.train_seconds FROM jobs j LEFT JOIN runs r ON r.id = j.id"  # a job and its train time


def job_row(conn: sqlite3.Connection, job_id: int) -> sqlite3.Row | None:
    return conn.execute(f"{_JOB} WHERE j.id = ?", (job_id,)).fetchone()


def job_rows(conn: sqlite3.Connection, states: tuple[str, ...], limit: int) -> list[sqlite3.Row]:
    """Jobs in the given states, newest first."""
    return conn.execute(
        f"{_JOB} WHERE j.state IN ({_marks(states)}) ORDER BY j.id DESC LIMIT ?", (*states, limit)
    ).fetchall()


def state_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())


def oldest_claimable(conn: sqlite3.Connection, queued: str) -> int | None:
    row = conn.execute(
        "SELECT id FROM jobs WHERE state = ? AND cancel_requested = 0 ORDER BY id LIMIT 1", (queued,)
    ).fetchone()
    return None if row is None else row["id"]


def expired_leases(conn: sqlite3.Connection, running: str, t: float) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT id, attempts, max_attempts, worker_id, cancel_requested, epoch, claimed_epoch, crashes, progress_at,"
        " stop_decision FROM jobs"
        " WHERE state = ? AND lease_expires_at < ?",
        (running, t),
    ).fetchall()


def update_job(conn: sqlite3.Connection, job_id: int, where: dict | None = None, **values) -> int:
    """Set columns of one job, optionally only where other columns hold given values (a lease
    check); returns the number of rows changed (0 or 1). Values may be `Expr` for SQL arithmetic."""
    sets, args = _assignments(values)
    clause, cond_args = _where([("id", job_id), *(where or {}).items()], "id", None)
    return conn.execute(f"UPDATE jobs SET {sets}{clause}", (*args, *cond_args)).rowcount


def update_run(conn: sqlite3.Connection, run_id: int, **values) -> None:
    """Set result columns of one run (test figures, deployment cost, ...)."""
    if values:
        sets, args = _assignments(values)
        conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*args, run_id))


def end_attempt(conn: sqlite3.Connection, job_id: int, end: float) -> None:
    """Inside the transaction that ends a job's current attempt: add its seconds, from its claim
    (`attempt_at`; `started_at` in a store from before it was kept) to `end`, to the run's
    train time."""
    conn.execute(
        "UPDATE runs SET train_seconds = COALESCE(train_seconds, 0)"
        " + MAX(0, ? - (SELECT COALESCE(attempt_at, started_at, ?) FROM jobs WHERE id = ?)) WHERE id = ?",
        (end, end, job_id, job_id),
    )


class Expr(str):
    """A SQL expression over the row's own columns, for `update_job` (e.g. "attempts + 1")."""


_COLUMN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _column(name: str) -> str:
    if not name or not set(name) <= _COLUMN_CHARS:  # column names come from code, never from users
        raise StoreError(f"not a column name: {name!r}")
    return name


def _column_ref(name: str) -> str:
    """A column, optionally qualified by its table's alias ("j.id")."""
    table, _, column = name.rpartition(".")
    return f"{_column(table)}.{_column(column)}" if table else _column(column)


def _assignments(values: dict) -> tuple[str, list]:
    parts, args = [], []
    for col, value in values.items():
        if isinstance(value, Expr):
            parts.append(f"{_column(col)} = {value}")
        else:
            parts.append(f"{_column(col)} = ?")
            args.append(value)
    return ", ".join(parts), args


def insert_metrics(conn: sqlite3.Connection, run_id: int, record: dict, columns: tuple[str, ...], t: float) -> None:
    """Inside a transaction: one finished epoch; a re-run epoch after a resume replaces its row."""
    cols = ("epoch", *columns)
    conn.execute(
        f"INSERT OR REPLACE INTO metrics (run_id, {', '.join(cols)}, recorded_at) VALUES (?, {_marks(cols)}, ?)",
        (run_id, *(record.get(c) for c in cols), t),
    )


def insert_batch_point(conn: sqlite3.Connection, job_id: int, attempt: int, epoch_float: float,
                       loss: float | None, accuracy: float | None, t: float) -> None:
    """Inside a transaction: one running point of `attempt`. Points an earlier attempt left in
    this epoch or later ones go: the epoch is being trained again after a resume."""
    epoch = max(1, math.ceil(epoch_float))  # batch b of B in epoch e: e - 1 < epoch_float <= e
    conn.execute("DELETE FROM batch_points WHERE job_id = ? AND attempt < ? AND epoch >= ?", (job_id, attempt, epoch))
    conn.execute(
        "INSERT INTO batch_points (job_id, attempt, epoch, epoch_float, loss, accuracy, t) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job_id, attempt, epoch, epoch_float, loss, accuracy, t),
    )


def batch_point_rows(conn: sqlite3.Connection, job_ids: list[int]) -> list[sqlite3.Row]:
    """(run, epoch_float, loss, accuracy) of the jobs' running points, by job then position."""
    if not job_ids:
        return []
    return conn.execute(
        "SELECT job_id AS run, epoch_float, loss, accuracy FROM batch_points"
        f" WHERE job_id IN ({_marks(job_ids)}) ORDER BY job_id, epoch_float, t", [int(i) for i in job_ids]
    ).fetchall()


def group_job_ids(conn: sqlite3.Connection, group_id: int) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM jobs WHERE group_id = ? ORDER BY id", (group_id,))]


def group_trials(conn: sqlite3.Connection, group_id: int) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
    """A group's jobs in the order they were submitted (id, name, state, spec_json, epoch, created_at,
    error, data_source, train_seconds, attempt_at, stop_decision, latency_p50_ms, macs, and
    sweep_params: the spec's, as JSON text, cut out by SQLite: parsing 200 whole specs was most of a
    stop decision's read) and their epochs' validation accuracy (run_id, epoch, val_accuracy,
    recorded_at)."""
    jobs = conn.execute(
        "SELECT j.id, j.name, j.state, j.spec_json, j.epoch, j.created_at, j.error, j.data_source, r.train_seconds,"
        " j.attempt_at, j.stop_decision, r.latency_p50_ms, r.macs,"
        " json_extract(j.spec_json, '$.sweep_params') AS sweep_params"
        " FROM jobs j"
        " LEFT JOIN runs r ON r.id = j.id WHERE j.group_id = ? ORDER BY j.id", (group_id,)).fetchall()
    curves = conn.execute(
        "SELECT m.run_id, m.epoch, m.val_accuracy, m.recorded_at FROM metrics m JOIN jobs j ON j.id = m.run_id"
        " WHERE j.group_id = ? ORDER BY m.run_id, m.epoch", (group_id,)).fetchall()
    return jobs, curves


def group_detail(conn: sqlite3.Connection, group_id: int) -> dict | None:
    """The detail a group was submitted with (a sweep: its space, base, search), or None."""
    row = conn.execute("SELECT detail_json FROM groups WHERE id = ?", (group_id,)).fetchone()
    return None if row is None else json.loads(row["detail_json"])


def set_group_detail(conn: sqlite3.Connection, group_id: int, detail: dict) -> None:
    """Replace a group's detail (a sweep resumed with a new budget, or stopped)."""
    conn.execute("UPDATE groups SET detail_json = ? WHERE id = ?", (json.dumps(detail), group_id))


def group_row(conn: sqlite3.Connection, group_id: int, kind: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT id, name, detail_json, created_at FROM groups WHERE id = ? AND kind = ?", (group_id, kind)
    ).fetchone()


def group_number(conn: sqlite3.Connection, group_id: int, kind: str) -> int:
    """The group's place among the groups of its kind, from 1 (sweeps and repeat sets share the ids)."""
    return conn.execute("SELECT COUNT(*) FROM groups WHERE kind = ? AND id <= ?", (kind, int(group_id))).fetchone()[0]


def group_by_number(conn: sqlite3.Connection, number: int, kind: str) -> int | None:
    """The id of the `number`-th group of its kind (from 1), or None."""
    if number < 1:
        return None
    row = conn.execute("SELECT id FROM groups WHERE kind = ? ORDER BY id LIMIT 1 OFFSET ?", (kind, number - 1)).fetchone()
    return None if row is None else row["id"]


def group_rows(conn: sqlite3.Connection, kind: str) -> list[sqlite3.Row]:
    """Groups of one kind, newest first."""
    return conn.execute(
        "SELECT id, name, detail_json, created_at FROM groups WHERE kind = ? ORDER BY id DESC", (kind,)
    ).fetchall()


def data_sources(conn: sqlite3.Connection, state: str) -> list[str]:
    """Data sources of the jobs in `state`, most recently used first."""
    rows = conn.execute(
        "SELECT data_source, MAX(id) AS last FROM jobs WHERE state = ? GROUP BY data_source ORDER BY last DESC",
        (state,),
    ).fetchall()
    return [r["data_source"] for r in rows]


# ---------------------------------------------------------------- runs and their metrics


def run_row(conn: sqlite3.Connection, run_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()


def metric_rows(conn: sqlite3.Connection, run_ids: list[int] | None, columns: tuple[str, ...]) -> list[sqlite3.Row]:
    """(run, epoch, *columns) of the runs' finished epochs (all runs when None), by run then epoch."""
    if run_ids is not None and not run_ids:
        return []
    where, args = _where([], "run_id", run_ids)
    cols = ", ".join(_column(c) for c in columns)
    return conn.execute(f"SELECT run_id AS run, epoch, {cols} FROM metrics{where} ORDER BY run_id, epoch", args).fetchall()


def spec_docs(conn: sqlite3.Connection, run_ids: list[int]) -> dict[int, dict]:
    """The spec document of each job, by id; unknown ids are left out."""
    if not run_ids:
        return {}
    rows = conn.execute(f"SELECT id, spec_json FROM jobs WHERE id IN ({_marks(run_ids)})", list(run_ids)).fetchall()
    return {r["id"]: json.loads(r["spec_json"]) for r in rows}


def board_rows(conn: sqlite3.Connection, run_ids: list[int] | None) -> list[sqlite3.Row]:
    """Job and run columns the leaderboard needs (all runs when None, never those in the trash), newest first."""
    if run_ids is not None and not run_ids:
        return []
    where, args = _where([], "j.id", run_ids)
    return conn.execute(
        "SELECT j.id AS run, j.name, j.state AS status, j.group_id AS grp, j.spec_json, j.data_source, j.created_at,"
        " r.seed, r.params, r.epochs_planned, r.test_accuracy, j.node, j.worker_pid, r.notes_md,"
        " r.archived_at IS NOT NULL AS archived, j.phase, j.error, j.note"
        " FROM jobs j JOIN runs r ON r.id = j.id AND r.trashed_at IS NULL"
        f"{where} ORDER BY j.id DESC", args
    ).fetchall()


def cost_rows(conn: sqlite3.Connection, state: str, source: str | None, run_ids: list[int] | None) -> list[sqlite3.Row]:
    """Deployment figures of the runs in `state` (of one data source and/or some ids; none in the trash), by id."""
    if run_ids is not None and not run_ids:
        return []
    where, args = _where([("j.state", state)] + ([("j.data_source", source)] if source is not None else []), "j.id", run_ids)
    return conn.execute(
        "SELECT j.id AS run, j.spec_json, j.data_source, r.test_loss, r.model_bytes, r.latency_p50_ms,"
        " r.latency_p95_ms, r.throughput_ips, r.measured_while_busy, r.train_seconds, r.macs, r.latency_spread_pct,"
        " r.measured_load, r.latency_session"
        f" FROM jobs j JOIN runs r ON r.id = j.id AND r.trashed_at IS NULL{where} ORDER BY j.id",
        args,
    ).fetchall()


LATENCY_COLUMNS = ("run_id", "rounds", "p50_ms", "spread_pct", "p95_ms", "throughput_ips", "other_load", "busy")


def insert_latency_session(conn: sqlite3.Connection, rows: list[dict], t: float) -> int:
    """Inside a transaction: one joint measurement, a row per run (LATENCY_COLUMNS), under a new
    session number; returns it."""
    session = conn.execute("SELECT COALESCE(MAX(session), 0) + 1 FROM latency_measurements").fetchone()[0]
    cols = ", ".join(LATENCY_COLUMNS)
    conn.executemany(
        f"INSERT INTO latency_measurements (session, measured_at, {cols}) VALUES (?, ?, {_marks(LATENCY_COLUMNS)})",
        [(session, t, *(row[c] for c in LATENCY_COLUMNS)) for row in rows],
    )
    return session


def latency_rows(conn: sqlite3.Connection, run_ids: list[int]) -> list[sqlite3.Row]:
    """Every stored latency measurement of the runs, oldest first."""
    if not run_ids:
        return []
    where, args = _where([], "run_id", run_ids)
    return conn.execute(f"SELECT * FROM latency_measurements{where} ORDER BY session, run_id", args).fetchall()


# ---------------------------------------------------------------- workers


def register_worker(conn: sqlite3.Connection, worker_id: str, pid: int, host: str, threads: int) -> None:
    t = now()
    with transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO workers (id, pid, host, threads, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)",
            (worker_id, pid, host, threads, t, t),
        )


def touch_worker(conn: sqlite3.Connection, worker_id: str, job_id: int | None) -> None:
    with transaction(conn):
        conn.execute("UPDATE workers SET heartbeat_at = ?, current_job = ? WHERE id = ?", (now(), job_id, worker_id))


def stop_worker(conn: sqlite3.Connection, worker_id: str) -> None:
    with transaction(conn):
        conn.execute("UPDATE workers SET stopped_at = ?, current_job = NULL WHERE id = ?", (now(), worker_id))


def worker_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Workers that have not said they stopped, oldest first."""
    return conn.execute("SELECT * FROM workers WHERE stopped_at IS NULL ORDER BY started_at").fetchall()


def worker_registered(conn: sqlite3.Connection, pid: int) -> bool:
    return conn.execute("SELECT 1 FROM workers WHERE pid = ? AND stopped_at IS NULL", (pid,)).fetchone() is not None


# ---------------------------------------------------------------- the Ray cluster, as its dispatcher last saw it

CLUSTER_KEY = "ray_cluster"


def put_cluster(conn: sqlite3.Connection, doc: dict | None) -> None:
    """Record the cluster's state (a JSON-able dict), or forget it (None: no dispatcher runs)."""
    with transaction(conn):
        if doc is None:
            conn.execute("DELETE FROM meta WHERE key = ?", (CLUSTER_KEY,))
        else:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (CLUSTER_KEY, json.dumps(doc)))


def cluster_doc(conn: sqlite3.Connection) -> dict | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (CLUSTER_KEY,)).fetchone()
    return None if row is None else json.loads(row["value"])


# ---------------------------------------------------------------- keeping runs in order: tags, notes, archive, trash


def run_ids_present(conn: sqlite3.Connection, run_ids: list[int]) -> list[int]:
    """Those of `run_ids` that name a run, in the order given."""
    if not run_ids:
        return []
    found = {r[0] for r in conn.execute(f"SELECT id FROM runs WHERE id IN ({_marks(run_ids)})", [int(i) for i in run_ids])}
    return [int(i) for i in run_ids if int(i) in found]


def add_run_tags(conn: sqlite3.Connection, run_ids: list[int], tags: list[str]) -> None:
    """Inside a transaction: tag each run with each tag (a tag it has already stays once)."""
    conn.executemany("INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?, ?)",
                     [(int(r), t) for r in run_ids for t in tags])


def remove_run_tags(conn: sqlite3.Connection, run_ids: list[int], tags: list[str]) -> None:
    conn.executemany("DELETE FROM run_tags WHERE run_id = ? AND tag = ?", [(int(r), t) for r in run_ids for t in tags])


def shared_group_tags(conn: sqlite3.Connection, group_id: int) -> list[str]:
    """The tags every run of a group carries (a searching sweep's later trials get them too)."""
    rows = conn.execute(
        "SELECT t.tag FROM run_tags t JOIN jobs j ON j.id = t.run_id WHERE j.group_id = ? GROUP BY t.tag"
        " HAVING COUNT(*) = (SELECT COUNT(*) FROM jobs WHERE group_id = ?) ORDER BY t.tag", (group_id, group_id))
    return [r[0] for r in rows]


def run_tag_rows(conn: sqlite3.Connection, run_ids: list[int] | None = None) -> list[sqlite3.Row]:
    """(run, tag) of the runs (all when None), by run then tag."""
    where, args = _where([], "run_id", run_ids)
    return conn.execute(f"SELECT run_id AS run, tag FROM run_tags{where} ORDER BY run_id, tag", args).fetchall()


def set_run_note(conn: sqlite3.Connection, run_id: int, text: str | None) -> None:
    conn.execute("UPDATE runs SET notes_md = ? WHERE id = ?", (text, int(run_id)))


def add_config_tags(conn: sqlite3.Connection, config: str, tags: list[str]) -> None:
    conn.executemany("INSERT OR IGNORE INTO config_tags (config, tag) VALUES (?, ?)", [(config, t) for t in tags])


def remove_config_tags(conn: sqlite3.Connection, config: str, tags: list[str]) -> None:
    conn.executemany("DELETE FROM config_tags WHERE config = ? AND tag = ?", [(config, t) for t in tags])


def set_config_note(conn: sqlite3.Connection, config: str, text: str | None) -> None:
    if text:
        conn.execute("INSERT OR REPLACE INTO config_notes (config, notes_md) VALUES (?, ?)", (config, text))
    else:
        conn.execute("DELETE FROM config_notes WHERE config = ?", (config,))


def config_label_rows(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], list[sqlite3.Row]]:
    """Every seed group's tags (config, tag) and notes (config, notes_md)."""
    return (conn.execute("SELECT config, tag FROM config_tags ORDER BY config, tag").fetchall(),
            conn.execute("SELECT config, notes_md FROM config_notes").fetchall())


def run_keeping_rows(conn: sqlite3.Connection, run_ids: list[int] | None = None) -> list[sqlite3.Row]:
    """(run, state, notes_md, archived_at, trashed_at, artifacts_dir, trash_dir) of the runs (all when None)."""
    where, args = _where([], "r.id", run_ids)
    return conn.execute(
        "SELECT r.id AS run, j.state, r.notes_md, r.archived_at, r.trashed_at, r.artifacts_dir, r.trash_dir"
        f" FROM runs r JOIN jobs j ON j.id = r.id{where} ORDER BY r.id", args).fetchall()


def hidden_run_ids(conn: sqlite3.Connection, archived: bool) -> set[int]:
    """Runs in the trash and, when `archived`, the archived ones too."""
    also = " OR archived_at IS NOT NULL" if archived else ""
    return {r[0] for r in conn.execute(f"SELECT id FROM runs WHERE trashed_at IS NOT NULL{also}")}


def set_archived(conn: sqlite3.Connection, run_ids: list[int], at: float | None) -> None:
    conn.executemany("UPDATE runs SET archived_at = ? WHERE id = ?", [(at, int(r)) for r in run_ids])


def set_trashed(conn: sqlite3.Connection, run_id: int, at: float | None, trash_dir: str | None) -> None:
    conn.execute("UPDATE runs SET trashed_at = ?, trash_dir = ? WHERE id = ?", (at, trash_dir, int(run_id)))


def forget_runs(conn: sqlite3.Connection, run_ids: list[int]) -> None:
    """Inside a transaction: remove the runs and everything stored of them (emptying the trash)."""
    if not run_ids:
        return
    ids = [int(i) for i in run_ids]
    for table, column in (("run_tags", "run_id"), ("metrics", "run_id"), ("latency_measurements", "run_id"),
                          ("exports", "run_id"), ("batch_points", "job_id"), ("runs", "id"), ("jobs", "id")):
        conn.execute(f"DELETE FROM {_column(table)} WHERE {_column(column)} IN ({_marks(ids)})", ids)


def record_export(conn: sqlite3.Connection, run_id: int, path: str, t: float) -> None:
    conn.execute("INSERT INTO exports (run_id, path, exported_at) VALUES (?, ?, ?)", (int(run_id), path, t))


def export_rows(conn: sqlite3.Connection, run_ids: list[int]) -> list[sqlite3.Row]:
    """(run_id, path, exported_at) of the exports made from the runs, oldest first."""
    where, args = _where([], "run_id", run_ids)
    return conn.execute(f"SELECT run_id, path, exported_at FROM exports{where} ORDER BY id", args).fetchall()


BASELINE_KEY = "baseline_run"


def put_baseline(conn: sqlite3.Connection, run_id: int | None) -> None:
    if run_id is None:
        conn.execute("DELETE FROM meta WHERE key = ?", (BASELINE_KEY,))
    else:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (BASELINE_KEY, str(int(run_id))))


def baseline_run(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (BASELINE_KEY,)).fetchone()
    return None if row is None else int(row["value"])


# ---------------------------------------------------------------- who did what (team.py)


def submitters(conn: sqlite3.Connection, job_ids: list[int]) -> dict[int, str | None]:
    """job id -> who queued it (None: a lab without a login), for the jobs that exist."""
    ids = [int(i) for i in job_ids]
    rows = conn.execute(f"SELECT id, submitted_by FROM jobs WHERE id IN ({_marks(ids)})", ids) if ids else []
    return {r["id"]: r["submitted_by"] for r in rows}


def group_submitter(conn: sqlite3.Connection, group_id: int) -> str | None:
    """Who queued a group's first job (a sweep's later trials are theirs too)."""
    row = conn.execute("SELECT submitted_by FROM jobs WHERE group_id = ? ORDER BY id LIMIT 1", (group_id,)).fetchone()
    return None if row is None else row["submitted_by"]


def insert_audit(conn: sqlite3.Connection, rows: list[tuple[str, str, str, int | None, str]], t: float) -> None:
    """Record (user, role, action, run id, detail) rows at time t, in one transaction."""
    with transaction(conn):
        conn.executemany("INSERT INTO audit (at, user, role, action, run_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
                         [(t, *row) for row in rows])


def audit_rows(conn: sqlite3.Connection, user: str | None, limit: int) -> list[sqlite3.Row]:
    """The newest `limit` audit records (of `user` alone unless None), with the run's name where it exists."""
    where, args = ("WHERE a.user = ? COLLATE NOCASE", [user]) if user else ("", [])
    return conn.execute(
        f"SELECT a.id, a.at, a.user, a.role, a.action, a.run_id, j.name AS run_name, a.detail FROM audit a"
        f" LEFT JOIN jobs j ON j.id = a.run_id {where} ORDER BY a.id DESC LIMIT ?", [*args, int(limit)]).fetchall()


def audit_users(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT user FROM audit ORDER BY user")]
