"""Real worker processes training real (tiny) Keras models on small generated data."""

from __future__ import annotations

import json
import os
import re
import signal
import time

from jobtools import SLOW, TINY, _epochs, _job, _submit

from cifar_core.jobs import queue
from cifar_core.jobs import store
from cifar_core.testing.procs import cli, paced, run_until_idle, start_worker, wait_for


# Five test-time views, so scoring is a phase of its own. Its epochs last what the machine makes
# them: the pace (cifar_core/jobs/pace.py) decides where running points are taken and where the
# training waits, so the test sees the same points on a fast or a busy host.
PACED = {**TINY, "name": "paced", "batch_size": 8, "tta_shift": 1}
POINTS_EVERY = 5  # batches


def _points(job_id: int) -> list[tuple]:
    """(attempt, epoch, epoch_float, t) of the job's running points, in the order stored."""
    conn = store.connect()
    try:
        return [tuple(r) for r in conn.execute(
            "SELECT attempt, epoch, epoch_float, t FROM batch_points WHERE job_id = ? ORDER BY rowid", (job_id,))]
    finally:
        conn.close()


def test_short_job_end_to_end(lab_home, small_data, tmp_path):
    [job_id] = _submit(tmp_path, TINY, small_data)
    assert _job(job_id).state == queue.QUEUED
    cli("worker", "--exit-when-idle", timeout=300)

    job = _job(job_id)
    assert job.state == queue.SUCCEEDED, job.error
    assert job.attempts == 1
    shown = json.loads(cli("show", str(job_id), "--json").stdout)
    assert [h["epoch"] for h in shown["history"]] == [1, 2]
    assert all(h["seconds"] > 0 and 0 <= h["val_accuracy"] <= 1 for h in shown["history"])
    assert 0.0 <= shown["test_accuracy"] <= 1.0
    run_dir = lab_home / "runs" / str(job_id)
    assert {"model.keras", "history.json", "predictions.npz", "spec.json"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "backup").exists()
    conn = store.connect()
    cost = conn.execute("SELECT model_bytes, latency_p50_ms, latency_p95_ms, throughput_ips FROM runs WHERE id = ?",
                        (job_id,)).fetchone()
    assert cost["model_bytes"] == (run_dir / "model.keras").stat().st_size
    assert 0 < cost["latency_p50_ms"] <= cost["latency_p95_ms"] and cost["throughput_ips"] > 0
    listed = json.loads(cli("runs", "--json").stdout)
    assert [r["run"] for r in listed] == [job_id] and listed[0]["status"] == "succeeded"


def test_run_until_idle_submits_and_returns_once_a_worker_trained_them(lab_home, small_data):
    """The scripts' one way to train jobs now: submit, then a worker in the foreground until idle."""
    ids, seconds = run_until_idle([TINY, dict(TINY, epochs=1, seed=3)], str(small_data), "--threads", "1", quiet=True)
    assert len(ids) == 2 and seconds > 0
    assert [_job(i).state for i in ids] == [queue.SUCCEEDED] * 2
    assert [_epochs(i) for i in ids] == [[1, 2], [1]]
    assert _job(ids[1]).spec["seed"] == 3


def test_repeats_and_overrides(lab_home, small_data, tmp_path):
    ids = _submit(tmp_path, TINY, small_data, "--repeats", "2", "--seed", "10", "--epochs", "1")
    assert len(ids) == 2
    specs = [_job(i).spec for i in ids]
    assert [s["seed"] for s in specs] == [10, 11] and all(s["epochs"] == 1 for s in specs)


def test_cancel_running_job_keeps_its_epochs_and_worker_goes_on(lab_home, small_data, tmp_path):
    [slow_id] = _submit(tmp_path, SLOW, small_data)
    [tiny_id] = _submit(tmp_path, TINY, small_data)
    # Held in epoch 3 (TINY has two epochs: it never waits).
    worker = start_worker("--exit-when-idle", log=tmp_path / "worker.log", env=paced("hold=training:3:1"))
    try:
        wait_for(lambda: len(_epochs(slow_id)) >= 2, what="two finished epochs")
        asked = time.monotonic()
        assert "stop requested" in cli("cancel", str(slow_id)).stdout
        wait_for(lambda: _job(slow_id).state == queue.CANCELLED, timeout=30, what="the cancel")
        assert time.monotonic() - asked < 10
        assert _epochs(slow_id) == [1, 2] and _job(slow_id).error == "cancelled after epoch 2"
        assert worker.wait(timeout=120) == 0
    finally:
        worker.kill()
    assert _job(tiny_id).state == queue.SUCCEEDED  # the same worker carried on


