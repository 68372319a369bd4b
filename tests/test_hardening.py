"""Never lose, never double, never trust a bad file: real worker processes against a locked store,
a full disk, kills and an emptied store (issue 13). Tiny Keras models on small generated data."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time

import pytest
from jobtools import SLOW, TINY, _epochs, _job, _submit

from cifar_core.jobs import queue, store
from cifar_core.testing.procs import cli, paced, start_worker, wait_for


def _log(path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_a_store_locked_past_the_lease_stops_training_and_the_job_is_done_once(lab_home, small_data, tmp_path):
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=8), small_data)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    # The first worker's job is held in epoch 2 (it still checks its lease there, as at every batch)
    # until the store is unlocked again.
    release = tmp_path / "release"
    release.mkdir()
    first = start_worker("--exit-when-idle", "--lease", "3", log=logs[0], env=paced(f"hold=training:2:1,release={release}"))
    try:
        wait_for(lambda: len(_epochs(job_id)) >= 1, what="a first finished epoch")
        second = start_worker("--exit-when-idle", "--lease", "3", log=logs[1])
        blocker = sqlite3.connect(lab_home / "lab.sqlite3", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # writers wait; the leases cannot be renewed
        time.sleep(8)
        blocker.execute("ROLLBACK")
        blocker.close()
        (release / "training-2-1").touch()
        for w in (first, second):
            assert w.wait(timeout=300) == 0
    finally:
        first.kill()
        second.kill()
    job = _job(job_id)
    assert job.state == queue.SUCCEEDED, job.error
    assert _epochs(job_id) == list(range(1, 9))  # every epoch once
    text = _log(logs[0]) + _log(logs[1])
    assert "lease not renewed in time" in text  # it stopped instead of training on without a lease
    assert text.count(f"job {job_id} succeeded") == 1
    assert "Traceback" not in text  # the heartbeat thread survived the locked store


def test_an_orphan_is_taken_back_by_a_worker_that_would_exit_when_idle(lab_home, small_data, tmp_path):
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=6), small_data)
    first = start_worker("--lease", "3", log=tmp_path / "a.log", env=paced("hold=training:2:1"))
    try:
        wait_for(lambda: len(_epochs(job_id)) >= 1, what="a first finished epoch")
        first.send_signal(signal.SIGKILL)  # with the app: nobody is left to notice
        first.wait(timeout=10)
    finally:
        first.kill()
    assert _job(job_id).state == queue.RUNNING
    cli("worker", "--exit-when-idle", "--lease", "3", timeout=300)  # started inside the lease window
    job = _job(job_id)
    assert job.state == queue.SUCCEEDED, job.error
    assert _epochs(job_id) == list(range(1, 7))


def test_a_cancelled_job_retried_resumes_from_its_checkpoint(lab_home, small_data, tmp_path):
    # Held in epoch 3 until the cancel (a CLI process, seconds under load) lands.
    [job_id] = _submit(tmp_path, dict(SLOW, epochs=30), small_data)
    worker = start_worker("--exit-when-idle", log=tmp_path / "w.log", env=paced("hold=training:3:1"))
    try:
        wait_for(lambda: len(_epochs(job_id)) >= 2, what="two finished epochs")
        cli("cancel", str(job_id))
        assert worker.wait(timeout=120) == 0
    finally:
        worker.kill()
    kept = _epochs(job_id)
    assert _job(job_id).state == queue.CANCELLED and kept == [1, 2]
    conn = store.connect()
    before = dict(conn.execute("SELECT epoch, recorded_at FROM metrics WHERE run_id = ?", (job_id,)).fetchall())
    conn.close()
    assert "queued again" in cli("retry", str(job_id)).stdout
    cli("worker", "--exit-when-idle", timeout=300)
    job = _job(job_id)
    assert job.state == queue.SUCCEEDED, job.error
    assert _epochs(job_id) == list(range(1, 31))
    conn = store.connect()
    after = dict(conn.execute("SELECT epoch, recorded_at FROM metrics WHERE run_id = ?", (job_id,)).fetchall())
    conn.close()
    assert all(after[e] == before[e] for e in kept[:-1])  # resumed: the checkpointed epochs were not trained again
    assert cli("retry", str(job_id), check=False).stderr.strip() == (
        f"error: job {job_id} is succeeded: only a failed or cancelled job can be retried")


@pytest.fixture()
def small_runs_disk(lab_home):
    """The lab's run folders on a 3 MB tmpfs of their own (the store stays on the real disk)."""
    runs = lab_home / "runs"
    runs.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(runs)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs root to mount a small tmpfs: {mounted.stderr.strip()}")
    yield runs
    subprocess.run(["umount", "-l", str(runs)], check=False)


