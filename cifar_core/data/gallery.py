"""What the Dataset page shows: a grid of random samples composed into one crisp image (nearest-
neighbour upscaling, class names drawn under each tile), and the dataset's figures as frames.

One composed PNG is one request for the browser instead of a hundred, and upscaling here keeps
the 32x32 pixels sharp whatever the browser's smoothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from cifar_core.data.dataset import Dataset, DatasetInfo, sample_indices

GUTTER = 4  # pixels between tiles
LABEL_HEIGHT = 15  # pixels of the class-name strip under each tile
MARGIN = 18  # pixels for the row and column numbers
BACKGROUND = (255, 255, 255)
LABEL_COLOUR = (49, 51, 63)
NUMBER_COLOUR = (140, 140, 150)


@dataclass(frozen=True)
class GridCell:
    position: int  # 0-based, row-major in the grid
    index: int  # index into the split
    label: int  # class index
    class_name: str

    def caption(self, cols: int, split: str) -> str:
        row, col = divmod(self.position, cols)
        return f"row {row}, col {col}: {self.class_name} ({split} #{self.index})"


@dataclass(frozen=True, eq=False)
class Grid:
    image: np.ndarray  # uint8 (H, W, 3), already upscaled and labelled
    cells: tuple[GridCell, ...]
    rows: int
    cols: int
    split: str
    seed: int


def sample_cells(ds: Dataset, split: str, seed: int, class_index: int | None = None, n: int = 100) -> tuple[GridCell, ...]:
    """n random images of a split (optionally one class): the same seed gives the same cells."""
    _, y = ds.split(split)
    picked = sample_indices(ds, split, n, seed, class_index)
    return tuple(
        GridCell(position=p, index=int(i), label=int(y[i]), class_name=ds.class_names[int(y[i])])
        for p, i in enumerate(picked)
    )


def make_grid(
    ds: Dataset, split: str, seed: int, class_index: int | None = None, rows: int = 10, cols: int = 10, scale: int = 2
) -> Grid:
    """A rows x cols grid of random samples, composed into one labelled image."""
    cells = sample_cells(ds, split, seed, class_index, rows * cols)
    x, _ = ds.split(split)
    return Grid(compose(x, cells, cols, scale), cells, rows, cols, split, seed)


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement: every pixel becomes a scale x scale block."""
    if scale < 1:
        raise ValueError(f"scale={scale} must be a whole number >= 1")
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def compose(images: np.ndarray, cells: tuple[GridCell, ...], cols: int, scale: int) -> np.ndarray:
    """One uint8 image: each cell's picture upscaled, its class name under it, row/column numbers."""
    h, w = images.shape[1] * scale, images.shape[2] * scale
    rows = max(1, -(-len(cells) // cols))
    pitch_x, pitch_y = w + GUTTER, h + LABEL_HEIGHT + GUTTER
    canvas = np.full((MARGIN + rows * pitch_y, MARGIN + cols * pitch_x, 3), BACKGROUND, np.uint8)
    for cell in cells:
        r, c = divmod(cell.position, cols)
        top, left = MARGIN + r * pitch_y, MARGIN + c * pitch_x
        canvas[top:top + h, left:left + w] = upscale(images[cell.index], scale)
    picture = Image.fromarray(canvas)
    _draw_text(picture, cells, rows, cols, (w, h), (pitch_x, pitch_y))
    return np.asarray(picture)


def _draw_text(picture: Image.Image, cells, rows: int, cols: int, tile: tuple[int, int], pitch: tuple[int, int]) -> None:
    draw = ImageDraw.Draw(picture)
    font, small = _font(11), _font(10)
    (w, h), (pitch_x, pitch_y) = tile, pitch
    for c in range(cols):
        draw.text((MARGIN + c * pitch_x + w / 2, MARGIN / 2), str(c), fill=NUMBER_COLOUR, font=small, anchor="mm")
    for r in range(rows):
        draw.text((MARGIN / 2, MARGIN + r * pitch_y + h / 2), str(r), fill=NUMBER_COLOUR, font=small, anchor="mm")
    for cell in cells:
        r, c = divmod(cell.position, cols)
        text = _fit(cell.class_name, font, w)
        draw.text((MARGIN + c * pitch_x + w / 2, MARGIN + r * pitch_y + h + 2), text, fill=LABEL_COLOUR, font=font, anchor="mt")


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _fit(text: str, font, width: int) -> str:
    """The text, cut with an ellipsis if it is wider than `width` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def counts_frame(info: DatasetInfo) -> pd.DataFrame:
    """Images per class per split, long (class, split, images), for a grouped bar chart."""
    return pd.DataFrame(
        [(name, split, int(counts[i])) for split, counts in info.counts.items() for i, name in enumerate(info.class_names)],
        columns=["class", "split", "images"],
    )


def channel_frame(info: DatasetInfo) -> pd.DataFrame:
    """Per-channel mean and std of the train split, on the 0..255 scale and on 0..1 (what a model sees)."""
    mean, std = np.asarray(info.channel_mean), np.asarray(info.channel_std)
    return pd.DataFrame(
        {"mean": mean, "std": std, "mean (0-1)": mean / 255, "std (0-1)": std / 255}, index=["red", "green", "blue"]
    ).rename_axis("channel")


def shapes_frame(info: DatasetInfo) -> pd.DataFrame:
    """Shape and image count of each split."""
    return pd.DataFrame(
        {"images": [info.train_shape[0], info.test_shape[0]], "shape": [str(tuple(info.train_shape)), str(tuple(info.test_shape))]},
        index=["train", "test"],
    ).rename_axis("split")
