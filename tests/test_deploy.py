"""Latency and export on a tiny real Keras model trained one epoch on random images."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cifar_core.analysis.deploy import (_agreement, _predict_saved_model, check_export_target, export_model,
                                        next_version, zip_saved_model)
from cifar_core.errors import DataError, LabError
from cifar_core.train.latency import measure_cost, measure_latency, measure_together, model_file_size, visit_orders


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


def test_visit_orders_rotate():
    assert visit_orders(3, 4) == ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 1, 2))
    assert visit_orders(1, 2) == ((0,), (0,))
    for order in visit_orders(4, 6):
        assert sorted(order) == [0, 1, 2, 3]  # every candidate in every round


def _recording_model(name: str, log: list[str]):
    """A tiny Keras model whose every compiled call appends `name` to log (through tf.py_function,
    which runs at call time, not only when traced)."""
    import keras
    import tensorflow as tf

    class Record(keras.layers.Layer):
        def call(self, x):
            mark = tf.py_function(lambda: log.append(name) or 0.0, [], tf.float32)
            mark.set_shape(())
            return x + 0.0 * mark

        def compute_output_shape(self, input_shape):
            return input_shape

    return keras.Sequential([keras.Input((8, 8, 3)), Record(), keras.layers.Flatten(), keras.layers.Dense(2)])


def test_measure_together_visits_every_model_every_round_in_rotated_order():
    log: list[str] = []
    models = {"a": _recording_model("a", log), "b": _recording_model("b", log), "c": _recording_model("c", log)}
    log.clear()
    joint = measure_together(models, (8, 8, 3), rounds=3, batch1_repeats=4, warmup=2, throughput_batch=4,
                             throughput_repeats=1)
    visits = [name for i, name in enumerate(log) if i == 0 or log[i - 1] != name]  # consecutive calls collapsed
    assert visits == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]  # traced once each, then 3 rounds
    per_visit = 2 + 4 + 1 + 1  # warmup, timed batch-1, untimed throughput call, timed throughput
    assert len(log) == 3 + 3 * 3 * per_visit
    assert joint.orders == visit_orders(3, 3) and joint.rounds == 3
    for c in joint.candidates:
        assert len(c.round_p50_ms) == 3 and min(c.round_p50_ms) <= c.p50_ms <= max(c.round_p50_ms)
        assert c.spread_pct == pytest.approx((max(c.round_p50_ms) - min(c.round_p50_ms)) / c.p50_ms * 100)
        assert 0 < c.p50_ms <= c.p95_ms and c.throughput_ips > 0
    assert joint.busy == (not joint.other_cores <= 0.25)
    with pytest.raises(LabError, match="rounds=0 must be at least 1"):
        measure_together(models, (8, 8, 3), rounds=0)
    with pytest.raises(LabError, match="no models to measure"):
        measure_together({})


def test_measure_cost_reports_spread_load_and_macs(trained):
    from cifar_core.testing.datagen import tiny_spec

    doc = {**tiny_spec(), "layers": [{"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
                                     {"type": "MaxPool2D", "pool_size": 2}, {"type": "Flatten"},
                                     {"type": "Dense", "units": 10, "activation": "softmax"}]}
    cost = measure_cost(trained[0], (32, 32, 3), doc)
    assert cost["macs"] == 30 * 30 * 9 * 3 * 8 + 15 * 15 * 8 * 10  # the fixture's network
    assert cost["latency_spread_pct"] >= 0 and cost["measured_while_busy"] in (0, 1)
    assert cost["measured_load"] is None or cost["measured_load"] >= 0
    assert "macs" not in measure_cost(trained[0])


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
    version = out / "cifar-cnn" / "1"  # every format in one version folder
    assert Path(r.formats[0].path) == version / "model.keras"
    assert Path(r.formats[1].path) == version
    assert (out / "cifar-cnn" / "1" / "saved_model.pb").is_file()  # TF Serving layout
    assert r.serving_base == str(out / "cifar-cnn")
    assert (version / "model.tflite").read_bytes()[4:8] == b"TFL3"
    for f in r.formats:
        assert f.agreement == 1.0 and f.max_abs_diff < 1e-3
        assert f.size_bytes == model_file_size(f.path) > 0
    assert r.sample_size == 64
    assert sorted(p.name for p in out.iterdir()) == ["cifar-cnn"]
    assert sorted(p.name for p in (out / "cifar-cnn").iterdir()) == ["1"]  # no staging left
    # The SavedModel's size and zip are its own files, not the other formats beside it.
    assert r.formats[1].size_bytes == sum(p.stat().st_size for p in version.rglob("*") if p.is_file()) \
        - r.formats[0].size_bytes - r.formats[2].size_bytes
    with zipfile.ZipFile(io.BytesIO(zip_saved_model(version))) as z:
        names = z.namelist()
    assert "cifar-cnn/1/saved_model.pb" in names and any(n.startswith("cifar-cnn/1/variables/") for n in names)
    assert not any(n.endswith((".keras", ".tflite")) for n in names)
    # The final folder, with the two other files beside the SavedModel, still loads as one.
    assert (_predict_saved_model(version, sample[:4].astype(np.float32)).argmax(1)
            == keras_predict(version / "model.keras", sample[:4]).argmax(1)).all()
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


def keras_predict(path: Path, x: np.ndarray) -> np.ndarray:
    import keras

    return keras.saving.load_model(path).predict(x, verbose=0)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_export_is_version_2_and_never_touches_version_1(trained, tmp_path):
    path, sample = trained
    out = tmp_path / "exports"
    export_model(path, out, "m", next_version(out, "m"), sample_x=sample[:8])
    before = _digest(out / "m" / "1")
    assert {"model.keras", "model.tflite", "saved_model.pb"} <= set(before)
    r = export_model(path, out, "m", next_version(out, "m"), sample_x=sample[:8])
    assert r.version == 2 and Path(r.formats[0].path) == out / "m" / "2" / "model.keras"
    assert _digest(out / "m" / "1") == before  # byte-identical
    assert _digest(out / "m" / "2").keys() == before.keys()
    mode = (out / "m").stat().st_mode & 0o777  # a plain folder's (the umask's), readable by a server's user
    assert {(out / "m" / v).stat().st_mode & 0o777 for v in ("1", "2")} == {mode}


def test_files_a_user_already_had_are_never_replaced(trained, tmp_path):
    path, sample = trained
    out = tmp_path / "exports"
    (out / "m" / "1").mkdir(parents=True)
    mine = {out / "m.keras": b"my keras", out / "m.tflite": b"my tflite", out / "m" / "1" / "model.keras": b"mine",
            out / "m" / "3": b"a file named like a version"}
    for p, content in mine.items():
        p.write_bytes(content)
    with pytest.raises(LabError, match=r"m/1 already exists; export with version=4 \(versions are never overwritten\)"):
        export_model(path, out, "m", 1, sample_x=sample[:8])
    with pytest.raises(LabError, match=r"m/3 already exists; export with version=4"):
        export_model(path, out, "m", 3, sample_x=sample[:8])
    r = export_model(path, out, "m", next_version(out, "m"), sample_x=sample[:8])
    assert r.version == 4
    assert {p: p.read_bytes() for p in mine} == mine
    assert sorted(p.name for p in (out / "m").iterdir()) == ["1", "3", "4"]
    # An empty folder at the target is refused too (rename(2) alone would replace it).
    (out / "m" / "5").mkdir()
    with pytest.raises(LabError, match="m/5 already exists"):
        export_model(path, out, "m", 5, sample_x=sample[:8])
    assert list((out / "m" / "5").iterdir()) == []


def test_export_target_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(LabError, match=r"^\S*/f is a file, not a folder; give a folder to export into"):
        check_export_target(tmp_path / "f", "m", 1)
    with pytest.raises(LabError, match=r"/f is a file, not a folder"):
        check_export_target(tmp_path / "f" / "sub", "m", 1)
    with pytest.raises(LabError, match=r"/f is a file, not an export folder; choose another name or move the file"):
        check_export_target(tmp_path, "f", 1)
    assert check_export_target(tmp_path / "new", "m", 2) == tmp_path / "new" / "m" / "2"
    assert (tmp_path / "f").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_the_final_rename_never_replaces_even_an_empty_folder(tmp_path):
    """The last step, for a version made while an export ran (plain rename(2) would replace it)."""
    from cifar_core.analysis.deploy import _rename_noreplace

    (tmp_path / "staged").mkdir()
    (tmp_path / "staged" / "model.keras").write_bytes(b"new")
    for existing in ("empty", "file"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        (tmp_path / "file").write_bytes(b"mine")
        with pytest.raises(FileExistsError):
            _rename_noreplace(tmp_path / "staged", tmp_path / existing)
    assert list((tmp_path / "empty").iterdir()) == [] and (tmp_path / "file").read_bytes() == b"mine"
    _rename_noreplace(tmp_path / "staged", tmp_path / "7")
    assert (tmp_path / "7" / "model.keras").read_bytes() == b"new" and not (tmp_path / "staged").exists()


def test_a_corrupt_model_is_one_line(trained, tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(trained[0].read_bytes()[:1000])  # truncated
    with pytest.raises(DataError) as caught:
        export_model(bad, tmp_path / "out", "m", 1, sample_x=trained[1][:4])
    message = str(caught.value)
    assert message.startswith(f"{bad} cannot be loaded (ValueError: ") and "\n" not in message
    assert message.endswith("it is damaged or not a Keras model, train the run again")
    assert list((tmp_path / "out" / "m").iterdir()) == []  # no staging folder left


def test_a_crash_leaves_no_half_export(trained, tmp_path):
    """The exporting process dies (os._exit) after the SavedModel and .keras are written: nothing
    appears at the version folder, only the hidden staging folder is left, and the version stays free."""
    path, sample = trained
    out = tmp_path / "exports"
    np.save(tmp_path / "x.npy", sample[:4])
    code = (
        "import os, sys, numpy as np\n"
        "from cifar_core.analysis import deploy\n"
        "deploy._predict_tflite = lambda *a: os._exit(9)\n"
        f"deploy.export_model({str(path)!r}, {str(out)!r}, 'm', 1, sample_x=np.load({str(tmp_path / 'x.npy')!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 9, done.stderr
    left = list((out / "m").iterdir())
    assert [p.name.startswith(".staging-1-") for p in left] == [True]
    assert (left[0] / "saved_model.pb").is_file()  # it did get that far
    assert not (out / "m" / "1").exists() and next_version(out, "m") == 1


def test_agreement_names_the_format_on_a_mismatch():
    ref = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.5, 0.0]])
    swapped = ref[:, [1, 0, 2]]
    with pytest.raises(LabError, match="tflite export predicts a different class on 2 of 3 sample images"):
        _agreement("tflite", ref, swapped)  # row 3 is a tie in the original, so it is not counted
    close = ref + 1e-6
    assert _agreement("saved_model", ref, close) == (1.0, pytest.approx(1e-6))
    with pytest.raises(LabError, match="saved_model export's probabilities differ from the original by up to 0.01"):
        _agreement("saved_model", ref, ref + np.array([0.01, 0.0, 0.0]))
