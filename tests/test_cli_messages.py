"""What a new user reads: usage errors as one line, help without noise, honest build and dry-run lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import radiograph, write_image
from typer.testing import CliRunner

from xraycache.cli import app

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a child process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "xraycache", *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["build", "{src}", "{out}", "--fit", "strech"], "error: --fit: 'strech' is not one of stretch, pad, crop"),
        (["build", "{src}", "{out}", "--size", "abc"], "error: --size: "),
        (["build", "{src}"], "error: Missing argument 'OUT' (see 'xraycache build --help')"),
        (["build", "{src}", "{out}", "--sise", "3"], "error: No such option: --sise"),
        (["buld"], "error: No such command 'buld'"),
        (["show", "grid", "{out}", "--n", "0"], "error: --n: "),
    ],
)
def test_usage_errors_are_one_line_exit_2(kaggle: Path, tmp_path: Path, args: list[str], line: str) -> None:
    values = {"src": str(kaggle), "out": str(tmp_path / "c.h5")}
    result = run(*(a.format(**values) for a in args))
    assert result.returncode == 2
    assert result.stderr.startswith(line), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "╭" not in result.stderr and "Value error" not in result.stderr


@pytest.mark.parametrize("command", [["build"], ["show", "report"], ["sample"], ["verify"]])
def test_help_has_no_bool_and_capital_arguments(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    if command == ["build"]:
        assert "[OPTIONS] SRC OUT" in usage


def test_no_arguments_still_shows_help() -> None:
    result = run()
    assert "Usage: xraycache [OPTIONS] COMMAND" in result.stdout + result.stderr
    assert "error:" not in result.stderr


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    return run("build", *args, "--size", "16", "--jobs", "1")


def test_cold_build_json_counts_the_images_added(kaggle: Path, tmp_path: Path) -> None:
    (kaggle / "train/NORMAL/IM-0999-0001.jpeg").write_bytes(b"junk")  # skipped: not added
    result = runner.invoke(app, ["build", str(kaggle), str(tmp_path / "c.h5"), "--size", "16", "-j", "1", "--json"])
    report = json.loads(result.stdout)
    assert report["mode"] == "cold" and report["images"] == 10 and report["added"] == 10
    assert len(report["skipped"]) == 1


def test_unchanged_rebuild_prints_one_honest_line(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    assert _build(str(kaggle), str(out)).returncode == 0
    result = _build(str(kaggle), str(out))
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("up to date, nothing to do: ") and "already holds these 10 images" in lines[0]
    assert "images/s" not in result.stdout and "built" not in result.stdout


def test_dry_run_says_what_the_real_run_would_do(kaggle: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    cold = _build(str(kaggle), str(out), "--dry-run")
    assert cold.returncode == 0 and "would build (dry run)" in cold.stdout and not out.exists()
    assert _build(str(kaggle), str(out)).returncode == 0
    before = out.stat().st_mtime_ns
    # up to date: the real run does nothing, and the dry run says so
    same = _build(str(kaggle), str(out), "--dry-run")
    assert same.returncode == 0 and same.stdout.startswith("up to date, nothing to do (dry run): ")
    assert "would build" not in same.stdout
    # other settings: the real run exits 2 asking for --overwrite; so does the dry run, with the same line
    real = run("build", str(kaggle), str(out), "--size", "32", "--jobs", "1")
    dry = run("build", str(kaggle), str(out), "--size", "32", "--jobs", "1", "--dry-run")
    assert real.returncode == dry.returncode == 2
    assert dry.stderr == real.stderr and "--overwrite" in dry.stderr and len(dry.stderr.strip().splitlines()) == 1
    assert "would build" not in dry.stdout
    # with --overwrite it would build from scratch
    over = run("build", str(kaggle), str(out), "--size", "32", "--jobs", "1", "--dry-run", "--overwrite")
    assert over.returncode == 0 and "would build (dry run)" in over.stdout
    # a change: the dry run names what the real run would reuse, add and remove
    (kaggle / "val/NORMAL/IM-0200-0001.jpeg").unlink()
    some = runner.invoke(app, ["build", str(kaggle), str(out), "--size", "16", "--dry-run", "--json"])
    report = json.loads(some.stdout)
    assert (report["would"], report["reused"], report["removed"], report["added"]) == ("incremental", 9, 1, 0)
    assert out.stat().st_mtime_ns == before


def test_empty_folder_names_every_format_read(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run("build", str(tmp_path / "empty"), str(tmp_path / "c.h5"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "no images under" in result.stderr and ".jpeg/.jpg/.png and DICOM" in result.stderr


@pytest.mark.parametrize("layout", ["flat", "one-folder"])
def test_one_class_build_warns(tmp_path: Path, layout: str) -> None:
    src = tmp_path / "src"
    for i in range(3):
        folder = src if layout == "flat" else src / "images"
        write_image(folder / f"{i:08d}_000.png", radiograph(32, 32, i), fmt="PNG")
    result = run("build", str(src), str(tmp_path / "c.h5"), "--size", "16", "-j", "1")
    assert result.returncode == 0
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1, result.stderr
    name = "unlabeled" if layout == "flat" else "images"
    assert f"one class only: every image is labelled '{name}'" in warning[0] and "--labels" in warning[0]
    report = json.loads(run("build", str(src), str(tmp_path / "d.h5"), "--size", "16", "--json").stdout)
    assert report["warnings"] == [warning[0].removeprefix("warning: ")]
    assert run("build", str(src), str(tmp_path / "e.h5"), "--size", "16", "-q").stderr == ""


def test_several_classes_do_not_warn(kaggle: Path, tmp_path: Path) -> None:
    result = run("build", str(kaggle), str(tmp_path / "c.h5"), "--size", "16", "-j", "1")
    assert result.returncode == 0 and "warning" not in result.stderr


def test_sample_into_a_file_is_one_line(tmp_path: Path) -> None:
    existing = tmp_path / "real.h5"
    existing.write_bytes(b"not a folder")
    result = run("sample", str(existing), "--n", "5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {existing} is a file, not a folder")
    assert existing.read_bytes() == b"not a folder"


def test_show_stats_at_80_columns_cuts_no_number(tmp_path: Path) -> None:
    src = tmp_path / "src"
    sizes = [("Pleural_Thickening", 1024, 1100), ("Pleural_Thickening", 3056, 2048), ("No Finding", 1010, 2990)]
    for i, (label, width, height) in enumerate(sizes):
        write_image(src / "train" / label / f"{i:08d}_000.png", radiograph(width, height, i), fmt="PNG")
    out = tmp_path / "wide.h5"
    assert run("build", str(src), str(out), "--size", "16", "-j", "1", "-q").returncode == 0
    env = {**os.environ, "COLUMNS": "80"}
    result = run("show", "stats", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "…" not in result.stdout
    for cell in ("1010-3056", "1100-2990", "1024-3056", "1100-2048", "100.0%"):
        assert cell in result.stdout, (cell, result.stdout)


def test_skipped_files_table_keeps_square_brackets(kaggle: Path, tmp_path: Path) -> None:
    """Paths and reasons are text, not rich markup: "xraycache[dicom]" in an install hint keeps its "[dicom]"."""
    (kaggle / "train/NORMAL/scan[dicom].jpeg").write_bytes(b"junk")
    out = tmp_path / "c.h5"
    result = run("build", str(kaggle), str(out), "--size", "16", "--jobs", "1", env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0 and "scan[dicom].jpeg" in result.stdout, result.stdout
    info = run("info", str(out), env={**os.environ, "COLUMNS": "200"})
    assert info.returncode == 0 and "scan[dicom].jpeg" in info.stdout, info.stdout
