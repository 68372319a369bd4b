"""Uploads made with Pillow (and by hand, for hostile headers) the way a user's browser sends them."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from cifar_core.errors import UploadError
from cifar_core.data.uploads import read_image_upload, spec_upload


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def single_colour_png(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of one colour, written row by row so the test never holds the
    decoded pixels (Pillow would need width*height bytes to make it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return PNG_SIG + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


PNG_SIG = b"\x89PNG\r\n\x1a\n"


def test_valid_rgb_png():
    up = read_image_upload(encode(noise(40, 30), "PNG"))
    assert up.format == "PNG" and up.size == (40, 30)
    assert up.original.shape == (30, 40, 3) and up.original.dtype == np.uint8
    assert up.resized.shape == (32, 32, 3) and up.resized.dtype == np.uint8
    assert up.to_dict()["size"] == [40, 30]


def test_text_file_named_png_is_refused_by_content():
    with pytest.raises(UploadError, match=r"not a PNG or JPEG image \(starts with b'hello wo'\)"):
        read_image_upload(b"hello world, I am cat.png\n")


def test_truncated_jpeg():
    data = encode(noise(64, 64), "JPEG", quality=90)
    assert read_image_upload(data).format == "JPEG"
    with pytest.raises(UploadError, match="the JPEG is truncated or corrupt"):
        read_image_upload(data[: len(data) // 2])
    with pytest.raises(UploadError, match="the JPEG is truncated or corrupt"):
        read_image_upload(data[:40])  # cut inside the headers, before the frame size


def test_truncated_png():
    data = encode(noise(64, 64), "PNG")
    with pytest.raises(UploadError, match="the PNG is truncated or corrupt"):
        read_image_upload(data[: len(data) - 500])


def test_decompression_bomb_png_is_refused_from_its_header():
    data = single_colour_png(20000, 20000)
    assert len(data) < 100_000  # 400 million pixels in ~50 KB
    start = time.perf_counter()
    with pytest.raises(UploadError, match=r"image is 20000x20000 = 400,000,000 pixels, over the 16,777,216 limit"):
        read_image_upload(data)
    assert time.perf_counter() - start < 0.5  # refused without decoding


def test_bomb_png_is_a_real_png():
    # The same generator at a decodable size gives an image Pillow reads, so the refusal above is
    # about the size and not a malformed file.
    up = read_image_upload(single_colour_png(300, 200))
    assert up.size == (300, 200) and (up.original == 0).all()


def test_jpeg_header_size_is_read_before_decoding():
    data = bytearray(encode(noise(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 20000, 20000)  # claim 20000x20000
    with pytest.raises(UploadError, match=r"image is 20000x20000 = 400,000,000 pixels"):
        read_image_upload(bytes(data))


def test_pixel_limit_is_a_parameter():
    data = encode(noise(100, 100), "PNG")
    with pytest.raises(UploadError, match=r"image is 100x100 = 10,000 pixels, over the 5,000 limit"):
        read_image_upload(data, max_pixels=5000)


def test_png_with_alpha_is_composited_on_white():
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[:, :32] = (255, 0, 0, 255)  # opaque red left half, fully transparent right half
    up = read_image_upload(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert up.original.shape == (64, 64, 3)
    assert up.original[0, 0].tolist() == [255, 0, 0]
    assert up.original[0, 63].tolist() == [255, 255, 255]
    assert up.resized[16, 2].tolist() == [255, 0, 0] and up.resized[16, 30].tolist() == [255, 255, 255]


def test_palette_png_with_transparency():
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    img.info["transparency"] = 0
    up = read_image_upload(encode(img, "PNG", transparency=0))
    assert up.original[5, 5].tolist() == [255, 255, 255]


def test_grayscale_jpeg_becomes_three_equal_channels():
    gray = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1)), "L")
    up = read_image_upload(encode(gray, "JPEG", quality=95))
    assert up.format == "JPEG" and up.original.shape == (64, 64, 3)
    assert (up.resized[..., 0] == up.resized[..., 1]).all() and (up.resized[..., 1] == up.resized[..., 2]).all()
    assert up.resized[:, 0, 0].mean() < 20 and up.resized[:, -1, 0].mean() > 235  # dark left, light right


def test_sixteen_bit_png_is_scaled_not_clipped():
    arr = np.full((8, 8), 32768, dtype=np.uint16)  # mid gray in 16 bits
    up = read_image_upload(encode(Image.fromarray(arr), "PNG"))
    assert up.original[0, 0].tolist() == [128, 128, 128]


def test_wide_image_uses_the_centre_square():
    arr = np.zeros((32, 96, 3), dtype=np.uint8)
    arr[:, 32:64] = 200  # bright centre third, black sides
    up = read_image_upload(encode(Image.fromarray(arr), "PNG"))
    assert up.resized.min() >= 190


def test_oversize_file_is_refused_before_reading():
    with pytest.raises(UploadError, match=r"file is 12\.3 MB, over the 5 MB limit"):
        read_image_upload(PNG_SIG + b"\x00" * 12_300_000)
    with pytest.raises(UploadError, match="file is empty"):
        read_image_upload(b"")


def test_spec_upload_parses_an_object():
    spec = {"name": "cnn", "layers": [{"type": "Conv2D", "filters": 16}], "epochs": 10}
    assert spec_upload(json.dumps(spec).encode()) == spec
    assert spec_upload(b"\xef\xbb\xbf" + json.dumps(spec).encode()) == spec  # a BOM from Notepad is fine


@pytest.mark.parametrize(
    "data, message",
    [
        (b'{\n  "name": "cnn",\n  "epochs": 10\n  "layers": []\n}', r"Expecting ',' delimiter at line 4, column 3"),
        (b"[1, 2]", r"spec must be a JSON object \{\.\.\.\}, got a JSON array"),
        (b'"cnn"', r"got a JSON string"),
        (b'{"name": "caf\xe9"}', r"not UTF-8 text: byte 0xe9 on line 1"),
        (b'{"epochs": NaN}', r"NaN is not valid JSON"),
        (b'{"epochs": 1, "epochs": 2}', r"the key 'epochs' appears twice"),
        (b"", r"spec file is empty"),
        (b"{" + b" " * 300_000 + b"}", r"spec file is 300\.0 KB, over the 256 KB limit"),
        (b"[" * 50_000 + b"]" * 50_000, r"nested too deeply"),
    ],
)
def test_spec_upload_errors(data, message):
    with pytest.raises(UploadError, match=message):
        spec_upload(data)


def test_progressive_jpeg_with_exif_rotation_is_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned, display rotated 90 degrees clockwise
    data = encode(noise(40, 20), "JPEG", progressive=True, exif=exif.tobytes())
    up = read_image_upload(data)
    assert up.size == (20, 40) and up.original.shape == (40, 20, 3)
