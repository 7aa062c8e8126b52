"""The compiled kernel and the NumPy fallback: the same bytes on every image, and CI runs the compiled one."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import radiograph

from xraycache.builder.plan import settings_diff
from xraycache.core.format import pixel_hist
from xraycache.core.options import RESIZE_ARITHMETIC, BuildOptions, ResizeOptions
from xraycache.imaging import kernel, resize
from xraycache.imaging.decoders import pillow
from xraycache.imaging.resize import area_resize, histogram


def _built() -> bool:
    """Whether the compiled kernel is importable (also when XRAYCACHE_KERNEL=numpy makes NumPy the default)."""
    try:
        from xraycache.imaging import _kernel  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


needs_compiled = pytest.mark.skipif(not _built(), reason="the compiled kernel is not built here")


def test_compiled_kernel_is_in_use_where_required() -> None:
    """CI sets XRAYCACHE_REQUIRE_KERNEL=1: a build that silently fell back to NumPy fails here."""
    if os.environ.get(kernel.REQUIRE_ENV, "") in ("", "0"):
        pytest.skip(f"{kernel.REQUIRE_ENV} is not set")
    assert kernel.compiled is not None
    assert kernel.kernel_name() == kernel.COMPILED


def _kernel_in_subprocess(**env: str) -> str:
    code = "from xraycache.imaging import kernel; print(kernel.kernel_name())"
    environ = {k: v for k, v in os.environ.items() if k not in (kernel.FORCE_ENV, kernel.REQUIRE_ENV)}
    return subprocess.run(
        [sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_environment_forces_the_numpy_kernel() -> None:
    assert _kernel_in_subprocess(**{kernel.FORCE_ENV: "numpy"}) == kernel.NUMPY
    expected = kernel.COMPILED if kernel.compiled is not None or os.environ.get(kernel.FORCE_ENV) else kernel.NUMPY
    assert _kernel_in_subprocess() == expected


def test_version_names_the_kernel() -> None:
    from typer.testing import CliRunner

    from xraycache.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert f"resize kernel: {kernel.kernel_name()}" in result.output


def _random_cases(n: int, seed: int) -> list[tuple[np.ndarray, tuple[int, int], tuple[float, float, float, float]]]:
    """Random images of many sizes and aspect ratios, outputs from tiny to upscaled, boxes (crops) too."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        height, width = (int(v) for v in rng.integers(1, 900, 2))
        out = (int(rng.integers(1, 300)), int(rng.integers(1, 300)))
        kind = rng.random()
        if kind < 0.6:
            pixels = rng.integers(0, 256, (height, width), dtype=np.uint8)  # noise: every rounding case
        else:
            pixels = radiograph(width, height, seed * 1000 + i)
        box = (0.0, 0.0, float(width), float(height))
        if i % 4 == 0:  # a fractional crop, as fit=crop makes
            left, top = rng.uniform(0, width / 3), rng.uniform(0, height / 3)
            box = (left, top, rng.uniform(left + 0.5, width), rng.uniform(top + 0.5, height))
        cases.append((pixels, out, box))
    return cases


@needs_compiled
@pytest.mark.parametrize("seed", range(4))
def test_both_kernels_give_the_same_bytes(seed: int) -> None:
    for pixels, size, box in _random_cases(60, seed):
        compiled = area_resize(pixels, size, box, compiled=True)
        fallback = area_resize(pixels, size, box, compiled=False)
        assert compiled.dtype == fallback.dtype == np.uint8
        assert compiled.shape == fallback.shape == (size[1], size[0])
        assert np.array_equal(compiled, fallback), (pixels.shape, size, box)


@needs_compiled
@pytest.mark.parametrize("shape", [(1, 1), (1, 700), (700, 1), (3, 5000), (4096, 2)])
def test_both_kernels_agree_on_extreme_shapes(shape: tuple[int, int]) -> None:
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    for size in ((1, 1), (7, 3), (256, 256)):
        assert np.array_equal(area_resize(pixels, size, compiled=True), area_resize(pixels, size, compiled=False))


