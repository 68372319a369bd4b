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

This module names a source and loads it (`load_dataset`, `source_info`); the rest of `data/` does
one part each: `dataset` (the `Dataset`, its figures, sampling), `download` (the keras source),
`cache` (the decoded arrays on disk), `archives`, `batches` (the official pickles) and `images`
(image folders) read the formats.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from cifar_core.config import cache_dir, default_source
from cifar_core.data.archives import _archive_prefix, _scan_archive
from cifar_core.data.batches import BATCH_DIR, BATCH_FILES, _batches_dataset, _is_batch_name, _read_batch_file
from cifar_core.data.cache import _Plan, _cache_name, _read_cache, _read_info, _sha_memo, _write_cache, _write_info
from cifar_core.data.dataset import Dataset, DatasetInfo, LOCAL_COPY_HINT, Progress, dataset_info
from cifar_core.data.download import _fetch_keras
from cifar_core.data.images import (
    _image_root,
    _images_dataset,
    _is_image_name,
    _layout,
    _list_image_folder,
    _read_image_file,
)
from cifar_core.errors import DataError

MEMO_SIZE = 2  # datasets kept open in a process (mapped from the cache: only the pages read are resident)

_memo: OrderedDict[str, Dataset] = OrderedDict()

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
