"""Read speed of a cache, one implementation against another, side by side: shuffled batches and load().

    python -m benchmarks.reads CACHE [CACHE ...] [--against REV] [--reps 7]

Each rep runs every implementation once, in a fresh process, in turn (so a busy machine slows all of them
alike); figures are medians over the reps, and the ratio is the median of per-rep ratios. ``--against REV``
measures the code of that git revision too (checked out to a temporary folder and put first on
PYTHONPATH), e.g. the commit before a change to the reader. One JSON line per run is appended to
``benchmarks/results/reads.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .common import append_record, git_commit, machine_info, median

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "reads.jsonl"
BATCH = 64

CHILD = r"""
import json, statistics, sys, time
import xraycache
path, seed = sys.argv[1], int(sys.argv[2])
out = {}
with xraycache.open(path) as cache:
    name = max(cache.splits, key=lambda s: len(cache[s]))
    split = cache[name]
    n = len(split)
    for dtype in (None, "float32"):
        rates = []
        for epoch in range(3):  # the median of 3 passes: the first one also pays for first touches
            started = time.perf_counter()
            count = sum(len(yb) for _, yb in split.batches(64, shuffle=True, seed=seed, epoch=epoch, dtype=dtype))
            rates.append(count / (time.perf_counter() - started))
        out["batches_" + (dtype or "uint8")] = statistics.median(rates)
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        x, _ = split.load(channels=None, label_dtype=None)
        rates.append(x.shape[0] / (time.perf_counter() - started))
    out["load"] = statistics.median(rates)
    out["images"] = n
started = time.perf_counter()
for _ in range(20):
    with xraycache.open(path) as cache:
        cache[cache.splits[0]].labels
out["open_ms"] = (time.perf_counter() - started) / 20 * 1e3
print(json.dumps(out))
"""


def _run(pythonpath: str | None, cache: Path, seed: int) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(cache), str(seed)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _checkout(rev: str, into: Path) -> None:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "xraycache"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("caches", nargs="+", type=Path)
    parser.add_argument("--against", help="git revision whose reader to measure beside this checkout's")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        impls: dict[str, str | None] = {"this checkout": str(REPO)}
        if args.against:
            _checkout(args.against, Path(tmp))
            impls = {args.against: tmp, **impls}
        record: dict[str, Any] = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(REPO),
            "machine": machine_info(),
            "caches": {},
        }
        for cache in args.caches:
            runs: dict[str, list[dict[str, float]]] = {label: [] for label in impls}
            for rep in range(args.reps):
                for label, path in impls.items():
                    runs[label].append(_run(path, cache, rep))
            summary: dict[str, Any] = {}
            for label, rows in runs.items():
                summary[label] = {key: round(median([r[key] for r in rows]), 1) for key in rows[0]}
            if args.against:
                summary["ratio (this / against)"] = {
                    key: round(median([b[key] / a[key] for a, b in zip(*runs.values(), strict=True)]), 3)
                    for key in runs[args.against][0]
                    if key != "images"
                }
            record["caches"][str(cache)] = summary
            print(f"{cache}:")
            for label, figures in summary.items():
                print(f"  {label}: {figures}")
        append_record(RESULTS, record)


if __name__ == "__main__":
    main()
