"""Queue view computations on a real store: progress fraction, train time, time queued, ETA, durations."""

from __future__ import annotations

import pytest

from cifar_core.views import training as monitor
from cifar_core.errors import LabError
from cifar_core.jobs import queue
from cifar_core.train.phases import MEASURING, SAVING, SCORING, TRAINING, VALIDATING, Phase

DOC = {"name": "tiny", "epochs": 4, "seed": 0, "layers": []}
SAVE_AND_MEASURE = monitor.SAVE_SECONDS + monitor.MEASURE_SECONDS  # the end phases but scoring


def _job(**changes) -> queue.Job:
    base = dict(
        id=1, name="tiny", group_id=None, state=queue.RUNNING, spec=DOC, data_source="x", attempts=1, max_attempts=3,
        worker_id="w", cancel_requested=False, created_at=0.0, started_at=100.0, ended_at=None, error=None, epoch=0,
        batch=0, batches=0, progress_at=100.0, epochs=4,
    )
    return queue.Job(**{**base, **changes})


def test_queued_job_has_no_train_time_or_eta():
    p = monitor.job_progress(_job(state=queue.QUEUED, started_at=None, worker_id=None, attempts=0), now=200.0)
    assert (p.fraction, p.trained, p.queued, p.eta, p.active) == (0.0, None, 200.0, None, True)
    assert p.label == "queued"


def test_running_job_progress_counts_batches_of_the_current_epoch():
    job = _job(epoch=1, batch=25, batches=100, progress_at=160.0)
    p = monitor.job_progress(job, epoch_seconds=[40.0], now=160.0)
    assert p.fraction == pytest.approx((1 + 0.25) / 4)
    assert p.trained == pytest.approx(60.0)
    assert p.seconds_per_epoch == pytest.approx(40.0)
    # epochs left times the mean epoch; no validation time measured, so scoring is not counted
    assert p.eta == pytest.approx((4 - 1.25) * 40.0 + SAVE_AND_MEASURE)
    assert p.label == "training epoch 2/4 · batch 25/100"


def test_eta_counts_down_between_progress_reports():
    job = _job(epoch=2, batch=0, batches=100, progress_at=180.0)
    assert monitor.job_progress(job, [30.0, 50.0], now=190.0).eta == pytest.approx(2 * 40.0 + SAVE_AND_MEASURE - 10.0)


def test_first_epoch_eta_is_extrapolated_from_its_batches():
    job = _job(epoch=0, batch=50, batches=100, started_at=100.0, progress_at=110.0)
    p = monitor.job_progress(job, (), now=110.0)
    assert p.eta == pytest.approx((4 - 0.5) * 20.0 + SAVE_AND_MEASURE)  # half an epoch took 10 s
    assert monitor.job_progress(_job(epoch=0, batch=0, batches=100), (), now=110.0).eta is None


def test_finished_jobs_show_their_final_progress_and_duration():
    done = monitor.job_progress(_job(state=queue.SUCCEEDED, epoch=3, ended_at=400.0), now=999.0)
    done = monitor.job_progress(_job(state=queue.SUCCEEDED, epoch=3, ended_at=400.0, train_seconds=290.0), now=999.0)
    assert (done.fraction, done.trained, done.queued, done.eta, done.active) == (1.0, 290.0, 110.0, None, False)
    cancelled = monitor.job_progress(_job(state=queue.CANCELLED, epoch=1, ended_at=150.0), now=999.0)
    assert cancelled.fraction == pytest.approx(0.25)
    assert cancelled.label == "cancelled after 1/4 epochs"


def test_progress_never_goes_back_through_an_epoch_its_validation_and_the_end_phases():
    """Issue 31: at "validating (16/40) · epoch 3/3" the bar dropped to 66%."""
    steps = [dict(epoch=2, batch=b, batches=100, phase=Phase(TRAINING, since=200.0)) for b in (0, 50, 100)]
    steps += [dict(epoch=2, batch=b, batches=100, phase=Phase(VALIDATING, v, 40, since=230.0))
              for b, v in ((100, 0), (0, 16), (100, 40))]  # the batch counter may say anything while validating
    steps += [dict(epoch=3, batch=0, batches=100, phase=Phase(p, since=250.0)) for p in (TRAINING, SCORING, SAVING)]
    for per_epoch, per_val in (([40.0, 40.0], [10.0, 10.0]), ((), ())):  # measured, or still in the first epoch
        fractions = [monitor.job_progress(_job(epochs=3, spec=dict(DOC, epochs=3), **step), per_epoch, now=260.0,
                                          val_seconds=per_val).fraction for step in steps]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0, fractions
        assert fractions[4] > 2 / 3  # "validating (16/40) · epoch 3/3"
    measured = [monitor.job_progress(_job(epochs=3, spec=dict(DOC, epochs=3), **step), [40.0, 40.0], now=260.0,
                                     val_seconds=[10.0, 10.0]).fraction for step in steps]
    assert measured[2] == pytest.approx((2 + 0.75) / 3)  # training is three quarters of an epoch
    assert measured[4] == pytest.approx((2 + 0.75 + 0.25 * 16 / 40) / 3)


