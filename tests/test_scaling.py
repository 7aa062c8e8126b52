"""Scaling out: sharded output joined by HDF5 virtual datasets, and builds on a dask cluster.

The dask tests start a real ``distributed.LocalCluster`` (2 worker processes, 1 thread each, loopback
only) and skip when dask.distributed is not installed (it is in the ``test`` extra).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import radiograph, write_image
from typer.testing import CliRunner

import xraycache
from xraycache.cli import app
from xraycache.core.errors import InputError, NotACacheError, StrictError

SIZE = 32


def make_source(root: Path, n: int, bad: bool = True) -> Path:
    """``n`` small JPEGs in a Kaggle layout over three splits, plus one undecodable file."""
    for i in range(n):
        split = ("train", "val", "test")[i % 3]
        label = ("NORMAL", "PNEUMONIA")[(i // 3) % 2]
        write_image(root / split / label / f"IM-{i:04d}-0001.jpeg", radiograph(40 + i % 23, 36 + i % 17, i))
    if bad:
        (root / "train" / "NORMAL" / "IM-9999-0001.jpeg").write_bytes(b"not an image")
    return root


def datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by name, read through h5py (virtual ones resolved)."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same(a: Path, b: Path) -> None:
    left, right = datasets(a), datasets(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert np.array_equal(left[name], right[name]), name


def shard_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".shards-" in p.name)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("scaling") / "src", 48)


@pytest.fixture(scope="module")
def single(source: Path) -> Path:
    out = source.parent / "single.h5"
    xraycache.build(source, out, size=SIZE, jobs=2)
    return out


# -- sharded output ----------------------------------------------------------------------------------


def test_sharded_build_reads_as_the_single_file(source: Path, single: Path, tmp_path: Path) -> None:
    out = tmp_path / "sharded.h5"
    report = xraycache.build(source, out, size=SIZE, jobs=2, shards=3)
    assert report.images == 48 and len(report.skipped) == 1
    [folder] = shard_folders(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["shard-0000.h5", "shard-0001.h5", "shard-0002.h5"]
    assert report.output_bytes > out.stat().st_size  # counts the shards
    assert_same(single, out)  # every dataset, through h5py: images, labels, meta, checksums, stats, skipped
    with h5py.File(out, "r") as handle:
        assert handle["train/images"].is_virtual and handle.attrs["shards"] == 3
        assert all(not os.path.isabs(s.file_name) for s in handle["train/images"].virtual_sources())
    with xraycache.open(out) as cache, xraycache.open(single) as reference:
        assert cache.splits == reference.splits and cache.skipped == reference.skipped
        for name in cache.splits:
            split, ref = cache[name], reference[name]
            images, labels = split.load(channels=None, label_dtype=None)
            assert np.array_equal(images, ref.load(channels=None, label_dtype=None)[0]) and np.array_equal(
                labels, ref.labels
            )
            assert np.array_equal(split.images[[3, 0, 3]], ref.images[[3, 0, 3]])
            assert list(split.meta["path"]) == list(ref.meta["path"])
            batches = list(split.batches(4, seed=1))
            assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(batches, ref.batches(4, seed=1), strict=True))


def test_sharded_cache_through_the_cli(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.h5"
    runner = CliRunner()
    result = runner.invoke(app, ["build", str(source), str(out), "--size", str(SIZE), "--shards", "2", "-j", "2"])
    assert result.exit_code == 0, result.output
    for args in (["info", str(out)], ["show", "stats", str(out), "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["show", "grid", str(out), "--n", "4", "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output


def test_moved_with_its_folder_and_missing_shard_named(source: Path, single: Path, tmp_path: Path) -> None:
    built = tmp_path / "a"
    built.mkdir()
    xraycache.build(source, built / "c.h5", size=SIZE, jobs=2, shards=2)
    moved = tmp_path / "b"
    shutil.move(str(built), str(moved))  # OUT and its shard folder, together
    assert_same(single, moved / "c.h5")
    [folder] = shard_folders(moved)
    (folder / "shard-0001.h5").unlink()
    with pytest.raises(NotACacheError, match=r"shard c\.h5\.shards-\w+/shard-0001\.h5 is missing"):
        xraycache.open(moved / "c.h5")
    with pytest.raises(InputError, match=r"shard-0001\.h5 is missing"):  # an incremental rebuild says so too
        xraycache.build(source, moved / "c.h5", size=SIZE, jobs=2, shards=2)
    xraycache.build(source, moved / "c.h5", size=SIZE, jobs=2, shards=2, overwrite=True)
    assert_same(single, moved / "c.h5")
    assert len(shard_folders(moved)) == 1


def test_rebuilds_reuse_and_change_layout(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 24)
    out = tmp_path / "r.h5"
    xraycache.build(src, out, size=SIZE, jobs=2, shards=2)
    first = shard_folders(tmp_path)
    assert xraycache.build(src, out, size=SIZE, jobs=2, shards=2).mode == "unchanged"
    assert shard_folders(tmp_path) == first
    (src / "val" / "NORMAL" / "IM-0001-0001.jpeg").unlink()
    write_image(src / "test" / "NORMAL" / "IM-0500-0001.jpeg", radiograph(50, 50, 500))
    report = xraycache.build(src, out, size=SIZE, jobs=2, shards=3)
    assert report.mode == "incremental" and report.removed == 1 and report.added == 1
    second = shard_folders(tmp_path)
    assert len(second) == 1 and second != first  # a new folder per build; the old one removed after
    reference = tmp_path / "ref.h5"
    xraycache.build(src, reference, size=SIZE, jobs=1)
    assert_same(reference, out)
    report = xraycache.build(src, out, size=SIZE, jobs=2)  # back to one file: pixels reused, shards gone
    assert report.mode == "incremental" and report.reused == 24
    assert shard_folders(tmp_path) == []
    assert_same(reference, out)


def test_sharded_strict_writes_nothing(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "strict.h5"
    with pytest.raises(StrictError):
        xraycache.build(source, out, size=SIZE, jobs=2, shards=2, strict=True)
    assert not out.exists() and shard_folders(tmp_path) == []
    assert not list(tmp_path.glob(".strict.h5.*.tmp"))


def test_more_shards_than_files(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 3, bad=False)
    out = tmp_path / "few.h5"
    assert xraycache.build(src, out, size=SIZE, jobs=1, shards=8).images == 3
    [folder] = shard_folders(tmp_path)
    assert len(list(folder.iterdir())) == 3
    with xraycache.open(out) as cache:
        assert sum(len(cache[s]) for s in cache.splits) == 3


# -- backend arguments ---------------------------------------------------------------------------------


def test_backend_usage_errors(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    runner = CliRunner()
    out = str(tmp_path / "x.h5")
    for args, message in (
        (["--backend", "dask"], "needs a scheduler"),
        (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler is for --backend dask;"),
        (["--backend", "spark"], "spark"),
    ):
        result = runner.invoke(app, ["build", str(source), out, *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert not Path(out).exists()


# -- dask.distributed ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as local:
        yield local


def test_dask_build_is_identical_to_local(cluster: Any, source: Path, single: Path, tmp_path: Path) -> None:
    out = tmp_path / "dask.h5"
    report = xraycache.build(source, out, size=SIZE, backend="dask", scheduler=cluster.scheduler_address)
    assert report.jobs == 2 and report.images == 48
    assert_same(single, out)
    sharded = tmp_path / "dask-sharded.h5"
    xraycache.build(source, sharded, size=SIZE, backend="dask", scheduler=cluster.scheduler_address, shards=3)
    assert_same(single, sharded)


def test_scheduler_from_the_environment(
    cluster: Any, source: Path, single: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
    out = tmp_path / "env.h5"
    result = CliRunner().invoke(app, ["build", str(source), str(out), "--size", str(SIZE), "--backend", "dask", "-q"])
    assert result.exit_code == 0, result.output
    assert_same(single, out)


def test_worker_killed_during_a_build(cluster: Any, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    src = make_source(tmp_path / "src", 240, bad=False)
    reference = tmp_path / "local.h5"
    xraycache.build(src, reference, size=SIZE, jobs=2)
    with distributed.Client(cluster.scheduler_address) as client:
        victim = next(iter(client.run(os.getpid).values()))
    killed: list[int] = []

    def progress(n: int) -> None:
        if not killed:
            os.kill(victim, signal.SIGKILL)  # a worker dies with tasks in flight; its nanny restarts it
            killed.append(victim)

    out = tmp_path / "killed.h5"
    report = xraycache.build(
        src, out, size=SIZE, backend="dask", scheduler=cluster.scheduler_address, progress=progress
    )
    assert killed and report.images == 240 and not report.skipped
    assert_same(reference, out)
    with distributed.Client(cluster.scheduler_address) as client:
        client.wait_for_workers(2, timeout=30)  # leave the cluster whole for the next test


def test_worker_that_cannot_read_src_is_named(cluster: Any, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from xraycache.builder.cluster import check_workers

    with distributed.Client(cluster.scheduler_address) as client:
        with pytest.raises(InputError, match=r"dask worker tcp://127\.0\.0\.1:\d+ cannot read .*shared filesystem"):
            check_workers(client, tmp_path / "not-mounted-here", "train/NORMAL/a.jpeg")
        check_workers(client, tmp_path, None, write_dir=tmp_path)  # a readable, writable folder passes


def test_unreachable_scheduler_fails_fast(source: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(InputError, match=f"cannot reach the dask scheduler at {address}"):
        xraycache.build(source, tmp_path / "x.h5", size=SIZE, backend="dask", scheduler=address, scheduler_timeout=1.5)
    assert time.monotonic() - started < 15
    assert not (tmp_path / "x.h5").exists()


def test_unreachable_scheduler_cli_one_line(source: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    import subprocess

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "xraycache", "build", str(source), str(tmp_path / "x.h5"), "--backend", "dask"]
    options = ["--scheduler", f"tcp://127.0.0.1:{port}", "--scheduler-timeout", "2"]
    result = subprocess.run([*command, *options], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the dask scheduler" in lines[0], result.stderr
