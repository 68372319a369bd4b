"""The curve figures (`cifar_core.charts.curves`): epochs as whole numbers from 1, the legend clear of
Plotly's toolbar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cifar_core.analysis import curves as run_curves
from cifar_core.charts import curves as charts
from cifar_core.charts import notebook as notebook_charts


def _history(epochs: int) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, epochs + 1), "loss": 1.0, "val_loss": 1.1, "accuracy": 0.3,
                         "val_accuracy": 0.25})


def test_one_epoch_shows_one_tick_at_1_never_0_to_1():
    fig = charts.history(_history(1))
    for axis in (fig.layout.xaxis, fig.layout.xaxis2):
        assert list(axis.tickvals) == [1] and axis.range[0] > 0 and axis.range[1] < 2


@pytest.mark.parametrize("epochs, ticks", [(3, [1, 2, 3]), (40, [1, 5, 10, 15, 20, 25, 30, 35, 40]),
                                           (200, [1, *range(20, 201, 20)])])
def test_epoch_ticks_are_whole_numbers_from_1(epochs, ticks):
    fig = charts.history(_history(epochs))
    assert list(fig.layout.xaxis.tickvals) == ticks and 0 < fig.layout.xaxis.range[0] < 1


def test_the_legend_is_below_the_plot_never_under_the_toolbar():
    curves = pd.DataFrame({"label": ["#1 a"] * 2, "split": ["val"] * 2, "epoch": [1, 2], "value": [0.1, 0.2],
                           "raw": [0.1, 0.2]})
    for fig in (charts.history(_history(2)), charts.overlay(curves, "accuracy")):
        legend = fig.layout.legend
        assert (legend.yref, legend.y, legend.yanchor, legend.xanchor) == ("container", 0, "bottom", "left")


def test_the_notebook_curve_widens_the_epoch_axis():
    fig = notebook_charts.history_figure(_history(1), "exp4")
    assert fig.layout.xaxis2.range[1] > 20 and fig.layout.xaxis2.tickvals[0] == 1


def test_a_point_inside_the_first_epoch_stays_in_view():
    fig = charts.epoch_axis(charts.go.Figure(), [0.4, 1.0])
    assert fig.layout.xaxis.range[0] < 0.4 and list(fig.layout.xaxis.tickvals) == [1]


def test_running_points_are_a_thin_dotted_train_line_beside_the_epoch_markers():
    running = pd.DataFrame({"run": 1, "epoch": [0.3, 0.6, 1.0, 1.4], "loss": [2.2, 1.9, 1.7, 1.5],
                            "accuracy": [0.1, 0.2, 0.3, 0.35]})
    fig = charts.history(_history(1), running=running)
    dotted = [t for t in fig.data if t.name == charts.RUNNING_NAME]
    assert [list(t.y) for t in dotted] == [[2.2, 1.9, 1.7, 1.5], [0.1, 0.2, 0.3, 0.35]]  # loss, then accuracy
    assert all(t.line.dash == "dot" and t.line.width == 1 and t.mode == "lines" for t in dotted)
    assert [t.showlegend for t in dotted] == [True, False]  # one legend entry for both panels
    assert {t.name for t in fig.data if t.mode == "lines+markers"} == {"train", "validation"}  # per epoch, as before
    for axis in (fig.layout.xaxis, fig.layout.xaxis2):
        assert list(axis.tickvals) == [1] and axis.range[0] < 0.3 and axis.range[1] > 1.4  # whole ticks, all in view


def test_running_points_draw_before_the_first_epoch_ends():
    running = pd.DataFrame({"run": 1, "epoch": [0.2, 0.5], "loss": [2.3, 2.0], "accuracy": [0.1, 0.15]})
    fig = charts.history(_history(0), running=running)
    assert [t.name for t in fig.data] == [charts.RUNNING_NAME] * 2
    assert list(fig.layout.xaxis.tickvals) == [1] and fig.layout.xaxis.range[0] < 0.2


def test_equal_learning_rates_are_one_curve_named_together_and_read_cleanly():
    rate = float(np.float32(0.001))  # what a run records: 0.0010000000474974513
    history = pd.DataFrame({"run": [1, 1, 2, 2, 3, 3], "epoch": [1, 2] * 3, "learning_rate": [rate, rate, rate, rate, 0.01, 0.01]})
    frame = run_curves.curves(history, "learning_rate", labels={1: "#1 a", 2: "#2 b", 3: "#3 c"})
    fig = charts.overlay(frame, "learning rate")
    assert [t.name for t in fig.data] == ["#1 a, #2 b train", "#3 c train"]
    assert list(fig.data[0].y) == [0.001, 0.001] and list(fig.data[0].customdata) == [0.001, 0.001]
    assert fig.layout.yaxis.tickformat == "~g" and "%{y:.4~g}" in fig.data[0].hovertemplate
    accuracy = charts.overlay(run_curves.curves(history.assign(accuracy=0.5, val_accuracy=0.4), "accuracy"), "accuracy")
    assert len(accuracy.data) == 2 and accuracy.layout.yaxis.tickformat is None  # two identical series, one per split
