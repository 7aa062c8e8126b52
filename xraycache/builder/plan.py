"""Planning a build: what an existing cache already holds, and what the new build reuses, decodes or skips.

A file is reused when its size and mtime match what the old cache recorded; when only the mtime
moved, its content hash decides between *touched* (reused, mtime updated) and *changed* (decoded
again). The recorded settings (every option that shapes the output, and the build context: source
folder, versions) must match, or the build stops and names them: reusing pixels made another way would
silently mix two caches in one file. The imaging backend (Pillow or Pillow-SIMD) is not such a setting: the
two give the same bytes except where Pillow's resampling makes the pixels, so after a switch only those
images are decoded again (``pillow_resamples``). The plan says, in the end, whether OUT is already up to
date (then nothing is written).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import NotACacheError, Skipped
from ..core.format import (
    CONTEXT_SETTINGS,
    SKIPPED_COLUMNS,
    cache_bytes,
    file_sha256,
    open_cache,
    read_attrs,
    read_text,
    storable_path,
)
from ..core.options import ResizeOptions, setting_names
from ..imaging.resize import pillow_resamples
from ..imaging.result import DecodeFailure, DecodeResult
from ..imaging.stack import imaging_stack
from .prepare import label_key
from .report import BuildJob
from .scan import ScanResult, SourceFile
from .workers import decode_all


@dataclass(frozen=True)
class OldImage:
    """Where one image sits in the old cache, and the source file facts it was built from."""

    split: str
    index: int
    label_name: str
    file_size: int
    mtime_ns: int
    file_hash: bytes
    width: int = 0  # the source's size, which says whether Pillow's resampling made the pixels
    height: int = 0


@dataclass
class OldCache:
    """The index of an existing cache file: enough to plan a rebuild without reading any pixel."""

    path: Path
    attrs: dict[str, Any]
    label_names: tuple[str, ...]
    images: dict[str, OldImage]  # storable path -> where it is
    skipped: list[Skipped]  # in file order


def read_old_cache(path: Path) -> OldCache:
    """Read the index of the cache at ``path``; NotACacheError if it is not a readable xraycache file."""
    try:
        with open_cache(path) as handle:
            budget = cache_bytes(path, handle.attrs)  # all the text a legitimate cache holds
            attrs = read_attrs(handle)
            label_names = tuple(str(name) for name in attrs.get("label_names", ()))
            images: dict[str, OldImage] = {}
            for split in attrs.get("splits", ()):
                group = handle[split]
                meta = group["meta"]
                paths = read_text(meta["path"], budget)
                budget -= sum(len(p) for p in paths)
                labels = group["labels"][:]
                sizes = meta["file_size"][:]
                mtimes = meta["mtime_ns"][:]
                hashes = meta["file_hash"][:]
                widths, heights = meta["width"][:], meta["height"][:]
                for index, rel in enumerate(paths):
                    images[str(rel)] = OldImage(
                        split=str(split),
                        index=index,
                        label_name=(
                            "|".join(n for n, on in zip(label_names, labels[index], strict=True) if on)
                            if labels.ndim == 2
                            else label_names[int(labels[index])]
                        ),
                        file_size=int(sizes[index]),
                        mtime_ns=int(mtimes[index]),
                        file_hash=bytes(hashes[index]),
                        width=int(widths[index]),
                        height=int(heights[index]),
                    )
            skipped: list[Skipped] = []
            if "skipped" in handle:
                columns = [read_text(handle["skipped"][name], budget) for name in SKIPPED_COLUMNS]
                skipped = [Skipped(str(p), str(s), str(r)) for p, s, r in zip(*columns, strict=True)]
    except NotACacheError:
        raise
    except (OSError, KeyError, ValueError, IndexError, TypeError) as exc:
        raise NotACacheError(f"{path} cannot be read as an xraycache cache: {exc}") from None
    return OldCache(path, attrs, label_names, images, skipped)


def settings_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``name old -> new`` for each recorded setting that differs."""
    diffs = []
    context = (k for k in CONTEXT_SETTINGS if k not in ("source_root", "imaging_backend"))  # backend: see plan_rebuild
    for key in ("source_root", *setting_names(), *context):
        before, after = old.get(key), new.get(key)
        if before != after:
            diffs.append(f"{key} {before!r} -> {after!r}")
    return diffs


@dataclass
class Action:
    """What the build does with one scanned file: copy it from the old cache or decode it."""

    source: SourceFile
    old: OldImage | None = None  # set when reused
    mtime_ns: int = 0  # the file's current mtime (differs from old.mtime_ns when touched)

    @property
    def reuse(self) -> bool:
        """True when the image is copied from the old cache instead of decoded."""
        return self.old is not None


@dataclass
class Plan:
    """Every scanned file's action in scan (= output) order, the counts the summary shows, the files
    already decoded while planning, and whether OUT already holds exactly this build."""

    actions: list[Action]
    reused: int = 0
    touched: int = 0  # reused, but the mtime moved (content hash unchanged)
    added: int = 0
    changed: int = 0
    removed: int = 0
    retried: list[SourceFile] = field(default_factory=list)  # skipped last time: decoded again
    other_backend: int = 0  # of ``changed``: same file, but its pixels were resampled by another imaging backend
    decoded: dict[str, DecodeResult] = field(default_factory=dict)  # path -> result, decoded while planning
    up_to_date: bool = False  # nothing to write: OUT already holds this build

    @property
    def reused_files(self) -> list[SourceFile]:
        """The files whose images are copied from the old cache (all of OUT's when up to date)."""
        return [a.source for a in self.actions if a.reuse]


