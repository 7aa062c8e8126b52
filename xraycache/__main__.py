"""``python -m xraycache`` and the ``xraycache`` command.

``xraycache --version`` is answered before the command line is loaded: typer and rich cost more than
numpy, h5py and PIL together, and the version needs none of them.
"""

from __future__ import annotations

import sys


def main() -> int | None:
    """Run the command line (``--version`` alone takes a fast path that imports no typer or rich)."""
    if sys.argv[1:] == ["--version"]:
        from .about import show_version

        return show_version()
    from .cli import app

    app(prog_name="xraycache")
    return None


if __name__ == "__main__":
    sys.exit(main())
