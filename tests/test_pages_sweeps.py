"""The Sweeps page, driven headless with AppTest on small generated data and a real store."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from pagetools import open_page
from pagetools import rerun as _run
from pagetools import texts as _texts

from cifar_core.lab import Lab
from cifar_core.jobs import queue, store
from cifar_core.analysis import sweeps
from cifar_core.spec import space as sweep_space
from cifar_core.spec.presets import get_preset
from cifar_core.testing.datagen import tiny_spec



def _open(**query):
    return open_page("pages/sweeps.py", via_app=False, timeout=60, **query)

TINY = tiny_spec(epochs=1, learning_rate=0.001)
GRID = '{"learning_rate": {"values": [0.01, 0.001]}, "batch_size": {"values": [32, 64]}}'


def _frame(at: AppTest, column: str):
    """The first table shown that has `column` (AppTest does not expose a dataframe's key):
    "epochs" picks the preview, "method" the list of sweeps, "status" the chosen sweep's runs."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _finished_sweep(conn, source: str) -> int:
    """A 3-run sweep taken through the real queue: submitted, claimed, one epoch each, succeeded."""
    space = {"method": "grid", "params": {"learning_rate": {"values": [0.01, 0.001, 0.0001]}}}
    group_id, _ = Lab().submit_sweep(TINY, space, source)
    while (job := queue.claim(conn, "test-worker")) is not None:
        acc = 0.6 - job.spec["learning_rate"] * 10
        queue.record_epoch(conn, job.lease, {"epoch": 1, "loss": 1.0, "accuracy": acc, "val_loss": 1.1,
                                          "val_accuracy": acc, "seconds": 0.5, "learning_rate": job.spec["learning_rate"]})
        queue.finish(conn, job.lease, queue.SUCCEEDED, results={"test_accuracy": acc, "test_loss": 1.2})
    return group_id


def test_controls_render_with_an_example_space(app_env):
    at = _open()
    base = at.selectbox(key="sweeps_base")
    assert base.value == "preset:exp1"
    assert [o for o in base.options if "exp5" in o] == ["exp5 · Conv + Dropout"]
    assert at.selectbox(key="sweeps_method").value == "random"
    assert at.number_input(key="sweeps_budget").value == sweep_space.DEFAULT_BUDGET
    assert at.number_input(key="sweeps_seed").value == 0
    # Issue 14: a cheap default, at most 3 epochs a run (was exp1's own 20, so 120 epochs in all)
    assert at.number_input(key="sweeps_epochs").value == 3
    assert at.toggle(key="sweeps_holdout").value is True
    assert json.loads(at.text_area(key="sweeps_space").value) == sweeps.example_params(get_preset("exp1"))
    assert "**6 runs** · 18 epochs in all · 30,840 parameters each" in _texts(at.markdown)
    assert len(_frame(at, "epochs")) == 6
    assert at.button(key="sweeps_submit").label == "Submit 6 runs"
    assert "No sweeps yet" in _texts(at.info)
    assert not at.get("plotly_chart")


def test_choosing_another_base_refills_the_space(app_env):
    at = _open()
    at.text_area(key="sweeps_space").set_value('{"batch_size": {"values": [16]}}')
    at = _run(at.selectbox(key="sweeps_base").set_value("preset:exp5"))
    assert "layers.2.rate" in json.loads(at.text_area(key="sweeps_space").value)
    assert at.number_input(key="sweeps_epochs").value == 3  # issue 14: at most 3 (was exp5's own 10)


@pytest.mark.parametrize(
    "text, method, message",
    [
        ('{"learning_rate": {"log_uniform": [0, 0.1]}}', "random", "learning_rate log_uniform bounds must be > 0"),
        ('{"learning_rate": {"log_uniform": [0.001, 0.1]}}', "grid", "grid needs 'values' lists; learning_rate has log_uniform"),
        ('{"learning_rate": {"values": [0.001, 50]}}', "grid",
         "run 'exp1-s02' (learning_rate=50) is invalid: learning_rate=50 is out of range (0, 10]"),
        ('{"layers.7.units": {"values": [8]}}', "grid", "sweep path 'layers.7.units': layers has 3 entries (0..2)"),
        ('{"learning_rate": ', "grid", "the search space is not valid JSON"),
    ],
)
def test_an_invalid_space_shows_the_error_and_no_submit(app_env, text, method, message):
    at = _open()
    at.selectbox(key="sweeps_method").set_value(method)
    at = _run(at.text_area(key="sweeps_space").set_value(text))
    assert message in _texts(at.error)
    assert not [b for b in at.button if b.key == "sweeps_submit"]


def test_a_valid_space_previews_then_submit_enqueues_it(conn, app_env):
    at = _open()
    at.selectbox(key="sweeps_method").set_value("grid")
    at.number_input(key="sweeps_epochs").set_value(2)
    at = _run(at.text_area(key="sweeps_space").set_value(GRID))
    assert not at.error
    assert "**4 runs** · 8 epochs in all" in _texts(at.markdown)
    preview = _frame(at, "epochs")
    assert preview["name"].tolist() == ["exp1-s01", "exp1-s02", "exp1-s03", "exp1-s04"]
    assert preview["batch_size"].tolist() == [32, 64, 32, 64]
    assert sum(queue.counts(conn).values()) == 0  # previewing enqueues nothing

    at = _run(at.button(key="sweeps_submit").click())
    listed = sweeps.list_sweeps(conn)
    assert listed[["name", "method", "runs", "active"]].values.tolist() == [["exp1", "grid", 4, 4]]
    group_id = int(listed["group"][0])
    assert f"Queued sweep #{group_id}: 4 runs" in _texts(at.success)
    jobs = [queue.get_job(conn, i) for i in sweeps.get_sweep(conn, group_id).run_ids]
    assert all(j.state == queue.QUEUED and j.spec["epochs"] == 2 and j.spec["validation"] == "holdout" for j in jobs)
    assert jobs[3].spec["sweep_params"] == {"learning_rate": 0.001, "batch_size": 64}
    assert at.selectbox(key="sweeps_selected").value == group_id
    assert len(_frame(at, "status")) == 4
    assert "No run of this sweep has finished yet" in _texts(at.info)


def test_the_next_sweeps_preview_names_its_runs_past_the_last_one(conn, app_env):
    at = _open()
    at.selectbox(key="sweeps_method").set_value("grid")
    at = _run(at.text_area(key="sweeps_space").set_value(GRID))
    at = _run(at.button(key="sweeps_submit").click())
    preview = _frame(at, "epochs")["name"].tolist()
    assert preview == ["exp1-s05", "exp1-s06", "exp1-s07", "exp1-s08"]  # issue 14: unique across sweeps
    at = _run(at.button(key="sweeps_submit").click())
    group_id = int(sweeps.list_sweeps(conn)["group"][0])
    assert [queue.get_job(conn, i).name for i in sweeps.get_sweep(conn, group_id).run_ids] == preview


def test_saved_experiments_and_the_builder_hand_off_are_offered(conn, app_env):
    Lab().save_experiment(TINY)
    at = _open(base="saved:tiny")
    assert at.selectbox(key="sweeps_base").value == "saved:tiny"
    assert at.number_input(key="sweeps_epochs").value == 1
    at.session_state["sweeps_base_doc"] = {**TINY, "name": "from-builder", "learning_rate": 0.02}
    at = _run(at)
    assert at.selectbox(key="sweeps_base").value == "builder:"
    assert json.loads(at.text_area(key="sweeps_space").value)["learning_rate"] == {"log_uniform": [0.002, 0.2]}
    assert "from-builder-s01" in _frame(at, "epochs")["name"].tolist()


def test_a_finished_sweep_draws_its_charts(conn, app_env):
    group_id = _finished_sweep(conn, str(app_env))
    Lab().submit_sweep(TINY, {"method": "grid", "params": {"batch_size": {"values": [16]}}}, str(app_env))
    at = _open(sweep=str(group_id))  # the newer, unfinished sweep is listed first; the link picks this one
    assert at.selectbox(key="sweeps_selected").value == group_id
    assert len(_frame(at, "method")) == 2
    runs = _frame(at, "status")
    assert runs["status"].tolist() == [queue.SUCCEEDED] * 3 and runs["learning_rate"].tolist() == [0.01, 0.001, 0.0001]
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    parcoords = json.loads(charts[0].proto.spec)["data"][0]
    assert parcoords["type"] == "parcoords"
    assert [d["label"] for d in parcoords["dimensions"]] == ["learning_rate (log)", "best val accuracy"]
    assert json.loads(charts[1].proto.spec)["data"][0]["type"] == "bar"
    assert "**learning_rate** mattered most" in _texts(at.markdown)


def test_the_leaderboard_shows_a_sweep_with_its_chart_and_compares_its_runs(conn, app_env):
    group_id = _finished_sweep(conn, str(app_env))
    Lab().submit(TINY, str(app_env))  # a run outside the sweep
    at = open_page("pages/leaderboard.py", timeout=60)
    assert at.selectbox(key="lb_sweep").value is None and len(_frame(at, "status")) == 4
    assert not at.get("plotly_chart")
    at = _run(at.selectbox(key="lb_sweep").set_value(group_id))
    assert len(_frame(at, "status")) == 3
    parcoords, importance = (json.loads(c.proto.spec)["data"][0] for c in at.get("plotly_chart"))
    assert parcoords["type"] == "parcoords" and importance["type"] == "bar"
    assert "**learning_rate** mattered most" in _texts(at.markdown)
    at = _run(at.button(key="lb_compare_sweep").click())
    assert sorted(at.multiselect(key="lb_runs").value) == sorted(sweeps.get_sweep(conn, group_id).run_ids)


def test_a_sweep_link_opens_the_leaderboard_on_that_sweep(conn, app_env):
    group_id = _finished_sweep(conn, str(app_env))
    at = open_page("pages/leaderboard.py", timeout=60, sweep=str(group_id))
    assert at.selectbox(key="lb_sweep").value == group_id
    at = open_page("pages/leaderboard.py", timeout=60, sweep="999")  # unknown: all runs, no error
    assert at.selectbox(key="lb_sweep").value is None and not at.exception


def test_sweeps_are_numbered_among_sweeps_not_among_groups(conn, app_env):
    """Issue 31: after a set of repeats (a group too), the first sweep was called "Sweep #2"."""
    repeats = Lab().submit(TINY, str(app_env), repeats=2)
    assert repeats.group_id is not None
    at = _open()
    at.selectbox(key="sweeps_method").set_value("grid")
    at = _run(at.text_area(key="sweeps_space").set_value(GRID))
    at = _run(at.button(key="sweeps_submit").click())
    group_id = int(sweeps.list_sweeps(conn)["group"][0])
    assert group_id > repeats.group_id
    assert "Queued sweep #1: 4 runs" in _texts(at.success)
    assert at.selectbox(key="sweeps_selected").format_func(group_id).startswith("#1 exp1 ")
    assert _frame(at, "method")["number"].tolist() == [1]
    at = open_page("pages/leaderboard.py", timeout=60, sweep=str(group_id))
    assert at.selectbox(key="lb_sweep").format_func(group_id).startswith("#1 exp1 ")
    assert [h.value for h in at.subheader if h.value.startswith("Sweep")] == ["Sweep #1: exp1"]


def test_a_sweep_with_a_sampler_and_a_pruner_is_queued_with_its_search(conn, app_env):
    """Issue 30: the page takes Optuna's sampler and a pruner; TPE queues its first two trials and
    the sweep keeps how it searches, for the decisions after each epoch."""
    at = _open()
    at.selectbox(key="sweeps_method").set_value("grid")
    at.selectbox(key="sweeps_sampler").set_value("tpe")
    at.selectbox(key="sweeps_pruner").set_value("successive_halving")
    at.number_input(key="sweeps_budget").set_value(5)
    at = _run(at.text_area(key="sweeps_space").set_value(GRID))
    assert not at.error
    assert "**2 runs** · 6 epochs in all" in _texts(at.markdown)  # TPE starts with two, then one more as each ends
    at = _run(at.button(key="sweeps_submit").click())
    group_id = int(sweeps.list_sweeps(conn)["group"][0])
    detail = store.group_detail(conn, group_id)
    assert detail["search"]["sampler"] == "tpe" and detail["search"]["max_trials"] == 5
    assert detail["search"]["pruner"]["kind"] == "successive_halving" and detail["search"]["pruner"]["max_epochs"] == 3
    assert detail["search"]["pruner"]["eta"] == 4  # successive halving's default, as Optuna's
    assert len(sweeps.get_sweep(conn, group_id).run_ids) == 2


def test_the_rung_factor_is_asked_for_under_successive_halving_and_hyperband_only(conn, app_env):
    at = _open()
    assert not [n for n in at.number_input if n.key.startswith("sweeps_eta")]  # no pruner: nothing to ask
    at = _run(at.selectbox(key="sweeps_pruner").set_value("hyperband"))
    assert at.number_input(key="sweeps_eta_hyperband").value == 3
    at.number_input(key="sweeps_eta_hyperband").set_value(2)
    at.selectbox(key="sweeps_method").set_value("grid")
    at = _run(at.text_area(key="sweeps_space").set_value(GRID))
    at = _run(at.button(key="sweeps_submit").click())
    group_id = int(sweeps.list_sweeps(conn)["group"][0])
    assert store.group_detail(conn, group_id)["search"]["pruner"] == {
        "kind": "hyperband", "min_epochs": 1, "startup_trials": 5, "percentile": 25.0, "eta": 2, "max_epochs": 3}
