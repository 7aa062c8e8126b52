"""Run every benchmark side by side, append one line to the history, print a table, plot the history.

    python -m benchmarks.run                                    # real data if present, else generated
    python -m benchmarks.run --env /tmp/vsimd/bin/python        # + a venv with Pillow-SIMD, interleaved rep by rep
    python -m benchmarks.run --quick                            # small smoke run (seconds)

Sections (see docs/performance.md): 1 build (notebook loop, decode-only limit, xraycache build
per filter, --jobs 1/2, API in a warm process and whole CLI process, rebuild), 2 load (split.load()
vs np.load vs re-decoding; shuffled batches on the real cache and on a > 2 GB generated one),
3 memory (peak RSS of builds of 1,000 and 10,000 generated images), 4 fidelity (PSNR against an
exact float64 area average), 5 size (bytes per image and read cost per compression).

Every timed figure is the median of ``--reps`` repetitions; ratios are medians of per-rep ratios of
runs made next to each other, because the machine is shared and absolute times drift.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from xraycache.core.options import BuildOptions, FilterName

from .common import (
    append_record,
    compile_package,
    data_digest,
    git_commit,
    list_images,
    machine_info,
    median,
    write_small_dataset,
)
from .worker import REPLY

DEFAULT_FILTER = BuildOptions().resize.filter
FILTERS: tuple[str, ...] = typing.get_args(FilterName)

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
REAL_DATA = REPO.parent / "shared" / "data" / "chest_xray"
COMPRESSIONS = ("none", "gzip", "lzf")
BUILD_DRAFT = 512  # the build's draft request: >= 2x the 256 target (decode.DRAFT_OVERSAMPLE)
SMALLEST_DRAFT = 256  # >= 1x the target: the least decoding any 256-px output can need
BATCH = 64


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the final table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Worker:
    """A :mod:`benchmarks.worker` process in one virtual environment (see its docstring for why)."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc = subprocess.Popen(
            [python, "-m", "benchmarks.worker"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.info = self.request(op="info")
        self.label = self.info["imaging"].split(" ")[0]  # Pillow-SIMD or Pillow

    def request(self, **req: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; raises RuntimeError if the worker failed."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"benchmark worker {self.python} exited")
            if line.startswith(REPLY):
                reply: dict[str, Any] = json.loads(line[len(REPLY) :])
                break
        if not reply.pop("ok"):
            raise RuntimeError(f"{req['op']} failed in {self.python}: {reply['error']}\n{reply['trace']}")
        return reply

    def close(self) -> None:
        """Close stdin; the worker exits when it sees EOF."""
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _rate(n: int, nbytes: int, seconds: float) -> dict[str, float]:
    return {
        "seconds": round(seconds, 4),
        "images_per_s": round(n / seconds, 1) if seconds else 0.0,
        "mb_per_s": round(nbytes / 1e6 / seconds, 1) if seconds else 0.0,
    }


def _cli_build(python: str, src: Path, out: Path, filter: str, jobs: int) -> float:
    """Wall time of a whole ``python -m xraycache build`` process (interpreter start, imports, loky spawn)."""
    out.unlink(missing_ok=True)
    cmd = [python, "-m", "xraycache", "build", str(src), str(out), "-q", "--filter", filter, "--jobs", str(jobs)]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - started


def _rebuild_supported() -> bool:
    """True once incremental rebuilds exist (the build grows a reuse option or reports reuse)."""
    import inspect

    import xraycache
    from xraycache import BuildReport

    params = inspect.signature(xraycache.build).parameters
    fields = getattr(BuildReport, "__dataclass_fields__", {})
    return any("increment" in p or "reuse" in p for p in params) or any("reuse" in f for f in fields)


def bench_build(
    data: Path,
    workers: list[Worker],
    limiters: list[Worker],
    reps: int,
    filters: Sequence[str],
    work: Path,
    cli: bool,
) -> dict[str, Any]:
    """Section 1: notebook loop, decode-only limit, and cold builds, interleaved rep by rep.

    The limit runs in its own process per environment (LIMITERS): joblib keeps one loky pool per
    configuration, and the build's pool (with its worker initializer) would be torn down and
    respawned (~0.3 s) if the limit's plain pool ran in the same process between two builds.
    """
    files = list_images(data)
    n, nbytes = len(files), sum(os.path.getsize(f) for f in files)
    main = workers[0]
    limiter = {w.label: lim for w, lim in zip(workers, limiters, strict=True)}
    for w in workers:  # warm the page cache, the imports and both loky pools; not timed
        limiter[w.label].request(op="limit", files=files, draft=BUILD_DRAFT, jobs=-1)
        w.request(op="build", src=str(data), out=str(work / f"warm-{w.label}.h5"), filter=DEFAULT_FILTER, jobs=-1)
    notebook: list[float] = []
    limits: dict[str, dict[int, list[float]]] = {w.label: {BUILD_DRAFT: [], SMALLEST_DRAFT: []} for w in workers}
    api: dict[str, dict[str, dict[int, list[float]]]] = {w.label: {f: {1: [], 2: []} for f in filters} for w in workers}
    cli_times: dict[str, dict[int, list[float]]] = {w.label: {1: [], 2: []} for w in workers}
    paired_limit: dict[str, dict[str, list[float]]] = {w.label: {f: [] for f in filters} for w in workers}
    limit_cpu: dict[str, list[float]] = {w.label: [] for w in workers}
    build_cpu: dict[str, dict[str, dict[int, list[float]]]] = {
        w.label: {f: {1: [], 2: []} for f in filters} for w in workers
    }
    loads: list[float] = []
    notebook_cpu: list[float] = []
    report_sample: dict[str, Any] = {}
    for rep in range(reps):
        loads.append(os.getloadavg()[0])
        log(f"build rep {rep + 1}/{reps} (load average {loads[-1]:.1f})")
        order = workers if rep % 2 == 0 else workers[::-1]
        for w in order:
            lim = limiter[w.label]
            limits[w.label][SMALLEST_DRAFT].append(
                lim.request(op="limit", files=files, draft=SMALLEST_DRAFT)["seconds"]
            )
            for f in filters:
                # Each build is timed right after the notebook loop (default filter) and the limit it
                # is compared with, so the per-rep ratios see the same machine load.
                if w is main and f == DEFAULT_FILTER:
                    nb_reply = main.request(op="notebook", files=files)
                    notebook.append(nb_reply["seconds"])
                    notebook_cpu.append(nb_reply["cpu_seconds"])
                lim_reply = lim.request(op="limit", files=files, draft=BUILD_DRAFT, jobs=-1)
                limit = lim_reply["seconds"]
                limit_cpu[w.label].append(lim_reply["cpu_seconds"])
                limits[w.label][BUILD_DRAFT].append(limit)
                paired_limit[w.label][f].append(limit)
                for jobs in (2, 1) if rep % 2 == 0 else (1, 2):
                    out = work / f"build-{w.label}.h5"
                    reply = w.request(op="build", src=str(data), out=str(out), filter=f, jobs=jobs)
                    api[w.label][f][jobs].append(reply["seconds"])
                    build_cpu[w.label][f][jobs].append(reply["cpu_seconds"])
                    report_sample = reply["report"]
            if cli:
                for jobs in (2, 1):
                    cli_times[w.label][jobs].append(_cli_build(w.python, data, work / "cli.h5", DEFAULT_FILTER, jobs))
    for stale in work.glob("*.h5"):
        stale.unlink()
    nb = median(notebook)
    result: dict[str, Any] = {
        "images": n,
        "input_mb": round(nbytes / 1e6, 1),
        "reps": reps,
        "notebook": {**_rate(n, nbytes, nb), "cpu_ms_per_image": round(median(notebook_cpu) / n * 1e3, 3)},
        "limit_ratio_uses_draft": BUILD_DRAFT,
        "default_filter": DEFAULT_FILTER,
        "main_backend": main.label,
        "load_average": round(median(loads), 2),
        "backends": {},
        "report_fields": sorted(report_sample),
    }
    for w in workers:
        lab = w.label
        entry: dict[str, Any] = {
            "info": w.info,
            "limit": {str(d): _rate(n, nbytes, median(v)) for d, v in limits[lab].items()},
            "filters": {},
            "limit_cpu_ms_per_image": round(median(limit_cpu[lab]) / n * 1e3, 3),
        }
        for f in filters:
            t1, t2 = api[lab][f][1], api[lab][f][2]
            entry["filters"][f] = {
                "jobs1": _rate(n, nbytes, median(t1)),
                "jobs2": _rate(n, nbytes, median(t2)),
                "scaling_j2_over_j1": round(median([a / b for a, b in zip(t1, t2, strict=True)]), 3),
                "vs_notebook": round(median([a / b for a, b in zip(notebook, t2, strict=True)]), 3),
                "vs_limit": round(median([a / b for a, b in zip(paired_limit[lab][f], t2, strict=True)]), 3),
                "vs_limit_1x": round(median([a / b for a, b in zip(limits[lab][SMALLEST_DRAFT], t2, strict=True)]), 3),
                # CPU per image (main + workers): what the machine's load cannot change. The limit's
                # CPU over the build's is the share of the limit an idle machine would reach.
                "cpu_ms_per_image_j1": round(median(build_cpu[lab][f][1]) / n * 1e3, 3),
                "cpu_ms_per_image_j2": round(median(build_cpu[lab][f][2]) / n * 1e3, 3),
                "vs_limit_cpu": round(median(limit_cpu[lab]) / median(build_cpu[lab][f][2]), 3),
                # idle-machine ceiling of build/notebook: every core busy, at the measured CPU cost
                "vs_notebook_cpu_ceiling": round(
                    (os.cpu_count() or 1) * median(notebook_cpu) / median(build_cpu[lab][f][2]), 3
                ),
            }
        if cli:
            c1, c2 = cli_times[lab][1], cli_times[lab][2]
            a2 = api[lab][DEFAULT_FILTER][2]
            entry["cli"] = {
                "jobs1": _rate(n, nbytes, median(c1)),
                "jobs2": _rate(n, nbytes, median(c2)),
                "scaling_j2_over_j1": round(median([a / b for a, b in zip(c1, c2, strict=True)]), 3),
                "vs_notebook": round(median([a / b for a, b in zip(notebook, c2, strict=True)]), 3),
                "overhead_s_vs_api": round(median([c - a for c, a in zip(c2, a2, strict=True)]), 3),
            }
        result["backends"][lab] = entry
    if len(workers) > 1:
        base = workers[0].label
        for w in workers[1:]:
            a = api[base][DEFAULT_FILTER][2]
            b = api[w.label][DEFAULT_FILTER][2]
            result[f"{base}_over_{w.label}"] = round(median([y / x for x, y in zip(a, b, strict=True)]), 3)
    return result


def bench_rebuild(data: Path, worker: Worker, reps: int, work: Path) -> dict[str, Any]:
    """1(d): rebuild of an unchanged dataset with the same settings, if incremental rebuilds exist."""
    if not _rebuild_supported():
        return {"measured": False, "why": "incremental rebuilds not implemented at this commit"}
    out = work / "rebuild.h5"
    cold = worker.request(op="build", src=str(data), out=str(out), filter=DEFAULT_FILTER, jobs=-1)
    times = []
    for _ in range(reps):
        times.append(
            worker.request(op="rebuild", src=str(data), out=str(out), filter=DEFAULT_FILTER, jobs=-1)["seconds"]
        )
    n = cold["images"]
    last = worker.request(op="rebuild", src=str(data), out=str(out), filter=DEFAULT_FILTER, jobs=-1)["report"]
    out.unlink(missing_ok=True)
    return {
        "measured": True,
        "cold": _rate(n, cold["input_bytes"], cold["seconds"]),
        "rebuild": _rate(n, cold["input_bytes"], median(times)),
        "speedup": round(cold["seconds"] / median(times), 1),
        "report": {k: last.get(k) for k in ("mode", "reused", "touched", "removed", "seconds")},
    }


def _timed(fn: Callable[[], Any], reps: int) -> float:
    """Median seconds of REPS calls, after one untimed call (warm page cache and imports)."""
    fn()
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return median(times)


def _split_names(path: Path) -> list[str]:
    import xraycache

    with xraycache.open(path) as cache:  # type: ignore[attr-defined]
        return list(cache)


def _load_all(path: Path) -> int:
    """Load every split with ``split.load()``; returns the image count."""
    import xraycache

    n = 0
    with xraycache.open(path) as cache:  # type: ignore[attr-defined]
        for name in cache:
            x, _ = cache[name].load(channels=None, label_dtype=None)
            n += len(x)
    return n


def _batches_pass(path: Path, split: str, seed: int = 0) -> int:
    import xraycache

    n = 0
    with xraycache.open(path) as cache:  # type: ignore[attr-defined]
        for xb, _ in cache[split].batches(BATCH, shuffle=True, seed=seed):
            n += len(xb)
    return n


def _drop_caches() -> bool:
    """Drop the page cache (needs root and a writable /proc/sys); False where it is not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
        return True
    except OSError:
        return False


def _largest_split(path: Path) -> tuple[str, int]:
    import xraycache

    with xraycache.open(path) as cache:  # type: ignore[attr-defined]
        sizes = {name: len(cache[name]) for name in cache}
    name = max(sizes, key=lambda k: sizes[k])
    return name, sizes[name]


def bench_load(cache: Path, notebook_seconds: float, reps: int, work: Path, cold: bool) -> dict[str, Any]:
    """Section 2 on one cache: load() vs np.load of the same bytes vs re-decoding; shuffled batches."""
    import xraycache

    if not hasattr(xraycache, "open"):
        return {"measured": False, "why": "xraycache.open (the reader) is not available at this commit"}
    n = _load_all(cache)
    arrays = []
    with xraycache.open(cache) as c:  # type: ignore[attr-defined]
        for name in c:
            arrays.append(work / f"{name}.npy")
            np.save(arrays[-1], c[name].load(channels=None, label_dtype=None)[0])
    nbytes = sum(p.stat().st_size for p in arrays)
    t_load = _timed(lambda: _load_all(cache), reps)
    t_npy = _timed(lambda: [np.load(p) for p in arrays], reps)
    for p in arrays:
        p.unlink()
    split, n_split = _largest_split(cache)
    t_batches = _timed(lambda: _batches_pass(cache, split), reps)
    result: dict[str, Any] = {
        "measured": True,
        "images": n,
        "gb": round(nbytes / 1e9, 3),
        "load": _rate(n, nbytes, t_load),
        "np_load": _rate(n, nbytes, t_npy),
        "load_vs_np_load": round(t_npy / t_load, 3),
        "batches": {"split": split, "batch": BATCH, **_rate(n_split, nbytes * n_split // max(n, 1), t_batches)},
    }
    if notebook_seconds:
        result["load_vs_redecode"] = round(notebook_seconds / t_load, 1)
    if cold:
        times = []
        for _ in range(reps):
            if not _drop_caches():
                result["batches_cold"] = {"measured": False, "why": "cannot write /proc/sys/vm/drop_caches"}
                break
            started = time.perf_counter()
            _batches_pass(cache, split)
            times.append(time.perf_counter() - started)
        else:
            result["batches_cold"] = _rate(n_split, nbytes * n_split // max(n, 1), median(times))
    return result


def bench_big_load(worker: Worker, n: int, reps: int, work: Path) -> dict[str, Any]:
    """Section 2 on a generated cache > 2 GB: N small generated files built at --size 256."""
    if n <= 0:
        return {"measured": False, "why": "skipped (--big-n 0)"}
    root = write_small_dataset(work / "big", n, side=300, seed=1)
    out = work / "big.h5"
    log(f"building the {n:,}-image generated cache")
    built = worker.request(op="build", src=str(root), out=str(out), filter=DEFAULT_FILTER, jobs=-1)
    shutil.rmtree(work / "big")
    try:
        result = bench_load(out, 0.0, reps, work, cold=True)
        result["build"] = _rate(built["images"], built["input_bytes"], built["seconds"])
        result["cache_gb"] = round(out.stat().st_size / 1e9, 3)
    finally:
        out.unlink(missing_ok=True)
    return result


def _pss(pid: int) -> int:
    """Proportional set size of PID in bytes (pages shared with other processes divided among them), from
    /proc/PID/smaps_rollup; 0 where the kernel has none or the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_memory(pid: int) -> tuple[int, int, int]:
    """(RSS of PID, RSS of PID and all its descendants, PSS of the same) in bytes; zeros once it is gone.

    Summed RSS counts a page a forked worker shares with the build once per process; summed PSS once."""
    import psutil

    try:
        proc = psutil.Process(pid)
        own = proc.memory_info().rss
        total, pss = own, _pss(pid)
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
                pss += _pss(child.pid)
        return own, total, pss
    except psutil.Error:
        return 0, 0, 0


def peak_rss_of(cmd: list[str]) -> dict[str, Any]:
    """Run CMD, sampling every 20 ms; peak RSS of the main process and of main + workers summed, and the
    peak of their summed PSS."""
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    peaks = [0, 0, 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            sampled = _tree_memory(proc.pid)
            peaks[:] = [max(p, v) for p, v in zip(peaks, sampled, strict=True)]
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    started = time.perf_counter()
    thread.start()
    rc = proc.wait()
    seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    if rc:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}")
    return {
        "main_mb": round(peaks[0] / 1e6, 1),
        "total_mb": round(peaks[1] / 1e6, 1),
        "total_pss_mb": round(peaks[2] / 1e6, 1),
        "seconds": round(seconds, 2),
    }


def bench_memory(counts: Sequence[int], work: Path) -> dict[str, Any]:
    """Section 3: peak RSS (psutil, workers included) of a CLI build of N small generated images."""
    try:
        import psutil  # noqa: F401
    except ImportError:
        return {"measured": False, "why": "psutil is not installed (pip install '.[bench]')"}
    result: dict[str, Any] = {"measured": True}
    for n in counts:
        root = write_small_dataset(work / f"mem{n}", n, side=320, seed=2)
        out = work / f"mem{n}.h5"
        cmd = [sys.executable, "-m", "xraycache", "build", str(root), str(out), "-q", "--jobs", "-1"]
        result[str(n)] = peak_rss_of(cmd)
        shutil.rmtree(work / f"mem{n}")
        out.unlink(missing_ok=True)
    if len(counts) >= 2:
        lo, hi = result[str(counts[0])]["total_mb"], result[str(counts[-1])]["total_mb"]
        result["growth"] = round(hi / lo, 3) if lo else 0.0
        lo, hi = result[str(counts[0])]["total_pss_mb"], result[str(counts[-1])]["total_pss_mb"]
        result["growth_pss"] = round(hi / lo, 3) if lo else 0.0
    return result


def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) float64 weights of an exact area average: output cell i covers [i*s/d, (i+1)*s/d)."""
    edges = np.arange(dst + 1, dtype=np.float64) * src / dst
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(src, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(j + 1, hi) - np.maximum(j, lo), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def psnr(out: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of uint8 OUT against a float reference, peak 255."""
    mse = float(np.mean((out.astype(np.float64) - ref) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _fidelity_one(path: str, filters: Sequence[str], size: int) -> dict[str, float]:
    """PSNRs of one file: every filter of the tool and the notebook's cv2.resize, vs the exact area average."""
    import cv2
    from PIL import Image, ImageOps

    from xraycache.core.options import ResizeOptions
    from xraycache.imaging.decode import decode_file
    from xraycache.imaging.decoders.pillow import to_gray

    with Image.open(path) as image:
        full = np.asarray(to_gray(ImageOps.exif_transpose(image)), dtype=np.float64)
    h, w = full.shape
    ref = area_matrix(h, size) @ full @ area_matrix(w, size).T
    scores = {f: psnr(decode_file(path, ResizeOptions(size=size, filter=f)).pixels, ref) for f in filters}  # type: ignore[arg-type]
    scores["notebook"] = psnr(cv2.resize(cv2.imread(path, cv2.IMREAD_GRAYSCALE), (size, size)), ref)
    return scores


def bench_fidelity(data: Path, filters: Sequence[str], size: int = 256) -> dict[str, Any]:
    """Section 4: median and worst PSNR per method over every file of DATA (2 cores via joblib)."""
    import joblib

    files = list_images(data)
    rows = joblib.Parallel(n_jobs=-1, batch_size=4)(joblib.delayed(_fidelity_one)(f, filters, size) for f in files)
    result: dict[str, Any] = {}
    for method in [*filters, "notebook"]:
        values = np.array([r[method] for r in rows])
        worst = int(np.argmin(values))
        result[method] = {
            "median_db": round(float(np.median(values)), 2),
            "worst_db": round(float(values[worst]), 2),
            "worst_file": os.path.relpath(files[worst], data),
        }
    return result


def bench_size(data: Path, worker: Worker, reps: int, work: Path) -> dict[str, Any]:
    """Section 5: output bytes per image and load() time for each compression option."""
    result: dict[str, Any] = {}
    for comp in COMPRESSIONS:
        out = work / f"size-{comp}.h5"
        built = worker.request(
            op="build", src=str(data), out=str(out), filter=DEFAULT_FILTER, jobs=-1, compression=comp
        )
        n = built["images"]
        entry: dict[str, Any] = {
            "bytes_per_image": round(built["output_bytes"] / n),
            "build": _rate(n, built["input_bytes"], built["seconds"]),
        }
        try:
            entry["load"] = _rate(n, built["output_bytes"], _timed(lambda out=out: _load_all(out), reps))
        except (ImportError, AttributeError) as exc:
            entry["load"] = {"measured": False, "why": str(exc)}
        result[comp] = entry
        out.unlink(missing_ok=True)
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small smoke run: tiny generated data, no 2 GB cache")
    p.add_argument("--data", type=Path, help="dataset folder (default: ../shared/data/chest_xray, else generated)")
    p.add_argument("--env", action="append", default=[], help="python of another venv to compare (repeatable)")
    p.add_argument("--reps", type=int, help="repetitions per timed figure (default 5, --quick 3)")
    p.add_argument("--filters", default=None, help="resize filters to build with (default: every one offered)")
    p.add_argument("--big-n", type=int, default=None, help="images in the generated > 2 GB cache (0: skip)")
    p.add_argument("--memory-n", default=None, help="image counts for the memory runs, e.g. 1000,10000")
    p.add_argument("--no-cli", action="store_true", help="skip the whole-process CLI timings")
    p.add_argument("--sections", default="build,load,memory,fidelity,size", help="comma-separated subset")
    p.add_argument("--work", type=Path, help="scratch folder (default: a new one in /tmp, deleted after)")
    p.add_argument("--history", type=Path, default=RESULTS / "history.jsonl", help="JSON-lines file to append to")
    p.add_argument("--plot", type=Path, default=REPO / "docs" / "benchmark-history.png", help="PNG plot of the history")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the selected sections and record them; returns the history record."""
    args = parse_args(argv)
    sections = set(args.sections.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="xcbench-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    compile_package()  # time what an installed copy runs
    if args.data is not None:
        data = args.data
    elif not args.quick and REAL_DATA.is_dir():
        data = REAL_DATA
    else:
        n = 24 if args.quick else 600
        log(f"generating {n} sample images")
        if args.quick:
            data = write_small_dataset(work / "data", n, side=1100, seed=3)
        else:
            from xraycache.sample import write_sample

            data = write_sample(work / "data", n, seed=0)
    args.reps = args.reps or (3 if args.quick else 5)
    big_n = args.big_n if args.big_n is not None else (0 if args.quick else 35_000)
    mem_default = "100,1000" if args.quick else "1000,10000"
    mem_counts = [int(x) for x in (args.memory_n or mem_default).split(",") if x]
    filters = [f for f in (args.filters or ",".join(FILTERS)).split(",") if f]
    if DEFAULT_FILTER not in filters:  # the targets and the notebook pairing are about the default
        filters.insert(0, DEFAULT_FILTER)
    record: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(REPO),
        "machine": machine_info(),
        "data": data_digest(data),
        "quick": args.quick,
        "command": " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
    }
    pythons = [sys.executable, *args.env]
    workers = [Worker(p) for p in pythons]
    limiters = [Worker(p) for p in pythons] if "build" in sections else []
    record["versions"] = {w.label: w.info for w in workers}
    try:
        notebook_s = 0.0
        if "build" in sections:
            record["build"] = bench_build(data, workers, limiters, args.reps, filters, work, cli=not args.no_cli)
            notebook_s = record["build"]["notebook"]["seconds"]
            record["rebuild"] = bench_rebuild(data, workers[0], args.reps, work)
        if "load" in sections:
            log("load")
            cache = work / "load.h5"
            workers[0].request(op="build", src=str(data), out=str(cache), filter=DEFAULT_FILTER, jobs=-1)
            record["load"] = {"real": bench_load(cache, notebook_s, args.reps, work, cold=False)}
            cache.unlink(missing_ok=True)
            record["load"]["big"] = bench_big_load(workers[0], big_n, args.reps, work)
        if "memory" in sections:
            log(f"memory {mem_counts}")
            record["memory"] = bench_memory(mem_counts, work)
        if "fidelity" in sections:
            log("fidelity")
            record["fidelity"] = bench_fidelity(data, filters)
        if "size" in sections:
            log("size")
            record["size"] = bench_size(data, workers[0], args.reps, work)
    finally:
        for w in workers + limiters:
            w.close()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    from .report import markdown, plot_history

    append_record(args.history, record)
    print(markdown(record))
    plot_history(args.history, args.plot)
    log(f"appended to {args.history}; plot {args.plot}")
    return record


if __name__ == "__main__":
    main()
