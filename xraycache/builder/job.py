"""What every stage of one build shares (``BuildJob``) and what carrying out its plan gives back (``Outcome``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import SkipLog
from ..core.options import Compression, ResizeOptions

if TYPE_CHECKING:
    from .plan import Plan
    from .scan import ScanResult, SourceFile
    from .workers import ForkedPool

ProgressCallback = Callable[[int], None]


@dataclass
class BuildJob:
    """What every stage of one build needs: the scanned files, OUT, the pixel settings, the workers, the
    file attributes, the log of skipped files and the progress callback."""

    found: ScanResult
    out: Path
    resize: ResizeOptions
    n_jobs: int
    compression: Compression
    attrs: dict[str, Any]
    skips: SkipLog
    progress: ProgressCallback | None = None
    pool: ForkedPool | None = None  # the build's forked workers, if it has some (see workers.worker_pool)
    drop_duplicates: bool = False  # keep the first image of each near-duplicate group only
    group_near_duplicates: bool = False  # --resplit: near-duplicates join their patients' split
    group_folds: bool = False  # --folds: near-duplicates join their patients' fold
    fixed_splits: frozenset[str] = frozenset()  # splits whose images never move (--keep-test: test)

    @property
    def regroups(self) -> bool:
        """Whether the near-duplicates found in the written images may drop or move some of them."""
        return self.drop_duplicates or self.group_near_duplicates or self.group_folds


@dataclass
class Outcome:
    """What a build did to OUT: ``mode`` is ``cold`` (every image decoded), ``incremental`` (an old cache
    reused in part) or ``unchanged`` (OUT already held this build: nothing written)."""

    mode: str
    kept: list[SourceFile]  # the files whose images OUT holds, each in the split (and fold) it went to
    added: int = 0  # images decoded and written: new files and files skipped last time that decoded now
    dropped_duplicates: int = 0  # near-duplicates left out (--drop-duplicates), listed in the skipped rows
    moved_duplicates: int = 0  # images --resplit moved to the split of the near-duplicates they join

    @classmethod
    def written(
        cls, plan: Plan, written: list[SourceFile], placed: list[SourceFile] | None = None, **counts: int
    ) -> Outcome:
        """The outcome of a plan carried out: ``written``, the files written; ``placed``, those the final
        file holds where near-duplicates were dropped or moved after (default: the same)."""
        kept = written if placed is None else placed
        if not plan.incremental:
            return cls("cold", kept, added=len(kept), **counts)
        retried = {f.path for f in plan.retried}
        return cls("incremental", kept, added=plan.added + sum(1 for f in written if f.path in retried), **counts)
