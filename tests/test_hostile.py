"""Hostile input: every odd file a disk can hold is either decoded correctly or skipped with its reason.

Each case is made here, small and seeded. The build must never crash or hang, keep every good image,
and record each skipped file and why in ``/skipped``; ``--strict`` fails listing them.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import radiograph, write_image
from tests.test_crash import NOBODY, make_world_readable, needs_root, run_cli
from xraycache import build
from xraycache.cli import app
from xraycache.core.options import ResizeOptions
from xraycache.imaging.decode import decode_file

NORMAL = "train/NORMAL"
GOOD = [f"{NORMAL}/IM-{i:04d}-0001.jpeg" for i in range(3)] + [
    f"train/PNEUMONIA/person{i}_bacteria_{i}.jpeg" for i in range(3)
]
NON_UTF8 = os.fsdecode(b"IM-\xff\xfe-0001.jpeg")

# case -> (relative path, expected reason fragment, or None when it must be decoded)
SKIPPED = {
    "empty file": (f"{NORMAL}/empty.jpeg", "empty file"),
    "truncated JPEG": (f"{NORMAL}/truncated.jpeg", "truncated"),
    "random bytes": (f"{NORMAL}/random.jpeg", "not a JPEG or PNG image"),
    "decompression bomb": (f"{NORMAL}/bomb.png", "over the pixel limit"),
    "broken symlink": (f"{NORMAL}/broken-link.jpeg", "broken symlink"),
    "symlink loop a": (f"{NORMAL}/loop-a.jpeg", "symlink loop"),
    "symlink loop b": (f"{NORMAL}/loop-b.jpeg", "symlink loop"),
}
DECODED = [
    f"{NORMAL}/png-named.jpeg",
    f"{NORMAL}/cmyk.jpeg",
    f"{NORMAL}/sixteen.png",
    f"{NORMAL}/palette.png",
    f"{NORMAL}/la.png",
    f"{NORMAL}/exif6.jpeg",
    f"{NORMAL}/one.png",
    f"{NORMAL}/wide.jpeg",
    f"{NORMAL}/good-link.jpeg",
    f"{NORMAL}/{NON_UTF8}",
    f"{NORMAL}/IM 0002 copy.jpeg",
    f"{NORMAL}/UPPER.JPG",
    f"{NORMAL}/UPPER2.JPEG",
]
LITTER = [f"{NORMAL}/.DS_Store", f"{NORMAL}/._IM-0000-0001.jpeg", f"{NORMAL}/Thumbs.db"]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 9000) -> None:
    """A valid all-black ``side`` x ``side`` grayscale PNG of ~80 KB (81 MP: over the 64 MP limit)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )


def hostile_dataset(root: Path) -> Path:
    """Good images plus every hostile case of the policy (README), in a Kaggle layout under ``root/src``."""
    src = root / "src"
    folder = src / NORMAL
    for i, rel in enumerate(GOOD):
        write_image(src / rel, radiograph(300, 260, seed=i))
    good = (src / GOOD[0]).read_bytes()
    (folder / "empty.jpeg").write_bytes(b"")
    (folder / "truncated.jpeg").write_bytes(good[: len(good) // 2])
    (folder / "random.jpeg").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    write_image(folder / "png-named.jpeg", radiograph(200, 220, 3), fmt="PNG")
    Image.fromarray(radiograph(240, 200, 4)).convert("CMYK").save(folder / "cmyk.jpeg", "JPEG", quality=95)
    Image.fromarray(radiograph(220, 200, 5).astype(np.uint16) * 200 + 1000).save(folder / "sixteen.png")
    Image.fromarray(radiograph(200, 200, 6)).convert("P").save(folder / "palette.png")
    Image.fromarray(radiograph(200, 200, 7)).convert("LA").save(folder / "la.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    Image.fromarray(exif_source()).save(folder / "exif6.jpeg", quality=95, exif=exif.tobytes())
    Image.fromarray(np.array([[200]], dtype=np.uint8)).save(folder / "one.png")
    write_image(folder / "wide.jpeg", radiograph(5000, 50, 9))
    bomb_png(folder / "bomb.png")
    os.symlink("does-not-exist.jpeg", folder / "broken-link.jpeg")
    os.symlink("loop-b.jpeg", folder / "loop-a.jpeg")
    os.symlink("loop-a.jpeg", folder / "loop-b.jpeg")
    os.symlink("..", folder / "dir-loop")  # a directory symlink: not followed
    os.symlink(src, src / "train" / "again")  # ... and one back to the root
    os.symlink("IM-0001-0001.jpeg", folder / "good-link.jpeg")  # a file symlink: followed
    write_image(Path(os.fsdecode(os.fsencode(folder) + b"/" + os.fsencode(NON_UTF8))), radiograph(200, 200, 11))
    write_image(folder / "IM 0002 copy.jpeg", radiograph(200, 200, 12))
    write_image(folder / "UPPER.JPG", radiograph(200, 200, 13))
    write_image(folder / "UPPER2.JPEG", radiograph(200, 200, 14))
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 100)
    (folder / "._IM-0000-0001.jpeg").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 100)  # AppleDouble
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 100)
    return src


