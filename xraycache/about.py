"""What ``xraycache --version`` prints, outside the CLI package: the fast path of ``__main__`` loads no typer or rich."""

from __future__ import annotations

import sys

from .core.version import __version__


def show_version() -> int:
    """Print what ``--version`` prints; returns the exit code (1 when PIL is unusable: the version only, and
    the one line saying how to repair it)."""
    from .imaging.pil_install import pil_problem  # no PIL import of its own: works when PIL is broken

    problem = pil_problem()
    if problem is not None and problem[1]:
        print(f"xraycache {__version__}")
        print(f"error: {problem[0]}", file=sys.stderr)
        return 1
    print(version_text())
    if problem is not None:
        print(f"warning: {problem[0]}", file=sys.stderr)
    return 0


def version_text() -> str:
    """The tool's version, the imaging/HDF5 stack it runs on, and which resize kernel runs."""
    from .core.schema import hdf5_versions
    from .imaging.decoders import PLUGINS
    from .imaging.kernel import kernel_name
    from .imaging.stack import imaging_stack

    stack = imaging_stack()
    h5py_version, hdf5_version = hdf5_versions()
    decoders = ", ".join(p.NAME if p.available() else f"{p.NAME} (needs {p.REQUIRES})" for p in PLUGINS)
    return (
        f"xraycache {__version__}\n"
        f"imaging backend: {stack.imaging}\n"
        f"jpeg: {stack.libjpeg}\n"
        f"resize kernel: {kernel_name()}\n"
        f"decoders: {decoders}\n"
        f"h5py {h5py_version}, HDF5 {hdf5_version}"
    )
