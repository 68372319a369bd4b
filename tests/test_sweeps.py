"""Sweeps in the store: all-or-nothing submission, the per-run table, setting importance (fANOVA), the charts,
the CLI, and one short real sweep trained by a real worker."""

from __future__ import annotations

import json
import math

import pytest

from cifar_core.charts import sweeps as charts_sweep
from cifar_core.jobs import queue
from cifar_core.jobs import store
from cifar_core.analysis import sweeps
from cifar_core.lab import Lab
from cifar_core.errors import NotFound, SpecError
from cifar_core.spec.presets import get_preset, preset_names
from cifar_core.spec.summary import summarize
from cifar_core.testing.datagen import tiny_spec
from cifar_core.testing.procs import cli

TINY = tiny_spec(epochs=1, learning_rate=0.001, validation="holdout")
RATE_GRID = {"method": "grid", "params": {"learning_rate": {"values": [0.01, 0.001, 0.0001]}}}


def _nothing_queued(conn) -> None:
    assert sum(queue.counts(conn).values()) == 0
    assert conn.execute("SELECT COUNT(*) FROM groups").fetchone()[0] == 0


def _finish_all(conn, group_id: int, accuracy) -> None:
    """Take every queued run of the sweep through the real queue: claim, one epoch, succeed, with
    `accuracy(sweep_params)` as its validation accuracy."""
    while (job := queue.claim(conn, "test-worker")) is not None:
        assert job.group_id == group_id
        acc = accuracy(job.spec["sweep_params"])
        queue.record_epoch(conn, job.lease, {"epoch": 1, "loss": 1.0, "accuracy": acc, "val_loss": 1.1,
                                          "val_accuracy": acc, "seconds": 0.5, "learning_rate": 0.001})
        queue.finish(conn, job.lease, queue.SUCCEEDED, results={"test_accuracy": acc - 0.01, "test_loss": 1.2})


# ------------------------------------------------------------------ submitting: all or nothing


def test_a_path_missing_from_the_base_queues_nothing(conn, small_data):
    space = {"method": "grid", "params": {"learning_rate": {"values": [0.001]}, "layers.9.units": {"values": [8]}}}
    with pytest.raises(SpecError, match=r"sweep path 'layers\.9\.units': layers has 4 entries \(0\.\.3\), so 9 does not exist"):
        Lab().submit_sweep(TINY, space, str(small_data))
    _nothing_queued(conn)


def test_one_invalid_value_queues_nothing_and_names_the_run_and_path(conn, small_data):
    space = {"method": "grid", "params": {"batch_size": {"values": [32, 64]}, "learning_rate": {"values": [0.001, 50]}}}
    with pytest.raises(SpecError, match=(
        r"run 'tiny-s02' \(batch_size=32, learning_rate=50\) is invalid: learning_rate=50 is out of range \(0, 10\]; "
        r".*2 of 4 runs are invalid, nothing was queued: change the range of learning_rate in the search space"
    )) as info:
        Lab().submit_sweep(TINY, space, str(small_data))
    assert info.value.field == "space"
    _nothing_queued(conn)


def test_runs_are_validated_against_the_dataset(conn, small_data):
    # The output layer must have one unit per class of the data (10 here): 12 fails for that run only.
    space = {"method": "grid", "params": {"layers.3.units": {"values": [10, 12]}}}
    with pytest.raises(SpecError, match=r"run 'tiny-s02' \(layers\.3\.units=12\) is invalid: layer 3 \(Dense\).*"
                                        r"change the range of layers\.3\.units"):
        Lab().submit_sweep(TINY, space, str(small_data))
    _nothing_queued(conn)


def test_an_invalid_base_is_named_as_the_base(conn, small_data):
    with pytest.raises(SpecError, match=r"the base experiment 'tiny' is invalid, so every run is: epochs=0 is out of range"):
        Lab().submit_sweep({**TINY, "epochs": 0}, RATE_GRID, str(small_data))
    _nothing_queued(conn)


def test_list_values_and_reserved_paths_are_refused():
    with pytest.raises(SpecError, match=r"layers\.0\.kernel_size values must be single numbers.*got \[3, 3\]"):
        sweeps.plan_sweep(TINY, {"method": "grid", "params": {"layers.0.kernel_size": {"values": [3, [3, 3]]}}})
    with pytest.raises(SpecError, match=r"sweep path 'name' is set for each run by the sweep"):
        sweeps.plan_sweep(TINY, {"method": "grid", "params": {"name": {"values": ["a", "b"]}}})


