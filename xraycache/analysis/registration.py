"""Whether two stored images show the same exposure: align them, then compare their fine structure.

The 32 px descriptors of two different chest X-rays can correlate at 0.96 (same anatomy, same
framing), so a pair the descriptors suggest is checked here on the stored pixels. Each image becomes a
64 px area-average thumbnail; its **fine structure** is what is left after subtracting a Gaussian blur
(sigma ``SIGMA`` px): ribs, vessel edges, markers, noise grain, the detail that two films of two
patients (or two films of one patient) do not share, while the anatomy's outline they do share is gone.
Brightness and contrast changes scale it and drop out of the correlation.

**Alignment.** A copy may be cropped (up to 5% a side), shifted or resized, and every build stretches
each image to its square, so a copy is the original under a scale and a shift *per axis*. The scale and
shift of each axis are first found from the row and column profiles (a grid of ``INIT_SCALES`` x
``INIT_SHIFTS``), then refined on the 2-D fine structure by a coordinate search of step ``STEPS``
(scale, shift) halving each round. The warp samples the thumbnail by linear interpolation, one axis at a
time, by gathering rows and columns: no resampling matrix per pair.

**Score.** The Pearson correlation of the fine structure of one thumbnail's centre (``BORDER`` cells
left out at each side: crops and shifts move content there) with the other's, aligned; the better of
both directions, so a pair scores the same either way round. Copies score near 1, different films far
below (docs/near-duplicates.md gives both distributions, measured on real radiographs).
"""

from __future__ import annotations

import functools

import numpy as np

SIDE = 64  # thumbnail side in pixels
MIN_SIDE = 16  # stored side under which no pair is verified on its pixels (only identical descriptors count)
BORDER = 6  # thumbnail cells left out at each side when comparing
SIGMA = 2.0  # Gaussian blur (thumbnail pixels) whose removal leaves the fine structure
INIT_SCALES = np.linspace(0.88, 1.12, 9)  # scale per axis tried from the profiles (5% crops: 0.9-1.11)
INIT_SHIFTS = np.linspace(-0.08, 0.08, 17)  # shift per axis, in image widths
STEPS = ((0.02, 0.01), (0.01, 0.005), (0.005, 0.0025), (0.0025, 0.00125))  # (scale, shift) per round
BLOCK = 512  # pairs aligned at once (bounds memory: ~30 MB of float32)


@functools.lru_cache(maxsize=16)
def _area_weights(n: int, m: int) -> np.ndarray:
    """(m, n) float32: the fraction of each of n input pixels in each of m equal output cells, per cell."""
    edges = np.arange(m + 1) * (n / m)
    pixel = np.arange(n)
    cover = np.minimum(pixel[None, :] + 1, edges[1:, None]) - np.maximum(pixel[None, :], edges[:-1, None])
    return (np.clip(cover, 0.0, None) / (edges[1:] - edges[:-1])[:, None]).astype(np.float32)


