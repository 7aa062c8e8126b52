"""Smoke test of the DataLoader benchmark: a --quick run on tiny generated data (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from benchmarks import loader


def test_quick_run_records_every_reader(tmp_path: Path) -> None:
    history = tmp_path / "loader.jsonl"
    record = loader.main(["--quick", "--work", str(tmp_path / "work"), "--history", str(history)])
    assert json.loads(history.read_text().splitlines()[-1])["commit"] == record["commit"]
    rows = record["result"]["rows"]
    assert {loader.REFERENCE, loader.PLAIN, loader.BATCHED, loader.DEFERRED, loader.IN_PROCESS} <= set(rows)
    assert all(row["images_per_s"] > 0 for row in rows.values())
    assert record["result"]["images_per_rep"] >= 200 and record["fresh_page_us"] > 0
    assert "| reader | images/s |" in loader.markdown(record)


def test_table_goes_between_the_readme_markers(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(f"# x\n\n{loader.README_START}\nold\n{loader.README_END}\n\nrest\n")
    loader.write_readme(page, "| new |")
    assert page.read_text() == f"# x\n\n{loader.README_START}\n| new |\n{loader.README_END}\n\nrest\n"
