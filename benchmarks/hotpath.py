"""The build against the hardware limit, start-up included: every target of the hot-path work, with its ratio.

    python -m benchmarks.hotpath                       # real sample if present, 5 reps
    python -m benchmarks.hotpath --reps 3 --sections per_image,startup
    python -m benchmarks.hotpath --no-callgrind        # CPU times only (valgrind absent or too slow)

Sections, each measured side by side in one run (ratios are medians of per-rep ratios; the machine is shared):

- ``per_image``: instructions per image (valgrind callgrind, the difference of N files and 0 files, so start-up
  cancels) of a bare DCT-scaled ``draft`` decode and of the build's worker path (``decode_or_failure``) with
  and without its hashes; CPU ms per image per stage (read, hash, decode, resize, histogram with descriptor,
  transfer = into the shared ring, the rest pickled out and in, out of the ring, as forked workers hand an image
  over; checksum; write; transfer_pickled = the whole result pickled, as on loky; both in one process, so
  without the pipe and its kernel time), and the worker path's CPU time against the bare decode's.
- ``whole``: whole processes on all cores: ``xraycache build`` of the 496-file sample and of the 2,976-file set
  (the sample in three splits, twice each, hard links) against the decode-only limit (the bare draft decode at
  the build's DCT scale in as many forked processes as cores, one process timed as a whole; the same on loky
  too, with the build on loky beside it) and against the notebook's serial cv2 loop (a whole process too).
  Also main-process CPU of the build (the writer's side).
- ``crossover``: whole-process builds of the first N files with --jobs 1 and --jobs 2 (forked, and loky):
  where each pool pays.
- ``startup``: instructions of ``xraycache --help`` and ``--version`` against ``python -c "import numpy, h5py,
  PIL.Image"`` (callgrind, python process only; bytecode compiled first, as ``pip install`` leaves it).
- ``sample``: wall and CPU of ``xraycache sample DIR`` (600 images), and that two runs give the same bytes.
- ``fidelity``: PSNR of the default (area) filter against an exact float64 area average, every file.

Appends one JSON line to ``benchmarks/results/hotpath.jsonl`` and prints the markdown table of the targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .common import append_record, compile_package, data_digest, git_commit, list_images, machine_info, median

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
HISTORY = RESULTS / "hotpath.jsonl"
REAL_DATA = REPO.parent / "shared" / "data" / "chest_xray"
DRAFT = (512, 512)  # the build's draft request for the default 256-px stretch (decode.DRAFT_OVERSAMPLE = 2)
SECTIONS = ("per_image", "whole", "crossover", "startup", "sample", "fidelity")


def spread(files: list[str], n: int) -> list[str]:
    """``n`` of ``files`` evenly spaced (all of them when n >= their number)."""
    if n >= len(files):
        return list(files)
    return [files[i * len(files) // n] for i in range(n)]


def log(message: str) -> None:
    print(f"[hotpath {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- probes: run in a child process (under valgrind for the instruction counts) ------------------------------


def _probe(mode: str, listing: str, n: int) -> None:
    """Process the first N files of LISTING one way; what callgrind counts (see :func:`instructions`)."""
    from PIL import Image

    from xraycache.core.options import ResizeOptions
    from xraycache.imaging import decode

    files = Path(listing).read_text().split("\n")[:n]
    spec = ResizeOptions()

    class _NoHash:
        def __init__(self, data: bytes) -> None:
            pass

        def hexdigest(self) -> str:
            return "0" * 64

    if mode in ("worker_bare", "worker_no_sha256"):
        decode.hashlib = type("hashlib", (), {"sha256": _NoHash})  # type: ignore[assignment]
    if mode == "worker_bare":
        decode.pixel_checksum = lambda pixels: b"0" * 8  # type: ignore[assignment]
    for path in files:
        if mode == "draft":
            with Image.open(path) as image:
                image.draft("L", DRAFT)
                image.load()
        else:
            decode.decode_or_failure(path, spec)


def _callgrind(args: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Instructions executed by ``args`` (valgrind callgrind, the python process only)."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--trace-children=no", f"--callgrind-out-file={tmp}/cg.out", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO), **(env or {})},
            cwd=REPO,
        )
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError(f"callgrind failed: {done.stderr[-2000:]}")
    return int(match.group(1))


def instructions(files: list[str], n: int, work: Path) -> dict[str, float]:
    """Millions of instructions per image of each probe mode: (count with N files - with 0) / N."""
    listing = work / "files.txt"
    listing.write_text("\n".join(files[:n]))
    out: dict[str, float] = {}
    for mode in ("draft", "worker_bare", "worker_no_sha256", "worker"):
        runs = [
            _callgrind([sys.executable, "-m", "benchmarks.hotpath", "--probe", mode, str(listing), str(k)])
            for k in (0, n)
        ]
        out[mode] = (runs[1] - runs[0]) / n / 1e6
        log(f"callgrind {mode}: {out[mode]:.1f} M instructions per image")
    return {
        "files": n,
        "draft_M": round(out["draft"], 2),
        "worker_no_hash_M": round(out["worker_bare"], 2),
        "worker_M": round(out["worker"], 2),
        "sha256_M": round(out["worker"] - out["worker_no_sha256"], 2),
        "checksum_M": round(out["worker_no_sha256"] - out["worker_bare"], 2),
        "ratio_no_hash": round(out["worker_bare"] / out["draft"], 3),
    }


# -- per-stage CPU in one process -------------------------------------------------------------------------------


def stage_costs(files: list[str], reps: int) -> dict[str, Any]:
    """CPU ms per image of each stage, and the worker path's CPU time against the bare draft decode's."""
    import numpy
    from PIL import Image

    from xraycache.builder.commit import commit_file
    from xraycache.builder.scan import scan
    from xraycache.builder.workers import PixelRing
    from xraycache.builder.writer import CacheWriter
    from xraycache.core.files import read_regular
    from xraycache.core.options import ResizeOptions
    from xraycache.core.pixels import pixel_checksum
    from xraycache.imaging.decode import decode_or_failure, max_file_bytes
    from xraycache.imaging.decoders.pillow import draft_request, to_gray
    from xraycache.imaging.resize import descriptor, histogram, resize

    spec = ResizeOptions()
    cpu = time.process_time
    stages: dict[str, list[float]] = {
        k: []
        for k in ("read", "hash", "decode", "resize", "histogram", "transfer", "checksum", "write", "transfer_pickled")
    }
    ring = PixelRing(1, (spec.size, spec.size), numpy.dtype(spec.dtype))
    ratio, draft_ms, worker_ms = [], [], []
    for _ in range(reps):
        sums = dict.fromkeys(stages, 0.0)
        bare = path_total = 0.0
        decoded = []
        for path in files:
            t0 = cpu()
            with Image.open(path) as image:
                image.draft("L", DRAFT)
                image.load()
            t1 = cpu()
            result = decode_or_failure(path, spec)
            t2 = cpu()
            bare += t1 - t0
            path_total += t2 - t1
            t0 = cpu()
            data, _ = read_regular(path, max_file_bytes(spec))
            t1 = cpu()
            hashlib.sha256(data).hexdigest()
            t2 = cpu()
            image = Image.open(io.BytesIO(data))
            image.draft("L", draft_request(*image.size, spec))
            image.load()
            gray = to_gray(image)
            t3 = cpu()
            pixels = resize(gray, spec)  # as the worker: the compiled kernel reads Pillow's memory in place
            t4 = cpu()
            histogram(pixels)
            descriptor(pixels)
            t5 = cpu()
            # as the forked workers hand an image over: into the shared ring, the rest pickled, out of the ring
            handed = [dataclasses.replace(result)]
            parked = [0] if ring.park(0, handed[0]) else []
            ring.take(pickle.loads(pickle.dumps(handed)), parked, 0)
            t6 = cpu()
            pixel_checksum(pixels)
            t7 = cpu()
            pickle.loads(pickle.dumps(result))  # as loky's workers do: the whole result pickled
            t8 = cpu()
            for name, a, b in (
                ("read", t0, t1),
                ("hash", t1, t2),
                ("decode", t2, t3),
                ("resize", t3, t4),
                ("histogram", t4, t5),
                ("transfer", t5, t6),
                ("checksum", t6, t7),
                ("transfer_pickled", t7, t8),
            ):
                sums[name] += b - a
            decoded.append(result)
        root = Path(os.path.commonpath(files))
        while not (root / "train").is_dir() and root != root.parent:
            root = root.parent
        found = scan(root)
        by_path = {str(found.root / f.path): f for f in found.files}
        with tempfile.TemporaryDirectory() as tmp:
            capacities: dict[str, int] = {}
            for path in files:
                capacities[by_path[path].split] = capacities.get(by_path[path].split, 0) + 1
            writer = CacheWriter(
                Path(tmp) / "w.h5",
                capacities=capacities,
                label_names=found.label_names,
                image_shape=(spec.size, spec.size),
                attrs={},
            )
            t0 = cpu()
            with writer:
                for image_result, path in zip(decoded, files, strict=True):
                    writer.add(image_result, by_path[path])  # type: ignore[arg-type]
                commit_file(writer)
            sums["write"] = cpu() - t0  # the writer in the main process: meta rows, statistics, HDF5 writes
        for name, total in sums.items():
            stages[name].append(total / len(files) * 1e3)
        ratio.append(path_total / bare)
        draft_ms.append(bare / len(files) * 1e3)
        worker_ms.append(path_total / len(files) * 1e3)
    return {
        "files": len(files),
        "stage_cpu_ms": {k: round(median(v), 3) for k, v in stages.items()},
        "draft_cpu_ms": round(median(draft_ms), 3),
        "worker_cpu_ms": round(median(worker_ms), 3),
        "cpu_ratio_with_hash": round(median(ratio), 3),
    }


# -- whole processes --------------------------------------------------------------------------------------------

LIMIT_LOKY_SCRIPT = """
import sys, joblib
from PIL import Image
def draft(path):
    with Image.open(path) as image:
        image.draft("L", (512, 512))
        image.load()
