"""Uploaded images to classify (an uploaded JSON spec is read by cifar_core.spec.jsonread).

Images are accepted by content (PNG or JPEG magic bytes), never by file name. The byte size is
checked first, then the width x height Pillow will decode, read by its lazy `Image.open` from the
headers before a pixel is decoded (so a small file that claims 20000x20000 pixels, or a PNG whose
second IHDR chunk claims more than its first, is refused without allocating them), then the whole
image is decoded to catch truncation. Pillow's own decompression-bomb limit is the lab's pixel limit
while an upload is opened and decoded, and its warning is an error: either becomes an UploadError.
The result is RGB: transparent pixels are composited onto white, palette and grayscale images are
expanded, 16-bit images scaled to 8 bits, and EXIF rotation applied. The 32x32 model input is the
centre square, resized with Lanczos filtering (which averages over the source pixels when
shrinking, so small details do not alias).
"""

from __future__ import annotations

import io
import math
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifar_core.errors import UploadError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
MODEL_SIZE = 32
MAX_PIXELS = 4096 * 4096  # the largest image an upload may decode to (width x height)
MAX_IMAGE_BYTES = 5_000_000  # the largest image file; .streamlit/config.toml's maxUploadSize lets it through
CORRUPT = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)  # what Pillow raises for a bad file


@dataclass(frozen=True, eq=False)
class UploadedImage:
    original: np.ndarray  # uint8 (H, W, 3), upright RGB
    resized: np.ndarray  # uint8 (32, 32, 3), what the model sees
    format: str  # "PNG" or "JPEG"
    size: tuple[int, int]  # (width, height) of `original`

    def to_dict(self) -> dict:
        """Everything but the full-size pixels, which a page shows from `original` directly."""
        return {"format": self.format, "size": list(self.size), "resized": self.resized.tolist()}


def box_megabytes(max_bytes: int) -> int:
    """The limit an upload box states for a lab limit of max_bytes: Streamlit counts whole
    megabytes (2**20 bytes, at least 1), so the box lets every file the lab accepts through and the
    lab refuses the rest with its own message."""
    return max(1, math.ceil(max_bytes / 2**20))


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n / 1e3:.1f} KB"


def _limit(n: int) -> str:
    return f"{n / 1e6:g} MB" if n >= 1_000_000 else f"{n / 1e3:g} KB"


def _check_size(data: bytes, max_bytes: int, what: str) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UploadError(f"{what} must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise UploadError(f"{what} is empty; choose the file again")
    if len(data) > max_bytes:
        raise UploadError(f"{what} is {_human(len(data))}, over the {_limit(max_bytes)} limit")


def _sniff(data: bytes) -> str:
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    raise UploadError(f"not a PNG or JPEG image: {_what_it_is(bytes(data[:512]))}")


OTHER_FORMATS = ((b"GIF8", "a GIF image"), (b"BM", "a BMP image"), (b"%PDF", "a PDF document"),
                 (b"PK\x03\x04", "a ZIP archive"), (b"\x1f\x8b", "a gzip archive"), (b"II*\x00", "a TIFF image"),
                 (b"MM\x00*", "a TIFF image"))


def _what_it_is(head: bytes) -> str:
    """In words, what a file that is neither PNG nor JPEG seems to be, from its first bytes."""
    for magic, name in OTHER_FORMATS:
        if head.startswith(magic):
            return f"it is {name}; save it as PNG or JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "it is a WebP image; save it as PNG or JPEG"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "it is text, not a picture"
    return "its first bytes are neither format's signature"


_pillow = threading.Lock()


@contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's own decompression-bomb limit set to `max_pixels` (restored afterwards), with its
    DecompressionBombWarning raised as an error instead of printed. Pillow keeps the limit in a
    module global, so uploads take turns; the lab's other Pillow use (a data set's small images)
    is far under any limit an upload uses."""
    with _pillow, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        kept, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = kept


def _too_many_pixels(data: bytes, fmt: str, max_pixels: int, refusal: Exception) -> UploadError:
    """The refusal of an image Pillow found over the limit, naming the size it would decode (read
    again from the headers only, with Pillow's check off: nothing is decoded). Called under _pillow_limit."""
    kept, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            w, h = img.size
        return UploadError(f"image is {w}x{h} = {w * h:,} pixels, over the {max_pixels:,} limit")
    except CORRUPT:  # the size is unreadable after all: say what Pillow said
        return UploadError(f"image is over the {max_pixels:,}-pixel limit ({refusal})")
    finally:
        Image.MAX_IMAGE_PIXELS = kept


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I") or img.mode == "F":  # 16-bit (or wider) grayscale
        gray = np.asarray(img, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(gray, 0, 255).round().astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _model_input(img: Image.Image) -> np.ndarray:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    small = img.resize((MODEL_SIZE, MODEL_SIZE), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side),
                       reducing_gap=3.0)  # the centre square, without a full-size copy of it
    return np.asarray(small, dtype=np.uint8)


def read_image_upload(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_PIXELS) -> UploadedImage:
    """Validate and decode an uploaded PNG or JPEG; raise UploadError saying what is wrong."""
    _check_size(data, max_bytes, "file")
    data = bytes(data)
    fmt = _sniff(data)
    try:
        with _pillow_limit(max_pixels):
            try:
                with Image.open(io.BytesIO(data), formats=[fmt]) as img:  # lazy: the headers only
                    w, h = img.size  # what Pillow will decode (the last IHDR of a PNG, not the first)
                    if w == 0 or h == 0:
                        raise UploadError(f"the {fmt} is truncated or corrupt (its header says {w}x{h} pixels); save it again")
                    img.load()
                    ImageOps.exif_transpose(img, in_place=True)  # in place: no second full-size copy
                    rgb = _to_rgb(img)
                    original = np.asarray(rgb, dtype=np.uint8)
                    return UploadedImage(original=original, resized=_model_input(rgb), format=fmt, size=rgb.size)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise _too_many_pixels(data, fmt, max_pixels, e) from e
    except UnidentifiedImageError as e:  # its message names only the in-memory file object
        raise UploadError(f"the {fmt} is truncated or corrupt (its headers cannot be read); save it again") from e
    except CORRUPT as e:
        raise UploadError(f"the {fmt} is truncated or corrupt ({e}); save it again") from e
