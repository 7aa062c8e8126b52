"""A mixed or broken PIL (Pillow over Pillow-SIMD, or one of them half uninstalled) is found by --version and
by every build, and named in one line with how to repair it; --version never shows a traceback."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xraycache.imaging.pil_install import pil_problem


def _run(*args: str, shadow: Path) -> subprocess.CompletedProcess[str]:
    """xraycache with ``shadow`` first on the module path (a fake distribution or a broken PIL)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "xraycache", *args], capture_output=True, text=True, timeout=300, env=env
    )


def _second_distribution(root: Path) -> Path:
    """A folder listing the PIL distribution that is not installed (metadata only): both look installed."""
    try:
        importlib.metadata.version("pillow-simd")
        missing = "pillow"
    except importlib.metadata.PackageNotFoundError:
        missing = "pillow-simd"
    info = root / f"{missing.replace('-', '_')}-99.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {missing}\nVersion: 99.0\n")
    return root


def _broken_pil(root: Path) -> Path:
    """A PIL package without its C module, as `pip uninstall pillow-simd` leaves it after `pip install pillow`."""
    (root / "PIL").mkdir(parents=True)
    (root / "PIL" / "__init__.py").write_text("__version__ = '12.0.0'\n")
    return root


def test_whole_pil_is_no_problem() -> None:
    assert pil_problem() is None


def test_version_warns_when_both_are_installed(tmp_path: Path) -> None:
    result = _run("--version", shadow=_second_distribution(tmp_path))
    assert result.returncode == 0 and result.stdout.startswith("xraycache ") and "imaging backend" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: both Pillow "), result.stderr
    assert "pip uninstall -y pillow pillow-simd" in lines[0] and "bash scripts/pillow-simd.sh" in lines[0]


def test_version_of_a_broken_pil_is_one_line_no_traceback(tmp_path: Path) -> None:
    result = _run("--version", shadow=_broken_pil(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    assert result.stdout.startswith("xraycache ")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: PIL is broken ("), result.stderr
    assert "pip install --force-reinstall pillow" in lines[0]


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_build_stops_on_a_broken_pil(kaggle: Path, tmp_path: Path, dry_run: list[str]) -> None:
    out = tmp_path / "c.h5"
    result = _run("build", str(kaggle), str(out), *dry_run, shadow=_broken_pil(tmp_path / "shadow"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: PIL is broken") and "pillow" in lines[0]
    assert not out.exists()


def test_build_warns_when_both_are_installed(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    result = _run(
        "build", str(kaggle), str(out), "--size", "16", "-j", "1", shadow=_second_distribution(tmp_path / "s")
    )
    assert result.returncode == 0 and out.exists()
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "both Pillow" in warnings[0] and "pillow-simd.sh" in warnings[0]
