"""Queue view computations on a real store: progress fraction, elapsed time, ETA, durations."""

from __future__ import annotations

import pytest

from cifar_core.views import training as monitor
from cifar_core.jobs import queue

DOC = {"name": "tiny", "epochs": 4, "seed": 0, "layers": []}


def _job(**changes) -> queue.Job:
    base = dict(
        id=1, name="tiny", group_id=None, state=queue.RUNNING, spec=DOC, data_source="x", attempts=1, max_attempts=3,
        worker_id="w", cancel_requested=False, created_at=0.0, started_at=100.0, ended_at=None, error=None, epoch=0,
        batch=0, batches=0, progress_at=100.0, epochs=4,
    )
    return queue.Job(**{**base, **changes})


def test_queued_job_has_no_elapsed_time_or_eta():
    p = monitor.job_progress(_job(state=queue.QUEUED, started_at=None, worker_id=None), now=200.0)
    assert (p.fraction, p.elapsed, p.eta, p.active) == (0.0, None, None, True)
    assert p.label == "queued"


def test_running_job_progress_counts_batches_of_the_current_epoch():
    job = _job(epoch=1, batch=25, batches=100, progress_at=160.0)
    p = monitor.job_progress(job, epoch_seconds=[40.0], now=160.0)
    assert p.fraction == pytest.approx((1 + 0.25) / 4)
    assert p.elapsed == pytest.approx(60.0)
    assert p.seconds_per_epoch == pytest.approx(40.0)
    assert p.eta == pytest.approx((4 - 1.25) * 40.0)  # epochs left times the mean epoch
    assert p.label == "epoch 2/4 · batch 25/100"


def test_eta_counts_down_between_progress_reports():
    job = _job(epoch=2, batch=0, batches=100, progress_at=180.0)
    assert monitor.job_progress(job, [30.0, 50.0], now=190.0).eta == pytest.approx(2 * 40.0 - 10.0)


def test_first_epoch_eta_is_extrapolated_from_its_batches():
    job = _job(epoch=0, batch=50, batches=100, started_at=100.0, progress_at=110.0)
    p = monitor.job_progress(job, (), now=110.0)
    assert p.eta == pytest.approx((4 - 0.5) * 20.0)  # half an epoch took 10 s
    assert monitor.job_progress(_job(epoch=0, batch=0, batches=100), (), now=110.0).eta is None


def test_finished_jobs_show_their_final_progress_and_duration():
    done = monitor.job_progress(_job(state=queue.SUCCEEDED, epoch=3, ended_at=400.0), now=999.0)
    assert (done.fraction, done.elapsed, done.eta, done.active) == (1.0, 300.0, None, False)
    cancelled = monitor.job_progress(_job(state=queue.CANCELLED, epoch=1, ended_at=150.0), now=999.0)
    assert cancelled.fraction == pytest.approx(0.25)
    assert cancelled.label == "cancelled after 1/4 epochs"


def test_nan_epoch_seconds_are_ignored():
    p = monitor.job_progress(_job(epoch=1, batches=10, progress_at=150.0), [float("nan"), 20.0], now=150.0)
    assert p.seconds_per_epoch == pytest.approx(20.0)


def test_queue_view_reads_the_store(conn):
    first, second, third = queue.submit(conn, DOC, "x", repeats=3).job_ids
    job = queue.claim(conn, "w1")
    assert job.id == first
    queue.heartbeat(conn, job.lease, 30.0, batch=5, batches=10)
    queue.record_epoch(conn, job.lease, {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4, "seconds": 2.0})
    queue.cancel(conn, third)

    view = monitor.queue_view(conn)
    assert [p.id for p in view.active] == [first, second]  # running first, then queued
    assert [p.id for p in view.recent] == [third]
    assert view.refresh is True
    assert view.counts[queue.RUNNING] == 1 and view.counts[queue.CANCELLED] == 1
    running = view.active[0]
    assert running.epoch == 1 and running.seconds_per_epoch == pytest.approx(2.0)
    assert running.eta is not None and running.eta <= 3 * 2.0
    assert list(view.history["run"]) == [first]
    assert list(view.finished["run"]) == [third]
    assert view.workers_alive == 0


def test_queue_view_stops_refreshing_when_nothing_is_active(conn):
    [job_id] = queue.submit(conn, DOC, "x").job_ids
    queue.cancel(conn, job_id)
    view = monitor.queue_view(conn)
    assert view.refresh is False and view.active == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "–"), (float("nan"), "–"), (0, "0s"), (42.4, "42s"), (185, "3m 05s"), (3720, "1h 02m")],
)
def test_format_seconds(seconds, text):
    assert monitor.format_seconds(seconds) == text
