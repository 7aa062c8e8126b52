"""Is the installed PIL whole? Pillow and Pillow-SIMD both install the ``PIL`` package, and pip does not know.

``pip install torchvision`` (or anything that requires ``pillow``) on top of Pillow-SIMD installs stock
Pillow over it: both distributions are then listed and Pillow silently wins; ``pip uninstall pillow-simd``
afterwards deletes files Pillow shares, and PIL no longer imports. :func:`pil_problem` finds both states
cheaply (package metadata, then one import) and says in one line how to repair them. It imports nothing
at module level, so that it can run when PIL itself is broken.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

REPAIR = (
    "repair it with `pip uninstall -y pillow pillow-simd && pip install --force-reinstall pillow`, "
    "or put Pillow-SIMD back with `bash scripts/pillow-simd.sh` in the xraycache folder"
)


_DIST_INFO = re.compile(r"^(pillow|pillow_simd)-([^-]+)\.(?:dist|egg)-info$", re.IGNORECASE)


def _installed() -> dict[str, str]:
    """``{"pillow": version, "pillow-simd": version}`` of the distributions on ``sys.path``, first one wins.

    The metadata folders' names, as importlib.metadata finds them, without importing it: its import
    (email, zipfile, csv, ...) is a sizeable part of ``xraycache --version`` (``python -m benchmarks.hotpath
    --sections startup``).
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            match = _DIST_INFO.match(name)
            if match:
                found.setdefault(match.group(1).lower().replace("_", "-"), match.group(2))
    return found


def _version(name: str) -> str | None:
    return _installed().get(name)


def pil_broken() -> str | None:
    """Why PIL cannot decode here (not importable, or its C module ``_imaging`` broken), or None."""
    try:
        pil = importlib.import_module("PIL")
        importlib.import_module("PIL._imaging")
        image = importlib.import_module("PIL.Image")
        image.new("L", (4, 4)).resize((2, 2))
    except Exception as exc:  # ImportError, OSError of a missing .so, AttributeError of a half-deleted package
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"PIL is broken ({reason})"
    del pil
    return None


def pil_problem() -> tuple[str, bool] | None:
    """``(one line saying what is wrong and how to repair it, fatal)``, or None when PIL is whole.

    Fatal: PIL cannot be used (a build cannot decode). Not fatal: both ``pillow`` and ``pillow-simd``
    are installed; PIL works, but which one runs is an accident of install order.
    """
    broken = pil_broken()
    simd, pillow = _version("pillow-simd"), _version("pillow")
    if broken is not None:
        installed = ", ".join(f"{n} {v}" for n, v in (("pillow", pillow), ("pillow-simd", simd)) if v) or "none"
        return f"{broken}; installed: {installed}; {REPAIR}", True
    if simd is not None and pillow is not None:
        return (
            f"both Pillow {pillow} and Pillow-SIMD {simd} are installed (something installed `pillow` over "
            f"Pillow-SIMD); {REPAIR}",
            False,
        )
    return None