def plan_rebuild(
    found: ScanResult, old: OldCache, *, movable: bool = False, resize: ResizeOptions | None = None
) -> Plan:
    """Compare the scan with the old cache's index (size + mtime; sha256 only where those moved).

    ``movable``: an image may sit in another split than the scan gave it (``--resplit`` moved it to the
    near-duplicates it joins) and is still reused; the build places it again. ``resize``: the build's pixel
    settings; when the old cache was made by another imaging backend, the images whose bytes depend on it
    (:func:`pillow_resamples`) are decoded again, so the result is what a cold build gives here.
    """
    actions: list[Action] = []
    plan = Plan(actions)
    old_skipped = {row.path for row in old.skipped}
    other_backend = resize is not None and old.attrs.get("imaging_backend") != imaging_stack().imaging
    seen: set[str] = set()
    for source in found.files:
        key = storable_path(source.path)
        seen.add(key)
        entry = old.images.get(key)
        try:
            stat = os.stat(found.root / source.path)
        except OSError:
            stat = None
        if entry is None:
            actions.append(Action(source))
            if key in old_skipped:
                plan.retried.append(source)
            else:
                plan.added += 1
            continue
        same_place = (movable or entry.split == source.split) and entry.label_name == label_key(
            found.label_names, source, found.multi_label
        )
        if stat is None or not same_place or stat.st_size != entry.file_size:
            actions.append(Action(source))
            plan.changed += 1
            continue
        if other_backend and resize is not None and pillow_resamples(entry.width, entry.height, resize):
            actions.append(Action(source))
            plan.changed += 1
            plan.other_backend += 1
            continue
        if stat.st_mtime_ns == entry.mtime_ns:
            actions.append(Action(source, entry, stat.st_mtime_ns))
            plan.reused += 1
            continue
        try:
            same = file_sha256(found.root / source.path) == entry.file_hash
        except OSError:
            same = False
        if same:
            actions.append(Action(source, entry, stat.st_mtime_ns))
            plan.reused += 1
            plan.touched += 1
        else:
            actions.append(Action(source))
            plan.changed += 1
    plan.removed = sum(1 for key in old.images if key not in seen)
    return plan


def plan_build(job: BuildJob, old: OldCache | None, *, same_layout: bool) -> Plan:
    """What a build must do, cold (every file new) or incremental (reuse what the old cache holds).

    Files skipped last time are decoded again first; if they still fail the same way, nothing else
    moved and ``same_layout`` (one file vs shards) holds, the plan is ``up_to_date``: OUT is left
    untouched. Shared by the single-file and the sharded build.
    """
    found, report = job.found, job.report
    if old is None:
        return Plan([Action(f) for f in found.files], added=len(found.files))
    plan = plan_rebuild(found, old, movable=job.group_near_duplicates, resize=job.resize)
    report.warnings.extend(backend_notes(old, plan))
    report.mode = "incremental"
    report.reused, report.touched, report.removed = plan.reused, plan.touched, plan.removed
    report.added, report.changed = plan.added, plan.changed
    results = decode_all(str(found.root), plan.retried, job.resize, job.n_jobs, job.pool)
    plan.decoded = dict(zip((f.path for f in plan.retried), results, strict=True))
    report.added += sum(1 for result in plan.decoded.values() if not isinstance(result, DecodeFailure))
    if not (same_layout and up_to_date(found, old, plan)):
        return plan
    plan.up_to_date = True
    report.mode = "unchanged"
    job.skips.entries[:] = old.skipped
    job.skips.check()
    if job.progress is not None:
        job.progress(len(found.files))
    return plan


def backend_notes(old: OldCache, plan: Plan) -> list[str]:
    """The line a rebuild says when the old cache's pixels came from another imaging backend and some of them
    depend on it; none when every image is the same bytes with either (then they are all reused)."""
    if not plan.other_backend:
        return []
    return [
        f"{old.path} was built with {old.attrs.get('imaging_backend')}, this build runs {imaging_stack().imaging}: "
        f"{plan.other_backend} of {len(plan.actions)} image(s) made by Pillow's resampling (a Pillow --filter, or a "
        "source smaller than the output) are decoded again, as their bytes differ between the two"
    ]


def up_to_date(found: ScanResult, old: OldCache, plan: Plan) -> bool:
    """True when a rebuild would write the same datasets the old cache holds."""
    if plan.added or plan.changed or plan.removed or plan.touched:
        return False
    failures = {path: r for path, r in plan.decoded.items() if isinstance(r, DecodeFailure)}
    if len(failures) != len(plan.decoded):
        return False
    skipped = found.unlabeled_rows()
    skipped += [Skipped(storable_path(f.path), f.split, failures[f.path].reason) for f in plan.retried]
    return (
        skipped == old.skipped
        and tuple(found.label_names) == old.label_names
        and found.layout == old.attrs.get("layout")
        and tuple(found.splits) == tuple(old.attrs.get("splits", ()))
        and len(found.ignored) == old.attrs.get("ignored_files")
    )
