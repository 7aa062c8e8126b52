"""The build: scan SRC, decode and resize on all cores with joblib, stream into one HDF5 file.

When OUT already holds a cache of the same SRC made with the same settings, the build is
incremental: unchanged images are copied from it in blocks, only new and changed files are
decoded, and when nothing changed nothing is written at all (see ``incremental.py``).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import joblib
import numpy as np

from . import __version__
from .backend import backend_info
from .dask_backend import DEFAULT_CONNECT_TIMEOUT, dask_cluster, parallel_config, validate_backend
from .decode import (
    DEFAULT_FILTER,
    DEFAULT_MAX_PIXELS,
    FILTERS,
    DecodedImage,
    DecodeError,
    FilterName,
    Fit,
    ResizeSpec,
    decode_file,
)
from .errors import InputError, NotACacheError, StrictError
from .incremental import Action, OldCache, Plan, plan_rebuild, read_old_cache, settings_diff
from .scan import Classes, ScanResult, SourceFile, scan
from .shards import build_layout, output_bytes, remove_stale_shards, shard_count, validate_shards
from .sources import SourceOptions, prepare
from .window import OutDtype, Window
from .writer import FORMAT_VERSION, CacheWriter, Compression, remove_stale_temporaries, storable_path

ProgressCallback = Callable[[int], None]
# Files per joblib task. Not "auto": joblib grows auto batches until a task lasts ~1 s, which for
# small images means thousands of decoded arrays per result message, and peak memory that grew with
# the dataset (measured, 320 px JPEGs: 300 -> 374 -> 409 MB for 1k, 10k, 30k images). With 32:
# 280 -> 302 MB for 1k and 10k, at the same speed (16 was ~8% slower on those small images).
FILES_PER_TASK = 32
FITS = ("stretch", "pad", "crop")
COMPRESSIONS = ("none", "gzip", "lzf")
CLASS_MODES = ("auto", "binary", "three")
COPY_BLOCK_BYTES = 32 << 20  # images copied from an old cache per read/write, at most
PARENT_POLL_SECONDS = 0.25  # how often a worker checks that the build process is still alive


@dataclass
class BuildReport:
    """What a build did: counts per split and label, what it skipped and ignored, and how fast.

    ``mode`` is ``cold`` (everything decoded), ``incremental`` (an old cache reused in part),
    ``unchanged`` (the old cache was up to date: nothing written) or ``dry-run``.
    """

    src: str
    out: str
    layout: str
    label_names: list[str]
    counts: dict[str, dict[str, int]]  # split -> label -> images written (or to write, dry run)
    skipped: list[dict[str, str]] = field(default_factory=list)  # path, split, reason
    ignored: list[str] = field(default_factory=list)
    dry_run: bool = False
    jobs: int = 1
    seconds: float = 0.0
    input_bytes: int = 0
    output_bytes: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    backend: str = ""
    mode: str = "cold"
    reused: int = 0  # images copied from the old cache (touched ones included)
    touched: int = 0  # reused although their mtime moved: same content hash
    added: int = 0  # files new since the old cache (decoded)
    changed: int = 0  # files whose content changed (decoded again)
    removed: int = 0  # images of the old cache whose file is gone
    csv_rows_without_file: list[str] = field(default_factory=list)  # --labels rows that named no image

    @property
    def images(self) -> int:
        """Images written (or, for a dry run, found)."""
        return sum(sum(by_label.values()) for by_label in self.counts.values())

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the derived totals."""
        data = asdict(self)
        data["images"] = self.images
        data["images_per_second"] = round(self.images_per_second, 1)
        return data


@dataclass
class BuildJob:
    """What every stage of one build needs: the scanned files, OUT, how pixels are made, the workers,
    the file attributes, the report being filled, and the progress/strict options."""

    found: ScanResult
    out: Path
    spec: ResizeSpec
    n_jobs: int
    compression: Compression
    attrs: dict[str, Any]
    report: BuildReport
    progress: ProgressCallback | None = None
    strict: bool = False


def _decode_task(root: str, source: SourceFile, spec: ResizeSpec) -> DecodedImage | str:
    """Worker entry point: the decoded image, or the reason the file was skipped (never raises)."""
    path = os.path.join(root, source.path)
    try:
        return decode_file(path, spec)
    except DecodeError as exc:
        if os.path.islink(path) and not os.path.exists(path):
            try:
                os.stat(path)
            except OSError as error:
                if error.errno == errno.ELOOP:
                    return "symlink loop: the link never reaches a file"
            return "broken symlink: its target does not exist"
        return str(exc)
    except Exception as exc:
        return f"unexpected {type(exc).__name__}: {exc}"


