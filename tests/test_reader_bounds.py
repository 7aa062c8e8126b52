"""Caches that pass every structural check but claim many rows: each reader's time and memory follow the rows
(no work that grows with their square), measured on the command in a fresh process, with generous margins."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _hostile_caches import claim_rows, small_source

import xraycache
from xraycache.core.limits import SEARCH_IMAGES

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
ROWS = 300_000  # a valid cache of this many 8 px images (~80 MB); the near-duplicate search took hours on it


# Runs the command line in this process and says its own peak RSS as it exits (readers start no workers):
# its high-water mark (VmHWM, reset by exec; ru_maxrss of a child starts at its parent's size, pytest's).
HARNESS = """
import sys
from xraycache.__main__ import main
sys.argv = ["xraycache", *sys.argv[1:]]
try:
    main()
finally:
    with open("/proc/self/status") as status:
        print(next(line for line in status if line.startswith("VmHWM:")).replace("VmHWM:", "PEAK_KB"), file=sys.stderr)
"""


def run_bounded(args: list[str]) -> tuple[int, str, float, int]:
    """(exit code, output, seconds, peak RSS in MB) of ``xraycache ARGS`` in a fresh interpreter."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", HARNESS, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    seconds = time.perf_counter() - started
    peak = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_KB")]
    assert peak, done.stderr
    return done.returncode, done.stdout + done.stderr, seconds, peak[0] // 1024


@pytest.fixture(scope="module")
def many_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 8 px cache whose train split holds ROWS images (repeats of its own four), compressed."""
    root = tmp_path_factory.mktemp("many_rows")
    out = root / "many.h5"
    xraycache.build(small_source(root), out, size=8, jobs=1)
    claim_rows(out, ROWS)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "seconds", "megabytes"),
    [("info", 60, 1000), ("show stats", 60, 1000), ("verify", 90, 1000)],
)
def test_a_cache_of_many_rows_is_read_in_bounded_time_and_memory(
    many_rows: Path, command: str, seconds: float, megabytes: int
) -> None:
    """Each reader does per-row work only (about 1 KB of memory a row): the near-duplicate search, whose
    work grows with the square of the rows, is not run over more than SEARCH_IMAGES images, and says so."""
    code, output, took, peak = run_bounded([*command.split(), str(many_rows)])
    assert code == 0, output
    assert f"{ROWS + 2:,} images, more than the {SEARCH_IMAGES:,}" in " ".join(output.split())
    assert took < seconds, f"{command}: {took:.1f} s"
    assert peak < megabytes, f"{command}: {peak} MB"


@pytest.mark.slow
def test_duplicates_refuses_more_images_than_it_is_allowed_in_one_line(many_rows: Path) -> None:
    code, output, took, _ = run_bounded(["duplicates", "--max-images", "1000", str(many_rows)])
    assert code == 2
    assert "near-duplicates not searched" in output and "--max-images 300002" in " ".join(output.split())
    assert took < 60


def test_one_long_text_value_among_many_short_ones_is_refused(tmp_path: Path) -> None:
    """Text columns come back one width for every row: one name of a million characters among 100,000 empty
    ones would take 400 GB; it is refused in one line, and a column of ordinary names reads."""
    import h5py
    import numpy as np

    from xraycache.core.errors import NotACacheError
    from xraycache.core.reads import read_text

    path = tmp_path / "text.h5"
    with h5py.File(path, "w") as f:
        text = h5py.string_dtype("utf-8")
        f.create_dataset("long", data=np.array(["x" * 1_000_000] + [""] * 100_000, dtype=object), dtype=text)
        f.create_dataset(
            "names", data=np.array([f"train/NORMAL/IM-{i:06d}.jpeg" for i in range(100_000)], dtype=object), dtype=text
        )
    budget = path.stat().st_size
    with h5py.File(path, "r") as f:
        started = time.perf_counter()
        with pytest.raises(NotACacheError, match=r"/long holds a value of 1,000,000 characters .* 400 GB"):
            read_text(f["long"], budget)
        assert time.perf_counter() - started < 20
        assert len(read_text(f["names"], budget)) == 100_000
