"""The decode workers: tasks of up to 32 files, results back in order, in forked processes, loky or dask.

Workers get the pixel settings only (``ResizeOptions``) and return, per file, a ``DecodedImage`` or a
``DecodeFailure``; they never raise. The local backend forks its workers from the build where the OS
can (Linux): they start in milliseconds with everything imported, where loky starts fresh interpreters
that import everything again; elsewhere, and with ``--backend loky``, loky runs them (its pool is kept between
builds in one process, so its initializer must stay the same object). Workers ignore SIGINT (the main
process handles Ctrl-C) and exit on their own when the build process is gone. A file that kills its
worker (a decoder crash on a hostile file) is found by decoding that task's files one process each, and
is skipped with the signal as its reason; the build goes on. A file that holds its forked worker longer
than the time limit (``--file-timeout``) has that worker killed by the build, which knows the file from a
clock the workers keep in shared memory (``TaskClock``), and is skipped with that reason. Forked workers
hand pixels back through memory shared with the build (``PixelRing``); tasks shrink towards the end so that
the workers finish together.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import itertools
import mmap
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing.connection import Connection

import numpy as np

from ..core import interrupts
from ..core.options import DEFAULT_FILE_TIMEOUT, Backend, ResizeOptions
from ..imaging.decode import decode_or_failure
from ..imaging.result import DecodedImage, DecodeFailure, DecodeResult
from .cluster import on_cluster, parallel_config
from .scan import SourceFile

# Files per task: few enough that the results waiting in order bound the build's memory whatever the
# dataset's size (joblib's "auto" batching grows tasks to ~1 s, thousands of small images a message, and the
# peak grew with the dataset: ``python -m benchmarks.run --sections memory``), enough to amortise a task's
# cost (``python -m benchmarks.hotpath --sections whole``).
FILES_PER_TASK = 32
TASKS_IN_FLIGHT = 4  # per worker: bounds memory (results wait in order) while keeping every worker busy
PARENT_POLL_SECONDS = 0.25  # how often a worker checks that the build process is still alive
# Fewer files than this are decoded in the build process itself when the workers are loky's: its pool takes
# as long as a hundred or so decodes to give its first result, a forked pool a few milliseconds, so a forked
# pool runs for any number of files (``python -m benchmarks.hotpath --sections crossover`` measures where
# each pays off). XRAYCACHE_SERIAL_BELOW overrides it (the tests set 0, so that their small datasets exercise loky).
SERIAL_BELOW = int(os.environ.get("XRAYCACHE_SERIAL_BELOW", "200"))
CAN_FORK = sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()
# The forked workers hand pixels back through memory shared with the build (``PixelRing``) when every
# task in flight fits in this much; larger images travel pickled, as on loky.
RING_MAX_BYTES = 256 << 20
# How often the build looks at the clock of the tasks in flight while it waits for a result: a file over the
# time limit is stopped at most this late.
CLOCK_POLL_SECONDS = 0.1


def decode_task(root: str, source: SourceFile, spec: ResizeOptions) -> DecodeResult:
    """Worker entry point: one file of the scan decoded, or the reason it was skipped (never raises)."""
    return decode_or_failure(os.path.join(root, source.path), spec)


def decode_chunk(
    root: str, sources: list[SourceFile], spec: ResizeOptions, first_slot: int | None = None, block: int | None = None
) -> tuple[list[DecodeResult], list[int]]:
    """Worker entry point of the forked pool: one task's files, decoded in order, and which of them left
    their pixels in the shared ring (result ``i`` in slot ``first_slot + i``) instead of in the result.
    Each file's start is marked on the pool's clock in the task's ``block``, so the build sees a file that
    takes too long."""
    results = []
    for position, source in enumerate(sources):
        if block is not None and _worker_clock is not None:
            _worker_clock.start(block, position)
        results.append(decode_task(root, source, spec))
    if block is not None and _worker_clock is not None:
        _worker_clock.stop(block)
    parked: list[int] = []
    if first_slot is not None and _worker_ring is not None:
        parked = [i for i, result in enumerate(results) if _worker_ring.park(first_slot + i, result)]
    return results, parked


def decode_all(
    root: str, files: list[SourceFile], spec: ResizeOptions, n_jobs: int, pool: ForkedPool | None = None
) -> Iterator[DecodeResult]:
    """Decode ``files`` on ``n_jobs`` workers, yielding results in order: on ``pool`` if there is one, else
    on loky or dask (no pool for no work, for one file, nor for a few files on loky: see SERIAL_BELOW)."""
    if not files:
        return iter(())
    if pool is not None:
        return pool.decode(root, files, spec)
    if n_jobs == 1 or len(files) == 1 or (pool is None and len(files) < SERIAL_BELOW and not on_cluster()):
        return (decode_task(root, f, spec) for f in files)
    # loky processes, or the dask cluster (--backend dask)
    import joblib  # only here: see cluster.parallel_config

    config, n_jobs = parallel_config(n_jobs, worker_initializer())
    with config:
        parallel = joblib.Parallel(
            n_jobs=n_jobs, return_as="generator", batch_size=FILES_PER_TASK, pre_dispatch=f"{TASKS_IN_FLIGHT} * n_jobs"
        )
    return iter(parallel(joblib.delayed(decode_task)(root, f, spec) for f in files))


@contextmanager
def worker_pool(
    n_jobs: int, backend: Backend, spec: ResizeOptions, file_timeout: float = DEFAULT_FILE_TIMEOUT
) -> Iterator[ForkedPool | None]:
    """The build's forked workers for images of ``spec``: started before the build opens any file or lock
    (a forked worker holds every descriptor its parent had, and HDF5's and the build's locks with them) and
    stopped when it ends, at once if it fails. One job gets one worker too, so that no file can hold the
    build itself past ``file_timeout``. None where the workers are loky's or dask's."""
    if backend != "local" or not CAN_FORK:
        yield None
        return
    pool = ForkedPool(n_jobs, spec, file_timeout)
    try:
        yield pool
    except BaseException:
        pool.close(kill=True, release=True)
        raise
    pool.close(kill=False, release=True)


class ForkedPool:
    """``n_jobs`` worker processes forked from the build (a ``ProcessPoolExecutor``), replaced by new ones
    when one dies; the file that killed it is found and skipped, and so is a file that held its worker over
    ``file_timeout`` seconds, which the build kills (see ``decode``)."""

    def __init__(self, n_jobs: int, spec: ResizeOptions, file_timeout: float = DEFAULT_FILE_TIMEOUT) -> None:
        self.n_jobs = n_jobs
        self.file_timeout = file_timeout
        self._executor: ProcessPoolExecutor | None = None
        self._processes: set[multiprocessing.process.BaseProcess] = set()
        self._blocks = TASKS_IN_FLIGHT * n_jobs  # tasks in flight
        # a block of slots for each task in flight, mapped before the fork so that every worker shares it
        self._ring = PixelRing.for_images(spec, self._blocks * FILES_PER_TASK)
        self._clock = TaskClock(self._blocks)  # likewise: when each task's current file began
        self._start(early=True)

    def _start(self, *, early: bool = False) -> ProcessPoolExecutor:
        self._clock.clear()  # a killed or crashed worker's last mark must not name a worker of this pool
        before = set(multiprocessing.active_children())
        executor = ProcessPoolExecutor(
            self.n_jobs,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_forked_init,
            initargs=(os.getpid(), self._ring, self._clock),  # fork: initargs are inherited, not pickled
        )
        with _forking():
            executor.submit(os.getpid)  # forks every worker now (a fork-based executor starts them all at once)
        self._executor, self._processes = executor, set(multiprocessing.active_children()) - before
        self._early = early  # forked before the build opened any file: may live until the build ends
        return executor

    def close(self, *, kill: bool = False, release: bool = False) -> None:
        """Stop the workers: after their tasks, or (``kill``) at once; ``release`` also frees the ring, for
        good (a failed build's traceback, kept in a notebook, keeps the pool but not its memory)."""
        if release:
            self._ring = None
        if self._executor is None:
            return
        if kill:
            for process in self._processes:
                process.terminate()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor, self._processes = None, set()

    def decode(self, root: str, files: list[SourceFile], spec: ResizeOptions) -> Iterator[DecodeResult]:
        """The results of ``files`` in order, at most TASKS_IN_FLIGHT tasks per worker submitted ahead. After a
        worker died, the task it broke is decoded one file per process (the file that ends its process is
        skipped with the signal as its reason) and new workers take the rest; after the build killed a worker
        whose file ran over the time limit, that file is skipped and new workers take every other one."""
        tasks = guided_tasks(files, self.n_jobs)
        stopped: dict[str, DecodeFailure] = {}  # path -> the time limit's failure, for files stopped so far
        done = 0
        while done < len(tasks):
            known = len(stopped)
            done = yield from self._run(root, tasks, done, spec, stopped)
            if done < len(tasks):  # the pool broke on task ``done``, or on one running beside it
                self.close()
                if len(stopped) > known:  # the build stopped a file: the others are decoded again, without it
                    continue
                for source in tasks[done]:
                    yield stopped.get(source.path) or _decode_alone(root, source, spec, self.file_timeout)
                done += 1

    def _run(
        self,
        root: str,
        tasks: list[list[SourceFile]],
        start: int,
        spec: ResizeOptions,
        stopped: dict[str, DecodeFailure],
    ) -> Generator[DecodeResult, None, int]:
        """Deliver ``tasks[start:]``, without decoding the files in ``stopped``; returns the index of the
        first task not delivered (``len(tasks)`` unless a worker died or was killed, its file then added to
        ``stopped``)."""
        executor = self._executor or self._start()
        submitted = iter(range(start, len(tasks)))
        pending: collections.deque[Future[tuple[list[DecodeResult], list[int]]]] = collections.deque()
        blocks = self._blocks
        ring = self._ring if self._ring is not None and self._ring.holds(spec) else None
        broken = False
        running: dict[int, list[SourceFile]] = {}  # block -> the files of the task in flight there

        def first_slot(index: int) -> int:
            # task ``index`` uses the block of slots of task ``index - blocks``, whose pixels were taken
            return (index % blocks) * FILES_PER_TASK

        def submit(index: int) -> None:
            nonlocal broken
            slot = None if ring is None else first_slot(index)
            sources = [source for source in tasks[index] if source.path not in stopped]
            running[index % blocks] = sources
            try:
                pending.append(executor.submit(decode_chunk, root, sources, spec, slot, index % blocks))
            except BrokenProcessPool:  # a worker died since the last result: the pending tasks say which
                broken = True

        try:
            for index in itertools.islice(submitted, blocks):
                submit(index)
            delivered = start
            while pending:
                try:
                    results, parked = self._result(pending.popleft(), running, stopped)
                except BrokenProcessPool:
                    return delivered
                interrupts.check()  # a Ctrl-C whose KeyboardInterrupt a callback swallowed
                if ring is not None:  # the pixels out of this task's block, before a new task may reuse it
                    ring.take(results, parked, first_slot(delivered))
                results = _in_task_order(tasks[delivered], running[delivered % blocks], results, stopped)
                if not broken:
                    for index in itertools.islice(submitted, 1):
                        submit(index)
                if not pending and not self._early:
                    # workers forked mid-build hold its open files (and HDF5's locks on them): they go before
                    # the last result is handed over, as the writer may reopen those files next
                    self.close()
                yield from results
                delivered += 1
            return delivered
        finally:
            for future in pending:  # the consumer stopped early, or the pool broke: nothing more to wait for
                future.cancel()

    def _result(
        self,
        future: Future[tuple[list[DecodeResult], list[int]]],
        running: dict[int, list[SourceFile]],
        stopped: dict[str, DecodeFailure],
    ) -> tuple[list[DecodeResult], list[int]]:
        """The result of ``future``, watching the clock meanwhile: a worker whose current file (of the task
        ``running`` in its block) has taken over the time limit is killed, and the file added to
        ``stopped``; the pool then breaks (BrokenProcessPool)."""
        while True:
            try:
                return future.result(timeout=CLOCK_POLL_SECONDS)
            except FutureTimeout:
                pass
            workers = {process.pid for process in self._processes}
            for block, pid, position in self._clock.overdue(self.file_timeout):
                sources = running.get(block, [])
                if pid not in workers or position >= len(sources):
                    continue  # a torn read, or a worker of an earlier pool
                stopped[sources[position].path] = over_time_limit(self.file_timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _in_task_order(
    task: list[SourceFile], sent: list[SourceFile], results: list[DecodeResult], stopped: dict[str, DecodeFailure]
) -> list[DecodeResult]:
    """The results of ``task`` in order: those of the files ``sent`` to the worker, and the time limit's
    failure for the files left out because they were stopped before."""
    if len(sent) == len(task):
        return results
    by_path = dict(zip((source.path for source in sent), results, strict=True))
    return [by_path[source.path] if source.path in by_path else stopped[source.path] for source in task]


def over_time_limit(seconds: float) -> DecodeFailure:
    """The reason a file stopped for taking over the time limit is skipped."""
    return DecodeFailure(f"decoding took longer than the time limit of {seconds:g} s (--file-timeout): stopped")


class TaskClock:
    """When the file each task in flight is decoding began, and in which worker: one row per block of the
    pool (a task in flight), in memory shared by the build and its forked workers. A worker marks each file
    it starts; the build, while it waits for results, sees a file that has run over the time limit and kills
    its worker (a signal cannot interrupt a decoder inside libjpeg, and a worker cannot watch itself)."""

    def __init__(self, blocks: int) -> None:
        self._memory = mmap.mmap(-1, blocks * 3 * 8)  # anonymous, shared across a fork
        self._rows = np.frombuffer(self._memory, dtype=np.float64).reshape(blocks, 3)  # pid, position, start

    def start(self, block: int, position: int) -> None:
        """In a worker: file ``position`` of the task in ``block`` starts now (the start written last, so the
        build never sees a start beside another file's position)."""
        row = self._rows[block]
        row[2] = 0.0
        row[0], row[1] = os.getpid(), position
        row[2] = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine

    def stop(self, block: int) -> None:
        """In a worker: the task in ``block`` is done."""
        self._rows[block, 2] = 0.0

    def clear(self) -> None:
        """In the build, before it forks new workers: no file is running."""
        self._rows[:] = 0.0

    def overdue(self, limit: float) -> list[tuple[int, int, int]]:
        """In the build: (block, worker pid, position) of every file decoding for over ``limit`` seconds."""
        rows, now = self._rows.copy(), time.monotonic()
        return [
            (block, int(pid), int(position))
            for block, (pid, position, started) in enumerate(rows)
            if started > 0 and now - started > limit
        ]


def guided_tasks(files: list[SourceFile], n_jobs: int) -> list[list[SourceFile]]:
    """``files`` cut into tasks that shrink as the work left does (guided self-scheduling): FILES_PER_TASK
    files while plenty is left, then a share of what is left, down to one file. So the workers finish
    together: with tasks of a fixed size, one worker idles for up to a whole task at the end, and a few
    files still make several tasks for every worker."""
    tasks, start, share = [], 0, 2 * TASKS_IN_FLIGHT * n_jobs
    while start < len(files):
        size = max(1, min(FILES_PER_TASK, -(-(len(files) - start) // share)))
        tasks.append(files[start : start + size])
        start += size
    return tasks


@contextmanager
def _forking() -> Iterator[None]:
    """Around a fork from the build: the parent's objects frozen out of the garbage collector, so that a
    child never frees (closes, flushes) one of them, e.g. the HDF5 file being written; and Python 3.12's
    warning about forking a threaded process (the progress bar's thread) silenced, since a child runs
    only the decode and writes nothing to the parent's streams."""
    gc.freeze()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*use of fork\(\) may lead to deadlocks", category=DeprecationWarning
            )
            yield
    finally:
        gc.unfreeze()


class PixelRing:
    """Slots of one stored image each, in memory shared by the build and its forked workers: a worker copies
    a decoded image's pixels into the slot the build gave its task, the build copies them out when it takes
    the result. Pixels then cross between the processes once each way through memory that stays mapped,
    instead of being pickled, sent through a pipe and unpickled into new memory (which cost this machine
    more CPU in the kernel than the copies themselves)."""

    def __init__(self, slots: int, shape: tuple[int, int], dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype
        self._memory = mmap.mmap(-1, slots * shape[0] * shape[1] * dtype.itemsize)  # anonymous, shared across a fork
        self._slots = np.frombuffer(self._memory, dtype=dtype).reshape(slots, *shape)

    @classmethod
    def for_images(cls, spec: ResizeOptions, slots: int) -> PixelRing | None:
        """A ring of ``slots`` images as ``spec`` stores them; None when it would take over RING_MAX_BYTES."""
        dtype = np.dtype(spec.dtype)
        if slots * spec.size * spec.size * dtype.itemsize > RING_MAX_BYTES:
            return None
        return cls(slots, (spec.size, spec.size), dtype)

    def holds(self, spec: ResizeOptions) -> bool:
        """Whether images of ``spec`` fit these slots."""
        return (spec.size, spec.size) == self.shape and np.dtype(spec.dtype) == self.dtype

    def park(self, slot: int, result: DecodeResult) -> bool:
        """In a worker: move a decoded image's pixels into ``slot``; False (nothing moved) for a failure or
        an image of another shape, which keeps its own pixels."""
        if (
            not isinstance(result, DecodedImage)
            or result.pixels.shape != self.shape
            or result.pixels.dtype != self.dtype
        ):
            return False
        self._slots[slot] = result.pixels
        result.pixels = _PARKED
        return True

    def take(self, results: list[DecodeResult], parked: list[int], first_slot: int) -> None:
        """In the build: give the ``parked`` results of one task their pixels back, each as its own copy."""
        for i in parked:
            result = results[i]
            assert isinstance(result, DecodedImage)  # only decoded images are parked
            result.pixels = self._slots[first_slot + i].copy()


_PARKED = np.empty((0, 0), dtype=np.uint8)  # the pixels of a result whose image waits in the ring
_worker_ring: PixelRing | None = None  # in a forked worker: its pool's ring
_worker_clock: TaskClock | None = None  # in a forked worker: its pool's clock


def _forked_init(parent: int, ring: PixelRing | None = None, clock: TaskClock | None = None) -> None:
    """Set up a forked worker as a loky one, and keep it off the parent's output: its Python streams go to
    /dev/null (in a notebook they are the kernel's sockets) and warnings are dropped."""
    global _worker_ring, _worker_clock
    _worker_ring, _worker_clock = ring, clock
    _worker_init(parent)
    warnings.simplefilter("ignore")
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker


def _decode_alone(
    root: str, source: SourceFile, spec: ResizeOptions, timeout: float = DEFAULT_FILE_TIMEOUT
) -> DecodeResult:
    """Decode one file in a process of its own: its result, or a failure naming the signal that ended it,
    or the time limit when it took longer than ``timeout`` seconds (the process is then killed)."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    with _forking():
        process = context.Process(target=_decode_into, args=(send, root, source, spec), daemon=True)
        process.start()
    send.close()
    try:
        if not receive.poll(timeout):
            return over_time_limit(timeout)
        try:
            result: DecodeResult = receive.recv()
        except EOFError:  # it died before sending anything
            process.join()
            return DecodeFailure(f"the decoder crashed on this file ({_exit_reason(process.exitcode)})")
        process.join()
        return result
    finally:
        receive.close()
        if process.is_alive():  # over the time limit, or Ctrl-C while it decodes
            process.kill()
            process.join()


def _decode_into(send: Connection, root: str, source: SourceFile, spec: ResizeOptions) -> None:
    """Body of a one-file process: decode, send the result back."""
    _forked_init(os.getppid())
    send.send(decode_task(root, source, spec))
    send.close()


def _exit_reason(exitcode: int | None) -> str:
    """'SIGSEGV', 'exit code 3': how a process ended."""
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-exitcode).name
        return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def worker_initializer() -> Callable[[], None]:
    """The workers' initializer for this process: the same object on every call, because joblib keeps
    its loky pool only while the initializer is unchanged (a new one starts every worker again)."""
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
