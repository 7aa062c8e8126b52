"""A/B: the build of this checkout against another checkout's, alternating, on the same data.

    python -m benchmarks.ab_build --code ../old-checkout [--data ../shared/data/chest_xray] [--reps 9]

Each repetition runs ``xraycache build DATA OUT --overwrite`` once with each checkout's package (the
command line, so any code layout compares), in alternating order, so that the load of a shared machine
falls on both alike. Reports the median wall and CPU time of each and their ratios (old / new: >= 1
means this checkout is at least as fast), appending a record to ``benchmarks/results/ab_build.jsonl``.
The other checkout needs its compiled kernel (``pip install -e`` there, or the same ``_kernel*.so`` copied
in when the C source is unchanged): without one it would run the NumPy fallback and measure that.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import append_record, data_digest, git_commit, machine_info, median

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chest_xray"


def timed_build(code: Path, data: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the build and its workers) of one CLI build with the
    package of ``code``. CPU time is what the load of a shared machine disturbs least."""
    env = {**os.environ, "PYTHONPATH": str(code), "XRAYCACHE_REQUIRE_KERNEL": "1"}
    command = [sys.executable, "-m", "xraycache", "build", str(data), str(out), "--overwrite", "-q", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, cwd=code)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, required=True, help="the other checkout (its folder)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset folder")
    parser.add_argument("--reps", type=int, default=9, help="repetitions of each (alternating)")
    parser.add_argument("--history", type=Path, default=ROOT / "benchmarks" / "results" / "ab_build.jsonl")
    parser.add_argument("build_args", nargs="*", help="more build options, after --")
    args = parser.parse_args()
    old, new = args.code.resolve(), ROOT
    times: dict[str, list[float]] = {"old": [], "new": []}
    cpu: dict[str, list[float]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "ab.h5"
        timed_build(new, args.data, out, args.build_args)  # warm the page cache
        for rep in range(args.reps):
            order = [("old", old), ("new", new)] if rep % 2 == 0 else [("new", new), ("old", old)]
            for name, code in order:
                wall, used = timed_build(code, args.data, out, args.build_args)
                times[name].append(wall)
                cpu[name].append(used)
    record = {
        "benchmark": "ab_build",
        "day": time.strftime("%Y-%m-%d"),
        "machine": machine_info(),
        "data": data_digest(args.data),
        **{
            name: {
                "commit": git_commit(code),
                "seconds": times[name],
                "median": median(times[name]),
                "cpu_seconds": cpu[name],
                "cpu_median": median(cpu[name]),
            }
            for name, code in (("old", old), ("new", new))
        },
        "build_args": args.build_args,
        "loadavg": os.getloadavg(),
    }
    record["speed_ratio"] = record["old"]["median"] / record["new"]["median"]
    record["cpu_ratio"] = record["old"]["cpu_median"] / record["new"]["cpu_median"]
    append_record(args.history, record)
    print(
        f"old {record['old']['commit'][:8]} median {record['old']['median']:.2f} s, new {record['new']['commit'][:8]} "
        f"median {record['new']['median']:.2f} s over {args.reps} alternating reps: speed ratio {record['speed_ratio']:.3f}; "
        f"CPU {record['old']['cpu_median']:.2f} s vs {record['new']['cpu_median']:.2f} s, ratio {record['cpu_ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
