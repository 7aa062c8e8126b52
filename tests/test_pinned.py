"""Readers pinned to the build they opened: an open cache keeps reading its file across a rebuild; a reader that
opens the path again (a DataLoader worker under any start method, an unpickled Split, a closed cache used
again) and finds another build stops with one line; never two builds mixed."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import xraycache


def _rebuild(src: Path, out: Path, **settings: object) -> None:
    xraycache.build(src, out, size=32, jobs=1, overwrite=True, **settings)  # type: ignore[arg-type]


@pytest.fixture
def pair(make_dataset: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    src = make_dataset()
    out = tmp_path / "cache.h5"
    xraycache.build(src, out, size=32, jobs=1)
    return src, out


def test_every_build_records_its_own_id(pair: tuple[Path, Path]) -> None:
    src, out = pair
    with xraycache.open(out) as cache:
        first = cache.attrs["build_id"]
    _rebuild(src, out, fit="pad")
    with xraycache.open(out) as cache:
        assert len(first) == 32 and cache.attrs["build_id"] != first


def test_an_open_cache_keeps_reading_its_file_across_a_rebuild(pair: tuple[Path, Path]) -> None:
    src, out = pair
    with xraycache.open(out) as cache:
        before = next(cache["train"].batches(8, shuffle=False))[0]
        copy = pickle.loads(pickle.dumps(cache["train"]))  # opens the path itself when first used
        _rebuild(src, out, fit="pad")
        np.testing.assert_array_equal(next(cache["train"].batches(8, shuffle=False))[0], before)
        np.testing.assert_array_equal(cache["train"].images[:8], before[:, 0])
        with pytest.raises(xraycache.CacheReplacedError, match=r"was replaced since it was opened .*open it again"):
            copy.images[0]
    with pytest.raises(xraycache.CacheReplacedError):  # closed, then used again: the path has another build
        cache["train"].images[0]


def test_a_split_unpickled_elsewhere_after_a_rebuild_refuses_the_new_file(pair: tuple[Path, Path]) -> None:
    src, out = pair
    with xraycache.open(out) as cache:
        state = pickle.dumps(cache["train"])
    _rebuild(src, out, fit="pad")
    code = "import pickle, sys\nsplit = pickle.loads(sys.stdin.buffer.read())\nsplit.images[0]\n"
    done = subprocess.run([sys.executable, "-c", code], input=state, capture_output=True)
    assert done.returncode != 0
    assert b"CacheReplacedError" in done.stderr and b"was replaced since it was opened" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_rebuild_between_epochs_is_one_error_in_every_start_method(pair: tuple[Path, Path], method: str) -> None:
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from xraycache.torch import XrayDataset

    src, out = pair
    dataset = XrayDataset(out, "train", dtype=None)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, multiprocessing_context=method)
    first = [images.numpy() for images, _ in loader]
    assert sum(len(batch) for batch in first) == len(dataset)
    _rebuild(src, out, fit="pad")  # other pixels, other build id, a new file at the path
    with pytest.raises(xraycache.CacheReplacedError, match="was replaced since it was opened"):
        list(loader)  # new workers open the path: another build


def test_a_shard_folder_that_is_a_link_is_refused(sharded_cache: Path, tmp_path: Path) -> None:
    import shutil

    with xraycache.open(sharded_cache) as cache:
        folder = sharded_cache.parent / str(cache.attrs["shard_dir"])
    copy = tmp_path / "copy.h5"
    shutil.copyfile(sharded_cache, copy)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(folder, elsewhere)
    (tmp_path / folder.name).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(xraycache.NotACacheError, match=f"shard folder {folder.name}: is a symbolic link"):
        xraycache.open(copy)
