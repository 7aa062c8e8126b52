"""A cache made by the other imaging backend (Pillow vs Pillow-SIMD) is updated, not refused: the images whose
bytes the backend decides (Pillow's resampling) are decoded again, the rest reused, and the result is what a
cold build gives here. The old cache's backend is simulated by rewriting its recorded attribute."""

from __future__ import annotations

from pathlib import Path

import h5py

from tests.conftest import radiograph, write_image
from tests.test_incremental import assert_same_cache, cold
from xraycache import build
from xraycache.imaging.stack import imaging_stack

OTHER = "Pillow-SIMD 9.0.0.post1 (AVX2)" if imaging_stack().name == "Pillow" else "Pillow 9.0.0"


def _made_by_the_other_backend(path: Path) -> None:
    with h5py.File(path, "r+") as handle:
        handle.attrs["imaging_backend"] = OTHER


def test_area_images_are_reused_and_nothing_is_rewritten(kaggle: Path, tmp_path: Path) -> None:
    out = cold(kaggle, tmp_path / "c.h5", size=64)  # every source is larger than 64 px: no Pillow resampling
    _made_by_the_other_backend(out)
    before = out.stat()
    again = build(kaggle, out, jobs=1, size=64)
    assert again.mode == "unchanged" and again.reused == 10 and not again.warnings
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_only_images_made_by_pillow_resampling_are_decoded_again(kaggle: Path, tmp_path: Path) -> None:
    small = kaggle / "train/NORMAL/IM-0999-0001.jpeg"
    write_image(small, radiograph(40, 200, seed=9))  # narrower than the output: enlarged, by Pillow's bilinear
    out = cold(kaggle, tmp_path / "c.h5", size=64)
    _made_by_the_other_backend(out)
    dry = build(kaggle, out, jobs=1, size=64, dry_run=True)
    assert (dry.would, dry.reused, dry.changed) == ("incremental", 10, 1)
    again = build(kaggle, out, jobs=1, size=64)
    assert (again.mode, again.reused, again.changed) == ("incremental", 10, 1)
    assert len(again.warnings) == 1 and OTHER in again.warnings[0] and "1 of 11 image(s)" in again.warnings[0]
    assert_same_cache(out, cold(kaggle, tmp_path / "cold.h5", size=64))  # records this backend, as a cold build


def test_a_pillow_filter_decodes_every_image_again(kaggle: Path, tmp_path: Path) -> None:
    out = cold(kaggle, tmp_path / "c.h5", size=64, filter="box")
    _made_by_the_other_backend(out)
    again = build(kaggle, out, jobs=1, size=64, filter="box")
    assert (again.reused, again.changed) == (0, 10)
    assert_same_cache(out, cold(kaggle, tmp_path / "cold.h5", size=64, filter="box"))
