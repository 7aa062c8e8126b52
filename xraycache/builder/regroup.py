"""After the decode: near-duplicate groups decide what ``--drop-duplicates`` drops and where ``--resplit``
puts an image that copies another.

Splits and folds are settled per patient before any pixel is decoded (``splits.py``); near-duplicates are
known only from the decoded pixels. So the writer writes every image where its patient's hash put it,
and this module then says which rows the final file keeps, and in which split:

- ``--drop-duplicates``: images are taken in path order; one is dropped only when it is a verified
  near-duplicate of an image already kept, and listed in ``/skipped`` with that image and their score. A
  chain A~B~C whose ends are no pair (A not~C) keeps A and C: C copies no image that stays.
- ``--resplit`` (and ``--folds``): a near-duplicate group and the patients of its images form one unit
  that must not straddle splits (or folds). Every patient keeps the split (and fold) its hash gave it unless such a unit joins
  patients from several splits; then the unit goes where its largest patient (most images; ties: the
  first key) already is, so only the smaller patients move.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..analysis.near_duplicates import Pairs, PixelSource, components, find_pairs, joined
from ..core.errors import Skipped
from .splits import group_key


@dataclass
class Rows:
    """What the regrouping needs of the rows written to one split: path order, patients, descriptors,
    folds, and a reader of the written pixels (to verify the pairs the descriptors suggest)."""

    paths: list[str]
    patients: list[str]
    descriptors: np.ndarray  # (N, 32, 32) uint8
    folds: np.ndarray  # (N,) int16
    pixels: PixelSource


@dataclass
class Layout:
    """The final file's rows: per split, (written split, row) in path order; new folds of moved rows; the
    dropped images; how many images moved."""

    rows: dict[str, list[tuple[str, int]]]
    folds: dict[tuple[str, int], int] = field(default_factory=dict)
    dropped: list[Skipped] = field(default_factory=list)
    moved: int = 0


def regroup(
    written: dict[str, Rows], *, drop: bool, resplit: bool, folds: bool = False, fixed: frozenset[str] = frozenset()
) -> Layout | None:
    """The layout the near-duplicates ask for, or None when every row stays where it was written.

    No image of a ``fixed`` split moves (``--keep-test``: the official test split): a unit holding one of
    them goes to that split.
    """
    where = [(split, row) for split, rows in written.items() for row in range(len(rows.paths))]
    if len(where) < 2:
        return None
    descriptors = [rows.descriptors for rows in written.values()]
    paths = [p for rows in written.values() for p in rows.paths]
    pairs = find_pairs(
        np.concatenate(descriptors), pixels=joined([rows.pixels for rows in written.values()], descriptors)
    )
    if not len(pairs):
        return None
    split_of = [split for split, _ in where]
    dropped: set[int] = set()
    drops: list[Skipped] = []
    if drop:
        for other, (kept, score) in _copies_of_kept(paths, pairs).items():
            dropped.add(other)
            reason = (
                f"near-duplicate of {paths[kept]} ({split_of[kept]}; verified score {score:.3f}): --drop-duplicates"
            )
            drops.append(Skipped(paths[other], split_of[other], reason))
    target = list(split_of)
    fold_of = np.concatenate([rows.folds for rows in written.values()]).astype(np.int64)
    new_folds: dict[tuple[str, int], int] = {}
    moved = 0
    if (resplit or folds) and not drop:  # after dropping, no two kept images are near-duplicates
        patients = [p for rows in written.values() for p in rows.patients]
        moved = _units(where, paths, patients, pairs, target, fold_of, new_folds, move_splits=resplit, fixed=fixed)
    if not dropped and not moved and not new_folds:
        return None
    layout: dict[str, list[tuple[str, int]]] = {split: [] for split in written}
    for i in sorted(range(len(where)), key=lambda i: paths[i]):
        if i not in dropped:
            layout[target[i]].append(where[i])
    drops.sort(key=lambda s: s.path)
    return Layout(layout, new_folds, drops, moved)


def _copies_of_kept(paths: list[str], pairs: Pairs) -> dict[int, tuple[int, float]]:
    """Each dropped image -> (the kept image it copies, their verified score): images in path order, an image
    dropped when it pairs with one already kept (its best-scoring such partner named)."""
    partners: dict[int, list[tuple[int, float]]] = {}
    for x, y, score in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.score.tolist(), strict=True):
        partners.setdefault(x, []).append((y, score))
        partners.setdefault(y, []).append((x, score))
    kept: set[int] = set()
    dropped: dict[int, tuple[int, float]] = {}
    for i in sorted(partners, key=lambda i: (paths[i], i)):
        found = [(score, -j, j) for j, score in partners[i] if j in kept]
        if found:
            score, _, j = max(found)
            dropped[i] = (j, score)
        else:
            kept.add(i)
    return dropped


def _units(
    where: list[tuple[str, int]],
    paths: list[str],
    patients: list[str],
    pairs: Pairs,
    target: list[str],
    folds: np.ndarray,
    new_folds: dict[tuple[str, int], int],
    *,
    move_splits: bool,
    fixed: frozenset[str] = frozenset(),
) -> int:
    """Join patients linked by near-duplicates; move each joined unit to its largest patient's fold and,
    with ``move_splits``, split (to a ``fixed`` split where one of its images is). Changes ``target`` and
    ``new_folds`` in place; returns the images that changed split."""
    keys = [group_key(patient, path) for patient, path in zip(patients, paths, strict=True)]
    names = sorted(set(keys))
    index = {key: k for k, key in enumerate(names)}
    of_image = np.array([index[key] for key in keys], dtype=np.int64)
    size = Counter(keys)
    first_image: dict[str, int] = {}
    in_fixed: dict[str, int] = {}  # a patient's first image in a split that must not change
    for i, key in enumerate(keys):
        first_image.setdefault(key, i)
        if target[i] in fixed:
            in_fixed.setdefault(key, i)
    moved = 0
    home: dict[str, tuple[str, int]] = {}
    for unit in components(len(names), of_image[pairs.a], of_image[pairs.b]):
        members = [names[k] for k in unit]
        largest = min(members, key=lambda key: (-size[key], key))
        anchored = sorted(key for key in members if key in in_fixed)
        lead = in_fixed[anchored[0]] if anchored else first_image[largest]
        for key in members:
            home[key] = (target[lead], int(folds[lead]))
    for i, key in enumerate(keys):
        if key not in home:
            continue
        split, fold = home[key]
        if move_splits and split != target[i]:
            target[i] = split
            moved += 1
        if fold != folds[i]:
            new_folds[where[i]] = fold
    return moved
