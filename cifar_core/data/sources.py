"""CIFAR-10 from one of three sources, decoded once and cached as arrays.

A source is a string (None means `config.default_source()`):
  "keras"                        the official cifar-10-python.tar.gz, downloaded (once, without importing Keras)
                                 into the Keras cache ($KERAS_HOME, default ~/.keras); origin from
                                 $CIFAR_LAB_KERAS_ORIGIN or KERAS_ORIGIN
  /x/cifar-10-python.tar.gz      the official tarball, read without extracting
  /x/cifar-10-batches-py/        the extracted batches (or a folder holding that folder)
  /x/images/ or /x/images.tar.gz train/<class>/*.png|jpg|jpeg and test/<class>/*, possibly under one
                                 top-level folder; class names are the sorted folder names of train/

Decoded uint8 arrays are saved under `config.cache_dir()` keyed by the source's content, with the
dataset's figures (`DatasetInfo`) beside them. A later load memory-maps the cached images, so a
process holds only the pages it reads (the gallery's hundred images, not 184 MB), and processes
share them; a repeated load in the same process is a dictionary lookup. Loaded arrays are read-only
because the same arrays are shared by every caller in the process: copy before changing them.
The first load of a source decodes it (a minute for 60,000 JPEGs on a busy machine): pass
`progress` to `load_dataset` to hear how far it got.
Image folders load in sorted order (class by class), so shuffle before slicing; see `holdout_split`.
"""

from __future__ import annotations

import codecs
import ctypes
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import pickle
import re
import struct
import tarfile
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cifar_core.config import cache_dir, default_source
from cifar_core.errors import DataError

log = logging.getLogger(__name__)

KERAS_ORIGIN = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ORIGIN_ENV = "CIFAR_LAB_KERAS_ORIGIN"
KERAS_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"  # of KERAS_ORIGIN's file
KERAS_FNAME = "cifar-10-python.tar.gz"

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
BATCH_FILES = (*TRAIN_BATCHES, TEST_BATCH, META_FILE)
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")

CACHE_VERSION = 1  # bump when the cache layout or decoding changes
MEMO_SIZE = 2  # datasets kept open in a process (mapped from the cache: only the pages read are resident)
STATS_CHUNK = 2048  # images counted at once for the channel statistics (16 MB of int64 per channel)
INFO_SUFFIX = ".info.json"  # the cached dataset's figures, beside its arrays

Progress = Callable[[float, str], None]  # (fraction done in 0..1, what is being done)

LOCAL_COPY_HINT = (
    "set CIFAR_LAB_DATA to a local copy: a cifar-10-python.tar.gz, an extracted cifar-10-batches-py/ folder, "
    "or an image folder / .tar.gz laid out train/<class>/*.png|jpg and test/<class>/*"
)
LAYOUT_HINT = "expected train/<class>/*.png|jpg and test/<class>/* (optionally under one top-level folder)"


# ---------------------------------------------------------------- the dataset


@dataclass(frozen=True, eq=False)
class Dataset:
    x_train: np.ndarray  # uint8 (N, H, W, 3)
    y_train: np.ndarray  # int64 (N,), class index into class_names
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str  # the source string as given/resolved

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if not self.class_names:
            raise DataError(f"dataset from {self.source} has no class names; give at least one class")
        for split in SPLITS:
            _check_split(self, split)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"dataset from {self.source}: train images are {self.x_train.shape[1:]} but test images are "
                f"{self.x_test.shape[1:]}; both splits need one image size"
            )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of the "train" or "test" split."""
        if name == "train":
            return self.x_train, self.y_train
        if name == "test":
            return self.x_test, self.y_test
        raise DataError(f"split {name!r} is unknown: use 'train' or 'test'")


def _check_split(ds: Dataset, split: str) -> None:
    """Validate one split's arrays; integer labels are converted to int64 in place of the field."""
    x, y = ds.split(split)
    where = f"dataset from {ds.source}: {split}"
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"{where} images are {_describe_array(x)}; expected a uint8 array (N, H, W, 3)")
    if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{where} labels are {_describe_array(y)}; expected integer class indices (N,)")
    if len(y) != len(x):
        raise DataError(f"{where} has {len(x)} images but {len(y)} labels; give one label per image")
    if len(y) and (y.min() < 0 or y.max() >= len(ds.class_names)):
        bad = int(y.min() if y.min() < 0 else y.max())
        k = len(ds.class_names)
        raise DataError(f"{where} has label {bad} but only {k} classes; labels must be 0..{k - 1}")
    if y.dtype != np.int64:
        object.__setattr__(ds, f"y_{split}", y.astype(np.int64))


