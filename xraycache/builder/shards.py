"""Sharded output (``--shards K``): K writers in parallel, joined into OUT by HDF5 virtual datasets.

One writer process copies every pixel into OUT; on many cores (or a cluster) that copy, and moving
every pixel to that one process, become the limit. With ``shards=K`` the files are cut into K
contiguous runs in scan order; each run is decoded *and written* by one worker process (or dask
worker) as a complete cache file of its own, ``OUT.shards-XXXX/shard-0007.h5``, through the same
writer a single-file build uses. OUT then holds, per split, virtual datasets that concatenate the
shards' rows in order (so ``images``, ``labels``, ``meta/*`` and ``checksums`` read exactly as in a
single-file build), the summed ``stats`` and the ``/skipped`` list. Virtual sources are stored as
paths relative to OUT's folder, which HDF5 resolves against the folder of OUT: OUT moves or copies
together with its shard folder.

Each build writes a new shard folder, so a rebuild never touches the shards the old OUT reads; OUT
is renamed into place last and the old folder removed after. HDF5 reads fill values (zeros) where a
virtual source file is missing, so ``core.validate.open_cache`` refuses a cache with a shard missing.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..core.atomic import AtomicFile, current_umask, fsync_dir, remove_stale_temporaries
from ..core.errors import SkipLog, Skipped
from ..core.options import Compression, ResizeOptions
from ..core.schema import STR
from ..core.shard_files import shard_paths
from ..imaging.result import DecodeResult
from .cluster import parallel_config
from .commit import commit_file
from .execute import execute
from .job import BuildJob, Outcome
from .plan import Action, Plan
from .scan import ScanResult
from .workers import worker_initializer
from .writer import open_writer, write_skipped

SHARD_FOLDER = "{name}.shards-"  # + a random suffix; beside OUT, one per build
REUSE_WEIGHT = 0.02  # copying a reused image costs ~1/50 of decoding one: used to balance the shards


def remove_stale_shards(out: Path, keep: Path | None = None) -> None:
    """Delete shard folders beside OUT that OUT does not read (an older build's, or a killed build's)."""
    candidates = [p for p in out.parent.glob(SHARD_FOLDER.format(name=out.name) + "*") if p.is_dir()]
    if not candidates:
        return
    used = {keep} if keep is not None else set()
    try:
        with h5py.File(out, "r") as handle:
            used.update(p.parent for p in shard_paths(out, handle.attrs))
    except (OSError, KeyError, ValueError):
        pass
    for folder in candidates:
        if folder not in used:
            shutil.rmtree(folder, ignore_errors=True)


def partition(actions: list[Action], shards: int) -> list[list[Action]]:
    """Cut the plan into at most ``shards`` contiguous, non-empty runs of about equal decoding work."""
    if not actions:
        return []
    weights = np.array([REUSE_WEIGHT if a.reuse else 1.0 for a in actions])
    ends = np.cumsum(weights)
    targets = ends[-1] * np.arange(1, shards) / shards
    cuts = np.searchsorted(ends, targets, side="left") + 1
    bounds = [0, *sorted(set(int(c) for c in cuts if 0 < c < len(actions))), len(actions)]
    return [actions[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _new_shard_folder(out: Path) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=SHARD_FOLDER.format(name=out.name), dir=out.parent))
    folder.chmod(0o777 & ~current_umask())  # mkdtemp makes it 0700, which would hide a shared cache's pixels
    return folder


def write_sharded(
    job: BuildJob, plan: Plan, decoded: dict[str, DecodeResult], old_path: Path | None, shards: int
) -> Outcome:
    """Carry out ``plan`` as ``shards`` shard files written in parallel (one task each: the single-file
    build's execute and commit on its run of files), then OUT joining them; OUT is renamed in last."""
    import joblib  # only sharded builds need it (see cluster.parallel_config)

    found, progress = job.found, job.progress
    out = job.out.absolute()  # workers (dask: other machines) get absolute paths
    parts = partition(plan.actions, shards)
    remove_stale_shards(out)  # a killed build's folder; never the one OUT reads
    folder = _new_shard_folder(out)
    names = [f"shard-{index:04d}.h5" for index in range(len(parts))]
    old = None if old_path is None else str(old_path.absolute())
    tasks = []
    for index, part in enumerate(parts):
        sub_found = replace(found, files=[a.source for a in part], unlabeled=[], ignored=[])
        sub_decoded = {a.source.path: decoded[a.source.path] for a in part if a.source.path in decoded}
        shard_attrs = {**job.attrs, "shard_index": index}
        args = (index, sub_found, str(folder / names[index]), job.resize, job.compression, shard_attrs, part, old)
        tasks.append(joblib.delayed(_shard_task)(*args, sub_decoded))
    results: dict[int, tuple[list[str], list[Skipped]]] = {}
    try:
        config, jobs = parallel_config(max(1, min(len(parts), job.n_jobs)), worker_initializer())
        with config:
            parallel = joblib.Parallel(n_jobs=jobs, return_as="generator_unordered", batch_size=1)
        for index, kept, skipped in parallel(tasks):
            results[index] = (kept, skipped)
            if progress is not None:
                progress(len(parts[index]))
        by_path = {f.path: f for f in found.files}
        written = [by_path[path] for index in range(len(parts)) for path in results[index][0]]
        shard_skipped = [row for index in range(len(parts)) for row in results[index][1]]
        job.skips.extend(shard_skipped)
        job.skips.check()
        for name in names:  # a shard task that ran twice (its first worker died) left its temporaries
            remove_stale_temporaries(folder / name)
        fsync_dir(folder)
        _join(out, folder, names, found.splits, job.skips.entries)  # the scan's, then each shard's
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    remove_stale_shards(out, keep=folder)
    return Outcome.written(plan, written)


def _shard_task(
    index: int,
    found: ScanResult,
    shard_path: str,
    spec: ResizeOptions,
    compression: Compression,
    attrs: dict[str, Any],
    actions: list[Action],
    old_path: str | None,
    decoded: dict[str, DecodeResult],
) -> tuple[int, list[str], list[Skipped]]:
    """Worker: decode (or copy from the old cache) one run of files into one shard file, serially.

    Returns (shard index, paths of the files kept, skipped rows). Runs the single-file build's execute and
    commit, so a shard is a complete cache of its files.
    """
    job = BuildJob(found, Path(shard_path), spec, 1, compression, attrs, SkipLog())
    with open_writer(job) as writer:
        kept = execute(job, Plan(list(actions)), decoded, None if old_path is None else Path(old_path), writer)
        commit_file(writer, job.skips.entries)
    return index, [f.path for f in kept], job.skips.entries


def _join(out: Path, folder: Path, names: list[str], splits: tuple[str, ...], skipped: list[Skipped]) -> None:
    """Write OUT: virtual datasets over the shards' rows, summed stats, the skipped list; then rename it in."""
    output = AtomicFile(out)
    tmp_path = output.tmp
    try:
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(h5py.File(folder / name, "r")) for name in names]
            dst = stack.enter_context(h5py.File(tmp_path, "w", libver=("v110", "latest")))
            for key, value in files[0].attrs.items():
                if key != "shard_index":
                    dst.attrs[key] = value
            dst.attrs["splits"] = np.array(list(splits), dtype=STR)
            dst.attrs["shards"] = len(names)
            dst.attrs["shard_dir"] = folder.name
            dst.attrs["shard_files"] = np.array(names, dtype=STR)
            for split in splits:
                members = [
                    (f"{folder.name}/{name}", f[split]) for name, f in zip(names, files, strict=True) if split in f
                ]
                _join_group(dst.create_group(split), members)
            write_skipped(dst, skipped)
        output.commit()
    except BaseException:
        output.abort()
        raise