def thumbnails(images: np.ndarray) -> np.ndarray:
    """(K, H, W) stored images of any numeric dtype -> (K, 64, 64) float32 area-average thumbnails (block
    means where the sides are multiples of 64, as at every default size); all NaN for images under
    ``MIN_SIDE`` pixels a side, which the check cannot verify (at 8 px different patients scored 0.975)."""
    if images.ndim != 3:
        raise ValueError(f"images are {images.shape}, not (K, H, W)")
    k, height, width = images.shape
    if min(height, width) < MIN_SIDE:  # too little fine structure to tell a copy from another film: NaN
        return np.full((k, SIDE, SIDE), np.nan, dtype=np.float32)
    out = np.empty((k, SIDE, SIDE), dtype=np.float32)
    for start in range(0, k, BLOCK):
        part = np.asarray(images[start : start + BLOCK], dtype=np.float32)
        n = len(part)
        if height % SIDE == 0 and width % SIDE == 0:
            blocks = part.reshape(n, SIDE, height // SIDE, SIDE, width // SIDE)
            out[start : start + n] = blocks.mean(axis=(2, 4))
        else:  # two large products, not one small one per image
            across = part.reshape(n * height, width) @ _area_weights(width, SIDE).T  # (n H, 64)
            down = _area_weights(height, SIDE) @ across.reshape(n, height, SIDE).transpose(1, 0, 2).reshape(height, -1)
            out[start : start + n] = down.reshape(SIDE, n, SIDE).transpose(1, 0, 2)
    return out


@functools.lru_cache(maxsize=1)
def _blur_matrix() -> np.ndarray:
    """(64, 64) float32: a Gaussian of ``SIGMA`` along one axis, renormalised where it meets the edge."""
    radius = int(3 * SIGMA)
    offsets = np.arange(SIDE)[None, :] - np.arange(SIDE)[:, None]
    kernel = np.where(np.abs(offsets) <= radius, np.exp(-0.5 * (offsets / SIGMA) ** 2), 0.0)
    return (kernel / kernel.sum(axis=1, keepdims=True)).astype(np.float32)


def fine_structure(thumbs: np.ndarray) -> np.ndarray:
    """(K, 64, 64) thumbnails minus their Gaussian blur: what tells one exposure from another."""
    blur = _blur_matrix()
    return (thumbs - blur @ thumbs @ blur.T).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm (a constant row stays zero)."""
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _taps(scale: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 52) index and weight of the lower neighbour for sampling a 64-cell axis at ``scale`` and
    ``shift`` about its centre (in image widths), for the cells between the borders."""
    x = (np.arange(BORDER, SIDE - BORDER, dtype=np.float32) + 0.5) / SIDE
    u = (scale[..., None] * (x - 0.5) + 0.5 + shift[..., None]) * SIDE - 0.5
    u = np.clip(u, 0.0, SIDE - 1.001).astype(np.float32)
    lower = np.floor(u).astype(np.intp)
    return lower, (u - lower).astype(np.float32)


def _rows(images: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(P, 52, W): the rows of each of (P, 64, W) ``images`` sampled at its scale and shift, by gathering the
    two neighbours of each sample (whole rows: contiguous copies)."""
    lower, weight = _taps(scale, shift)
    index = np.arange(len(images))[:, None]
    return images[index, lower] * (1 - weight)[..., None] + images[index, lower + 1] * weight[..., None]


def _flipped(images: np.ndarray) -> np.ndarray:
    """Rows and columns swapped, contiguous: the next warp gathers whole rows again."""
    return np.ascontiguousarray(images.transpose(0, 2, 1))


@functools.lru_cache(maxsize=1)
def _profile_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scales, shifts, (64, K * 52) matrix warping a profile every way of the search at once)."""
    scales, shifts = (g.ravel().astype(np.float32) for g in np.meshgrid(INIT_SCALES, INIT_SHIFTS, indexing="ij"))
    lower, weight = _taps(scales, shifts)
    k, m = lower.shape
    matrix = np.zeros((k, m, SIDE), dtype=np.float32)
    kk, mm = np.indices((k, m))
    matrix[kk, mm, lower] = 1 - weight
    matrix[kk, mm, lower + 1] += weight
    return scales, shifts, np.ascontiguousarray(matrix.reshape(k * m, SIDE).T)


def _profile_fit(fixed: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) per pair that best maps each (P, 64) moving profile onto the centre of the fixed one:
    one matrix product warps every profile every way; the centred target's dot product with each warped
    profile, over that profile's norm about its mean, is their correlation."""
    scales, shifts, matrix = _profile_grid()
    moved = (moving @ matrix).reshape(len(moving), len(scales), -1)  # (P, K, 52)
    target = unit(fixed[:, BORDER : SIDE - BORDER])
    m = moved.shape[2]
    dots = np.einsum("pkm,pm->pk", moved, target)  # the target is centred: the moved mean drops out
    spread = np.einsum("pkm,pkm->pk", moved, moved) - moved.sum(axis=2) ** 2 / m
    best = (dots / np.sqrt(np.maximum(spread, 1e-12))).argmax(axis=1)
    return scales[best], shifts[best]


def _start(thumbs: np.ndarray, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """(P, 4) float32 (row scale, row shift, column scale, column shift) from the profiles."""
    centre = slice(BORDER, SIDE - BORDER)
    f_thumbs, m_thumbs = thumbs[fixed], thumbs[moving]
    row_scale, row_shift = _profile_fit(f_thumbs[:, :, centre].mean(axis=2), m_thumbs[:, :, centre].mean(axis=2))
    col_scale, col_shift = _profile_fit(f_thumbs[:, centre, :].mean(axis=1), m_thumbs[:, centre, :].mean(axis=1))
    return np.stack([row_scale, row_shift, col_scale, col_shift], axis=1)


def _refine(
    fine: np.ndarray, fixed: np.ndarray, moving: np.ndarray, params: np.ndarray, steps: tuple[tuple[float, float], ...]
) -> np.ndarray:
    """(P,) correlation of each fixed image's centre with the moving image aligned onto it, starting from
    ``params`` (refined in place) and trying each (scale, shift) step of ``steps`` along each axis."""
    centre = slice(BORDER, SIDE - BORDER)
    centres = fine[fixed][:, centre, centre]
    targets = (unit(centres.reshape(len(fixed), -1)), unit(_flipped(centres).reshape(len(fixed), -1)))
    source = fine[moving]
    sources = (_flipped(source), source)  # to warp rows last, warp columns first (as rows of the flipped)

    def score(warped: np.ndarray, flipped: int) -> np.ndarray:
        return np.einsum("pi,pi->p", targets[flipped], unit(warped.reshape(len(warped), -1)))

    best = score(_rows(_flipped(_rows(sources[0], params[:, 2], params[:, 3])), params[:, 0], params[:, 1]), 0)
    for scale_step, shift_step in steps:
        for last in (0, 1):  # 0: try row warps (columns done once a round); 1: column warps
            mine, other = (0, 2) if last == 0 else (2, 0)
            done = _flipped(_rows(sources[last], params[:, other], params[:, other + 1]))
            for k, step in ((mine, scale_step), (mine + 1, shift_step)):
                for sign in (-1.0, 1.0):
                    trial = params[:, mine : mine + 2].copy()
                    trial[:, k - mine] += sign * step
                    s = score(_rows(done, trial[:, 0], trial[:, 1]), last)
                    better = s > best
                    params[better, mine : mine + 2], best[better] = trial[better], s[better]
    return best


def aligned_scores(thumbs: np.ndarray, a: np.ndarray, b: np.ndarray, settle_below: float | None = None) -> np.ndarray:
    """(P,) float32 score of each pair (thumbs[a], thumbs[b]) of (K, 64, 64) thumbnails: the better of
    aligning b onto a and a onto b. 1 for the same exposure; equal thumbnails score 1 even when flat.

    With ``settle_below``, a pair whose better direction scores less than it after the first refinement
    round keeps that score (a lower bound) and is refined no further: copies scored >= 0.87 at that point,
    different films rarely above 0.7, so a cut-off well below the threshold changes no decision and
    spares most of the work."""
    a, b = np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp)
    out = np.zeros(len(a), dtype=np.float32)
    if not len(a):
        return out
    fine = fine_structure(thumbs)
    for start in range(0, len(a), BLOCK):
        part = slice(start, start + BLOCK)
        x, y = np.concatenate([a[part], b[part]]), np.concatenate([b[part], a[part]])  # both directions
        params = _start(thumbs, x, y)
        first, rest = (STEPS[:1], STEPS[1:]) if settle_below is not None else (STEPS, ())
        score = _refine(fine, x, y, params, first)
        if rest:
            both = np.maximum(score[: len(x) // 2], score[len(x) // 2 :])
            going = np.flatnonzero(np.tile(both >= settle_below, 2))
            if len(going):
                score[going] = _refine(fine, x[going], y[going], params[going], rest)
        half = len(x) // 2
        out[part] = np.maximum(score[:half], score[half:])
        out[part][(thumbs[a[part]] == thumbs[b[part]]).all(axis=(1, 2))] = 1.0
    return out
