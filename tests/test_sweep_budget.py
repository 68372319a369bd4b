"""Stopping and resuming a sweep with more budget, and budgets that hold for every sampler (issue 30,
items 4 and 5). The store is the truth: the stop and the new budget live in the sweep group's
detail. Driven through the real queue and attempt protocol with chosen curves (tests/searchtools.py),
then through a real worker training on the small generated data."""

from __future__ import annotations

import pytest
from searchtools import SPACE, train

from cifar_core.errors import LabError
from cifar_core.jobs import queue, results, store
from cifar_core.lab import Lab
from cifar_core.search.config import PrunerConfig, SearchConfig
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli


def _sweep(source, sampler="grid", trials=4, epochs=3, **budget):
    search = SearchConfig(sampler=sampler, pruner=PrunerConfig(), seed=0, max_trials=trials, **budget)
    return Lab().submit_sweep(tiny_spec(epochs=epochs, name="bud", learning_rate=0.001), SPACE, str(source), search)


def _states(conn, group_id):
    return [j["state"] for j in store.group_trials(conn, group_id)[0]]


def _epochs(conn, job_id):
    return list(results.run_history(conn, job_id)["epoch"])


def _train_all(conn, curve):
    """Train every queued trial (the oldest is claimed first) through its remaining epochs of `curve`."""
    done = []
    while waiting := queue.list_jobs(conn, (queue.QUEUED,)):
        done.append(train(conn, curve[waiting[-1].epoch:waiting[-1].epochs])[0])
    return done


def test_a_stopped_sweep_cancels_its_queue_halts_running_trials_after_their_epoch_and_resumes_with_more(
        lab_home, small_data, conn):
    lab = Lab()
    group, ids = _sweep(small_data, trials=4)
    first = queue.claim(conn, "w", 30.0)
    from cifar_core.jobs.attempt import Ending, close_attempt, record_epoch

    def epoch(n):
        return record_epoch(conn, first.lease, {"epoch": n, "loss": 1.0, "accuracy": 0.3, "val_loss": 1.0,
                                                "val_accuracy": 0.3, "seconds": 1.0}, "here", 1, 1e12)

    assert epoch(1) == queue.KEEP_GOING
    said = lab.stop_sweep(group)
    assert said == "sweep 1 stopped: 3 queued trial(s) cancelled, 1 running one(s) stop after their current epoch; " \
                   "`sweep-resume 1` goes on"
    assert _states(conn, group) == [queue.RUNNING] + [queue.CANCELLED] * 3
    assert queue.get_job(conn, ids[1]).error.startswith("sweep 1 stopped by hand: cancelled before it started")
    assert epoch(2) == queue.STOP_CANCEL  # the running trial stops at its next epoch boundary
    close_attempt(conn, first.lease, Ending(stop_reason=queue.STOP_CANCEL), 30.0)
    halted = queue.get_job(conn, first.id)
    assert halted.state == queue.CANCELLED and halted.epoch == 2
    assert halted.error == "sweep 1 stopped by hand: stopped after epoch 2; it goes on from its checkpoint when " \
                           "the sweep is resumed"
    with pytest.raises(LabError, match="sweep 1: it is stopped already"):
        lab.stop_sweep(group)
    assert lab.sweep_status(group).stopped == "sweep 1 stopped by hand"

    said = lab.resume_sweep(group, max_trials=6)
    assert said.startswith("sweep 1 resumed: 4 stopped trial(s) queued again, 2 new trial(s); budget: 6 of 6 trials")
    assert store.group_detail(conn, group)["search"]["max_trials"] == 6 and lab.sweep_status(group).stopped is None
    done = _train_all(conn, [0.3, 0.4, 0.5])
    jobs = [queue.get_job(conn, j["id"]) for j in store.group_trials(conn, group)[0]]
    assert len(jobs) == 6 > 4 and all(j.state == queue.SUCCEEDED for j in jobs), [(j.id, j.state) for j in jobs]
    assert len({j.spec["learning_rate"] for j in jobs}) == 6  # every grid point once
    assert all(_epochs(conn, j.id) == [1, 2, 3] for j in jobs)  # no epoch trained twice
    assert queue.get_job(conn, first.id).attempts == 2 and len(done) == 6


