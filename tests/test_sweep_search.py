"""Sweeps that search (issue 30): the stop decision is taken where an epoch is stored, in the attempt
protocol both consumers share (jobs/attempt.py), from what the store holds. These tests drive that
protocol through the real queue and store with chosen validation accuracies (no training, so the
curves are the test's); tests/test_worker.py-style runs with real workers follow."""

from __future__ import annotations

import pytest
from searchtools import searching_sweep
from searchtools import train as _train

from cifar_core.errors import LabError
from cifar_core.jobs import queue
from cifar_core.lab import Lab
from cifar_core.search.config import PrunerConfig, SearchConfig
from cifar_core.testing.datagen import tiny_spec


def _sweep(small_data, pruner: PrunerConfig, trials: int = 6, epochs: int = 4) -> list[int]:
    return searching_sweep(small_data, pruner, trials, epochs).job_ids


def test_the_median_pruner_stops_a_loser_where_its_epoch_is_stored_and_says_why(lab_home, small_data, conn):
    ids = _sweep(small_data, PrunerConfig(kind="median", startup_trials=2, min_epochs=1))
    assert len(ids) == 6
    for curve in ([0.30, 0.40, 0.50, 0.60], [0.32, 0.42, 0.52, 0.62]):  # the startup trials complete
        done, verdicts = _train(conn, curve)
        assert done.state == queue.SUCCEEDED and set(verdicts) == {queue.KEEP_GOING}
    loser, verdicts = _train(conn, [0.35, 0.20, 0.21, 0.22])
    assert verdicts == [queue.KEEP_GOING, queue.STOP_PRUNED]  # judged after each epoch: stopped after epoch 2
    assert loser.state == queue.PRUNED and loser.epoch == 2  # it keeps its curve
    assert loser.error.startswith("pruned after epoch 2: ") and "median" in loser.error and "41.0%" in loser.error, \
        loser.error
    assert loser.crashes == 0 and loser.stop_decision["action"] == queue.PRUNE
    with pytest.raises(LabError, match="only a failed or cancelled job can be retried"):
        queue.retry(conn, loser.id)  # never retried
    leader, verdicts = _train(conn, [0.40, 0.50, 0.60, 0.70])
    assert leader.state == queue.SUCCEEDED and set(verdicts) == {queue.KEEP_GOING}


def test_successive_halving_pauses_at_a_rung_and_promotes_when_the_trial_ranks_in_the_top_1_over_eta(
        lab_home, small_data, conn):
    ids = _sweep(small_data, PrunerConfig(kind="successive_halving", min_epochs=1, eta=2), trials=4, epochs=2)
    first, _ = _train(conn, [0.50, 0.60])
    second, verdicts = _train(conn, [0.30, 0.40])
    assert verdicts == [queue.STOP_PAUSED] and second.state == queue.PAUSED and second.epoch == 1
    assert second.error.startswith("paused after epoch 1: ") and "top 1/2" in second.error, second.error
    third, verdicts = _train(conn, [0.10, 0.20])  # the paused second is not claimable: this is the third
    assert third.id == ids[2] and third.state == queue.PAUSED
    # The fourth trial does worse at the rung: the second now ranks 2nd of 4, in the top half.
    fourth, _ = _train(conn, [0.05, 0.06])
    promoted = queue.get_job(conn, second.id)
    assert promoted.state == queue.QUEUED and promoted.error.startswith("promoted: "), promoted.error
    assert queue.get_job(conn, third.id).state == queue.PAUSED
    resumed, verdicts = _train(conn, [0.45])  # it goes on from its stored epoch 1, to epoch 2
    assert resumed.id == second.id and resumed.state == queue.SUCCEEDED and resumed.attempts == 2
    assert resumed.epoch == 2


