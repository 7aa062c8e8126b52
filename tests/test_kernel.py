"""The compiled kernel and the NumPy fallback: the same bytes on every image, and CI runs the compiled one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import radiograph

from xraycache.builder.old_cache import settings_diff
from xraycache.core.options import RESIZE_ARITHMETIC, BuildOptions, ResizeOptions
from xraycache.core.pixels import pixel_hist
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


needs_compiled = pytest.mark.skipif(
    not _built(),
    reason="the compiled kernel is not in the xraycache under test: `pip install -e '.[test]'` builds it in the tree",
)


def test_compiled_kernel_is_in_use_where_required() -> None:
    """CI sets XRAYCACHE_REQUIRE_KERNEL=1: a build that silently fell back to NumPy fails here."""
    if os.environ.get(kernel.REQUIRE_ENV, "") in ("", "0"):
        pytest.skip(f"{kernel.REQUIRE_ENV} is not set")
    assert kernel.compiled is not None
    assert kernel.kernel_name().startswith(kernel.COMPILED)


def _kernel_in_subprocess(**env: str) -> str:
    code = "from xraycache.imaging import kernel; print(kernel.kernel_name())"
    environ = {k: v for k, v in os.environ.items() if k not in (kernel.FORCE_ENV, kernel.REQUIRE_ENV)}
    return subprocess.run(
        [sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_environment_forces_the_numpy_kernel() -> None:
    assert _kernel_in_subprocess(**{kernel.FORCE_ENV: "numpy"}) == kernel.NUMPY
    expected = kernel.COMPILED if kernel.compiled is not None or os.environ.get(kernel.FORCE_ENV) else kernel.NUMPY
    assert _kernel_in_subprocess().startswith(expected)


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


@pytest.fixture
def simd(request: pytest.FixtureRequest) -> Iterator[str]:
    """The compiled kernel's AVX2 passes on (where the CPU has AVX2) or off, for one test; restored after."""
    from xraycache.imaging import _kernel  # type: ignore[attr-defined]

    level = _kernel.set_simd(request.param)
    if request.param and level != "AVX2":
        pytest.skip("this CPU has no AVX2")
    yield level
    _kernel.set_simd(True)


@needs_compiled
@pytest.mark.parametrize("simd", [True, False], indirect=True, ids=["avx2", "plain-c"])
@pytest.mark.parametrize("seed", range(4))
def test_both_kernels_give_the_same_bytes(seed: int, simd: str) -> None:
    """NumPy, and the compiled kernel with its AVX2 passes and with its plain loops: the same bytes."""
    for pixels, size, box in _random_cases(60, seed):
        compiled = area_resize(pixels, size, box, compiled=True)
        fallback = area_resize(pixels, size, box, compiled=False)
        assert compiled.dtype == fallback.dtype == np.uint8
        assert compiled.shape == fallback.shape == (size[1], size[0])
        assert np.array_equal(compiled, fallback), (pixels.shape, size, box)


@needs_compiled
@pytest.mark.parametrize("simd", [True, False], indirect=True, ids=["avx2", "plain-c"])
def test_many_taps_and_ragged_widths_agree(simd: str) -> None:
    """Ratios beyond the AVX2 passes' 64 taps (the plain loops take those), and widths that leave a tail
    of fewer than 16 values, the AVX2 passes' unit."""
    rng = np.random.default_rng(11)
    cases = (((4000, 300), (31, 5)), ((97, 4099), (3, 17)), ((33, 47), (16, 16)), ((513, 511), (255, 17)))
    cases += (((100, 2000), (100, 50)),)  # 21 column taps: past the fused passes, within the two-pass ones
    for shape, size in cases:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        assert np.array_equal(area_resize(pixels, size, compiled=True), area_resize(pixels, size, compiled=False))


@needs_compiled
@pytest.mark.parametrize("simd", [True, False], indirect=True, ids=["avx2", "plain-c"])
def test_tables_the_resize_does_not_make_still_agree(simd: str) -> None:
    """Column taps that are not contiguous (no resize makes them; a caller could) leave the fused passes
    for the general ones, with the same result as NumPy's."""
    from xraycache.imaging import _kernel  # type: ignore[attr-defined]

    pixels = np.random.default_rng(2).integers(0, 256, (40, 60), dtype=np.uint8)
    rows = resize._fixed_taps(40, 10, 0.0, 40.0)
    index = np.array([[0, 10, 20, 30], [5, 59, 1, 33]], dtype=np.int32)  # jumps between a column's taps
    weights = np.array([[8192, 16384, 0, 4096], [8192, 0, 16384, 12288]], dtype=np.int32)
    out = np.empty((10, 4), np.uint8)
    _kernel.area_u8(pixels, 40, 60, *rows, len(rows[0]), index, weights, 2, out, 10, 4)
    assert np.array_equal(out, resize._area_numpy(pixels, rows, (index, weights)))


