"""Predicting with the lab's own models only, and the stored test predictions behind error
analysis, on tiny real runs trained by a real worker (the lab of test_choice.build_lab)."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from test_choice import home, lab  # noqa: F401  (the shared trained lab)

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
    assert cmp.verdict.startswith("Run #2 is 30.0 points more accurate than run #1 (100.0% vs 70.0%) on the same 100")
    assert "#1 alone is right on 0 images and #2 alone on 30." in cmp.verdict
    assert "significant (p < 0.001, alpha 0.05): run #2 is the better model" in cmp.verdict