def test_a_full_disk_fails_the_job_clearly_and_the_worker_goes_on(lab_home, small_data, tmp_path, small_runs_disk,
                                                                    monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_MIN_FREE_MB", "0")  # no pause: let the disk fill
    big = {"name": "big", "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 512, "activation": "relu"},
                                     {"type": "Dense", "units": 10, "activation": "softmax"}], "epochs": 2}
    [big_id] = _submit(tmp_path, big, small_data)  # its first checkpoint (weights + Adam state) is ~19 MB
    [tiny_id] = _submit(tmp_path, TINY, small_data)
    worker = start_worker("--exit-when-idle", log=tmp_path / "w.log")
    try:
        assert worker.wait(timeout=300) == 0  # no crash
    finally:
        worker.kill()
    failed = _job(big_id)
    assert failed.state == queue.FAILED
    assert failed.error.startswith(f"disk full writing {small_runs_disk / str(big_id) / 'backup'}/epoch-0001.weights.h5")
    assert f"python -m cifar_core retry {big_id}" in failed.error
    assert _job(tiny_id).state == queue.SUCCEEDED, _job(tiny_id).error  # the partial file's space was given back


@pytest.fixture()
def small_lab_home(lab_home):
    """The whole lab home (store, backups, run folders, data cache) on a 16 MB tmpfs of its own."""
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(lab_home)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs root to mount a small tmpfs: {mounted.stderr.strip()}")
    yield lab_home
    subprocess.run(["umount", "-l", str(lab_home)], check=False)


def _fill(folder) -> int:
    """Fill the disk under `folder` to the last byte; returns the bytes written."""
    written = 0
    with open(folder / "filler", "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    written += f.write(b"x" * size)
            except OSError:
                pass
    return written


def test_a_worker_whose_store_fills_its_disk_waits_and_goes_on_when_space_returns(small_lab_home, small_data, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_MIN_FREE_MB", "0")  # the job's own low-disk pause is not what is tested
    cli("runs")  # the store exists (and its first backup is made by the worker)
    log = tmp_path / "w.log"
    worker = start_worker(log=log)
    try:
        conn = store.connect()
        try:
            wait_for(lambda: store.worker_registered(conn, worker.pid), what="the worker")
            # An empty write-ahead log: the worker's next write must grow it, on a disk with no room.
            wait_for(lambda: tuple(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()) == (0, 0, 0),
                     what="the store's log emptied")
        finally:
            conn.close()
        filled = _fill(small_lab_home)
        wait_for(lambda: "the store is not writable" in log.read_text() or worker.poll() is not None,
                 what="the worker to meet the full store", timeout=60)
        assert worker.poll() is None, log.read_text()[-3000:]  # it waits, it did not end
        print(f"filled {filled / 1e6:.1f} MB; the worker waits: "
              f"{[l for l in log.read_text().splitlines() if 'not writable' in l][0]}")
        (small_lab_home / "filler").unlink()  # space returns
        [job_id] = _submit(tmp_path, TINY, small_data)
        wait_for(lambda: _job(job_id).state == queue.SUCCEEDED, what="the job queued once space returned",
                 timeout=300)
        assert worker.poll() is None  # it survived
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        finally:
            worker.kill()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


def test_a_low_disk_pauses_the_job_with_a_note_until_cancelled(lab_home, small_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_LAB_MIN_FREE_MB", "10000000")  # 10 TB: never there
    [job_id] = _submit(tmp_path, TINY, small_data)
    worker = start_worker("--exit-when-idle", log=tmp_path / "w.log")
    try:
        note = wait_for(lambda: _job(job_id).note, what="the pause note")
        assert note.startswith("paused: ") and "it needs 10000000 MB" in note
        assert _epochs(job_id) == []
        cli("cancel", str(job_id))
        wait_for(lambda: _job(job_id).state == queue.CANCELLED, timeout=30, what="the cancel")
        assert worker.wait(timeout=60) == 0
    finally:
        worker.kill()
    assert _job(job_id).note is None


def test_an_emptied_store_is_refused_and_restored(lab_home, small_data, tmp_path):
    [job_id] = _submit(tmp_path, TINY, small_data)
    (lab_home / "runs" / str(job_id)).mkdir(parents=True)
    assert cli("backup").stdout.startswith("backed up to ")
    for extra in ("lab.sqlite3-wal", "lab.sqlite3-shm"):
        (lab_home / extra).unlink(missing_ok=True)
    (lab_home / "lab.sqlite3").write_bytes(b"")  # truncated to 0 bytes
    for command in (["runs"], ["submit", "exp1", "--data", str(small_data)]):
        refused = cli(*command, check=False)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "is empty but" in refused.stderr and "python -m cifar_core restore" in refused.stderr
    assert "restored the store from" in cli("restore").stdout
    assert [r["run"] for r in json.loads(cli("runs", "--json").stdout)] == [job_id]
    assert any(p.name.startswith("lab.sqlite3.replaced-") for p in lab_home.iterdir())