files = open(sys.argv[1]).read().split("\\n")
joblib.Parallel(n_jobs=-1, batch_size=32, pre_dispatch="4 * n_jobs")(joblib.delayed(draft)(f) for f in files)
"""

# The same decode on forked workers (what the build runs on Linux): the faster of the two, so the limit.
LIMIT_FORK_SCRIPT = """
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
from PIL import Image
def draft(paths):
    for path in paths:
        with Image.open(path) as image:
            image.draft("L", (512, 512))
            image.load()
files = open(sys.argv[1]).read().split("\\n")
tasks = [files[i : i + 32] for i in range(0, len(files), 32)]
with ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("fork")) as pool:
    list(pool.map(draft, tasks))
"""

# The forked limit plus the work no build of this output can skip: the file's sha256 (its provenance) and
# writing as many bytes as the cache stores (one 256 x 256 uint8 image per file) into one new file, fsynced once,
# as the build's. It shows how much of the build's distance to the limit is the output itself (on this VM a new
# page-cache page costs a hypervisor fault) rather than the build's own code (resize, transfer, writer, start-up).
LIMIT_OUTPUT_SCRIPT = """
import hashlib, io, multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
from PIL import Image
IMAGE = bytes(256 * 256)
out = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
def draft(task):
    first, paths = task
    for k, path in enumerate(paths):
        with open(path, "rb") as f:
            data = f.read()
        hashlib.sha256(data).digest()
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (512, 512))
            image.load()
        os.pwrite(out, IMAGE, (first + k) * len(IMAGE))
