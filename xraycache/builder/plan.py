"""Planning a build: for every scanned file, copy its image from the old cache or decode it; nothing is decoded here.

A file is reused when its size and mtime match what the old cache recorded; when only the mtime moved,
its content hash decides between *touched* (reused, mtime updated) and *changed* (decoded again). Files
the old cache skipped are *retried*. The plan also says whether OUT already holds exactly this build
(``unchanged``), or would if the retried files fail again the same way (``unchanged_if_retried_fail``:
the execution decodes those first and decides).

The imaging backend (Pillow or Pillow-SIMD) that made the old cache is provenance, not a setting: the two
decode to the same bytes and the area filter is the project's own code, so they differ only where Pillow's
resampling makes the pixels (a Pillow ``--filter``, or a source smaller than the output, which the area
filter enlarges with Pillow's bilinear). After a switch only those images are decoded again
(``pillow_resamples``); the rest are reused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..core.errors import Skipped
from ..core.files import file_sha256
from ..core.options import ResizeOptions
from ..core.schema import storable_path
from ..imaging.resize import pillow_resamples
from .old_cache import OldCache, OldImage
from .prepare import label_key
from .scan import ScanResult, SourceFile


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
    """Every scanned file's action in scan (= output) order and the counts the summary shows."""

    actions: list[Action]
    incremental: bool = False  # an old cache is updated (else: a cold build, every file decoded)
    reused: int = 0
    touched: int = 0  # reused, but the mtime moved (content hash unchanged)
    added: int = 0  # files the old cache did not hold (retried ones not counted)
    changed: int = 0
    removed: int = 0
    retried: list[SourceFile] = field(default_factory=list)  # skipped last time: decoded again
    other_backend: int = 0  # of ``changed``: same file, but its pixels were resampled by another imaging backend
    unchanged: bool = False  # OUT already holds this build: nothing to decode or write
    unchanged_if_retried_fail: bool = False  # ... if every retried file fails again with the same reason

    @property
    def reused_files(self) -> list[SourceFile]:
        """The files whose images are copied from the old cache (all of OUT's when unchanged)."""
        return [a.source for a in self.actions if a.reuse]

    @property
    def to_decode(self) -> list[SourceFile]:
        """The files whose images are decoded, in scan order."""
        return [a.source for a in self.actions if not a.reuse]


def plan_build(
    found: ScanResult,
    old: OldCache | None,
    *,
    movable: bool,
    same_layout: bool,
    resize: ResizeOptions,
    backend: str,
) -> Plan:
    """What a build must do, cold (no old cache: every file new) or incremental.

    Incremental: each file is compared with the old cache's index (size + mtime; sha256 only where those
    moved). ``movable``: an image may sit in another split than the scan gave it (``--resplit`` moved it to
    the near-duplicates it joins) and is still reused; the build places it again. ``same_layout``: OUT is
    written as it was (one file or the same number of shards), a condition of leaving it unchanged.
    ``resize`` and ``backend`` (the imaging backend of this build): where the old cache's backend was
    another, the images whose bytes depend on it are decoded again, so the result is a cold build's.
    """
    if old is None:
        return Plan([Action(f) for f in found.files], added=len(found.files))
    plan = Plan([], incremental=True)
    old_skipped = {row.path for row in old.skipped}
    other_backend = old.attrs.get("imaging_backend") != backend
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
            plan.actions.append(Action(source))
            if key in old_skipped:
                plan.retried.append(source)
            else:
                plan.added += 1
            continue
        same_place = (movable or entry.split == source.split) and entry.label_name == label_key(
            found.label_names, source, found.multi_label, found.coded
        )
        if stat is None or not same_place or stat.st_size != entry.file_size:
            plan.actions.append(Action(source))
            plan.changed += 1
            continue
        if other_backend and pillow_resamples(entry.width, entry.height, resize):
            plan.actions.append(Action(source))
            plan.changed += 1
            plan.other_backend += 1
            continue
        if stat.st_mtime_ns == entry.mtime_ns:
            plan.actions.append(Action(source, entry, stat.st_mtime_ns))
            plan.reused += 1
            continue
        try:
            same = file_sha256(found.root / source.path) == entry.file_hash
        except OSError:
            same = False
        if same:
            plan.actions.append(Action(source, entry, stat.st_mtime_ns))
            plan.reused += 1
            plan.touched += 1
        else:
            plan.actions.append(Action(source))
            plan.changed += 1
    plan.removed = sum(1 for key in old.images if key not in seen)
    if same_layout and _same_contents(found, old, plan):
        if plan.retried:
            plan.unchanged_if_retried_fail = True
        else:
            plan.unchanged = same_skipped(found, old, [])
    return plan


def backend_notes(old: OldCache, plan: Plan, backend: str) -> list[str]:
    """The line a rebuild says when the old cache's pixels came from another imaging backend and some of them
    depend on it; none when every image is the same bytes with either (then they are all reused)."""
    if not plan.other_backend:
        return []
    return [
        f"{old.path} was built with {old.attrs.get('imaging_backend')}, this build runs {backend}: "
        f"{plan.other_backend} of {len(plan.actions)} image(s) made by Pillow's resampling (a Pillow --filter, or a "
        "source smaller than the output) are decoded again, as their bytes differ between the two"
    ]


def same_skipped(found: ScanResult, old: OldCache, retried_failures: list[Skipped]) -> bool:
    """Whether the build's ``/skipped`` rows (the scan's, then the retried files that failed again) are
    the old cache's, row for row: the last condition of leaving OUT unchanged."""
    return [*found.unlabeled_rows(), *retried_failures] == old.skipped


def _same_contents(found: ScanResult, old: OldCache, plan: Plan) -> bool:
    """Whether the old cache holds every image of this build, and nothing else, under the same names."""
    return (
        not (plan.added or plan.changed or plan.removed or plan.touched)
        and tuple(found.label_names) == old.label_names
        and found.layout == old.attrs.get("layout")
        and tuple(found.splits) == tuple(old.attrs.get("splits", ()))
        and len(found.ignored) == old.attrs.get("ignored_files")
    )