def _describe_array(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} {a.shape}"
    return type(a).__name__


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Plan:
    """What a source points at: kind is "archive", "batches" (folder) or "images" (folder)."""

    kind: str
    path: Path


_memo: OrderedDict[str, Dataset] = OrderedDict()
_sha_memo: dict[tuple, str] = {}
_lock = threading.Lock()


def load_dataset(source: str | None = None, progress: Progress | None = None) -> Dataset:
    """Load a source (see the module doc) as uint8 arrays, from the cache when it has been decoded before.

    While a source is decoded (its first load in this lab home), `progress(fraction, message)` is
    called with increasing fractions, the last one 1.0; a load from the cache never calls it."""
    source = _source_string(source)
    with _lock:
        plan = _plan(source)
        cache = cache_dir() / _cache_name(plan)
        ds = _open_cached(cache, source)
        if ds is None:
            report = _Reporter(progress)
            decoded = _decode(plan, source, report)
            report(0.99, "Saving the decoded images for the next load")
            if _write_cache(cache, decoded):
                _write_info(cache, dataset_info(decoded))
            # The arrays just written are mapped in place of the decoded ones, which are freed.
            ds = _open_cached(cache, source) or _remember(cache, _freeze(decoded))
            del decoded
            _return_freed_memory()
            report(1.0, f"Loaded {len(ds.y_train) + len(ds.y_test):,} images")
    return _as_source(ds, source)


def decoded_dataset(source: str | None = None) -> Dataset | None:
    """The dataset if it needs no decoding (open in this process, or in the lab's cache), else None:
    then `load_dataset` decodes the source, which can take a minute."""
    source = _source_string(source)
    with _lock:
        ds = _open_cached(cache_dir() / _cache_name(_plan(source)), source)
    return None if ds is None else _as_source(ds, source)


def source_info(source: str | None = None) -> DatasetInfo:
    """`dataset_info` of a decoded source (`load_dataset` first), read from beside its cache rather
    than computed from every train image. A cache from before the figures were kept gets them now,
    from a mapping of its own that is closed afterwards (so its pages leave this process)."""
    source = _source_string(source)
    with _lock:
        cache = cache_dir() / _cache_name(_plan(source))
    info = _read_info(cache)
    if info is None:
        info = dataset_info(_read_cache(cache, source) or load_dataset(source))
        _write_info(cache, info)
    return replace(info, source=source)


def _open_cached(cache: Path, source: str) -> Dataset | None:
    """The dataset of this cache file: from the memo, else mapped from the file; None if neither."""
    ds = _memo.get(cache.name)
    if ds is None:
        ds = _read_cache(cache, source)
        if ds is None:
            return None
        _remember(cache, _freeze(ds))
    _memo.move_to_end(cache.name)
    return ds


