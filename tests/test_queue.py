"""The job queue on a real SQLite file, with real processes for the concurrency contract."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from cifar_core.jobs import queue
from cifar_core.jobs import store
from cifar_core.errors import LabError, NotFound

DOC = {"name": "tiny", "epochs": 2, "seed": 5, "layers": []}


def test_repeats_get_consecutive_seeds_in_one_group(conn):
    ids = queue.submit(conn, DOC, "keras", repeats=3, params=123).job_ids
    jobs = [queue.get_job(conn, i) for i in ids]
    assert [j.spec["seed"] for j in jobs] == [5, 6, 7]
    assert len({j.group_id for j in jobs}) == 1 and jobs[0].group_id is not None
    assert all(j.state == queue.QUEUED for j in jobs)
    assert conn.execute("SELECT kind FROM groups").fetchone()[0] == "repeats"


def test_single_submit_is_not_grouped(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    assert queue.get_job(conn, job_id).group_id is None


def test_repeats_out_of_range(conn):
    with pytest.raises(LabError, match="repeats=0 is out of range"):
        queue.submit(conn, DOC, "keras", repeats=0).job_ids


def test_claim_takes_oldest_and_records_attempt(conn):
    first, second = queue.submit(conn, DOC, "keras", repeats=2).job_ids
    job = queue.claim(conn, "w1", lease_seconds=30)
    assert job.id == first and job.state == queue.RUNNING and job.attempts == 1 and job.worker_id == "w1"
    assert queue.claim(conn, "w2").id == second
    assert queue.claim(conn, "w3") is None


def test_heartbeat_renews_and_reports_progress(conn, clock):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    queue.claim(conn, "w1", lease_seconds=1)
    assert queue.heartbeat(conn, job_id, "w1", 30, batch=7, batches=20) == queue.KEEP_GOING
    job = queue.get_job(conn, job_id)
    assert (job.batch, job.batches) == (7, 20)
    clock.advance(1.1)
    assert queue.claim(conn, "w2") is None  # the renewed lease still holds
    clock.advance(30)
    assert queue.claim(conn, "w2").id == job_id  # ... until it expires


def test_heartbeat_of_a_worker_that_lost_the_job(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    queue.claim(conn, "w1")
    assert queue.heartbeat(conn, job_id, "someone-else", 30, 0, 0) == queue.STOP_LOST


def test_expired_lease_requeues_then_fails_after_three_attempts(conn, clock):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    for attempt in (1, 2, 3):
        job = queue.claim(conn, f"w{attempt}", lease_seconds=30)
        assert job.id == job_id and job.attempts == attempt
        clock.advance(29)
        assert queue.claim(conn, "other") is None  # still leased
        clock.advance(2)
    assert queue.claim(conn, "w4") is None
    job = queue.get_job(conn, job_id)
    assert job.state == queue.FAILED
    assert "gave up after 3 attempts: worker w3 stopped responding" in job.error


def test_record_epoch_replaces_a_rerun_epoch(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    queue.claim(conn, "w1")
    queue.record_epoch(conn, job_id, {"epoch": 1, "loss": 2.0, "val_accuracy": 0.1})
    queue.record_epoch(conn, job_id, {"epoch": 1, "loss": 1.5, "val_accuracy": 0.2})
    rows = conn.execute("SELECT epoch, loss FROM metrics WHERE run_id = ?", (job_id,)).fetchall()
    assert [tuple(r) for r in rows] == [(1, 1.5)]
    assert queue.get_job(conn, job_id).epoch == 1


def test_finish_only_by_the_owner(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    queue.claim(conn, "w1")
    assert not queue.finish(conn, job_id, "w2", queue.SUCCEEDED)
    assert queue.finish(conn, job_id, "w1", queue.SUCCEEDED, results={"test_accuracy": 0.5})
    assert queue.get_job(conn, job_id).state == queue.SUCCEEDED
    assert conn.execute("SELECT test_accuracy FROM runs WHERE id = ?", (job_id,)).fetchone()[0] == 0.5
    with pytest.raises(LabError, match="needs a final state"):
        queue.finish(conn, job_id, "w1", queue.RUNNING)


def test_cancel_queued_never_starts(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    assert queue.cancel(conn, job_id) == queue.CANCELLED
    assert queue.claim(conn, "w1") is None
    assert queue.get_job(conn, job_id).error == "cancelled before it started"


def test_cancel_running_asks_its_worker_to_stop(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    queue.claim(conn, "w1")
    assert queue.cancel(conn, job_id) == queue.RUNNING
    assert queue.heartbeat(conn, job_id, "w1", 30, 1, 10) == queue.STOP_CANCEL


def test_cancel_unknown_job(conn):
    with pytest.raises(NotFound, match="no job 999"):
        queue.cancel(conn, 999)


def test_requeue_does_not_count_the_attempt(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    queue.claim(conn, "w1")
    queue.requeue(conn, job_id, "w1", "worker shut down")
    job = queue.get_job(conn, job_id)
    assert job.state == queue.QUEUED and job.attempts == 0


def _claim_all(db_path: str, worker_id: str, start, out) -> None:
    conn = store.connect(db_path)
    got = []
    start.wait()  # all processes claim at the same time
    while (job := queue.claim(conn, worker_id, lease_seconds=60)) is not None:
        got.append(job.id)
        time.sleep(0.002)  # a little work, as a real job has
        queue.finish(conn, job.id, worker_id, queue.SUCCEEDED)
    out.put(got)


def test_many_jobs_claimed_concurrently_none_twice(conn, home):
    ids = queue.submit_many(conn, [({"name": f"j{i}", "epochs": 1}, 0) for i in range(300)], "keras").job_ids
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_claim_all, args=(str(home / "lab.sqlite3"), f"w{i}", start, out)) for i in range(4)]
    for p in procs:
        p.start()
    claimed = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    flat = [i for got in claimed for i in got]
    assert sorted(flat) == sorted(ids)  # every job once, none twice
    assert sum(1 for got in claimed if got) >= 3  # the work really was shared
    assert queue.counts(conn)[queue.SUCCEEDED] == 300
