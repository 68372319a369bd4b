"""Exporting a trained model for serving: the .keras file, a SavedModel (TF Serving's layout) and
a TFLite file, each checked against the original on sample test images. What a model costs to
run (latency, throughput, file size) is measured by `cifar_core.train.latency`.

`export_model` loads a `.keras` file, which can hold code: only call it on models this app
trained and saved itself, never on an uploaded file.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cifar_core import config
from cifar_core.errors import DataError, LabError
from cifar_core.train.latency import _saved_model_files, model_file_size

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
TIE_MARGIN = 1e-5  # top-two probability gap below which the original's choice is a numerical tie
MAX_PROB_DIFF = 1e-3  # largest probability difference an exported float32 model may show
EXPORT_SAMPLE = 64  # test images an export is checked on


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


# A version folder holds a SavedModel (latency.SAVED_MODEL_PARTS) beside model.keras and model.tflite.
KERAS_FILE, TFLITE_FILE = "model.keras", "model.tflite"  # in <out>/<name>/<version>/


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())


def next_version(out_dir: Path | str, name: str) -> int:
    """One more than the highest numeric entry under out_dir/name (1 if none); a file named like
    a version counts too, so it is never a target."""
    folder = Path(out_dir) / name
    versions = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(versions, default=0) + 1


def check_export_target(out_dir: Path | str, name: str, version: int) -> Path:
    """The version folder `<out_dir>/<name>/<version>` an export would create, after checking
    that nothing is in the way (no TensorFlow needed). LabError naming the path and the fix when
    out_dir or out_dir/name is a file, or the version exists: nothing is ever replaced."""
    out_dir = Path(out_dir)
    if not NAME_RE.match(name):
        raise LabError(f"export name {name!r} must be 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise LabError(f"export version {version!r} must be a positive integer (TF Serving loads the highest)")
    for folder in (*reversed(out_dir.parents), out_dir):
        if folder.exists() and not folder.is_dir():
            raise LabError(f"{folder} is a file, not a folder; give a folder to export into (it is created if missing)")
    base = out_dir / name
    if base.exists() and not base.is_dir():
        raise LabError(f"{base} is a file, not an export folder; choose another name or move the file")
    target = base / str(version)
    if target.exists() or target.is_symlink():
        raise LabError(f"{target} already exists; export with version={next_version(out_dir, name)} "
                       "(versions are never overwritten)")
    return target


def _rename_noreplace(src: Path, dst: Path) -> None:
    """Rename src to dst, failing with FileExistsError if dst exists. Plain rename(2) would
    replace an empty folder at dst; renameat2's RENAME_NOREPLACE refuses in the same step."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux/glibc: check, then rename
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):  # EINVAL: a file system without RENAME_NOREPLACE
            raise OSError(err, os.strerror(err), str(dst))
    if dst.exists() or dst.is_symlink():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


def zip_saved_model(folder: Path | str) -> bytes:
    """An exported version's SavedModel as zip bytes, laid out `<name>/<version>/saved_model.pb`
    (what TF Serving's --model_base_path expects once unzipped), without the other formats."""
    import io
    import zipfile

    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in _saved_model_files(folder):
            z.write(p, p.relative_to(folder.parent.parent))
    return buf.getvalue()


def _check_export_args(model_path: Path, sample_x: np.ndarray) -> np.ndarray:
    if not model_path.is_file():
        raise DataError(f"model file {model_path} does not exist; export a run that finished training")
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


def _load(model_path: Path):
    from cifar_core.train.models import load_model, load_refusal

    try:
        return load_model(model_path)
    except Exception as e:  # a damaged zip, bad JSON, missing weights, a Lambda layer: Keras raises many types
        raise DataError(load_refusal(model_path, e)) from e


def export_model(model_path: Path, out_dir: Path, name: str, version: int = 1, *, sample_x: np.ndarray) -> ExportResult:
    """Export a trained `.keras` model as a `.keras` copy, a TF Serving SavedModel and a `.tflite`,
    all in one new version folder:

        <out_dir>/<name>/<version>/saved_model.pb, variables/, ...   the SavedModel (TF Serving:
                                                                     --model_base_path=<out_dir>/<name>)
        <out_dir>/<name>/<version>/model.keras
        <out_dir>/<name>/<version>/model.tflite

    The folder is built as a hidden staging folder beside it (`<out_dir>/<name>/.staging-...`),
    each format is loaded back and must give the original's classes on sample_x, and only then is
    the folder renamed into place in one step: a failed export (a LabError naming the format), or
    a crash, leaves nothing at `<version>/`. Nothing that exists is ever replaced: an existing
    version is an error naming the next free one (see check_export_target). Only for models this
    app trained (see module docstring).
    """
    import tensorflow as tf

    from cifar_core.train.models import load_model

    model_path, out_dir = Path(model_path), Path(out_dir)
    x = _check_export_args(model_path, sample_x)
    final = check_export_target(out_dir, name, version)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".staging-{version}-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()  # not mkdtemp: its 0700 would stay on the version folder, unreadable to a server's user
    except OSError as e:
        raise LabError(f"cannot create {final.parent} ({_one_line(e)}); export into a folder you can write to") from e
    try:
        model = _load(model_path)
        reference = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
        keras_file, tflite_file = staging / KERAS_FILE, staging / TFLITE_FILE

        def convert_tflite() -> None:
            tflite_file.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(staging)).convert())

        staged = [  # the SavedModel first: the folder holds only it while its size is taken
            _stage("saved_model", lambda: model.export(str(staging), format="tf_saved_model", verbose=False),
                   lambda v: _predict_saved_model(staging, v), reference, staging, x),
            _stage("keras", lambda: shutil.copy2(model_path, keras_file),
                   lambda v: load_model(keras_file).predict(v, verbose=0), reference, keras_file, x),
            _stage("tflite", convert_tflite, lambda v: _predict_tflite(tflite_file, v), reference, tflite_file, x),
        ]
        try:
            _rename_noreplace(staging, final)
        except FileExistsError:
            raise LabError(f"{final} already exists (made while this export ran); export with "
                           f"version={next_version(out_dir, name)} (versions are never overwritten)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    finals = {"keras": final / KERAS_FILE, "saved_model": final, "tflite": final / TFLITE_FILE}
    formats = tuple(
        ExportedFormat(f.format, str(finals[f.format]), f.size_bytes, f.agreement, f.max_abs_diff)
        for f in sorted(staged, key=lambda f: list(finals).index(f.format))
    )
    return ExportResult(name, version, str(model_path), str(final.parent), len(x), formats)


def export_name(name: str, run_id: int) -> str:
    """A serving name from a run: the experiment name with other characters as '-', and the run id."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_") or "model"
    return f"{base[:50]}-run{run_id}"


def exports_dir() -> Path:
    """Where exports go unless told otherwise: <lab home>/exports."""
    path = config.lab_home() / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_sample(x_test: np.ndarray) -> np.ndarray:
    """The test images an export is checked on: EXPORT_SAMPLE spread evenly over the test set."""
    return x_test[np.linspace(0, len(x_test) - 1, min(EXPORT_SAMPLE, len(x_test))).astype(int)]
