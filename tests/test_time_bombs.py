"""Source files that would hold a build: a JPEG of thousands of scans is refused before it is decoded, and a
file that takes longer than ``--file-timeout`` has its worker killed by the build and is skipped, named."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from conftest import radiograph, write_image
from PIL import Image

import xraycache
from xraycache.builder import workers
from xraycache.builder.scan import SourceFile
from xraycache.core.options import ResizeOptions
from xraycache.imaging.decode import decode_file
from xraycache.imaging.decoders.pillow import MAX_SCANS, jpeg_scans

needs_fork = pytest.mark.skipif(not workers.CAN_FORK, reason="forked workers are Linux-only (loky elsewhere)")
STOPPED = "decoding took longer than the time limit of 1 s (--file-timeout): stopped"


def scan_bomb(side: int, scans: int) -> bytes:
    """A valid progressive JPEG of a flat ``side`` x ``side`` image whose last scan is repeated until it has
    ``scans`` scans: a few bytes a scan, and each scan makes libjpeg walk every block of the image."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    last = data.rfind(b"\xff\xda")
    return data[:-2] + data[last:-2] * (scans - jpeg_scans(data)) + b"\xff\xd9"


def dataset(root: Path, bombs: dict[str, bytes]) -> Path:
    """Six good images and the ``bombs`` beside them, in one class folder."""
    folder = root / "src" / "train" / "NORMAL"
    for index in range(6):
        write_image(folder / f"IM-{index:04d}.jpeg", radiograph(120, 100, index))
    for name, data in bombs.items():
        (folder / name).write_bytes(data)
    return root / "src"


def test_a_jpeg_of_thousands_of_scans_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    """20,000 scans (the file held a build for 442 s before) cost the count of their markers: milliseconds."""
    bomb = scan_bomb(512, 20_000)
    assert len(bomb) < 400_000 and jpeg_scans(bomb) == 20_000
    path = tmp_path / "bomb.jpeg"
    path.write_bytes(bomb)
    started = time.perf_counter()
    with pytest.raises(xraycache.XrayCacheError, match=r"a JPEG of 20,000 scans .* the limit is 500\): refused"):
        decode_file(path, ResizeOptions(size=32))
    assert time.perf_counter() - started < 5.0  # generous: the refusal is a count; the decode took minutes
    # a progressive JPEG as encoders write it, and one at the limit, are decoded
    ok = tmp_path / "ok.jpeg"
    ok.write_bytes(scan_bomb(64, MAX_SCANS))
    assert decode_file(ok, ResizeOptions(size=32)).pixels.shape == (32, 32)


def slow_jpeg() -> bytes:
    """A file under the scan limit that still takes libjpeg over 10 s on this machine (490 scans of a
    6000 x 6000 image, 170 KB): what only the time limit stops."""
    return scan_bomb(6000, 490)


@needs_fork
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_file_over_the_time_limit_is_stopped_and_named(tmp_path: Path, jobs: int) -> None:
    """The build kills the worker that holds the file past ``file_timeout`` and goes on with new workers: every
    good image is kept, the slow file is skipped with the limit as its reason, and the build ends within a few
    seconds of the limit (the file alone decodes for over 10 s). One job has one worker too."""
    src = dataset(tmp_path, {"slow.jpeg": slow_jpeg(), "scans.jpeg": scan_bomb(256, 600)})
    started = time.perf_counter()
    report = xraycache.build(src, tmp_path / "out.h5", size=32, jobs=jobs, file_timeout=1)
    elapsed = time.perf_counter() - started
    assert report.images == 6
    reasons = {row.path: row.reason for row in report.skipped}
    assert reasons["train/NORMAL/slow.jpeg"] == STOPPED
    assert reasons["train/NORMAL/scans.jpeg"].startswith("a JPEG of 600 scans")
    assert elapsed < 8.0, elapsed  # generous: 1 s of limit, a fork and six small decodes


@needs_fork
def test_a_file_decoded_alone_is_stopped_at_the_time_limit(tmp_path: Path) -> None:
    """After a crash, the broken task's files are decoded one process each: those obey the limit too."""
    (tmp_path / "slow.jpeg").write_bytes(slow_jpeg())
    started = time.perf_counter()
    result = workers._decode_alone(str(tmp_path), SourceFile("slow.jpeg", "train", 0, ""), ResizeOptions(), 1.0)
    assert result == workers.over_time_limit(1.0)
    assert time.perf_counter() - started < 6.0


def test_the_time_limit_is_an_option_checked_like_the_others() -> None:
    with pytest.raises(xraycache.OptionError, match="file_timeout"):
        xraycache.BuildOptions.from_flat(file_timeout=0)
    assert xraycache.BuildOptions().run.file_timeout == 60.0


def test_metadata_holding_start_of_scan_bytes_is_not_counted_as_scans() -> None:
    import io

    import numpy as np
    from PIL import Image

    from xraycache.core.options import ResizeOptions
    from xraycache.imaging.decoders.pillow import decode, jpeg_scans

    image = Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype("uint8"))
    for extra in ({"comment": b"\xff\xda" * 600}, {"icc_profile": b"\xff\xda" * 600}):
        encoded = io.BytesIO()
        image.save(encoded, "JPEG", progressive=True, **extra)
        assert jpeg_scans(encoded.getvalue()) < 20  # the metadata's bytes are stepped over
        assert decode(encoded.getvalue(), ResizeOptions(size=16)).pixels.shape == (16, 16)
