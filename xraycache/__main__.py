"""``python -m xraycache`` and the ``xraycache`` command.

``xraycache --version`` is answered before the command line is loaded: typer and rich cost more than
numpy, h5py and PIL together, and the version needs none of them. The command's process (``run``) ends
without the interpreter's teardown once a command succeeded (see ``leave_now``).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def main() -> int | None:
    """Run the command line (``--version`` alone takes a fast path that imports no typer or rich)."""
    if sys.argv[1:] == ["--version"]:
        from .about import show_version

        try:
            return show_version()
        except BrokenPipeError:  # `xraycache --version | grep -q ...`: the reader has what it wanted, as with `ls`
            sys.stdout = None  # no second error when Python flushes stdout at exit
            return 0
    from .cli import app

    app(prog_name="xraycache")
    return None


def run() -> NoReturn:
    """The ``xraycache`` command: ``main()``, then the process ends, at once when the command succeeded."""
    code: object
    try:
        code = main()
    except SystemExit as done:
        code = done.code
    if code in (0, None):
        leave_now()
    sys.exit(code)


def leave_now() -> None:
    """End the process at once, as a normal exit would but without freeing every object and module one by
    one, which after a build takes longer than writing its last images (``python -m benchmarks.hotpath
    --sections whole``). The output streams are flushed and the
    exit handlers run (multiprocessing's, loky's, logging's, temporary folders'). Returns, for the normal
    exit, while something still needs it: another thread running, a stream that will not flush, an HDF5
    file still open, or a profiler, tracer (coverage) or interactive session that runs after the command."""
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's, which also clears them
    if run_exit_handlers is None or _watched() or _busy() or not _flushed():
        return
    run_exit_handlers()
    if _flushed():  # what the handlers printed
        os._exit(0)


def _watched() -> bool:
    """A profiler, a tracer or ``python -i``: each wants the rest of a normal exit."""
    monitoring = getattr(sys, "monitoring", None)  # Python 3.12+: cProfile and coverage register here
    tools = () if monitoring is None else (monitoring.get_tool(i) for i in range(6))
    return sys.gettrace() is not None or sys.getprofile() is not None or bool(sys.flags.interactive) or any(tools)


def _busy() -> bool:
    """Another (non-daemon) thread still runs, or an HDF5 file is open (HDF5's own exit handler closes it)."""
    main_thread = threading.main_thread()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main_thread):
        return True
    h5py = sys.modules.get("h5py")
    return h5py is not None and bool(h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE))


def _flushed() -> bool:
    """Flush stdout and stderr; False when one cannot take it (a closed pipe: the normal exit reports it)."""
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return False
    return True


if __name__ == "__main__":
    run()
