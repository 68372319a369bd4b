"""Latency and export on a tiny real Keras model trained one epoch on random images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cifar_core.analysis.deploy import _agreement, export_model, measure_latency, model_file_size
from cifar_core.errors import DataError, LabError


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, np.ndarray]:
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128, 32, 32, 3)).astype("uint8")
    y = rng.integers(0, 10, 128)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Rescaling(1 / 255),  # like the app's models: raw 0..255 pixels in
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("run") / "model.keras"
    model.save(path)
    return path, x[:64]


def test_measure_latency_invariants(trained):
    import keras

    model = keras.saving.load_model(trained[0])
    r = measure_latency(model, batch1_repeats=40, warmup=3, throughput_batch=32, throughput_repeats=2)
    assert 0 < r.min_ms <= r.p50_ms <= r.p95_ms
    assert r.min_ms <= r.mean_ms
    assert r.p50_ms < 1000  # a compiled call on a tiny net, not Keras predict's set-up
    assert r.throughput_ips > 0
    assert (r.batch1_repeats, r.throughput_batch, r.throughput_repeats) == (40, 32, 2)
    assert "tf.function" in r.to_dict()["method"]
    with pytest.raises(LabError, match="batch1_repeats=0 must be at least 1"):
        measure_latency(model, batch1_repeats=0)


def test_model_file_size(trained, tmp_path):
    path, _ = trained
    assert model_file_size(path) == path.stat().st_size > 0
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 5)
    assert model_file_size(tmp_path) == 15
    with pytest.raises(DataError, match="does not exist"):
        model_file_size(tmp_path / "nope.keras")


def test_export_all_formats_and_check_them(trained, tmp_path):
    path, sample = trained
    out = tmp_path / "exports"
    r = export_model(path, out, "cifar-cnn", 1, sample_x=sample)
    assert [f.format for f in r.formats] == ["keras", "saved_model", "tflite"]
    assert Path(r.formats[0].path) == out / "cifar-cnn.keras"
    assert (out / "cifar-cnn" / "1" / "saved_model.pb").is_file()  # TF Serving layout
    assert r.serving_base == str(out / "cifar-cnn")
    assert (out / "cifar-cnn.tflite").read_bytes()[4:8] == b"TFL3"
    for f in r.formats:
        assert f.agreement == 1.0 and f.max_abs_diff < 1e-3
        assert f.size_bytes == model_file_size(f.path) > 0
    assert r.sample_size == 64
    assert sorted(p.name for p in out.iterdir()) == ["cifar-cnn", "cifar-cnn.keras", "cifar-cnn.tflite"]  # no staging left
    assert r.to_dict()["formats"][2]["format"] == "tflite"

    with pytest.raises(LabError, match=r"cifar-cnn/1 already exists; export with version=2"):
        export_model(path, out, "cifar-cnn", 1, sample_x=sample)


def test_export_rejects_bad_arguments(trained, tmp_path):
    path, sample = trained
    with pytest.raises(LabError, match=r"export name '../evil' must be 1-64 letters"):
        export_model(path, tmp_path, "../evil", sample_x=sample)
    with pytest.raises(LabError, match="export version 0 must be a positive integer"):
        export_model(path, tmp_path, "m", 0, sample_x=sample)
    with pytest.raises(DataError, match=r"sample_x has shape \(32, 32, 3\)"):
        export_model(path, tmp_path, "m", sample_x=sample[0])
    with pytest.raises(DataError, match="does not exist"):
        export_model(tmp_path / "missing.keras", tmp_path, "m", sample_x=sample)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_agreement_names_the_format_on_a_mismatch():
    ref = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.5, 0.0]])
    swapped = ref[:, [1, 0, 2]]
    with pytest.raises(LabError, match="tflite export predicts a different class on 2 of 3 sample images"):
        _agreement("tflite", ref, swapped)  # row 3 is a tie in the original, so it is not counted
    close = ref + 1e-6
    assert _agreement("saved_model", ref, close) == (1.0, pytest.approx(1e-6))
    with pytest.raises(LabError, match="saved_model export's probabilities differ from the original by up to 0.01"):
        _agreement("saved_model", ref, ref + np.array([0.01, 0.0, 0.0]))
