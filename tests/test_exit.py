"""The end of a command: one that succeeded leaves without the interpreter's teardown, but with its output
flushed and the exit handlers run; one that failed, or that cannot leave cleanly at once, exits normally."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import pytest

from xraycache.__main__ import leave_now

# Runs the command line as the ``xraycache`` script does, with an exit handler and an object whose __del__
# runs only when the interpreter tears its modules down.
SCRIPT = """
import atexit, sys
marker = sys.argv[1]
class Teardown:
    def __del__(self, marker=marker, open=open):
        open(marker + ".teardown", "w").close()
kept = Teardown()
atexit.register(lambda: open(marker + ".handler", "w").close())
sys.argv = ["xraycache", *sys.argv[2:]]
from xraycache.__main__ import run
run()
"""


def _run(marker: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(marker), *args], capture_output=True, text=True, timeout=300
    )


def test_a_build_that_succeeded_leaves_at_once_with_its_cache_summary_and_handlers(
    kaggle: Path, tmp_path: Path
) -> None:
    marker, out = tmp_path / "m", tmp_path / "c.h5"
    done = _run(marker, "build", str(kaggle), str(out), "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert "10 images, 0 skipped" in done.stdout  # the summary's last line reached the pipe
    with h5py.File(out, "r") as handle:
        assert sum(len(handle[s]["images"]) for s in ("train", "val", "test")) == 10
    assert (tmp_path / "m.handler").exists()
    assert not (tmp_path / "m.teardown").exists()  # the teardown was skipped


def test_a_command_that_failed_exits_normally(tmp_path: Path) -> None:
    marker = tmp_path / "m"
    done = _run(marker, "info", str(tmp_path / "missing.h5"))
    assert done.returncode != 0
    assert "error" in done.stderr
    assert (tmp_path / "m.handler").exists() and (tmp_path / "m.teardown").exists()


def test_a_listing_cut_short_by_its_reader_ends_quietly(kaggle: Path, tmp_path: Path) -> None:
    """``xraycache ls | head -n 1``: no error about the closed pipe, from the command or from its exit."""
    out = tmp_path / "c.h5"
    assert _run(tmp_path / "b", "build", str(kaggle), str(out), "-q").returncode == 0
    done = subprocess.run(
        f"{sys.executable} -c '{SCRIPT}' {tmp_path / 'm'} ls {out} | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(done.stdout.splitlines()) == 1
    assert done.stderr == ""


@pytest.fixture
def no_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """``leave_now`` in this process: leaving would end the test run (with status 0), so it fails instead."""

    def left(*_: object) -> None:
        raise AssertionError("leave_now ended the process")

    monkeypatch.setattr(os, "_exit", left)
    monkeypatch.setattr(atexit, "_run_exitfuncs", left)


@pytest.mark.usefixtures("no_exit")
def test_leave_now_returns_while_another_thread_runs() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        leave_now()
    finally:
        release.set()
        thread.join()


@pytest.mark.usefixtures("no_exit")
def test_leave_now_returns_when_stdout_cannot_be_flushed(monkeypatch: pytest.MonkeyPatch) -> None:
    class ClosedPipe:
        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    leave_now()


@pytest.mark.usefixtures("no_exit")
def test_leave_now_returns_while_an_hdf5_file_is_open(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "open.h5", "w"):
        leave_now()


def test_a_profiled_command_keeps_its_profile(kaggle: Path, tmp_path: Path) -> None:
    """``python -m cProfile -o OUT -m xraycache ...``: the profile is written after the command."""
    out, profile = tmp_path / "c.h5", tmp_path / "prof.out"
    done = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "xraycache", "build", str(kaggle), str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert profile.stat().st_size > 0


def test_version_into_a_reader_that_stops_early_is_quiet() -> None:
    """``xraycache --version | grep -q ...`` under ``set -o pipefail``, with unbuffered output (each print a write)."""
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m xraycache --version | head -c 1 >/dev/null"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
