"""The official CIFAR-10 python batches (data_batch_1..5, test_batch, batches.meta): read from a
folder or an archive, unpickled with an allow-list (a batch is data, never code), parsed to arrays."""

from __future__ import annotations

import codecs
import io
import pickle
import struct
from pathlib import Path

import numpy as np

from cifar_core.data.dataset import Dataset, _describe_array, _one_line
from cifar_core.errors import DataError

BATCH_DIR = "cifar-10-batches-py"

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"

BATCH_FILES = (*TRAIN_BATCHES, TEST_BATCH, META_FILE)


def _is_batch_name(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in BATCH_FILES


_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles only what a CIFAR-10 batch holds (dicts, lists, numpy arrays), never arbitrary code."""

    def __init__(self, raw: bytes, label: str, where: Path):
        super().__init__(io.BytesIO(raw), encoding="bytes")
        self.label, self.where = label, where

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_GLOBALS:
            return _PICKLE_GLOBALS[module, name]
        raise DataError(
            f"{self.label} in {self.where} holds a pickled {module}.{name}, which a CIFAR-10 batch never contains; "
            "use the official cifar-10-python.tar.gz"
        )


def _unpickle(raw: bytes, label: str, where: Path) -> object:
    try:
        return _BatchUnpickler(raw, label, where).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, OverflowError, MemoryError) as e:
        raise DataError(
            f"{label} is truncated or corrupt ({_one_line(e)}) in {where}; download cifar-10-python.tar.gz again"
        ) from e


def _batch_path(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise DataError(
            f"{folder.name}/{name} is missing in {folder.parent}: expected data_batch_1..5, test_batch and batches.meta"
        )
    return path


def _read_batch_file(folder: Path, name: str) -> bytes:
    path = _batch_path(folder, name)
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {folder.name}/{name} in {folder.parent} ({_one_line(e)})") from e


def _batches_dataset(blobs: dict[str, bytes], labels: dict[str, str], where: Path, source: str) -> Dataset:
    """Decode data_batch_1..5, test_batch and batches.meta (raw bytes by file name) into a Dataset."""
    class_names = _parse_meta(blobs[META_FILE], labels[META_FILE], where)
    train = [_parse_batch(blobs[n], labels[n], where, len(class_names)) for n in TRAIN_BATCHES]
    x_test, y_test = _parse_batch(blobs[TEST_BATCH], labels[TEST_BATCH], where, len(class_names))
    return Dataset(
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
        class_names=class_names,
        source=source,
    )


def _as_str_keys(obj: object, label: str, where: Path, expected: str) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise DataError(f"{label} in {where} holds a {type(obj).__name__}, not a CIFAR-10 {expected}")
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _parse_meta(raw: bytes, label: str, where: Path) -> tuple[str, ...]:
    meta = _as_str_keys(_unpickle(raw, label, where), label, where, "meta dict with b'label_names'")
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{label} in {where} has no b'label_names' list of class names; use the official batches.meta")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _parse_batch(raw: bytes, label: str, where: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _as_str_keys(_unpickle(raw, label, where), label, where, "batch dict with b'data' and b'labels'")
    for key in ("data", "labels"):
        if key not in batch:
            raise DataError(
                f"{label} in {where} has no b'{key}' entry; expected a dict with b'data' (N, 3072) uint8 and b'labels'"
            )
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{label} in {where}: b'data' is {_describe_array(data)}, expected a uint8 array of shape (N, 3072)"
        )
    try:
        y = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise DataError(f"{label} in {where}: b'labels' are not whole numbers ({_one_line(e)})") from e
    if y.shape != (len(data),):
        raise DataError(f"{label} in {where} has {y.size} labels for {len(data)} images; expected one label per image")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.min() if y.min() < 0 else y.max())
        raise DataError(f"{label} in {where} has label {bad} but batches.meta names {num_classes} classes")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y
