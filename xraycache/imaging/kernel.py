"""Which kernel runs the 8-bit area resize and the histogram: the compiled one (``_kernel.c``) or NumPy.

Both do the same fixed-point integer arithmetic, so they give the same bytes; the compiled one is several
times faster (``python -m benchmarks.hotpath --sections per_image``), with AVX2 passes where the CPU has
them (the same bytes again), and is built by ``pip install .`` where a C compiler is present.
``XRAYCACHE_KERNEL=numpy`` forces the NumPy one (tests, benchmarks); ``XRAYCACHE_REQUIRE_KERNEL=1`` makes a
missing compiled kernel an error instead of a silent fallback (CI).
"""

from __future__ import annotations

import os
from types import ModuleType

FORCE_ENV = "XRAYCACHE_KERNEL"
REQUIRE_ENV = "XRAYCACHE_REQUIRE_KERNEL"
COMPILED = "compiled (C)"
FUNCTIONS = ("area_u8", "hist_u8", "descriptor_u8", "fixed_taps", "set_simd", "simd")  # what this code calls
NUMPY = "NumPy"


def _load() -> ModuleType | None:
    if os.environ.get(FORCE_ENV, "").strip().lower() == "numpy":
        return None
    try:
        from . import _kernel  # type: ignore[attr-defined]

        missing = [name for name in FUNCTIONS if not hasattr(_kernel, name)]
        if missing:  # a module left from an older build (the rebuild failed, the extension is optional)
            raise ImportError(f"xraycache's compiled kernel is out of date (no {', '.join(missing)}): reinstall")
    except ImportError:
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            raise
        return None
    return _kernel


compiled: ModuleType | None = _load()


def choose(compiled_wanted: bool | None) -> ModuleType | None:
    """The kernel a call asks for: None (the caller's default) the one of this process, False NumPy (None
    returned), True the compiled one (ImportError when it is not built)."""
    if compiled_wanted is None:
        return compiled
    if not compiled_wanted:
        return None
    if compiled is not None:
        return compiled
    from . import _kernel  # type: ignore[attr-defined]

    return _kernel


def kernel_name() -> str:
    """The kernel that runs in this process: ``compiled (C)``, with its vector level where it has one
    (``compiled (C), AVX2``), or ``NumPy``."""
    if compiled is None:
        return NUMPY
    level = compiled.simd()
    return COMPILED if level == "none" else f"{COMPILED}, {level}"
