"""Decoding and resizing one image: fidelity, fits, colour and bit-depth policies, bad input."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from xraycache.core.errors import DecodeError
from xraycache.core.options import ResizeOptions
from xraycache.imaging import kernel
from xraycache.imaging.decoders import pillow
from xraycache.imaging.resize import area_resize


def decode_bytes(data: bytes, spec: ResizeOptions) -> tuple[np.ndarray, int, int, str]:
    """The JPEG/PNG plugin's result as (pixels, width, height, mode)."""
    decoded = pillow.decode(data, spec)
    return decoded.pixels, decoded.width, decoded.height, decoded.mode


SIZE = 128


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Exact area-average weights in float64: output cell i covers [i, i+1) * n_in / n_out."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    j = np.arange(n_in)[None, :]
    weights = np.clip(np.minimum(edges[1:, None], j + 1) - np.maximum(edges[:-1, None], j), 0, None)
    return weights / weights.sum(1, keepdims=True)


def area_reference(pixels: np.ndarray, size: int) -> np.ndarray:
    return area_matrix(pixels.shape[0], size) @ pixels.astype(np.float64) @ area_matrix(pixels.shape[1], size).T


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean((image.astype(np.float64) - reference) ** 2))
    return 10 * np.log10(255**2 / mse)


def stripes_and_edges(width: int, height: int, seed: int) -> np.ndarray:
    """Fine oriented stripes (period 2.5-6 px), a bright rectangle and a checkerboard: aliasing bait."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    angle, period = rng.uniform(0, np.pi), rng.uniform(2.5, 6.0)
    img = 128 + 60 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    img[height // 4 : height // 2, width // 5 : width // 2] += 50
    img += 30 * ((xx // 7 + yy // 11) % 2)
    return np.clip(img, 0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    (image if mode == "L" else image.convert(mode)).save(buffer, format="PNG")
    return buffer.getvalue()


FACTORS = (2.0, 2.7, 3.5, 5.0, 7.3, 10.0)


def test_stretch_fidelity_against_exact_area_average() -> None:
    """Worst pattern >= 40 dB for the tool, while the notebook's cv2.resize (bilinear) falls well below."""
    ours, notebook = [], []
    for seed, factor in enumerate(FACTORS):
        pixels = stripes_and_edges(int(SIZE * factor), int(SIZE * factor * 0.8), seed)
        reference = area_reference(pixels, SIZE)
        out = decode_bytes(png_bytes(pixels), ResizeOptions(size=SIZE))[0]
        assert out.shape == (SIZE, SIZE) and out.dtype == np.uint8
        ours.append(psnr(out, reference))
        notebook.append(psnr(cv2.resize(pixels, (SIZE, SIZE)), reference))
    assert min(ours) >= 40.0, ours
    assert min(notebook) < 30.0, notebook


@pytest.mark.parametrize("compiled", [True, False] if kernel.compiled is not None else [False])
def test_area_resize_is_exact_up_to_rounding(compiled: bool) -> None:
    """Rounding (0.5) plus the fixed point's own error: weights to 2^-14 of 255 per tap, 2^-8 in between."""
    pixels = np.random.default_rng(1).integers(0, 256, (301, 457), dtype=np.uint8)
    out = area_resize(pixels, (64, 50), compiled=compiled)
    reference = area_matrix(301, 50) @ pixels.astype(np.float64) @ area_matrix(457, 64).T
    assert out.shape == (50, 64)
    taps = 2 * (math.ceil(457 / 64) + 1)
    assert np.abs(out - reference).max() <= 0.5 + 255 * taps * 2.0**-15 + 2.0**-8


def test_area_resize_box_selects_region() -> None:
    pixels = np.zeros((100, 200), dtype=np.uint8)
    pixels[:, 50:150] = 200
    out = area_resize(pixels, (10, 10), box=(50.0, 0.0, 150.0, 100.0))
    assert np.all(out == 200)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_rgb_is_converted_with_itu_601_luma(fmt: str) -> None:
    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format=fmt, quality=100)
    out, width, height, mode = decode_bytes(buffer.getvalue(), ResizeOptions(size=16))
    expected = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    assert mode == "RGB" and (width, height) == (64, 64)
    assert abs(float(out.mean()) - expected) < 2.0


def test_pad_letterboxes_with_zero_and_keeps_aspect() -> None:
    pixels = np.full((100, 400), 180, dtype=np.uint8)
    out = decode_bytes(png_bytes(pixels), ResizeOptions(size=64, fit="pad"))[0]
    assert out.shape == (64, 64)
    assert np.all(out[:24] == 0) and np.all(out[-24:] == 0)  # 64 * 100/400 = 16 rows of image
    assert np.all(out[24:40] == 180)


def test_crop_takes_the_centre_square() -> None:
    pixels = np.zeros((100, 300), dtype=np.uint8)
    pixels[:, 100:200] = 255
    out = decode_bytes(png_bytes(pixels), ResizeOptions(size=50, fit="crop"))[0]
    assert np.all(out == 255)


def test_exif_orientation_is_applied() -> None:
    pixels = np.zeros((60, 120), dtype=np.uint8)
    pixels[:, :60] = 255  # left half bright
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    out, width, height, _ = decode_bytes(buffer.getvalue(), ResizeOptions(size=32, fit="pad"))
    assert (width, height) == (60, 120)  # the upright image is portrait
    image_columns = out[:, 8:24]  # pad: the 16 px wide portrait image sits in the middle
    assert image_columns[:16].mean() > 200 and image_columns[16:].mean() < 50  # bright half on top


def test_sixteen_bit_png_is_windowed_to_8_bits() -> None:
    ramp = np.tile(np.linspace(1000, 5000, 200), (50, 1)).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    out, _, _, mode = decode_bytes(buffer.getvalue(), ResizeOptions(size=50, fit="stretch"))
    assert mode.startswith("I")
    assert out.min() <= 2 and out.max() >= 253  # the full 8-bit range is used
    assert np.all(np.diff(out.astype(int), axis=1) >= 0)  # monotonic ramp stays monotonic


def test_small_sources_are_upsampled() -> None:
    out = decode_bytes(png_bytes(np.full((20, 30), 90, dtype=np.uint8)), ResizeOptions(size=64))[0]
    assert out.shape == (64, 64) and np.all(out == 90)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"\x00" * 100, "not a JPEG or PNG"),
        (b"GIF89a" + b"\x00" * 50, "not a JPEG or PNG"),
    ],
)
def test_non_images_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_bytes(data, ResizeOptions())


def test_truncated_jpeg_is_refused() -> None:
    buffer = io.BytesIO()
    Image.fromarray(stripes_and_edges(300, 300, 0)).save(buffer, format="JPEG")
    with pytest.raises(DecodeError, match="corrupt or truncated"):
        decode_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2], ResizeOptions())


def test_pixel_limit_refuses_before_decoding() -> None:
    data = png_bytes(np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(DecodeError, match="over the pixel limit"):
        decode_bytes(data, ResizeOptions(max_pixels=9_999))
