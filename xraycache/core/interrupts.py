"""Ctrl-C during a build: a KeyboardInterrupt that is never lost, and nothing committed after it.

Python runs a signal handler between any two bytecodes of the main thread, also inside a ``__del__`` or
a weakref callback, where an exception is printed as "Exception ignored" and dropped: a ``kill -INT`` of a
forked-pool build could then complete as if nothing happened (``tests/test_crash.py`` interrupts builds).
So the handler also records the request, and ``check`` raises it again where the build can still stop
cleanly: between decoded images and before a new file is renamed into place.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()  # set by the guard's SIGINT handler, cleared when a guard starts and ends


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came during the running build, even if its first raise was lost."""
    if _requested.is_set():
        raise KeyboardInterrupt


@contextmanager
def interrupt_guard() -> Iterator[None]:
    """Ctrl-C during a build: KeyboardInterrupt as usual, never lost, minus loky's noise on the way out.

    Killing the pool mid-dispatch can make an executor's manager thread die with a traceback (loky's with a
    KeyError, the standard library's with InvalidStateError for a task cancelled as it failed: races inside
    them); once the user has interrupted, those threads' exceptions are dropped, as is the
    "Exception ignored" report of a raise that landed in a callback, so the CLI prints its one line. Only
    active in the main thread, and restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    previous_hook, previous_unraisable = threading.excepthook, sys.unraisablehook

    def on_sigint(signum: int, frame: object) -> None:
        _requested.set()
        raise KeyboardInterrupt

    def hook(args: threading.ExceptHookArgs) -> None:
        if _requested.is_set() and _is_executor_manager(args.thread):
            return
        previous_hook(args)

    def unraisable(args: sys.UnraisableHookArgs) -> None:  # the raise the handler made in a weakref callback
        if _requested.is_set() and args.exc_type is KeyboardInterrupt:
            return
        previous_unraisable(args)

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    threading.excepthook, sys.unraisablehook = hook, unraisable
    try:
        yield
    except KeyboardInterrupt:
        _requested.set()
        raise
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        threading.excepthook, sys.unraisablehook = previous_hook, previous_unraisable
        _requested.clear()


def _is_executor_manager(thread: threading.Thread | None) -> bool:
    """The thread of a process pool that dispatches tasks and collects results: loky names its own, the
    standard library's (``concurrent.futures``) is known by its class only."""
    if thread is None:
        return False
    return thread.name.startswith("ExecutorManagerThread") or type(thread).__name__ == "_ExecutorManagerThread"
