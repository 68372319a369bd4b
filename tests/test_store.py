"""The store layer on a real SQLite file: the schema, and the statements every other layer uses."""

from __future__ import annotations

import pytest

from cifar_core.errors import StoreError
from cifar_core.jobs import store

DOC = {"name": "tiny", "epochs": 2, "seed": 5, "layers": []}


def test_store_is_wal_with_schema_version(conn, home):
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version(conn) == store.SCHEMA_VERSION
    assert (home / "lab.sqlite3").exists()


def test_newer_schema_is_refused(conn, home):
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        store.connect(home / "lab.sqlite3")


def test_a_file_that_is_not_sqlite_gives_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the lab store .*bad.sqlite3"):
        store.connect(bad)


def _job(conn, home, name="tiny", state="queued") -> int:
    with store.transaction(conn):
        return store.insert_job(conn, None, dict(DOC, name=name), "src", state, 3, 10, home / "runs", store.now())


def test_a_job_and_its_run_row_share_one_id(conn, home):
    job_id = _job(conn, home)
    assert store.job_row(conn, job_id)["name"] == "tiny"
    run = store.run_row(conn, job_id)
    assert (run["params"], run["seed"], run["epochs_planned"]) == (10, 5, 2)
    assert run["artifacts_dir"] == str(home / "runs" / str(job_id))


def test_update_job_only_where_the_conditions_hold(conn, home):
    job_id = _job(conn, home, state="running")
    with store.transaction(conn):
        assert store.update_job(conn, job_id, {"worker_id": "w1"}, batch=3) == 0  # nobody holds it
        assert store.update_job(conn, job_id, {"state": "running"}, worker_id="w1", attempts=store.Expr("attempts + 2")) == 1
    row = store.job_row(conn, job_id)
    assert (row["worker_id"], row["attempts"], row["batch"]) == ("w1", 2, 0)


def test_column_names_are_checked_before_they_reach_sql(conn, home):
    job_id = _job(conn, home)
    with pytest.raises(StoreError, match="not a column name"):
        store.update_job(conn, job_id, **{"state = 'x'; --": 1})
    with pytest.raises(StoreError, match="not a column name"):
        store.update_run(conn, job_id, **{"test_accuracy=1,params": 2})


def test_saved_experiments_are_replaced_by_name(conn):
    store.save_experiment(conn, "b", {"name": "b", "epochs": 1})
    store.save_experiment(conn, "a", {"name": "a", "epochs": 1})
    store.save_experiment(conn, "b", {"name": "b", "epochs": 7})
    assert store.experiment_names(conn) == ["a", "b"]
    assert store.experiment_doc(conn, "b")["epochs"] == 7
    assert store.experiment_doc(conn, "missing") is None


def test_metric_rows_by_run_then_epoch(conn, home):
    first, second = _job(conn, home), _job(conn, home)
    with store.transaction(conn):
        for run, epoch in ((second, 2), (first, 1), (second, 1)):
            store.insert_metrics(conn, run, {"epoch": epoch, "loss": float(epoch)}, ("loss",), store.now())
    rows = store.metric_rows(conn, None, ("loss",))
    assert [(r["run"], r["epoch"]) for r in rows] == [(first, 1), (second, 1), (second, 2)]
    assert store.metric_rows(conn, [], ("loss",)) == []
    assert [r["epoch"] for r in store.metric_rows(conn, [second], ("loss",))] == [1, 2]


def test_groups_list_their_jobs_newest_group_first(conn, home):
    with store.transaction(conn):
        g1 = store.insert_group(conn, "sweep", "one", {"k": 1}, store.now())
        g2 = store.insert_group(conn, "sweep", "two", {}, store.now())
        ids = [store.insert_job(conn, g1, DOC, "src", "queued", 3, 0, home, store.now()) for _ in range(2)]
    assert store.group_job_ids(conn, g1) == ids
    assert [r["id"] for r in store.group_rows(conn, "sweep")] == [g2, g1]
    assert store.group_row(conn, g1, "repeats") is None


def test_workers_register_beat_and_stop(conn):
    store.register_worker(conn, "w1", 123, "host", 2)
    assert store.worker_registered(conn, 123)
    store.touch_worker(conn, "w1", 7)
    assert store.worker_rows(conn)[0]["current_job"] == 7
    store.stop_worker(conn, "w1")
    assert store.worker_rows(conn) == [] and not store.worker_registered(conn, 123)


# ------------------------------------------------------------------ never silently replaced (issue 13)


def _a_run_folder(home):
    (home / "runs" / "1").mkdir(parents=True)
    (home / "runs" / "1" / "model.keras").write_bytes(b"the old run 1's model")


def test_an_emptied_store_beside_run_folders_is_refused(home):
    conn = store.connect(home / "lab.sqlite3")
    conn.close()
    _a_run_folder(home)
    (home / "lab.sqlite3").write_bytes(b"")  # truncated to 0 bytes
    for extra in ("lab.sqlite3-wal", "lab.sqlite3-shm"):
        (home / extra).unlink(missing_ok=True)
    with pytest.raises(StoreError, match=r"lab.sqlite3 is empty but .*runs holds 1 run folder\(s\); restore it"):
        store.connect(home / "lab.sqlite3")
    (home / "lab.sqlite3").unlink()
    with pytest.raises(StoreError, match="is missing but"):
        store.connect(home / "lab.sqlite3")
    assert (home / "runs" / "1" / "model.keras").read_bytes() == b"the old run 1's model"


def test_a_new_job_never_takes_an_existing_run_folder(conn, home):
    (home / "runs" / "1").mkdir(parents=True)  # left by a store this one does not know
    with pytest.raises(StoreError, match="run folder .*runs/1 exists but the store has no run 1"):
        _job(conn, home)
    assert store.job_row(conn, 1) is None  # the transaction rolled back


