"""What a new user reads: usage errors as one line, help without noise, honest build and dry-run lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
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
