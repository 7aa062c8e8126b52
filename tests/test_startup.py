"""Start-up: ``--version`` and ``--help`` load only what they print, and workers load no CLI, plots or reading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xraycache.about import version_text
from xraycache.cli import app

CLI_STACK = ("typer", "rich", "click", "matplotlib", "xraycache.cli", "xraycache.read", "pydicom", "joblib")


def _run(code: str) -> list[str]:
    """Modules of CLI_STACK loaded by ``code`` in a fresh interpreter (its stdout is discarded)."""
    script = (
        "import contextlib, io, json, sys\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + f"print(json.dumps([m for m in {CLI_STACK!r} if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_version_fast_path_loads_no_command_line() -> None:
    assert _run("sys.argv = ['xraycache', '--version']\nfrom xraycache.__main__ import main\nmain()") == []


def test_version_fast_path_prints_what_the_cli_prints() -> None:
    fast = subprocess.run(
        [sys.executable, "-m", "xraycache", "--version"], capture_output=True, text=True, check=True
    ).stdout
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert fast == result.output == version_text() + "\n"


def test_other_arguments_go_to_the_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "xraycache", "--help"], capture_output=True, text=True, check=True)
    assert "Commands" in done.stdout and "build" in done.stdout


def test_workers_load_no_command_line_plots_or_reading() -> None:
    """What a loky worker imports: the task's module (to unpickle it) and the decode path it runs (a forked
    worker imports nothing: it has what the build had)."""
    code = (
        "import numpy as np, tempfile, os\n"
        "from PIL import Image\n"
        "import xraycache.builder.workers as workers\n"
        "from xraycache.builder.scan import SourceFile\n"
        "from xraycache.core.options import ResizeOptions\n"
        "d = tempfile.mkdtemp()\n"
        "Image.fromarray(np.zeros((64, 64), np.uint8)).save(os.path.join(d, 'a.jpeg'))\n"
        "print(workers.decode_task(d, SourceFile('a.jpeg', 'train', 0, 'p1'), ResizeOptions(size=16)))\n"
    )
    assert _run(code) == []  # nothing of the command line, nor joblib: loky loads that itself


def test_a_few_files_on_loky_are_decoded_without_a_pool(
    kaggle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below SERIAL_BELOW files a build on loky decodes in its own process: that pool costs more than it saves."""
    import joblib

    import xraycache
    from xraycache.builder import workers

    def no_pool(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker pool was started for a handful of files")

    monkeypatch.setattr(joblib, "Parallel", no_pool)
    monkeypatch.setattr(workers, "SERIAL_BELOW", 200)
    serial = xraycache.build(kaggle, tmp_path / "serial.h5", size=32, jobs=2, backend="loky")
    monkeypatch.undo()
    monkeypatch.setattr(workers, "SERIAL_BELOW", 0)
    pooled = xraycache.build(kaggle, tmp_path / "pooled.h5", size=32, jobs=2, backend="loky")
    assert serial.images == pooled.images == 10
    with xraycache.open(serial.out) as a, xraycache.open(pooled.out) as b:
        assert np.array_equal(
            a["train"].load(channels=None, label_dtype=None)[0], b["train"].load(channels=None, label_dtype=None)[0]
        )
