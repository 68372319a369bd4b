"""What a model costs to run, and exporting it for serving.

Latency is measured on a `tf.function`-compiled `model(x, training=False)` with a fixed input
signature, including copying the result back to NumPy. That is the call a server makes, and
the fastest of the paths measured here at batch 1 on a two-conv-block CNN (p50 on the shared
2-core CPU): compiled call ~2 ms, `model.predict_on_batch` ~4-5 ms, eager `model(x)` ~22 ms,
`model.predict` ~170 ms (it builds a dataset and step function per call). The slower paths
measure Keras's per-call overhead, not the model.

`export_model` loads a `.keras` file, which can hold code: only call it on models this app
trained and saved itself, never on an uploaded file.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cifar_core.errors import DataError, LabError

LATENCY_METHOD = "tf.function(model(x, training=False)), result copied to NumPy"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
TIE_MARGIN = 1e-5  # top-two probability gap below which the original's choice is a numerical tie
MAX_PROB_DIFF = 1e-3  # largest probability difference an exported float32 model may show


@dataclass(frozen=True)
class LatencyResult:
    p50_ms: float  # batch-1 latency percentiles over batch1_repeats calls
    p95_ms: float
    mean_ms: float
    min_ms: float
    throughput_ips: float  # images per second at throughput_batch
    batch1_repeats: int
    warmup: int
    throughput_batch: int
    throughput_repeats: int
    method: str = LATENCY_METHOD

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ExportedFormat:
    format: str  # "keras", "saved_model" or "tflite"
    path: str
    size_bytes: int
    agreement: float  # fraction of sample images given the original's class
    max_abs_diff: float  # largest difference from the original's probabilities


@dataclass(frozen=True)
class ExportResult:
    name: str
    version: int
    source: str  # the .keras file exported
    serving_base: str  # TF Serving's model_base_path (holds <version>/saved_model.pb)
    sample_size: int
    formats: tuple[ExportedFormat, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def _compiled_call(model, input_shape: tuple[int, ...]):
    import tensorflow as tf

    spec = tf.TensorSpec((None, *input_shape), tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def measure_latency(
    model,
    input_shape: tuple[int, ...] = (32, 32, 3),
    batch1_repeats: int = 200,
    warmup: int = 20,
    throughput_batch: int = 256,
    throughput_repeats: int = 5,
) -> LatencyResult:
    """Batch-1 latency percentiles and batched throughput of the compiled forward pass on this CPU."""
    for name, value in (("batch1_repeats", batch1_repeats), ("throughput_batch", throughput_batch),
                        ("throughput_repeats", throughput_repeats)):
        if value < 1:
            raise LabError(f"{name}={value} must be at least 1")
    if warmup < 0:
        raise LabError(f"warmup={warmup} must be 0 or more")
    call = _compiled_call(model, tuple(input_shape))
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, (1, *input_shape)).astype(np.float32)
    many = rng.uniform(0, 255, (throughput_batch, *input_shape)).astype(np.float32)
    for _ in range(max(warmup, 1)):  # at least one call, so tracing is never timed
        call(one).numpy()
    times = np.empty(batch1_repeats)
    for i in range(batch1_repeats):
        start = time.perf_counter()
        call(one).numpy()
        times[i] = time.perf_counter() - start
    call(many).numpy()
    start = time.perf_counter()
    for _ in range(throughput_repeats):
        call(many).numpy()
    elapsed = time.perf_counter() - start
    ms = times * 1000
    return LatencyResult(
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        throughput_ips=throughput_batch * throughput_repeats / elapsed,
        batch1_repeats=batch1_repeats,
        warmup=warmup,
        throughput_batch=throughput_batch,
        throughput_repeats=throughput_repeats,
    )


def measure_cost(model_path: Path | str, input_shape: tuple[int, ...] = (32, 32, 3)) -> dict:
    """What a saved model costs to run on this machine, as a run stores it: model_bytes (file
    size), latency_p50_ms and latency_p95_ms (batch 1) and throughput_ips (batch 256). Loads the
    file with the lab's loader: only for models this app trained (see module docstring)."""
    from cifar_core.train.models import load_model

    model = load_model(model_path)
    latency = measure_latency(model, input_shape, batch1_repeats=100, warmup=10, throughput_repeats=3)
    return {
        "model_bytes": model_file_size(model_path),
        "latency_p50_ms": latency.p50_ms,
        "latency_p95_ms": latency.p95_ms,
        "throughput_ips": latency.throughput_ips,
    }


