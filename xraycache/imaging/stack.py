"""Which imaging stack this process decodes with: Pillow or Pillow-SIMD (and its vector level), and libjpeg."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import PIL
from PIL import features


@dataclass(frozen=True)
class ImagingStack:
    """Versions that decide what a decode produces; recorded in every cache file."""

    name: str  # "Pillow-SIMD" or "Pillow"
    version: str
    simd: str  # "AVX2", "SSE4", "none" or "unknown"
    libjpeg: str

    @property
    def imaging(self) -> str:
        """Short label, e.g. ``Pillow-SIMD 12.1.1.post0 (AVX2)``."""
        simd = f" ({self.simd})" if self.name == "Pillow-SIMD" else ""
        return f"{self.name} {self.version}{simd}"


@functools.cache
def installed_imaging_backend() -> str:
    """``Pillow-SIMD`` or ``Pillow``: the distribution that owns the importable ``PIL`` package.

    First the metadata folder beside ``PIL`` (one directory listing), then importlib.metadata, whose
    search of every path entry is a sizeable part of ``--version``'s start-up (``python -m
    benchmarks.hotpath --sections startup``).
    """
    site = os.path.dirname(os.path.dirname(PIL.__file__ or ""))
    try:
        beside = {entry.lower() for entry in os.listdir(site) if entry.endswith(".dist-info")}
    except OSError:
        beside = set()
    for name in ("pillow_simd", "pillow"):
        if f"{name}-{PIL.__version__}.dist-info".lower() in beside:
            return "Pillow-SIMD" if name == "pillow_simd" else "Pillow"
    import importlib.metadata  # only when the folder beside PIL did not tell

    for name in ("pillow-simd", "pillow"):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if dist.version == PIL.__version__:
            return "Pillow-SIMD" if name == "pillow-simd" else "Pillow"
    return "Pillow-SIMD" if ".post" in PIL.__version__ else "Pillow"


def _simd_level(name: str) -> str:
    """Pillow-SIMD's vector level, read from the compiler flags kept in its binary's debug info."""
    if name != "Pillow-SIMD":
        return "none"
    try:
        from PIL import _imaging

        with open(_imaging.__file__, "rb") as handle:
            blob = handle.read()
    except (ImportError, OSError):
        return "unknown"
    if b"-mavx2" in blob:
        return "AVX2"
    if b"-msse4" in blob:
        return "SSE4"
    return "unknown"


@functools.cache
def imaging_stack() -> ImagingStack:
    """Describe the running imaging stack (cached: it cannot change within a process)."""
    name = installed_imaging_backend()
    turbo = features.check_feature("libjpeg_turbo")
    jpeg_version = features.version_feature("libjpeg_turbo") if turbo else features.version_codec("jpg")
    libjpeg = f"libjpeg-turbo {jpeg_version}" if turbo else f"libjpeg {jpeg_version}"
    return ImagingStack(name=name, version=PIL.__version__, simd=_simd_level(name), libjpeg=libjpeg)
