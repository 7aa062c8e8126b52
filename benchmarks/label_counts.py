"""Real release tables, every label shape: the labels a cache stores against the counts of the tables themselves.

    python -m benchmarks.label_counts [--work /tmp/xraycache-labels] [--datasets chexpert,vindr,padchest]

The tables come from torchxrayvision's wheel (as ``benchmarks/tables.py`` fetches them, never committed):

- CheXpert-v1.0-small ``train.csv`` (223,414 rows; 14 coded columns: ``--label-cols "No Finding..Support
  Devices"``): per label, the images positive / negative / uncertain / missing;
- VinDr-CXR ``train.csv`` (67,914 rows, one per radiologist and finding, 15,000 images: ``--label-sep "|"``,
  the union of an image's rows): per finding, the images at least one radiologist gave it;
- NIH ChestX-ray14's ``Data_Entry_2017_v2020.csv`` (112,120 rows, ``--label-sep "|"``): per finding, the images;
- RSNA Pneumonia's ``stage_2_train_labels.csv`` (30,227 rows, one per box, 26,684 images, ``--label-col
  Target``): the images of each Target;
- PadChest's label table (160,861 rows of ``['name', ...]`` list cells: ``--label-list``; the 103 rows whose
  cell is ``nan`` left out with ``--where 'Labels!=nan'``): per name, the images whose list holds it.

A tree with a tiny JPEG at every path a table names is made once, a real cache is built from it
(``--size 8``: the decode is not what is measured), and the per-label counts read from the cache are compared
with those computed from the table by the csv module (PadChest's lists by ``ast.literal_eval``, on this known
file only: an independent parser, not the build's). Appends to ``benchmarks/results/label_counts.jsonl``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import subprocess
import sys
import time
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .common import append_record, machine_info
from .tables import ROOT, fetch_table, make_tree, rows_of

CHEXPERT_14 = "No Finding..Support Devices"
STATES = {"1": "positive", "0": "negative", "-1": "uncertain", "": "missing"}
CODE_STATES = {1: "positive", 0: "negative", -1: "uncertain", -2: "missing"}


def tiny_jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(out, "JPEG")
    return out.getvalue()


def image_tree(src: Path, paths: list[str]) -> None:
    """A tiny JPEG at each path (made once: ``make_tree``'s marker says the tree is complete)."""
    make_tree(src, paths)
    data = tiny_jpeg()
    marker = src / ".jpeg"
    if not marker.exists():
        for rel in paths:
            (src / rel).write_bytes(data)
        marker.touch()


def chexpert_case(work: Path, table: Path) -> tuple[Path, list[str], dict[str, Counter[str]]]:
    rows = rows_of(table)
    columns = list(rows[0])[5:]
    src = work / "chexpert" / "CheXpert-v1.0-small"
    by_path = {r["Path"].removeprefix("CheXpert-v1.0-small/"): r for r in rows}
    image_tree(src, list(by_path))
    expected = {c: Counter(_state(r[c]) for r in by_path.values()) for c in columns}
    return src, ["--labels", str(table), "--path-col", "Path", "--label-cols", CHEXPERT_14], expected


def _state(cell: str) -> str:
    text = cell.strip()
    return STATES[str(int(float(text)))] if text else "missing"


def vindr_case(work: Path, table: Path) -> tuple[Path, list[str], dict[str, Counter[str]]]:
    rows = rows_of(table)
    src = work / "vindr"
    images = sorted({r["image_id"] for r in rows})
    image_tree(src, [f"train/{image}.png" for image in images])
    given: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        given[r["class_name"]].add(r["image_id"])
    expected = {name: Counter(positive=len(ids), negative=len(images) - len(ids)) for name, ids in given.items()}
    options = ["--labels", str(table), "--path-col", "image_id", "--label-col", "class_name", "--label-sep", "|"]
    return src, options, expected


def padchest_case(work: Path, table: Path) -> tuple[Path, list[str], dict[str, Counter[str]]]:
    rows = rows_of(table)
    src = work / "padchest"
    by_image = {r["ImageID"]: r for r in rows if r["Labels"] != "nan"}
    image_tree(src, [f"{r['ImageDir']}/{r['ImageID']}" for r in rows])
    given: dict[str, set[str]] = defaultdict(set)
    for image, r in by_image.items():
        cell = r["Labels"].strip()
        for name in ast.literal_eval(cell) if cell else []:  # this known file only: the independent count
            if name.strip():
                given[name.strip()].add(image)
    n = len(by_image)
    expected = {name: Counter(positive=len(ids), negative=n - len(ids)) for name, ids in given.items()}
    options = ["--labels", str(table), "--path-col", "ImageID", "--label-col", "Labels", "--label-list"]
    options += ["--where", "Labels!=nan"]
    return src, options, expected


def nih_case(work: Path, table: Path) -> tuple[Path, list[str], dict[str, Counter[str]]]:
    rows = rows_of(table)
    src = work / "nih"
    image_tree(src, [f"images/{r['Image Index']}" for r in rows])
    given: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        for name in r["Finding Labels"].split("|"):
            given[name.strip()].add(r["Image Index"])
    n = len({r["Image Index"] for r in rows})
    expected = {name: Counter(positive=len(ids), negative=n - len(ids)) for name, ids in given.items()}
    options = ["--labels", str(table), "--path-col", "Image Index", "--label-col", "Finding Labels"]
    return src, [*options, "--label-sep", "|"], expected


def rsna_case(work: Path, table: Path) -> tuple[Path, list[str], dict[str, Counter[str]]]:
    """RSNA Pneumonia: one row per box, ``Target`` repeated (the wheel holds it zipped: extracted here)."""
    csv_path = work / "stage_2_train_labels.csv"
    if not csv_path.exists():
        with zipfile.ZipFile(table) as archive:
            csv_path.write_bytes(archive.read("stage_2_train_labels.csv"))
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    src = work / "rsna"
    target = {r["patientId"]: r["Target"] for r in rows}
    image_tree(src, [f"stage_2_train_images/{image}.png" for image in target])
    counts = Counter(target.values())
    expected = {name: Counter(positive=counts[name], negative=len(target) - counts[name]) for name in counts}
    return src, ["--labels", str(csv_path), "--path-col", "patientId", "--label-col", "Target"], expected


CASES = {
    "chexpert": chexpert_case,
    "vindr": vindr_case,
    "padchest": padchest_case,
    "nih": nih_case,
    "rsna": rsna_case,
}


def cache_counts(path: Path) -> tuple[dict[str, Counter[str]], int]:
    """Per label, the images of every split in each state, and the images in the cache."""
    sys.path.insert(0, str(ROOT))
    import xraycache

    with xraycache.open(path) as cache:
        labels = np.concatenate([cache[s].labels for s in cache.splits])
        names = cache.label_names
    if labels.ndim == 1:  # single-label: one column per label, the image's label or not
        labels = (labels[:, None] == np.arange(len(names))).astype(np.uint8)
    out = {}
    for c, name in enumerate(names):
        values = Counter(labels[:, c].tolist())
        if labels.dtype == np.int8:
            out[name] = Counter({CODE_STATES[k]: v for k, v in values.items()})
        else:
            out[name] = Counter({("positive" if k else "negative"): v for k, v in values.items()})
    return out, len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/xraycache-labels"), help="trees and tables (kept)")
    parser.add_argument("--datasets", default="chexpert,vindr,padchest,nih,rsna")
    parser.add_argument("--history", type=Path, default=ROOT / "benchmarks" / "results" / "label_counts.jsonl")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets.split(","):
        table = fetch_table(args.work, dataset)
        src, options, expected = CASES[dataset](args.work, table)
        out = args.work / f"{dataset}.h5"
        command = [sys.executable, "-m", "xraycache", "build", str(src), str(out), "--size", "8", "--overwrite"]
        started = time.perf_counter()
        done = subprocess.run([*command, *options, "--json"], capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{dataset}: build failed: {done.stderr.strip()[-2000:]}")
        got, images = cache_counts(out)
        equal = got == expected
        record: dict[str, Any] = {
            "benchmark": "label_counts",
            "dataset": dataset,
            "table": table.name,
            "day": time.strftime("%Y-%m-%d"),
            "machine": machine_info(),
            "images": images,
            "labels": len(got),
            "build_seconds": round(seconds, 1),
            "counts_equal": equal,
            "counts": {name: dict(sorted(c.items())) for name, c in sorted(got.items())},
        }
        append_record(args.history, record)
        print(f"{dataset}: {images:,} images, {len(got)} labels, build {seconds:.0f} s, counts equal: {equal}")
        if not equal:
            diff = {n: [dict(got.get(n, {})), dict(expected.get(n, {}))] for n in set(got) | set(expected)}
            print(json.dumps({n: d for n, d in diff.items() if d[0] != d[1]}, indent=1)[:4000], file=sys.stderr)


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, line_buffering=True)
    main()
