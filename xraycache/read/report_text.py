"""The words and table rows the figures and the HTML report share: statistics rows, the leakage summary,
report values as short text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..analysis.leakage import LeakageReport
    from .stats import CacheStats

MULTI_LABEL_NOTE = "multi-label: an image with several labels counts once per label, so shares add to more than 100%"


STATS_COLUMNS = ("split", "class", "images", "share", "pixel min", "max", "mean", "std", "width (px)", "height (px)")


def stats_rows(stats: CacheStats) -> list[tuple[bool, list[str]]]:
    """(is the split's total, cells) per class and split: the table of ``show stats``."""
    return [
        (
            g.label == "all",
            [
                s.split,
                *g.cells(),
                f"{g.width_min:,}-{g.width_max:,}",
                f"{g.height_min:,}-{g.height_max:,}",
            ],
        )
        for s in stats.splits
        for g in [*s.classes, s.total]
    ]


STATE_COLUMNS = ("split", "label", "positive", "negative", "uncertain", "missing")


def state_rows(stats: CacheStats) -> list[list[str]]:
    """Per split and label of a coded cache, the images whose label is positive, negative, uncertain and
    missing (no rows for other caches): the table ``show stats`` and the report add."""
    return [
        [s.split, g.label, *(f"{n:,}" for n in g.states.values())] for s in stats.splits for g in s.classes if g.states
    ]


def shares_over_100(stats: CacheStats) -> bool:
    """True when some split's class shares add to more than 100% (multi-label images)."""
    return any(sum(g.share for g in s.classes) > 1.0 + 1e-9 for s in stats.splits)


def words(key: str) -> str:
    return key.replace("_", " ")


def plain(value: Any) -> str:
    """Any JSON value of a report as short text: dicts as ``k: v``, pairs as ``a: b``, lists joined by ``;``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
            return "; ".join(f"{plain(a)}: {plain(b)}" for a, b in value)
        return "; ".join(plain(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def leakage_summary(leaks: LeakageReport) -> str:
    """One sentence: every count the leakage report holds (whatever groups it carries)."""
    data = leaks.to_dict()
    data.pop("near_duplicate_groups", None)  # the pairs, grouped: counted once
    if not data.get("near_duplicates_unavailable"):
        data.pop("near_duplicates_unavailable", None)
    counts = [f"{words(k)}: {plain(v)}" for k, v in data.items() if not isinstance(v, (list, dict))]
    counts += [f"{words(k)}: {len(v):,}" for k, v in data.items() if isinstance(v, list)]
    return f"{leakage_verdict(leaks)} ({'; '.join(counts)})"


def leakage_verdict(leaks: LeakageReport) -> str:
    """What was found where: "leakage found" only for something across splits; duplicates inside one split
    are named as such."""
    across = _counted(
        (len(leaks.patients_in_several_splits), "patient(s) in more than one split"),
        (len(leaks.duplicates_across), "identical-file group(s)"),
        (len(leaks.near_duplicates_across), "near-duplicate pair(s)"),
    )
    within = _counted(
        (len(leaks.duplicates_within), "identical-file group(s)"),
        (len(leaks.near_duplicates) - len(leaks.near_duplicates_across), "near-duplicate pair(s)"),
    )
    verdict = f"leakage found across splits: {across}" if across else "no leakage across splits"
    return verdict + (f"; within a split (not leakage): {within}" if within else "")


def _counted(*items: tuple[int, str]) -> str:
    return ", ".join(f"{n:,} {what}" for n, what in items if n)