def exif_source() -> np.ndarray:
    """300 x 150 (landscape) with a bright left third, so the orientation is visible."""
    pixels = np.full((150, 300), 40, dtype=np.uint8)
    pixels[:, :100] = 220
    return pixels


def stored(out: Path) -> dict[str, np.ndarray]:
    with h5py.File(out, "r") as handle:
        paths = handle["train/meta/path"].asstr()[:]
        return {str(p): handle["train/images"][i] for i, p in enumerate(paths)}


def meta(out: Path, column: str) -> dict[str, object]:
    with h5py.File(out, "r") as handle:
        paths = handle["train/meta/path"].asstr()[:]
        values = handle["train/meta"][column]
        values = values.asstr()[:] if h5py.check_string_dtype(values.dtype) else values[:]
        return dict(zip((str(p) for p in paths), values, strict=True))


def skipped(out: Path) -> dict[str, str]:
    with h5py.File(out, "r") as handle:
        group = handle["skipped"]
        return dict(zip(group["path"].asstr()[:], group["reason"].asstr()[:], strict=True))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hostile")
    src = hostile_dataset(root)
    out = root / "cache.h5"
    report = build(src, out, jobs=2, size=64)
    assert report.images == len(GOOD) + len(DECODED)
    return src, out


def test_every_case_is_decoded_or_skipped_with_its_reason(hostile: tuple[Path, Path]) -> None:
    _, out = hostile
    images = stored(out)
    escaped = f"{NORMAL}/IM-\\xff\\xfe-0001.jpeg"  # non-UTF-8 bytes kept as escapes (writer.storable_path)
    expected_decoded = {p if p != f"{NORMAL}/{NON_UTF8}" else escaped for p in DECODED} | set(GOOD)
    assert set(images) == expected_decoded  # no good image lost, nothing else taken
    reasons = skipped(out)
    assert set(reasons) == {path for path, _ in SKIPPED.values()}
    for case, (path, fragment) in SKIPPED.items():
        assert fragment in reasons[path], (case, reasons[path])
    for litter in LITTER:  # OS litter is never an image: neither decoded nor reported
        assert litter not in images and litter not in reasons
    assert not any("again" in p or "dir-loop" in p for p in [*images, *reasons])  # directory links not followed