def _return_freed_memory() -> None:
    """Give the heap a decode freed back to the system: glibc keeps freed small blocks (60,000
    JPEGs' bytes and names) in its arenas, and a long-lived server would carry ~100 MB it no
    longer uses."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (no malloc_trim): its allocator keeps what it keeps


def _remember(cache: Path, ds: Dataset) -> Dataset:
    _memo[cache.name] = ds
    while len(_memo) > MEMO_SIZE:
        _memo.popitem(last=False)
    return ds


def _as_source(ds: Dataset, source: str) -> Dataset:
    return ds if ds.source == source else replace(ds, source=source)


class _Reporter:
    """Passes progress on with fractions that only increase, at most once per percent (a callback
    that draws a bar is not called 60,000 times)."""

    def __init__(self, progress: Progress | None):
        self.progress, self.last = progress, -1.0

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(1.0, fraction)
        if self.progress is not None and fraction > self.last and (fraction >= 1.0 or fraction - self.last >= 0.01):
            self.last = fraction
            self.progress(fraction, message)

    def part(self, start: float, end: float) -> Progress:
        """A progress for one phase of the work, spanning start..end of the whole."""
        return lambda fraction, message: self(start + (end - start) * fraction, message)


def cache_file(source: str | None = None) -> Path:
    """Where the decoded arrays of this source are (or would be) cached; downloads the keras source if needed."""
    source = _source_string(source)
    return cache_dir() / _cache_name(_plan(source))


def clear_memo() -> None:
    """Forget the datasets and file hashes held in this process (the cache files on disk stay)."""
    with _lock:
        _memo.clear()
        _sha_memo.clear()


def _source_string(source: str | os.PathLike | None) -> str:
    return default_source() if source is None else os.fspath(source)


def _plan(source: str) -> _Plan:
    """Resolve a source string to the folder or archive to read (downloading the keras source if needed)."""
    if source == "keras":
        source = str(_fetch_keras())
    if not source:
        raise DataError(f"data source is empty; {LOCAL_COPY_HINT}")
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data source {path} does not exist; {LOCAL_COPY_HINT}")
    if path.is_dir():
        return _folder_plan(path)
    if path.is_file():
        return _Plan("archive", path)
    raise DataError(f"data source {path} is neither a folder nor a file; {LOCAL_COPY_HINT}")


def _folder_plan(path: Path) -> _Plan:
    if any((path / name).exists() for name in BATCH_FILES):
        return _Plan("batches", path)
    if (path / BATCH_DIR).is_dir():
        return _Plan("batches", path / BATCH_DIR)
    _image_root(path)  # fail early on a folder that is neither layout
    return _Plan("images", path)


def _freeze(ds: Dataset) -> Dataset:
    for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        a.setflags(write=False)
    return ds


# ---------------------------------------------------------------- the keras download


def _keras_origin() -> str:
    return os.environ.get(ORIGIN_ENV) or KERAS_ORIGIN


def _keras_home() -> Path:
    # Read at call time: keras itself reads KERAS_HOME once, when it is first imported.
    home = os.environ.get("KERAS_HOME")
    return Path(home).expanduser() if home else Path.home() / ".keras"


def _fetch_keras() -> Path:
    """The official batches in the Keras cache, downloading the tarball there if it is not yet present
    (where keras.datasets.cifar10 would put it, without importing Keras: that is TensorFlow, seconds
    and ~500 MB in the dashboard's process)."""
    datasets = _keras_home() / "datasets"
    # keras.datasets.cifar10.load_data (Keras 3, then Keras 2) may already have extracted it.
    for extracted in (datasets / "cifar-10-batches-py-target" / BATCH_DIR, datasets / BATCH_DIR):
        if (extracted / META_FILE).is_file():
            return extracted
    path = datasets / KERAS_FNAME
    if not path.is_file():
        origin = _keras_origin()
        _download(origin, path, KERAS_SHA256 if origin == KERAS_ORIGIN else None)
    return path


def _download(origin: str, path: Path, sha256: str | None) -> None:
    """origin saved as path, whole or not at all, and checked against sha256 when it is given."""
    import http.client
    import urllib.error
    import urllib.request

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(origin, timeout=60) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DataError(f"the download from {origin} is corrupt (sha256 {digest.hexdigest()[:12]}…, expected "
                            f"{sha256[:12]}…); try again, or {LOCAL_COPY_HINT}")
        os.replace(tmp, path)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        raise DataError(
            f"the official CIFAR-10 download could not be reached ({origin}: {_download_reason(e)}); {LOCAL_COPY_HINT}"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- the cache


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


# ---------------------------------------------------------------- decoding


SCAN_SHARE = 0.3  # of an image archive's first load: reading the archive; decoding the images is the rest


def _decode(plan: _Plan, source: str, report: _Reporter) -> Dataset:
    if plan.kind == "batches":
        report(0.0, f"Reading {plan.path.name}")
        blobs = {name: _read_batch_file(plan.path, name) for name in BATCH_FILES}
        labels = {name: f"{plan.path.name}/{name}" for name in BATCH_FILES}
        return _batches_dataset(blobs, labels, plan.path, source)
    if plan.kind == "images":
        root, dirs, entries = _list_image_folder(plan.path)
        layout = _layout([rel for rel, _ in entries], dirs, plan.path)
        return _images_dataset(layout, lambda rel: _read_image_file(root, rel), plan.path, source, report)
    return _decode_archive(plan.path, source, report)


def _decode_archive(path: Path, source: str, report: _Reporter | None = None) -> Dataset:
    report = report or _Reporter(None)
    dirs, files, blobs = _scan_archive(path, want=lambda name: _is_batch_name(name) or _is_image_name(name),
                                       progress=report.part(0.0, SCAN_SHARE))
    batch_members = [name for name in files if _is_batch_name(name)]
    if batch_members:
        found: dict[str, str] = {}
        for name in batch_members:
            found.setdefault(name.rsplit("/", 1)[-1], name)
        missing = [n for n in BATCH_FILES if n not in found]
        if missing:
            raise DataError(
                f"{BATCH_DIR}/{missing[0]} is missing in {path}: expected data_batch_1..5, test_batch and batches.meta"
            )
        return _batches_dataset({n: blobs[m] for n, m in found.items()}, found, path, source)
    prefix = _archive_prefix(dirs + files, path)
    rel_files = [name[len(prefix):] for name in files if name.startswith(prefix)]
    rel_dirs = [name[len(prefix):] for name in dirs if name.startswith(prefix)]
    layout = _layout(rel_files, rel_dirs, path)
    return _images_dataset(layout, lambda rel: blobs[prefix + rel], path, source, report.part(SCAN_SHARE, 0.98))


def _is_batch_name(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in BATCH_FILES


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTS) and 3 <= name.count("/") + 1 <= 4


# ---------------------------------------------------------------- archives


def _scan_archive(path: Path, want, until=None, progress: Progress | None = None) -> tuple[list[str], list[str], dict[str, bytes]]:
    """Stream a tar archive once: its folder names, file names, and the bytes of the files `want` accepts.

    Stops after the first file `until` accepts. Names are normalised ("./a/b/" -> "a/b"). `progress`
    hears the share of the archive's bytes read so far.
    """
    dirs: list[str] = []
    files: list[str] = []
    blobs: dict[str, bytes] = {}
    try:
        with ExitStack() as stack:
            f = stack.enter_context(open(path, "rb"))
            gzipped = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            # GzipFile's buffered reads are ~15% faster than tarfile's own gzip stream on 60,000 members.
            stream = stack.enter_context(gzip.GzipFile(fileobj=f)) if gzipped else f
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r|" if gzipped else "r|*"))
            size = max(1, os.fstat(f.fileno()).st_size)
            for member in tar:
                if progress is not None and len(files) % 64 == 0:
                    progress(f.tell() / size, f"Reading {path.name}: {len(files):,} files")
                name = _norm(member.name)
                if not name:
                    continue
                if member.isdir():
                    dirs.append(name)
                elif member.isfile():
                    files.append(name)
                    if want(name) and name not in blobs:
                        blobs[name] = tar.extractfile(member).read()
                    if until is not None and until(name):
                        break
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as e:
        raise DataError(_archive_problem(path, e, started=bool(dirs or files))) from e
    if not dirs and not files:
        raise DataError(f"{path} is an empty archive; {LOCAL_COPY_HINT}")
    return dirs, files, blobs


def _archive_problem(path: Path, err: Exception, started: bool) -> str:
    if isinstance(err, PermissionError):
        return f"cannot read {path}: permission denied; check the file's permissions"
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:2] == b"\x1f\x8b" and not started and _gzip_is_complete(path):
        return f"{path} is a gzip file but not a tar archive; {LOCAL_COPY_HINT}"
    if magic[:2] == b"\x1f\x8b" or started:
        return f"{path} is truncated or corrupt ({_one_line(err)}); download or pack it again"
    if not magic:
        return f"{path} is an empty file; {LOCAL_COPY_HINT}"
    return f"{path} is not a .tar.gz archive or a folder; {LOCAL_COPY_HINT}"


def _gzip_is_complete(path: Path) -> bool:
    try:
        with gzip.open(path, "rb") as g:
            while g.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error):
        return False
    return True


