"""Smoke test of the benchmark harness: a --quick run on tiny generated data (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")  # the notebook baseline needs OpenCV (test and bench extras)

from benchmarks import readme, run
from benchmarks.report import markdown


def test_area_matrix_is_an_exact_area_average() -> None:
    weights = run.area_matrix(3, 2)  # each output cell covers 1.5 input pixels
    assert np.allclose(weights, [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    image = np.arange(12, dtype=np.float64).reshape(4, 3)
    assert np.allclose(run.area_matrix(4, 2) @ image @ run.area_matrix(3, 3).T, [[1.5, 2.5, 3.5], [7.5, 8.5, 9.5]])


@pytest.mark.slow
def test_quick_run_records_every_section(tmp_path: Path) -> None:
    history, plot = tmp_path / "history.jsonl", tmp_path / "history.png"
    args = ["--quick", "--work", str(tmp_path / "work"), "--history", str(history), "--plot", str(plot)]
    record = run.main([*args, "--memory-n", "20,40", "--no-cli", "--filters", "box,bilinear"])
    lines = history.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["commit"] == record["commit"]
    for key in ("machine", "data", "versions", "build", "rebuild", "load", "memory", "fidelity", "size"):
        assert key in record, key
    assert set(record["build"]["backends"]) == {next(iter(record["versions"]))}
    assert {"box", "bilinear", "notebook"} <= set(record["fidelity"])
    assert set(record["size"]) == {"none", "gzip", "lzf"}
    assert plot.stat().st_size > 0
    assert "| target |" in markdown(record)
    assert not list((tmp_path / "work").glob("*.h5")), "scratch caches are deleted"

    page = tmp_path / "README.md"
    page.write_text("# x\n\n## Usage\n\ntext\n\n## License\n\nMIT\n")
    assert readme.main(["--history", str(history), "--readme", str(page)]) == 0
    text = page.read_text()
    assert text.index("## Performance") < text.index("## License") and readme.START in text
    assert readme.main(["--history", str(history), "--readme", str(page), "--check"]) == 0
    assert readme.render(text, "new table").count(readme.START) == 1
