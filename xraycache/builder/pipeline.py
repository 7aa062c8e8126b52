"""The build: scan SRC, settle labels and splits, decode on all cores, stream into one HDF5 file.

When OUT already holds a cache of the same SRC built with the same settings, the build is
incremental: unchanged images are copied from it in blocks, only new and changed files are
decoded, and when nothing changed nothing is written at all (see ``plan.py``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.atomic import remove_stale_temporaries
from ..core.errors import InputError, NotACacheError, SkipLog
from ..core.format import FORMAT_VERSION, hdf5_versions, shard_count, storable_path
from ..core.interrupts import interrupt_guard
from ..core.options import BuildOptions
from ..core.version import __version__
from ..imaging.pil_install import pil_problem
from ..imaging.stack import imaging_stack
from .cluster import dask_cluster, scheduler_address
from .plan import OldCache, backend_notes, plan_build, plan_rebuild, read_old_cache, settings_diff, up_to_date
from .prepare import prepare
from .report import BuildJob, BuildReport, ProgressCallback
from .scan import ScanResult, SourceFile, scan
from .shards import build_sharded, output_bytes, remove_stale_shards
from .workers import worker_pool
from .writer import write_plan


def build(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: BuildOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    on_scan: Callable[[int], None] | None = None,
    dry_run: bool = False,
    command: str | None = None,
    **settings: Any,
) -> BuildReport:
    """Build (or bring up to date) one HDF5 cache of every readable image under ``src``.

    Options come as a :class:`BuildOptions` or as flat keywords, e.g. ``build(src, out, size=128, jobs=2)``
    (keywords change ``options`` when both are given; see ``BuildOptions`` for every option). If ``out``
    holds a cache of the same ``src`` built with the same settings, only new and changed files are decoded
    (nothing is written when nothing changed); ``overwrite=True`` forces a cold build. Raises InputError for
    unusable options, paths or layouts, for an ``out`` built with other settings, and for write errors (OUT
    is then untouched); StrictError when ``strict=True`` and some file could not be taken (OUT is then not
    written). ``progress(n)`` is called as images are done; ``on_scan(total)`` once, after the scan, with
    the number of files the build goes through; ``dry_run`` scans and reports without decoding.
    """
    base = options if options is not None else BuildOptions()
    return run_build(
        src, out, base.replace(**settings), progress=progress, on_scan=on_scan, dry_run=dry_run, command=command
    )


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
    """:func:`build` with its options in one validated object."""
    address = scheduler_address(options.run)
    started = time.perf_counter()
    out_path = Path(out)
    prepared = prepare(scan(src, options.sources.classes), options.sources)
    found = prepared.found
    if on_scan is not None:  # e.g. a progress bar learning its total: the files a build will go through
        on_scan(len(found.files))
    n_jobs = options.run.workers()
    skips = SkipLog(options.run.strict)
    skips.extend(found.unlabeled_rows())
    report = BuildReport(
        src=str(found.root),
        out=str(out_path),
        layout=found.layout,
        label_names=list(found.label_names),
        counts=_count(found, found.files),
        skipped=skips.entries,
        ignored=[storable_path(p) for p in found.ignored],
        dry_run=dry_run,
        jobs=n_jobs,
        settings={**options.settings(), **{k: v for k, v in prepared.attrs.items() if k != "pseudonym_key_id"}},
        backend=imaging_stack().imaging,
        mode="dry-run" if dry_run else "cold",
        csv_rows_without_file=prepared.rows_without_file,
    )
    warning = None if options.sources.labels else found.one_class_warning()
    if warning is not None:
        report.warnings.append(warning)
    pil = pil_problem()  # here PIL imports: only "both Pillow and Pillow-SIMD installed" is left to say
    if pil is not None:
        report.warnings.append(pil[0])
    _check_output(out_path)
    if options.sources.drop_duplicates and options.output.shards > 1:
        raise InputError("--drop-duplicates compares every image with every other: use it without --shards")
    if options.output.shards > 1 and (options.sources.resplit is not None or options.sources.folds):
        report.warnings.append(
            "--shards: near-duplicates are reported, but --resplit and --folds do not keep them together "
            "(each shard is written on its own); build without --shards for that"
        )
    attrs = {**_attrs(found, command), **options.settings(), **prepared.attrs}
    if dry_run:  # what the real run would do, or the error it would stop with; nothing decoded or written
        _plan_dry_run(report, found, out_path, attrs, options)
        report.seconds = time.perf_counter() - started
        return report
    probe = found.files[0].path if found.files else None
    shards = options.output.shards
    write_dir = out_path.parent.absolute() if shards > 1 else None
    with (
        interrupt_guard(),  # around the rename and the pool's end: see core.interrupts
        # before any file is opened; none for sharded builds, whose shards loky workers write
        worker_pool(n_jobs if shards <= 1 else 1, options.run.backend, options.resize) as pool,
        output_lock(out_path),
        dask_cluster(address, found.root, probe, options.run.scheduler_timeout, write_dir) as threads,
    ):
        if threads is not None:  # on dask: every worker thread of the cluster
            n_jobs = report.jobs = max(2, threads)
        remove_stale_temporaries(out_path)
        old = None if options.output.overwrite or not out_path.exists() else _open_old(out_path, attrs)
        try:
            job = BuildJob(
                found,
                out_path,
                options.resize,
                n_jobs,
                options.output.compression,
                attrs,
                report,
                skips,
                progress,
                pool=pool,
                drop_duplicates=options.sources.drop_duplicates,
                group_near_duplicates=options.sources.resplit is not None and shards <= 1,
                group_folds=options.sources.folds > 0 and shards <= 1,
            )
            if shards > 1 or (old is not None and shard_count(old.attrs) > 1):
                written = build_sharded(job, old, shards)  # sharded output, or a sharded OUT rewritten
            else:
                written = _build_single(job, old)
        except OSError as exc:
            raise InputError(f"cannot write {out_path}: {os_reason(exc)}") from None
        remove_stale_shards(out_path)
    report.counts = _count(found, written)
    emptied = [
        s for s, n in _count(found, found.files).items() if sum(n.values()) and not sum(report.counts[s].values())
    ]
    if emptied and (report.dropped_duplicates or report.moved_duplicates):
        report.warnings.append(
            f"split(s) {', '.join(emptied)} hold no image after near-duplicates were "
            f"{'dropped' if report.dropped_duplicates else 'moved'}: every image there copied one elsewhere"
        )
    if report.mode == "cold":
        report.added = len(written)  # every image written was decoded
    report.input_bytes = sum(_size_or_zero(found.root / f.path) for f in written)
    report.output_bytes = output_bytes(out_path)  # with its shard files, if any
    report.seconds = time.perf_counter() - started
    return report


def _build_single(job: BuildJob, old: OldCache | None) -> list[SourceFile]:
    """Plan (cold or incremental), then write one file; returns the files whose images OUT holds."""
    plan = plan_build(job, old, same_layout=True)
    if plan.up_to_date:
        return plan.reused_files
    return write_plan(job, plan, None if old is None else old.path)


def _plan_dry_run(
    report: BuildReport, found: ScanResult, out: Path, attrs: dict[str, Any], options: BuildOptions
) -> None:
    """Fill a dry run's report with what the real run would do (``report.would``): a cold build, an
    incremental one (and its counts) or nothing (OUT up to date); InputError where the real run stops."""
    if options.output.overwrite or not out.exists():
        report.would, report.added = "cold", len(found.files)
        return
    old = _open_old(out, attrs)
    movable = options.sources.resplit is not None and options.output.shards <= 1  # as run_build's BuildJob
    plan = plan_rebuild(found, old, movable=movable, resize=options.resize)
    report.warnings.extend(backend_notes(old, plan))
    report.reused, report.touched, report.removed = plan.reused, plan.touched, plan.removed
    report.added, report.changed = plan.added, plan.changed
    report.retried = len(plan.retried)
    same_layout = shard_count(old.attrs) == options.output.shards
    unchanged = same_layout and not plan.retried and up_to_date(found, old, plan)
    report.would = "unchanged" if unchanged else "incremental"


def _check_output(out: Path) -> None:
    if out.is_dir():
        raise InputError(f"output {out} is a folder; give a file name such as {out / 'cache.h5'}")
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"cannot write {out}: folder {out.parent} is not writable")


LOCK_TRIES = 5


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on OUT for the whole build, so two builds never write it at once.

    The lock is ``.OUT.lock`` beside OUT, opened without following links and without blocking (a FIFO or
    a link planted there is refused), readable by everyone (flock needs no write access, so another user of
    a shared folder can take it next), and deleted by the build that holds it: no lock file stays behind.
    A build that locked a file another one had just deleted finds the name gone or pointing elsewhere, and
    tries again.
    """
    lock_path = out.parent / f".{out.name}.lock"
    flags = os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(LOCK_TRIES):
        try:
            fd = os.open(lock_path, flags, 0o444)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError(f"cannot lock {out}: {lock_path.name} is a symbolic link; remove it") from None
            raise InputError(f"cannot lock {out}: {lock_path.name}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"cannot lock {out}: {lock_path.name} is not a regular file; remove it")
            if info.st_uid == os.geteuid():
                os.fchmod(fd, 0o444)  # the umask may have taken the others' read bit
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(f"another xraycache build is writing {out}; wait for it to finish") from None
            try:
                now = os.stat(lock_path, follow_symlinks=False)
            except FileNotFoundError:
                continue  # the build before this one deleted it after we opened it: try again
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                continue
            try:
                yield
            finally:
                with contextlib.suppress(OSError):  # in a folder this user may not delete in: it stays
                    os.unlink(lock_path)
            return
        finally:
            os.close(fd)
    raise InputError(f"cannot lock {out}: {lock_path.name} keeps changing; is another build starting?")


def os_reason(exc: OSError) -> str:
    """The short reason of an OS error, also out of HDF5's long messages (``error message = '...'``)."""
    text = f"{exc.strerror or ''} {exc}"
    match = re.search(r"error message = '([^']+)'", text) or re.search(r"errno = (\d+)", text)
    if match:
        value = match.group(1)
        return os.strerror(int(value)) if value.isdigit() else value
    if exc.errno and not exc.strerror:
        return os.strerror(exc.errno)
    first = (exc.strerror or str(exc) or type(exc).__name__).splitlines()[0]
    return first if len(first) <= 200 else first[:200] + "..."


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _open_old(out: Path, attrs: dict[str, Any]) -> OldCache:
    """The existing OUT as a cache to reuse; InputError when it is not one, or not built the same way."""
    try:
        old = read_old_cache(out)
    except NotACacheError as exc:
        raise InputError(f"{out} exists and is not a cache this build can update ({exc}); pass --overwrite") from None
    version = old.attrs.get("format_version", 0)  # a whole number (open_cache refuses others); none: the oldest
    if version < FORMAT_VERSION:
        raise InputError(
            f"{out} was written in cache format {version}, older than this xraycache's {FORMAT_VERSION} "
            "(which stores near-duplicate descriptors, reads patient ids from NIH file names and checksums "
            "images with CRC-32); pass --overwrite to rebuild it from scratch"
        )
    diffs = settings_diff(old.attrs, attrs)
    if diffs:
        raise InputError(
            f"{out} was built with other settings ({'; '.join(diffs)}); "
            "pass --overwrite to rebuild it from scratch, or choose another output file"
        )
    return old


def _attrs(found: ScanResult, command: str | None) -> dict[str, Any]:
    """The root attributes that record provenance and the software that made the file (besides the options)."""
    stack = imaging_stack()
    h5py_version, hdf5_version = hdf5_versions()
    return {
        "tool_version": __version__,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
