"""Run a build's decode tasks on a dask.distributed cluster, through joblib's dask backend.

The local backends (forked processes, loky) need nothing from here. With ``backend="dask"`` the build
connects a ``distributed.Client`` to the scheduler (``--scheduler`` or ``DASK_SCHEDULER_ADDRESS``),
checks on every worker that it runs the same xraycache and imaging backend and can read SRC at the
same path (a shared filesystem), and only then starts: a misconfigured worker would otherwise skip
every file, or store pixels made by another decoder. The scheduler retries the tasks of a worker
that dies, so the output stays complete. ``dask[distributed]`` is imported only on this path.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from ..core.errors import InputError, OptionError, literal
from ..core.options import DEFAULT_CONNECT_TIMEOUT, RunOptions
from ..core.version import __version__
from ..imaging.stack import imaging_stack

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

_client: Any = None  # the Client of the build running in this process, if it runs on dask


def scheduler_address(run: RunOptions) -> str | None:
    """The scheduler address a build will use (None for a local backend), from ``--scheduler`` or the environment."""
    if run.backend != "dask":
        return None
    address = run.scheduler or os.environ.get(SCHEDULER_ENV, "").strip()
    if not address:
        raise OptionError(
            f"{{backend:bare}} needs a scheduler: pass {{scheduler:bare}} or set {SCHEDULER_ENV}",
            backend="dask",
            scheduler="tcp://HOST:8786",
        )
    return address


def on_cluster() -> bool:
    """Whether this build runs on a dask cluster (--backend dask), where the workers may be the only ones
    that can read the files."""
    return _client is not None


def parallel_config(n_jobs: int, initializer: Any = None) -> tuple[AbstractContextManager[Any], int]:
    """joblib configuration and ``n_jobs`` for the running build: the dask cluster, or local loky processes."""
    import joblib  # here, not at the top: a build on forked workers never needs it, nor its imports' cost

    if _client is not None:
        return joblib.parallel_config(backend="dask"), -1  # -1: every thread of every worker
    return joblib.parallel_config(backend="loky", initializer=initializer), n_jobs


@contextmanager
def dask_cluster(
    address: str | None,
    root: Path,
    probe: str | None,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    write_dir: Path | None = None,
) -> Iterator[int | None]:
    """Connect to the scheduler at ``address`` for the length of a build; yields its worker thread count.

    ``probe`` is one source file (relative to ``root``) every worker must be able to read; ``write_dir``
    (sharded builds: workers write the shards) a folder each must be able to write. Yields None and does
    nothing when ``address`` is None (the local backend).
    """
    global _client
    if address is None:
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise OptionError(
            "{backend:bare} needs dask.distributed: pip install 'xraycache[dask]'", backend="dask"
        ) from None
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=True)
    except ValueError as exc:  # not an address distributed can parse, e.g. no port
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OptionError(
            "{scheduler}" + literal(f" is not a scheduler address ({reason}); give one such as tcp://HOST:8786"),
            scheduler=address,
        ) from None
    except (OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot reach the dask scheduler at {address} ({reason}); is it running?") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            raise InputError(f"the dask scheduler at {address} has no workers (waited {timeout:g} s)") from None
        check_workers(client, root, probe, write_dir)
        threads = sum(client.nthreads().values())
        _client = client
        with warnings.catch_warnings():
            # Ctrl-C: joblib warns that finished tasks went unused; the CLI's one line says enough
            warnings.filterwarnings("ignore", message=r".*tasks have been successfully executed", category=UserWarning)
            yield threads
    finally:
        _client = None
        with contextlib.suppress(Exception):  # the cluster went away: nothing left to release
            client.close(timeout=timeout)


def check_workers(client: Any, root: Path, probe: str | None, write_dir: Path | None = None) -> None:
    """InputError naming the first worker that cannot read SRC or runs other decoding software."""
    expected = (__version__, imaging_stack().imaging)
    answers = client.run(
        _probe_worker, str(root), probe, None if write_dir is None else str(write_dir), on_error="return"
    )
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            hint = "install xraycache on every worker" if isinstance(answer, ImportError) else "check the worker"
            raise InputError(f"dask worker {worker} failed the start check ({type(answer).__name__}: {answer}); {hint}")
        error, version, imaging = answer
        if error:
            raise InputError(
                f"dask worker {worker} {error}: workers must see SRC and OUT at the same paths (a shared filesystem)"
            )
        if (version, imaging) != expected:
            raise InputError(
                f"dask worker {worker} runs xraycache {version} with {imaging}, this process xraycache "
                f"{expected[0]} with {expected[1]}; install the same versions everywhere (pixels would differ)"
            )


def _probe_worker(root: str, probe: str | None, write_dir: str | None) -> tuple[str, str, str]:
    """Runs on each worker: ('' or what it cannot read or write, xraycache version, imaging backend)."""
    error = ""
    target = os.path.join(root, probe) if probe else root
    try:
        if probe:
            with open(target, "rb") as handle:
                handle.read(1)
        else:
            os.listdir(target)
    except OSError as exc:
        error = f"cannot read {target} ({exc.strerror or exc})"
    if not error and write_dir is not None and not os.access(write_dir, os.W_OK):
        error = f"cannot write to {write_dir} (the shards are written there)"
    return error, __version__, imaging_stack().imaging
