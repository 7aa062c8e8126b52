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


# -- sharded caches: rows read only through the shard files the open checked ------------------------------


def _copy_sharded(cache: Path, into: Path) -> tuple[Path, Path]:
    """A copy of a sharded cache and its shard folder in ``into``; returns (cache, its first shard)."""
    import shutil

    with xraycache.open(cache) as opened:
        folder = str(opened.attrs["shard_dir"])
    into.mkdir(exist_ok=True)
    copy = into / cache.name
    shutil.copyfile(cache, copy)
    shutil.copytree(cache.parent / folder, into / folder)
    return copy, into / folder / "shard-0000.h5"


def _everything(split: xraycache.Split) -> list[np.ndarray]:
    """What a training loop reads of a split: pixels by every path, labels and a text column."""
    n = len(split)
    out = np.empty((n, *split.shape[1:]), dtype=split.images.dtype)
    return [
        split.images[:],
        split.images[[n - 1, 0, n // 2]],
        split.read_into(np.arange(n)[::-1], out),
        next(split.batches(n, seed=2))[0],
        split.labels,
        split.meta["path"],
    ]


def _swap(shard: Path, how: str, outside: Path) -> None:
    """Put another file where ``shard`` is, as whoever can write the shard folder could (renamed in)."""
    import os
    import shutil

    import h5py
    from _hostile_caches import SECRET

    evil = shard.with_name("evil.h5")
    if how == "link":
        (outside / "passwd").write_bytes(SECRET)
        evil.symlink_to(outside / "passwd")
    else:
        shutil.copyfile(shard, evil)
        with h5py.File(evil, "r+") as f:
            images = f["train/images"]
            if how == "same size, other pixels":
                images[...] = 255 - images[...]
            elif how == "another build":
                images[...] = 0
                f.attrs["build_id"] = "0" * 32
            elif how == "external storage":
                (outside / "passwd").write_bytes(SECRET)
                shape = images.shape
                del f["train/images"]
                f["train"].create_dataset(
                    "images", shape=shape, dtype=np.uint8, external=[(str(outside / "passwd"), 0, h5py.h5f.UNLIMITED)]
                )
        if how == "same size, other pixels":
            assert evil.stat().st_size == shard.stat().st_size
    os.replace(evil, shard)


@pytest.mark.parametrize("how", ["same size, other pixels", "another build", "link", "external storage"])
def test_a_shard_swapped_after_open_is_never_read(sharded_cache: Path, tmp_path: Path, how: str) -> None:
    from _hostile_caches import SECRET

    cache, shard = _copy_sharded(sharded_cache, tmp_path / "cache")
    with xraycache.open(sharded_cache) as reference:
        expected = _everything(reference["train"])
    outside = tmp_path / "outside"
    outside.mkdir()
    with xraycache.open(cache) as opened:
        split = opened["train"]
        state = pickle.dumps(split)  # what a DataLoader worker gets: it opens the path itself
        _swap(shard, how, outside)  # after the open's checks, before any row is read
        got = _everything(split)  # the files the open checked, as they were
        for value, reference_value in zip(got, expected, strict=True):
            np.testing.assert_array_equal(value, reference_value)
        assert not any(SECRET[:64] in value.tobytes() for value in got[:4])
    copy = pickle.loads(state)  # opens the path again: never the other file's rows
    errors = xraycache.CacheReplacedError if how == "same size, other pixels" else xraycache.NotACacheError
    with pytest.raises(errors) as raised:
        copy.images[0]
    assert "\n" not in str(raised.value)
    if how == "same size, other pixels":  # a new open reads the new file, checked: verify finds the swap
        from xraycache.verify import verify

        assert any(finding.kind == "checksum" for finding in verify(cache).problems)
    else:
        with pytest.raises(xraycache.NotACacheError, match=r"shard-0000\.h5"):
            xraycache.open(cache)


def test_a_shard_truncated_under_a_reader_is_one_line(sharded_cache: Path, tmp_path: Path) -> None:
    import os

    cache, shard = _copy_sharded(sharded_cache, tmp_path)
    with xraycache.open(cache) as opened:
        split = opened["train"]
        os.truncate(shard, 2048)  # within its header: before its images
        with pytest.raises(xraycache.NotACacheError, match="truncated or replaced while being read") as raised:
            split.images[:]
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize("sharded", [False, True], ids=["single file", "sharded"])
def test_a_cache_file_truncated_under_a_reader_is_one_line(
    sharded_cache: Path, reader_cache: Path, tmp_path: Path, sharded: bool
) -> None:
    """HDF5 reads zeros past the end of a truncated file: every read checks the files are as opened."""
    import os
    import shutil

    if sharded:
        cache, _ = _copy_sharded(sharded_cache, tmp_path)
    else:
        cache = tmp_path / "cache.h5"
        shutil.copyfile(reader_cache, cache)
    with xraycache.open(cache) as reference:
        pixels = reference["train"].images[:2]
    with xraycache.open(cache) as opened:
        split = opened["train"]
        os.truncate(cache, cache.stat().st_size // 2)
        reads = [lambda: split.labels, lambda: split.meta["path"], lambda: opened.skipped]
        if sharded:  # its pixels are read from its shards, which are whole
            np.testing.assert_array_equal(split.images[:2], pixels)
        else:
            reads.append(lambda: split.images[:2])
        for read in reads:
            with pytest.raises(xraycache.NotACacheError, match="was truncated or written while being read") as raised:
                read()
            assert "\n" not in str(raised.value)


def test_a_compressed_sharded_cache_reads_as_the_single_file(make_dataset: Callable[..., Path], tmp_path: Path) -> None:
    src = make_dataset()
    single, sharded = tmp_path / "single.h5", tmp_path / "sharded.h5"
    xraycache.build(src, single, size=32, jobs=1, compression="gzip")
    xraycache.build(src, sharded, size=32, jobs=1, compression="gzip", shards=3)
    with xraycache.open(single) as one, xraycache.open(sharded) as joined:
        for name in one.splits:
            for value, expected in zip(_everything(joined[name]), _everything(one[name]), strict=True):
                np.testing.assert_array_equal(value, expected)


@pytest.fixture(params=["single file", "sharded"])
def built(request: pytest.FixtureRequest, make_dataset: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path, int]:
    """(source, cache, shards): a cache built from a small source as one file, or as 2 shards."""
    src = make_dataset()
    out = tmp_path / "cache.h5"
    shards = 2 if request.param == "sharded" else 1
    xraycache.build(src, out, size=32, jobs=1, shards=shards)
    return src, out, shards


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_rebuild_under_a_training_loop_is_invisible_or_one_error(built: tuple[Path, Path, int], method: str) -> None:
    """Workers that opened the cache keep reading it (persistent ones, and those of an epoch under way);
    workers that open it after the rebuild (the next epoch's) stop with one line. Never two builds mixed."""
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from xraycache.torch import XrayDataset

    src, out, shards = built
    dataset = XrayDataset(out, "train", dtype=None)
    kwargs = {"batch_size": 1, "num_workers": 2, "multiprocessing_context": method}
    persistent = DataLoader(dataset, persistent_workers=True, **kwargs)  # type: ignore[arg-type]
    fresh = DataLoader(dataset, **kwargs)  # type: ignore[arg-type]
    before = [images.numpy() for images, _ in persistent]
    epoch = iter(fresh)
    first = next(epoch)[0].numpy()
    _rebuild(src, out, fit="pad", shards=shards)  # other pixels, another build id, new files at the paths
    try:
        rest = [first, *(images.numpy() for images, _ in epoch)]
    except xraycache.CacheReplacedError as exc:  # a worker that opened the path after the rebuild
        assert "\n" not in str(exc)
    else:
        assert all(np.array_equal(a, b) for a, b in zip(rest, before, strict=True))
    after = [images.numpy() for images, _ in persistent]  # the same workers, the files they opened
    assert all(np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    with pytest.raises(xraycache.CacheReplacedError, match="was replaced since it was opened") as raised:
        list(fresh)  # new workers open the path: another build
    assert "\n" not in str(raised.value)  # not the worker's traceback the DataLoader puts in its message


def test_virtual_datasets_that_do_not_join_their_shards_in_order_are_refused(
    sharded_cache: Path, tmp_path: Path
) -> None:
    """The readers read the shards' rows one shard after the other: a cache whose virtual dataset says
    otherwise (rows swapped between shards) is refused at open, not read in another order."""
    import h5py

    cache, _ = _copy_sharded(sharded_cache, tmp_path)
    with h5py.File(cache, "r+") as f:
        sources = [(s.file_name, s.dset_name) for s in f["train/labels"].virtual_sources()]
        dtype, rows = f["train/labels"].dtype, f["train/labels"].shape[0]
        del f["train/labels"]
        layout = h5py.VirtualLayout(shape=(rows,), dtype=dtype)
        start = 0
        for file, name in reversed(sources):
            with h5py.File(cache.parent / file, "r") as shard:
                n = shard[name].shape[0]
            layout[start : start + n] = h5py.VirtualSource(file, name, shape=(n,))
            start += n
        f["train"].create_virtual_dataset("labels", layout)
    with pytest.raises(xraycache.NotACacheError, match=r"/train/labels: does not join its shards' rows in order"):
        xraycache.open(cache)


def test_rows_a_shard_holds_beyond_what_the_open_checked_are_never_read(sharded_cache: Path, tmp_path: Path) -> None:
    """A shard may hold more than its own splits (a group it does not list, with external storage): the
    readers read only the datasets the open checked and the cache's virtual datasets join."""
    import h5py
    from _hostile_caches import SECRET

    cache, first = _copy_sharded(sharded_cache, tmp_path / "cache")
    with xraycache.open(cache) as reference:
        expected = _everything(reference["val"])
    with h5py.File(first, "r") as f:
        assert "val" not in f  # the val split lives in the second shard only
    secret = tmp_path / "passwd"
    secret.write_bytes(SECRET)
    with h5py.File(first, "r+") as f:
        f.create_group("val").create_dataset(
            "images", shape=(4, 32, 32), dtype=np.uint8, external=[(str(secret), 0, h5py.h5f.UNLIMITED)]
        )
    with xraycache.open(cache) as opened:
        got = _everything(opened["val"])
    for value, reference_value in zip(got, expected, strict=True):
        np.testing.assert_array_equal(value, reference_value)
