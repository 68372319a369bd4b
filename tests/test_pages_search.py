"""A sweep that searches, on the Sweeps page (issue 30): where it stands (its settings in words, the
budget used, its trials by state, the best so far with its seed noise, and 3 more seeds of the best),
and its figures. The sweeps go through the real queue, store and attempt protocol with chosen
curves (tests/searchtools.py); the page is driven with AppTest."""

from __future__ import annotations

import json

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
    assert status.counts == {"running": 0, "queued": 0, "paused": 0, "pruned": 1, "complete": 2, "cancelled": 0,
                             "failed": 0}
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
    assert "**Trials:** 0 running · 0 queued · 0 paused · 1 pruned · 2 complete · 0 cancelled · 0 failed" in shown
    assert (f"**Best so far:** [run #{done[1].id}](run?run={done[1].id}), 62.00% best validation accuracy; "
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


def test_an_idle_sweep_says_so_and_searches_on_with_a_larger_budget(conn, app_env):
    """A sweep whose trials all ended (or wait paused) offered only "Stop sweep", as if it still ran."""
    group_id, _ = _median_sweep(conn, app_env)
    at = _open(group_id)
    assert "Idle: nothing is queued or running. Raise the budget to search on." in _texts(at.info)
    assert "sweeps_stop" not in [b.key for b in at.button] and at.button(key="sweeps_resume").label == "Search on"
    at = _run(at.number_input(key=f"sweeps_resume_max_trials_{group_id}").set_value(4))
    at = _run(at.button(key="sweeps_resume").click())
    assert "sweep 1 resumed: 0 stopped trial(s) queued again, 1 new trial(s)" in _texts(at.success)
    assert not at.info and at.button(key="sweeps_stop")  # a trial is queued: it goes on again


def test_searching_on_says_so_when_the_grid_has_no_combination_left(conn, app_env):
    group_id, _ = _median_sweep(conn, app_env)
    assert Lab().resume_sweep(group_id, max_trials=6).startswith("sweep 1 resumed: 0 stopped trial(s) queued again, 3 new")
    for curve in ([0.30, 0.40, 0.50, 0.61], [0.31, 0.41, 0.51, 0.60], [0.33, 0.43, 0.53, 0.63]):
        train(conn, curve)
    assert Lab().resume_sweep(group_id).endswith("; nothing new to run: its 6 trials have started; raise max trials")
    said = Lab().resume_sweep(group_id, max_trials=8)
    assert said.startswith("sweep 1 resumed: 0 stopped trial(s) queued again, 0 new trial(s); budget: 6 of 8 trials")
    assert said.endswith("; nothing new to run: every combination of its grid has run")


def test_a_sweep_with_no_epoch_yet_offers_no_seeds(conn, app_env):
    group_id, _ = searching_sweep(app_env, MEDIAN, trials=2)
    at = _open(group_id)
    assert "**Best so far:** none yet (no trial has finished an epoch)" in _texts(at.markdown)
    assert at.button(key="sweeps_seeds").disabled


# ------------------------------------------------------------------ figures


def test_the_curves_figure_ends_a_pruned_trial_in_an_x_saying_why(conn, app_env):
    from cifar_core.charts import sweeps as charts_sweep

    group_id, done = _median_sweep(conn, app_env)
    curves = sweeps.trial_curves(conn, group_id)
    assert curves.groupby("run")["epoch"].max().tolist() == [4, 4, 2]
    fig = charts_sweep.intermediate(curves)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == [f"#{j.id} {j.name}" for j in done]
    [x_mark] = [t for t in fig.data if t.mode == "markers"]
    assert x_mark.marker.symbol == "x" and list(x_mark.x) == [2] and list(x_mark.y) == [0.20]
    assert x_mark.hovertext[0].startswith(f"#{done[2].id} {done[2].name}: pruned after epoch 2: best so far 35.0% < median")
    assert fig.layout.yaxis.tickformat == ".0%" and fig.layout.xaxis.title.text == "epoch"


def test_successive_halving_on_the_page_its_curves_rungs_and_why_no_importance_yet(conn, app_env):
    """Four trials under successive halving (eta 2, rungs at epochs 1 and 2): the first goes on,
    the second and third pause, the fourth does worse and pauses too, which promotes the second."""
    group_id, ids = searching_sweep(app_env, PrunerConfig(kind="successive_halving", min_epochs=1, eta=2), trials=4,
                                    epochs=2)
    for curve in ([0.50, 0.60], [0.30, 0.40], [0.10, 0.20], [0.05, 0.06], [0.45]):
        train(conn, curve)
    assert [queue.get_job(conn, i).state for i in ids] == [queue.SUCCEEDED, queue.SUCCEEDED, queue.PAUSED, queue.PAUSED]
    rungs = sweeps.rung_table(conn, group_id)
    assert list(rungs.columns) == ["run", "name", "rung", "epoch", "val_accuracy", "outcome"]  # no brackets under SH
    assert rungs[["run", "rung", "epoch", "val_accuracy", "outcome"]].values.tolist() == [
        [ids[0], 0, 1, 0.50, "went on"], [ids[0], 1, 2, 0.60, "completed"],
        [ids[1], 0, 1, 0.30, "promoted"], [ids[1], 1, 2, 0.45, "completed"],
        [ids[2], 0, 1, 0.10, "paused"], [ids[3], 0, 1, 0.05, "paused"]]

    at = _open(group_id)
    shown = _texts(at.markdown)
    assert "**Trials:** 0 running · 0 queued · 2 paused · 0 pruned · 2 complete · 0 cancelled · 0 failed" in shown
    assert "successive halving, rungs at epoch 1: the top 1/2 at a rung go on" in shown
    assert next(d.value for d in at.dataframe if "outcome" in d.value.columns)["outcome"].tolist() == rungs[
        "outcome"].tolist()

    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    pauses = [t for f in figures for t in f["data"] if t.get("meta") == "paused" and t.get("mode") == "markers"]
    assert len(pauses) == 2 and all(t["marker"]["symbol"] == "line-ns" and len(t["x"]) == 2 for t in pauses)
    assert all("paused after epoch 1: " in t["hovertext"][0] for t in pauses)
    assert "2 trial(s) complete: fANOVA importance (Optuna) needs at least 3, to tell which setting mattered." in shown


def test_the_page_ranks_settings_by_fanova_once_three_trials_complete(conn, app_env):
    group_id, _ = searching_sweep(app_env, PrunerConfig(kind="none"), trials=4, epochs=1)
    for acc in (0.30, 0.40, 0.50, 0.60):
        train(conn, [acc])
    at = _open(group_id)
    assert "**Which setting mattered most** (fANOVA importance (Optuna))" in _texts(at.markdown)
    assert "**learning_rate** mattered most: fANOVA importance (Optuna) gives it 100%" in _texts(at.markdown)

    [bars] = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if json.loads(c.proto.spec)["data"][0]["type"] == "bar"]
    assert bars["layout"]["xaxis"]["title"]["text"].startswith("fANOVA importance (Optuna): share of the variance")
    assert sweeps.rung_table(conn, group_id) is None


