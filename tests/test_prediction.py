"""Predicting with the lab's own models only, and the stored test predictions behind error
analysis, on tiny real runs trained by a real worker (the lab of trainedlab.build_lab)."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from trainedlab import home, lab  # noqa: F401  (the shared trained lab)

from cifar_core.analysis import prediction
from cifar_core.charts import prediction as prediction_charts
from cifar_core.jobs import store
from cifar_core.data.sources import load_dataset
from cifar_core.errors import DataError, LabError, NotFound
from cifar_core.data.uploads import read_image_upload


@pytest.fixture(scope="module")
def ds(small_data):
    return load_dataset(str(small_data))


def test_trained_model_of_a_succeeded_run(lab, conn, small_data):
    info = prediction.trained_model(conn, 1)
    assert info.path == (lab / "runs" / "1" / "model.keras").resolve()
    assert info.name == "tiny" and info.data_source == str(small_data) and info.tta_flip is False


def test_a_model_placed_by_hand_is_refused(lab, conn, tmp_path):
    """Models are found by run id through the store (trained_model), never by a path a user gives."""
    real = lab / "runs" / "1" / "model.keras"
    # A copy outside the runs folder, and a store row pointed at it: refused.
    outside = tmp_path / "1" / "model.keras"
    outside.parent.mkdir()
    shutil.copy(real, outside)
    (kept,) = conn.execute("SELECT artifacts_dir FROM runs WHERE id = 1").fetchone()
    try:
        with store.transaction(conn):
            conn.execute("UPDATE runs SET artifacts_dir = ? WHERE id = 1", (str(outside.parent),))
        with pytest.raises(LabError, match=r"refusing to load run 1's files \(the store says .*, outside .*runs/1\): "
                                           r"only models this lab trained are loaded"):
            prediction.trained_model(conn, 1)
    finally:
        with store.transaction(conn):
            conn.execute("UPDATE runs SET artifacts_dir = ? WHERE id = 1", (kept,))
    # In the runs folder but under a run the store does not know.
    stray = lab / "runs" / "999" / "model.keras"
    stray.parent.mkdir(exist_ok=True)
    try:
        shutil.copy(real, stray)
        with pytest.raises(NotFound, match=r"no run 999"):
            prediction.trained_model(conn, 999)
        with pytest.raises(NotFound, match=r"no run 999"):
            prediction.predict_run(conn, 999, np.zeros((1, 32, 32, 3), np.uint8))
    finally:
        shutil.rmtree(stray.parent)
    # Under a run that did not succeed (4 was cancelled), even with a model file in place.
    planted = lab / "runs" / "4" / "model.keras"
    planted.parent.mkdir(exist_ok=True)
    try:
        shutil.copy(real, planted)
        with pytest.raises(LabError, match="run 4 is cancelled, not succeeded"):
            prediction.trained_model(conn, 4)
        with pytest.raises(LabError, match="run 4 is cancelled, not succeeded"):
            prediction.predict_run(conn, 4, np.zeros((1, 32, 32, 3), np.uint8))
    finally:
        planted.unlink()
    # Another file beside a run's model is never the one loaded.
    assert prediction.trained_model(conn, 1).path.name == "model.keras"
    with pytest.raises(NotFound, match="no run 42"):
        prediction.trained_model(conn, 42)


def test_a_symlinked_model_is_refused(lab, conn, tmp_path):
    path = lab / "runs" / "2" / "model.keras"
    kept = tmp_path / "kept.keras"
    shutil.move(path, kept)
    try:
        os.symlink(kept, path)
        with pytest.raises(LabError, match=r"refusing to load .*model\.keras \(not a regular file\)"):
            prediction.trained_model(conn, 2)
    finally:
        path.unlink(missing_ok=True)
        shutil.move(kept, path)
    assert prediction.trained_model(conn, 2).path == path.resolve()


def test_prediction_matches_what_the_run_stored_and_models_are_cached(conn, ds):
    stored = prediction.stored_predictions(conn, 3)
    probs = prediction.predict_run(conn, 3, ds.x_test[:25])
    assert probs.shape == (25, 10)
    np.testing.assert_allclose(probs, stored.probs[:25], atol=2e-3)  # stored as float16
    info = prediction.trained_model(conn, 3)
    assert prediction.load_trained_model(info) is prediction.load_trained_model(info)
    with pytest.raises(DataError, match=r"takes images shaped \(32, 32, 3\), got \(16, 16, 3\)"):
        prediction.predict_run(conn, 3, np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(DataError, match="pass uint8 RGB images"):
        prediction.predict_run(conn, 3, np.zeros((1, 32, 32, 3), np.float32))


def test_the_stored_classes_are_the_ones_scored_not_the_float16_argmax(conn):
    """The file keeps the classes as scored (from float32) beside float16 probabilities: float16 can
    tie a close call (0.49999 vs 0.50001 both read 0.5) and a page then showed 85.93% for a run whose
    test accuracy was 85.92%."""
    for run in (1, 3):
        stored = prediction.stored_predictions(conn, run)
        assert stored.y_pred is not None
        assert stored.accuracy == pytest.approx(store.run_row(conn, run)["test_accuracy"], abs=1e-9)
    close = np.array([[0.49999, 0.50001]], dtype=np.float32)
    tied = prediction.StoredPredictions(9, close.astype(np.float16).astype(np.float32), np.array([1]),
                                        close.argmax(axis=1))
    assert tied.probs.argmax(axis=1)[0] == 0 and tied.pred[0] == 1 and tied.accuracy == 1.0


def test_predict_an_uploaded_image_with_several_models(conn, ds):
    buf = io.BytesIO()
    Image.fromarray(np.kron(ds.x_test[0], np.ones((3, 3, 1), np.uint8))).save(buf, "PNG")  # 96x96
    image = read_image_upload(buf.getvalue())
    top = prediction.predict_image(conn, [1, 3], image.resized, ds.class_names, k=3, labels={1: "tiny", 3: "dense"})
    assert top["run"].tolist() == [1, 1, 1, 3, 3, 3] and top["label"].tolist()[0] == "tiny"
    for _, part in top.groupby("run"):
        assert part["rank"].tolist() == [1, 2, 3]
        assert part["probability"].is_monotonic_decreasing and part["probability"].sum() <= 1 + 1e-6
        assert set(part["class"]) <= set(ds.class_names)
    with pytest.raises(LabError, match="no model chosen"):
        prediction.predict_image(conn, [], image.resized, ds.class_names)
    fig = prediction_charts.probability_figure(top[top["run"] == 3])
    assert list(fig.data[0].y)[-1] == top[top["run"] == 3]["class"].iloc[0]  # the most probable on top


def test_the_top_class_is_red_only_when_it_is_known_to_be_wrong():
    """Issue 31: Predict coloured the top class red whether or not it was right."""
    top = prediction.top_classes([0.1, 0.6, 0.3], ("cat", "dog", "ship"), k=3)  # dog, ship, cat
    neutral, right, wrong = prediction_charts.NEUTRAL, prediction_charts.RIGHT, prediction_charts.WRONG
    assert prediction_charts.class_colours(top) == [neutral] * 3  # an upload: nobody knows
    assert prediction_charts.class_colours(top, "dog") == [right, neutral, neutral]
    assert prediction_charts.class_colours(top, "ship") == [wrong, right, neutral]
    assert prediction_charts.class_colours(top, "plane") == [wrong, neutral, neutral]  # the true class not in the top k
    fig = prediction_charts.probability_figure(top, true_class="dog")
    assert dict(zip(fig.data[0].y, fig.data[0].marker.color)) == {"dog": right, "ship": neutral, "cat": neutral}


def test_top_classes_by_hand():
    top = prediction.top_classes([0.1, 0.6, 0.3], ("a", "b", "c"), k=2)
    assert top["class"].tolist() == ["b", "c"] and top["probability"].tolist() == [0.6, 0.3]
    with pytest.raises(DataError, match="3 probabilities but 2 class names"):
        prediction.top_classes([0.1, 0.6, 0.3], ("a", "b"))


def test_stored_predictions_and_error_analysis(conn, ds):
    stored = prediction.stored_predictions(conn, 1)
    assert stored.probs.shape == (100, 10) and stored.probs.dtype == np.float32
    prediction.check_test_set(stored, ds.y_test)
    with pytest.raises(DataError, match="do not match this data source's 99"):
        prediction.check_test_set(stored, ds.y_test[:99])
    ea = prediction.error_analysis(stored, ds.class_names)
    assert ea.confusion.sum() == 100 and np.trace(ea.confusion) == int(stored.correct.sum())
    assert ea.accuracy == pytest.approx(stored.accuracy)
    assert ea.per_class["images"].tolist() == [10] * 10
    np.testing.assert_allclose(ea.row_percent.sum(axis=1), 100.0)
    wrong = prediction.misclassified(stored, ds.class_names, limit=500)
    assert len(wrong) == 100 - int(stored.correct.sum())
    assert wrong["confidence"].is_monotonic_decreasing
    cls = int(wrong["true"].iloc[0])
    only = prediction.misclassified(stored, ds.class_names, true_class=cls)
    assert (only["true_name"] == ds.class_names[cls]).all() and (only["true"] != only["pred"]).all()
    with pytest.raises(LabError, match="run 4 is cancelled, not succeeded; only a finished run has test predictions"):
        prediction.stored_predictions(conn, 4)
    fig = prediction_charts.confusion_figure(ea.confusion, ds.class_names, ea.row_percent)
    assert fig.data[0].text[0][0].endswith("%")


def test_compare_two_runs_in_words(conn, ds):
    a, b = prediction.stored_predictions(conn, 1), prediction.stored_predictions(conn, 3)
    cmp = prediction.compare_runs(a, b, ds.class_names)
    assert len(cmp.a_right_b_wrong) == int((a.correct & ~b.correct).sum())
    assert len(cmp.b_right_a_wrong) == int((b.correct & ~a.correct).sum())
    assert cmp.confusion_diff.sum() == 0
    assert cmp.per_class["difference"].tolist() == pytest.approx((cmp.per_class["accuracy_b"] - cmp.per_class["accuracy_a"]).tolist())
    assert f"on the same 100 test images. #1 alone is right on {len(cmp.a_right_b_wrong)} images" in cmp.verdict
    assert ("finds the difference significant" if cmp.significant else "does not find the difference significant") in cmp.verdict
    assert "paired bootstrap" in cmp.verdict
    only_a = prediction.disagreements(a, b, ds.class_names, "a", limit=1000)
    assert sorted(only_a["index"]) == sorted(cmp.a_right_b_wrong.tolist())
    assert (only_a["pred_a_name"] == only_a["true_name"]).all() and (only_a["pred_b_name"] != only_a["true_name"]).all()
    with pytest.raises(LabError, match="right='c' must be 'a' or 'b'"):
        prediction.disagreements(a, b, ds.class_names, "c")


def test_compare_verdict_by_hand():
    y = np.array([0] * 60 + [1] * 40)
    probs_a = np.eye(2, dtype=np.float32)[y].copy()
    probs_b = probs_a.copy()
    probs_a[:30] = [0.2, 0.8]  # A misses 30 images that B gets right
    a = prediction.StoredPredictions(1, probs_a, y)
    b = prediction.StoredPredictions(2, probs_b, y)
    cmp = prediction.compare_runs(a, b, ("x", "y"))
    assert cmp.verdict.startswith("Run #2 is 30.00 points more accurate than run #1 (100.00% vs 70.00%) on the same 100")
    assert "#1 alone is right on 0 images and #2 alone on 30." in cmp.verdict
    assert "significant (p < 0.001, alpha 0.05): run #2 is the better model" in cmp.verdict


# ---------------------------------------------------------------- seeds of one configuration (issue 14, item 6)


def _board(rows: list[tuple]) -> "pd.DataFrame":
    """A leaderboard over plain data: (run, config, seed, test accuracy, status)."""
    import pandas as pd

    return pd.DataFrame([{"run": r, "name": f"run{r}", "status": st, "config": cfg, "seed": seed, "test_accuracy": acc,
                          "best_val_accuracy": acc, "data_source": "d", "params": 10, "seconds_per_epoch": 1.0}
                         for r, cfg, seed, acc, st in rows])


BOARD = _board([(1, "k1", 0, 0.70, "succeeded"), (2, "k1", 1, 0.72, "succeeded"), (3, "k1", 2, 0.71, "succeeded"),
                (4, "k1", 3, 0.30, "failed"), (5, "k2", 0, 0.90, "succeeded")])


def test_seed_pair_of_one_configuration_from_the_leaderboard():
    pair = prediction.seed_pair(BOARD, 1, 2)
    assert (pair.seed_a, pair.seed_b, pair.runs) == (0, 1, 3)  # the failed seed is not pooled
    assert pair.std == pytest.approx(0.01) and (pair.low, pair.high) == (0.70, 0.72)
    assert pair.typical_gap == pytest.approx(2 * np.sqrt(2) * 0.01)
    assert prediction.seed_pair(BOARD, 1, 5) is None  # two configurations
    with pytest.raises(NotFound, match="no run 9 on the leaderboard"):
        prediction.seed_pair(BOARD, 1, 9)


def _pair_predictions(misses_a: int, misses_b: int):
    """Runs 1 and 2 on 100 images: A misses its first `misses_a`, B its last `misses_b`."""
    y = np.array([0] * 60 + [1] * 40)
    probs_a = np.eye(2, dtype=np.float32)[y].copy()
    probs_b = probs_a.copy()
    probs_a[:misses_a] = probs_a[:misses_a, ::-1]
    probs_b[100 - misses_b:] = probs_b[100 - misses_b:, ::-1]
    return prediction.StoredPredictions(1, probs_a, y), prediction.StoredPredictions(2, probs_b, y)


def test_two_seeds_are_set_against_the_seed_spread_and_never_called_the_better_model():
    a, b = _pair_predictions(30, 0)  # B is 30 points ahead: McNemar calls it significant
    wide = prediction.SeedPair(0, 1, runs=5, std=0.12, low=0.6, high=0.95)
    cmp = prediction.compare_runs(a, b, ("x", "y"), seeds=wide)
    assert cmp.significant and not cmp.decisive and cmp.seeds == wide
    assert cmp.verdict.startswith("Runs #1 and #2 are two seeds (0 and 1) of one configuration: the difference is "
                                  "seed noise unless it exceeds the seed spread. Seed 1 (#2) scores +30.00 points "
                                  "against seed 0 (#1) (100.00% vs 70.00%) on the same 100 test images")
    assert ("Its 5 finished seeds spread 12.00 points (std; test accuracy 60.00% to 95.00%), so two seeds typically "
            "differ by up to 33.94 points (2·√2·std): this difference is within that, seed noise") in cmp.verdict
    assert ("McNemar's test, for these two trained models, not the configuration, finds the difference significant "
            "(p < 0.001, alpha 0.05).") in cmp.verdict
    assert "better model" not in cmp.verdict and "paired bootstrap" in cmp.verdict

    narrow = prediction.compare_runs(a, b, ("x", "y"), seeds=prediction.SeedPair(0, 1, 3, 0.01, 0.70, 0.72))
    assert "typically differ by up to 2.83 points (2·√2·std): this difference is larger; check what else" in narrow.verdict
    assert "better model" not in narrow.verdict


def test_two_seeds_with_too_few_finished_seeds_say_so():
    a, b = _pair_predictions(3, 1)
    cmp = prediction.compare_runs(a, b, ("x", "y"), seeds=prediction.SeedPair(4, 5, 2, 0.02, 0.96, 0.99))
    assert ("Only 2 seeds of this configuration have finished: too few to know its seed spread (3 are needed)"
            in cmp.verdict)
    assert "Seed 5 (#2) scores +2.00 points against seed 4 (#1)" in cmp.verdict
    assert "#1 alone is right on 1 images and #2 alone on 3." in cmp.verdict
    assert "does not find the difference significant" in cmp.verdict and "better model" not in cmp.verdict


def test_a_gap_of_two_hundredths_of_a_point_is_written_so_not_rounded_away():
    """Issue 31: two seeds 0.02 points apart read "scores -0.0 points (38.8% vs 38.8%)"."""
    y = np.array([0] * 6000 + [1] * 4000)
    probs_a = np.eye(2, dtype=np.float32)[y].copy()
    probs_b = probs_a.copy()
    probs_a[:6116] = probs_a[:6116, ::-1]  # A right on 3,884 of 10,000
    probs_b[:6114] = probs_b[:6114, ::-1]  # B right on 3,886
    a, b = prediction.StoredPredictions(1, probs_a, y), prediction.StoredPredictions(2, probs_b, y)
    seeds = prediction.compare_runs(a, b, ("x", "y"), seeds=prediction.SeedPair(0, 1, 2, 0.001, 0.3884, 0.3886))
    assert "Seed 1 (#2) scores +0.02 points against seed 0 (#1) (38.86% vs 38.84%)" in seeds.verdict
    assert "-0.0" not in seeds.verdict
    other = prediction.compare_runs(a, b, ("x", "y"))
    assert other.verdict.startswith("Run #2 is 0.02 points more accurate than run #1 (38.86% vs 38.84%)")


def test_two_configurations_keep_the_better_model_wording():
    a, b = _pair_predictions(30, 0)
    cmp = prediction.compare_runs(a, b, ("x", "y"), seeds=None)
    assert cmp.decisive and cmp.seeds is None
    assert "significant (p < 0.001, alpha 0.05): run #2 is the better model" in cmp.verdict
    assert "seed" not in cmp.verdict


def test_the_confusion_difference_has_one_colour_meaning():
    """B - A counts: +2 on the diagonal (B right more often) and +2 off it (B makes that mistake more
    often) mean opposite things; coloured, the first is in B's favour (blue) and the second in A's (red)."""
    from cifar_core.analysis.stats import in_b_favour

    diff = np.array([[2, -2, 0], [1, -3, 2], [0, 0, 0]])
    favour = in_b_favour(diff)
    np.testing.assert_array_equal(favour, [[2, 2, 0], [-1, -3, -2], [0, 0, 0]])
    with pytest.raises(DataError, match=r"square matrix, got shape \(2, 3\)"):
        in_b_favour(np.zeros((2, 3)))
    fig = prediction_charts.confusion_figure(diff, ("a", "b", "c"))
    heat = fig.data[0]
    np.testing.assert_array_equal(np.asarray(heat.z), favour)  # what is coloured
    assert heat.text[0][1] == "-2" and heat.text[1][0] == "+1"  # what is written: the counts themselves
    assert heat.colorscale[-1][1] == "rgb(5,48,97)" and heat.zmid == 0  # RdBu: the high end (B's favour) is blue
    assert "blue in B's favour" in heat.colorbar.title.text and "red in A's" in heat.colorbar.title.text
    import pandas as pd

    bars = prediction_charts.per_class_figure(pd.DataFrame({"class": ["a", "b", "c"], "difference": [0.1, -0.2, 0.0]}),
                                              "difference")
    assert list(bars.data[0].marker.color) == [prediction_charts.FAVOUR_B, prediction_charts.FAVOUR_A,
                                               prediction_charts.EVEN]
    assert "blue in B's favour, red in A's" in bars.layout.yaxis.title.text