@needs_compiled
def test_compiled_tables_are_numpys_to_the_bit() -> None:
    """The kernel computes each image's tables (NumPy's cache rarely hits: radiographs come in hundreds of
    sizes) with NumPy's float64 operations in NumPy's order: the same integers, crops included."""
    from xraycache.imaging import _kernel  # type: ignore[attr-defined]

    rng = np.random.default_rng(8)
    cases = [(n, m, 0.0, float(n)) for n in (1, 2, 255, 256, 257, 993, 1468, 10000) for m in (1, 3, 256, 300, 2000)]
    for _ in range(400):
        n, m = int(rng.integers(1, 5000)), int(rng.integers(1, 600))
        start = float(rng.uniform(0, n / 3))
        cases.append((n, m, start, float(rng.uniform(start + 0.5, n)) if n > start + 0.5 else float(n)))
    for n, m, start, stop in cases:
        compiled = resize._compiled_taps(_kernel, n, m, start, stop)
        numpy = resize._fixed_taps.__wrapped__(n, m, start, stop)
        assert np.array_equal(compiled[0], numpy[0]) and np.array_equal(compiled[1], numpy[1]), (n, m, start, stop)
    with pytest.raises(ValueError):
        _kernel.fixed_taps(10, 5, 4.0, 3.0)  # an empty range


def _in_place(image: object, spec: ResizeOptions) -> np.ndarray | None:
    """``resize``'s in-place path for ``image`` with the geometry ``resize`` gives it (None: not taken)."""
    size, box = resize.fit_box(*image.size, spec)  # type: ignore[attr-defined]
    return resize._resize_in_place(image, size, box, spec)  # type: ignore[arg-type]


@needs_compiled
def test_a_pillow_image_is_resized_in_place_with_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled kernel reads an L image's memory through Pillow's Arrow export, no NumPy copy; the
    result equals the copy's, for every fit, and images Pillow cannot export take the copy."""
    from PIL import Image

    from xraycache.imaging import _kernel  # type: ignore[attr-defined]

    monkeypatch.setattr(kernel, "compiled", _kernel)
    foreign = Image.fromarray(radiograph(700, 530, 3))  # over NumPy's memory: read-only, never exported
    assert foreign.readonly and _in_place(foreign, ResizeOptions(size=96)) is None
    image = foreign.copy()  # Pillow's own memory, as every decoded image
    if not hasattr(image, "__arrow_c_array__"):
        pytest.skip("this Pillow has no Arrow export")
    for fit in ("stretch", "pad", "crop"):
        spec = ResizeOptions(size=96, fit=fit)
        assert _in_place(image, spec) is not None  # the in-place path ran
        assert np.array_equal(resize.resize(image, spec), resize.resize(np.asarray(image), spec))

    class Unexported(Image.Image):
        def __arrow_c_array__(self, requested_schema: object = None) -> tuple[object, object]:
            raise ValueError("Image is in multiple array blocks")

    blocks = image.copy()
    blocks.__class__ = Unexported
    spec = ResizeOptions(size=96)
    assert _in_place(blocks, spec) is None
    assert np.array_equal(resize.resize(blocks, spec), resize.resize(np.asarray(image), spec))
    assert _in_place(image.convert("RGB"), spec) is None  # not L: the caller converts first
    assert _in_place(image, ResizeOptions(size=96, filter="lanczos")) is None
    monkeypatch.setattr(kernel, "compiled", None)
    assert _in_place(image, spec) is None


@needs_compiled
def test_padded_pillow_rows_take_the_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """With PILLOW_ALIGNMENT set, Pillow pads rows but its export still says width x height values: the
    in-place path stands aside and the result is the copy's."""
    from PIL import Image

    from xraycache.imaging import _kernel  # type: ignore[attr-defined]

    if not hasattr(Image.core, "set_alignment"):
        pytest.skip("this Pillow has no row alignment setting")
    monkeypatch.setattr(kernel, "compiled", _kernel)
    previous = Image.core.get_alignment()
    Image.core.set_alignment(64)
    try:
        image = Image.fromarray(radiograph(301, 257, 5)).copy()
        spec = ResizeOptions(size=64)
        assert _in_place(image, spec) is None
        assert np.array_equal(resize.resize(image, spec), resize.resize(np.asarray(image), spec))
    finally:
        Image.core.set_alignment(previous)


