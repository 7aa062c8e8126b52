"""The high-bit-depth policy on PNGs: --window for 16-bit sources, 8-bit never re-windowed, --dtype uint16."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import xraycache
from xraycache.core.options import ResizeOptions
from xraycache.core.pixels import pixel_hist
from xraycache.imaging.decoders import pillow


def decode_image(data: bytes, spec: ResizeOptions) -> tuple[np.ndarray, int, int, str, dict[str, Any]]:
    """The JPEG/PNG plugin's result as (pixels, width, height, mode, provenance)."""
    decoded = pillow.decode(data, spec)
    return decoded.pixels, decoded.width, decoded.height, decoded.mode, decoded.info


SIDE = 16


def png16(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def png8(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def known16() -> np.ndarray:
    """SIDE x SIDE 16-bit values 1000..60000 in a ramp, with one dead (0) and one hot (65535) pixel."""
    values = np.linspace(1000, 60000, SIDE * SIDE).round().reshape(SIDE, SIDE)
    values[0, 0], values[-1, -1] = 0, 65535
    return values.astype(np.uint16)


def expected(values: np.ndarray, low: float, high: float, top: int) -> np.ndarray:
    unit = np.clip((values.astype(np.float64) - low) / (high - low), 0, 1)
    return np.clip(unit * top + 0.5, 0, top).astype(np.uint16 if top > 255 else np.uint8)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_sixteen_bit_png_minmax_and_percentile(dtype: str) -> None:
    values = known16()
    top = 65535 if dtype == "uint16" else 255
    pixels, _, _, mode, info = decode_image(png16(values), ResizeOptions(size=SIDE, window="minmax", dtype=dtype))  # type: ignore[arg-type]
    assert mode.startswith("I") and pixels.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(pixels, expected(values, 0, 65535, top))
    assert info["window"] == "minmax 0-65535" and info["bits_stored"] == 16
    for window in ("auto", "percentile", "dicom"):  # a PNG has no VOI: auto and dicom mean percentile
        pixels, _, _, _, info = decode_image(png16(values), ResizeOptions(size=SIDE, window=window, dtype=dtype))  # type: ignore[arg-type]
        low, high = np.percentile(values.astype(np.float64), (0.5, 99.5))
        np.testing.assert_array_equal(pixels, expected(values, low, high, top))
        assert str(info["window"]).startswith("percentile")
        assert pixels[0, 0] == 0 and pixels[-1, -1] == top  # the dead and hot pixel are clipped


@pytest.mark.parametrize("window", ["auto", "minmax", "percentile", "dicom"])
def test_eight_bit_sources_are_never_rewindowed(window: str) -> None:
    values = np.tile(np.arange(100, 116, dtype=np.uint8), (SIDE, 1))  # low contrast: 100..115
    pixels, _, _, _, info = decode_image(png8(values), ResizeOptions(size=SIDE, window=window))  # type: ignore[arg-type]
    np.testing.assert_array_equal(pixels, values)
    assert info["window"] == "none (8-bit)"
    wide, *_ = decode_image(png8(values), ResizeOptions(size=SIDE, window=window, dtype="uint16"))  # type: ignore[arg-type]
    np.testing.assert_array_equal(wide, values.astype(np.uint16) * 257)


def test_uint16_histogram_bins_by_high_byte() -> None:
    pixels = np.array([[0, 255, 256, 65535]], dtype=np.uint16)
    hist = pixel_hist(pixels)
    assert hist.shape == (256,) and hist[0] == 2 and hist[1] == 1 and hist[255] == 1


def test_build_uint16_cache(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, split in enumerate(("train", "train", "test")):
        folder = src / split / "NORMAL"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IM-{i:04d}-0001.png").write_bytes(png16(known16()))
    (src / "train/NORMAL/IM-0009-0001.png").write_bytes(png8(np.full((SIDE, SIDE), 200)))
    out = tmp_path / "c.h5"
    xraycache.build(src, out, size=SIDE, jobs=1, dtype="uint16", window="minmax")
    with xraycache.open(out) as cache:
        train = cache["train"]
        images, _ = train.load(channels=None, label_dtype=None)
        assert images.dtype == np.uint16
        np.testing.assert_array_equal(images[0], expected(known16(), 0, 65535, 65535))
        np.testing.assert_array_equal(images[2], np.full((SIDE, SIDE), 200 * 257))
        assert list(train.meta["max"]) == [65535, 65535, 200 * 257] and train.meta["max"].dtype == np.uint16
        assert list(train.meta["window"]) == ["minmax 0-65535", "minmax 0-65535", "none (8-bit)"]
        batch, _ = next(train.batches(8, shuffle=False, dtype="float32"))
        assert batch.max() == pytest.approx(1.0) and batch[2].mean() == pytest.approx(200 / 255)
        with pytest.raises(xraycache.InputError, match="without wrapping"):  # uint8 would wrap 16-bit values
            next(train.batches(8, dtype="uint8"))
        mean, std = train.pixel_mean_std()  # in stored (16-bit) units
        assert mean == pytest.approx(images.astype(np.float64).mean(), rel=1e-5)
        assert std == pytest.approx(images.astype(np.float64).std(), rel=1e-4)
        group = train._group()
        assert group["stats/hist"].attrs["bin_width"] == 256 and group["stats/hist"][:].sum() == 3 * SIDE * SIDE
        assert cache.attrs["dtype"] == "uint16"
