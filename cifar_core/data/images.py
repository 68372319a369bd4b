"""Image folders: train/<class>/*.png|jpg|jpeg and test/<class>/*, possibly under one top-level
folder, in a folder or an archive; class names are the sorted folder names of train/."""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar_core.data.dataset import Dataset, Progress, SPLITS, _one_line
from cifar_core.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")

LAYOUT_HINT = "expected train/<class>/*.png|jpg and test/<class>/* (optionally under one top-level folder)"


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTS) and 3 <= name.count("/") + 1 <= 4


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
