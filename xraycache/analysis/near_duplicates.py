"""Near-duplicate images: the same exposure again, re-encoded, resized, brightened or cropped a little.

Chest X-rays look alike at low resolution (unrelated pairs of 32 px thumbnails correlate up to 0.96),
so neither a hash nor a plain correlation of thumbnails separates copies from strangers. Three stages do,
each cheaper per pair than the next and each sending on fewer pairs:

1. **Candidates** (cheap, every image): each image's 32 px descriptor (``core/pixels.py:
   pixel_descriptor``) is cut to its central 12x12 cells at 16 px and projected onto the 32 directions
   that vary most between images relative to how much they move under the changes a copy may carry
   (scale 0.9-1.11 and shifts of 5% per axis, simulated on the descriptors themselves). The projection
   is fitted on the data at hand, so it needs no model file. Each image keeps its ``CANDIDATES`` nearest
   later images above a floor, found by matrix products in cache-sized tiles on every core (no N x N
   matrix in memory).
2. **Screen** (per candidate pair, descriptors only): the central 24x24 of one descriptor against the
   other warped by the scale and shift per axis that best align their row and column profiles, as a
   Pearson correlation, both ways. Copies score >= 0.95 here, but so do some different radiographs: a
   pair scoring ``SCREEN`` or more only goes on to the check.
3. **Verification** (per screened pair, stored pixels): ``registration.py`` aligns 64 px thumbnails of
   the two stored images and correlates their fine structure. A pair scoring >= ``THRESHOLD`` is a
   near-duplicate; docs/near-duplicates.md gives both score distributions, measured on real radiographs.

Small sets (<= ``ALL_PAIRS_UP_TO`` images) skip the first stage and screen every pair. Images with equal
descriptors skip the screen and are verified; blank ones (std < ``MIN_CONTRAST``) are never paired.
Pairs are not closed under chains: A~B and B~C do not make A~C (``groups`` joins them for reports only).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from ..core.schema import DESCRIPTOR_SIDE
from .registration import SIDE, aligned_scores, thumbnails, unit

T = TypeVar("T")
R = TypeVar("R")

THRESHOLD = 0.95  # verified score of a near-duplicate pair (docs/near-duplicates.md: why here)
SCREEN = 0.93  # descriptor score a candidate needs to be verified on its pixels (copies: >= 0.95)
SETTLE_BELOW = 0.6  # verified score after the first alignment round below which a pair is refined no further
CANDIDATES = 6  # nearest later images per image sent to verification
CANDIDATE_FLOOR = 0.65  # cosine in the projected space below which a pair is never a candidate
MIN_CONTRAST = 2.0  # descriptor std (gray levels) below which an image is blank: never anyone's near-duplicate
MAX_SURVIVORS = 64  # candidates above the floor kept per row before the exact top-k (bounds memory)
ALL_PAIRS_UP_TO = 400  # images: up to this many, every pair is verified
PROJECTION_DIMS = 32
FIT_IMAGES = 4096  # images the projection is fitted on (evenly spaced over the set)
FIT_WARPS = 4  # simulated copies per fitted image
ROW_BLOCK = 256  # rows of the similarity matrix (and moving images of the verification) computed at once
COLUMN_TILE = 4096  # columns of one tile of the similarity matrix: 4 MB of float32, in cache
SECOND_LOOK = 0.08  # how close to the threshold one direction must come for the other to be tried
PAIR_BLOCK = 4096  # pairs screened at once
READ_BLOCK = 256  # images read at once for the pixel check, at most
READ_BYTES = 64 << 20  # stored pixels (and their float32 copy) read at once for the pixel check, at most
MAX_THREADS = 8  # threads of the search, at most one per core
BORDER = 4  # descriptor cells left out at each side when comparing (crops and shifts move content there)
SCALES = np.linspace(0.88, 1.12, 9)  # scale per axis searched in verification (5% crops: 0.9-1.11)
SHIFTS = np.linspace(-0.07, 0.07, 11)  # shift per axis, in image widths


PixelSource = Callable[[np.ndarray], np.ndarray]
"""Reads stored images: sorted distinct indices (K,) into the descriptors -> (K, H, W) pixels."""


@dataclass(frozen=True)
class Pairs:
    """Verified near-duplicate pairs (indices into the descriptors, ``a < b``) and what the search cost."""

    a: np.ndarray  # (P,) int64
    b: np.ndarray  # (P,) int64
    score: np.ndarray  # (P,) float32, verified: >= the threshold
    candidates: int  # pairs screened on their descriptors
    images: int
    verified: int = 0  # pairs checked on their pixels
    images_read: int = 0  # images whose pixels were read for it

    def __len__(self) -> int:
        return len(self.a)


class TooManyPairs(Exception):
    """More screened pairs than a caller allows to verify on their pixels (``max_checked``)."""


def find_pairs(
    descriptors: np.ndarray, threshold: float = THRESHOLD, *, pixels: PixelSource, max_checked: int | None = None
) -> Pairs:
    """Every pair of near-duplicate images among ``descriptors`` (N, 32, 32) uint8, with its verified score.

    ``pixels`` reads the stored images of the pairs that pass the screen (sorted indices in, (K, H, W) out);
    only those are read. Images whose descriptors are identical are a pair without a pixel check (score 1).
    TooManyPairs when more than ``max_checked`` pairs would be checked on their pixels (a reader's bound:
    each check costs about 1.5 ms, and a file others made decides how many there are)."""
    n = len(descriptors)
    if descriptors.shape[1:] != (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE):
        raise ValueError(f"descriptors are {descriptors.shape}, not (N, {DESCRIPTOR_SIDE}, {DESCRIPTOR_SIDE})")
    images = descriptors.astype(np.float32)
    if n <= ALL_PAIRS_UP_TO:
        a, b = np.triu_indices(n, k=1)
    else:
        a, b = candidate_pairs(images)
    blank = images.reshape(n, -1).std(axis=1) < MIN_CONTRAST
    screened = indexed_scores(images, a, b, SCREEN) >= SCREEN
    same_a, same_b = identical_pairs(descriptors)
    a = np.concatenate([a[screened], same_a]).astype(np.int64)
    b = np.concatenate([b[screened], same_b]).astype(np.int64)
    keep = ~blank[a] & ~blank[b]
    pairs = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)  # sorted by (a, b), each pair once
    a, b = pairs[:, 0], pairs[:, 1]
    same = np.all(descriptors[a] == descriptors[b], axis=(1, 2)) if len(a) else np.zeros(0, dtype=bool)
    if max_checked is not None and int((~same).sum()) > max_checked:
        raise TooManyPairs(f"{int((~same).sum()):,} pairs to verify, more than the {max_checked:,} this command checks")
    scores = np.ones(len(a), dtype=np.float32)
    scores[~same], read = verify(a[~same], b[~same], pixels)
    good = scores >= threshold
    return Pairs(a[good], b[good], scores[good], len(screened) + len(same_a), n, len(a), read)


def verify(a: np.ndarray, b: np.ndarray, pixels: PixelSource) -> tuple[np.ndarray, int]:
    """(scores, images read): the pixel check of the pairs (a[i], b[i]), reading each image once."""
    if not len(a):
        return np.zeros(0, dtype=np.float32), 0
    needed, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    thumbs = np.empty((len(needed), SIDE, SIDE), dtype=np.float32)
    block, start = 1, 0  # the first image read alone: its size sets how many are read at once
    while start < len(needed):  # bounded memory: READ_BYTES of stored pixels at a time, 16 KB a thumbnail
        wanted = needed[start : start + block]
        stored = np.asarray(pixels(wanted))
        if stored.ndim != 3 or len(stored) != len(wanted):
            raise ValueError(f"the pixel source gave {stored.shape} for {len(wanted)} images, not (K, H, W)")
        thumbs[start : start + len(wanted)] = thumbnails(stored)
        start += len(wanted)
        block = max(1, min(READ_BLOCK, READ_BYTES // max(1, stored[0].nbytes * 5)))  # 5: the float32 copy too
    first, second = inverse[: len(a)], inverse[len(a) :]
    scores = np.zeros(len(a), dtype=np.float32)
    checkable = ~np.isnan(thumbs[:, 0, 0])  # images too small to verify score 0: never a pair
    both = checkable[first] & checkable[second]
    np.nan_to_num(thumbs, copy=False)  # the unchecked images' thumbnails are never compared
    if both.any():
        scores[both] = aligned_scores(thumbs, first[both], second[both], SETTLE_BELOW)
    return scores, len(needed)


def joined(sources: list[PixelSource], parts: list[np.ndarray]) -> PixelSource:
    """One pixel source over the splits' images one after another (``parts`` give each split's length); it
    gives thumbnails, so splits whose images differ in size (a file others made) still stack."""
    bounds = np.cumsum([0, *(len(part) for part in parts)])

    def read(rows: np.ndarray) -> np.ndarray:
        out: list[np.ndarray] = []
        for k, source in enumerate(sources):
            mine = rows[(rows >= bounds[k]) & (rows < bounds[k + 1])]
            if len(mine):
                out.append(thumbnails(np.asarray(source(mine - bounds[k]))))
        return np.concatenate(out) if out else np.zeros((0, 1, 1), dtype=np.float32)

    return read


def identical_pairs(descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b), a < b: each image whose descriptor equals an earlier one's, with the first of them. Identical
    pixels are the same picture even where the correlation has nothing to go on (a blank image, or one
    equal to the set's mean), and a star per group links it without listing every pair."""
    n = len(descriptors)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, first, inverse = np.unique(descriptors.reshape(n, -1), axis=0, return_index=True, return_inverse=True)
    lead = first[inverse.ravel()]
    others = np.flatnonzero(lead != np.arange(n))
    return lead[others].astype(np.int64), others.astype(np.int64)


