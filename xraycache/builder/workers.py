"""The decode workers: joblib tasks of a fixed number of files, results back in order, on loky or dask.

Workers get the pixel settings only (``ResizeOptions``) and return, per file, a ``DecodedImage`` or a
``DecodeFailure``; they never raise. A loky pool is kept between builds in one process (its initializer
must stay the same object), workers ignore SIGINT (the main process handles Ctrl-C) and exit on their own
when the build process is gone.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import joblib

from ..core.options import ResizeOptions
from ..imaging.decode import decode_or_failure
from ..imaging.result import DecodeResult
from .cluster import on_cluster, parallel_config
from .scan import SourceFile

# Files per joblib task. Not "auto": joblib grows auto batches until a task lasts ~1 s, which for
# small images means thousands of decoded arrays per result message, and peak memory that grew with
# the dataset (measured, 320 px JPEGs: 300 -> 374 -> 409 MB for 1k, 10k, 30k images). With 32:
# 280 -> 302 MB for 1k and 10k, at the same speed (16 was ~8% slower on those small images).
FILES_PER_TASK = 32
PARENT_POLL_SECONDS = 0.25  # how often a worker checks that the build process is still alive
# Fewer files than this are decoded in the build process itself: a loky pool takes ~0.5 s to give its first
# result on an idle 2-core machine (1.1-1.5 s on a busy one; a worker's Python, loky, numpy, PIL and h5py are
# ~0.85 G instructions), as long as decoding ~100 files, so on 2 cores it pays only past ~2x that
# (benchmarks/hotpath.py ``crossover``). XRAYCACHE_SERIAL_BELOW overrides it (the tests set 0, so that their
# small datasets still exercise the pool).
SERIAL_BELOW = int(os.environ.get("XRAYCACHE_SERIAL_BELOW", "200"))


def decode_task(root: str, source: SourceFile, spec: ResizeOptions) -> DecodeResult:
    """Worker entry point: one file of the scan decoded, or the reason it was skipped (never raises)."""
    return decode_or_failure(os.path.join(root, source.path), spec)


def decode_all(root: str, files: list[SourceFile], spec: ResizeOptions, n_jobs: int) -> Iterator[DecodeResult]:
    """Decode ``files`` on ``n_jobs`` workers, yielding results in order (no pool for no work, nor for a
    few files on the local backend: see SERIAL_BELOW)."""
    if not files:
        return iter(())
    if n_jobs == 1 or len(files) == 1 or (len(files) < SERIAL_BELOW and not on_cluster()):
        return (decode_task(root, f, spec) for f in files)
    # loky processes, or the dask cluster (--backend dask)
    config, n_jobs = parallel_config(n_jobs, worker_initializer())
    with config:
        parallel = joblib.Parallel(
            n_jobs=n_jobs, return_as="generator", batch_size=FILES_PER_TASK, pre_dispatch="4 * n_jobs"
        )
    return iter(parallel(joblib.delayed(decode_task)(root, f, spec) for f in files))


def worker_initializer() -> Callable[[], None]:
    """The workers' initializer for this process: the same object on every call, because joblib keeps
    its loky pool only while the initializer is unchanged (a new one cost ~0.55 s CPU per build)."""
    return _initializer_for(os.getpid())


@functools.cache
def _initializer_for(parent: int) -> Callable[[], None]:
    return functools.partial(_worker_init, parent)


def _worker_init(parent: int) -> None:
    """Set up a worker: ignore SIGINT, and exit when the build process is gone.

    Ctrl-C reaches the whole process group; only the main process acts on it (it stops the pool and
    removes the temporary file), so workers print no tracebacks. A build killed with SIGKILL cannot
    stop its pool, and idle loky workers would wait forever: a watchdog thread ends them instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # ``parent`` comes from the build itself: a worker that starts after the build died sees ppid 1.
    threading.Thread(target=_exit_with_parent, args=(parent,), name="xraycache-parent-watchdog", daemon=True).start()


def _exit_with_parent(parent: int, interval: float = PARENT_POLL_SECONDS) -> None:
    """Exit this worker as soon as its parent process is gone (it is then re-parented)."""
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)
