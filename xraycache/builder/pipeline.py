"""The build, one straight line: scan -> prepare -> plan -> execute -> commit, then the report.

1. **scan** (``scan.py``): the files under SRC, their splits and labels from the folders.
2. **prepare** (``prepare.py``): CSV labels, DICOM identifiers, patient-level re-splits and folds, so that
   every file's split is known before any pixel is decoded (the output's splits are sized from it).
3. **plan** (``plan.py``): with an existing OUT of the same settings (``old_cache.py``), which images are
   copied from it and which files are decoded; no decoding.
4. **execute** (``execute.py``): the files decoded on every core (``workers.py``) and the reused images
   copied, streamed into one writer (``writer.py``) in scan order.
5. **commit** (``commit.py``): near-duplicates dropped or moved (``regroup.py``), the file rewritten where
   rows go (``rewrite.py``), made durable and renamed over OUT. A sharded build (``shards.py``) runs 4-5 per
   shard in parallel and joins the shards.

When OUT already holds exactly this build nothing is written; the report (``report.py``) is made once, at
the end, from what the scan, the plan and the execution say.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.atomic import remove_stale_temporaries
from ..core.errors import InputError, OptionError, SkipLog
from ..core.interrupts import interrupt_guard
from ..core.options import BuildOptions
from ..core.schema import FORMAT_VERSION, hdf5_versions, storable_path
from ..core.shard_files import shard_count
from ..core.version import __version__
from ..imaging.pil_install import pil_problem
from ..imaging.stack import imaging_stack
from .cluster import dask_cluster, scheduler_address
from .commit import commit
from .execute import execute, retry_skipped
from .job import BuildJob, Outcome, ProgressCallback
from .old_cache import OldCache, open_old
from .output import check_not_source, check_output, os_reason, output_bytes, output_lock
from .plan import Plan, backend_notes, plan_build
from .prepare import Prepared, prepare
from .report import BuildReport
from .scan import ScanResult, SourceFile, scan
from .shards import remove_stale_shards, write_sharded
from .workers import ForkedPool, worker_pool
from .writer import open_writer


def run_build(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: BuildOptions,
    *,
    progress: ProgressCallback | None = None,
    on_scan: Callable[[int], None] | None = None,
    dry_run: bool = False,
    command: str | None = None,
) -> BuildReport:
    """:func:`xraycache.build` with its options in one validated object: the only orchestrator of a build."""
    started = time.perf_counter()
    address = scheduler_address(options.run)
    out_path = Path(out)
    shards = options.output.shards
    # 1-2. scan and prepare: every file's label, patient, split and fold, before any pixel
    if options.sources.labels:  # the tables choose the images (the table modules load only then)
        from .table_scan import scan_tables

        found = scan_tables(src, options.sources)
    else:
        found = scan(src, options.sources.classes)
    prepared = prepare(found, options.sources)
    found = prepared.found
    if on_scan is not None:  # e.g. a progress bar learning its total: the files a build will go through
        on_scan(len(found.files))
    warnings = _warnings(found, options)
    check_output(out_path)
    check_not_source(out_path, found.root, [f.path for f in found.files] + [path for path, _ in found.unlabeled])
    if options.sources.drop_duplicates and shards > 1:
        raise OptionError(
            "{drop_duplicates:name} compares every image with every other: use it without {shards:name}",
            drop_duplicates=True,
            shards=shards,
        )
    attrs = {**_attrs(found, command), **options.settings(), **prepared.attrs}
    if dry_run:  # what the real run would do, or the error it would stop with; nothing decoded or written
        job = _job(found, out_path, options, attrs, progress, None, options.run.workers())
        old, plan = _plan(job, options)
        warnings += [] if old is None else backend_notes(old, plan, job.attrs["imaging_backend"])
        return _report(job, prepared, options, warnings, started, plan, None)
    with (
        interrupt_guard(),  # around the rename and the pool's end: see core.interrupts
        # before any file is opened; none for sharded builds, whose shards loky workers write
        worker_pool(options.run.workers(), options.run.backend, options.resize, options.run.file_timeout)
        if shards <= 1
        else contextlib.nullcontext() as pool,
        output_lock(out_path),
        dask_cluster(
            address,
            found.root,
            found.files[0].path if found.files else None,
            options.run.scheduler_timeout,
            out_path.parent.absolute() if shards > 1 else None,
        ) as threads,
    ):
        n_jobs = options.run.workers() if threads is None else max(2, threads)  # dask: every worker thread
        job = _job(found, out_path, options, attrs, progress, pool, n_jobs)
        remove_stale_temporaries(out_path)
        # 3. plan: what to copy from the old cache and what to decode
        old, plan = _plan(job, options)
        warnings += [] if old is None else backend_notes(old, plan, job.attrs["imaging_backend"])
        try:
            outcome = _execute_and_commit(job, plan, old, shards)  # 4-5
        except OSError as exc:
            raise InputError(f"cannot write {out_path}: {os_reason(exc)}") from None
        remove_stale_shards(out_path)
    return _report(job, prepared, options, warnings, started, plan, outcome)


def _job(
    found: ScanResult,
    out: Path,
    options: BuildOptions,
    attrs: dict[str, Any],
    progress: ProgressCallback | None,
    pool: ForkedPool | None,
    n_jobs: int,
) -> BuildJob:
    """What every step of this build shares; its skipped rows start with the files the scan gave no label."""
    shards = options.output.shards
    skips = SkipLog(options.run.strict)
    skips.extend(found.unlabeled_rows())
    return BuildJob(
        found,
        out,
        options.resize,
        n_jobs,
        options.output.compression,
        attrs,
        skips,
        progress,
        pool,
        drop_duplicates=options.sources.drop_duplicates,
        group_near_duplicates=options.sources.resplit is not None and shards <= 1,
        group_folds=options.sources.folds > 0 and shards <= 1,
        fixed_splits=frozenset({"test"}) if options.sources.keep_test else frozenset(),
    )


def _plan(job: BuildJob, options: BuildOptions) -> tuple[OldCache | None, Plan]:
    """Step 3: the old OUT, if this build updates it (InputError when it was built otherwise), and the plan."""
    out = job.out
    old = None if options.output.overwrite or not out.exists() else open_old(out, job.attrs)
    same_layout = old is not None and shard_count(old.attrs) == options.output.shards  # one file, or as many shards
    # --resplit may have moved a reused image to the split of the near-duplicates it joins
    return old, plan_build(
        job.found,
        old,
        movable=job.group_near_duplicates,
        same_layout=same_layout,
        resize=job.resize,
        backend=job.attrs["imaging_backend"],
    )


def _execute_and_commit(job: BuildJob, plan: Plan, old: OldCache | None, shards: int) -> Outcome:
    """Steps 4 and 5: decode and write what the plan says into a new file, then rename it over OUT; or
    nothing, when OUT already holds this build."""
    decoded, unchanged = retry_skipped(job, plan, old)
    if unchanged:  # nothing to write; the old skipped list is this build's (a strict build still fails on it)
        assert old is not None
        job.skips.entries[:] = old.skipped
        job.skips.check()
        if job.progress is not None:
            job.progress(len(job.found.files))
        return Outcome("unchanged", plan.reused_files, added=plan.added)
    old_path = None if old is None else old.path
    if shards > 1:  # each shard: steps 4 and 5 in a worker of its own, then a file that joins them
        return write_sharded(job, plan, decoded, old_path, shards)
    with open_writer(job) as writer:  # aborted (OUT untouched) if anything below fails
        written = execute(job, plan, decoded, old_path, writer)
        return commit(job, writer, written, plan)


def _warnings(found: ScanResult, options: BuildOptions) -> list[str]:
    """What the report says without failing the build: one class only, two PILs, sharding without regrouping."""
    warnings = []
    warning = None if options.sources.labels else found.one_class_warning()
    if warning is not None:
        warnings.append(warning)
    if found.table is not None and found.table.selection.label_col is None:
        warnings.append(
            "no labels: no --label-col given and no table has a column 'label', so every image is 'unlabeled'; "
            f"the columns: {', '.join(found.table.selection.columns)}"
        )
    pil = pil_problem()  # here PIL imports: only "both Pillow and Pillow-SIMD installed" is left to say
    if pil is not None:
        warnings.append(pil[0])
    if options.output.shards > 1 and (options.sources.resplit is not None or options.sources.folds):
        warnings.append(
            "--shards: near-duplicates are reported, but --resplit and --folds do not keep them together "
            "(each shard is written on its own); build without --shards for that"
        )
    return warnings


def _report(
    job: BuildJob,
    prepared: Prepared,
    options: BuildOptions,
    warnings: list[str],
    started: float,
    plan: Plan,
    outcome: Outcome | None,
) -> BuildReport:
    """The build's report, from the scan, the plan and (None for a dry run) what the execution did."""
    found = job.found
    dry_run = outcome is None
    report = BuildReport(
        src=str(found.root),
        out=str(job.out),
        layout=found.layout,
        label_names=list(found.label_names),
        counts=_count(found, found.files if outcome is None else outcome.kept),
        split_images=_split_images(found, found.files if outcome is None else outcome.kept),
        skipped=job.skips.entries,
        ignored=[storable_path(p) for p in found.ignored],
        dry_run=dry_run,
        jobs=job.n_jobs,
        settings={**options.settings(), **{k: v for k, v in prepared.attrs.items() if k != "pseudonym_key_id"}},
        backend=imaging_stack().imaging,
        mode="dry-run" if outcome is None else outcome.mode,
        csv_rows_without_file=prepared.rows_without_file,
        warnings=warnings,
    )
    if found.table is not None:
        from .table_scan import table_summary

        report.tables = table_summary(found.table, found.files if outcome is None else outcome.kept)
    if plan.incremental:
        report.reused, report.touched, report.removed = plan.reused, plan.touched, plan.removed
        report.added, report.changed = plan.added, plan.changed
    if outcome is None:
        report.retried = len(plan.retried) if plan.incremental else 0
        report.would = "cold" if not plan.incremental else "unchanged" if plan.unchanged else "incremental"
        if not plan.incremental:
            report.added = len(found.files)
    else:
        report.dropped_duplicates, report.moved_duplicates = outcome.dropped_duplicates, outcome.moved_duplicates
        report.added = outcome.added
        emptied = [
            s for s, n in _count(found, found.files).items() if sum(n.values()) and not sum(report.counts[s].values())
        ]
        if emptied and (report.dropped_duplicates or report.moved_duplicates):
            report.warnings.append(
                f"split(s) {', '.join(emptied)} hold no image after near-duplicates were "
                f"{'dropped' if report.dropped_duplicates else 'moved'}: every image there copied one elsewhere"
            )
        report.input_bytes = sum(_size_or_zero(found.root / f.path) for f in outcome.kept)
        report.output_bytes = output_bytes(job.out)  # with its shard files, if any
    report.seconds = time.perf_counter() - started
    return report


