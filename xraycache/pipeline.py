"""The build: scan SRC, decode and resize on all cores with joblib, stream into one HDF5 file."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import joblib

from . import __version__
from .backend import backend_info
from .decode import DEFAULT_FILTER, DEFAULT_MAX_PIXELS, FILTERS, DecodedImage, DecodeError, FilterName, Fit, ResizeSpec, decode_file
from .errors import InputError, StrictError
from .scan import Classes, ScanResult, SourceFile, scan
from .writer import CacheWriter, Compression, remove_stale_temporaries

ProgressCallback = Callable[[int], None]
FITS = ("stretch", "pad", "crop")
COMPRESSIONS = ("none", "gzip", "lzf")
CLASS_MODES = ("auto", "binary", "three")


@dataclass
class BuildReport:
    """What a build did: counts per split and label, what it skipped and ignored, and how fast."""

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


def _decode_task(root: str, source: SourceFile, spec: ResizeSpec) -> DecodedImage | str:
    """Worker entry point: the decoded image, or the reason the file was skipped (never raises)."""
    try:
        return decode_file(os.path.join(root, source.path), spec)
    except DecodeError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a bad file must never stop a build
        return f"unexpected {type(exc).__name__}: {exc}"


def _validate(size: int, fit: str, filter: str, compression: str, classes: str, jobs: int) -> None:
    if not 8 <= size <= 4096:
        raise InputError(f"--size {size} is out of range; use 8 to 4096 pixels")
    for name, value, allowed in (
        ("fit", fit, FITS),
        ("filter", filter, tuple(FILTERS)),
        ("compression", compression, COMPRESSIONS),
        ("classes", classes, CLASS_MODES),
    ):
        if value not in allowed:
            raise InputError(f"--{name} {value!r} is not one of {', '.join(allowed)}")
    if jobs == 0 or jobs < -os.cpu_count():  # type: ignore[operator]
        raise InputError(f"--jobs {jobs}: use a positive number of workers, or -1 for all cores")


def _check_output(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        raise InputError(f"output {out} is a folder; give a file name such as {out / 'cache.h5'}")
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"cannot write {out}: folder {out.parent} is not writable")
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on OUT for the whole build, so two builds never write it at once."""
    lock_path = out.parent / f".{out.name}.lock"
    try:
        handle = open(lock_path, "a+")
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


def _resolve_jobs(jobs: int) -> int:
    cpus = os.cpu_count() or 1
    return max(1, cpus + 1 + jobs) if jobs < 0 else jobs


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
    command: str | None = None,
) -> BuildReport:
    """Build one HDF5 cache of every readable image under ``src``; returns a BuildReport.

    Raises InputError for unusable arguments, paths or layouts, and StrictError when
    ``strict`` is set and some file could not be decoded (OUT is then not written).
    """
    _validate(size, fit, filter, compression, classes, jobs)
    started = time.perf_counter()
    out_path = Path(out)
    found = scan(src, classes)
    spec = ResizeSpec(size=size, fit=fit, filter=filter, max_pixels=max_pixels)
    n_jobs = _resolve_jobs(jobs)
    settings = {"size": size, "fit": fit, "classes": classes, "filter": filter, "compression": compression, "max_pixels": max_pixels}
    report = BuildReport(
        src=str(found.root),
        out=str(out_path),
        layout=found.layout,
        label_names=list(found.label_names),
        counts=_count(found, found.files),
        skipped=[{"path": p, "split": "", "reason": r} for p, r in found.unlabeled],
        ignored=found.ignored,
        dry_run=dry_run,
        jobs=n_jobs,
        settings=settings,
        backend=backend_info().imaging,
    )
    if dry_run:
        report.seconds = time.perf_counter() - started
        return report
    _check_output(out_path, overwrite)
    with output_lock(out_path):
        remove_stale_temporaries(out_path)
        written = _write(found, out_path, spec, n_jobs, compression, report, progress, command, strict)
    report.counts = _count(found, written)
    report.input_bytes = sum(os.path.getsize(found.root / f.path) for f in written)
    report.output_bytes = out_path.stat().st_size
    report.seconds = time.perf_counter() - started
    return report


def _count(found: ScanResult, files: list[SourceFile]) -> dict[str, dict[str, int]]:
    counts = {split: dict.fromkeys(found.label_names, 0) for split in found.splits}
    for f in files:
        counts[f.split][found.label_names[f.label]] += 1
    return counts


def _write(
    found: ScanResult,
    out: Path,
    spec: ResizeSpec,
    n_jobs: int,
    compression: Compression,
    report: BuildReport,
    progress: ProgressCallback | None,
    command: str | None,
    strict: bool,
) -> list[SourceFile]:
    """Decode every file in parallel and stream the results to a CacheWriter; returns the files kept."""
    info = backend_info()
    capacities = {split: 0 for split in found.splits}
    for f in found.files:
        capacities[f.split] += 1
    attrs = {
        "tool_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": spec.size,
        "fit": spec.fit,
        "filter": spec.filter,
        "classes": report.settings["classes"],
        "layout": found.layout,
        "compression": compression,
        "max_pixels": spec.max_pixels,
        "imaging_backend": info.imaging,
        "libjpeg": info.libjpeg,
        "h5py_version": info.h5py,
        "hdf5_version": info.hdf5,
        "source_root": str(found.root),
        "command": command or " ".join(sys.argv),
        "ignored_files": len(found.ignored),
    }
    kept: list[SourceFile] = []
    root = str(found.root)
    with CacheWriter(
        out, capacities=capacities, label_names=found.label_names, image_shape=(spec.size, spec.size), attrs=attrs, compression=compression
    ) as writer:
        for path, reason in found.unlabeled:
            writer.add_skipped(path, "", reason)
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator", batch_size="auto", pre_dispatch="4 * n_jobs")
        results = parallel(joblib.delayed(_decode_task)(root, f, spec) for f in found.files)
        for source, result in zip(found.files, results):
            if isinstance(result, str):
                writer.add_skipped(source.path, source.split, result)
                report.skipped.append({"path": source.path, "split": source.split, "reason": result})
            else:
                writer.add(result, source)
                kept.append(source)
            if progress is not None:
                progress(1)
        if strict and report.skipped:
            raise StrictError(_strict_message(report))  # the writer aborts: OUT is not written
        writer.commit()
    return kept


def _strict_message(report: BuildReport) -> str:
    listed = "; ".join(f"{s['path']}: {s['reason']}" for s in report.skipped[:5])
    more = f" (and {len(report.skipped) - 5} more)" if len(report.skipped) > 5 else ""
    return f"--strict: {len(report.skipped)} file(s) could not be taken: {listed}{more}"
