"""A loaded CIFAR-style data set (`Dataset`: read-only uint8 arrays and class names), its figures
(`DatasetInfo`: counts per class, channel statistics) and what can be drawn from it: gallery
samples (`sample_indices`) and the stratified holdout split (`holdout_split`). Also the words every
source format shares: the progress callback and the hint to use a local copy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cifar_core.errors import DataError

SPLITS = ("train", "test")

STATS_CHUNK = 2048  # images counted at once for the channel statistics (16 MB of int64 per channel)

Progress = Callable[[float, str], None]  # (fraction done in 0..1, what is being done)

LOCAL_COPY_HINT = (
    "set CIFAR_LAB_DATA to a local copy: a cifar-10-python.tar.gz, an extracted cifar-10-batches-py/ folder, "
    "or an image folder / .tar.gz laid out train/<class>/*.png|jpg and test/<class>/*"
)


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


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__
