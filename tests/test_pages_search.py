"""A sweep that searches, on the Sweeps page (issue 30): where it stands (its settings in words, the
budget used, its trials by state, the best so far with its seed noise, and 3 more seeds of the best),
and its figures. The sweeps go through the real queue, store and attempt protocol with chosen
curves (tests/searchtools.py); the page is driven with AppTest."""

from __future__ import annotations

import pytest
from pagetools import open_page
from pagetools import rerun as _run
from pagetools import texts as _texts
from searchtools import searching_sweep, train

from cifar_core.analysis import sweeps
from cifar_core.jobs import queue
from cifar_core.lab import Lab
from cifar_core.search.config import PrunerConfig

MEDIAN = PrunerConfig(kind="median", startup_trials=2, min_epochs=1)


def _open(group_id: int):
    return open_page("pages/sweeps.py", via_app=False, timeout=60, sweep=str(group_id))


def _median_sweep(conn, source) -> tuple[int, list[queue.Job]]:
    """Three trials under the median pruner: two complete, the third pruned after epoch 2."""
    group_id, _ = searching_sweep(source, MEDIAN, trials=3)
    done = [train(conn, curve)[0] for curve in ([0.30, 0.40, 0.50, 0.60], [0.32, 0.42, 0.52, 0.62],
                                                 [0.35, 0.20, 0.21, 0.22])]
    assert [j.state for j in done] == [queue.SUCCEEDED, queue.SUCCEEDED, queue.PRUNED]
    return group_id, done


def test_search_status_counts_the_budget_the_trials_and_the_best(conn, app_env):
    group_id, done = _median_sweep(conn, app_env)
    status = sweeps.search_status(conn, group_id)
    assert status.counts == {"running": 0, "queued": 0, "paused": 0, "pruned": 1, "complete": 2, "failed": 0}
    assert (status.trials, status.max_trials, status.epochs) == (3, 3, 10)  # 4 + 4 + 2 epochs
    assert status.budget[:2] == ["3 of 3 trials started", "10 epochs trained"]
    assert status.best_run == done[1].id and status.best_value == pytest.approx(0.62)
    assert status.seed_note == "one seed: its seed noise is unknown"
    assert status.settings.startswith("Optuna's grid (each combination once), seed 0; median pruner: from epoch 1, ")
    unsearched = Lab().submit_sweep(done[0].spec, {"method": "grid", "params": {"batch_size": {"values": [16]}}},
                                    str(app_env))
    assert sweeps.search_status(conn, unsearched.group_id) is None


def test_the_page_shows_where_a_search_stands_and_runs_three_seeds_of_the_best(conn, app_env):
    group_id, done = _median_sweep(conn, app_env)
    at = _open(group_id)
    shown = _texts(at.markdown)
    assert "**Search:** Optuna's grid (each combination once), seed 0; median pruner" in shown
    assert "**Budget used:** 3 of 3 trials started · 10 epochs trained · 0.0 minutes of training" in shown
    assert "**Trials:** 0 running · 0 queued · 0 paused · 1 pruned · 2 complete · 0 failed" in shown
    assert (f"**Best so far:** [run #{done[1].id}](run?run={done[1].id}), 62.0% best validation accuracy; "
            "one seed: its seed noise is unknown") in shown

    at = _run(at.button(key="sweeps_seeds").click())
    repeats = [queue.get_job(conn, i) for i in range(done[-1].id + 1, done[-1].id + 4)]
    assert f"Queued 3 seeds of the best: jobs #{repeats[0].id} to #{repeats[-1].id}." in _texts(at.success)
    best = done[1].spec
    assert [j.spec["seed"] for j in repeats] == [best["seed"] + 1, best["seed"] + 2, best["seed"] + 3]
    assert all(j.state == queue.QUEUED and j.group_id not in (None, group_id) for j in repeats)
    assert all(j.spec["learning_rate"] == best["learning_rate"] and not j.spec["sweep_params"] for j in repeats)

    for acc in (0.60, 0.64, 0.61):  # the seeds finish: the best's configuration now has 4 seeds
        train(conn, [0.3, 0.4, 0.5, acc])
    status = sweeps.search_status(conn, group_id)
    assert status.seed_runs == 4 and status.seed_std == pytest.approx(0.0171, abs=1e-4)
    at = _open(group_id)
    assert "seed noise ±1.7 points (standard deviation over 4 seeds)" in _texts(at.markdown)


def test_a_sweep_with_no_epoch_yet_offers_no_seeds(conn, app_env):
    group_id, _ = searching_sweep(app_env, MEDIAN, trials=2)
    at = _open(group_id)
    assert "**Best so far:** none yet (no trial has finished an epoch)" in _texts(at.markdown)
    assert at.button(key="sweeps_seeds").disabled
