"""Carrying out a plan: files decoded on the workers and images copied from the old cache, streamed into
one writer in scan order.

The files the old cache skipped come first when they alone decide whether OUT is already up to date
(``retry_skipped``); then ``execute`` copies each run of reused images (contiguous in the old file and in
one split) in one block, and hands every other file to the workers, whose results come back in order. A
file that cannot be taken is logged in ``job.skips``; a strict build stops before its file is committed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import Skipped
from ..core.schema import storable_path
from ..imaging.result import DecodeFailure, DecodeResult
from . import rewrite
from .job import BuildJob
from .old_cache import OldCache, OldRowReader
from .plan import Action, Plan, same_skipped
from .scan import SourceFile
from .workers import decode_all
from .writer import CacheWriter


def retry_skipped(job: BuildJob, plan: Plan, old: OldCache | None) -> tuple[dict[str, DecodeResult], bool]:
    """The files the old cache skipped, decoded first where they alone decide whether OUT is up to date
    (``plan.unchanged_if_retried_fail``): their results (not decoded again later) and whether OUT already
    holds this build: every one failed again, so the skipped list is the old one, row for row."""
    if old is None or not plan.unchanged_if_retried_fail:
        return {}, plan.unchanged
    results = decode_all(str(job.found.root), plan.retried, job.resize, job.n_jobs, job.pool)
    decoded = dict(zip((f.path for f in plan.retried), results, strict=True))
    failures = [
        Skipped(storable_path(f.path), f.split, result.reason)
        for f in plan.retried
        if isinstance(result := decoded[f.path], DecodeFailure)
    ]
    return decoded, len(failures) == len(plan.retried) and same_skipped(job.found, old, failures)


def execute(
    job: BuildJob, plan: Plan, decoded: dict[str, DecodeResult], old_path: Path | None, writer: CacheWriter
) -> list[SourceFile]:
    """Stream every file of the plan into ``writer``, in scan order; returns the files written.

    Reused files are copied from the old cache at ``old_path`` in contiguous runs; files in ``decoded``
    (see :func:`retry_skipped`) are not decoded again; the rest go to the workers. Files that cannot be
    taken are logged in ``job.skips``, checked at the end (strict: StrictError, and the caller's writer
    aborts). The old file is closed before this returns: the commit may rename over it next.
    """
    found, progress = job.found, job.progress
    block_rows = max(1, rewrite.COPY_BLOCK_BYTES // (job.resize.size * job.resize.size))
    kept: list[SourceFile] = []
    to_decode = [source for source in plan.to_decode if source.path not in decoded]
    results = decode_all(str(found.root), to_decode, job.resize, job.n_jobs, job.pool)
    run: list[Action] = []
    with OldRowReader.open(old_path) as old:
        for action in plan.actions:
            if action.reuse:
                if run and not _extends(run, action, block_rows):
                    kept += _copy_run(job, old, writer, run)
                    run = []
                run.append(action)
                continue
            if run:
                kept += _copy_run(job, old, writer, run)
                run = []
            source = action.source
            result = decoded[source.path] if source.path in decoded else next(results)
            if isinstance(result, DecodeFailure):
                job.skips(Skipped(storable_path(source.path), source.split, result.reason))
            else:
                writer.add(result, source)
                kept.append(source)
            if progress is not None:
                progress(1)
        if run:
            kept += _copy_run(job, old, writer, run)
    job.skips.check()
    return kept


def _extends(run: list[Action], action: Action, block_rows: int) -> bool:
    """Whether ``action`` continues ``run`` as one contiguous slice of the same old split, into one split."""
    last = run[-1].old
    now = action.old
    assert last is not None and now is not None
    same_target = action.source.split == run[-1].source.split
    return len(run) < block_rows and same_target and now.split == last.split and now.index == last.index + 1


def _copy_run(job: BuildJob, old: OldRowReader | None, writer: CacheWriter, run: list[Action]) -> list[SourceFile]:
    """Copy one contiguous run of unchanged images (pixels, provenance, checksums) into ``writer``, with
    their current mtimes, labels and folds; returns its files."""
    first = run[0].old
    assert old is not None and first is not None  # a reused file has an old cache to come from
    rows = old.read(first.split, first.index, first.index + len(run), writer.columns)
    rows.meta["mtime_ns"] = np.array([a.mtime_ns for a in run], dtype=np.int64)
    rows.meta["fold"] = np.array([a.source.fold for a in run])  # the hash's fold: the regrouping runs again
    sources = [a.source for a in run]
    labels = writer.label_rows(sources)
    writer.add_rows(run[0].source.split, rows.pixels, labels, rows.meta, rows.checksums, rows.descriptors, sources)
    if job.progress is not None:
        job.progress(len(run))
    return [a.source for a in run]