def _attrs(found: ScanResult, command: str | None) -> dict[str, Any]:
    """The root attributes that record provenance and the software that made the file (besides the options)."""
    stack = imaging_stack()
    h5py_version, hdf5_version = hdf5_versions()
    return {
        "tool_version": __version__,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_id": uuid.uuid4().hex,  # which build wrote the file: readers check it when they open it again
        "layout": found.layout,
        "imaging_backend": stack.imaging,
        "libjpeg": stack.libjpeg,
        "h5py_version": h5py_version,
        "hdf5_version": hdf5_version,
        "source_root": storable_path(str(found.root)),
        "command": storable_path(command or " ".join(sys.argv)),
        "ignored_files": len(found.ignored),
    }


def _count(found: ScanResult, files: list[SourceFile]) -> dict[str, dict[str, int]]:
    counts = {split: dict.fromkeys(found.label_names, 0) for split in found.splits}
    for f in files:
        for label in f.labels if found.multi_label else (f.label,):  # multi-label: once per label it has
            counts[f.split][found.label_names[label]] += 1
    return counts


def _split_images(found: ScanResult, files: list[SourceFile]) -> dict[str, int]:
    """Images per split, each once (``_count`` counts a multi-label image once per label it has)."""
    counts = dict.fromkeys(found.splits, 0)
    for f in files:
        counts[f.split] += 1
    return counts


def _size_or_zero(path: Path) -> int:
    """The size of the source file at ``path``, 0 when it cannot be read (gone since the scan, say)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0
