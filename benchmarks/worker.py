"""A benchmark worker: one per virtual environment, driven over JSON lines on stdin/stdout.

Why a long-lived process per environment: Pillow-SIMD and stock Pillow install the same ``PIL``
package, so they cannot share a process. Keeping one warm process per environment lets the driver
interleave the two backends rep by rep (so machine noise hits both alike) and time the Python API in
a warm process, with joblib's loky workers already started, as a library user would see it.

Protocol: each request is one JSON object per line; each reply is one line ``@@ {json}``.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import shutil
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import joblib
import numpy as np
from PIL import Image

REPLY = "@@ "


def tree_cpu() -> float:
    """CPU seconds used so far by this process and its workers: the live ones (loky's outlive one call)
    and those it has reaped (forked workers live for one build).

    Why: on a shared 2-core machine wall times swing with other people's load, while the CPU a
    build spends per image does not; CPU per image gives the idle-machine ceiling of each figure.
    A worker's time moves from the live sum to the reaped one when it exits, so deltas never go negative.
    """
    try:
        import psutil
    except ImportError:
        return time.process_time()
    me = psutil.Process()
    live = 0.0
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
            live += times.user + times.system
        except psutil.Error:
            pass
    own = me.cpu_times()
    return own.user + own.system + own.children_user + own.children_system + live


def draft_decode(path: str, draft: int) -> tuple[int, int]:
    """The machine's limit per file: a DCT-scaled grayscale decode (``draft('L')``), no resize, no write."""
    with Image.open(path) as image:
        image.draft("L", (draft, draft))
        image.load()
        return image.size


def decode_limit(files: list[str], draft: int, jobs: int) -> dict[str, float]:
    """Wall and CPU seconds to draft-decode every file on JOBS workers started as the build starts its own:
    forked where the OS can (a ProcessPoolExecutor, 32 files a task), else loky."""
    from xraycache.builder.workers import CAN_FORK, FILES_PER_TASK
    from xraycache.core.options import RunOptions

    cpu, started = tree_cpu(), time.perf_counter()
    if CAN_FORK:
        workers = RunOptions(jobs=jobs).workers()
        tasks = [files[i : i + FILES_PER_TASK] for i in range(0, len(files), FILES_PER_TASK)]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(_draft_all, tasks, itertools.repeat(draft)))
    else:
        parallel = joblib.Parallel(n_jobs=jobs, batch_size="auto", pre_dispatch="4 * n_jobs")
        parallel(joblib.delayed(draft_decode)(f, draft) for f in files)
    return {"seconds": time.perf_counter() - started, "cpu_seconds": tree_cpu() - cpu}


def _draft_all(files: list[str], draft: int) -> None:
    for path in files:
        draft_decode(path, draft)


def notebook_loop(files: list[str], size: int = 256) -> dict[str, float]:
    """Wall and CPU seconds of the notebook's loop, as written: serial imread, resize, append, np.array."""
    import cv2

    cpu, started = time.process_time(), time.perf_counter()
    data = []
    for path in files:
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        img = cv2.resize(img, (size, size))
        data.append(img)
    x = np.array(data)
    assert x.shape == (len(files), size, size)
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}


def run_build(req: dict[str, Any]) -> dict[str, Any]:
    """A build through the Python API, wall time around ``build()``; cold (OUT deleted first) unless ``keep``."""
    import xraycache

    out = req["out"]
    if os.path.exists(out) and not req.get("keep", False):
        os.remove(out)  # cold: a fresh output (keep=True: an incremental rebuild of OUT)
    cpu, started = tree_cpu(), time.perf_counter()
    report = xraycache.build(
        req["src"],
        out,
        size=req.get("size", 256),
        filter=req.get("filter", "box"),
        jobs=req.get("jobs", -1),
        compression=req.get("compression", "none"),
        overwrite=req.get("overwrite", False),
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": tree_cpu() - cpu,
        "report_seconds": report.seconds,
        "images": report.images,
        "input_bytes": report.input_bytes,
        "output_bytes": report.output_bytes,
        "report": {k: v for k, v in report.to_dict().items() if k not in ("skipped", "ignored", "counts")},
    }


def info() -> dict[str, Any]:
    """The imaging backend and library versions of this environment."""
    import cv2

    from xraycache.core.schema import hdf5_versions
    from xraycache.imaging.stack import imaging_stack

    backend = imaging_stack()
    h5py_version, hdf5_version = hdf5_versions()
    return {
        "imaging": backend.imaging,
        "libjpeg": backend.libjpeg,
        "h5py": h5py_version,
        "hdf5": hdf5_version,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "opencv": cv2.__version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
    }


def handle(req: dict[str, Any]) -> dict[str, Any]:
    """Dispatch one request."""
    op = req["op"]
    if op == "info":
        return info()
    if op == "limit":
        return decode_limit(req["files"], req["draft"], req.get("jobs", -1))
    if op == "notebook":
        return notebook_loop(req["files"], req.get("size", 256))
    if op == "build":
        return run_build(req)
    if op == "rebuild":
        return run_build({**req, "keep": True})
    if op == "rmtree":
        shutil.rmtree(req["path"], ignore_errors=True)
        return {}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    """Serve requests until stdin closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = {"ok": True, **handle(json.loads(line))}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        sys.stdout.write(REPLY + json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
