"""Near-duplicate search: recall and false positives on real radiographs, and its time at 5,856 and 100,000.

1. **Recall / false positives, through a real build.** The real sample is cut by patient into two
   halves. The first half goes to ``train``; into ``test`` go altered copies of a quarter of ``train``
   under new names and new patient ids (each alteration of docs/leakage.md "Near-duplicates" in turn:
   JPEG quality 60, half size, 1.3x size, brightness and contrast +-10%, 5% crops of every side or of
   one side, random crops up to 5% per side, a shift of 3% and a mix of them) and the second half,
   held-out radiographs of other patients. ``xraycache build`` makes the cache, ``Cache.leakage()``
   reports: recall = copies paired with their original; false positives = held-out images paired with
   anything.
2. **Time**, on descriptors of augmented real images (random crops of 55-85% of a side, flips, gamma,
   noise, blends of two radiographs: distinct pictures that look like chest X-rays, not random vectors):
   ``find_pairs`` on 5,856 (the Kaggle set's size) and on 100,000, with the candidate pair count.

    python -m benchmarks.near_duplicates ../shared/data/chest_xray [--large 100000] [--json]

Appends a record to benchmarks/results/near_duplicates.jsonl.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
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


def patient(path: str) -> str:
    """Kermany's patient ids: personN_..., IM-NNNN-..., NORMAL2-IM-NNNN-..."""
    name = Path(path).name
    match = re.match(r"(person\d+)_", name) or re.match(r"((?:NORMAL2-)?IM-\d+)-", name)
    return match.group(1) if match else name


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


