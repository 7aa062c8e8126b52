"""Scaling benchmark: local loky vs a dask LocalCluster on the same cores, sharded vs single writer.

    python -m benchmarks.scaling [--images 50000] [--side 128] [--size 64] [--reps 1] [--shards 2,4]

Generates N small JPEGs (``common.write_small_dataset``), then times on this machine:

- the per-image parts of a build, in one process: decode+resize (``decode_file``) and the single writer
  (``CacheWriter.add`` + commit of already decoded images);
- full builds: loky (``--jobs`` = all cores) with one writer and with K shards, then the same on a
  ``distributed.LocalCluster`` with one single-threaded worker process per core (loopback only), so the
  difference is the overhead of the distributed path per image, not more hardware.

Prints a table and writes ``benchmarks/results/scaling.json``; ``docs/scaling.md`` projects from it.
Runs on its own (not part of ``benchmarks.run``); needs ``dask[distributed]`` for the cluster rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.common import git_commit, machine_info, median, write_small_dataset

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "scaling.json"


def per_image_costs(root: Path, size: int, sample: int) -> dict[str, float]:
    """Milliseconds per image of decode+resize and of the single writer, serially in this process."""
    from xraycache.builder.commit import commit_file
    from xraycache.builder.scan import scan
    from xraycache.builder.writer import CacheWriter
    from xraycache.core.options import ResizeOptions
    from xraycache.imaging.decode import decode_file

    found = scan(root)
    files = found.files[:sample]
    spec = ResizeOptions(size=size)
    started = time.perf_counter()
    decoded = [decode_file(str(found.root / f.path), spec) for f in files]
    decode_ms = (time.perf_counter() - started) * 1000 / len(files)
    out = Path(tempfile.mkdtemp(prefix="xraycache-writer-")) / "w.h5"
    capacities = {split: sum(1 for f in files if f.split == split) for split in found.splits}
    started = time.perf_counter()
    with CacheWriter(
        out, capacities=capacities, label_names=found.label_names, image_shape=(size, size), attrs={}
    ) as writer:
        for image, source in zip(decoded, files, strict=True):
            writer.add(image, source)
        commit_file(writer)
    writer_ms = (time.perf_counter() - started) * 1000 / len(files)
    shutil.rmtree(out.parent, ignore_errors=True)
    return {"decode_ms": decode_ms, "writer_ms": writer_ms, "sample": len(files)}


def timed_build(root: Path, out: Path, size: int, **options: Any) -> dict[str, Any]:
    import xraycache

    for stale in out.parent.glob(f"{out.name}*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    started = time.perf_counter()
    report = xraycache.build(root, out, size=size, overwrite=True, **options)
    seconds = time.perf_counter() - started
    reads = read_speed(out)
    return {"seconds": seconds, "images": report.images, "jobs": report.jobs, "bytes": report.output_bytes, **reads}


def read_speed(out: Path, batches: int = 200) -> dict[str, float]:
    """Images/s of ``load()`` of the train split and of shuffled ``batches(64)`` (warm page cache)."""
    import xraycache

    with xraycache.open(out) as cache:
        split = cache["train"]
        split.load(channels=None, label_dtype=None)  # warm the page cache: both layouts read the same bytes from memory
        started = time.perf_counter()
        images, _ = split.load(channels=None, label_dtype=None)
        load_rate = len(images) / (time.perf_counter() - started)
        started = time.perf_counter()
        count = 0
        for index, (xb, _) in enumerate(split.batches(64, seed=0)):
            count += len(xb)
            if index + 1 == batches:
                break
        batch_rate = count / (time.perf_counter() - started)
    return {"load_img_s": load_rate, "batches_img_s": batch_rate}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--side", type=int, default=128, help="side of the generated JPEGs")
    parser.add_argument("--size", type=int, default=64, help="--size of the builds")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--shards", default="2,4", help="comma-separated shard counts to time")
    parser.add_argument("--workdir", type=Path, default=None, help="keep data here (default: a temp folder)")
    parser.add_argument("--no-dask", action="store_true", help="skip the LocalCluster rows")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    work = args.workdir or Path(tempfile.mkdtemp(prefix="xraycache-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "chest_xray"
    started = time.perf_counter()
    if not root.exists():
        write_small_dataset(work, args.images, side=args.side)
    print(f"data: {args.images:,} JPEGs of {args.side}x{args.side} in {time.perf_counter() - started:.1f} s")
    costs = per_image_costs(root, args.size, min(2000, args.images))
    print(f"per image, one process: decode+resize {costs['decode_ms']:.3f} ms, writer {costs['writer_ms']:.3f} ms")
    shard_counts = [int(k) for k in args.shards.split(",") if k.strip()]
    configs: list[tuple[str, dict[str, Any]]] = [("loky, 1 writer", {"jobs": -1})]
    configs += [(f"loky, {k} shards", {"jobs": -1, "shards": k}) for k in shard_counts]
    rows: dict[str, list[dict[str, Any]]] = {}
    out = work / "out" / "cache.h5"
    out.parent.mkdir(exist_ok=True)
    for name, options in configs:
        rows[name] = [timed_build(root, out, args.size, **options) for _ in range(args.reps)]
        print(f"{name}: {median([r['seconds'] for r in rows[name]]):.1f} s")
    cluster_start = None
    if not args.no_dask:
        from distributed import LocalCluster

        started = time.perf_counter()
        with LocalCluster(
            n_workers=cores, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster:
            cluster_start = time.perf_counter() - started
            dask_configs = [("dask LocalCluster, 1 writer", {})]
            dask_configs += [(f"dask LocalCluster, {k} shards", {"shards": k}) for k in shard_counts]
            for name, options in dask_configs:
                options = {**options, "backend": "dask", "scheduler": cluster.scheduler_address}
                rows[name] = [timed_build(root, out, args.size, **options) for _ in range(args.reps)]
                print(f"{name}: {median([r['seconds'] for r in rows[name]]):.1f} s")
    base = median([r["seconds"] for r in rows["loky, 1 writer"]])
    table = []
    for name, runs in rows.items():
        seconds = median([r["seconds"] for r in runs])
        table.append(
            {
                "build": name,
                "seconds": round(seconds, 2),
                "images_per_s": round(args.images / seconds, 1),
                "core_ms_per_image": round(seconds * cores * 1000 / args.images, 3),
                "vs_loky": round(base / seconds, 3),
                "extra_core_ms_per_image_vs_loky": round((seconds - base) * cores * 1000 / args.images, 3),
                "load_img_s": round(median([r["load_img_s"] for r in runs])),
                "batches64_img_s": round(median([r["batches_img_s"] for r in runs])),
            }
        )
    print()
    print(
        "| build | s | images/s | core-ms/image | vs loky 1 writer | extra core-ms/image | load() img/s | batches(64) img/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in table:
        print(
            f"| {row['build']} | {row['seconds']:.1f} | {row['images_per_s']:,.0f} | {row['core_ms_per_image']:.3f} "
            f"| {row['vs_loky']:.2f}x | {row['extra_core_ms_per_image_vs_loky']:+.3f} "
            f"| {row['load_img_s']:,} | {row['batches64_img_s']:,} |"
        )
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(REPO),
        "machine": machine_info(),
        "images": args.images,
        "side": args.side,
        "size": args.size,
        "reps": args.reps,
        "per_image": costs,
        "cluster_start_s": cluster_start,
        "builds": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