def test_decoded_cases_follow_their_policies(hostile: tuple[Path, Path]) -> None:
    src, out = hostile
    images = stored(out)
    widths, heights, modes = meta(out, "width"), meta(out, "height"), meta(out, "mode")
    spec = ResizeOptions(size=64)
    # a PNG named .jpeg: decoded by content, same pixels as the PNG itself
    reference = src.parent / "reference"
    reference.mkdir(exist_ok=True)
    write_image(reference / "plain.png", radiograph(200, 220, 3), fmt="PNG")
    assert np.array_equal(images[f"{NORMAL}/png-named.jpeg"], decode_file(reference / "plain.png", spec).pixels)
    # CMYK: converted to RGB then luma; close to the gray original (JPEG-lossy)
    write_image(reference / "gray.png", radiograph(240, 200, 4), fmt="PNG")
    gray = decode_file(reference / "gray.png", spec).pixels.astype(int)
    assert modes[f"{NORMAL}/cmyk.jpeg"] == "CMYK"
    assert np.abs(images[f"{NORMAL}/cmyk.jpeg"].astype(int) - gray).mean() < 4
    # 16-bit PNG: windowed to its 0.5-99.5 percentile, so it spans the 8-bit range
    sixteen = images[f"{NORMAL}/sixteen.png"]
    assert modes[f"{NORMAL}/sixteen.png"].startswith("I")
    assert sixteen.min() <= 5 and sixteen.max() >= 250
    # palette and LA: their gray values, alpha dropped
    write_image(reference / "six.png", radiograph(200, 200, 6), fmt="PNG")
    six = decode_file(reference / "six.png", spec).pixels.astype(int)
    assert np.abs(images[f"{NORMAL}/palette.png"].astype(int) - six).mean() < 3
    write_image(reference / "seven.png", radiograph(200, 200, 7), fmt="PNG")
    seven = decode_file(reference / "seven.png", spec).pixels
    assert np.array_equal(images[f"{NORMAL}/la.png"], seven)
    # EXIF orientation 6 applied: stored 300 x 150, recorded and stored as 150 x 300 turned clockwise
    assert (widths[f"{NORMAL}/exif6.jpeg"], heights[f"{NORMAL}/exif6.jpeg"]) == (150, 300)
    Image.fromarray(np.rot90(exif_source(), k=-1).copy()).save(reference / "turned.png")
    turned = decode_file(reference / "turned.png", spec).pixels.astype(int)
    assert np.abs(images[f"{NORMAL}/exif6.jpeg"].astype(int) - turned).mean() < 4
    # 1 x 1 and 5000 x 50: decoded (stretched to the square, as every image)
    assert (images[f"{NORMAL}/one.png"] == 200).all()
    assert (widths[f"{NORMAL}/wide.jpeg"], heights[f"{NORMAL}/wide.jpeg"]) == (5000, 50)
    # a file symlink is followed: the same pixels as its target
    assert np.array_equal(images[f"{NORMAL}/good-link.jpeg"], images[f"{NORMAL}/IM-0001-0001.jpeg"])


def test_incremental_rebuild_of_hostile_folder_is_unchanged(hostile: tuple[Path, Path]) -> None:
    src, out = hostile
    before = out.stat().st_mtime_ns
    report = build(src, out, jobs=2, size=64)
    assert report.mode == "unchanged"
    assert out.stat().st_mtime_ns == before


def test_strict_fails_with_the_list(hostile: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = hostile
    out = tmp_path / "strict.h5"
    result = CliRunner().invoke(app, ["build", str(src), str(out), "--strict", "-q", "-j", "1", "--size", "32"])
    assert result.exit_code == 1
    assert "--strict: 7 file(s) could not be taken" in result.output
    assert "train/NORMAL/bomb.png" in result.output
    assert not out.exists()


def test_cli_summary_prints_non_utf8_names(hostile: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = hostile
    result = CliRunner().invoke(app, ["build", str(src), str(tmp_path / "c.h5"), "-j", "1", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert "skipped 7 file(s)" in result.output


@needs_root
def test_unreadable_file_is_skipped_with_permission_reason(world: Path) -> None:
    src = world / "src"
    for i, rel in enumerate(GOOD):
        write_image(src / rel, radiograph(120, 100, seed=i))
    write_image(src / NORMAL / "secret.jpeg", radiograph(120, 100, seed=9))
    make_world_readable(world)
    (src / NORMAL / "secret.jpeg").chmod(0o000)
    outdir = world / "out"
    outdir.mkdir()
    os.chown(outdir, NOBODY, NOBODY)
    out = outdir / "c.h5"
    result = run_cli(["build", str(src), str(out), "-q", "-j", "1", "--size", "32"], nobody=True)
    assert result.returncode == 0, result.stderr
    reasons = skipped(out)
    assert reasons == {f"{NORMAL}/secret.jpeg": "cannot read file: Permission denied"}
    assert len(stored(out)) == len(GOOD)
