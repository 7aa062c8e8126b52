"""Figures and the report as a new user meets them: --out picks the format, --dpi, what titles and notes say,
and a report with statistics, leakage and skipped files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import radiograph, write_image
from matplotlib.table import Table
from PIL import Image
from typer.testing import CliRunner

import xraycache
from xraycache.cli import app
from xraycache.cli.show import DEFAULT_DPI
from xraycache.read import figures, html_report, report_text

runner = CliRunner()
MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF"}


def _is_format(path: Path, suffix: str) -> bool:
    head = path.read_bytes()[:400]
    if suffix == ".svg":
        return b"<svg" in head
    if suffix == ".html":
        return head.startswith(b"<!doctype html>")
    return head.startswith(MAGIC[suffix])


@pytest.mark.parametrize(
    ("view", "suffix"),
    [
        ("report", ".pdf"),
        ("report", ".svg"),
        ("report", ".png"),
        ("report", ".html"),
        ("counts", ".pdf"),
        ("hist", ".svg"),
        ("grid", ".pdf"),
        ("image", ".svg"),
    ],
)
def test_out_suffix_picks_the_format(reader_cache: Path, tmp_path: Path, view: str, suffix: str) -> None:
    out = tmp_path / f"figure{suffix}"
    result = runner.invoke(app, ["show", view, str(reader_cache), "--out", str(out), "--dpi", "40"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out) and _is_format(out, suffix)


@pytest.mark.parametrize(
    ("view", "name"),
    [("report", "r.jpg"), ("report", "r"), ("counts", "c.html"), ("hist", "h.txt"), ("grid", "g.jpeg"), ("image", "i")],
)
def test_unknown_suffix_is_one_line_exit_2(reader_cache: Path, tmp_path: Path, view: str, name: str) -> None:
    out = tmp_path / name
    result = runner.invoke(app, ["show", view, str(reader_cache), "--out", str(out)])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert message.startswith(f"error: --out {out}") and ".png, .pdf or .svg" in message, message
    assert ("ending in .html, " in message) == (view == "report")
    assert not out.exists() and result.stdout == ""


def test_dpi_sets_the_resolution(reader_cache: Path, tmp_path: Path) -> None:
    widths = {}
    for dpi in (50, 100):
        out = tmp_path / f"counts-{dpi}.png"
        assert (
            runner.invoke(app, ["show", "counts", str(reader_cache), "-o", str(out), "--dpi", str(dpi)]).exit_code == 0
        )
        widths[dpi] = Image.open(out).size[0]
    assert widths[100] == pytest.approx(2 * widths[50], abs=2)
    default = tmp_path / "counts-default.png"
    assert runner.invoke(app, ["show", "counts", str(reader_cache), "-o", str(default)]).exit_code == 0
    assert Image.open(default).size[0] == pytest.approx(widths[50] * DEFAULT_DPI / 50, abs=3)
    assert DEFAULT_DPI == figures.DEFAULT_DPI == 150


def test_grid_has_no_colour_bar(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        fig = figures.grid(cache["train"], n=4, seed=1)
    assert len(fig.get_axes()) == 4  # one per image: no extra colour-bar axes
    assert all(ax.get_label() != "<colorbar>" for ax in fig.get_axes())
    assert "0 (black) to 255 (white)" in fig.get_suptitle()


def test_titles_without_a_patient_id_do_not_say_patient(tmp_path: Path) -> None:
    for i in range(4):
        write_image(tmp_path / "src" / f"scan{i}.png", radiograph(40, 40, i), fmt="PNG")
    out = tmp_path / "flat.h5"
    xraycache.build(tmp_path / "src", out, size=16, jobs=1)
    with xraycache.open(out) as cache:
        grid = figures.grid(cache[cache.splits[0]], n=4)
        one = figures.image(cache[cache.splits[0]], 0)
    titles = [ax.get_title() for ax in grid.get_axes()]
    assert all("patient" not in t and re.search(r"#\d+$", t) for t in titles), titles
    assert "patient" not in one.get_suptitle() and "(#" not in one.get_suptitle()


def test_multi_label_shares_over_100_percent_say_why(multilabel_cache: Path, reader_cache: Path) -> None:
    with xraycache.open(multilabel_cache) as cache:
        fig = figures.counts(cache)
        page = html_report.report_html(cache, dpi=30)
    assert "counts once per label" in fig.get_axes()[0].get_xlabel()
    assert "counts once per label" in page
    with xraycache.open(reader_cache) as cache:  # single-label: no note
        assert "once per label" not in figures.counts(cache).get_axes()[0].get_xlabel()


@pytest.fixture(scope="module")
def leaky_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache with a patient in two splits, a file copied into another split, and a file the build skipped."""
    root = tmp_path_factory.mktemp("leaky")
    src = root / "src"
    files = {
        "train/NORMAL/IM-0001-0001.jpeg": 1,
        "test/NORMAL/IM-0001-0002.jpeg": 2,  # same patient IM-0001 in test
        "train/PNEUMONIA/person5_bacteria_1.jpeg": 3,
        "val/NORMAL/IM-0007-0001.jpeg": 4,
        "val/PNEUMONIA/person8_virus_2.jpeg": 5,
        "test/PNEUMONIA/person9_virus_3.jpeg": 6,
    }
    for rel, seed in files.items():
        write_image(src / rel, radiograph(48, 40, seed))
    shutil.copy(src / "train/PNEUMONIA/person5_bacteria_1.jpeg", src / "test/PNEUMONIA/person77_bacteria_9.jpeg")
    (src / "train/NORMAL/IM-0404-0001.jpeg").write_bytes(b"not a jpeg")
    out = root / "leaky.h5"
    xraycache.build(src, out, size=16, jobs=1)
    return out


