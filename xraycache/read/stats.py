"""Summaries read from a cache's stored histograms and meta columns: instant, no pass over the pixels.

The build's workers compute each image's 256-bin histogram beside the resize and the writer sums them
per split and class (``/<split>/stats/hist``), so exact pixel min/max/mean/std per group come from
``hist_moments``; counts come from the labels and original sizes from ``meta/width`` and ``meta/height``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core.errors import Skipped
from ..core.pixels import hist_moments
from ..core.schema import CODE_MISSING, CODE_NEGATIVE, CODE_POSITIVE, CODE_UNCERTAIN
from .cache import Cache, Split


@dataclass
class GroupStats:
    """One class of one split (or the whole split when ``label`` is ``"all"``)."""

    label: str
    count: int
    share: float  # of the split's images
    pixel_min: int
    pixel_max: int
    pixel_mean: float
    pixel_std: float
    width_min: int
    width_max: int
    height_min: int
    height_max: int
    width_median: float
    height_median: float
    # coded labels only: images with this label positive, negative, uncertain, missing ({} otherwise)
    states: dict[str, int] = field(default_factory=dict)

    def cells(self) -> list[str]:
        """Label, count, share and pixel min/max/mean/std as the tables of ``show stats`` and the report print them."""
        return [
            self.label,
            f"{self.count:,}",
            f"{100 * self.share:.1f}%",
            str(self.pixel_min),
            str(self.pixel_max),
            f"{self.pixel_mean:.1f}",
            f"{self.pixel_std:.1f}",
        ]


@dataclass
class SplitStats:
    """A split: its total, its classes, and the imbalance ratio (largest class / smallest non-empty class)."""

    split: str
    count: int
    imbalance: float
    total: GroupStats
    classes: list[GroupStats] = field(default_factory=list)


@dataclass
class CacheStats:
    """Everything ``xraycache show stats`` prints."""

    path: str
    label_names: list[str]
    image_shape: list[int]
    settings: dict[str, Any]
    splits: list[SplitStats]
    skipped: list[Skipped]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["skipped"] = [row.as_dict() for row in self.skipped]
        return data


def split_hist(split: Split) -> np.ndarray:
    """The stored (labels, 256) pixel histogram of a split, or one computed from the pixels if absent."""
    stored = split.stored_hist()
    if stored is not None:
        return stored
    hist = np.zeros((len(split.label_names), 256), dtype=np.int64)  # old or foreign file: one pass
    for xb, yb in split.batches(256, shuffle=False, channels=None):
        for label in np.unique(yb):
            hist[label] += np.bincount(xb[yb == label].reshape(-1), minlength=256)
    return hist


def _group(label: str, count: int, total: int, hist: np.ndarray, width: np.ndarray, height: np.ndarray) -> GroupStats:
    lo, hi, mean, std = hist_moments(hist)
    has = width.size > 0
    return GroupStats(
        label=label,
        count=count,
        share=count / total if total else 0.0,
        pixel_min=lo,
        pixel_max=hi,
        pixel_mean=round(mean, 4),
        pixel_std=round(std, 4),
        width_min=int(width.min()) if has else 0,
        width_max=int(width.max()) if has else 0,
        height_min=int(height.min()) if has else 0,
        height_max=int(height.max()) if has else 0,
        width_median=float(np.median(width)) if has else 0.0,
        height_median=float(np.median(height)) if has else 0.0,
    )


def split_stats(split: Split) -> SplitStats:
    """Counts, shares, exact pixel statistics and original size ranges of one split, per class."""
    labels = split.labels
    counts = split.counts()
    hist = split_hist(split)
    width, height = split.meta["width"], split.meta["height"]
    n = len(labels)
    classes = [
        _group(name, int(counts[i]), n, hist[i], width[mask], height[mask])
        for i, name in enumerate(split.label_names)
        for mask in [labels[:, i] == 1 if labels.ndim == 2 else labels == i]  # (N, C) multi-hot: has label i
    ]
    nonzero = counts[counts > 0]
    imbalance = float(nonzero.max() / nonzero.min()) if nonzero.size else 0.0
    if split.coded:
        for i, group in enumerate(classes):
            group.states = label_states(labels[:, i])
    total = _group("all", n, n, hist.sum(axis=0), width, height)
    return SplitStats(split=split.name, count=n, imbalance=round(imbalance, 3), total=total, classes=classes)


STATES = {"positive": CODE_POSITIVE, "negative": CODE_NEGATIVE, "uncertain": CODE_UNCERTAIN, "missing": CODE_MISSING}


def label_states(codes: np.ndarray) -> dict[str, int]:
    """How many images a coded label column calls positive, negative, uncertain and missing."""
    return {state: int(np.count_nonzero(codes == code)) for state, code in STATES.items()}


def summarize(cache: Cache) -> CacheStats:
    """The statistics of every split of ``cache``, and the files the build skipped."""
    splits = [split_stats(cache[name]) for name in cache.splits]
    shape = list(cache[cache.splits[0]].shape[1:]) if cache.splits else []
    return CacheStats(
        path=str(cache.path),
        label_names=list(cache.label_names),
        image_shape=shape,
        settings=cache.settings,
        splits=splits,
        skipped=cache.skipped,
    )