def test_a_first_epoch_eta_counts_from_the_epochs_start_and_says_it_is_rough():
    """Issue 31: 31m 12s for a 4.5-minute job, extrapolated from the job's start (data, model, tracing)."""
    job = _job(epoch=0, batch=10, batches=100, started_at=100.0, attempt_at=100.0, progress_at=170.0,
               phase=Phase(TRAINING, since=160.0))  # 60 s of loading and building, then 10 batches in 10 s
    p = monitor.job_progress(job, (), now=170.0)
    assert p.eta == pytest.approx((4 - 0.1) * 100.0 + SAVE_AND_MEASURE) and p.rough
    assert not monitor.job_progress(_job(epoch=1, batch=10, batches=100, progress_at=170.0), [40.0], now=170.0).rough


def test_nan_epoch_seconds_are_ignored():
    p = monitor.job_progress(_job(epoch=1, batches=10, progress_at=150.0), [float("nan"), 20.0], now=150.0)
    assert p.seconds_per_epoch == pytest.approx(20.0)


# Epochs of 40 s, 10 of them validating: a holdout job scores twice the validation images once.
EPOCHS, VALS = [40.0, 40.0], [10.0, 10.0]


def test_eta_counts_the_rest_of_the_epoch_its_validation_and_the_end_phases():
    job = _job(epoch=2, batch=25, batches=100, progress_at=160.0, phase=Phase(TRAINING, since=150.0))
    p = monitor.job_progress(job, EPOCHS, now=160.0, val_seconds=VALS)
    rest_of_epoch3 = 30.0 * 0.75 + 10.0  # three quarters of its training, then all of its validation
    scoring = 10.0 * 1 * 2.0  # one validation pass x 1 view x 10,000 test / 5,000 held-out images
    assert p.eta == pytest.approx(rest_of_epoch3 + 40.0 + scoring + SAVE_AND_MEASURE)
    assert p.label == "training epoch 3/4 · batch 25/100"


def test_while_validating_only_the_rest_of_the_validation_is_left_of_the_epoch():
    job = _job(epoch=2, batch=100, batches=100, progress_at=160.0, phase=Phase(VALIDATING, 5, 20, since=155.0))
    p = monitor.job_progress(job, EPOCHS, now=160.0, val_seconds=VALS)
    assert p.eta == pytest.approx(10.0 * 0.75 + 40.0 + 20.0 + SAVE_AND_MEASURE)
    assert p.label == "validating (5/20) · epoch 3/4"


def test_scoring_counts_each_test_time_view_and_the_validation_set_in_use():
    spec = dict(DOC, tta_flip=True, tta_shift=2, validation="test")  # 5 shifts x 2 mirrors; validates on the test set
    assert monitor.end_phases(spec, 3.0) == {SCORING: 3.0 * 10 * 1.0, SAVING: monitor.SAVE_SECONDS,
                                             MEASURING: monitor.MEASURE_SECONDS}
    assert monitor.end_phases(DOC, None)[SCORING] == 0.0  # no validation measured yet


def test_after_the_last_epoch_the_eta_is_the_end_phases():
    job = _job(epoch=4, batch=0, batches=100, progress_at=300.0, phase=Phase(TRAINING, since=300.0))
    assert monitor.job_progress(job, EPOCHS, now=300.0, val_seconds=VALS).eta == pytest.approx(20.0 + SAVE_AND_MEASURE)


@pytest.mark.parametrize(("phase", "label", "left"), [
    (Phase(SCORING, 0, 1, since=300.0), "scoring the test set with 1 view", 20.0 + SAVE_AND_MEASURE),
    (Phase(SCORING, 0, 10, since=300.0), "scoring the test set with 10 views", 20.0 + SAVE_AND_MEASURE),
    (Phase(SAVING, since=300.0), "saving the model", SAVE_AND_MEASURE),
    (Phase(MEASURING, since=300.0), "measuring latency", monitor.MEASURE_SECONDS),
])
def test_in_an_end_phase_the_eta_counts_down_its_estimate_from_the_phase_start(phase, label, left):
    # The batch counter still says the last batch: the ETA must not read 0 for that.
    job = _job(epoch=4, batch=100, batches=100, progress_at=301.0, phase=phase)
    for waited in (0.0, 3.0, 60.0):
        p = monitor.job_progress(job, EPOCHS, now=300.0 + waited, val_seconds=VALS)
        assert p.eta == pytest.approx(max(0.0, left - waited))
        assert p.label == label
    assert p.eta == 0.0  # an overrun ends at 0, never below