def test_report_html_has_statistics_leakage_and_skipped(leaky_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["show", "report", str(leaky_cache), "--out", str(out), "--dpi", "40"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    sections = re.findall(r'<section id="([a-z-]+)">', page)
    assert sections == ["statistics", "leakage", "skipped", "counts", "hist-split", "hist-class", "grid", "image"]
    leakage = page.split('<section id="leakage">')[1].split("</section>")[0]
    assert "leakage found" in leakage and "IM-0001" in leakage and "train: 1, test: 1" in leakage
    assert "person77_bacteria_9.jpeg" in leakage and "person5_bacteria_1.jpeg" in leakage
    skipped = page.split('<section id="skipped">')[1].split("</section>")[0]
    assert "Skipped files: 1" in skipped and "IM-0404-0001.jpeg" in skipped and "not a JPEG" in skipped
    assert page.count("data:image/png;base64,") == 5


def test_png_report_has_the_statistics_table(leaky_cache: Path) -> None:
    with xraycache.open(leaky_cache) as cache:
        fig = figures.report(cache)
    tables = [
        child for sub in fig.subfigs for ax in sub.get_axes() for child in ax.get_children() if isinstance(child, Table)
    ]
    assert len(tables) == 1
    cells = {cell.get_text().get_text() for cell in tables[0].get_celld().values()}
    assert {"split", "class", "images", "share", "train", "normal", "all"} <= cells
    texts = " ".join(t.get_text() for sub in fig.subfigs for ax in sub.get_axes() for t in ax.texts)
    assert "leakage found" in texts and "skipped files: 1" in texts and "IM-0404-0001.jpeg" in texts


def test_leakage_summary_renders_any_counts_and_lists(leaky_cache: Path) -> None:
    """Groups the report gains later appear without changes to the report code."""
    with xraycache.open(leaky_cache) as cache:
        leaks = cache.leakage()
    extra = leaks.to_dict()
    extra["similar_groups"] = [{"images": [["train", "a.png"], ["val", "b.png"]], "distance": 3}]
    leaks.to_dict = lambda: extra  # type: ignore[method-assign]
    section = html_report._leakage_html(leaks)
    assert "similar groups: 1" in section and "train: a.png; val: b.png" in section
    summary = report_text.leakage_summary(leaks)
    assert "similar groups: 1" in summary and "images: 7" in summary
