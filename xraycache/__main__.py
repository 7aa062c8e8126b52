"""``python -m xraycache`` and the ``xraycache`` command.

``xraycache --version`` is answered before the command line is loaded: typer and rich cost more than
numpy, h5py and PIL together, and the version needs none of them. A command that succeeded ends the
process without the interpreter's teardown (see ``leave_now``).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading


def main() -> int | None:
    """Run the command line (``--version`` alone takes a fast path that imports no typer or rich)."""
    if sys.argv[1:] == ["--version"]:
        from .about import show_version

        return show_version()
    from .cli import app

    try:
        app(prog_name="xraycache")
    except SystemExit as done:
        if done.code in (0, None):
            leave_now()
        raise
    return None


def leave_now() -> None:
    """End the process at once, as a normal exit would but without freeing every object and module one by
    one: ~90 ms after a build, more than writing its last images. The output streams are flushed and the
    exit handlers run (multiprocessing's, loky's, logging's, temporary folders'), and HDF5 files are closed
    by then. Returns, for the normal exit, while another thread still runs or a stream will not flush."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's, which also clears them
    if any(t.is_alive() for t in others) or run_exit_handlers is None or not _flushed():
        return
    run_exit_handlers()
    if _flushed():  # what the handlers printed
        os._exit(0)


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
    sys.exit(main())