@needs_compiled
def test_the_kernel_refuses_sizes_and_tables_it_cannot_take() -> None:
    """Sizes whose products would overflow, and weights that do not sum to one per cell, are refused with
    a ValueError before any pixel is read; boxes reaching outside the image take NumPy's tables."""
    from xraycache.imaging import _kernel  # type: ignore[attr-defined]

    one = np.zeros((1, 1), np.int32)
    with pytest.raises(ValueError, match="below 2"):
        _kernel.area_u8(b"", 1 << 62, 4, one, one, 1, one, one, 1, np.zeros((1, 1), np.uint8), 1, 1)
    with pytest.raises(ValueError, match="below 2"):
        _kernel.descriptor_u8(b"", 1 << 59, 32, np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError):
        _kernel.fixed_taps(1 << 62, 1, 0.0, 2.0**62)
    pixels = np.full((4, 4), 255, np.uint8)
    index = np.array([[0, 1], [2, 3]], np.int32)
    heavy = np.full((2, 2), 1 << 14, np.int32)  # two full weights per cell: sums of 2.0
    with pytest.raises(ValueError, match="sum"):
        _kernel.area_u8(pixels, 4, 4, index, heavy, 2, index, heavy, 2, np.zeros((2, 2), np.uint8), 2, 2)
    image = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    for box in ((-0.5, 0.0, 8.0, 8.0), (0.0, 0.0, 9.5, 8.0)):
        assert np.array_equal(
            area_resize(image, (4, 4), box, compiled=True), area_resize(image, (4, 4), box, compiled=False)
        )


def test_a_stale_compiled_kernel_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module left from an older build (its rebuild failed; the extension is optional) lacks functions
    this code calls: it is not used, rather than failing on every image; with REQUIRE it is an error."""
    import types

    stale = types.ModuleType("xraycache.imaging._kernel")
    stale.area_u8 = stale.hist_u8 = lambda *args: None  # type: ignore[attr-defined]
    import xraycache.imaging

    monkeypatch.setitem(sys.modules, "xraycache.imaging._kernel", stale)
    monkeypatch.setattr(xraycache.imaging, "_kernel", stale, raising=False)
    monkeypatch.delenv(kernel.FORCE_ENV, raising=False)
    monkeypatch.delenv(kernel.REQUIRE_ENV, raising=False)
    assert kernel._load() is None
    monkeypatch.setenv(kernel.REQUIRE_ENV, "1")
    with pytest.raises(ImportError, match="out of date"):
        kernel._load()


@needs_compiled
def test_the_kernel_refuses_arrow_arrays_that_do_not_fit() -> None:
    """Capsules of another type or length are refused with a ValueError, never read past their end."""
    from PIL import Image

    from xraycache.imaging import _kernel  # type: ignore[attr-defined]

    gray = Image.fromarray(radiograph(40, 30, 1)).copy()
    if not hasattr(gray, "__arrow_c_array__"):
        pytest.skip("this Pillow has no Arrow export")
    rows = resize._fixed_taps(30, 8, 0.0, 30.0)
    cols = resize._fixed_taps(40, 8, 0.0, 40.0)
    out = np.empty((8, 8), np.uint8)

    def call(source: object) -> None:
        _kernel.area_u8(source, 30, 40, *rows, len(rows[0]), *cols, len(cols[0]), out, 8, 8)

    call(gray.__arrow_c_array__())
    wider = resize._fixed_taps(41, 8, 0.0, 41.0)
    with pytest.raises(ValueError, match="Arrow array of 1200 values, expected 1230"):
        _kernel.area_u8(gray.__arrow_c_array__(), 30, 41, *rows, len(rows[0]), *wider, len(wider[0]), out, 8, 8)
    with pytest.raises(ValueError, match="not a live Arrow array of uint8"):
        call(Image.new("RGB", (40, 30)).__arrow_c_array__())
    schema, array = gray.__arrow_c_array__()
    with pytest.raises(ValueError):
        call((array, schema))  # capsules swapped: the names do not match


@needs_compiled
def test_compiled_descriptor_matches_the_core() -> None:
    from xraycache.core.pixels import pixel_descriptor

    rng = np.random.default_rng(4)
    for shape in ((256, 256), (32, 32), (64, 512), (1024, 96)):
        for pixels in (rng.integers(0, 256, shape, dtype=np.uint8), np.full(shape, 255, np.uint8)):
            assert np.array_equal(resize.descriptor(pixels, compiled=True), pixel_descriptor(pixels))
    odd = rng.integers(0, 256, (100, 70), dtype=np.uint8)  # not multiples of 32: the core's float path
    assert np.array_equal(resize.descriptor(odd, compiled=True), pixel_descriptor(odd))


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
