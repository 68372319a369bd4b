"""The cache of decoded data sets under `config.cache_dir()`: named by the source's content (a
fingerprint of its files), the arrays memory-mapped on load, the figures (`DatasetInfo`) beside them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar_core.data.batches import BATCH_FILES, _batch_path
from cifar_core.data.dataset import Dataset, DatasetInfo, _one_line
from cifar_core.data.images import _list_image_folder
from cifar_core.errors import DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the cache layout or decoding changes
INFO_SUFFIX = ".info.json"  # the cached dataset's figures, beside its arrays


@dataclass(frozen=True)
class _Plan:
    """What a source points at: kind is "archive", "batches" (folder) or "images" (folder)."""

    kind: str
    path: Path


_sha_memo: dict[tuple, str] = {}


def _cache_name(plan: _Plan) -> str:
    fingerprint = _fingerprint(plan)
    digest = hashlib.sha256(f"v{CACHE_VERSION}\n{plan.kind}\n{fingerprint}".encode()).hexdigest()
    return f"cifar-{plan.kind}-{digest[:24]}.npz"


def _fingerprint(plan: _Plan) -> str:
    if plan.kind == "archive":
        return _file_sha256(plan.path)
    if plan.kind == "batches":
        files = [_batch_path(plan.path, name) for name in BATCH_FILES]
        return _stat_digest((f.name, f.stat()) for f in files)
    _, dirs, entries = _list_image_folder(plan.path)
    return _stat_digest(entries) + "\n" + "\n".join(dirs)


def _stat_digest(items) -> str:
    h = hashlib.sha256()
    for rel, st in items:
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    """sha256 of the file's bytes, remembered per (path, size, mtime, inode) for this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _sha_memo:
        try:
            with open(path, "rb") as f:
                _sha_memo[key] = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:
            raise DataError(f"cannot read {path} ({_one_line(e)}); check the file's permissions") from e
    return _sha_memo[key]


def _read_cache(path: Path, source: str) -> Dataset | None:
    """The cached dataset, images memory-mapped, or None when there is none or it cannot be read
    (it is then rebuilt)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            labels = {name: z[name] for name in ("y_train", "y_test", "class_names")}
        images = _map_npz(path, ("x_train", "x_test"))
        return Dataset(
            x_train=images["x_train"],
            y_train=labels["y_train"],
            x_test=images["x_test"],
            y_test=labels["y_test"],
            class_names=tuple(str(c) for c in labels["class_names"]),
            source=source,
        )
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, struct.error, DataError) as e:
        log.warning("ignoring unreadable data cache %s (%s); decoding the source again", path, _one_line(e))
        return None


def _map_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Arrays of an uncompressed .npz (np.savez's), memory-mapped read-only: np.load reads an .npz
    member whole, so each member's .npy data is located in the zip and mapped at its offset."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
        for name in names:
            member = zf.getinfo(f"{name}.npy")
            if member.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{name}.npy is compressed in {path.name}; the cache is written uncompressed")
            f.seek(member.header_offset)
            header = f.read(30)  # the zip local file header, then its name and extra field
            if header[:4] != b"PK\x03\x04":
                raise ValueError(f"no zip entry header for {name}.npy at byte {member.header_offset}")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            f.seek(member.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            if dtype.hasobject:
                raise ValueError(f"{name}.npy in {path.name} holds objects, not pixels")
            out[name] = np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order="F" if fortran else "C")
    return out


def _info_path(cache: Path) -> Path:
    return cache.with_suffix(INFO_SUFFIX)


def _read_info(cache: Path) -> DatasetInfo | None:
    """The figures kept beside a cache file; None when missing or unreadable (they are then computed again)."""
    path = _info_path(cache)
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
        return DatasetInfo(
            source=str(d["source"]), class_names=tuple(d["class_names"]), train_shape=tuple(d["train_shape"]),
            test_shape=tuple(d["test_shape"]), counts={k: list(v) for k, v in d["counts"].items()},
            channel_mean=tuple(d["channel_mean"]), channel_std=tuple(d["channel_std"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("ignoring unreadable dataset figures %s (%s); computing them again", path, _one_line(e))
        return None


def _write_info(cache: Path, info: DatasetInfo) -> None:
    path = _info_path(cache)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(json.dumps(info.to_dict()))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.warning("could not write dataset figures %s (%s); they are computed again next time", path, _one_line(e))


def _write_cache(path: Path, ds: Dataset) -> bool:
    """Save the decoded arrays (uncompressed, so that they can be mapped); False if that failed.
    The file is replaced whole, never rewritten in place: a process reading a mapping of a file
    truncated under it dies of SIGBUS."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                x_train=ds.x_train,
                y_train=ds.y_train,
                x_test=ds.x_test,
                y_test=ds.y_test,
                class_names=np.array(ds.class_names, dtype=str),
            )
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.warning("could not write data cache %s (%s); the next load will decode again", path, _one_line(e))
        return False
    _info_path(path).unlink(missing_ok=True)  # figures of an earlier, unreadable cache of this name
    return True