def _join_group(dst: h5py.Group, members: list[tuple[str, h5py.Group]]) -> None:
    """Mirror the shards' group: per-row datasets become virtual concatenations, ``stats`` is summed."""
    template = members[0][1]
    for key, value in template.attrs.items():
        dst.attrs[key] = value
    for name, item in template.items():
        if isinstance(item, h5py.Group):
            if name == "stats":
                _sum_stats(dst.create_group(name), [group[name] for _, group in members])
            else:
                _join_group(dst.create_group(name), [(file, group[name]) for file, group in members])
            continue
        pieces = [(file, group[name]) for file, group in members if group[name].shape[0] > 0]
        rest = tuple(item.shape[1:])
        total = sum(piece.shape[0] for _, piece in pieces)
        if total == 0:
            dataset = dst.create_dataset(name, shape=item.shape, dtype=item.dtype)
        else:
            layout = h5py.VirtualLayout(shape=(total, *rest), dtype=item.dtype)
            start = 0
            for file, piece in pieces:
                rows = piece.shape[0]
                layout[start : start + rows] = h5py.VirtualSource(file, piece.name, shape=(rows, *rest))
                start += rows
            dataset = dst.create_virtual_dataset(name, layout)
        for key, value in item.attrs.items():
            dataset.attrs[key] = value


def _sum_stats(dst: h5py.Group, groups: list[h5py.Group]) -> None:
    """Per-label histograms and counts are sums: add the shards' up (real datasets, not virtual)."""
    for name, item in groups[0].items():
        total = np.sum([group[name][()] for group in groups], axis=0).astype(item.dtype)
        dataset = dst.create_dataset(name, data=total)
        for key, value in item.attrs.items():
            dataset.attrs[key] = value
