"""The command line: build output and exit codes, one-line errors, --version, sample."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xraycache.cli import app

runner = CliRunner()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a child process (as a user would)."""
    return subprocess.run([sys.executable, "-m", "xraycache", *args], capture_output=True, text=True, timeout=300)


def test_build_summary_and_json(kaggle: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["build", str(kaggle), str(tmp_path / "c.h5"), "--size", "32", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "images/s" in result.output and "10 images" in result.output
    result = runner.invoke(app, ["build", str(kaggle), str(tmp_path / "d.h5"), "--size", "32", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["images"] == 10 and report["label_names"] == ["normal", "pneumonia"]


def test_quiet_prints_nothing(kaggle: Path, tmp_path: Path) -> None:
    result = run("build", str(kaggle), str(tmp_path / "c.h5"), "--size", "32", "--quiet")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_dry_run(kaggle: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["build", str(kaggle), str(tmp_path / "c.h5"), "--dry-run", "--classes", "three"])
    assert result.exit_code == 0
    assert "dry run" in result.output and "bacterial" in result.output
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "{tmp}/nope", "{tmp}/c.h5"], "does not exist"),
        (["build", "{src}", "{tmp}/no/such/dir/c.h5"], "does not exist"),
        (["build", "{src}", "{exists}"], "pass --overwrite"),
        (["build", "{empty}", "{tmp}/c.h5"], "no images under"),
    ],
)
def test_usage_errors_are_one_line_exit_2(kaggle: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "exists.h5").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    values = {
        "tmp": str(tmp_path),
        "src": str(kaggle),
        "exists": str(tmp_path / "exists.h5"),
        "empty": str(tmp_path / "empty"),
    }
    result = run(*(a.format(**values) for a in args))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_strict_exit_code_1(kaggle: Path, tmp_path: Path) -> None:
    (kaggle / "train/NORMAL/IM-0999-0001.jpeg").write_bytes(b"junk")
    result = run("build", str(kaggle), str(tmp_path / "c.h5"), "--size", "32", "--strict")
    assert result.returncode == 1
    assert "--strict" in result.stderr and "IM-0999-0001.jpeg" in result.stderr
    assert not (tmp_path / "c.h5").exists()


def test_skipped_files_still_exit_0(kaggle: Path, tmp_path: Path) -> None:
    (kaggle / "train/NORMAL/IM-0999-0001.jpeg").write_bytes(b"junk")
    result = runner.invoke(app, ["build", str(kaggle), str(tmp_path / "c.h5"), "--size", "32"])
    assert result.exit_code == 0
    assert "skipped 1 file" in result.output and "not a JPEG or PNG" in result.output


def test_version_names_the_backend() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("xraycache ")
    assert "imaging backend: Pillow" in result.stdout and "libjpeg" in result.stdout and "HDF5" in result.stdout


def test_sample_is_deterministic(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.jpeg"))
        }

    a = runner.invoke(app, ["sample", str(tmp_path / "a"), "--n", "12", "--seed", "3", "--jobs", "1"])
    b = runner.invoke(app, ["sample", str(tmp_path / "b"), "--n", "12", "--seed", "3", "--jobs", "2"])
    assert a.exit_code == 0 and b.exit_code == 0
    files = digest(tmp_path / "a" / "chest_xray")
    assert len(files) == 12 and files == digest(tmp_path / "b" / "chest_xray")
    splits = {name.split("/")[0] for name in files}
    assert "val" in splits and "train" in splits