def plant(files: list[str], root: Path, src: Path, rng: np.random.Generator) -> dict[str, Any]:
    """Write the train / test folders; returns which test files are copies of which train files."""
    patients = sorted({patient(f) for f in files})
    order = rng.permutation(len(patients))
    first = {patients[i] for i in order[: len(patients) // 2]}
    train = [f for f in files if patient(f) in first]
    held = [f for f in files if patient(f) not in first]
    copies: dict[str, str] = {}
    for f in train:
        target = src / "train" / Path(f).parent.name / Path(f).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(f).read_bytes())
    for f in held:
        target = src / "test" / Path(f).parent.name / Path(f).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(f).read_bytes())
    chosen = [train[i] for i in sorted(rng.choice(len(train), size=len(train) // 4, replace=False))]
    kinds: dict[str, str] = {}
    for i, f in enumerate(chosen):
        kind = ALTERATIONS[i % len(ALTERATIONS)]
        image = Image.open(f)
        image.load()
        name = f"copy{i:04d}_{kind}.jpeg"  # a new name, and so a new patient id
        target = src / "test" / Path(f).parent.name / name
        alter(image.convert("L"), kind, rng).convert("L").save(target, "JPEG", quality=90)
        rel = f"train/{Path(f).parent.name}/{Path(f).name}"
        copies[f"test/{Path(f).parent.name}/{name}"] = rel
        kinds[f"test/{Path(f).parent.name}/{name}"] = kind
    held_rel = [f"test/{Path(f).parent.name}/{Path(f).name}" for f in held]
    return {"copies": copies, "kinds": kinds, "held": held_rel, "train": len(train)}


def recall_and_false_positives(data: Path, work: Path, seed: int) -> dict[str, Any]:
    """Build the planted set with the CLI and score the leakage report against the truth."""
    import xraycache

    rng = np.random.default_rng(seed)
    src = work / "planted"
    truth = plant(list_images(data), work, src, rng)
    out = work / "planted.h5"
    subprocess.run([sys.executable, "-m", "xraycache", "build", str(src), str(out), "-q", "--overwrite"], check=True)
    with xraycache.open(out) as cache:
        started = time.perf_counter()
        report = cache.leakage()
        seconds = time.perf_counter() - started
        descriptors = np.concatenate([cache[split].descriptors for split in cache.splits])
        paths = [str(p) for split in cache.splits for p in cache[split].meta["path"]]
    linked: dict[str, set[str]] = {}
    for pair in report.near_duplicates:
        linked.setdefault(pair.a[1], set()).add(pair.b[1])
        linked.setdefault(pair.b[1], set()).add(pair.a[1])
    found = {c for c, original in truth["copies"].items() if original in linked.get(c, set())}
    by_kind: dict[str, list[int]] = {}
    for copy, kind in truth["kinds"].items():
        by_kind.setdefault(kind, [0, 0])[0] += copy in found
        by_kind[kind][1] += 1
    flagged = [h for h in truth["held"] if any(patient(other) != patient(h) for other in linked.get(h, ()))]
    index = {path: i for i, path in enumerate(paths)}
    planted = [(index[original], index[copy]) for copy, original in truth["copies"].items()]
    return (
        descriptors,
        planted,
        {
            "train_images": truth["train"],
            "copies": len(truth["copies"]),
            "copies_found": len(found),
            "recall": len(found) / len(truth["copies"]),
            "recall_by_alteration": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_kind.items())},
            "held_out": len(truth["held"]),
            "held_out_flagged": len(flagged),
            "false_positive_rate": len(flagged) / len(truth["held"]),
            "flagged": flagged,
            "pairs_reported": len(report.near_duplicates),
            "report_seconds": round(seconds, 3),
        },
    )


def augmented_descriptors(data: Path, n: int, seed: int) -> np.ndarray:
    """``n`` descriptors of augmented real radiographs: distinct pictures of the same kind (a few are
    near-duplicates of each other, when two crops of the same radiograph happen to nearly coincide)."""
    from xraycache.core.schema import DESCRIPTOR_SIDE

    rng = np.random.default_rng(seed)
    bases = []
    for f in list_images(data):
        image = Image.open(f)
        image.draft("L", (512, 512))
        bases.append(np.asarray(image.convert("L").resize((256, 256), Image.Resampling.BOX), dtype=np.float32))
    out = np.empty((n, DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), dtype=np.uint8)
    side = DESCRIPTOR_SIDE
    for i in range(n):
        a, b = bases[rng.integers(len(bases))], bases[rng.integers(len(bases))]
        picture = (1 - (w := rng.uniform(0.15, 0.4))) * a + w * b[:, ::-1]
        cw, ch = (rng.uniform(0.55, 0.85, 2) * 256).astype(int)
        x0, y0 = rng.integers(0, 256 - cw + 1), rng.integers(0, 256 - ch + 1)
        crop = picture[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = 255 * (np.clip(crop, 0, 255) / 255) ** rng.uniform(0.7, 1.4)
        small = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).resize((side, side), Image.Resampling.BOX)
        noisy = np.asarray(small, dtype=np.float32) + rng.normal(0, 2, (side, side))
        out[i] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out


def timing(
    real: np.ndarray, planted: list[tuple[int, int]], augmented: np.ndarray, sizes: list[int], reps: int
) -> list[dict[str, Any]]:
    """Wall time (median of ``reps``) of ``find_pairs`` on n descriptors, the real planted set's among them
    (so the planted copies' recall at that size is measured too), for each n."""
    from xraycache.analysis.near_duplicates import find_pairs

    rows = []
    for n in sizes:
        descriptors = np.concatenate([real, augmented[: max(0, n - len(real))]])
        times, cpu, pairs = [], [], None
        for _ in range(reps if n < 50_000 else 1):
            started, cpu_started = time.perf_counter(), time.process_time()
            pairs = find_pairs(descriptors)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        assert pairs is not None
        found = set(zip(pairs.a.tolist(), pairs.b.tolist(), strict=True))
        kept = sum((min(a, b), max(a, b)) in found for a, b in planted)
        rows.append(
            {
                "descriptors": len(descriptors),
                "seconds": round(float(np.median(times)), 2),
                "cpu_seconds": round(float(np.median(cpu)), 2),  # all threads
                "load_average": round(os.getloadavg()[0], 2),
                "candidates": pairs.candidates,
                "pairs": len(pairs),
                "planted_copies_found": f"{kept}/{len(planted)}",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder of real radiographs, e.g. ../shared/data/chest_xray")
    parser.add_argument("--large", type=int, default=100_000, help="descriptors for the large timing")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        real, planted, quality = recall_and_false_positives(args.data, Path(tmp), args.seed)
    augmented = augmented_descriptors(args.data, args.large, args.seed)
    times = timing(real, planted, augmented, [5856, args.large], args.reps)
    record = {
        "benchmark": "near_duplicates",
        "commit": git_commit(Path(__file__).parent.parent),
        "machine": machine_info(),
        "data": data_digest(args.data),
        "quality": quality,
        "timing": times,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    append_record(HISTORY, record)
    if args.json:
        print(json.dumps(record, indent=2))
        return
    q = quality
    print(
        f"recall {q['copies_found']}/{q['copies']} = {q['recall']:.1%} of altered copies; "
        f"false positives {q['held_out_flagged']}/{q['held_out']} = {q['false_positive_rate']:.1%} of held-out images"
    )
    print("  by alteration: " + ", ".join(f"{k} {v}" for k, v in q["recall_by_alteration"].items()))
    for row in times:
        print(
            f"find_pairs on {row['descriptors']:,} descriptors: {row['seconds']:.2f} s "
            f"(CPU {row['cpu_seconds']:.1f} s, load average {row['load_average']}), "
            f"{row['candidates']:,} candidate pairs verified, {row['pairs']:,} near-duplicate pairs; "
            f"planted copies found among them {row['planted_copies_found']}"
        )


if __name__ == "__main__":
    main()
