"""Carrying out a plan: files decoded on the workers and images copied from the old cache, streamed into
one writer in scan order.

The files the old cache skipped come first when they alone decide whether OUT is already up to date
(``decode_retried``, ``still_unchanged``); then ``execute`` copies each run of reused images (contiguous
in the old file and in one split) in one block, and hands every other file to the workers, whose results
come back in order. A file that cannot be taken is logged in ``job.skips``; a strict build stops before
its file is committed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import Skipped
from ..core.schema import storable_path
from ..imaging.result import DecodeFailure, DecodeResult
from .job import BuildJob, Outcome
from .old_cache import OldCache, OldRowReader
from .plan import Action, Plan
from .scan import SourceFile
from .workers import decode_all
from .writer import CacheWriter

COPY_RUN_BYTES = 32 << 20  # pixels of reused images copied from the old cache per read/write, at most


def decode_retried(job: BuildJob, plan: Plan) -> dict[str, DecodeResult]:
    """The files the old cache skipped, decoded first when OUT is up to date unless one of them now decodes
    (``plan.unchanged_if_retried_fail``); their results are not decoded again. Else nothing (they are
    decoded with the rest)."""
    if not plan.unchanged_if_retried_fail:
        return {}
    results = decode_all(str(job.found.root), plan.retried, job.resize, job.n_jobs, job.pool)
    return dict(zip((f.path for f in plan.retried), results, strict=True))


def still_unchanged(job: BuildJob, plan: Plan, old: OldCache | None, decoded: dict[str, DecodeResult]) -> bool:
    """Whether OUT already holds this build: the plan says so, or every retried file failed again and the
    skipped list would be the old one, row for row."""
    if plan.unchanged:
        return True
    if old is None or not plan.unchanged_if_retried_fail:
        return False
    failures = {path: r for path, r in decoded.items() if isinstance(r, DecodeFailure)}
    if len(failures) != len(plan.retried):
        return False
    skipped = job.found.unlabeled_rows()
    skipped += [Skipped(storable_path(f.path), f.split, failures[f.path].reason) for f in plan.retried]
    return skipped == old.skipped


def leave_unchanged(job: BuildJob, plan: Plan, old: OldCache) -> Outcome:
    """OUT is up to date: nothing is written; its skipped list is the build's (a strict build still fails
    on it), and every file counts as done."""
    job.skips.entries[:] = old.skipped
    job.skips.check()
    if job.progress is not None:
        job.progress(len(job.found.files))
    return Outcome("unchanged", plan.reused_files)


def new_writer(job: BuildJob) -> CacheWriter:
    """The writer of ``job.out``, its splits sized for every scanned file (fewer rows are kept when some
    are skipped)."""
    found, spec = job.found, job.resize
    capacities = {split: 0 for split in found.splits}
    for f in found.files:
        capacities[f.split] += 1
    return CacheWriter(
        job.out,
        capacities=capacities,
        label_names=found.label_names,
        image_shape=(spec.size, spec.size),
        attrs=job.attrs,
        compression=job.compression,
        dtype=spec.dtype,
        multi_label=found.multi_label,
    )


def execute(
    job: BuildJob, plan: Plan, decoded: dict[str, DecodeResult], old_path: Path | None, writer: CacheWriter
) -> list[SourceFile]:
    """Stream every file of the plan into ``writer``, in scan order; returns the files written.

    Reused files are copied from the old cache at ``old_path`` in contiguous runs; files in ``decoded``
    are not decoded again; the rest go to the workers. Files that cannot be taken are logged in
    ``job.skips``, checked at the end (strict: StrictError, and the caller's writer aborts).
    """
    found, progress = job.found, job.progress
    block_rows = max(1, COPY_RUN_BYTES // (job.resize.size * job.resize.size))
    kept: list[SourceFile] = []
    to_decode = [source for source in plan.to_decode if source.path not in decoded]
    old = OldRowReader(old_path) if old_path is not None else None
    try:
        results = decode_all(str(found.root), to_decode, job.resize, job.n_jobs, job.pool)
        run: list[Action] = []
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
    finally:
        if old is not None:
            old.close()
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
    assert old is not None
    first = run[0].old
    assert first is not None
    rows = old.read(first.split, first.index, first.index + len(run), writer.columns)
    rows.meta["mtime_ns"] = np.array([a.mtime_ns for a in run], dtype=np.int64)
    rows.meta["fold"] = np.array([a.source.fold for a in run])  # the hash's fold: the regrouping runs again
    labels = writer.label_rows([a.source for a in run])
    writer.add_rows(run[0].source.split, rows.pixels, labels, rows.meta, rows.checksums, rows.descriptors)
    if job.progress is not None:
        job.progress(len(run))
    return [a.source for a in run]
