"""Fuzz the decode and scan entry points with hypothesis for a wall-clock budget (not part of CI).

    pip install hypothesis && python tools/fuzz.py --minutes 10

Targets: ``decode_file`` on random and mutated JPEG/PNG/DICOM-named bytes (may only return an image
or raise DecodeError), ``workers.decode_task`` (may never raise), and ``scan`` on random folder
trees with odd names, OS litter and symlinks (may only return or raise InputError). Any other
exception, or a hang (each example is bounded by hypothesis's deadline), is a finding: the failing
example is printed and the run exits 1.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from xraycache.builder.scan import SourceFile, scan
from xraycache.builder.workers import decode_task
from xraycache.core.errors import DecodeError, InputError
from xraycache.core.options import ResizeOptions
from xraycache.imaging.decode import decode_file
from xraycache.imaging.result import DecodeFailure

SPEC = ResizeOptions(size=32, max_pixels=4_000_000)
ROUND = 500  # examples per hypothesis run; runs repeat (fresh random seeds) until the budget is spent
WORK = Path(tempfile.mkdtemp(prefix="xraycache-fuzz-"))


def _seed_images() -> list[bytes]:
    """Small valid files of every kind the decoder takes: the mutation corpus."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (40, 56), dtype=np.uint8)
    out = []
    for mode, fmt, extra in (
        ("L", "JPEG", {}),
        ("RGB", "JPEG", {"progressive": True}),
        ("CMYK", "JPEG", {}),
        ("L", "PNG", {}),
        ("P", "PNG", {}),
        ("LA", "PNG", {}),
        ("I;16", "PNG", {}),
    ):
        image = Image.fromarray(gray.astype(np.uint16) * 256) if mode == "I;16" else Image.fromarray(gray).convert(mode)
        buffer = io.BytesIO()
        if fmt == "JPEG":
            exif = Image.Exif()
            exif[0x0112] = int(rng.integers(1, 9))
            extra = {**extra, "exif": exif.tobytes()}
        image.save(buffer, fmt, **extra)
        out.append(buffer.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed file with byte flips, a truncation, an insertion or a duplicated block."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "zero"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 512))]
        else:
            data[at : at + draw(st.integers(1, 64))] = b"\x00" * len(data[at : at + 64])
    return bytes(data)


FILE_BYTES = st.one_of(st.binary(max_size=4096), mutated())
SUFFIXES = st.sampled_from([".jpeg", ".JPG", ".png", ".dcm", ""])


@settings(max_examples=ROUND, deadline=10_000, database=None, suppress_health_check=list(HealthCheck))
@given(data=FILE_BYTES, suffix=SUFFIXES)
def fuzz_decode(data: bytes, suffix: str) -> None:
    path = WORK / f"f{suffix}"
    path.write_bytes(data)
    try:
        image = decode_file(path, SPEC)
    except DecodeError:
        pass
    else:
        assert image.pixels.shape == (SPEC.size, SPEC.size)
    result = decode_task(str(WORK), SourceFile(path.name, "all", 0, ""), SPEC)  # never raises
    assert isinstance(result, DecodeFailure) or result.pixels.shape == (SPEC.size, SPEC.size)


NAME = st.one_of(
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"), min_size=1, max_size=12),
    st.sampled_from([".DS_Store", "Thumbs.db", "._x.jpeg", "NORMAL", "PNEUMONIA", "train", "val", "x.JPEG", "a b.png"]),
    st.binary(min_size=1, max_size=8).map(os.fsdecode),
)
ENTRY = st.tuples(st.lists(NAME, min_size=0, max_size=3), NAME, st.sampled_from(["file", "dir", "link", "dirlink"]))


@settings(max_examples=ROUND, deadline=10_000, database=None, suppress_health_check=list(HealthCheck))
@given(entries=st.lists(ENTRY, max_size=12), classes=st.sampled_from(["auto", "binary", "three"]))
def fuzz_scan(entries: list[tuple[list[str], str, str]], classes: str) -> None:
    root = WORK / "tree"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for parents, name, kind in entries:
        if any(part in (".", "..") or "/" in part or "\x00" in part for part in [*parents, name]):
            continue
        try:
            folder = root.joinpath(*parents)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / name
            if kind == "file":
                target.write_bytes(SEEDS[0])
            elif kind == "dir":
                target.mkdir(exist_ok=True)
            elif kind == "link":
                os.symlink(name, target)  # a self-loop, or a link to a sibling
            else:
                os.symlink(root, target)
        except (OSError, ValueError):
            continue  # names the file system refuses (too long, exists as another kind, ...)
    try:
        found = scan(root, classes)  # type: ignore[arg-type]
    except InputError:
        return
    assert all(0 <= f.label < len(found.label_names) for f in found.files)


def run(target: object, name: str, seconds: float) -> int:
    """Run a hypothesis test repeatedly (new random examples each time) until ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        target()  # type: ignore[operator]
        rounds += 1
    print(f"{name}: {rounds} runs x {ROUND} examples in {seconds / 60:.1f} min: no failure", flush=True)
    return rounds * ROUND


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="total wall-clock budget, split over the targets")
    args = parser.parse_args()
    seconds = args.minutes * 60
    try:
        run(fuzz_decode, "decode_file/decode_task", seconds * 0.7)
        run(fuzz_scan, "scan", seconds * 0.3)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