def _validate(size: int, fit: str, filter: str, compression: str, classes: str, jobs: int) -> None:
    if not 8 <= size <= 4096:
        raise InputError(f"--size {size} is out of range; use 8 to 4096 pixels")
    for name, value, allowed in (
        ("fit", fit, FITS),
        ("filter", filter, FILTERS),
        ("compression", compression, COMPRESSIONS),
        ("classes", classes, CLASS_MODES),
    ):
        if value not in allowed:
            raise InputError(f"--{name} {value!r} is not one of {', '.join(allowed)}")
    if jobs == 0 or jobs < -os.cpu_count():  # type: ignore[operator]
        raise InputError(f"--jobs {jobs}: use a positive number of workers, or -1 for all cores")


def _check_output(out: Path) -> None:
    if out.is_dir():
        raise InputError(f"output {out} is a folder; give a file name such as {out / 'cache.h5'}")
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"cannot write {out}: folder {out.parent} is not writable")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on OUT for the whole build, so two builds never write it at once."""
    lock_path = out.parent / f".{out.name}.lock"
    try:
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the whole block
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another xraycache build is writing {out}; wait for it to finish") from None
        yield
    finally:
        handle.close()


@contextmanager
def interrupt_guard() -> Iterator[None]:
    """Ctrl-C during a build: KeyboardInterrupt as usual, minus loky's noise on the way out.

    Killing the pool mid-dispatch can make loky's manager thread die with a KeyError traceback
    (a race inside loky); once the user has interrupted, that thread's exceptions are dropped, so
    the CLI prints its one line. Only active in the main thread, and restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = threading.Event()
    previous_hook = threading.excepthook

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else ""
        if interrupted.is_set() and name.startswith("ExecutorManagerThread"):
            return
        previous_hook(args)

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    threading.excepthook = hook
    try:
        yield
    except KeyboardInterrupt:
        interrupted.set()
        raise
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        threading.excepthook = previous_hook


def _resolve_jobs(jobs: int) -> int:
    cpus = os.cpu_count() or 1
    return max(1, cpus + 1 + jobs) if jobs < 0 else jobs


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