def test_cancel_queued_job_never_starts(lab_home, small_data, tmp_path):
    [job_id] = _submit(tmp_path, TINY, small_data)
    assert cli("cancel", str(job_id)).stdout.strip() == f"job {job_id}: cancelled"
    cli("worker", "--exit-when-idle")
    assert _job(job_id).state == queue.CANCELLED and _job(job_id).attempts == 0
    assert _epochs(job_id) == []


def test_killed_worker_job_resumes_without_duplicated_epochs(lab_home, small_data, tmp_path):
    doc = dict(SLOW, epochs=12)
    [job_id] = _submit(tmp_path, doc, small_data)
    first = start_worker("--lease", "2", log=tmp_path / "w1.log", env=paced("hold=training:4:1"))
    try:
        # Held at epoch 4's first batch: epoch 3 is stored and its checkpoint written (the checkpoint
        # follows the store's record, so waiting for 3 stored epochs alone could kill in between).
        wait_for(lambda: (j := _job(job_id)).epoch == 3 and j.batch >= 1, what="epoch 4 begun")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.time()
    finally:
        first.kill()
    done_before = _epochs(job_id)
    assert _job(job_id).state == queue.RUNNING and done_before == [1, 2, 3]  # killed while held in epoch 4

    cli("worker", "--exit-when-idle", "--lease", "2", timeout=300)
    job = _job(job_id)
    assert job.state == queue.SUCCEEDED, job.error
    assert job.attempts == 2
    conn = store.connect()
    rows = conn.execute("SELECT epoch, recorded_at FROM metrics WHERE run_id = ? ORDER BY epoch", (job_id,)).fetchall()
    assert [r[0] for r in rows] == list(range(1, doc["epochs"] + 1))  # every epoch exactly once
    # It resumed: the epochs that were checkpointed before the kill were not trained again.
    kept = [r[0] for r in rows if r[1] < killed_at]
    assert kept == done_before
    history = json.loads((lab_home / "runs" / str(job_id) / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, doc["epochs"] + 1))


def test_failing_job_is_marked_failed_and_the_worker_survives(lab_home, small_data, tmp_path):
    [ok_before] = _submit(tmp_path, TINY, small_data)
    [bad] = _submit(tmp_path, dict(TINY, name="doomed"), small_data)
    # The data disappears between submit and training: the job must fail with a clear reason.
    conn = store.connect()
    with store.transaction(conn):
        conn.execute("UPDATE jobs SET data_source = ? WHERE id = ?", (str(tmp_path / "gone"), bad))
    [ok_after] = _submit(tmp_path, TINY, small_data)
    cli("worker", "--exit-when-idle", timeout=300)
    assert _job(ok_before).state == queue.SUCCEEDED
    failed = _job(bad)
    assert failed.state == queue.FAILED and "gone" in failed.error
    assert _job(ok_after).state == queue.SUCCEEDED


def test_two_workers_share_the_queue_and_run_each_job_once(lab_home, small_data, tmp_path):
    ids = _submit(tmp_path, dict(TINY, epochs=1), small_data, "--repeats", "6")
    release = tmp_path / "release"
    release.mkdir()
    env = paced(f"hold=training:1:1,release={release}")  # each job waits after its first batch until released
    workers = [start_worker("--exit-when-idle", "--threads", "1", log=tmp_path / f"w{i}.log", env=env) for i in range(2)]
    try:
        wait_for(lambda: len({j.worker_id for j in map(_job, ids) if j.state == queue.RUNNING and j.batch}) == 2,
                 timeout=300, what="a job held by each worker")
        (release / "training-1-1").touch()
        for w in workers:
            assert w.wait(timeout=300) == 0
    finally:
        for w in workers:
            w.kill()
    jobs = [_job(i) for i in ids]
    assert all(j.state == queue.SUCCEEDED and j.attempts == 1 for j in jobs)
    assert len({j.worker_id for j in jobs}) == 2
    assert all(_epochs(i) == [1] for i in ids)


