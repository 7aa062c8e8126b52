"""A synthetic chest-X-ray-like dataset in the Kaggle layout, for demos, tests and benchmarks.

The images are drawn, not real: a dark surround, a bright body, two darker lung fields crossed by
ribs, a spine and heart shadow, film grain, and for pneumonia a patchy opacity in one lung. They
keep what matters to the tool: the Kaggle folder layout and file names, several images per patient,
the real set's class imbalance, a spread of sizes and aspect ratios, and ~10% RGB-encoded files.
Every image is drawn from its own seed, so the same seed gives the same bytes on any core count.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from PIL import Image

from .core.atomic import write_output
from .imaging.resize import RESIZE_IN_RGB

# Class shares of the full Kaggle set (1,583 normal, 2,780 bacterial, 1,493 viral of 5,856).
CLASS_SHARES = {"normal": 0.27, "bacterial": 0.47, "viral": 0.26}
SPLIT_SHARES = {"train": 0.86, "test": 0.11, "val": 0.03}
RGB_SHARE = 0.10
# Sizes: the short side picks the DCT scale a 256-px build decodes at (draft to >= 512: 1/1 below 1024,
# 1/2 from 1024, 1/4 from 2048), so each class below exercises one scale. Most images are small, so that
# 600 of them take seconds to draw and encode (pixels are the cost), yet every scale is present.
SIZE_CLASSES = (  # (share, short side range, long side up to this times the short side)
    (0.75, (400, 800), 1.4),  # decoded at full scale
    (0.20, (1024, 1400), 1.3),  # at 1/2
    (0.05, (2048, 2300), 1.2),  # at 1/4
)
DRAW_SIDE = 256  # anatomy is drawn at this resolution, then upsampled and grained
GRAIN_TILE = 192  # film grain: one tile of gaussian noise per image, repeated (invisible at its 3 levels)
GRAIN_SIGMA = 3.0


@dataclass(frozen=True)
class SampleImage:
    """One planned file: where it goes and how to draw it."""

    relpath: str
    kind: str  # normal, bacterial, viral
    width: int
    height: int
    rgb: bool
    seed: int


def plan(n: int, seed: int = 0) -> list[SampleImage]:
    """Decide every file's name, split, class and size (cheap; no pixels yet)."""
    if n < 3:
        raise ValueError("a sample needs at least 3 images (one per class)")
    rng = np.random.default_rng(seed)
    kinds = rng.choice(list(CLASS_SHARES), size=n, p=list(CLASS_SHARES.values()))
    kinds[:3] = list(CLASS_SHARES)  # every class present, however small n is
    planned: list[SampleImage] = []
    used: set[str] = set()
    counters = {"bacterial": 0, "viral": 0}
    image_seeds = np.random.SeedSequence(seed).spawn(n)
    i = 0
    while i < n:
        kind = str(kinds[i])
        split = str(rng.choice(list(SPLIT_SHARES), p=list(SPLIT_SHARES.values())))
        if i < len(CLASS_SHARES):
            split = "val"  # the first patient of each class: val always holds every class
        per_patient = int(rng.integers(1, 4))  # several images per patient, one split each
        patient = int(rng.integers(1, 2000))
        for k in range(per_patient):
            if i >= n or str(kinds[i]) != kind:
                break
            if kind == "normal":
                prefix = "NORMAL2-IM" if rng.random() < 0.4 else "IM"
                name = f"{prefix}-{patient:04d}-{k + 1:04d}.jpeg"
                folder = "NORMAL"
            else:
                counters[kind] += 1
                word = "bacteria" if kind == "bacterial" else "virus"
                name = f"person{patient}_{word}_{counters[kind]}.jpeg"
                folder = "PNEUMONIA"
            relpath = f"{split}/{folder}/{name}"
            if relpath in used:
                break
            used.add(relpath)
            size_class = int(rng.choice(len(SIZE_CLASSES), p=[c[0] for c in SIZE_CLASSES]))
            _, (low, high), longest = SIZE_CLASSES[size_class]
            short_side = int(rng.integers(low, high + 1))
            long_side = int(short_side * rng.uniform(1.0, longest))
            width, height = (long_side, short_side) if rng.random() < 0.7 else (short_side, long_side)
            rgb = bool(rng.random() < RGB_SHARE)
            child_seed = int(image_seeds[i].generate_state(1)[0])
            planned.append(SampleImage(relpath, kind, width, height, rgb, child_seed))
            i += 1
    return planned


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2


def draw(item: SampleImage) -> np.ndarray:
    """Draw one radiograph-like uint8 image of ``item``'s size."""
    return np.asarray(_draw_image(item))