def _archive_prefix(names: list[str], path: Path) -> str:
    """"" when train/ is at the top of the archive, "top/" when it sits under one top-level folder."""
    if any(n == "train" or n.startswith("train/") for n in names):
        return ""
    tops = sorted({n.split("/")[0] for n in names if n.split("/")[1:2] == ["train"]})
    if len(tops) == 1:
        return tops[0] + "/"
    if tops:
        raise DataError(f"several folders in {path} hold train/ ({', '.join(tops)}); pack just one of them")
    raise DataError(f"no train/ folder in {path}: {LAYOUT_HINT}")


def _norm(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/") if name != "." else ""


# ---------------------------------------------------------------- official batches


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


# ---------------------------------------------------------------- image folders


@dataclass(frozen=True)
class _Layout:
    class_names: tuple[str, ...]
    files: dict[str, list[tuple[int, str]]]  # split -> sorted [(class index, "split/class/file")]


def _image_root(path: Path) -> Path:
    """The folder holding train/ and test/: `path` itself, or its one sub-folder that does."""
    if (path / "train").is_dir():
        return path
    tops = sorted(d for d in path.iterdir() if d.is_dir() and (d / "train").is_dir())
    if len(tops) == 1:
        return tops[0]
    if tops:
        names = ", ".join(d.name for d in tops)
        raise DataError(f"several folders in {path} hold train/ ({names}); point at one of them")
    raise DataError(f"no train/ folder in {path}: {LAYOUT_HINT}; or give a cifar-10-batches-py/ folder")


def _list_image_folder(path: Path) -> tuple[Path, list[str], list[tuple[str, os.stat_result]]]:
    """The layout root, its split and class folders, and every file in a class folder (sorted, with stats)."""
    root = _image_root(path)
    dirs: list[str] = []
    entries = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        dirs.append(split)
        for class_dir in sorted(split_dir.iterdir()):
            if not class_dir.is_dir():
                continue
            dirs.append(f"{split}/{class_dir.name}")
            with os.scandir(class_dir) as it:
                for entry in it:
                    if entry.is_file():
                        entries.append((f"{split}/{class_dir.name}/{entry.name}", entry.stat()))
    entries.sort(key=lambda e: e[0])
    return root, dirs, entries


def _read_image_file(root: Path, rel: str) -> bytes:
    try:
        return (root / rel).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read image {rel} in {root} ({_one_line(e)})") from e


def _layout(files: list[str], dirs: list[str], where: Path) -> _Layout:
    """Classes and image files of train/<class>/* and test/<class>/* (paths relative to the layout root)."""
    classes: dict[str, set[str]] = {s: set() for s in SPLITS}
    images: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    present = {name.split("/")[0] for name in files + dirs}
    dir_set = set(dirs)
    for name in dirs + files:
        parts = name.split("/")
        if len(parts) >= 2 and parts[0] in SPLITS and not parts[1].startswith("."):
            if len(parts) > 2 or name in dir_set:
                classes[parts[0]].add(parts[1])
    for name in files:
        parts = name.split("/")
        if len(parts) == 3 and parts[0] in SPLITS and _is_image_name(name):
            images[parts[0]].setdefault(parts[1], []).append(name)
    for split in SPLITS:
        if split not in present:
            raise DataError(f"no {split}/ folder in {where}: {LAYOUT_HINT}")
        if not classes[split]:
            raise DataError(f"no class folders in {split}/ of {where}: {LAYOUT_HINT}")
    train, test = classes["train"], classes["test"]
    if train != test:
        raise DataError(
            f"test/ classes differ from train/ classes in {where} (only in train: {_names(train - test)}; "
            f"only in test: {_names(test - train)}); give both splits the same class folders"
        )
    class_names = tuple(sorted(train))
    out: dict[str, list[tuple[int, str]]] = {}
    for split in SPLITS:
        out[split] = []
        for index, name in enumerate(class_names):
            found = sorted(images[split].get(name, []))
            if not found:
                raise DataError(
                    f"class folder {split}/{name} in {where} has no .png/.jpg/.jpeg images; add some or remove it"
                )
            out[split].extend((index, rel) for rel in found)
    return _Layout(class_names, out)


def _names(names: set[str]) -> str:
    return ", ".join(sorted(names)) or "-"


def _images_dataset(layout: _Layout, read, where: Path, source: str, progress: Progress | None = None) -> Dataset:
    """Decode every image of the layout (in its sorted order); all must share the first image's size.
    `progress` hears the share of the images decoded so far."""
    first: tuple[str, tuple] | None = None
    arrays = {}
    total, done = sum(len(v) for v in layout.files.values()), 0
    stride = max(1, total // 200)
    for split in SPLITS:
        entries = layout.files[split]
        x: np.ndarray | None = None
        for i, (_, rel) in enumerate(entries):
            if progress is not None and done % stride == 0:
                progress(done / total, f"Decoding images: {done:,} of {total:,}")
            done += 1
            img = _decode_image(read(rel), rel, where)
            if first is None:
                first = (rel, img.shape)
            elif img.shape != first[1]:
                raise DataError(
                    f"{rel} is {img.shape[1]}x{img.shape[0]} but the first image {first[0]} is "
                    f"{first[1][1]}x{first[1][0]} in {where}; resize all images to one size"
                )
            if x is None:
                x = np.empty((len(entries), *img.shape), dtype=np.uint8)
            x[i] = img
        arrays[split] = (x, np.array([c for c, _ in entries], dtype=np.int64))
    return Dataset(
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        class_names=layout.class_names,
        source=source,
    )


def _decode_image(raw: bytes, rel: str, where: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as im:
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError,
            Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {rel} in {where} ({_one_line(e)}); replace or remove the file") from e


# ---------------------------------------------------------------- what the gallery shows


@dataclass(frozen=True)
class DatasetInfo:
    source: str
    class_names: tuple[str, ...]
    train_shape: tuple  # (N, H, W, 3)
    test_shape: tuple
    counts: dict[str, list[int]]  # {"train": [images per class], "test": [...]}
    channel_mean: tuple[float, float, float]  # over train, in 0..255
    channel_std: tuple[float, float, float]  # population std over train, in 0..255

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "class_names": list(self.class_names),
            "train_shape": [int(d) for d in self.train_shape],
            "test_shape": [int(d) for d in self.test_shape],
            "counts": {k: [int(c) for c in v] for k, v in self.counts.items()},
            "channel_mean": [float(v) for v in self.channel_mean],
            "channel_std": [float(v) for v in self.channel_std],
        }


def dataset_info(ds: Dataset) -> DatasetInfo:
    """Shapes, images per class and per-channel mean/std of the train split."""
    mean, std = _channel_stats(ds.x_train)
    return DatasetInfo(
        source=ds.source,
        class_names=ds.class_names,
        train_shape=tuple(int(d) for d in ds.x_train.shape),
        test_shape=tuple(int(d) for d in ds.x_test.shape),
        counts={s: np.bincount(ds.split(s)[1], minlength=ds.num_classes).tolist() for s in SPLITS},
        channel_mean=mean,
        channel_std=std,
    )


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    # A 256-bin histogram per channel is exact and needs no float copy of the 150 MB train set. It
    # is counted STATS_CHUNK images at a time: bincount widens what it counts to int64, 8 bytes a
    # pixel (400 MB for one channel of the whole train set).
    levels = np.arange(256, dtype=np.float64)
    hists = np.zeros((3, 256), np.float64)
    for start in range(0, len(x), STATS_CHUNK):
        part = x[start:start + STATS_CHUNK]
        for c in range(3):
            hists[c] += np.bincount(part[..., c].ravel(), minlength=256)
    means, stds = [], []
    for hist in hists:
        total = hist.sum()
        mean = float(hist @ levels / total) if total else 0.0
        means.append(mean)
        stds.append(float(np.sqrt(hist @ (levels - mean) ** 2 / total)) if total else 0.0)
    return tuple(means), tuple(stds)  # type: ignore[return-value]


def sample_indices(ds: Dataset, split: str, n: int, seed: int, class_index: int | None = None) -> np.ndarray:
    """n random indices into a split (optionally of one class), the same for the same seed; all if n is larger."""
    _, y = ds.split(split)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise DataError(f"sample size n={n!r} must be a whole number >= 0")
    pool = np.arange(len(y), dtype=np.int64)
    if class_index is not None:
        if not 0 <= class_index < ds.num_classes:
            raise DataError(f"class_index={class_index} is out of range: use 0..{ds.num_classes - 1}")
        pool = pool[y == class_index]
    rng = np.random.default_rng(seed)
    return rng.choice(pool, size=min(int(n), len(pool)), replace=False).astype(np.int64)


def holdout_split(ds: Dataset, holdout: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx) into the train split: a class-stratified held-out set fixed by seed.

    `holdout` is for the full 50,000-image train set and is scaled down proportionally for smaller sets
    (5000 -> 10% of train). Both index arrays come shuffled, so slicing them mixes the classes.
    """
    y = ds.y_train
    n = len(y)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, np.integer)) or not 0 <= holdout < max(n, 50_000):
        limit = max(n, 50_000) - 1
        raise DataError(f"holdout={holdout!r} must be a whole number in 0..{limit} (images held out of 50,000)")
    target = int(holdout) if n >= 50_000 else min(int(round(holdout * n / 50_000)), max(n - 1, 0))
    counts = np.bincount(y, minlength=ds.num_classes)
    quotas = _stratified_quotas(counts, target)
    rng = np.random.default_rng(seed)
    train_parts, val_parts = [], []
    for c in range(ds.num_classes):
        members = rng.permutation(np.flatnonzero(y == c))
        val_parts.append(members[: quotas[c]])
        train_parts.append(members[quotas[c]:])
    train_idx = rng.permutation(np.concatenate(train_parts)).astype(np.int64)
    val_idx = rng.permutation(np.concatenate(val_parts)).astype(np.int64)
    return train_idx, val_idx


def _stratified_quotas(counts: np.ndarray, target: int) -> np.ndarray:
    """Per-class sizes summing to target, proportional to counts (largest remainders get the rest)."""
    total = counts.sum()
    if total == 0 or target == 0:
        return np.zeros_like(counts)
    exact = counts * target / total
    quotas = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[: target - quotas.sum()]] += 1
    return np.minimum(quotas, counts)


def _download_reason(err: BaseException) -> str:
    """Why a download failed, in words: Keras's get_file says "URL fetch failure on URL: None --
    [Errno -2] Name or service not known"; the reader needs "Name or service not known"."""
    seen = err
    while seen is not None:  # the URLError (or OSError) Keras re-raised, if it kept it
        reason = getattr(seen, "reason", None)
        reason = reason if reason is not None else (seen if isinstance(seen, OSError) else None)
        if isinstance(reason, OSError) and reason.strerror:
            return reason.strerror
        if isinstance(reason, str) and reason:
            return reason
        seen = seen.__cause__ or seen.__context__
    text = _one_line(err)
    text = re.sub(r"^URL fetch failure on \S+?:?\s+", "", text)
    text = re.sub(r"^(None|\d{3})\s+--\s+", lambda m: "" if m.group(1) == "None" else f"HTTP {m.group(1)}: ", text)
    return re.sub(r"\[Errno -?\d+\]\s*", "", text).strip() or type(err).__name__


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__
