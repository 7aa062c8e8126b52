"""Training-read benchmark: a PyTorch DataLoader with 2 workers vs ``split.batches()`` in the training process.

    python -m benchmarks.loader                       # the real sample if present (else generated), 256 px
    python -m benchmarks.loader --quick               # smoke run on tiny generated data (seconds)
    python -m benchmarks.loader --data DIR --reps 7   # another dataset, more repetitions
    python -m benchmarks.loader --reps 7 --readme docs/performance.md   # and write the table into that page

Builds one cache of DATA, then times shuffled epochs of batches of 64, rep by rep side by side (the
machine is shared: each rep runs every reader once, in turn; figures are medians of reps, ratios the
medians of per-rep ratios), and the CPU time of this process and its workers (what an idle machine bounds):

- ``split.batches(64, dtype="float32")`` in this process (NumPy arrays: the reference);
- ``DataLoader(XrayDataset(..., dtype="float32"), batch_size=64, shuffle=True, num_workers=2)``: float32 items, each batch
  read at once (``__getitems__``) and stacked by the DataLoader's collate;
- ``dataset.loader(64, shuffle=True, num_workers=2)``: whole batches read straight into shared memory:
  float32; ``dtype=None`` (uint8 leaves the workers, ``dataset.convert`` makes it float32 here);
  ``dtype=None`` (uint8 as stored, as a GPU pipeline would take it);
- a DataLoader over a plain per-image dataset (what a map-style Dataset without batched reads costs);
- ``dataset.loader(64, num_workers=0)``: the same batches read in this process.

All loaders have persistent workers, started and warmed by one epoch that is timed apart; each timed rep
reads enough epochs for ``--images`` images (10,000).
Appends one JSON line to ``benchmarks/results/loader.jsonl`` and prints a Markdown table. Needs torch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .common import append_record, data_digest, git_commit, machine_info, median, write_small_dataset

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "loader.jsonl"
REAL_DATA = REPO.parent / "shared" / "data" / "chest_xray"
README_START, README_END = "<!-- loader:start -->", "<!-- loader:end -->"
BATCH = 64
WORKERS = 2
REFERENCE = "split.batches(64, dtype='float32'), in process"
PLAIN = "DataLoader(dataset, batch_size=64), float32"
BATCHED = "dataset.loader(64), float32"
DEFERRED = "dataset.loader(64), dtype=None: uint8 from the workers, convert() here"
STORED = "dataset.loader(64), dtype=None: uint8 as stored"
PER_IMAGE = "DataLoader(batch_size=64) over a per-image dataset, float32"
IN_PROCESS = "dataset.loader(64, num_workers=0), float32, in this process"
RATIOS = {"loader_vs_batches": PLAIN, "batched_vs_batches": BATCHED, "deferred_vs_batches": DEFERRED}


class PerImage:
    """A map-style dataset reading one image per call (no ``__getitems__``): the baseline to beat."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its live children (the loader's workers), from /proc.

    The machine is shared, so throughput moves with other people's load; CPU per image does not, and says
    what an idle machine would reach. 0.0 where /proc is not there.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    me, total = os.getpid(), 0
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == me or int(fields[1]) == me:  # fields[1] is the parent pid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def fresh_page_us(megabytes: int = 64, reps: int = 5) -> float:
    """Microseconds to first touch one 4 KiB page of new shared memory (median of reps).

    Every batch a worker sends is new shared memory, written there and mapped again here; on a virtual
    machine each such page can cost microseconds, which bounds what worker processes can deliver.
    """
    import mmap

    import numpy as np

    times = []
    for _ in range(reps):
        block = mmap.mmap(-1, megabytes << 20, flags=mmap.MAP_SHARED)
        view = np.frombuffer(block, dtype=np.uint8)
        started = time.perf_counter()
        view[:: mmap.PAGESIZE] = 1
        times.append((time.perf_counter() - started) / ((megabytes << 20) // mmap.PAGESIZE))
        del view
        block.close()
    return round(median(times) * 1e6, 3)


def _epochs(batches: Callable[[int], Iterable[Any]], epochs: int, start: int) -> int:
    """Images seen in ``epochs`` passes (epoch numbers from ``start``)."""
    n = 0
    for epoch in range(start, start + epochs):
        for images, _ in batches(epoch):
            n += len(images)
    return n


def run(cache: Path, split: str, reps: int, epochs: int) -> dict[str, Any]:
    """Time every reader on ``cache``'s ``split``, interleaved rep by rep; returns images/s per reader."""
    import torch
    from torch.utils.data import DataLoader

    import xraycache
    from xraycache.torch import XrayDataset

    torch.set_num_threads(1)  # the workers read; this process only receives (and, deferred, converts)
    opened = xraycache.open(cache)
    ref = opened[split]

    def in_process(epoch: int) -> Iterable[Any]:  # the reference
        return ref.batches(BATCH, shuffle=True, seed=0, epoch=epoch, dtype="float32")

    def plain(dataset: Any) -> DataLoader[Any]:
        return DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=WORKERS, persistent_workers=True)

    def batched(dataset: XrayDataset) -> DataLoader[Any]:
        return dataset.loader(BATCH, shuffle=True, num_workers=WORKERS, persistent_workers=True)

    float_ds = XrayDataset(cache, split, dtype="float32")
    deferred = XrayDataset(cache, split, dtype=None)

    def converted(made: DataLoader[Any]) -> Iterable[Any]:
        return ((deferred.convert(images), labels) for images, labels in made)

    readers: dict[str, Callable[[int], Iterable[Any]]] = {REFERENCE: in_process}
    first_epoch: dict[str, float] = {}
    loaders: list[DataLoader[Any]] = []
    for name, made, post in (
        (PLAIN, plain(float_ds), None),
        (BATCHED, batched(float_ds), None),
        (DEFERRED, batched(deferred), converted),
        (STORED, batched(XrayDataset(cache, split, dtype=None)), None),
        (PER_IMAGE, plain(PerImage(float_ds)), None),
        (IN_PROCESS, float_ds.loader(BATCH, shuffle=True, num_workers=0), None),
    ):
        started = time.perf_counter()
        _epochs(lambda _, made=made: made, 1, 0)  # start and warm the workers: not timed below
        first_epoch[name] = time.perf_counter() - started
        loaders.append(made)
        readers[name] = (lambda _, made=made: made) if post is None else (lambda _, made=made, post=post: post(made))
    _epochs(in_process, 1, 0)
    seconds: dict[str, list[float]] = {name: [] for name in readers}
    cpu: dict[str, list[float]] = {name: [] for name in readers}
    ratios: dict[str, list[float]] = {key: [] for key in RATIOS}
    images = 0
    for rep in range(reps):
        print(f"[loader] rep {rep + 1}/{reps} (load average {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        for name, batches in readers.items():
            cpu_before, started = cpu_seconds(), time.perf_counter()
            images = _epochs(batches, epochs, 1 + rep * epochs)
            seconds[name].append(time.perf_counter() - started)
            cpu[name].append(cpu_seconds() - cpu_before)
        for key, name in RATIOS.items():
            ratios[key].append(seconds[REFERENCE][-1] / seconds[name][-1])
    del loaders
    opened.close()
    rows = {
        name: {
            "images_per_s": round(images / median(times)),
            "seconds": [round(t, 4) for t in times],
            "cpu_ms_per_image": round(median(cpu[name]) * 1000 / images, 4),
            **({"first_epoch_s": round(first_epoch[name], 3)} if name in first_epoch else {}),
        }
        for name, times in seconds.items()
    }
    return {"images_per_rep": images, "rows": rows, **{k: round(median(v), 3) for k, v in ratios.items()}}


def markdown(record: dict[str, Any]) -> str:
    """The table of docs/performance.md: one row per reader, images/s (median of reps) and the ratio to batches()."""
    result = record["result"]
    base = result["rows"][REFERENCE]["images_per_s"]
    lines = [
        f"Measured {record['date'][:10]} on {record['cache']['images']:,} images of "
        f"{record['cache']['side']} x {record['cache']['side']} ({record['data']['files']} files from "
        f"`{Path(record['data']['path']).name}`); {record['machine']['cpu']}, {record['machine']['cores']} cores "
        f"(load average {record['load_average']:.1f}; first touch of a new 4 KiB page {record['fresh_page_us']:.1f} us); "
        f"torch {record['torch']}; median of {record['reps']} reps of "
        f"{result['images_per_rep']:,} images in shuffled batches of {BATCH}, {WORKERS} persistent workers; "
        f"vs batches(), medians of per-rep ratios: DataLoader {result['loader_vs_batches']:.2f}x, "
        f"dataset.loader {result['batched_vs_batches']:.2f}x, deferred {result['deferred_vs_batches']:.2f}x.",
        "",
        "| reader | images/s | vs batches() | CPU ms per image, all processes | first epoch, workers starting |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in result["rows"].items():
        first = f"{row['first_epoch_s']:.2f} s" if "first_epoch_s" in row else ""
        ratio = row["images_per_s"] / base
        lines.append(f"| {name} | {row['images_per_s']:,} | {ratio:.2f}x | {row['cpu_ms_per_image']:.3f} | {first} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.loader", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 96 small generated images, 2 reps")
    p.add_argument("--data", type=Path, help="dataset folder (default: ../shared/data/chest_xray, else generated)")
    p.add_argument("--size", type=int, default=256, help="--size of the cache (default 256)")
    p.add_argument("--reps", type=int, help="timed repetitions (default 5, --quick 2)")
    p.add_argument("--images", type=int, default=10_000, help="images read per timed rep (default 10,000)")
    p.add_argument("--work", type=Path, help="scratch folder (default: a new one in /tmp, deleted after)")
    p.add_argument("--history", type=Path, default=RESULTS, help="JSON-lines file to append to")
    p.add_argument(
        "--readme",
        type=Path,
        help="also write the table into this page (docs/performance.md), between the loader markers",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Build the cache, time the readers, append the record and print the table; returns the record."""
    import torch

    import xraycache

    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="xcloader-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.data is not None:
            data = args.data
        elif not args.quick and REAL_DATA.is_dir():
            data = REAL_DATA
        else:
            data = write_small_dataset(work / "data", 96 if args.quick else 600, side=320)
        size = 32 if args.quick else args.size
        reps = args.reps or (2 if args.quick else 5)
        cache = work / "loader.h5"
        xraycache.build(data, cache, size=size, jobs=-1, overwrite=True)
        with xraycache.open(cache) as opened:
            split = max(opened.splits, key=lambda name: len(opened[name]))
            n = len(opened[split])
        epochs = max(1, -(-(200 if args.quick else args.images) // n))
        result = run(cache, split, reps, epochs)
        record = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(REPO),
            "machine": machine_info(),
            "data": data_digest(data),
            "cache": {"images": n, "split": split, "side": size},
            "torch": torch.__version__,
            "load_average": round(os.getloadavg()[0], 2),
            "fresh_page_us": fresh_page_us(),
            "reps": reps,
            "quick": args.quick,
            "command": " ".join(["python -m benchmarks.loader", *(argv if argv is not None else sys.argv[1:])]),
            "result": result,
        }
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    append_record(args.history, record)
    print(markdown(record))
    if args.readme is not None:
        write_readme(args.readme, markdown(record))
    return record


def write_readme(path: Path, table: str) -> None:
    """Put ``table`` between README_START and README_END in ``path`` (the loader figures of docs/performance.md)."""
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"{path}: no {README_START} ... {README_END} block to write the figures into")
    head, rest = text.split(README_START, 1)
    path.write_text(f"{head}{README_START}\n{table}\n{README_END}{rest.split(README_END, 1)[1]}")


if __name__ == "__main__":
    main()
