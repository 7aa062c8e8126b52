"""The README's training loop runs as written on the quick start's demo.h5, and with only the path changed on
the real sample, a uint16 DICOM cache and an NIH-style multi-label cache, in a DataLoader with 2 workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("XRAYCACHE_REQUIRE_TORCH") != "1":
    pytest.importorskip("torch")

pytestmark = pytest.mark.slow  # each test trains in a fresh interpreter with DataLoader workers

REPO = Path(__file__).resolve().parent.parent
MARKER = "<!-- training-loop"
REAL_SAMPLE = REPO.parent / "shared" / "data" / "chest_xray"


def readme_loop() -> str:
    """The Python block that follows the training-loop marker in README.md."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert found, "README.md: no ```python block after the training-loop marker"
    return found.group(1)


def run_loop(folder: Path, cache: Path | None = None) -> str:
    """Run the README's loop as a script in ``folder``; with ``cache``, "demo.h5" replaced by its path."""
    code = readme_loop()
    assert code.count('"demo.h5"') == 1, 'the loop names its cache once, as "demo.h5"'
    if cache is not None:
        code = code.replace('"demo.h5"', repr(str(cache)))
    script = folder / "train.py"
    script.write_text(code)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_loop_uses_workers_only_where_torch_allows_persistent_ones() -> None:
    """persistent_workers=True with num_workers=0 is a ValueError in torch: every call that asks for persistent
    workers starts some."""
    code = readme_loop()
    assert "num_workers=2" in code
    for call in re.findall(r"\.loader\(([^)]*)\)", code):
        if "persistent_workers=True" in call:
            assert re.search(r"num_workers=[1-9]", call), call


def losses(out: str) -> list[float]:
    """The train and val loss of every epoch: finite numbers."""
    epochs = re.findall(r"train loss ([^\s,]+), val loss ([^\s,]+)", out)
    values = [float(v) for pair in epochs for v in pair]
    assert epochs and all(v == v and v < 1e6 for v in values), out
    return values


def test_on_the_quick_start_demo(tmp_path: Path) -> None:
    xraycache_cli = [sys.executable, "-m", "xraycache"]
    subprocess.run([*xraycache_cli, "sample", "demo"], cwd=tmp_path, check=True, capture_output=True, timeout=600)
    subprocess.run([*xraycache_cli, "build", "demo/chest_xray", "demo.h5", "-q"], cwd=tmp_path, check=True, timeout=600)
    assert len(losses(run_loop(tmp_path))) >= 1


@pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason="the real sample is not beside the repository")
def test_on_the_real_sample(tmp_path: Path) -> None:
    import xraycache

    xraycache.build(REAL_SAMPLE, tmp_path / "real.h5", size=128, resplit="0.8,0.1,0.1")  # as the README builds Kaggle
    losses(run_loop(tmp_path, tmp_path / "real.h5"))


def test_on_a_uint16_dicom_cache(uint16_cache: Path, tmp_path: Path) -> None:
    losses(run_loop(tmp_path, uint16_cache))


def test_on_a_multi_label_cache(multilabel_cache: Path, tmp_path: Path) -> None:
    losses(run_loop(tmp_path, multilabel_cache))