@needs_compiled
@pytest.mark.parametrize("fit", ["stretch", "pad", "crop"])
def test_decoded_images_are_the_same_with_either_kernel(fit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole JPEG path (draft decode, fit, resize, histogram) with the compiled kernel, then with NumPy."""
    import io

    from PIL import Image

    spec = ResizeOptions(size=96, fit=fit)
    for seed, (width, height) in enumerate([(1000, 800), (640, 1100), (333, 257), (2100, 1500)]):
        buffer = io.BytesIO()
        Image.fromarray(radiograph(width, height, seed)).save(buffer, format="JPEG", quality=90)
        from xraycache.imaging import _kernel  # type: ignore[attr-defined]

        monkeypatch.setattr(kernel, "compiled", _kernel)
        with_c = pillow.decode(buffer.getvalue(), spec).pixels
        monkeypatch.setattr(kernel, "compiled", None)
        with_numpy = pillow.decode(buffer.getvalue(), spec).pixels
        monkeypatch.undo()
        assert np.array_equal(with_c, with_numpy)


def test_a_flat_image_stays_flat() -> None:
    """Each cell's integer weights sum to exactly one: no drift of flat regions, at any ratio."""
    for value in (0, 1, 128, 254, 255):
        pixels = np.full((777, 531), value, dtype=np.uint8)
        for compiled in (False, True) if _built() else (False,):
            assert np.all(area_resize(pixels, (100, 37), compiled=compiled) == value)


def test_fixed_weights_are_exact_integers() -> None:
    for n_in, n_out in ((1180, 1), (1000, 256), (257, 256), (100, 300), (5, 5)):
        index, weights = resize._fixed_taps(n_in, n_out, 0.0, float(n_in))
        assert index.dtype == weights.dtype == np.int32
        assert weights.min() >= 0 and weights.max() <= 1 << resize.WEIGHT_BITS
        assert np.all(weights.sum(axis=0) == 1 << resize.WEIGHT_BITS)
        assert index.min() >= 0 and index.max() < n_in


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=needs_compiled)])
def test_histogram_matches_the_core(compiled: bool) -> None:
    rng = np.random.default_rng(5)
    for shape in ((256, 256), (1, 1), (3, 7), (0, 4)):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(histogram(pixels, compiled=compiled), pixel_hist(pixels))
    deep = rng.integers(0, 65536, (64, 64), dtype=np.uint16)
    assert np.array_equal(histogram(deep, compiled=compiled), pixel_hist(deep))


def test_the_arithmetic_is_recorded_and_an_older_cache_asks_for_overwrite() -> None:
    """Pixels made before the fixed point (no such attribute) are not mixed with new ones."""
    settings = BuildOptions().settings()
    assert settings["resize_arithmetic"] == RESIZE_ARITHMETIC
    older = {k: v for k, v in settings.items() if k != "resize_arithmetic"}
    assert any(d.startswith("resize_arithmetic") for d in settings_diff(older, settings))
    assert settings_diff(dict(settings), settings) == []


@needs_compiled
def test_the_kernel_refuses_bad_tables() -> None:
    from xraycache.imaging import _kernel  # type: ignore[attr-defined]

    pixels = np.zeros((4, 4), np.uint8)
    index = np.array([[0, 9]], np.int32)  # row 9 of a 4-row image
    weights = np.array([[1 << 14, 1 << 14]], np.int32)
    out = np.empty((2, 2), np.uint8)
    with pytest.raises(ValueError, match="out of range"):
        _kernel.area_u8(pixels, 4, 4, index, weights, 1, index * 0, weights, 1, out, 2, 2)
    with pytest.raises(ValueError, match="bytes"):
        _kernel.area_u8(pixels, 5, 4, index * 0, weights, 1, index * 0, weights, 1, out, 2, 2)
