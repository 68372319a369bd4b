"""A light worker (issue 14): it never holds TensorFlow and trains each job in a child process. A
cancel ends the job within 5 s in every phase (the child stops validating by itself; one still
scoring the test set or measuring latency is killed), and a child that dies sends its job back
while the worker goes on. Real worker processes, tiny Keras models, small generated data."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from jobtools import SLOW, TINY, _epochs, _job, _submit
from recorder import Recorder

from cifar_core.data.sources import load_dataset
from cifar_core.jobs import queue, store
from cifar_core.jobs.worker import CANCEL_GRACE_SECONDS
from cifar_core.spec.validate import parse_spec
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import paced, start_worker, wait_for
from cifar_core.train import loop as training
from cifar_core.train.phases import SCORING, VALIDATING

IDLE_RSS_MB = 400  # issue 14's target for a worker with nothing to do
CANCEL_SECONDS = 5.0  # issue 14: a cancel ends the job within this, in every phase
# Validation on the test split; the tests hold the job inside validation or the test scoring
# (`paced`), so the cancel lands there however fast the machine is.
EVAL = dict(SLOW, name="eval", validation="test", epochs=3)


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def _holds_tensorflow(pid: int) -> bool:
    return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _registered(pid: int) -> bool:
    conn = store.connect()
    try:
        return store.worker_registered(conn, pid)
    finally:
        conn.close()


def _cancel_when(job_id: int, ready, what: str) -> float:
    """Cancel the job once `ready(job)` holds; the monotonic time of the cancel."""
    wait_for(lambda: ready(_job(job_id)), timeout=300, interval=0.1, what=what)
    conn = store.connect()
    try:
        asked = time.monotonic()
        assert queue.cancel(conn, job_id) == queue.RUNNING
        return asked
    finally:
        conn.close()


def _cancelled_within(job_id: int, asked: float) -> float:
    wait_for(lambda: _job(job_id).state == queue.CANCELLED, timeout=60, interval=0.1, what="the cancel")
    return time.monotonic() - asked


def test_an_idle_worker_holds_no_tensorflow_before_or_after_a_job(lab_home, small_data, tmp_path):
    worker = start_worker(log=tmp_path / "w.log")
    try:
        wait_for(lambda: _registered(worker.pid), what="the worker to register")
        time.sleep(2)  # a few idle polls
        assert not _holds_tensorflow(worker.pid) and _rss_mb(worker.pid) < IDLE_RSS_MB
        [job_id] = _submit(tmp_path, TINY, small_data)
        wait_for(lambda: _job(job_id).state == queue.SUCCEEDED, timeout=300, what="the job")
        wait_for(lambda: not _children(worker.pid), what="its child to exit")
        assert not _holds_tensorflow(worker.pid), "the worker trained in its own process"
        assert _rss_mb(worker.pid) < IDLE_RSS_MB
        assert _job(job_id).worker_pid != worker.pid  # the epochs were written by the child
    finally:
        worker.kill()


@pytest.mark.parametrize("given, seen", [(None, "1"), ("0", "0")])
def test_a_jobs_process_runs_tensorflow_with_onednn_unless_the_environment_says_otherwise(
        lab_home, small_data, tmp_path, given, seen):
    env = {k: v for k, v in paced("hold=training:1:1").items() if k != "TF_ENABLE_ONEDNN_OPTS"}  # held until killed
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    worker = start_worker(log=tmp_path / "w.log", env=env)
    try:
        _submit(tmp_path, SLOW, small_data)
        [child] = wait_for(lambda: _children(worker.pid), timeout=120, what="the job's process")
        environ = Path(f"/proc/{child}/environ").read_bytes().decode().split("\0")
        assert f"TF_ENABLE_ONEDNN_OPTS={seen}" in environ
    finally:
        worker.kill()


class StopsWhileValidating(Recorder):
    """A real Reporter that asks to stop once epoch 2 has validated its first batch."""

    def should_stop(self) -> bool:
        return len(self.epochs) == 1 and self.phases[-1][:2] == (VALIDATING, 1)


def test_training_stops_inside_validation_when_asked_and_the_epoch_does_not_count(lab_home, small_data, tmp_path):
    reporter = StopsWhileValidating()
    outcome = training.train(parse_spec(tiny_spec(epochs=3)), load_dataset(str(small_data)), tmp_path / "run", reporter)
    assert outcome.status == training.STOPPED
    assert [r["epoch"] for r in reporter.epochs] == [1] == [h["epoch"] for h in outcome.history]  # epoch 2 was cut in its validation


def test_a_cancel_during_validation_ends_the_job_within_5_s_keeping_its_epochs(lab_home, small_data, tmp_path):
    [job_id] = _submit(tmp_path, EVAL, small_data)
    worker = start_worker("--exit-when-idle", log=tmp_path / "w.log", env=paced("hold=validating:2:1"))
    try:
        # Epoch 1 is stored, and epoch 2 is held after its first validation batch.
        asked = _cancel_when(job_id, lambda j: j.epoch == 1 and j.phase is not None and j.phase.name == VALIDATING,
                             "epoch 2's validation")
        took = _cancelled_within(job_id, asked)
        assert worker.wait(timeout=120) == 0
    finally:
        worker.kill()
    job = _job(job_id)
    assert took < CANCEL_SECONDS, f"cancelled {took:.1f} s after the cancel"
    assert job.error == "cancelled after epoch 1" and _epochs(job_id) == [1]
    assert (lab_home / "runs" / str(job_id) / "backup").is_dir()  # epoch 1's checkpoint, for a retry


def test_a_cancel_during_test_scoring_kills_the_child_within_5_s(lab_home, small_data, tmp_path):
    doc = dict(EVAL, epochs=1, tta_flip=True, tta_shift=2)
    [job_id] = _submit(tmp_path, doc, small_data)
    log = tmp_path / "w.log"
    # Held as the test scoring begins; like the scoring itself, the hold does not obey a cancel.
    worker = start_worker("--exit-when-idle", log=log, env=paced("hold=scoring:1:0"))
    try:
        asked = _cancel_when(job_id, lambda j: j.epoch == 1 and j.phase is not None and j.phase.name == SCORING,
                             "the test scoring")
        took = _cancelled_within(job_id, asked)
        assert worker.wait(timeout=120) == 0
    finally:
        worker.kill()
    job = _job(job_id)
    assert CANCEL_GRACE_SECONDS < took < CANCEL_SECONDS, f"cancelled {took:.1f} s after the cancel"
    assert job.error == "cancelled after epoch 1" and _epochs(job_id) == [1]
    assert f"job {job_id}: its training process did not stop within {CANCEL_GRACE_SECONDS} s of the cancel; killing it" in log.read_text()


def test_a_child_that_dies_sends_its_job_back_and_the_worker_goes_on(lab_home, small_data, tmp_path):
    [doomed] = _submit(tmp_path, dict(SLOW, name="doomed", epochs=3), small_data)
    [resumed] = _submit(tmp_path, dict(SLOW, name="resumed", epochs=3), small_data)
    release = tmp_path / "release"
    release.mkdir()
    env = paced(f"hold=training:1:1,hold=training:2:1,release={release}")
    worker = start_worker("--exit-when-idle", log=tmp_path / "w.log", env=env)
    try:
        killed: list[int] = []
        for crash in range(1, queue.MAX_ATTEMPTS + 1):  # each killed before it finishes an epoch (held in epoch 1)
            [pid] = wait_for(lambda: [p for p in _children(worker.pid) if p not in killed], interval=0.05,
                             what=f"child {crash}")
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        failed = wait_for(lambda: (j := _job(doomed)).state == queue.FAILED and j, what="the third crash")
        assert failed.attempts == failed.crashes == queue.MAX_ATTEMPTS
        assert failed.error == (f"gave up after 3 attempts in a row that finished no epoch: the training process of "
                                f"worker {failed.worker_id} was killed by signal 9 during attempt 3 (after epoch 0)")

        # A crash after an epoch is not counted: the job resumes in the next attempt.
        (release / "training-1-1").touch()
        wait_for(lambda: _epochs(resumed), what="a first finished epoch")
        child = _job(resumed).worker_pid
        assert child in _children(worker.pid)  # held in epoch 2
        os.kill(child, signal.SIGKILL)
        (release / "training-2-1").touch()
        assert worker.wait(timeout=300) == 0
    finally:
        worker.kill()
    job = _job(resumed)
    assert job.state == queue.SUCCEEDED and job.attempts == 2 and job.crashes == 0, job.error
    assert _epochs(resumed) == [1, 2, 3]


def test_a_worker_stopped_while_its_child_starts_hands_the_job_back(lab_home, small_data, tmp_path):
    [job_id] = _submit(tmp_path, SLOW, small_data)
    worker = start_worker(log=tmp_path / "w.log")
    try:
        wait_for(lambda: _children(worker.pid), interval=0.05, what="its child")
        worker.send_signal(signal.SIGTERM)  # passed on before the child may have its own handler
        assert worker.wait(timeout=120) == 0
    finally:
        worker.kill()
    job = _job(job_id)
    assert job.state == queue.QUEUED and job.crashes == 0, job.error  # handing back is not a crash
    assert "worker shut down" in job.error
