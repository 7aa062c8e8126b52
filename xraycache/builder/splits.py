"""Patient-level re-splits and cross-validation folds: ``--resplit 0.8,0.1,0.1 --seed 0 [--folds K]``.

Every patient is placed by a hash of (seed, patient id) alone: a number u in [0, 1) decides the split
(train if u < 0.8, val if u < 0.9, test otherwise) and another hash the fold. So the result is

- grouped: all images of a patient share one split and one fold (no patient in two splits);
- deterministic: the same seed gives the same splits on any machine, in any file order;
- stable: adding files (new patients, or new images of known patients) never moves an existing
  patient, because nothing about a patient depends on the others;
- stratified in expectation: the placement is independent of the class, so every class is split by
  the same fractions, up to the sampling noise of its patient count (about sqrt(n) patients). A
  rank-based exact stratification would move patients whenever the data grows, which stability forbids.

Images without a patient id count as one patient each (keyed by their path).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

from ..core.errors import OptionError, literal

if TYPE_CHECKING:
    from .scan import SourceFile


def unit_hash(seed: int, key: str, salt: str) -> float:
    """A uniform number in [0, 1) from (salt, seed, key): the same on every machine and Python."""
    digest = hashlib.sha256(f"xraycache-{salt}\0{seed}\0{key}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def group_key(patient: str, path: str) -> str:
    """The grouping key of an image: its patient, or its own path when the patient is unknown."""
    return f"patient:{patient}" if patient else f"file:{path}"


def assign_split(key: str, fractions: tuple[tuple[str, float], ...], seed: int) -> str:
    """The split of one patient (or ungrouped file)."""
    u = unit_hash(seed, key, "split")
    edge = 0.0
    for name, fraction in fractions:
        edge += fraction
        if u < edge:
            return name
    return next(name for name, fraction in reversed(fractions) if fraction > 0)


def assign_fold(key: str, folds: int, seed: int) -> int:
    """The cross-validation fold (0 .. folds-1) of one patient."""
    return min(folds - 1, int(unit_hash(seed, key, "fold") * folds))


def resplit(
    files: list[SourceFile], fractions: tuple[tuple[str, float], ...], seed: int, keep_test: bool = False
) -> list[SourceFile]:
    """``--resplit``: every image to the split of its patient; with ``--keep-test`` the images of the
    official ``test`` split stay there and the others are split into the fractions' splits."""
    if keep_test and not any(f.split == "test" for f in files):
        raise OptionError(
            "{keep_test:name}: no image is in a split named test (the splits: "
            + literal(", ".join(sorted({f.split for f in files})) + ")"),
            keep_test=True,
        )
    return [
        f
        if keep_test and f.split == "test"
        else dataclasses.replace(f, split=assign_split(group_key(f.patient, f.path), fractions, seed))
        for f in files
    ]