files = open(sys.argv[1]).read().split("\\n")
tasks = [(i, files[i : i + 32]) for i in range(0, len(files), 32)]
with ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("fork")) as pool:
    list(pool.map(draft, tasks))
os.fsync(out)
"""

NOTEBOOK_SCRIPT = """
import sys, cv2, numpy as np
files = open(sys.argv[1]).read().split("\\n")
data = []
for path in files:
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    data.append(cv2.resize(img, (256, 256)))
x = np.array(data)
"""

MAIN_CPU_SCRIPT = """
import json, sys, time
import xraycache
t, c = time.perf_counter(), time.process_time()
report = xraycache.build(sys.argv[1], sys.argv[2], jobs=int(sys.argv[3]), overwrite=True)
print(json.dumps({"seconds": time.perf_counter() - t, "main_cpu": time.process_time() - c, "images": report.images}))
"""


def _timed(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (the process and the children it waited for) of one whole process."""
    started = time.perf_counter()
    before = os.times()
    subprocess.run(
        cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return time.perf_counter() - started, cpu


def expanded_set(data: Path, work: Path, copies: int = 2) -> Path:
    """The sample in three splits, COPIES times each (hard links where possible): 496 -> 2,976 files."""
    root = work / "x6" / "chest_xray"
    if root.exists():
        return root
    for path in list_images(data):
        rel = Path(path).relative_to(data)
        label, name = rel.parts[-2], rel.name
        for split in ("train", "val", "test"):
            for k in range(copies):
                target = root / split / label / f"{Path(name).stem}-{k}{Path(name).suffix}"
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copyfile(path, target)
    return root


def whole(data: Path, work: Path, reps: int) -> dict[str, Any]:
    """Whole processes on all cores: CLI build vs the decode-only limit vs the notebook loop, rep by rep."""
    big = expanded_set(data, work)
    xraycache = shutil.which("xraycache") or "xraycache"
    out: dict[str, Any] = {"cores": os.cpu_count()}
    # the 496-file runs take ~1.5 s and are the noisier (a serial loop against two cores on a shared host):
    # three times as many reps for the same precision
    for name, root, n_reps in (("496", data, 3 * reps), ("2976", big, reps)):
        files = list_images(root)
        listing = work / f"list-{name}.txt"
        listing.write_text("\n".join(files))
        build = [xraycache, "build", str(root), str(work / "b.h5"), "-q", "--overwrite"]
        commands = {
            "limit": [sys.executable, "-c", LIMIT_FORK_SCRIPT, str(listing)],
            "limit_output": [sys.executable, "-c", LIMIT_OUTPUT_SCRIPT, str(listing), str(work / "floor.bin")],
            "build": build,
            "notebook": [sys.executable, "-c", NOTEBOOK_SCRIPT, str(listing)],
            "limit_loky": [sys.executable, "-c", LIMIT_LOKY_SCRIPT, str(listing)],
            "build_loky": [*build, "--backend", "loky"],
        }
        runs: dict[str, list[tuple[float, float]]] = {what: [] for what in commands}
        main_cpu: list[dict[str, float]] = []
        loads = []
        for rep in range(n_reps):
            loads.append(os.getloadavg()[0])
            for what in commands if rep % 2 == 0 else reversed(commands):
                runs[what].append(_timed(commands[what]))
            done = subprocess.run(
                [sys.executable, "-c", MAIN_CPU_SCRIPT, str(root), str(work / "m.h5"), "-1"],
                check=True,
                capture_output=True,
                text=True,
            )
            main_cpu.append(json.loads(done.stdout.strip().splitlines()[-1]))
            log(
                f"whole {name} rep {rep + 1}: "
                + ", ".join(f"{what} {runs[what][-1][0]:.2f} s" for what in commands)
                + f" (load {loads[-1]:.1f})"
            )
        n = len(files)
        wall = {k: [w for w, _ in v] for k, v in runs.items()}
        out[name] = {
            "images": n,
            "reps": n_reps,
            "load_average": round(median(loads), 2),
            **{f"{k}_seconds": round(median(v), 3) for k, v in wall.items()},
            **{f"{k}_img_s": round(n / median(v), 1) for k, v in wall.items()},
            **{f"{k}_cpu_ms_per_image": round(median([c for _, c in runs[k]]) / n * 1e3, 3) for k in runs},
            "build_vs_limit": round(median([b / a for a, b in zip(wall["build"], wall["limit"], strict=True)]), 3),
            "build_vs_limit_output": round(
                median([b / a for a, b in zip(wall["build"], wall["limit_output"], strict=True)]), 3
            ),
            "build_vs_limit_loky": round(
                median([b / a for a, b in zip(wall["build"], wall["limit_loky"], strict=True)]), 3
            ),
            "build_loky_vs_limit_loky": round(
                median([b / a for a, b in zip(wall["build_loky"], wall["limit_loky"], strict=True)]), 3
            ),
            "build_vs_notebook": round(
                median([b / a for a, b in zip(wall["build"], wall["notebook"], strict=True)]), 3
            ),
            "main_process_cpu_ms_per_image": round(median([m["main_cpu"] for m in main_cpu]) / n * 1e3, 3),
            "main_process_core_share": round(median([m["main_cpu"] / m["seconds"] for m in main_cpu]), 3),
        }
    return out


def crossover(data: Path, work: Path, reps: int, sizes: Sequence[int] = (4, 8, 16, 32, 64, 128, 496)) -> dict[str, Any]:
    """Whole-process builds of the first N files on 1 and 2 workers (forked, and loky): below which N a pool
    does not pay.

    The --jobs 2 runs set XRAYCACHE_SERIAL_BELOW=0, so that they start their pool however few the files are.
    """
    files = list_images(data)
    xraycache = shutil.which("xraycache") or "xraycache"
    variants = {"jobs1": ["--jobs", "1"], "jobs2": ["--jobs", "2"], "jobs2_loky": ["--jobs", "2", "--backend", "loky"]}
    rows = []
    for n in sizes:
        root = work / f"first{n}"
        if not root.exists():
            for path in files[:n]:
                rel = Path(path).relative_to(data)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(path, root / rel) if os.stat(path).st_dev == os.stat(work).st_dev else shutil.copy(
                    path, root / rel
                )
        times: dict[str, list[float]] = {name: [] for name in variants}
        for rep in range(reps):
            for name in variants if rep % 2 == 0 else reversed(variants):
                cmd = [xraycache, "build", str(root), str(work / "c.h5"), "-q", "--overwrite", *variants[name]]
                times[name].append(_timed(cmd, {"XRAYCACHE_SERIAL_BELOW": "0"})[0])
        row: dict[str, Any] = {"files": n, **{f"{name}_s": round(median(t), 3) for name, t in times.items()}}
        for name in ("jobs2", "jobs2_loky"):
            row[f"{name}_over_jobs1"] = round(
                median([b / a for a, b in zip(times["jobs1"], times[name], strict=True)]), 3
            )
        rows.append(row)
        log(f"crossover {n}: " + ", ".join(f"{name} {row[name + '_s']} s" for name in variants))
    return {"rows": rows, "load_average": round(os.getloadavg()[0], 2)}


def startup() -> dict[str, Any]:
    """Instructions of --help and --version against importing numpy, h5py and PIL (bytecode compiled first)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "xraycache")], check=True)
    script = shutil.which("xraycache") or "xraycache"
    base = _callgrind([sys.executable, "-c", "import numpy, h5py, PIL.Image"])
    help_ = _callgrind([sys.executable, script, "--help"])
    version = _callgrind([sys.executable, script, "--version"])
    build_help = _callgrind([sys.executable, script, "build", "--help"])
    return {
        "imports_M": round(base / 1e6, 1),
        "help_M": round(help_ / 1e6, 1),
        "version_M": round(version / 1e6, 1),
        "build_help_M": round(build_help / 1e6, 1),
        "help_vs_imports": round(help_ / base, 3),
        "version_vs_imports": round(version / base, 3),
        "build_help_vs_imports": round(build_help / base, 3),
    }


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.jpeg")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def sample(work: Path, reps: int) -> dict[str, Any]:
    """``xraycache sample DIR``: wall and CPU of the whole process, and the same bytes every time."""
    xraycache = shutil.which("xraycache") or "xraycache"
    walls, cpus, digests, loads = [], [], set(), []
    for rep in range(reps):
        target = work / f"sample{rep}"
        shutil.rmtree(target, ignore_errors=True)
        loads.append(os.getloadavg()[0])
        wall, cpu = _timed([xraycache, "sample", str(target)])
        walls.append(wall)
        cpus.append(cpu)
        digests.add(_tree_digest(target / "chest_xray"))
        shutil.rmtree(target, ignore_errors=True)
    return {
        "seconds": round(median(walls), 3),
        "cpu_seconds": round(median(cpus), 3),
        "same_bytes": len(digests) == 1,
        "load_average": round(median(loads), 2),
    }


# -- report -----------------------------------------------------------------------------------------------------


def target_rows(record: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(target, measured, bound, met) rows for the markdown table."""
    rows = []

    def add(name: str, value: float | None, bound: float, fmt: str, lower_is_better: bool) -> None:
        if value is None:
            return
        met = value <= bound if lower_is_better else value >= bound
        rows.append(
            (
                name,
                fmt.format(value),
                ("<= " if lower_is_better else ">= ") + fmt.format(bound),
                "yes" if met else "**no**",
            )
        )

    per, whole_, start, samp = (record.get(k, {}) for k in ("per_image", "whole", "startup", "sample"))
    calls = per.get("instructions", {})
    add("1. worker path / draft decode, instructions, no hashes", calls.get("ratio_no_hash"), 1.10, "{:.3f}x", True)
    add(
        "1. worker path / draft decode, CPU time, with hashes",
        per.get("cpu", {}).get("cpu_ratio_with_hash"),
        1.15,
        "{:.3f}x",
        True,
    )
    add(
        "2. CLI build 2,976 files / decode-only limit",
        whole_.get("2976", {}).get("build_vs_limit"),
        0.85,
        "{:.2f}",
        False,
    )
    add("2. CLI build 496 files / notebook loop", whole_.get("496", {}).get("build_vs_notebook"), 1.5, "{:.2f}x", False)
    add("3. `xraycache --help` / imports", start.get("help_vs_imports"), 1.25, "{:.3f}x", True)
    add("3. `xraycache --version` / imports", start.get("version_vs_imports"), 1.25, "{:.3f}x", True)
    add("5. `xraycache sample demo`, wall s", samp.get("seconds"), 5.0, "{:.2f}", True)
    fidelity = record.get("fidelity", {}).get("area", {})
    add("1. fidelity, real sample worst (area, fixed point)", fidelity.get("worst_db"), 40.0, "{:.1f} dB", False)
    return rows


def markdown(record: dict[str, Any]) -> str:
    """The targets table, then the per-stage costs and whole-process figures."""
    lines = ["| target | measured | bound | met |", "|---|---:|---:|:---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in target_rows(record)]
    per = record.get("per_image", {})
    if per.get("cpu"):
        stages = per["cpu"]["stage_cpu_ms"]
        lines += ["", "| CPU ms per image | " + " | ".join(stages) + " | bare draft | worker path |"]
        lines += ["|---|" + "---:|" * (len(stages) + 2)]
        lines += [
            "| "
            + " | ".join(["ms", *(f"{v:.3f}" for v in stages.values())])
            + f" | {per['cpu']['draft_cpu_ms']:.3f} | {per['cpu']['worker_cpu_ms']:.3f} |"
        ]
    if per.get("instructions"):
        i = per["instructions"]
        lines += [
            "",
            f"Instructions per image (callgrind, {i['files']} files): bare draft decode {i['draft_M']} M, worker path "
            f"without sha256 {i['worker_no_hash_M']} M ({i['ratio_no_hash']}x), sha256 {i['sha256_M']} M, "
            f"stored-pixel checksum {i['checksum_M']} M.",
        ]
    for w in record.get("whole", {}).values():
        if not isinstance(w, dict):
            continue
        lines += [
            "",
            f"Whole processes, {w['images']:,} files on {record['whole']['cores']} cores (load {w['load_average']}): "
            f"build {w['build_seconds']} s ({w['build_img_s']} img/s), decode-only limit {w['limit_seconds']} s "
            f"({w['limit_img_s']} img/s), the limit with sha256 and the output's bytes written "
            f"{w.get('limit_output_seconds', '-')} s, notebook loop {w['notebook_seconds']} s ({w['notebook_img_s']} img/s); "
            f"build/limit {w['build_vs_limit']}, build/(limit + sha256 + output) {w.get('build_vs_limit_output', '-')}, "
            f"build/notebook {w['build_vs_notebook']}x; CPU ms/image build "
            f"{w['build_cpu_ms_per_image']}, limit {w['limit_cpu_ms_per_image']}, notebook {w['notebook_cpu_ms_per_image']}; "
            f"main process (scan, plan, unpickle, write) {w['main_process_cpu_ms_per_image']} CPU ms/image, "
            f"{w['main_process_core_share']:.0%} of one core.",
        ]
    if record.get("crossover"):
        lines += ["", "| files | --jobs 1 s | --jobs 2 s | jobs2/jobs1 |", "|---:|---:|---:|---:|"]
        lines += [
            f"| {r['files']} | {r['jobs1_s']} | {r['jobs2_s']} | {r['jobs2_over_jobs1']} |"
            for r in record["crossover"]["rows"]
        ]
    if record.get("startup"):
        s = record["startup"]
        lines += [
            "",
            f"Start-up instructions: imports {s['imports_M']} M, --help {s['help_M']} M, --version {s['version_M']} M, "
            f"build --help {s['build_help_M']} M ({s['build_help_vs_imports']}x).",
        ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: the real sample)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--callgrind-files", type=int, default=40)
    parser.add_argument("--stage-files", type=int, default=200)
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--history", type=Path, default=HISTORY)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--probe", nargs=3, metavar=("MODE", "LISTING", "N"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.probe:
        _probe(args.probe[0], args.probe[1], int(args.probe[2]))
        return {}
    data = args.data or REAL_DATA
    sections = set(args.sections.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="xchot-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    compile_package()  # time what an installed copy runs
    from xraycache.about import version_text

    record: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(REPO),
        "machine": machine_info(),
        "data": data_digest(data),
        "versions": version_text().splitlines(),
        "command": " ".join(["python -m benchmarks.hotpath", *(argv if argv is not None else sys.argv[1:])]),
        "load_average_start": round(os.getloadavg()[0], 2),
    }
    files = list_images(data)
    steps: list[tuple[str, Callable[[], Any]]] = []
    if "per_image" in sections:

        def per_image() -> dict[str, Any]:
            # files spread evenly over the sorted sample: its first ones are all NORMAL (larger, decoded at a
            # smaller DCT scale), which understated the per-image work around the decode
            result: dict[str, Any] = {"cpu": stage_costs(spread(files, args.stage_files), args.reps)}
            if not args.no_callgrind and shutil.which("valgrind"):
                result["instructions"] = instructions(spread(files, args.callgrind_files), args.callgrind_files, work)
            return result

        steps.append(("per_image", per_image))
    if "whole" in sections:
        steps.append(("whole", lambda: whole(data, work, args.reps)))
    if "crossover" in sections:
        steps.append(("crossover", lambda: crossover(data, work, args.reps)))
    if "startup" in sections and not args.no_callgrind and shutil.which("valgrind"):
        steps.append(("startup", startup))
    if "sample" in sections:
        steps.append(("sample", lambda: sample(work, args.reps)))
    if "fidelity" in sections:
        from .run import bench_fidelity

        steps.append(("fidelity", lambda: bench_fidelity(data, ["area"])))
    try:
        for name, step in steps:
            log(name)
            record[name] = step()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    record["targets"] = [
        dict(zip(("target", "measured", "bound", "met"), row, strict=True)) for row in target_rows(record)
    ]
    append_record(args.history, record)
    print(markdown(record))
    return record


if __name__ == "__main__":
    main()