def test_worker_shutdown_hands_the_job_back(lab_home, small_data, tmp_path):
    [job_id] = _submit(tmp_path, SLOW, small_data)
    worker = start_worker(log=tmp_path / "worker.log", env=paced("hold=training:2:1"))
    try:
        wait_for(lambda: len(_epochs(job_id)) >= 1, what="a first finished epoch")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    job = _job(job_id)
    assert job.state == queue.QUEUED and job.crashes == 0  # handing back is not a crash
    assert "worker shut down" in job.error
    assert os.path.exists(lab_home / "runs" / str(job_id) / "backup")


def test_running_points_inside_epochs_phases_and_a_resumed_epoch_kept_once(lab_home, small_data, tmp_path):
    [job_id] = _submit(tmp_path, PACED, small_data)
    # Points every 5 batches, stored before training goes on; held at batch 7 of epoch 2 until killed.
    first = start_worker("--lease", "2", log=tmp_path / "w1.log", env=paced(f"points={POINTS_EVERY},hold=training:2:7"))
    try:
        wait_for(lambda: any(p[1] == 2 for p in _points(job_id)), timeout=300, what="a running point in epoch 2")
        first.send_signal(signal.SIGKILL)  # held in epoch 2: it is trained again from epoch 1's checkpoint
        first.wait(timeout=10)
    finally:
        first.kill()
    assert _epochs(job_id) == [1]
    killed = _points(job_id)
    batches = _job(job_id).batches
    inside = [round(b / batches, 6) for b in range(POINTS_EVERY, batches, POINTS_EVERY)]
    assert len(inside) >= 2, f"{batches} batches an epoch: too few for two points inside it"
    assert [(p[0], p[1], round(p[2], 6)) for p in killed] == [
        *[(1, 1, x) for x in inside], (1, 2, round(1 + POINTS_EVERY / batches, 6))]  # every point, in order, once
    conn = store.connect()
    try:
        [ended] = conn.execute("SELECT recorded_at FROM metrics WHERE run_id = ? AND epoch = 1", (job_id,)).fetchone()
    finally:
        conn.close()
    assert all(p[3] <= ended for p in killed if p[1] == 1)  # drawn inside epoch 1 before it ended

    log = tmp_path / "w2.log"
    second = start_worker("--exit-when-idle", "--lease", "2", log=log, env=paced(f"points={POINTS_EVERY}"))
    try:
        assert second.wait(timeout=300) == 0
    finally:
        second.kill()
    job = _job(job_id)
    assert job.state == queue.SUCCEEDED and job.attempts == 2, job.error
    # The phases the heartbeat published, in order (in lockstep each is stored before training goes on).
    seen = re.findall(rf"job {job_id}: (\w+) \((\d+) steps\)", log.read_text())
    assert ("scoring", "5") in seen, seen  # the five views of tta_shift=1
    order = ["training", "validating", "scoring", "saving", "measuring"]
    tail = [name for name, _ in seen[seen.index(("scoring", "5")):]]
    assert tail == order[2:], seen  # the end phases come in their order, once
    points = _points(job_id)
    assert [p for p in points if p[1] == 1] == [p for p in killed if p[1] == 1]  # epoch 1 was not trained again
    epoch2 = [p for p in points if p[1] == 2]
    assert [(p[0], round(p[2], 6)) for p in epoch2] == [(2, round(1 + x, 6)) for x in inside]  # the killed attempt's
    # epoch 2 points are gone: one curve through epoch 2, from the attempt that finished it


def test_a_worker_stops_without_claiming_once_newer_code_upgraded_the_store(lab_home, small_data, tmp_path):
    """Seen on a long reproduction: the app was updated while an old worker ran; the new code's
    store upgrade made every job the old worker claimed fail at once. Now it stops before claiming."""
    log = tmp_path / "w.log"
    worker = start_worker(log=log)
    conn = store.connect()
    try:
        wait_for(lambda: store.worker_rows(conn), timeout=60, what="the worker to register")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(store.SCHEMA_VERSION + 1),))
        [job_id] = queue.submit(conn, TINY, str(small_data)).job_ids
        assert worker.wait(timeout=60) == 0
        job = queue.get_job(conn, job_id)
    finally:
        worker.kill()
        conn.close()
    assert job.state == queue.QUEUED and job.attempts == 0  # left for the new code's worker
    assert f"newer than this worker's {store.SCHEMA_VERSION}" in log.read_text()
