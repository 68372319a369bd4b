"""Uploaded files: an image to classify, or a JSON experiment spec.

Images are accepted by content (PNG or JPEG magic bytes), never by file name. The byte size is
checked first, then the width x height read from the file header (before Pillow decodes a pixel,
so a small file that claims 20000x20000 pixels is refused without allocating them), then the
whole image is decoded to catch truncation. The result is RGB: transparent pixels are composited
onto white, palette and grayscale images are expanded, 16-bit images scaled to 8 bits, and EXIF
rotation applied. The 32x32 model input is the centre square, resized with Lanczos filtering
(which averages over the source pixels when shrinking, so small details do not alias).
"""

from __future__ import annotations

import io
import json
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from cifar_core.errors import UploadError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
MODEL_SIZE = 32
# JPEG start-of-frame markers (baseline, progressive, lossless, ...) that carry the image size;
# C4 (Huffman tables), C8 (reserved) and CC (arithmetic coding) share the range but do not.
SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True, eq=False)
class UploadedImage:
    original: np.ndarray  # uint8 (H, W, 3), upright RGB
    resized: np.ndarray  # uint8 (32, 32, 3), what the model sees
    format: str  # "PNG" or "JPEG"
    size: tuple[int, int]  # (width, height) of `original`

    def to_dict(self) -> dict:
        """Everything but the full-size pixels, which a page shows from `original` directly."""
        return {"format": self.format, "size": list(self.size), "resized": self.resized.tolist()}


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
    raise UploadError(f"not a PNG or JPEG image (starts with {bytes(data[:8])!r})")


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame and read its width and height."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in SOF_MARKERS:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I") or img.mode == "F":  # 16-bit (or wider) grayscale
        gray = np.asarray(img, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(gray, 0, 255).round().astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _model_input(img: Image.Image) -> np.ndarray:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = img.crop((left, top, left + side, top + side))
    small = square.resize((MODEL_SIZE, MODEL_SIZE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(small, dtype=np.uint8)


def read_image_upload(data: bytes, max_bytes: int = 5_000_000, max_pixels: int = 4096 * 4096) -> UploadedImage:
    """Validate and decode an uploaded PNG or JPEG; raise UploadError saying what is wrong."""
    _check_size(data, max_bytes, "file")
    data = bytes(data)
    fmt = _sniff(data)
    header = _png_size(data) if fmt == "PNG" else _jpeg_size(data)
    if header is None:
        raise UploadError(f"the {fmt} is truncated or corrupt (no image size in its header); save it again")
    w, h = header
    if w == 0 or h == 0:
        raise UploadError(f"the {fmt} is truncated or corrupt (its header says {w}x{h} pixels); save it again")
    if w * h > max_pixels:
        raise UploadError(f"image is {w}x{h} = {w * h:,} pixels, over the {max_pixels:,} limit")
    try:
        with warnings.catch_warnings():
            # The pixel count was checked above against our own limit; Pillow's own (larger)
            # default limit would otherwise warn for limits a caller raised on purpose.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                img.load()
                upright = ImageOps.exif_transpose(img)
                rgb = _to_rgb(upright)
    except Image.DecompressionBombError as e:
        raise UploadError(f"image is {w}x{h} = {w * h:,} pixels, over Pillow's limit ({e})") from e
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as e:
        raise UploadError(f"the {fmt} is truncated or corrupt ({e}); save it again") from e
    original = np.asarray(rgb, dtype=np.uint8)
    return UploadedImage(original=original, resized=_model_input(rgb), format=fmt, size=rgb.size)


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON; use a number or null")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object; keep one")
        out[key] = value
    return out


JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def spec_upload(data: bytes, max_bytes: int = 256_000) -> dict:
    """Parse an uploaded JSON spec into a dict (checking it against the spec schema is done elsewhere)."""
    _check_size(data, max_bytes, "spec file")
    data = bytes(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UploadError(f"spec is not UTF-8 text: byte 0x{data[e.start]:02x} on line {line}; save it as UTF-8") from e
    try:
        spec = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise UploadError(f"spec is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from e
    except ValueError as e:
        raise UploadError(f"spec is not valid JSON: {e}") from e
    except RecursionError as e:
        raise UploadError("spec is nested too deeply to be an experiment spec") from e
    if not isinstance(spec, dict):
        raise UploadError(f"spec must be a JSON object {{...}}, got a JSON {JSON_TYPES.get(type(spec), 'value')}")
    return spec