def test_backups_roll_and_restore_brings_the_runs_back(conn, home):
    _job(conn, home, name="kept")
    first = store.backup(conn, keep=2)
    for _ in range(3):
        store.backup(conn, keep=2)
    assert len(list(store.backups_dir(home / "lab.sqlite3").glob("lab-*.sqlite3"))) == 2
    assert not first.exists()
    assert store.newest_backup_age(home / "lab.sqlite3") < 60
    conn.close()
    (home / "lab.sqlite3").write_bytes(b"")
    used, kept = store.restore(path=home / "lab.sqlite3")
    assert kept is not None and kept.name.startswith("lab.sqlite3.replaced-") and kept.stat().st_size == 0
    again = store.connect(home / "lab.sqlite3")
    assert store.job_row(again, 1)["name"] == "kept"
    again.close()


def test_restore_refuses_what_is_not_a_store(home, tmp_path):
    with pytest.raises(StoreError, match="no backup in"):
        store.restore(path=home / "lab.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 50)
    with pytest.raises(StoreError, match="not a readable store"):
        store.restore(junk, path=home / "lab.sqlite3")


def test_a_version_1_store_is_upgraded_in_place(home):
    import sqlite3

    old = sqlite3.connect(home / "lab.sqlite3")
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, group_id INTEGER, name TEXT NOT NULL, spec_json TEXT NOT NULL,"
        " data_source TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " max_attempts INTEGER NOT NULL DEFAULT 3, worker_id TEXT, lease_expires_at REAL,"
        " cancel_requested INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL, ended_at REAL,"
        " error TEXT, epoch INTEGER NOT NULL DEFAULT 0, batch INTEGER NOT NULL DEFAULT 0,"
        " batches INTEGER NOT NULL DEFAULT 0, progress_at REAL);"
        "INSERT INTO jobs (name, spec_json, data_source, state, created_at) VALUES ('old', '{}', 'src', 'queued', 0);"
        "CREATE TABLE metrics (run_id INTEGER NOT NULL, epoch INTEGER NOT NULL, loss REAL, accuracy REAL,"
        " val_loss REAL, val_accuracy REAL, seconds REAL, learning_rate REAL, recorded_at REAL NOT NULL,"
        " PRIMARY KEY (run_id, epoch));"
        "INSERT INTO metrics (run_id, epoch, loss, seconds, recorded_at) VALUES (1, 1, 2.0, 30.0, 0);"
    )
    old.close()
    conn = store.connect(home / "lab.sqlite3")
    assert store.schema_version(conn) == store.SCHEMA_VERSION == 9
    row = store.job_row(conn, 1)
    assert row["name"] == "old" and row["crashes"] == 0 and row["node"] is None
    assert (row["phase"], row["phase_step"], row["phase_steps"], row["phase_at"]) == (None, 0, 0, None)  # version 3
    assert (row["attempt_at"], row["train_seconds"]) == (None, None)  # version 5; a version-1 store had no runs
    assert row["stop_decision"] is None  # version 6
    assert row["submitted_by"] is None and store.audit_rows(conn, None, 5) == []  # version 9
    [metric] = store.metric_rows(conn, [1], ("loss", "seconds", "val_seconds"))
    assert (metric["loss"], metric["seconds"], metric["val_seconds"]) == (2.0, 30.0, None)
    [system] = store.metric_rows(conn, [1], ("cpu_seconds", "peak_rss_bytes", "node", "cpu_model", "cores"))
    assert tuple(system)[2:] == (None,) * 5  # version 7: not recorded, never 0
    assert store.batch_point_rows(conn, [1]) == []
    conn.close()


@pytest.mark.parametrize("version", [2, 3])
def test_a_version_2_or_3_store_gains_the_latency_columns_and_table(home, version):
    """The version-4 step adds only what is missing, so it runs on a store at 2 or at 3 (another
    branch's version 3 may or may not have added a column of its own)."""
    conn = store.connect(home / "lab.sqlite3")
    conn.execute("DROP TABLE latency_measurements")
    for column in ("macs", "latency_spread_pct", "measured_load", "latency_session")[: 4 if version == 2 else 3]:
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    conn.close()
    conn = store.connect(home / "lab.sqlite3")
    assert store.schema_version(conn) == store.SCHEMA_VERSION == 9
    columns = {r["name"] for r in conn.execute("PRAGMA table_info(runs)")}
    assert {"macs", "latency_spread_pct", "measured_load", "latency_session"} <= columns
    with store.transaction(conn):
        for _ in (1, 2):
            store.insert_job(conn, None, {"name": "x"}, "src", "succeeded", 3, 10, home / "runs", 0.0)
        first = store.insert_latency_session(conn, [
            {"run_id": 1, "rounds": 3, "p50_ms": 1.0, "spread_pct": 4.0, "p95_ms": 1.5, "throughput_ips": 900.0,
             "other_load": 0.1, "busy": 0}], 1.0)
        second = store.insert_latency_session(conn, [
            {"run_id": r, "rounds": 5, "p50_ms": 2.0, "spread_pct": 8.0, "p95_ms": 2.5, "throughput_ips": 500.0,
             "other_load": None, "busy": 1} for r in (1, 2)], 2.0)
    assert (first, second) == (1, 2)
    rows = store.latency_rows(conn, [1])
    assert [(r["session"], r["rounds"], r["other_load"]) for r in rows] == [(1, 3, 0.1), (2, 5, None)]
    assert len(store.latency_rows(conn, [1, 2])) == 3 and store.latency_rows(conn, []) == []
    conn.close()
