"""Run comparison: settings side by side with differences flagged, EMA smoothing, curves, filters."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cifar_core.spec import diff as compare
from cifar_core.views import leaderboard as board_view
from cifar_core.analysis import curves as run_curves
from cifar_core.spec.presets import get_preset
from cifar_core.spec.validate import parse_spec


def test_settings_table_flags_only_the_rows_that_differ():
    a, b = get_preset("exp4"), get_preset("exp4")
    b.update(name="exp4 fast", learning_rate=0.01)
    table = compare.settings_table({"A": a, "B": b})
    assert list(table.columns) == ["A", "B", "differs"]
    assert set(table.index[table["differs"]]) == {"name", "learning_rate"}
    assert table.loc["learning_rate", "B"] == "0.01"
    assert table.loc["layer 00", "A"] == "Conv2D filters=32 kernel_size=3 padding=same activation=relu"


def test_normalised_and_short_specs_compare_equal():
    """A stored (normalised) spec and the preset it came from differ in form only."""
    doc = get_preset("exp5")
    table = compare.settings_table({"stored": parse_spec(doc).to_dict(), "preset": doc})
    assert not table["differs"].any(), table[table["differs"]]


def test_layers_missing_from_the_shorter_spec_show_a_dash():
    table = compare.settings_table([get_preset("exp4"), get_preset("exp5")])
    assert list(table.columns[:2]) == ["exp4", "exp5"]
    assert table.loc["layer 12", "exp4"] == compare.ABSENT
    assert table.loc["layers", "exp5"] == "13"
    assert table.loc["layer 12", "differs"]


def test_nested_settings_are_flattened():
    a = dict(get_preset("exp4"), schedule={"type": "cosine", "warmup_epochs": 1})
    table = compare.settings_table({"a": a, "b": get_preset("exp4")})
    assert table.loc["schedule.type", "a"] == "cosine"
    assert table.loc["schedule.warmup_epochs", "b"] == compare.ABSENT
    assert table.loc["schedule.type", "differs"]


def test_one_spec_differs_from_nothing():
    assert not compare.settings_table({"only": get_preset("exp1")})["differs"].any()


def test_smooth_is_an_ema_that_keeps_gaps():
    assert run_curves.smooth([1.0, 2.0, 3.0], 0.0).tolist() == [1.0, 2.0, 3.0]
    smoothed = run_curves.smooth([1.0, 3.0, None, 5.0], 0.5).tolist()
    assert smoothed[:2] == [1.0, 2.0]
    assert math.isnan(smoothed[2])
    assert smoothed[3] == pytest.approx(0.5 * 2.0 + 0.5 * 5.0)


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 2])
def test_smooth_rejects_alpha_out_of_range(alpha):
    with pytest.raises(ValueError, match=r"alpha=.* is out of range \[0, 1\)"):
        run_curves.smooth([1.0], alpha)


def _history() -> pd.DataFrame:
    rows = [(run, e, 1.0 / e, 0.1 * e + run / 100, 1.2 / e, 0.1 * e) for run in (3, 7) for e in (1, 2, 3)]
    return pd.DataFrame(rows, columns=["run", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"])


def test_curves_long_frame_per_run_and_split():
    out = run_curves.curves(_history(), "accuracy", labels={3: "#3 a", 7: "#7 b"})
    assert len(out) == 2 * 2 * 3
    assert set(out["label"]) == {"#3 a", "#7 b"}
    assert set(out["split"]) == {"train", "val"}
    val7 = out[(out["run"] == 7) & (out["split"] == "val")]
    assert val7["value"].tolist() == pytest.approx([0.1, 0.2, 0.3])


def test_curves_smooth_values_but_keep_raw():
    out = run_curves.curves(_history(), "loss", alpha=0.5, splits=["train"])
    run3 = out[out["run"] == 3]
    assert set(out["split"]) == {"train"}
    assert run3["raw"].tolist() == pytest.approx([1.0, 0.5, 1 / 3])
    assert run3["value"].tolist() == pytest.approx([1.0, 0.75, 0.75 * 0.5 + (1 / 3) * 0.5])


def test_curves_of_an_unknown_metric_name_the_choices():
    with pytest.raises(ValueError, match="metric 'f1' is unknown: use one of accuracy, loss"):
        run_curves.curves(_history(), "f1")


def test_curves_of_no_runs_is_an_empty_frame():
    empty = run_curves.curves(_history().iloc[0:0], "loss")
    assert empty.empty and "value" in empty.columns


def test_filter_board_by_name_and_status():
    board = pd.DataFrame({"run": [1, 2, 3], "name": ["exp4", "EXP5 wide", "exp5"], "status": ["succeeded", "failed", "succeeded"]})
    assert board_view.filter_board(board, "exp5")["run"].tolist() == [2, 3]
    assert board_view.filter_board(board, "", ["succeeded"])["run"].tolist() == [1, 3]
    assert board_view.filter_board(board, "exp5", ["succeeded"])["run"].tolist() == [3]
    assert board_view.filter_board(board)["run"].tolist() == [1, 2, 3]
    assert board_view.filter_board(board, "(")["run"].tolist() == []  # plain text, not a pattern


def test_filter_board_by_group():
    board = pd.DataFrame({"run": [1, 2, 3], "name": ["a", "b", "c"], "status": ["succeeded"] * 3, "group": [None, 7, 7]})
    assert board_view.filter_board(board, group=7)["run"].tolist() == [2, 3]
    assert board_view.filter_board(board, "b", group=7)["run"].tolist() == [2]
    assert board_view.filter_board(board, group=8).empty