def test_a_real_worker_stops_a_pruned_trial_within_an_epoch_keeping_its_curve_and_checkpoint(lab_home, small_data):
    """Through a real worker and its training process: the learner completes; the trial whose rate
    never learns is pruned at a recorded epoch, says why, keeps its epochs and checkpoint, and is
    neither failed nor retried. Replay over the recorded curves agrees with what ran."""
    from cifar_core.testing.procs import cli

    space = {"method": "grid", "params": {"learning_rate": {"values": [0.003, 1e-07]}}}
    pruner = PrunerConfig(kind="median", startup_trials=1, min_epochs=1)
    search = SearchConfig(sampler="grid", pruner=pruner, seed=1, max_trials=2)  # seed 1: the learner first
    lab = Lab()
    group, ids = lab.submit_sweep(tiny_spec(epochs=4, name="srch", learning_rate=0.003), space, str(small_data), search)
    conn = queue.store.connect()
    try:
        first, second = (queue.get_job(conn, i) for i in ids)
        assert (first.spec["learning_rate"], second.spec["learning_rate"]) == (0.003, 1e-07), "Optuna's grid order moved"
        cli("worker", "--exit-when-idle", timeout=600)
        first, second = (queue.get_job(conn, i) for i in ids)
    finally:
        conn.close()
    assert first.state == queue.SUCCEEDED and first.epoch == 4, first.error
    assert second.state == queue.PRUNED and second.crashes == 0 and 1 <= second.epoch < 4, (second.state, second.error)
    assert second.error.startswith(f"pruned after epoch {second.epoch}: "), second.error
    run = lab.run(second.id)
    assert list(run.history["epoch"]) == list(range(1, second.epoch + 1))  # its curve, each epoch once
    assert (lab_home / "runs" / str(second.id) / "backup" / "checkpoint.json").exists()  # and its checkpoint
    replayed = lab.replay_sweep(group, pruner).runs[0]
    assert replayed.stopped == {second.id: ("prune", second.epoch)} and replayed.best_survived


def test_sweep_and_sweep_replay_on_the_command_line(lab_home, small_data, conn):
    """A recorded sweep without a pruner, replayed under the median pruner: which trial it would
    have stopped, and the epochs saved; then a sweep queued with a sampler and a pruner."""
    import json

    from cifar_core.testing.procs import cli

    ids = _sweep(small_data, PrunerConfig(kind="none"))
    for curve in ([0.30, 0.40, 0.50, 0.60], [0.32, 0.42, 0.52, 0.62], [0.35, 0.20, 0.21, 0.22],
                  [0.40, 0.50, 0.60, 0.70], [0.36, 0.46, 0.56, 0.66], [0.38, 0.48, 0.58, 0.68]):
        done, verdicts = _train(conn, curve)
        assert done.state == queue.SUCCEEDED and set(verdicts) == {queue.KEEP_GOING}  # no pruner: all run
    replayed = json.loads(cli("sweep-replay", "1", "--pruner", "median", "--startup-trials", "2", "--json").stdout)
    first = replayed["runs"][0]
    assert first["stopped"] == {str(ids[2]): ["prune", 2]} and first["epochs_saved"] == 2 and first["best_survived"]
    said = cli("sweep-replay", "1", "--pruner", "median", "--startup-trials", "2", "--shuffles", "4").stdout
    assert said.startswith("in the order it ran: stopped 1 of 6 trials, 22 of 24 epochs (2 saved); best trial ")
    assert "over 5 orders: " in said
    refused = cli("sweep-replay", "7", "--pruner", "median", check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: no sweep 7: there are 1, numbered from 1 (the Sweeps page lists them)")

    space = json.dumps({"method": "random", "params": {"learning_rate": {"log_uniform": [0.0001, 0.01]}}})
    queued = cli("sweep", "exp1", "--space", space, "--epochs", "2", "--data", str(small_data), "--sampler", "tpe",
                 "--pruner", "hyperband", "--max-trials", "6").stdout
    number, jobs = queued.split(":")
    assert number == "sweep 2" and len(jobs.split()) == 2  # TPE: two now, the next as each ends