def build(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    size: int = 256,
    fit: Fit = "stretch",
    classes: Classes = "auto",
    filter: FilterName = DEFAULT_FILTER,
    jobs: int = -1,
    compression: Compression = "none",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
    strict: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    on_scan: Callable[[int], None] | None = None,
    command: str | None = None,
    window: Window = "auto",
    dtype: OutDtype = "uint8",
    labels: str | os.PathLike[str] | None = None,
    path_col: str = "path",
    label_col: str = "label",
    label_sep: str | None = None,
    patient_col: str | None = None,
    resplit: str | None = None,
    seed: int = 0,
    folds: int = 0,
    keep_identifiers: bool = False,
    backend: str = "loky",
    scheduler: str | None = None,
    scheduler_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    shards: int = 1,
) -> BuildReport:
    """Build (or bring up to date) one HDF5 cache of every readable image under ``src``.

    If ``out`` holds a cache of the same ``src`` built with the same settings, only new and changed
    files are decoded (nothing is written when nothing changed); ``overwrite`` forces a cold build.
    Raises InputError for unusable arguments, paths or layouts, for an ``out`` built with other
    settings, and for write errors (OUT is then untouched); StrictError when ``strict`` is set and
    some file could not be decoded (OUT is then not written). ``progress(n)`` is called as images are
    done; ``on_scan(total)`` once, after the scan, with the number of files the build goes through.

    Other sources (see ``sources.py``): ``window``/``dtype`` set the high-bit-depth policy; ``labels`` (a CSV,
    with ``path_col``, ``label_col``, ``label_sep`` for multi-label and ``patient_col``) replaces the folder
    labels; ``resplit`` ("0.8,0.1,0.1") re-splits by patient with ``seed``; ``folds`` adds a fold column;
    DICOM patient/study identifiers are stored as keyed pseudonyms unless ``keep_identifiers``.

    Scaling out (see ``dask_backend.py``, ``shards.py``): ``backend="dask"`` decodes on the dask.distributed
    cluster at ``scheduler`` (or DASK_SCHEDULER_ADDRESS); ``shards=K`` writes K shard files in parallel,
    joined into OUT by HDF5 virtual datasets. Neither changes a stored pixel.
    """
    _validate(size, fit, filter, compression, classes, jobs)
    address = validate_backend(backend, scheduler)
    validate_shards(shards)
    started = time.perf_counter()
    out_path = Path(out)
    options = SourceOptions(
        window=window,
        dtype=dtype,
        labels=None if labels is None else str(labels),
        path_col=path_col,
        label_col=label_col,
        label_sep=label_sep,
        patient_col=patient_col,
        resplit=resplit,
        seed=seed,
        folds=folds,
        keep_identifiers=keep_identifiers,
    )
    options.validate()
    prepared = prepare(scan(src, classes), options)
    found = prepared.found
    if on_scan is not None:  # e.g. a progress bar learning its total: the files a build will go through
        on_scan(len(found.files))
    spec = ResizeSpec(size=size, fit=fit, filter=filter, max_pixels=max_pixels, window=window, dtype=dtype)
    n_jobs = _resolve_jobs(jobs)
    settings = {
        "size": size,
        "fit": fit,
        "classes": classes,
        "filter": filter,
        "compression": compression,
        "max_pixels": max_pixels,
        **{k: v for k, v in prepared.attrs.items() if k not in ("pseudonym_key_id", "labels_columns")},
    }
    report = BuildReport(
        src=str(found.root),
        out=str(out_path),
        layout=found.layout,
        label_names=list(found.label_names),
        counts=_count(found, found.files),
        skipped=[{"path": storable_path(p), "split": "", "reason": r} for p, r in found.unlabeled],
        ignored=[storable_path(p) for p in found.ignored],
        dry_run=dry_run,
        jobs=n_jobs,
        settings=settings,
        backend=backend_info().imaging,
        mode="dry-run" if dry_run else "cold",
        csv_rows_without_file=prepared.rows_without_file,
    )
    if dry_run:
        report.seconds = time.perf_counter() - started
        return report
    _check_output(out_path)
    attrs = _attrs(found, spec, compression, classes, command)
    attrs.update(prepared.attrs)
    probe = found.files[0].path if found.files else None
    write_dir = out_path.parent.absolute() if shards > 1 else None
    with (
        output_lock(out_path),
        interrupt_guard(),
        dask_cluster(address, found.root, probe, scheduler_timeout, write_dir) as threads,
    ):
        if threads is not None:  # on dask: every worker thread of the cluster
            n_jobs = report.jobs = max(2, threads)
        remove_stale_temporaries(out_path)
        old = None if overwrite or not out_path.exists() else _open_old(out_path, attrs)
        try:
            job = BuildJob(found, out_path, spec, n_jobs, compression, attrs, report, progress, strict)
            if shards > 1 or (old is not None and shard_count(old.attrs) > 1):
                written = build_layout(job, old, shards)  # sharded output, or a sharded OUT rewritten (shards.py)
            else:
                written = _build_locked(job, old)
        except OSError as exc:
            raise InputError(f"cannot write {out_path}: {os_reason(exc)}") from None
        remove_stale_shards(out_path)
    report.counts = _count(found, written)
    report.input_bytes = sum(_size_or_zero(found.root / f.path) for f in written)
    report.output_bytes = output_bytes(out_path)  # with its shard files, if any
    report.seconds = time.perf_counter() - started
    return report


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
    diffs = settings_diff(old.attrs, attrs)
    if diffs:
        raise InputError(
            f"{out} was built with other settings ({'; '.join(diffs)}); "
            "pass --overwrite to rebuild it from scratch, or choose another output file"
        )
    return old


