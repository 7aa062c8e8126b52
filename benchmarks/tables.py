"""Real release tables at full size: the table scan's time and memory, and its counts against the table's own.

    python -m benchmarks.tables [--work /tmp/xraycache-tables] [--datasets chexpert,nih]

The tables come from torchxrayvision's wheel (``pip download --no-deps torchxrayvision``, kept in the
work folder, never in the repository): CheXpert-v1.0-small's ``train.csv`` (223,414 rows) and NIH's
``Data_Entry_2017_v2020.csv`` (112,120 rows). For each, a tree of empty files at every path the table
names is made once (CheXpert: ``train/patientNNNNN/studyN/viewN_*.jpg``; NIH: the Kaggle mirror's
``images_0NN/images/``), then ``build --dry-run --json`` runs with the table, in a child process whose
peak RSS is read: the scan and prepare stages, no decoding. Its counts of images, patients, studies and
views per split are compared with those computed from the table by the csv module alone.
Appends to ``benchmarks/results/tables.jsonl``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import re
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from .common import append_record, machine_info

ROOT = Path(__file__).resolve().parent.parent
TABLES = {
    "chexpert": "torchxrayvision/data/chexpert_train.csv.gz",
    "nih": "torchxrayvision/data/Data_Entry_2017_v2020.csv.gz",
    "vindr": "torchxrayvision/data/vinbigdata-train.csv.gz",  # for benchmarks/label_counts.py
    "padchest": "torchxrayvision/data/PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz",
    "rsna": "torchxrayvision/data/kaggle_stage_2_train_labels.csv.zip",
}
NIH_PER_FOLDER = 10_000  # the Kaggle mirror's images_001 ... images_012 hold about this many each


def fetch_table(work: Path, dataset: str) -> Path:
    """The release table, extracted from torchxrayvision's wheel into ``work`` (downloaded once)."""
    target = work / Path(TABLES[dataset]).name
    if target.exists():
        return target
    wheels = sorted(work.glob("torchxrayvision-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "torchxrayvision", "-d", str(work)], check=True
        )
        wheels = sorted(work.glob("torchxrayvision-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        target.write_bytes(wheel.read(TABLES[dataset]))
    return target


def rows_of(table: Path) -> list[dict[str, str]]:
    with gzip.open(table, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


def make_tree(src: Path, paths: list[str]) -> None:
    """Empty files at ``paths`` under ``src`` (made once: a marker file says the tree is complete)."""
    done = src / ".complete"
    if done.exists():
        return
    for rel in paths:
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    done.touch()


def chexpert_case(work: Path, table: Path) -> tuple[Path, list[str], dict[str, Any]]:
    """SRC, the build options and the expected counts for CheXpert-small's train.csv (frontal views)."""
    rows = rows_of(table)
    src = work / "chexpert" / "CheXpert-v1.0-small"
    make_tree(src, [r["Path"].removeprefix("CheXpert-v1.0-small/") for r in rows])
    frontal = [r for r in rows if r["Frontal/Lateral"] == "Frontal"]
    paths = [r["Path"] for r in frontal]
    expected = {
        "train": {
            "images": len(set(paths)),
            "patients": len({re.search(r"patient\d+", p).group() for p in paths}),  # type: ignore[union-attr]
            "studies": len({re.search(r"patient\d+/study\d+", p).group() for p in paths}),  # type: ignore[union-attr]
            "views": dict(sorted(Counter(r["AP/PA"] for r in frontal if r["AP/PA"]).items())),
        }
    }
    options = ["--labels", str(table), "--path-col", "Path", "--where", "Frontal/Lateral=Frontal"]
    options += ["--patient-pattern", r"patient\d+", "--study-pattern", r"patient\d+/study\d+", "--view-col", "AP/PA"]
    return src, options, expected


def nih_case(work: Path, table: Path) -> tuple[Path, list[str], dict[str, Any]]:
    """SRC (the Kaggle mirror's twelve folders), the build options and the expected counts for NIH's table."""
    rows = rows_of(table)
    src = work / "nih"
    names = sorted(r["Image Index"] for r in rows)
    make_tree(src, [f"images_{1 + i // NIH_PER_FOLDER:03d}/images/{name}" for i, name in enumerate(names)])
    expected = {
        "all": {
            "images": len(set(names)),
            "patients": len({r["Patient ID"] for r in rows}),
            "studies": 0,
            "views": dict(sorted(Counter(r["View Position"] for r in rows).items())),
        }
    }
    options = ["--labels", str(table), "--path-col", "Image Index", "--label-col", "Finding Labels"]
    options += ["--label-sep", "|", "--patient-col", "Patient ID", "--view-col", "View Position"]
    return src, options, expected


CASES = {"chexpert": chexpert_case, "nih": nih_case}


def dry_run(src: Path, options: list[str], out: Path) -> tuple[dict[str, Any], float, float]:
    """The build report of a dry run, its wall seconds and the child's peak RSS in MB."""
    code = (
        "import resource, subprocess, sys, json\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'exit': done.returncode, 'out': done.stdout, 'err': done.stderr, 'peak': peak}))\n"
    )
    command = [sys.executable, "-m", "xraycache", "build", str(src), str(out), "--dry-run", "--json", *options]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, check=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    result = json.loads(done.stdout)
    if result["exit"] != 0:
        raise SystemExit(f"build failed: {result['err'].strip()}")
    return json.loads(result["out"]), seconds, result["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/xraycache-tables"), help="trees and tables (kept)")
    parser.add_argument("--datasets", default="chexpert,nih")
    parser.add_argument("--history", type=Path, default=ROOT / "benchmarks" / "results" / "tables.jsonl")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets.split(","):
        table = fetch_table(args.work, dataset)
        src, options, expected = CASES[dataset](args.work, table)
        report, seconds, peak = dry_run(src, options, args.work / f"{dataset}.h5")
        got = {
            split: {key: value for key, value in counts.items() if key in ("images", "patients", "studies", "views")}
            for split, counts in report["tables"]["splits"].items()
        }
        record = {
            "benchmark": "tables",
            "dataset": dataset,
            "table": table.name,
            "day": time.strftime("%Y-%m-%d"),
            "machine": machine_info(),
            "rows": report["tables"]["rows"],
            "found_by": report["tables"]["found_by"],
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak, 1),
            "counts": got,
            "expected": expected,
            "counts_equal": got == expected,
        }
        append_record(args.history, record)
        print(
            f"{dataset}: {record['rows']:,} rows ({record['found_by']}), dry-run build {seconds:.1f} s, "
            f"peak RSS {peak:.0f} MB, counts equal to the table's: {record['counts_equal']}"
        )
        if got != expected:
            print(json.dumps({"got": got, "expected": expected}, indent=1), file=sys.stderr)


if __name__ == "__main__":
    sys.stdout = io.TextIOWrapper(sys.stdout.buffer, line_buffering=True)
    main()