def model_file_size(path: Path | str) -> int:
    """Bytes on disk of a model file, or of every file under a SavedModel folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    raise DataError(f"model file {path} does not exist; check the run finished and saved model.keras")


def _check_export_args(model_path: Path, name: str, version: int, sample_x: np.ndarray) -> np.ndarray:
    if not model_path.is_file():
        raise DataError(f"model file {model_path} does not exist; export a run that finished training")
    if not NAME_RE.match(name):
        raise LabError(f"export name {name!r} must be 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise LabError(f"export version {version!r} must be a positive integer (TF Serving loads the highest)")
    x = np.asarray(sample_x)
    if x.ndim != 4 or len(x) == 0:
        raise DataError(f"sample_x has shape {x.shape}; pass a few images shaped (N, 32, 32, 3)")
    return x.astype(np.float32)


def _agreement(fmt: str, reference: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != reference.shape:
        raise LabError(f"{fmt} export returned shape {probs.shape}, the original {reference.shape}")
    ref_top2 = np.sort(reference, axis=1)[:, -2:]
    decided = ref_top2[:, 1] - ref_top2[:, 0] > TIE_MARGIN
    same = probs.argmax(axis=1) == reference.argmax(axis=1)
    diff = float(np.abs(probs - reference).max())
    wrong = int(np.sum(~same & decided))
    if wrong:
        raise LabError(f"{fmt} export predicts a different class on {wrong} of {len(same)} sample images; not exported")
    if diff > MAX_PROB_DIFF:
        raise LabError(f"{fmt} export's probabilities differ from the original by up to {diff:.2g}; not exported")
    return float(same.mean()), diff


def _predict_saved_model(path: Path, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    (arg,) = serving.structured_input_signature[1]  # the single named input
    (out,) = serving(**{arg: tf.constant(x)}).values()
    return out.numpy()


def _tflite_interpreter(content: bytes):
    try:  # LiteRT replaces tf.lite.Interpreter, which TensorFlow is deleting
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
            return tf.lite.Interpreter(model_content=content)
    return Interpreter(model_content=content)


def _predict_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    interp = _tflite_interpreter(path.read_bytes())
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(x.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def _stage(fmt: str, build, check, reference: np.ndarray, target: Path, x: np.ndarray) -> ExportedFormat:
    """Write one format into the staging folder and check it predicts like the original."""
    try:
        build()
        probs = check(x)
    except LabError:
        raise
    except Exception as e:  # converters and loaders raise many types; report which format broke
        raise LabError(f"{fmt} export failed: {type(e).__name__}: {e}") from e
    agreement, diff = _agreement(fmt, reference, probs)
    return ExportedFormat(fmt, str(target), model_file_size(target), agreement, diff)


def export_model(model_path: Path, out_dir: Path, name: str, version: int = 1, *, sample_x: np.ndarray) -> ExportResult:
    """Export a trained `.keras` model as a `.keras` copy, a TF Serving SavedModel and a `.tflite`.

    Writes `<out_dir>/<name>.keras`, `<out_dir>/<name>/<version>/` and `<out_dir>/<name>.tflite`.
    Each is built in a staging folder, loaded back and must give the original's classes on
    sample_x; only when all three pass are they moved into place, so a failed export (a LabError
    naming the format) leaves nothing half-written. Only for models this app trained (see module
    docstring). An existing `<name>/<version>/` is never overwritten: bump the version.
    """
    import tensorflow as tf

    from cifar_core.train.models import load_model

    model_path, out_dir = Path(model_path), Path(out_dir)
    x = _check_export_args(model_path, name, version, sample_x)
    final_saved = out_dir / name / str(version)
    if final_saved.exists():
        raise LabError(f"{final_saved} already exists; export with version={version + 1} (versions are never overwritten)")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{name}-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        model = load_model(model_path)
        reference = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
        keras_file, saved_dir, tflite_file = staging / f"{name}.keras", staging / "saved_model", staging / f"{name}.tflite"

        def convert_tflite() -> None:
            tflite_file.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved_dir)).convert())

        staged = [
            _stage("keras", lambda: shutil.copy2(model_path, keras_file),
                   lambda v: load_model(keras_file).predict(v, verbose=0), reference, keras_file, x),
            _stage("saved_model", lambda: model.export(str(saved_dir), format="tf_saved_model", verbose=False),
                   lambda v: _predict_saved_model(saved_dir, v), reference, saved_dir, x),
            _stage("tflite", convert_tflite, lambda v: _predict_tflite(tflite_file, v), reference, tflite_file, x),
        ]
        finals = [out_dir / f"{name}.keras", final_saved, out_dir / f"{name}.tflite"]
        final_saved.parent.mkdir(parents=True, exist_ok=True)
        for src, dst in zip((keras_file, saved_dir, tflite_file), finals):
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    formats = tuple(
        ExportedFormat(f.format, str(dst), f.size_bytes, f.agreement, f.max_abs_diff) for f, dst in zip(staged, finals)
    )
    return ExportResult(name, version, str(model_path), str(out_dir / name), len(x), formats)