def test_the_page_stops_a_sweep_and_resumes_it_with_a_larger_budget(conn, app_env):
    group_id, _ = searching_sweep(app_env, MEDIAN, trials=3)
    at = _open(group_id)
    at = _run(at.button(key="sweeps_stop").click())
    assert not at.error, _texts(at.error)
    assert "sweep 1 stopped: 3 queued trial(s) cancelled" in _texts(at.success)
    assert "Stopped: sweep 1 stopped by hand." in _texts(at.warning)
    at = _run(at.number_input(key=f"sweeps_resume_max_trials_{group_id}").set_value(2))
    at = _run(at.button(key="sweeps_resume").click())
    assert "max_trials=2 is below the 3 trials it started" in _texts(at.error)
    at = _run(at.number_input(key=f"sweeps_resume_max_trials_{group_id}").set_value(5))
    at = _run(at.button(key="sweeps_resume").click())
    assert not at.error, _texts(at.error)
    assert "sweep 1 resumed: 3 stopped trial(s) queued again, 2 new trial(s)" in _texts(at.success)
    assert "**Budget used:** 5 of 5 trials started" in _texts(at.markdown)
    assert not at.warning and at.button(key="sweeps_stop")


def test_the_idle_note_counts_the_paused_trials_waiting_at_a_rung():
    status = sweeps.SearchStatus(settings="", trials=4, max_trials=4, epochs=6, max_epochs=None, minutes=0.0,
                                 max_minutes=None, counts={**dict.fromkeys(sweeps.STATUS_STATES, 0), "paused": 2},
                                 best_run=1, best_value=0.5)
    assert status.idle and status.idle_note == ("Idle: nothing is queued or running; 2 paused trials wait at a rung, "
                                                "promoted only if later trials do worse there. Raise the budget to "
                                                "search on.")
    assert not sweeps.SearchStatus(**{**status.__dict__, "stopped": "stopped by hand"}).idle
    assert not sweeps.SearchStatus(**{**status.__dict__, "counts": {**status.counts, "queued": 1}}).idle


def test_a_paused_or_pruned_trial_is_told_what_its_stop_means_not_to_train_on(conn, app_env):
    group_id, done = _median_sweep(conn, app_env)
    pruned = Lab().run(done[2].id).diagnosis
    assert pruned.next_step.startswith("Its sweep's pruner stopped it for good")
    assert not Lab().run(done[0].id).diagnosis.next_step.startswith("Its sweep's pruner")  # complete: its curves' own
    searching_sweep(app_env, PrunerConfig(kind="successive_halving", min_epochs=1, eta=2), trials=2,
                                        epochs=2, name="sh")
    train(conn, [0.50, 0.60])
    paused, _ = train(conn, [0.30])
    assert paused.state == queue.PAUSED
    at = open_page("pages/run.py", run=str(paused.id))
    shown = "\n".join(_texts(e) for e in (at.markdown, at.warning, at.info, at.success))
    assert "Next: Its sweep's pruner paused it at a rung: it resumes from its checkpoint" in shown

