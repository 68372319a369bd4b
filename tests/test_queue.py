"""The job queue on a real SQLite file, with real processes for the concurrency contract."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from cifar_core.jobs import queue
from cifar_core.jobs import results
from cifar_core.jobs import store
from cifar_core.errors import LabError, NotFound
from cifar_core.train.phases import SCORING, VALIDATING, Phase

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
    lease = queue.claim(conn, "w1", lease_seconds=1).lease
    assert queue.heartbeat(conn, lease, 30, batch=7, batches=20) == queue.KEEP_GOING
    job = queue.get_job(conn, job_id)
    assert (job.batch, job.batches) == (7, 20)
    clock.advance(1.1)
    assert queue.claim(conn, "w2") is None  # the renewed lease still holds
    clock.advance(30)
    assert queue.claim(conn, "w2").id == job_id  # ... until it expires


def test_heartbeat_of_a_worker_that_lost_the_job(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    queue.claim(conn, "w1")
    assert queue.heartbeat(conn, queue.Lease(job_id, "someone-else", 1), 30, 0, 0) == queue.STOP_LOST


def test_heartbeat_publishes_the_phase_and_a_new_attempt_starts_without_one(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    lease = queue.claim(conn, "w1").lease
    assert queue.get_job(conn, job_id).phase is None
    queue.heartbeat(conn, lease, 30, 20, 20, phase=Phase(VALIDATING, 3, 8, since=123.5))
    assert queue.get_job(conn, job_id).phase == Phase(VALIDATING, 3, 8, 123.5)
    queue.heartbeat(conn, lease, 30, 20, 20)  # no phase given: the last one stays
    assert queue.get_job(conn, job_id).phase.name == VALIDATING
    queue.requeue(conn, lease, "shutting down")
    assert queue.claim(conn, "w2").phase is None
    lost = queue.heartbeat(conn, lease, 30, 20, 20, phase=Phase(SCORING, 0, 2, since=124.0))
    assert lost == queue.STOP_LOST and queue.get_job(conn, job_id).phase is None


def _points(conn, job_id) -> list[tuple]:
    return [tuple(r) for r in results.running_points(conn, [job_id])[["epoch", "loss"]].itertuples(index=False)]


def test_running_points_of_an_epoch_trained_again_replace_the_earlier_attempts(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    first = queue.claim(conn, "w1").lease
    for x, loss in ((0.5, 2.0), (1.0, 1.8), (1.5, 1.6), (2.0, 1.5)):  # epoch 1, then epoch 2
        queue.heartbeat(conn, first, 30, 0, 10, point=queue.RunningPoint(x, loss, 0.3))
    assert _points(conn, job_id) == [(0.5, 2.0), (1.0, 1.8), (1.5, 1.6), (2.0, 1.5)]
    queue.record_epoch(conn, first, {"epoch": 1, "loss": 1.8})
    queue.requeue(conn, first, "killed in epoch 2 before its checkpoint")  # epoch 2 runs again

    second = queue.claim(conn, "w2").lease
    queue.heartbeat(conn, second, 30, 0, 10, point=queue.RunningPoint(1.25, 1.7, 0.3))
    assert _points(conn, job_id) == [(0.5, 2.0), (1.0, 1.8), (1.25, 1.7)]  # epoch 1 kept, epoch 2 afresh
    assert queue.heartbeat(conn, first, 30, 0, 10, point=queue.RunningPoint(1.75, 9.9, 0.3)) == queue.STOP_LOST
    assert _points(conn, job_id) == [(0.5, 2.0), (1.0, 1.8), (1.25, 1.7)]  # the old attempt writes nothing


def test_running_points_go_with_their_job(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    lease = queue.claim(conn, "w1").lease
    queue.heartbeat(conn, lease, 30, 0, 10, point=queue.RunningPoint(0.3, 2.0, 0.2))
    with store.transaction(conn):  # no use case deletes a job yet; the schema cascades when one does
        conn.execute("DELETE FROM metrics WHERE run_id = ?", (job_id,))
        conn.execute("DELETE FROM runs WHERE id = ?", (job_id,))
        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
    assert conn.execute("SELECT COUNT(*) FROM batch_points").fetchone()[0] == 0


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
    assert "gave up after 3 attempts in a row that finished no epoch: worker w3 stopped responding" in job.error


def test_record_epoch_replaces_a_rerun_epoch(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    lease = queue.claim(conn, "w1").lease
    assert queue.record_epoch(conn, lease, {"epoch": 1, "loss": 2.0, "val_accuracy": 0.1})
    assert queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.5, "val_accuracy": 0.2})
    rows = conn.execute("SELECT epoch, loss FROM metrics WHERE run_id = ?", (job_id,)).fetchall()
    assert [tuple(r) for r in rows] == [(1, 1.5)]
    assert queue.get_job(conn, job_id).epoch == 1


def test_finish_only_by_the_owner(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    lease = queue.claim(conn, "w1").lease
    assert not queue.finish(conn, queue.Lease(job_id, "w2", 1), queue.SUCCEEDED)
    assert queue.finish(conn, lease, queue.SUCCEEDED, results={"test_accuracy": 0.5})
    assert queue.get_job(conn, job_id).state == queue.SUCCEEDED
    assert conn.execute("SELECT test_accuracy FROM runs WHERE id = ?", (job_id,)).fetchone()[0] == 0.5
    with pytest.raises(LabError, match="needs a final state"):
        queue.finish(conn, lease, queue.RUNNING)


def test_cancel_queued_never_starts(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    assert queue.cancel(conn, job_id) == queue.CANCELLED
    assert queue.claim(conn, "w1") is None
    assert queue.get_job(conn, job_id).error == "cancelled before it started"


def test_cancel_running_asks_its_worker_to_stop(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    lease = queue.claim(conn, "w1").lease
    assert queue.cancel(conn, job_id) == queue.RUNNING
    assert queue.heartbeat(conn, lease, 30, 1, 10) == queue.STOP_CANCEL


def test_cancel_unknown_job(conn):
    with pytest.raises(NotFound, match="no job 999"):
        queue.cancel(conn, 999)


def test_requeue_does_not_count_the_attempt(conn):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    lease = queue.claim(conn, "w1").lease
    assert queue.requeue(conn, lease, "worker shut down")
    job = queue.get_job(conn, job_id)
    assert job.state == queue.QUEUED and job.crashes == 0
    assert queue.claim(conn, "w2").attempts == 2  # attempts only grow: they fence the leases


def _claim_all(db_path: str, worker_id: str, start, out) -> None:
    conn = store.connect(db_path)
    got = []
    start.wait()  # all processes claim at the same time
    while (job := queue.claim(conn, worker_id, lease_seconds=60)) is not None:
        got.append(job.id)
        time.sleep(0.002)  # a little work, as a real job has
        queue.finish(conn, job.lease, queue.SUCCEEDED)
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


# ------------------------------------------------------------------ leases are the truth (issue 13)


def test_a_lost_lease_writes_nothing_even_for_the_same_worker(conn, clock):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    old = queue.claim(conn, "w1", lease_seconds=30).lease
    clock.advance(31)
    new = queue.claim(conn, "w1", lease_seconds=30).lease  # the same worker id, a new attempt
    assert new.attempt == old.attempt + 1
    assert not queue.record_epoch(conn, old, {"epoch": 1, "loss": 9.0})
    assert queue.heartbeat(conn, old, 30, 1, 10) == queue.STOP_LOST
    assert not queue.finish(conn, old, queue.SUCCEEDED, results={"test_accuracy": 0.9})
    assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0
    assert queue.record_epoch(conn, new, {"epoch": 1, "loss": 1.0})
    assert queue.finish(conn, new, queue.SUCCEEDED, results={"test_accuracy": 0.5})
    assert conn.execute("SELECT test_accuracy FROM runs").fetchone()[0] == 0.5


def test_attempts_that_made_progress_are_not_crashes(conn, clock):
    """Killed three times (and more), each time after finishing an epoch: it is retaken every time."""
    [job_id] = queue.submit(conn, dict(DOC, epochs=30), "keras").job_ids
    for epoch in range(1, 6):
        lease = queue.claim(conn, f"w{epoch}", lease_seconds=30).lease
        assert queue.record_epoch(conn, lease, {"epoch": epoch, "loss": 1.0})
        clock.advance(31)  # killed
        assert queue.reap_expired(conn) == 1
        job = queue.get_job(conn, job_id)
        assert job.state == queue.QUEUED and job.crashes == 0, job.error
        assert "does not count as a crash" in job.error
    for crash in (1, 2):
        queue.claim(conn, "w", lease_seconds=30)
        clock.advance(31)
        queue.reap_expired(conn)
        assert queue.get_job(conn, job_id).crashes == crash
    queue.claim(conn, "w", lease_seconds=30)
    clock.advance(31)
    queue.reap_expired(conn)
    job = queue.get_job(conn, job_id)
    assert job.state == queue.FAILED and job.epoch == 5
    assert "gave up after 3 attempts in a row that finished no epoch" in job.error


def test_expired_leases_return_without_a_claim(conn, clock):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    queue.claim(conn, "w1", lease_seconds=30)
    assert queue.reap_expired(conn) == 0
    clock.advance(31)
    assert queue.reap_expired(conn) == 1
    assert queue.get_job(conn, job_id).state == queue.QUEUED
    assert queue.reap_expired(conn) == 0


def test_retry_queues_a_failed_or_cancelled_job_again(conn, clock):
    failed, cancelled, done = queue.submit(conn, DOC, "keras", repeats=3).job_ids
    lease = queue.claim(conn, "w").lease
    assert queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.0})
    assert queue.finish(conn, lease, queue.FAILED, error="disk full writing x")
    queue.cancel(conn, cancelled)
    assert queue.finish(conn, queue.claim(conn, "w").lease, queue.SUCCEEDED)
    assert queue.retry(conn, failed) == queue.QUEUED
    job = queue.get_job(conn, failed)
    assert job.state == queue.QUEUED and job.epoch == 1 and "retried after epoch 1 (failed: disk full" in job.error
    assert queue.claim(conn, "w2").id == failed
    assert queue.retry(conn, cancelled) == queue.QUEUED and not queue.get_job(conn, cancelled).cancel_requested
    with pytest.raises(LabError, match=f"job {done} is succeeded: only a failed or cancelled job can be retried"):
        queue.retry(conn, done)
    with pytest.raises(NotFound, match="no job 99"):
        queue.retry(conn, 99)


def test_renew_extends_the_lease_alone_and_carries_the_verdict(conn, clock):
    [job_id] = queue.submit(conn, DOC, "keras").job_ids
    lease = queue.claim(conn, "w1", lease_seconds=1).lease
    queue.heartbeat(conn, lease, 1, batch=7, batches=20, note="paused")
    clock.advance(0.5)
    assert queue.renew(conn, lease, 30) == queue.KEEP_GOING
    job = queue.get_job(conn, job_id)
    assert (job.batch, job.batches, job.note) == (7, 20, "paused")  # the child's progress is left alone
    clock.advance(2)
    assert queue.claim(conn, "w2") is None  # renewed
    queue.cancel(conn, job_id)
    assert queue.renew(conn, lease, 30) == queue.STOP_CANCEL
    assert queue.renew(conn, queue.Lease(job_id, "w1", 2), 30) == queue.STOP_LOST


def test_expire_returns_a_dead_childs_job_by_the_crash_rule(conn):
    [job_id] = queue.submit(conn, dict(DOC, epochs=30), "keras").job_ids
    died = "the training process of worker w1 was killed by signal 9"
    lease = queue.claim(conn, "w1").lease
    assert queue.expire(conn, lease, died)
    job = queue.get_job(conn, job_id)
    assert job.state == queue.QUEUED and job.crashes == 1
    assert job.error == f"{died} during attempt 1 (after epoch 0); crash 1 of 3"
    assert not queue.expire(conn, lease, died)  # no longer held: nothing changes
    assert queue.get_job(conn, job_id).crashes == 1

    lease = queue.claim(conn, "w1").lease
    assert queue.record_epoch(conn, lease, {"epoch": 1, "loss": 1.0})
    assert queue.expire(conn, lease, died)
    job = queue.get_job(conn, job_id)
    assert job.state == queue.QUEUED and job.crashes == 0 and "does not count as a crash" in job.error

    lease = queue.claim(conn, "w1").lease
    queue.cancel(conn, job_id)
    assert queue.expire(conn, lease, died)
    job = queue.get_job(conn, job_id)
    assert job.state == queue.CANCELLED and job.error == f"cancelled; {died} during attempt 3 (after epoch 1)"
