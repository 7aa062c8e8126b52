"""What a build reports: ``BuildReport``, made once at the end from what the scan, the plan and the execution say."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.errors import Skipped


@dataclass
class BuildReport:
    """What a build did: counts per split and label, what it skipped and ignored, and how fast.

    ``mode`` is ``cold`` (everything decoded), ``incremental`` (an old cache reused in part),
    ``unchanged`` (the old cache was up to date: nothing written) or ``dry-run``. A dry run says in
    ``would`` what the real run would do (``cold``, ``incremental`` or ``unchanged``), with its counts.
    """

    src: str
    out: str
    layout: str
    label_names: list[str]
    counts: dict[str, dict[str, int]]  # split -> label -> images written (or to write, dry run)
    split_images: dict[str, int] = field(default_factory=dict)  # split -> images (a multi-label image counts once)
    skipped: list[Skipped] = field(default_factory=list)
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
    added: int = 0  # images decoded and written: files new since the old cache; every image of a cold build
    changed: int = 0  # files whose content changed (decoded again)
    removed: int = 0  # images of the old cache whose file is gone
    retried: int = 0  # dry run: files skipped last time that the real run would try again
    would: str = ""  # dry run: what the real run would do (cold, incremental, unchanged)
    csv_rows_without_file: list[str] = field(default_factory=list)  # --labels rows that named no image
    tables: dict[str, Any] = field(default_factory=dict)  # what the --labels tables gave: see table_summary()
    dropped_duplicates: int = 0  # near-duplicates left out (--drop-duplicates), listed in ``skipped``
    moved_duplicates: int = 0  # images --resplit moved to the split of the near-duplicates they join
    warnings: list[str] = field(default_factory=list)  # e.g. a build of one class only: said, not fatal

    @property
    def images(self) -> int:
        """Images written (or, for a dry run, found)."""
        if self.split_images:
            return sum(self.split_images.values())
        return sum(sum(by_label.values()) for by_label in self.counts.values())

    @property
    def images_per_second(self) -> float:
        """Images written per second of the whole build."""
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the derived totals."""
        data = asdict(self)
        data["skipped"] = [row.as_dict() for row in self.skipped]
        data["images"] = self.images
        data["images_per_second"] = round(self.images_per_second, 1)
        return data