def _attrs(
    found: ScanResult, spec: ResizeSpec, compression: Compression, classes: str, command: str | None
) -> dict[str, Any]:
    """The root attributes of the cache file: settings, provenance and the software that made it."""
    info = backend_info()
    return {
        "tool_version": __version__,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": spec.size,
        "fit": spec.fit,
        "filter": spec.filter,
        "classes": classes,
        "layout": found.layout,
        "compression": compression,
        "max_pixels": spec.max_pixels,
        "imaging_backend": info.imaging,
        "libjpeg": info.libjpeg,
        "h5py_version": info.h5py,
        "hdf5_version": info.hdf5,
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


def _decode_all(root: str, files: list[SourceFile], spec: ResizeSpec, n_jobs: int) -> Iterator[DecodedImage | str]:
    """Decode ``files`` on ``n_jobs`` workers, yielding results in order (no pool for no work)."""
    if not files:
        return iter(())
    if n_jobs == 1 or len(files) == 1:
        return (_decode_task(root, f, spec) for f in files)
    # loky processes, or the dask cluster (--backend dask)
    config, n_jobs = parallel_config(n_jobs, worker_initializer())
    with config:
        parallel = joblib.Parallel(
            n_jobs=n_jobs, return_as="generator", batch_size=FILES_PER_TASK, pre_dispatch="4 * n_jobs"
        )
    return iter(parallel(joblib.delayed(_decode_task)(root, f, spec) for f in files))


def worker_initializer() -> Callable[[], None]:
    """The workers' initializer for this process: the same object on every call, because joblib keeps
    its loky pool only while the initializer is unchanged (a new one cost ~0.55 s CPU per build)."""
    return _initializer_for(os.getpid())


@functools.cache
def _initializer_for(parent: int) -> Callable[[], None]:
    return functools.partial(_worker_init, parent)


def _worker_init(parent: int) -> None:
    """Set up a worker: ignore SIGINT, and exit when the build process is gone.

    Ctrl-C reaches the whole process group; only the main process acts on it (it stops the pool and
    removes the temporary file), so workers print no tracebacks. A build killed with SIGKILL cannot
    stop its pool, and idle loky workers would wait forever: a watchdog thread ends them instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # ``parent`` comes from the build itself: a worker that starts after the build died sees ppid 1.
    threading.Thread(target=_exit_with_parent, args=(parent,), name="xraycache-parent-watchdog", daemon=True).start()


def _exit_with_parent(parent: int, interval: float = PARENT_POLL_SECONDS) -> None:
    """Exit this worker as soon as its parent process is gone (it is then re-parented)."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def _build_locked(job: BuildJob, old: OldCache | None) -> list[SourceFile]:
    """Plan (cold or incremental), then write; returns the files whose images OUT holds."""
    plan, retried, kept = plan_build(job, old, same_layout=True)
    if kept is not None:
        return kept
    return _write(job, plan, old, retried)


def plan_build(
    job: BuildJob, old: OldCache | None, *, same_layout: bool
) -> tuple[Plan, dict[str, DecodedImage | str], list[SourceFile] | None]:
    """What a build must do: (plan, files decoded while planning, kept files if OUT is already up to date).

    Cold: every file is new. Incremental: reuse what the old cache holds; files skipped last time are
    decoded again first, and if they still fail the same way, nothing else moved and ``same_layout``
    (one file vs shards) holds, OUT is up to date and is left untouched (kept is then not None).
    Shared by the single-file and the sharded build (shards.py).
    """
    found, report = job.found, job.report
    if old is None:
        return Plan([Action(f) for f in found.files], added=len(found.files)), {}, None
    plan = plan_rebuild(found, old)
    report.mode = "incremental"
    report.reused, report.touched, report.removed = plan.reused, plan.touched, plan.removed
    report.added, report.changed = plan.added, plan.changed
    results = _decode_all(str(found.root), plan.retried, job.spec, job.n_jobs)
    retried = dict(zip((f.path for f in plan.retried), results, strict=True))
    report.added += sum(1 for result in retried.values() if not isinstance(result, str))
    if not (same_layout and _up_to_date(found, old, plan, retried)):
        return plan, retried, None
    report.mode = "unchanged"
    report.skipped = [{"path": p, "split": s, "reason": r} for p, s, r in old.skipped]
    if job.strict and report.skipped:
        raise StrictError(_strict_message(report))
    if job.progress is not None:
        job.progress(len(found.files))
    return plan, retried, [a.source for a in plan.actions if a.reuse]


def _up_to_date(found: ScanResult, old: OldCache, plan: Plan, retried: dict[str, DecodedImage | str]) -> bool:
    """True when a rebuild would write the same datasets the old cache holds."""
    if plan.added or plan.changed or plan.removed or plan.touched:
        return False
    if any(not isinstance(result, str) for result in retried.values()):
        return False
    skipped = [(storable_path(p), "", r) for p, r in found.unlabeled]
    skipped += [(storable_path(f.path), f.split, str(retried[f.path])) for f in plan.retried]
    return (
        skipped == old.skipped
        and tuple(found.label_names) == old.label_names
        and found.layout == old.attrs.get("layout")
        and list(found.splits) == list(old.attrs.get("splits", []))
        and len(found.ignored) == old.attrs.get("ignored_files")
    )


def _write(job: BuildJob, plan: Plan, old: OldCache | None, decoded: dict[str, DecodedImage | str]) -> list[SourceFile]:
    """Stream every file of the plan into a new cache, in scan order: copied runs and decoded images.

    Files already in ``decoded`` are not decoded again; the rest of the non-reused files go to the
    worker pool. Returns the files kept.
    """
    found, spec, report, progress = job.found, job.spec, job.report, job.progress
    capacities = {split: 0 for split in found.splits}
    for f in found.files:
        capacities[f.split] += 1
    kept: list[SourceFile] = []
    root = str(found.root)
    to_decode = [a.source for a in plan.actions if not a.reuse and a.source.path not in decoded]
    block_rows = max(1, COPY_BLOCK_BYTES // (spec.size * spec.size))
    old_file = h5py.File(old.path, "r") if old is not None else None
    try:
        with CacheWriter(
            job.out,
            capacities=capacities,
            label_names=found.label_names,
            image_shape=(spec.size, spec.size),
            attrs=job.attrs,
            compression=job.compression,
            dtype=spec.dtype,
            multi_label=found.multi_label,
        ) as writer:
            for path, reason in found.unlabeled:
                writer.add_skipped(path, "", reason)
            results = _decode_all(root, to_decode, spec, job.n_jobs)
            run: list[Action] = []
            for action in plan.actions:
                if action.reuse:
                    if run and not _extends(run, action, block_rows):
                        kept += _copy_run(old_file, writer, run, progress)
                        run = []
                    run.append(action)
                    continue
                if run:
                    kept += _copy_run(old_file, writer, run, progress)
                    run = []
                source = action.source
                result = decoded[source.path] if source.path in decoded else next(results)
                if isinstance(result, str):
                    writer.add_skipped(source.path, source.split, result)
                    report.skipped.append({"path": storable_path(source.path), "split": source.split, "reason": result})
                else:
                    writer.add(result, source)
                    kept.append(source)
                if progress is not None:
                    progress(1)
            if run:
                kept += _copy_run(old_file, writer, run, progress)
            if job.strict and report.skipped:
                raise StrictError(_strict_message(report))  # the writer aborts: OUT is not written
            if old_file is not None:
                old_file.close()
            writer.commit()
    finally:
        if old_file is not None:
            old_file.close()
    return kept


def _extends(run: list[Action], action: Action, block_rows: int) -> bool:
    """Whether ``action`` continues ``run`` as one contiguous slice of the same old split."""
    last = run[-1].old
    now = action.old
    assert last is not None and now is not None
    return len(run) < block_rows and now.split == last.split and now.index == last.index + 1


def _copy_run(
    old_file: h5py.File | None, writer: CacheWriter, run: list[Action], progress: ProgressCallback | None
) -> list[SourceFile]:
    """Copy one contiguous run of unchanged images (pixels, provenance, checksums) from the old cache."""
    assert old_file is not None
    first = run[0].old
    assert first is not None
    start, stop = first.index, first.index + len(run)
    group = old_file[first.split]
    meta: dict[str, np.ndarray] = {}
    for name in writer.columns:
        column = group["meta"][name]
        meta[name] = column.asstr()[start:stop] if h5py.check_string_dtype(column.dtype) else column[start:stop]
    meta["mtime_ns"] = np.array([a.mtime_ns for a in run], dtype=np.int64)
    checksums = group["checksums"][start:stop] if "checksums" in group else None
    labels = writer.label_rows([a.source for a in run])
    writer.add_rows(run[0].source.split, group["images"][start:stop], labels, meta, checksums)
    if progress is not None:
        progress(len(run))
    return [a.source for a in run]


def _strict_message(report: BuildReport) -> str:
    listed = "; ".join(f"{s['path']}: {s['reason']}" for s in report.skipped[:5])
    more = f" (and {len(report.skipped) - 5} more)" if len(report.skipped) > 5 else ""
    return f"--strict: {len(report.skipped)} file(s) could not be taken: {listed}{more}"
