"""Small, learnable CIFAR-like data in every source format the lab reads, for the tests and scripts.

Every writer draws its images from `synthetic_arrays`, class by class, with the train split from `seed`
and the test split from `seed + 1`, so a batches folder, its tarball and an image folder (PNG) written
with the same arguments load to identical arrays.
"""

from __future__ import annotations

import colorsys
import pickle
import tarfile
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SIZE = 32


def synthetic_arrays(n_per_class: int, seed: int = 0, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 32, 32, 3) and int64 labels (N,), class by class.

    Each class has its own colour (hue c / num_classes) and stripe pattern (angle and frequency), with a
    random phase, brightness and pixel noise per image: easy for a tiny net, not identical copies.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / SIZE
    images = []
    for c in range(num_classes):
        colour = np.array(colorsys.hsv_to_rgb(c / num_classes, 0.85, 0.9)) * 255
        angle = np.pi * (c % 4) / 4
        freq = 1.5 + (c // 4) % 3
        phase = rng.uniform(0, 2 * np.pi, size=(n_per_class, 1, 1))
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
        brightness = rng.uniform(0.8, 1.1, size=(n_per_class, 1, 1, 1))
        base = colour * (0.45 + 0.55 * stripes[..., None]) * brightness
        noise = rng.normal(0, 18, size=(n_per_class, SIZE, SIZE, 3))
        images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    x = np.concatenate(images) if images else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    y = np.repeat(np.arange(num_classes, dtype=np.int64), n_per_class)
    return x, y


def write_cifar_batches(folder: Path, n_train_per_class: int = 20, n_test_per_class: int = 5, seed: int = 0) -> Path:
    """folder/cifar-10-batches-py/ in the official pickle format (5 train batches, test_batch, batches.meta)."""
    out = Path(folder) / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train = synthetic_arrays(n_train_per_class, seed)
    x_test, y_test = synthetic_arrays(n_test_per_class, seed + 1)
    chunks = np.array_split(np.arange(len(y_train)), 5)  # consecutive, so batches 1..5 concatenate back in order
    for i, idx in enumerate(chunks, start=1):
        _dump(out / f"data_batch_{i}", _batch(x_train[idx], y_train[idx], f"training batch {i} of 5"))
    _dump(out / "test_batch", _batch(x_test, y_test, "testing batch 1 of 1"))
    meta = {
        b"label_names": [c.encode() for c in CLASSES],
        b"num_cases_per_batch": len(chunks[0]),
        b"num_vis": SIZE * SIZE * 3,
    }
    _dump(out / "batches.meta", meta)
    return out


def _batch(x: np.ndarray, y: np.ndarray, label: str) -> dict:
    return {
        b"batch_label": label.encode(),
        b"labels": [int(v) for v in y],
        b"data": np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), -1)),  # rows are R, G, B planes
        b"filenames": [f"{CLASSES[int(v)]}_{i:05d}.png".encode() for i, v in enumerate(y)],
    }


def _dump(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official files are Python 2 pickles


def write_cifar_tarball(folder: Path, **kw) -> Path:
    """folder/cifar-10-python.tar.gz holding cifar-10-batches-py/, like the official download."""
    batches = write_cifar_batches(folder, **kw)
    path = Path(folder) / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    return path


def write_image_folder(
    folder: Path,
    n_train_per_class: int = 20,
    n_test_per_class: int = 5,
    fmt: str = "png",
    seed: int = 0,
    classes: tuple[str, ...] = CLASSES,
) -> Path:
    """folder/train/<class>/0000.<fmt> and folder/test/<class>/...; returns folder."""
    from PIL import Image

    folder = Path(folder)
    for split, n, split_seed in (("train", n_train_per_class, seed), ("test", n_test_per_class, seed + 1)):
        x, y = synthetic_arrays(n, split_seed, num_classes=len(classes))
        for c, name in enumerate(classes):
            class_dir = folder / split / name
            class_dir.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(x[y == c]):
                options = {"quality": 95, "subsampling": 0} if fmt.lower() in ("jpg", "jpeg") else {}
                Image.fromarray(img).save(class_dir / f"{i:04d}.{fmt}", **options)
    return folder


def write_image_tarball(folder: Path, **kw) -> Path:
    """folder/cifar10-synth.tar.gz holding cifar10-synth/train/<class>/..., like the real cifar10-jpeg.tar.gz."""
    staged = write_image_folder(Path(folder) / "cifar10-synth", **kw)
    path = Path(folder) / "cifar10-synth.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(staged, arcname="cifar10-synth")
    return path


def tiny_spec(**settings) -> dict:
    """A spec that trains in about a second on the small generated data sets."""
    doc = {
        "name": "tiny",
        "layers": [
            {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPool2D", "pool_size": 2},
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ],
        "epochs": 2,
        "batch_size": 32,
    }
    return {**doc, **settings}
