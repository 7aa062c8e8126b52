"""The imaging backend the tool reports is the one that is installed, and there is only one PIL."""

from __future__ import annotations

import importlib.metadata as metadata

import PIL

from xraycache.imaging.stack import imaging_stack as backend_info


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_exactly_one_pil_distribution_is_installed() -> None:
    installed = {name: _version(name) for name in ("pillow", "pillow-simd")}
    present = {name: version for name, version in installed.items() if version}
    assert len(present) == 1, f"both Pillow and Pillow-SIMD are installed: {present}"
    assert next(iter(present.values())) == PIL.__version__


def test_reported_backend_matches_installed_distribution() -> None:
    info = backend_info()
    expected = "Pillow-SIMD" if _version("pillow-simd") else "Pillow"
    assert info.name == expected
    assert info.version == PIL.__version__
    if expected == "Pillow-SIMD":
        assert info.simd in {"AVX2", "SSE4", "unknown"}
    else:
        assert info.simd == "none"
    assert info.libjpeg.startswith("libjpeg")