def test_a_job_not_running_shows_no_phase():
    p = monitor.job_progress(_job(state=queue.SUCCEEDED, epoch=4, ended_at=400.0, phase=Phase(MEASURING)), now=999.0)
    assert p.phase is None and p.label == "succeeded after 4/4 epochs"
    starting = monitor.job_progress(_job(), now=100.0)
    assert starting.label == "training epoch 1/4 · starting"


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
    assert running.eta is not None and running.eta <= 3 * 2.0 + SAVE_AND_MEASURE
    assert list(view.history["run"]) == [first]
    assert list(view.finished["run"]) == [third]
    assert view.workers_alive == 0


def test_a_retried_job_shows_the_train_time_of_all_its_attempts_and_its_time_queued_apart(conn, clock):
    """Cancelled while scoring after its last epoch (265 s of training), retried after waiting
    300 s in the queue, finished 2 s into the retry: it trained 267 s, on every page."""
    from cifar_core.jobs import results

    created = clock.t
    [job_id] = queue.submit(conn, DOC, "x").job_ids
    clock.advance(10.0)  # queued
    lease = queue.claim(conn, "w1").lease
    clock.advance(265.0)
    queue.cancel(conn, job_id)
    assert queue.finish(conn, lease, queue.CANCELLED, error="cancelled after epoch 4")
    cancelled = monitor.job_progress(queue.get_job(conn, job_id), now=clock.t)
    assert (cancelled.trained, cancelled.queued) == (pytest.approx(265.0), pytest.approx(10.0))
    clock.advance(300.0)
    queue.retry(conn, job_id)
    clock.advance(60.0)
    waiting = monitor.job_progress(queue.get_job(conn, job_id), now=clock.t)  # queued again: its train time stands still
    assert (waiting.trained, waiting.queued) == (pytest.approx(265.0), pytest.approx(370.0))
    lease = queue.claim(conn, "w2").lease
    clock.advance(1.0)
    running = monitor.job_progress(queue.get_job(conn, job_id), now=clock.t)
    assert (running.trained, running.queued) == (pytest.approx(266.0), pytest.approx(370.0))
    clock.advance(1.0)
    assert queue.finish(conn, lease, queue.SUCCEEDED, results={"test_accuracy": 0.5})
    assert results.run_detail(conn, job_id).train_seconds == pytest.approx(267.0)
    [done] = monitor.queue_view(conn, now=clock.t).recent
    assert (done.trained, done.queued) == (pytest.approx(267.0), pytest.approx(clock.t - created - 267.0))


def test_an_attempt_ended_by_a_shutdown_or_a_dead_worker_counts_until_it_was_last_heard_of(conn, clock):
    [job_id] = queue.submit(conn, DOC, "x").job_ids
    lease = queue.claim(conn, "w1", lease_seconds=30).lease
    clock.advance(20.0)
    queue.requeue(conn, lease, "worker shut down")
    lease = queue.claim(conn, "w2", lease_seconds=30).lease
    clock.advance(5.0)
    queue.heartbeat(conn, lease, 30, 3, 10)  # then the worker dies
    clock.advance(40.0)
    assert queue.reap_expired(conn) == 1
    assert queue.get_job(conn, job_id).train_seconds == pytest.approx(25.0)
    with pytest.raises(LabError, match="adds the attempt's seconds to train_seconds itself"):
        queue.finish(conn, queue.claim(conn, "w3").lease, queue.SUCCEEDED, results={"train_seconds": 2.35})


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


def test_a_job_queued_again_names_the_attempt_it_waits_for_and_the_ones_that_ended():
    """The card showed "queued (attempt 2, ...)" above "attempt 1" (issue 31's walk)."""
    again = monitor.job_progress(_job(state=queue.QUEUED, epoch=2, attempts=1, worker_id=None), now=200.0)
    assert again.label == "queued (attempt 2, resumes after epoch 2)"
    assert again.attempts_line.endswith("· 1 attempt so far")
    twice = monitor.job_progress(_job(state=queue.QUEUED, epoch=2, attempts=2, worker_id=None), now=200.0)
    assert twice.attempts_line.endswith("· 2 attempts so far")
    running = monitor.job_progress(_job(epoch=2, attempts=2), now=200.0)
    assert running.attempts_line.startswith("Queued ") and running.attempts_line.endswith("· attempt 2")