def test_submit_enqueues_one_sweep_group_with_counted_runs(conn, small_data):
    space = {"method": "grid", "params": {"learning_rate": {"values": [0.01, 0.001]}, "layers.0.filters": {"values": [4, 8]}}}
    group_id, ids = Lab().submit_sweep(TINY, space, str(small_data))
    assert len(ids) == 4
    kind, name, detail = conn.execute("SELECT kind, name, detail_json FROM groups WHERE id = ?", (group_id,)).fetchone()
    assert (kind, name) == ("sweep", "tiny")
    detail = json.loads(detail)
    assert detail["space"]["method"] == "grid" and detail["space"]["params"] == space["params"]
    assert detail["base"] == TINY
    jobs = [queue.get_job(conn, i) for i in ids]
    assert [j.name for j in jobs] == ["tiny-s01", "tiny-s02", "tiny-s03", "tiny-s04"]
    assert all(j.group_id == group_id and j.state == queue.QUEUED for j in jobs)
    assert jobs[1].spec["sweep_params"] == {"learning_rate": 0.01, "layers.0.filters": 8}
    assert jobs[1].spec["layers"][0]["filters"] == 8 and jobs[1].spec["learning_rate"] == 0.01
    params = [conn.execute("SELECT params FROM runs WHERE id = ?", (i,)).fetchone()[0] for i in ids]
    assert params[0] == summarize(TINY).total_params
    assert params[1] == summarize({**TINY, "layers": jobs[1].spec["layers"]}).total_params > params[0]


def test_setting_one_layer_of_a_preset_changes_that_layer_only():
    # exp5 lists one shared Dropout dict three times (after each pool); sweeping layer 2's rate must leave the others alone.
    plan = sweeps.plan_sweep(get_preset("exp5"), {"method": "grid", "params": {"layers.2.rate": {"values": [0.4]}}})
    rates = [layer["rate"] for layer in plan.docs[0]["layers"] if layer["type"] == "Dropout"]
    assert rates == [0.4, 0.2, 0.2]


@pytest.mark.parametrize("name", preset_names())
def test_the_example_space_of_every_preset_is_valid(name):
    base = get_preset(name)
    params = sweeps.example_params(base)
    assert params["learning_rate"]["log_uniform"] == [base["learning_rate"] / 10, min(base["learning_rate"] * 10, 1.0)]
    plan = sweeps.plan_sweep(base, sweeps.space_from_inputs(sweeps.params_text(params), "random", 4, 0))
    assert plan.runs == 4
    assert list(plan.table().columns) == ["name", *params, "params", "epochs"]
    assert ("layers.2.rate" in params) == (name == "exp5")


def test_space_from_inputs():
    assert sweeps.space_from_inputs('{"batch_size": {"values": [32, 64]}}', "grid", 5, 3) == {
        "method": "grid", "seed": 3, "params": {"batch_size": {"values": [32, 64]}}}
    assert sweeps.space_from_inputs('{"a": {"values": [1]}}', "random", 5, 0)["budget"] == 5
    whole = {"method": "random", "budget": 2, "params": {"a": {"values": [1]}}}
    assert sweeps.space_from_inputs(json.dumps(whole), "grid", 9, 9) == whole
    with pytest.raises(SpecError, match=r"the search space is not valid JSON: Expecting ',' delimiter at line 1 column 23"):
        sweeps.space_from_inputs('{"a": {"values": [1]} "b": 2}', "grid")


# ------------------------------------------------------------------ reading sweeps back


def test_sweep_table_has_a_column_per_swept_path(conn, small_data):
    space = {"method": "grid", "params": {"learning_rate": {"values": [0.01, 0.001]}, "layers.0.filters": {"values": [4, 8]}}}
    group_id, ids = Lab().submit_sweep(TINY, space, str(small_data))
    table = sweeps.sweep_table(conn, group_id)
    assert list(table.columns) == ["run", "name", "status", "learning_rate", "layers.0.filters", "best_val_accuracy",
                                   "best_epoch", "test_accuracy", "params", "seconds_per_epoch"]
    assert table["run"].tolist() == ids
    assert table["layers.0.filters"].tolist() == [4, 8, 4, 8]
    assert table["learning_rate"].tolist() == [0.01, 0.01, 0.001, 0.001]
    assert set(table["status"]) == {queue.QUEUED} and table["best_val_accuracy"].isna().all()
    assert sweeps.sweep_importance(conn, group_id).why_not == "0 trial(s) complete: fANOVA importance (Optuna) needs at least 3"