def _draw_image(item: SampleImage) -> Image.Image:
    """:func:`draw` as a Pillow image (mode L), which is what the encoder takes."""
    rng = np.random.default_rng(item.seed)
    side = DRAW_SIDE
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    img = np.full((side, side), 0.06, np.float32)
    # body/thorax: bright soft-tissue silhouette with shoulders
    body = _ellipse(yy, xx, 0.62, 0.5, 0.55, 0.44 + rng.uniform(-0.04, 0.04))
    img += 0.50 * np.clip(1.4 - body, 0, 1) ** 0.7
    # lung fields: darker, each an ellipse
    for cx, sign in ((0.33, -1), (0.67, 1)):
        lung = _ellipse(yy, xx, 0.52, cx + sign * rng.uniform(0, 0.02), 0.27, 0.13)
        img -= 0.30 * np.clip(1.0 - lung, 0, 1) ** 0.5
    # ribs: bright arcs crossing the lungs
    phase = rng.uniform(0, 2 * np.pi)
    ribs = np.sin((yy - 0.6 * np.abs(xx - 0.5) ** 1.5) * 2 * np.pi * 10 + phase)
    img += 0.07 * np.clip(ribs, 0, 1) ** 2 * np.clip(1.0 - body, 0, 1) ** 0.3
    # spine and mediastinum/heart shadow
    img += 0.22 * np.exp(-(((xx - 0.5) / 0.045) ** 2)) * (yy > 0.15)
    img += 0.20 * np.clip(1 - _ellipse(yy, xx, 0.62, 0.55, 0.14, 0.12), 0, 1)
    # structures placed by the seed (vessels, nodes, devices, positioning): two images are two pictures,
    # not near-duplicates of one template (the leakage report would flag most of the sample otherwise)
    # (smooth, so drawn on a 64 px grid and upsampled: a twentieth of the cost at full drawing size)
    gy, gx = np.mgrid[0:64, 0:64].astype(np.float32) / 64
    blobs = np.zeros((64, 64), np.float32)
    for _ in range(12):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.04, 0.12)
        blobs += rng.uniform(-0.3, 0.3) * np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (r * r))
    img += np.asarray(Image.fromarray(blobs, mode="F").resize((side, side), Image.Resampling.BILINEAR))
    # pneumonia: patchy opacity in one lung
    if item.kind != "normal":
        cx = 0.33 if rng.random() < 0.5 else 0.67
        patch = np.exp(-_ellipse(yy, xx, rng.uniform(0.45, 0.65), cx, 0.10, 0.07))
        coarse = Image.fromarray((rng.random((side // 24, side // 24)) * 255).astype(np.uint8))
        texture = np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
        strength = 0.25 if item.kind == "bacterial" else 0.15
        img += strength * patch * (0.5 + texture)
    img = np.clip(img, 0, 1)
    return _upsample_with_grain((img * 255).astype(np.uint8), item, rng)


def _upsample_with_grain(small: np.ndarray, item: SampleImage, rng: np.random.Generator) -> Image.Image:
    """Bilinear upsampling to the file's size plus film grain: the two steps that cost the most per pixel.

    The grain is one tile of gaussian noise (sigma GRAIN_SIGMA) repeated over the image: a normal variate per
    pixel of a 2,000 x 2,000 image cost more than everything else. Pillow-SIMD vectorises resampling only
    for 4-byte pixels, where upsampling as RGB is ~4x fewer instructions than as L (so the bytes depend on
    the imaging backend, as they do anyway through the JPEG encoder).
    """
    gray = Image.fromarray(small)
    size = (item.width, item.height)
    if RESIZE_IN_RGB:
        big = gray.convert("RGB").resize(size, Image.Resampling.BILINEAR).getchannel(0)
    else:
        big = gray.resize(size, Image.Resampling.BILINEAR)
    tile = np.rint(rng.standard_normal((GRAIN_TILE, GRAIN_TILE)) * GRAIN_SIGMA).astype(np.int16)
    reps = (-(-item.height // GRAIN_TILE), -(-item.width // GRAIN_TILE))
    grained = np.asarray(big, dtype=np.int16) + np.tile(tile, reps)[: item.height, : item.width]
    return Image.fromarray(np.clip(grained, 0, 255).astype(np.uint8))


def encode(item: SampleImage, pixels: np.ndarray | Image.Image) -> bytes:
    """JPEG bytes of one image: grayscale, or gray stored as RGB for ~10% of files."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels, mode="L")
    if item.rgb:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _write_one(root: str, item: SampleImage) -> int:
    data = encode(item, _draw_image(item))
    # never through a link planted at the image's name (core.atomic.write_output); no fsync per image
    write_output(os.path.join(root, item.relpath), lambda tmp: tmp.write_bytes(data), durable=False)
    return len(data)


def write_sample(
    directory: str | os.PathLike[str],
    n: int = 600,
    seed: int = 0,
    jobs: int = -1,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``n`` synthetic images under ``DIR/chest_xray``; returns that folder."""
    root = Path(directory) / "chest_xray"
    items = plan(n, seed)
    for folder in {os.path.dirname(item.relpath) for item in items}:
        (root / folder).mkdir(parents=True, exist_ok=True)
    parallel = joblib.Parallel(n_jobs=jobs, return_as="generator_unordered", batch_size="auto")
    for _ in parallel(joblib.delayed(_write_one)(str(root), item) for item in items):
        if progress is not None:
            progress(1)
    return root
