"""Near-duplicates on real radiographs: both score distributions, recall per alteration, the margin, cost.

1. **Planted copies, through a real build.** Every image of the real sample goes to ``train``; into
   ``test`` go ``--copies`` altered copies per alteration (JPEG quality 60, half size, 1.3x size,
   brightness and contrast +-10%, a 5% crop of every side or of one side, random crops up to 5% a side,
   shifts up to 3%, and a mix of crop, brightness, contrast, resize and JPEG 60) of randomly chosen
   images, under new names and so new patient ids. ``xraycache build`` makes the cache and
   ``Cache.leakage()`` reports: recall = copies paired with their original, per alteration; every other
   pair reported is listed (a pair of two real images, or a copy paired with a stranger).
2. **Score distributions per pool** (the real sample, and each ``--extra`` folder of real chest X-rays,
   built with ``xraycache build``): the screen score (descriptors) and the verified score (pixels) of
   *every* pair of images of different patients, and of every pair of one patient (follow-up films);
   each image's nearest unrelated score; the planted copies' scores against their originals. The margin
   is the lowest copy score minus the highest unrelated one; the expected false pairs at 10^6 verified
   candidates come from an exponential fit to the top tenth of the per-image nearest-unrelated scores.
3. **Cost, side by side:** the cold build of the real sample (``xraycache build``, a new OUT each time)
   and the near-duplicate search of the cache it makes (``find_pairs`` with the cache's pixels),
   alternated, median of ``--reps``; and ``find_pairs`` alone on 64 px pictures of augmented real
   radiographs at 5,856 and ``--large`` images (distinct pictures of the same kind).

    python -m benchmarks.near_duplicates ../shared/data/chest_xray [--extra DIR ...] [--pairs-png DIR] [--json]

Appends a record to benchmarks/results/near_duplicates.jsonl.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from benchmarks.common import append_record, data_digest, git_commit, list_images, machine_info

ALTERATIONS = (
    "jpeg60",
    "half",
    "up1.3",
    "bright+10",
    "bright-10",
    "contrast+10",
    "contrast-10",
    "crop5all",
    "crop5left",
    "croprandom",
    "shift3",
    "mixed",
)
HISTORY = Path(__file__).parent / "results" / "near_duplicates.jsonl"
CANDIDATES_AT_SCALE = 10**6  # verified candidate pairs the false-pair count is extrapolated to
SCORES: dict[str, dict[str, np.ndarray]] = {}  # every score measured, for --scores-out


def alter(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One re-export of ``image``."""
    w, h = image.size
    if kind == "jpeg60":
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=60)
        return Image.open(io.BytesIO(buffer.getvalue()))
    if kind == "half":
        return image.resize((w // 2, h // 2), Image.Resampling.BILINEAR)
    if kind == "up1.3":
        return image.resize((int(w * 1.3), int(h * 1.3)), Image.Resampling.BICUBIC)
    if kind.startswith(("bright", "contrast")):
        factor = 1.1 if "+" in kind else 0.9
        enhancer = ImageEnhance.Brightness if kind.startswith("bright") else ImageEnhance.Contrast
        return enhancer(image).enhance(factor)
    if kind == "crop5all":
        return image.crop((w // 20, h // 20, w - w // 20, h - h // 20))
    if kind == "crop5left":
        return image.crop((w // 20, 0, w, h))
    if kind == "croprandom":
        c = rng.uniform(0, 0.05, 4)
        return image.crop((int(c[0] * w), int(c[1] * h), int((1 - c[2]) * w), int((1 - c[3]) * h)))
    if kind == "shift3":
        dx, dy = int(w * rng.uniform(-0.03, 0.03)), int(h * rng.uniform(-0.03, 0.03))
        return image.transform(image.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy), fillcolor=0)
    if kind == "mixed":
        image = alter(image, "croprandom", rng)
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.9, 1.1))
        image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.9, 1.1))
        size = (int(image.size[0] * rng.uniform(0.5, 1.2)), int(image.size[1] * rng.uniform(0.5, 1.2)))
        return alter(image.resize(size, Image.Resampling.BILINEAR), "jpeg60", rng)
    raise ValueError(kind)


def build(src: Path, out: Path) -> float:
    """``xraycache build SRC OUT`` (a new OUT), in a subprocess as a user runs it; its wall time."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xraycache", "build", str(src), str(out), "-q", "--overwrite"], check=True)
    return time.perf_counter() - started


def plant(files: list[str], src: Path, per_alteration: int, rng: np.random.Generator) -> dict[str, tuple[str, str]]:
    """Copy the real images into ``src/train`` and write altered copies into ``src/test``; returns each
    copy's path -> (its original's path, the alteration), paths as the cache stores them."""
    root = Path(files[0]).parents[2]
    for f in files:
        target = src / "train" / Path(f).relative_to(root / "train")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    truth: dict[str, tuple[str, str]] = {}
    for kind in ALTERATIONS:
        for i in rng.choice(len(files), size=per_alteration, replace=False):
            f = Path(files[i])
            with Image.open(f) as image:
                copy = alter(image.convert("L"), kind, rng).convert("L")
            name = f"test/{f.parent.name}/copy{len(truth):04d}_{kind}.jpeg"  # a new name: a new patient id
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            copy.save(src / name, "JPEG", quality=90)
            truth[name] = (f"train/{f.parent.name}/{f.name}", kind)
    return truth


def read_cache(path: Path) -> dict[str, Any]:
    """Every stored image, descriptor, path and patient of a cache, splits one after another."""
    import xraycache

    with xraycache.open(path) as cache:
        names = cache.splits
        return {
            "images": np.concatenate([np.asarray(cache[s].images) for s in names]),
            "descriptors": np.concatenate([cache[s].descriptors for s in names]),
            "paths": [str(p) for s in names for p in cache[s].meta["path"]],
            "patients": [str(p) for s in names for p in cache[s].meta["patient"]],
        }


def planted_recall(data: Path, work: Path, per_alteration: int, seed: int) -> dict[str, Any]:
    """Section 1: build the planted set, score the leakage report against the truth; also the copies'
    screen and verified scores against their originals."""
    import xraycache
    from xraycache.analysis.near_duplicates import pair_scores, verified_scores

    rng = np.random.default_rng(seed)
    src, out = work / "planted", work / "planted.h5"
    truth = plant(list_images(data), src, per_alteration, rng)
    build(src, out)
    with xraycache.open(out) as cache:
        report = cache.leakage()
    stored = read_cache(out)
    index = {p: i for i, p in enumerate(stored["paths"])}
    found = {(pair.a[1], pair.b[1]) for pair in report.near_duplicates} | {
        (pair.b[1], pair.a[1]) for pair in report.near_duplicates
    }
    by_kind: dict[str, list[int]] = {}
    for copy, (original, kind) in truth.items():
        by_kind.setdefault(kind, [0, 0])[0] += (copy, original) in found
        by_kind[kind][1] += 1
    original_of = {copy: original for copy, (original, _) in truth.items()}

    def expected(a: str, b: str) -> bool:  # a copy with its original, or two copies of one original
        return original_of.get(a, a) == original_of.get(b, b)

    other = [pair.to_dict() for pair in report.near_duplicates if not expected(pair.a[1], pair.b[1])]
    a = np.array([index[original] for original, _ in truth.values()])
    b = np.array([index[copy] for copy in truth])
    kinds = np.array([kind for _, kind in truth.values()])
    screen = pair_scores(stored["descriptors"][a], stored["descriptors"][b])
    verified = verified_scores(stored["images"][a], stored["images"][b])
    scores = {
        kind: {
            "screen_min": round(float(screen[kinds == kind].min()), 4),
            "verified_min": round(float(verified[kinds == kind].min()), 4),
            "verified_median": round(float(np.median(verified[kinds == kind])), 4),
        }
        for kind in ALTERATIONS
    }
    quality = {
        "originals": len(list_images(data)),
        "copies": len(truth),
        "copies_found": sum(v[0] for v in by_kind.values()),
        "recall_by_alteration": {k: f"{v[0]}/{v[1]}" for k, v in by_kind.items()},
        "recall_min": min(v[0] / v[1] for v in by_kind.values()),
        "other_pairs_reported": other,
        "copy_scores": scores,
        "copy_screen_min": round(float(screen.min()), 4),
        "copy_verified_min": round(float(verified.min()), 4),
    }
    SCORES["copies"] = {"screen": screen, "verified": verified, "kinds": kinds}
    return quality


def pool_scores(name: str, cache: Path, threshold: float, pngs: Path | None) -> dict[str, Any]:
    """Section 2 for one pool: every pair's screen and verified score, by same / different patient."""
    from xraycache.analysis.near_duplicates import SCREEN, find_pairs, indexed_scores
    from xraycache.analysis.registration import aligned_scores, thumbnails

    stored = read_cache(cache)
    n = len(stored["paths"])
    patients = np.array([p or f"#{i}" for i, p in enumerate(stored["patients"])])
    a, b = np.triu_indices(n, k=1)
    same = patients[a] == patients[b]
    screen = indexed_scores(stored["descriptors"].astype(np.float32), a, b, threshold=-1.0)
    started = time.perf_counter()
    verified = aligned_scores(thumbnails(stored["images"]), a, b)
    seconds = time.perf_counter() - started
    nearest = np.full(n, -1.0)
    unrelated = ~same
    np.maximum.at(nearest, a[unrelated], verified[unrelated])
    np.maximum.at(nearest, b[unrelated], verified[unrelated])
    top = np.sort(nearest)[-max(1, n // 10) :]
    beta = float(np.mean(top - top[0])) or 1e-6  # exponential tail: mean excess over the 90th percentile
    tail = 0.1 * np.exp(-(threshold - top[0]) / beta)
    pairs = find_pairs(stored["descriptors"], pixels=stored["images"].__getitem__)
    flagged = [
        {
            "a": stored["paths"][x],
            "b": stored["paths"][y],
            "score": round(float(s), 4),
            "same_patient": bool(patients[x] == patients[y]),
        }
        for x, y, s in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.score.tolist(), strict=True)
    ]
    SCORES[name] = {"screen": screen, "verified": verified, "same_patient": same, "nearest": nearest}
    hardest = np.argsort(np.where(unrelated, verified, -1))[::-1][:10]
    record = {
        "pool": name,
        "images": n,
        "patients": len(set(patients.tolist())),
        "unrelated_pairs": int(unrelated.sum()),
        "same_patient_pairs": int(same.sum()),
        "unrelated_verified_max": round(float(verified[unrelated].max()), 4),
        "unrelated_verified_quantiles": {
            q: round(float(np.quantile(verified[unrelated], float(q))), 4) for q in ("0.5", "0.99", "0.999", "0.9999")
        },
        "unrelated_screen_max": round(float(screen[unrelated].max()), 4),
        "unrelated_passing_screen": int((screen[unrelated] >= SCREEN).sum()),
        "unrelated_at_or_above_threshold": int((verified[unrelated] >= threshold).sum()),
        "same_patient_verified_max": round(float(verified[same].max()), 4) if same.any() else None,
        "same_patient_at_or_above_threshold": int((verified[same] >= threshold).sum()),
        "nearest_unrelated_quantiles": {
            q: round(float(np.quantile(nearest, float(q))), 4) for q in ("0.5", "0.9", "1.0")
        },
        "tail_fit": {"q90": round(float(top[0]), 4), "mean_excess": round(beta, 4), "p_at_threshold": float(tail)},
        "false_pairs_at_1e6_candidates": float(tail * CANDIDATES_AT_SCALE),
        "hardest_unrelated": [
            {"a": stored["paths"][a[k]], "b": stored["paths"][b[k]], "verified": round(float(verified[k]), 4)}
            for k in hardest
        ],
        "flagged": flagged,
        "verify_ms_per_pair": round(1000 * seconds / len(a), 3),
    }
    if pngs is not None:
        pngs.mkdir(parents=True, exist_ok=True)
        shown = [(f["a"], f["b"], f"flagged {f['score']}") for f in flagged]
        shown += [(h["a"], h["b"], f"unrelated {h['verified']}") for h in record["hardest_unrelated"][:3]]
        index = {p: i for i, p in enumerate(stored["paths"])}
        for k, (x, y, what) in enumerate(shown):
            side = np.concatenate([stored["images"][index[x]], stored["images"][index[y]]], axis=1)
            Image.fromarray(side).save(pngs / f"{name}-{k:02d}-{what.replace(' ', '_')}.png")
    return record


def timing(data: Path, work: Path, reps: int) -> dict[str, Any]:
    """Section 3: the cold build and the search of its cache, alternated, median of ``reps``."""
    import xraycache
    from xraycache.analysis.near_duplicates import find_pairs

    builds, searches, pairs = [], [], None
    for rep in range(reps):
        out = work / f"cold{rep}.h5"
        builds.append(build(data, out))
        with xraycache.open(out) as cache:
            split = cache["train"]
            started = time.perf_counter()
            pairs = find_pairs(split.descriptors, pixels=split.images.__getitem__)
            searches.append(time.perf_counter() - started)
        out.unlink()
    assert pairs is not None
    n = pairs.images
    build_s, search_s = float(np.median(builds)), float(np.median(searches))
    return {
        "images": n,
        "cold_build_seconds": round(build_s, 3),
        "search_seconds": round(search_s, 3),
        "build_ms_per_image": round(1000 * build_s / n, 3),
        "search_ms_per_image": round(1000 * search_s / n, 3),
        "search_share_of_build": round(search_s / build_s, 4),
        "screened": pairs.candidates,
        "verified": pairs.verified,
        "images_read": pairs.images_read,
        "load_average": round(os.getloadavg()[0], 2),
    }


def pictures(data: Path, n: int, seed: int) -> np.ndarray:
    """``n`` 64 px pictures of augmented real radiographs (random crops of 55-85% of a side, flips, gamma,
    noise, blends of two): distinct pictures of the same kind, for the search's time at scale."""
    rng = np.random.default_rng(seed)
    bases = []
    for f in list_images(data):
        with Image.open(f) as image:
            image.draft("L", (512, 512))
            bases.append(np.asarray(image.convert("L").resize((256, 256), Image.Resampling.BOX), dtype=np.float32))
    out = np.empty((n, 64, 64), dtype=np.uint8)
    for i in range(n):
        a, b = bases[rng.integers(len(bases))], bases[rng.integers(len(bases))]
        picture = (1 - (w := rng.uniform(0.15, 0.4))) * a + w * b[:, ::-1]
        cw, ch = (rng.uniform(0.55, 0.85, 2) * 256).astype(int)
        x0, y0 = rng.integers(0, 256 - cw + 1), rng.integers(0, 256 - ch + 1)
        crop = picture[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = 255 * (np.clip(crop, 0, 255) / 255) ** rng.uniform(0.7, 1.4)
        small = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize((64, 64), Image.Resampling.BOX)
        out[i] = np.clip(np.rint(np.asarray(small, dtype=np.float32) + rng.normal(0, 2, (64, 64))), 0, 255)
    return out


def timing_at_scale(data: Path, sizes: list[int], seed: int) -> list[dict[str, Any]]:
    """``find_pairs`` (screen and pixel check) on n augmented pictures, once each."""
    from xraycache.analysis.near_duplicates import find_pairs
    from xraycache.core.pixels import pixel_descriptor

    stack = pictures(data, max(sizes), seed)
    descriptors = np.stack([pixel_descriptor(p) for p in stack])
    rows = []
    for n in sizes:
        started, cpu = time.perf_counter(), time.process_time()
        pairs = find_pairs(descriptors[:n], pixels=stack.__getitem__)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "images": n,
                "seconds": round(seconds, 2),
                "cpu_seconds": round(time.process_time() - cpu, 2),
                "ms_per_image": round(1000 * seconds / n, 3),
                "screened": pairs.candidates,
                "verified": pairs.verified,
                "pairs": len(pairs),
                "load_average": round(os.getloadavg()[0], 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of real radiographs, e.g. ../shared/data/chest_xray")
    parser.add_argument("--extra", type=Path, action="append", default=[], help="another folder of real ones")
    parser.add_argument("--copies", type=int, default=62, help="altered copies per alteration")
    parser.add_argument("--large", type=int, default=50_000, help="pictures for the search's time at scale")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs-png", type=Path, help="write flagged and hardest pairs side by side here")
    parser.add_argument("--cost-only", action="store_true", help="only the cost (section 3)")
    parser.add_argument("--scores-out", type=Path, help="save every score measured here (.npz)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from xraycache.analysis.near_duplicates import THRESHOLD

    pools: list[dict[str, Any]] = []
    quality: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cost = timing(args.data, work, args.reps)
        if not args.cost_only:
            quality = planted_recall(args.data, work, args.copies, args.seed)
            for k, folder in enumerate([args.data, *args.extra]):
                build(folder, work / f"pool{k}.h5")
                name = folder.name if k else "sample"
                pools.append(pool_scores(name, work / f"pool{k}.h5", THRESHOLD, args.pairs_png))
    at_scale = timing_at_scale(args.data, [5856, args.large], args.seed)
    record: dict[str, Any] = {
        "benchmark": "near_duplicates",
        "commit": git_commit(Path(__file__).parent.parent),
        "machine": machine_info(),
        "data": [data_digest(d) for d in [args.data, *args.extra]],
        "threshold": THRESHOLD,
        "quality": quality,
        "pools": pools,
        "cost": cost,
        "at_scale": at_scale,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if quality is not None:
        highest = max(p["unrelated_verified_max"] for p in pools)
        lowest = quality["copy_verified_min"]
        record["margin"] = {"lowest_copy": lowest, "highest_unrelated": highest, "width": round(lowest - highest, 4)}
    append_record(HISTORY, record)
    if args.scores_out is not None:
        np.savez_compressed(args.scores_out, **{f"{k}.{f}": v for k, d in SCORES.items() for f, v in d.items()})
    if args.json:
        print(json.dumps(record, indent=2))
        return
    print(
        f"cost on {cost['images']} images: cold build {cost['cold_build_seconds']} s, search {cost['search_seconds']} s "
        f"({cost['search_share_of_build']:.1%}; {cost['search_ms_per_image']} ms an image)"
    )
    for row in at_scale:
        print(
            f"find_pairs on {row['images']:,} pictures: {row['seconds']} s ({row['ms_per_image']} ms an image), "
            f"{row['verified']:,} verified"
        )
    if quality is None:
        return
    q = quality
    print(
        f"recall {q['copies_found']}/{q['copies']}; by alteration: "
        + ", ".join(f"{k} {v}" for k, v in q["recall_by_alteration"].items())
    )
    print(f"other pairs reported in the planted build: {len(q['other_pairs_reported'])}")
    for k, v in q["copy_scores"].items():
        print(f"  {k}: screen min {v['screen_min']}, verified min {v['verified_min']}, median {v['verified_median']}")
    for p in pools:
        print(
            f"{p['pool']}: {p['images']} images, {p['unrelated_pairs']:,} unrelated pairs, verified max "
            f"{p['unrelated_verified_max']}, >= threshold {p['unrelated_at_or_above_threshold']}; same patient max "
            f"{p['same_patient_verified_max']} ({p['same_patient_at_or_above_threshold']} >= threshold); flagged "
            f"{len(p['flagged'])}; expected false pairs at 1e6 candidates {p['false_pairs_at_1e6_candidates']:.2g}"
        )
    m = record["margin"]
    print(f"margin: lowest copy {m['lowest_copy']} - highest unrelated {m['highest_unrelated']} = {m['width']}")


if __name__ == "__main__":
    main()