def test_a_finished_sweep_ranks_the_setting_that_drove_accuracy(conn, small_data):
    space = {"method": "grid", "params": {"learning_rate": {"values": [0.01, 0.001, 0.0001]},
                                          "batch_size": {"values": [32, 64]}}}
    group_id, ids = Lab().submit_sweep(TINY, space, str(small_data))
    # accuracy follows the learning rate; batch size adds a little
    _finish_all(conn, group_id, lambda p: 0.3 - 0.05 * math.log10(p["learning_rate"]) + p["batch_size"] / 10_000)
    table = sweeps.sweep_table(conn, group_id)
    assert set(table["status"]) == {queue.SUCCEEDED}
    assert table["best_val_accuracy"].round(4).tolist() == pytest.approx([0.4032, 0.4064, 0.4532, 0.4564, 0.5032, 0.5064])
    found = sweeps.sweep_importance(conn, group_id)
    assert [name for name, _ in found.ranked] == ["learning_rate", "batch_size"] and found.trials == 6
    assert found.ranked[0][1] > 0.9 and found.ranked[1][1] < 0.1
    sentence = sweeps.importance_sentence(found)
    assert sentence.startswith("**learning_rate** mattered most: fANOVA importance (Optuna) gives it ") and \
        "of the variance in best validation accuracy over 6 complete runs" in sentence

    listed = sweeps.list_sweeps(conn)
    assert list(listed.columns) == sweeps.SWEEP_COLUMNS
    row = listed.iloc[0]
    assert (row["group"], row["name"], row["method"], row["runs"], row["done"], row["active"]) == (group_id, "tiny", "grid", 6, 6, 0)
    assert row["params"] == "learning_rate, batch_size"
    assert row["best"] == pytest.approx(0.5064) and row["best_run"] == ids[-1]


def test_list_sweeps_counts_states_and_leaves_out_other_groups(conn, small_data):
    assert sweeps.list_sweeps(conn).empty
    Lab().submit(TINY, str(small_data), repeats=2)  # a 'repeats' group, not a sweep
    first, _ = Lab().submit_sweep(TINY, RATE_GRID, str(small_data))
    second, ids = Lab().submit_sweep(TINY, {"method": "random", "budget": 2, "params": {"batch_size": {"values": [16, 32]}}},
                                      str(small_data))
    queue.cancel(conn, ids[0])
    listed = sweeps.list_sweeps(conn)
    assert listed["group"].tolist() == [second, first]
    assert listed["number"].tolist() == [2, 1]  # numbered among sweeps: the repeats group takes no number
    assert Lab().sweep_number(first) == sweeps.get_sweep(conn, first).number == 1
    assert listed[["runs", "done", "failed", "active"]].values.tolist() == [[2, 0, 1, 1], [3, 0, 0, 3]]
    assert listed["best"].isna().all()
    with pytest.raises(NotFound, match=r"no sweep 999"):
        sweeps.sweep_table(conn, 999)


def test_importance_sentence_waits_for_three_runs_and_calls_a_few_a_hint(conn, small_data):
    group_id, _ = Lab().submit_sweep(TINY, RATE_GRID, str(small_data))
    assert sweeps.importance_sentence(sweeps.sweep_importance(conn, group_id)) == (
        "0 trial(s) complete: fANOVA importance (Optuna) needs at least 3, to tell which setting mattered.")
    _finish_all(conn, group_id, lambda p: 0.5 + p["learning_rate"])
    sentence = sweeps.importance_sentence(sweeps.sweep_importance(conn, group_id))
    assert sentence.startswith("**learning_rate** mattered most: fANOVA importance (Optuna) gives it 100%")
    assert "Over 3 runs this is a hint, not a finding" in sentence


# ------------------------------------------------------------------ charts


