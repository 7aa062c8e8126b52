"""`xraycache show VIEW FILE` and `xraycache info FILE`: each writes its file and prints the path; errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xraycache.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "default_name"),
    [
        (["image", "--split", "train", "--index", "2"], "cache-none-image.png"),
        (["image", "--path", "train/NORMAL/IM-0003-0001.jpeg"], "cache-none-image.png"),
        (["hist", "--by-class", "--log"], "cache-none-hist.png"),
        (["hist", "--split", "val"], "cache-none-hist.png"),
        (["counts"], "cache-none-counts.png"),
        (["grid", "--n", "4", "--seed", "2", "--label", "pneumonia"], "cache-none-grid.png"),
        (["report"], "cache-none-report.html"),
    ],
)
def test_view_writes_default_file_and_prints_path(
    reader_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], default_name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["show", args[0], str(reader_cache), *args[1:]])
    assert result.exit_code == 0, result.output
    written = Path(result.stdout.strip())
    assert written == tmp_path / default_name and written.stat().st_size > 1000


def test_out_option_and_png_report(reader_cache: Path, tmp_path: Path) -> None:
    for view in ("counts", "report"):
        out = tmp_path / f"mine-{view}.png"
        result = runner.invoke(app, ["show", view, str(reader_cache), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == str(out) and out.read_bytes()[:4] == b"\x89PNG"


def test_stats_tables_and_json(reader_cache: Path) -> None:
    result = runner.invoke(app, ["show", "stats", str(reader_cache)])
    assert result.exit_code == 0, result.output
    assert "train: 40 images, imbalance 3.00" in result.stdout and "pneumonia" in result.stdout
    assert "IM-9999-0001.jpeg" in result.stdout
    result = runner.invoke(app, ["show", "stats", str(reader_cache), "--json"])
    data = json.loads(result.stdout)
    assert [s["count"] for s in data["splits"]] == [40, 4, 6]


def test_info(reader_cache: Path) -> None:
    result = runner.invoke(app, ["info", str(reader_cache)])
    assert result.exit_code == 0, result.output
    for text in ("format_version", "source_root", "train", "40 x 32 x 32", "IM-9999-0001.jpeg", "not a JPEG"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "stats", "{bad}"], "not an HDF5 file"),
        (["show", "counts", "{missing}"], "no such file"),
        (["info", "{bad}"], "not an HDF5 file"),
        (["show", "grid", "{cache}", "--split", "validation"], "no split 'validation'"),
        (["show", "grid", "{cache}", "--label", "cat"], "no label 'cat'"),
        (["show", "image", "{cache}", "--split", "val", "--index", "99"], "out of range"),
        (["show", "image", "{cache}", "--path", "nowhere.jpeg"], "no image from"),
        (["show", "counts", "{cache}", "--out", "{tmp}/no/such/dir/x.png"], "cannot write"),
    ],
)
def test_errors_are_one_line_and_exit_2(reader_cache: Path, tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    values = {"bad": bad, "missing": tmp_path / "missing.h5", "cache": reader_cache, "tmp": tmp_path}
    result = runner.invoke(app, [a.format(**values) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr.replace("\n", " ") or message in result.output.replace("\n", " ")
    assert "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0 or len(result.stderr.strip()) > 80  # one line (rich may wrap at 80)
    assert result.stdout.strip() == ""