def groups(n: int, pairs: Pairs) -> list[list[int]]:
    """The connected groups (two or more members, each sorted, groups by first member) of ``n`` items
    linked by ``pairs``."""
    return components(n, pairs.a, pairs.b)


def components(n: int, a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """The connected components with two or more members (each sorted, ordered by first member) of ``n``
    items joined by the links (a[i], b[i])."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    members: dict[int, list[int]] = {}
    for i in sorted({int(v) for v in np.concatenate([a, b])}):
        members.setdefault(root(i), []).append(i)
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])


# -- stage 1: candidates ------------------------------------------------------------------------


def _features(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32) -> (N, 144): the central 12x12 of the 16 px thumbnail, zero mean and unit norm."""
    n = len(images)
    half = images.reshape(n, 16, 2, 16, 2).mean(axis=(2, 4))
    inner = half[:, 2:14, 2:14].reshape(n, -1)
    inner = inner - inner.mean(axis=1, keepdims=True)
    return inner / np.maximum(np.linalg.norm(inner, axis=1, keepdims=True), 1e-6)


def _random_copies(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image rescaled and shifted per axis as a cropped or shifted copy would be."""
    n = len(images)
    scale = rng.uniform(0.9, 1.11, (2, n))
    shift = rng.uniform(-0.05, 0.05, (2, n))
    rows = _warp(DESCRIPTOR_SIDE, 0, scale[0], shift[0]).astype(np.float32)
    columns = _warp(DESCRIPTOR_SIDE, 0, scale[1], shift[1]).astype(np.float32)
    return rows @ images @ columns.transpose(0, 2, 1)


def projection(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, (144, d) matrix) of the features' projection: the directions that tell images apart most
    relative to how much a copy moves along them. Deterministic for a given set."""
    n = len(images)
    sample = images[np.linspace(0, n - 1, min(n, FIT_IMAGES)).astype(np.int64)]
    x = _features(sample).astype(np.float64)
    rng = np.random.default_rng(0)
    moved = np.concatenate([_features(_random_copies(sample, rng)) - x for _ in range(FIT_WARPS)])
    mean = x.mean(axis=0)
    between = np.cov((x - mean).T)
    within = np.cov(moved.T)
    within += max(1e-3 * np.trace(within) / len(within), 1e-9) * np.eye(len(within))  # > 0: blank sets too
    values, vectors = np.linalg.eigh(within)
    whiten = vectors / np.sqrt(values)
    _, directions = np.linalg.eigh(whiten.T @ between @ whiten)
    matrix = whiten @ directions[:, ::-1][:, :PROJECTION_DIMS]
    return mean.astype(np.float32), matrix.astype(np.float32)


def embed(images: np.ndarray, mean: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, d) unit vectors: the projected features."""
    e = (_features(images) - mean) @ matrix
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6)


def candidate_pairs(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a, b), a < b: for each image, its ``CANDIDATES`` most similar later images above the floor."""
    mean, matrix = projection(images)
    e = embed(images, mean, matrix).astype(np.float32)
    found = _in_threads(functools.partial(_nearest_later, e), range(0, max(0, len(e) - 1), ROW_BLOCK))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate([a for a, _ in found]), np.concatenate([b for _, b in found])


def _nearest_later(e: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """The candidate pairs of rows ``start`` .. ``start + ROW_BLOCK`` of the similarity matrix, computed in
    tiles of ``COLUMN_TILE`` columns that stay in the CPU's cache (the whole row block did not: memory-bound)."""
    stop = min(len(e), start + ROW_BLOCK)
    block = stop - start
    rows, columns, scores = [], [], []
    for first in range(start, len(e), COLUMN_TILE):
        sim = e[start:stop] @ e[first : first + COLUMN_TILE].T  # only later images count
        if first == start:
            sim[:, :block][np.tril_indices(block)] = -1.0  # each image itself, and earlier images of the block
        above = sim > CANDIDATE_FLOOR
        if sim.shape[1] > CANDIDATES and np.count_nonzero(above) > MAX_SURVIVORS * block:
            best = np.argpartition(sim, sim.shape[1] - CANDIDATES, axis=1)[:, -CANDIDATES:]  # crowded: each row's best
            r, k = np.nonzero(np.take_along_axis(above, best, axis=1))
            c = best[r, k]
        else:
            r, c = np.divmod(np.flatnonzero(above), sim.shape[1])  # row-major: 4x faster than a 2-D nonzero
        rows.append(r)
        columns.append(c + first)
        scores.append(sim[r, c])
    r, c, score = np.concatenate(rows), np.concatenate(columns), np.concatenate(scores)
    order = np.argsort(r * 4.0 - score, kind="stable")  # by row, best first (0 < score <= 1)
    r, c = r[order], c[order]
    first_of_row = np.searchsorted(r, r, side="left")
    keep = np.arange(len(r)) - first_of_row < CANDIDATES
    return (r[keep] + start).astype(np.int64), c[keep].astype(np.int64)


def _in_threads(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[work(item) for item in items]`` on one thread per core: the matrix products and array passes
    release the GIL, so the cores share the search."""
    workers = min(len(os.sched_getaffinity(0)), MAX_THREADS) if hasattr(os, "sched_getaffinity") else 1
    if workers <= 1:
        return [work(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, items))


# -- stage 2: verification ----------------------------------------------------------------------


def _warp(n: int, border: int, scale: np.ndarray | float, shift: np.ndarray | float) -> np.ndarray:
    """Linear-interpolation matrices (..., n - 2 border, n) sampling a length-n axis at ``scale``/``shift``
    about its centre (coordinates in image widths), for the cells between the borders; one per value."""
    m = n - 2 * border
    scale, shift = np.asarray(scale, np.float64)[..., None], np.asarray(shift, np.float64)[..., None]
    x = (np.arange(border, n - border) + 0.5) / n
    u = np.clip((scale * (x - 0.5) + 0.5 + shift) * n - 0.5, 0, n - 1)
    lo = np.floor(u).astype(np.int64)
    frac = u - lo
    w = np.zeros((*u.shape, n))
    np.put_along_axis(w, lo[..., None], (1 - frac)[..., None], axis=-1)
    hi = np.minimum(lo + 1, n - 1)
    np.put_along_axis(w, hi[..., None], np.take_along_axis(w, hi[..., None], axis=-1) + frac[..., None], axis=-1)
    return w.reshape(*u.shape[:-1], m, n)


@functools.cache
def _warps() -> np.ndarray:
    """(K, 24, 32) float32: every scale x shift of the verification search."""
    scales, shifts = np.meshgrid(SCALES, SHIFTS, indexing="ij")
    return _warp(DESCRIPTOR_SIDE, BORDER, scales.ravel(), shifts.ravel()).astype(np.float32)


def _profiles(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32) column and row profiles of each descriptor: means over the central cells of the other axis."""
    n = DESCRIPTOR_SIDE
    return images[:, BORDER : n - BORDER, :].mean(axis=1), images[:, :, BORDER : n - BORDER].mean(axis=2)


@functools.cache
def _profile_warps() -> np.ndarray:
    """(32, K * 24) float32, C order: ``_warps()`` as one matrix that warps a profile every way at once."""
    table = _warps()
    k, m, n = table.shape
    return np.ascontiguousarray(table.reshape(k * m, n).T)


def _moved_profiles(profiles: np.ndarray) -> np.ndarray:
    """(N, K, 24) each profile under every warp of the search, centred and of unit norm per warp."""
    k, m, _ = _warps().shape
    return unit((profiles @ _profile_warps()).reshape(len(profiles), k, m))


def _best_warps(profiles: np.ndarray, moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """For each (moving, fixed) image pair, the warp that best maps the moving profile onto the centre of the
    fixed one. Each moving image's warped profiles are computed once and matched against all its partners
    (the 1-D profiles of chest X-rays all correlate well: they align, they do not decide)."""
    n = DESCRIPTOR_SIDE
    targets = unit(profiles[:, BORDER : n - BORDER])
    best = np.empty(len(moving), dtype=np.int64)
    order = np.argsort(moving, kind="stable")
    images, starts = np.unique(moving[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for first in range(0, len(images), ROW_BLOCK):
        block = images[first : first + ROW_BLOCK]
        moved = _moved_profiles(profiles[block])
        for offset in range(len(block)):
            where = order[starts[first + offset] : ends[first + offset]]
            best[where] = (moved[offset] @ targets[fixed[where]].T).argmax(axis=0)
    return best


def _aligned(
    images: np.ndarray, moving: np.ndarray, fixed: np.ndarray, rows: np.ndarray, columns: np.ndarray
) -> np.ndarray:
    """Pearson correlation of each fixed image's centre with the moving image under its (rows, columns) warp."""
    n = DESCRIPTOR_SIDE
    table = _warps()
    out = np.empty(len(moving), dtype=np.float32)
    for start in range(0, len(moving), PAIR_BLOCK):
        part = slice(start, start + PAIR_BLOCK)
        moved = table[rows[part]] @ images[moving[part]] @ table[columns[part]].transpose(0, 2, 1)
        centre = images[fixed[part], BORDER : n - BORDER, BORDER : n - BORDER]
        p = len(moved)
        out[part] = np.einsum("pi,pi->p", unit(centre.reshape(p, -1)), unit(moved.reshape(p, -1)))
    return out


def indexed_scores(images: np.ndarray, a: np.ndarray, b: np.ndarray, threshold: float = SCREEN) -> np.ndarray:
    """(P,) alignment-tolerant similarity of the pairs (images[a], images[b]) of (N, 32, 32) float32
    descriptors: 1 for the same image. The better of warping b onto a's centre and a onto b's, so the score
    does not depend on the order of the pair (one direction alone lost a copy cropped unevenly on the real
    sample: 0.952 one way, 0.966 the other). The second direction is tried only where the first came within
    ``SECOND_LOOK`` of ``threshold`` (copies differed by at most 0.04 between the two): below it a pair is
    no near-duplicate either way, and its score is the first direction's."""
    columns, rows = _profiles(images)
    score = _one_way(images, columns, rows, b, a)
    again = np.flatnonzero(score >= threshold - SECOND_LOOK)
    score[again] = np.maximum(score[again], _one_way(images, columns, rows, a[again], b[again]))
    return score


def _one_way(
    images: np.ndarray, columns: np.ndarray, rows: np.ndarray, moving: np.ndarray, fixed: np.ndarray
) -> np.ndarray:
    """Correlation of each fixed image's centre with the moving image warped onto it (in threads, each
    taking the pairs of a run of moving images)."""
    out = np.zeros(len(moving), dtype=np.float32)
    if not len(moving):
        return out
    order = np.argsort(moving, kind="stable")
    parts = np.array_split(order, max(1, min(len(order) // PAIR_BLOCK, 4 * MAX_THREADS)))

    def one(part: np.ndarray) -> np.ndarray:
        warp_columns = _best_warps(columns, moving[part], fixed[part])
        warp_rows = _best_warps(rows, moving[part], fixed[part])
        return _aligned(images, moving[part], fixed[part], warp_rows, warp_columns)

    for part, scores in zip(parts, _in_threads(one, parts), strict=True):
        out[part] = scores
    return out


def pair_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) symmetric similarity of descriptor pairs given as two stacks (P, 32, 32): both directions always."""
    images = np.concatenate([a, b]).astype(np.float32, copy=False)
    p = len(a)
    return indexed_scores(images, np.arange(p), np.arange(p, 2 * p), threshold=-1.0)


def verified_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) pixel-check score of stored-image pairs given as two stacks (P, H, W) (the sides may differ)."""
    thumbs = np.concatenate([thumbnails(np.asarray(a)), thumbnails(np.asarray(b))])
    p = len(a)
    return aligned_scores(thumbs, np.arange(p), np.arange(p, 2 * p))