def test_an_epoch_budget_holds_for_a_grid_sweep_and_a_resume_must_raise_it(lab_home, small_data, conn):
    lab = Lab()
    group, ids = _sweep(small_data, trials=3, epochs=3, max_epochs=5)
    assert train(conn, [0.3, 0.4, 0.5])[0].state == queue.SUCCEEDED  # 3 epochs
    second, verdicts = train(conn, [0.3, 0.4, 0.5])
    assert verdicts == [queue.KEEP_GOING, queue.STOP_CANCEL] and second.state == queue.CANCELLED  # 5 of 5
    assert second.error.startswith("sweep budget spent: 5 epochs of 5: stopped after epoch 2")
    third = queue.get_job(conn, ids[2])
    assert third.state == queue.CANCELLED and third.error.startswith("sweep budget spent: 5 epochs of 5: cancelled "
                                                                     "before it started")
    assert lab.sweep_status(group).stopped == "sweep budget spent: 5 epochs of 5"
    with pytest.raises(LabError, match="sweep 1: sweep budget spent: 5 epochs of 5: resume it with a larger --max-epochs"):
        lab.resume_sweep(group)
    with pytest.raises(LabError, match="max_trials=2 is below the 3 trials it started: resume it with --max-trials 3"):
        lab.resume_sweep(group, max_trials=2, max_epochs=9)
    lab.resume_sweep(group, max_epochs=9)
    _train_all(conn, [0.3, 0.4, 0.5])
    assert _states(conn, group) == [queue.SUCCEEDED] * 3
    assert [_epochs(conn, i) for i in ids] == [[1, 2, 3]] * 3 and lab.sweep_status(group).epochs == 9


def test_a_tpe_sweep_resumed_with_more_trials_asks_for_more(lab_home, small_data, conn):
    lab = Lab()
    group, _ = _sweep(small_data, sampler="tpe", trials=3, epochs=2)
    _train_all(conn, [0.3, 0.4])
    assert len(_states(conn, group)) == 3
    assert lab.resume_sweep(group, max_trials=5).startswith("sweep 1 resumed: 0 stopped trial(s) queued again, 2 new")
    _train_all(conn, [0.3, 0.4])
    jobs = store.group_trials(conn, group)[0]
    assert len(jobs) == 5 and all(j["state"] == queue.SUCCEEDED for j in jobs)
    assert all(_epochs(conn, j["id"]) == [1, 2] for j in jobs)
    classic = lab.submit_sweep(tiny_spec(name="classic"), {"method": "grid", "params": {"batch_size": {"values": [16]}}},
                               str(small_data))
    with pytest.raises(LabError, match="sweep 2: it runs every trial of its space and has no budget: resume it without "
                                       "--max-trials"):
        lab.resume_sweep(classic.group_id, max_trials=4)


def test_a_real_worker_holds_a_grid_sweeps_epoch_budget_and_resumes_it_from_the_checkpoints(lab_home, small_data):
    """A real worker trains a grid sweep of three 2-epoch trials with a budget of 3 epochs: the
    second trial stops after its first epoch (cancelled, saying why), the third never starts.
    Resumed through the CLI with 6 epochs, both go on; every epoch is trained once."""
    group, ids = _sweep(small_data, trials=3, epochs=2, max_epochs=3)
    cli("worker", "--exit-when-idle", timeout=600)
    conn = store.connect()
    try:
        jobs = [queue.get_job(conn, i) for i in ids]
        assert [j.state for j in jobs] == [queue.SUCCEEDED, queue.CANCELLED, queue.CANCELLED], [j.error for j in jobs]
        assert jobs[1].epoch == 1 and jobs[1].error.startswith("sweep budget spent: 3 epochs of 3: stopped after epoch 1")
        out = cli("sweep-resume", "1", "--max-epochs", "6").stdout
        assert out.startswith("sweep 1 resumed: 2 stopped trial(s) queued again, 0 new trial(s)")
        cli("worker", "--exit-when-idle", timeout=600)
        jobs = [queue.get_job(conn, i) for i in ids]
        assert [j.state for j in jobs] == [queue.SUCCEEDED] * 3, [j.error for j in jobs]
        assert [_epochs(conn, i) for i in ids] == [[1, 2]] * 3 and jobs[1].attempts == 2
        again = cli("sweep-stop", "1", check=False)  # its last epoch spent the budget exactly, which stopped it
        assert again.returncode == 2 and "sweep 1: it is stopped already (sweep budget spent: 6 epochs of 6)" in again.stderr
    finally:
        conn.close()