def test_parallel_chart_axes():
    import pandas as pd

    table = pd.DataFrame({
        "learning_rate": [0.01, 0.001, 0.001, 0.0001],  # two decades apart: a log axis
        "optimizer": ["adam", "sgd", "adam", "adam"],
        "augment.flip": [True, False, True, False],
        "batch_size": [32, 64, 32, 64],
        "best_val_accuracy": [0.5, 0.6, None, 0.7],
    })
    fig = charts_sweep.parallel(table, ["learning_rate", "optimizer", "augment.flip", "batch_size"])
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["learning_rate (log)", "optimizer", "augment.flip", "batch_size", "best val accuracy"]
    assert list(dims[0].values) == [-2.0, -3.0, -4.0] and list(dims[0].ticktext) == ["0.0001", "0.001", "0.01"]
    assert list(dims[1].ticktext) == ["adam", "sgd"] and list(dims[1].values) == [0, 1, 0]
    assert list(dims[2].ticktext) == ["false", "true"] and list(dims[2].values) == [1, 0, 0]
    assert list(dims[3].values) == [32, 64, 64] and list(dims[3].ticktext) == ["32", "64"] and dims[3].range == (32, 64)
    assert dims[4].range == (0.5, 0.7)
    assert list(fig.data[0].line.color) == [0.5, 0.6, 0.7]
    linear = charts_sweep.parallel(table.assign(learning_rate=[0.01, 0.005, 0.002, 0.001]), ["learning_rate"])
    assert linear.data[0].dimensions[0].label == "learning_rate"
    many = pd.DataFrame({"batch_size": range(8), "best_val_accuracy": 0.5})
    many = charts_sweep.parallel(many, ["batch_size"])
    assert many.data[0].dimensions[0].tickvals is None  # many values: Plotly's own ticks
    # a flat target: the axis is widened, not empty
    assert many.data[0].dimensions[1].range == (0.475, 0.525)
    forced = charts_sweep.parallel(table.assign(learning_rate=[0.01, 0.005, 0.002, 0.001]), ["learning_rate"], ["learning_rate"])
    assert forced.data[0].dimensions[0].label == "learning_rate (log)"
    bars = charts_sweep.importance([("learning_rate", 0.9), ("batch_size", 0.05)])
    assert list(bars.data[0].y) == ["batch_size", "learning_rate"] and list(bars.data[0].text) == ["5%", "90%"]


# ------------------------------------------------------------------ the CLI and a real sweep


def test_cli_errors_exit_2_with_one_line(lab_home, small_data, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"method": "grid", "params": {"learning_rate": {"values": [0.001, 50]}}}))
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY))
    proc = cli("sweep", str(spec), "--space", str(space), "--data", str(small_data), check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: run 'tiny-s02' (learning_rate=50) is invalid")
    proc = cli("sweep", str(spec), "--space", str(tmp_path / "none.json"), "--data", str(small_data), check=False)
    assert proc.returncode == 2 and proc.stderr == f"error: search space file '{tmp_path / 'none.json'}' does not exist; check the path\n"


def test_a_real_sweep_end_to_end(lab_home, small_data, tmp_path):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps({**TINY, "epochs": 3}))
    space = tmp_path / "space.json"
    space.write_text(json.dumps(RATE_GRID))
    out = cli("sweep", str(spec), "--space", str(space), "--data", str(small_data), "--epochs", "1").stdout
    head, _, tail = out.strip().partition(": ")
    assert head.startswith("sweep ")
    group_id, ids = int(head.split()[1]), [int(i) for i in tail.split()]
    assert len(ids) == 3

    cli("worker", "--exit-when-idle", timeout=240)

    conn = store.connect()
    table = sweeps.sweep_table(conn, group_id)
    assert table["status"].tolist() == [queue.SUCCEEDED] * 3, [queue.get_job(conn, i).error for i in ids]
    assert table["learning_rate"].tolist() == [0.01, 0.001, 0.0001]
    assert table["best_epoch"].tolist() == [1, 1, 1]  # --epochs 1 overrode the base's 3
    assert table["best_val_accuracy"].between(0, 1).all() and table["test_accuracy"].between(0, 1).all()
    found = sweeps.sweep_importance(conn, group_id)
    spread = table["best_val_accuracy"].max() - table["best_val_accuracy"].min()
    assert found.ranked == [("learning_rate", pytest.approx(1.0))] if spread > 0 else found.why_not
    row = sweeps.list_sweeps(conn).iloc[0]
    assert (row["group"], row["runs"], row["done"], row["failed"], row["active"]) == (group_id, 3, 3, 0, 0)
    assert row["best"] == pytest.approx(table["best_val_accuracy"].max())
    fig = charts_sweep.parallel(table, ["learning_rate"], sweeps.get_sweep(conn, group_id).log_paths)
    assert len(fig.data[0].dimensions[-1].values) == 3
    conn.close()
