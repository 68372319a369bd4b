"""Uploads made with Pillow (and by hand, for hostile headers) the way a user's browser sends them."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_core.errors import UploadError
from cifar_core.data.uploads import read_image_upload
from cifar_core.testing.procs import ROOT


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


@pytest.mark.parametrize("data, what", [
    (b"hello world, I am cat.png\n", "it is text, not a picture"),
    (b"GIF89a not really a png", "it is a GIF image; save it as PNG or JPEG"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "it is a WebP image; save it as PNG or JPEG"),
    (bytes(range(200, 256)), "its first bytes are neither format's signature"),
], ids=["text", "gif", "webp", "binary"])
def test_a_file_that_is_not_png_or_jpeg_is_refused_by_content_in_words(data, what):
    """Issue 31: the refusal showed a Python bytes literal (starts with b'this is ')."""
    with pytest.raises(UploadError) as refused:
        read_image_upload(data)
    assert str(refused.value) == f"not a PNG or JPEG image: {what}"
    assert "b'" not in str(refused.value) and "\\x" not in str(refused.value)


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


def two_ihdr_png(first: int = 64, second: int = 12000) -> bytes:
    """A PNG with two IHDR chunks, first x first then second x second (8-bit RGB), and the zlib
    stream of the big image's zero pixels: 432 MB of pixels in ~420 KB. A check of the first IHDR
    lets it through; Pillow decodes the last one."""
    ihdr = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", n, n, 8, 2, 0, 0, 0)) for n in (first, second)]
    rows = (b"\x00" * (1 + 3 * second)) * 100  # filter byte + pixels, 100 rows at a time
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(rows) for _ in range(second // 100)) + comp.flush()
    return PNG_SIG + ihdr[0] + ihdr[1] + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def two_ihdr(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "two-ihdr.png"
    path.write_bytes(two_ihdr_png())
    return path


def test_png_with_a_larger_second_ihdr_is_refused_at_the_size_pillow_decodes(two_ihdr):
    data = two_ihdr.read_bytes()
    assert 300_000 < len(data) < 500_000
    with pytest.warns(Image.DecompressionBombWarning), Image.open(io.BytesIO(data)) as img:
        assert img.size == (12000, 12000)  # what Pillow would decode, over its own default limit
    with pytest.raises(UploadError, match=r"image is 12000x12000 = 144,000,000 pixels, over the 16,777,216 limit"):
        read_image_upload(data)


def test_pillows_warning_and_error_become_the_refusal_and_its_limit_is_restored():
    kept = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that escaped would fail the test
        with pytest.raises(UploadError, match=r"image is 100x80 = 8,000 pixels, over the 5,000 limit") as warned:
            read_image_upload(encode(noise(100, 80), "PNG"), max_pixels=5000)  # up to 2x: Pillow warns
        with pytest.raises(UploadError, match=r"image is 200x80 = 16,000 pixels, over the 5,000 limit") as failed:
            read_image_upload(encode(noise(200, 80), "PNG"), max_pixels=5000)  # over 2x: Pillow raises
    assert isinstance(warned.value.__cause__, Image.DecompressionBombWarning)
    assert isinstance(failed.value.__cause__, Image.DecompressionBombError)
    assert Image.MAX_IMAGE_PIXELS == kept
    assert read_image_upload(encode(noise(100, 50), "PNG"), max_pixels=5000).size == (100, 50)  # at the limit


PEAK = """
import resource, sys
from cifar_core.data.uploads import read_image_upload
from cifar_core.errors import UploadError

def rss_mb(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) / 1024

data = open(sys.argv[1], "rb").read()
before = rss_mb("VmRSS")  # resident now, everything imported and the file read
try:
    print("accepted %dx%d" % read_image_upload(data).size)
except UploadError as e:
    print("refused: %s" % e)
print(rss_mb("VmHWM") - before)  # the peak resident size during the upload, over what was resident before
"""


@pytest.mark.parametrize("kind", ["two-ihdr", "PNG", "JPEG"])
def test_peak_memory_of_an_upload_stays_under_300_mb(two_ihdr, tmp_path, kind):
    """In a fresh process: the refused two-IHDR PNG, and accepted uploads at the pixel limit
    (4096x4096, under 5 MB) each grow the resident size by less than 300 MB."""
    if kind == "two-ihdr":
        path, expected = two_ihdr, "refused: image is 12000x12000"
    else:
        y, x = np.mgrid[0:4096, 0:4096]
        pixels = np.stack([(x // 16) % 256, (y // 16) % 256, ((x + y) // 32) % 256], -1).astype(np.uint8)
        path, expected = tmp_path / f"big.{kind.lower()}", "accepted 4096x4096"
        path.write_bytes(encode(Image.fromarray(pixels), kind))
        assert path.stat().st_size <= 5_000_000
    proc = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    outcome, grown = proc.stdout.strip().splitlines()
    assert outcome.startswith(expected), outcome
    assert float(grown) < 300, f"{kind}: resident size grew {float(grown):.0f} MB"


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


def test_progressive_jpeg_with_exif_rotation_is_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned, display rotated 90 degrees clockwise
    data = encode(noise(40, 20), "JPEG", progressive=True, exif=exif.tobytes())
    up = read_image_upload(data)
    assert up.size == (20, 40) and up.original.shape == (40, 20, 3)
