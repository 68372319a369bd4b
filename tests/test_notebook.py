"""The notebook's recorded curves as reference runs: the data, their run-history shape, the overlay
frames, the comparison of the lab's seeds with them, and the figures. No TensorFlow, no store."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cifar_core.analysis import curves as run_curves
from cifar_core.analysis import notebook
from cifar_core.charts import curves as charts
from cifar_core.charts import notebook as notebook_charts
from cifar_core.errors import LabError
from cifar_core.jobs import queue
from cifar_core.spec.presets import NOTEBOOK_PRESETS, PRESETS, get_preset


def test_every_notebook_preset_has_its_recorded_curve_for_every_epoch():
    assert tuple(notebook.VAL_ACCURACY) == tuple(notebook.TRAIN_ACCURACY) == NOTEBOOK_PRESETS
    for name in NOTEBOOK_PRESETS:
        ref = notebook.reference(name)
        assert ref.epochs == PRESETS[name]["epochs"] == len(notebook.TRAIN_ACCURACY[name])
        assert ref.label == f"notebook, {name}" and ref.note == "recorded in the notebook, not trained here"
        assert list(ref.history.columns) == ["epoch", *queue.METRICS]  # the shape of results.run_history
        assert ref.history["epoch"].tolist() == list(range(1, ref.epochs + 1))
        assert ref.history[["loss", "val_loss", "seconds"]].isna().all().all()  # the notebook printed no losses
        assert ref.history["learning_rate"].isna().all()  # the notebook recorded no rate: the preset's setting is not one
    known = {n: int(notebook.reference_history(n)["accuracy"].notna().sum()) for n in NOTEBOOK_PRESETS}
    assert known == {"exp1": 2, "exp2": 1, "exp3": 2, "exp4": 20, "exp5": 10}  # unknown epochs stay NaN
    exp1 = notebook.reference_history("exp1")
    assert exp1["accuracy"].iloc[[0, -1]].tolist() == [0.0994, 0.0987] and (exp1["val_accuracy"] == 0.1).all()


def test_reference_figures():
    exp4, exp5 = notebook.reference("exp4"), notebook.reference("exp5")
    assert (exp4.final_val_accuracy, exp4.best_val_accuracy, exp4.best_epoch, exp4.final_accuracy) == (0.7195, 0.7350, 13, 0.9084)
    assert (exp5.final_val_accuracy, exp5.best_val_accuracy, exp5.best_epoch, exp5.final_accuracy) == (0.7557, 0.7557, 10, 0.7509)
    exp2 = notebook.reference("exp2")
    assert (exp2.final_val_accuracy, exp2.best_val_accuracy, exp2.best_epoch, exp2.final_accuracy) == (0.4491, 0.4515, 34, 0.4814)
    assert notebook.reference("exp1").best_epoch == 1  # the first of equal epochs
    with pytest.raises(LabError, match=r"^the notebook has no recorded curve for 'fast': it trained exp1, exp2, exp3, exp4, exp5$"):
        notebook.reference("fast")


def test_a_reference_history_is_a_copy():
    mine = notebook.reference_history("exp4")
    mine.loc[0, "val_accuracy"] = 0.0
    assert notebook.reference_history("exp4").loc[0, "val_accuracy"] == 0.5960


def test_curves_overlay_with_the_runs_and_leave_out_what_was_never_recorded():
    frame = notebook.curves(["exp4", "exp1"], "accuracy")
    assert set(frame["label"]) == {"notebook, exp4", "notebook, exp1"} and set(frame["run"]) == {-4, -1}
    exp4_val = frame[(frame["run"] == -4) & (frame["split"] == "val")]
    assert exp4_val["raw"].tolist() == list(notebook.VAL_ACCURACY["exp4"])
    exp1_train = frame[(frame["run"] == -1) & (frame["split"] == "train")]
    assert exp1_train["raw"].notna().sum() == 2  # two known points, the rest missing, nothing interpolated
    assert notebook.curves(["exp4"], "loss").empty  # the notebook printed no losses
    assert notebook.curves([], "accuracy").empty
    assert set(notebook.curves(["exp5"], "accuracy", splits=["val"])["split"]) == {"val"}
    smoothed = notebook.curves(["exp4"], "accuracy", alpha=0.6, splits=["val"])
    assert smoothed["value"].iloc[1] == pytest.approx(0.6 * 0.5960 + 0.4 * 0.6555)

    runs = pd.DataFrame({"run": 7, "epoch": [1, 2], "loss": 1.0, "accuracy": [0.4, 0.5], "val_loss": 1.1,
                         "val_accuracy": [0.45, 0.55], "seconds": 1.0, "learning_rate": 0.001})
    mine = run_curves.curves(runs, "accuracy", labels={7: "#7 exp4"})
    both = notebook.with_references(mine, ["exp4"], "accuracy")
    assert both["label"].unique().tolist() == ["#7 exp4", "notebook, exp4"]
    assert notebook.with_references(mine, [], "accuracy") is mine
    fig = charts.overlay(both, "accuracy")
    assert [t.name for t in fig.data] == ["#7 exp4 train", "#7 exp4 val", "notebook, exp4 train", "notebook, exp4 val"]


def test_matching_preset_recognises_the_notebook_networks():
    assert [notebook.matching_preset(get_preset(n)) for n in PRESETS] == [*NOTEBOOK_PRESETS, None, None, None]
    renamed = dict(get_preset("exp4"), name="my exp4", seed=3, epochs=2)
    assert notebook.matching_preset(renamed) == "exp4"  # name, seed and epochs may differ
    assert notebook.matching_preset(dict(get_preset("exp4"), learning_rate=0.01)) is None
    old_exp4 = get_preset("exp4")  # the preset before issue 15: valid padding and one pool fewer
    old_exp4["layers"] = [la for la in old_exp4["layers"][:5]] + old_exp4["layers"][6:]
    assert notebook.matching_preset(old_exp4) is None
    assert notebook.matching_preset({"name": "broken"}) is None and notebook.matching_preset(None) is None


def _runs(name: str, finals: list[float], bests: list[float] | None = None, epochs: int | None = None) -> pd.DataFrame:
    return pd.DataFrame({
        "experiment": name, "status": "succeeded", "epochs": epochs or PRESETS[name]["epochs"],
        "final_val_acc": finals, "best_val_acc": bests or finals,
    })


def test_seed_comparison_says_whether_the_notebook_falls_inside_the_spread():
    runs = pd.concat([
        _runs("exp4", [0.710, 0.725, 0.700], [0.735, 0.740, 0.728]),
        _runs("exp5", [0.730, 0.735, 0.741]),
        _runs("exp1", [0.1, 0.1, 0.1]),
        pd.DataFrame({"experiment": ["exp5"], "status": ["failed"], "epochs": [3], "final_val_acc": [0.2], "best_val_acc": [0.2]}),
    ], ignore_index=True)
    table = notebook.seed_comparison(runs).set_index("experiment")
    assert table.index.tolist() == ["exp1", "exp4", "exp5"]  # in the notebook's order, only those run
    exp4 = table.loc["exp4"]
    assert exp4["runs"] == 3 and exp4["epochs"] == [20] and exp4["notebook_epochs"] == 20
    assert exp4["final_mean"] == pytest.approx(0.7116667) and exp4["final_std"] == pytest.approx(0.0125831, rel=1e-4)
    assert (exp4["final_min"], exp4["final_max"], exp4["notebook_final"]) == (0.700, 0.725, 0.7195)
    assert exp4["final_inside"] and exp4["final_sentence"] == (
        "The notebook's final validation accuracy, 72.0%, falls inside the lab's 3 seeds (70.0% to 72.5%, mean 71.2%).")
    assert exp4["best_inside"] and exp4["notebook_best"] == 0.7350
    exp5 = table.loc["exp5"]
    assert exp5["runs"] == 3 and not exp5["final_inside"]  # the failed run is left out
    assert exp5["final_sentence"] == (
        "The notebook's final validation accuracy, 75.6%, falls outside the lab's 3 seeds (73.0% to 74.1%, mean 73.5%): "
        "2.0 points above the mean and 1.5 points above the nearest seed.")
    assert table.loc["exp1", "final_inside"] and table.loc["exp1", "final_std"] == pytest.approx(0, abs=1e-12)  # 10%, every seed


def test_seed_comparison_with_one_seed_or_other_epochs():
    one = notebook.seed_comparison(_runs("exp3", [0.55])).iloc[0]
    assert math.isnan(one["final_std"]) and not one["final_inside"]
    assert one["final_sentence"] == ("The notebook's final validation accuracy, 56.6%, is 1.6 points above the lab's "
                                     "one run (55.0%); one seed shows no spread, so this says nothing about chance.")
    short = notebook.seed_comparison(_runs("exp3", [0.3, 0.32], epochs=2)).iloc[0]
    assert short["final_sentence"].endswith("(Trained 2 epochs here against the notebook's 10: not the same experiment.)")
    none = notebook.seed_comparison(pd.DataFrame({"experiment": ["exp2"], "status": ["failed"], "epochs": [0],
                                                  "final_val_acc": [float("nan")], "best_val_acc": [float("nan")]})).iloc[0]
    assert none["runs"] == 0 and not none["final_inside"]
    assert none["final_sentence"] == "No lab run finished, so the notebook's final validation accuracy (44.9%) has nothing to compare with."


def test_epoch_comparison_is_lab_mean_minus_notebook():
    hist = pd.DataFrame({"run": [1, 1, 2, 2], "epoch": [1, 2, 1, 2], "accuracy": [0.40, 0.50, 0.44, 0.54],
                         "val_accuracy": [0.50, 0.60, 0.54, 0.66]})
    table = notebook.epoch_comparison(hist, "exp5").set_index("epoch")
    assert len(table) == 10
    assert table.loc[1, "lab_val"] == pytest.approx(0.52) and table.loc[1, "val_diff"] == pytest.approx(0.52 - 0.5457)
    assert (table.loc[2, "lab_val_min"], table.loc[2, "lab_val_max"]) == (0.60, 0.66)
    assert table.loc[2, "train_diff"] == pytest.approx(0.52 - 0.5781)
    assert table.loc[3, ["lab_val", "val_diff"]].isna().all() and table.loc[3, "notebook_val"] == 0.6758
    exp3 = notebook.epoch_comparison(hist, "exp3").set_index("epoch")
    assert math.isnan(exp3.loc[2, "train_diff"])  # the notebook's training accuracy at epoch 2 is unknown
    longer = pd.DataFrame({"run": 1, "epoch": range(1, 13), "accuracy": 0.5, "val_accuracy": 0.5})
    assert notebook.epoch_comparison(longer, "exp5")["epoch"].tolist() == list(range(1, 13))  # either side's epochs


def test_verdict_agreement_in_words():
    assert notebook.verdict_agreement("exp4", ["overfitting"] * 3) == (
        "The notebook's reading: it overfits: validation accuracy peaked at 73.5% (epoch 13) while training accuracy "
        "climbed to 90.8%. The lab's diagnosis agrees on all 3 runs (overfitting).")
    assert notebook.verdict_agreement("exp5", ["healthy", "overfitting"]).endswith(
        "The lab's diagnosis agrees on 1 of 2 runs (healthy); the others read overfitting.")
    assert notebook.verdict_agreement("exp1", ["did_not_learn"] * 2).endswith("agrees on both runs (did not learn).")
    assert notebook.verdict_agreement("exp1", ["did_not_learn"]).endswith("agrees on the run (did not learn).")
    assert notebook.verdict_agreement("exp1", []).startswith("The notebook's reading: it never learned")


def test_history_figure_draws_the_notebook_dotted_in_the_accuracy_panel():
    hist = notebook.reference_history("exp4").assign(loss=1.0, val_loss=1.2)  # a stand-in for a run's history
    plain = notebook_charts.history_figure(hist, None)
    assert len(plain.data) == len(charts.history(hist).data)
    fig = notebook_charts.history_figure(hist, "exp3")
    added = fig.data[len(plain.data):]
    assert [t.name for t in added] == ["notebook, exp3 train", "notebook, exp3 validation"]
    assert all(t.line.dash == "dot" and t.xaxis == "x2" for t in added)
    assert list(added[0].x) == [1, 10] and list(added[1].y) == list(notebook.VAL_ACCURACY["exp3"])


def test_comparison_figure_has_the_seeds_the_notebook_and_the_difference():
    hist = pd.DataFrame({"run": [1, 1, 2, 2], "epoch": [1, 2, 1, 2], "loss": 1.0, "accuracy": [0.40, 0.50, 0.44, 0.54],
                         "val_loss": 1.0, "val_accuracy": [0.50, 0.60, 0.54, 0.66], "seconds": 1.0, "learning_rate": 0.001})
    fig = notebook_charts.comparison_figure(hist, "exp5", {1: "#1 seed 0", 2: "#2 seed 1"})
    names = [t.name for t in fig.data]
    assert names[:4] == ["#1 seed 0 train", "#1 seed 0 val", "#2 seed 1 train", "#2 seed 1 val"]
    assert "notebook, exp5 val (recorded in the notebook, not trained here)" in names
    bars = fig.data[-1]
    assert bars.type == "bar" and list(bars.x) == [1, 2]
    assert list(bars.y) == pytest.approx([(0.52 - 0.5457) * 100, (0.63 - 0.6490) * 100])
    assert notebook_charts.comparison_figure(hist.iloc[0:0], "exp5").data[-1].type == "bar"  # no run yet: the notebook alone


def test_no_curve_is_drawn_for_a_metric_the_notebook_never_recorded():
    assert notebook.curves(list(NOTEBOOK_PRESETS), "learning_rate").empty
    runs = pd.DataFrame({"run": 7, "epoch": [1, 2], "loss": 1.0, "accuracy": [0.4, 0.5], "val_loss": 1.1,
                         "val_accuracy": [0.45, 0.55], "seconds": 1.0, "learning_rate": 0.001})
    both = notebook.with_references(run_curves.curves(runs, "learning_rate", labels={7: "#7 exp4"}), ["exp4"], "learning_rate")
    assert [t.name for t in charts.overlay(both, "learning rate").data] == ["#7 exp4 train"]


def test_sparse_recorded_points_are_unconnected_markers_never_a_line_between_them():
    overlay = charts.overlay(notebook.curves(["exp3", "exp4"], "accuracy"), "accuracy")
    modes = {t.name: t.mode for t in overlay.data}
    assert modes == {"notebook, exp3 train": "markers", "notebook, exp3 val": "lines+markers",
                     "notebook, exp4 train": "lines+markers", "notebook, exp4 val": "lines+markers"}
    hist = notebook.reference_history("exp4").assign(loss=1.0, val_loss=1.2)
    for preset, train_mode in (("exp3", "markers"), ("exp4", "lines+markers")):
        added = {t.name: t.mode for t in notebook_charts.history_figure(hist, preset).data if t.type == "scatter" and "notebook" in t.name}
        assert added == {f"notebook, {preset} train": train_mode, f"notebook, {preset} validation": "lines+markers"}
    compared = {t.name: t.mode for t in notebook_charts.comparison_figure(hist.assign(run=1), "exp1").data if t.type == "scatter" and "notebook" in t.name}
    assert compared == {"notebook, exp1 train (recorded in the notebook, not trained here)": "markers",
                        "notebook, exp1 val (recorded in the notebook, not trained here)": "lines+markers"}


def test_the_caption_says_what_differs_from_the_notebook():
    exp4 = get_preset("exp4")
    same = "Dotted: notebook, exp4, recorded in the notebook, not trained here; "
    assert notebook.overlay_caption("exp4", {**exp4, "name": "mine", "seed": 3}) == same + (
        "this run trains the same network and settings.")
    assert notebook.overlay_caption("exp4", {**exp4, "epochs": 3}) == same + (
        "this run trains the same network, optimizer, learning rate and batch size, but 3 epochs against the notebook's 20.")
    assert notebook.overlay_caption("exp4", {**exp4, "epochs": 3, "validation": "holdout"}).endswith(
        "but 3 epochs against the notebook's 20; validation holdout against the notebook's test.")
    assert notebook.overlay_caption("exp5", {**exp4, "epochs": 3}) == (
        "Dotted: notebook, exp5, recorded in the notebook, not trained here.")  # another network: no claim
