"""Every figure is reachable from Python, returns a Figure, and has a title and labelled axes."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

import xraycache
from xraycache import InputError
from xraycache.read import figures, html_report


def _texts(fig: Figure) -> str:
    parts = [fig.get_suptitle()] if fig.get_suptitle() else []
    for ax in fig.get_axes():
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    for sub in fig.subfigs:
        parts.append(sub.get_suptitle())
    return " | ".join(parts)


def test_each_figure_has_a_title_and_axis_labels(reader_cache: Path, tmp_path: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        train = cache["train"]
        drawn = {
            "image": figures.image(train, 3),
            "hist": figures.hist(cache),
            "hist_class": figures.hist(cache, split="train", by_class=True, log=True),
            "counts": figures.counts(cache),
            "grid": figures.grid(train, n=5, seed=1),
            "grid_label": figures.grid(train, n=4, label="normal"),
            "report": figures.report(cache),
        }
        for name, fig in drawn.items():
            assert isinstance(fig, Figure)
            text = _texts(fig)
            assert text.strip(" |"), name
            out = figures.save(fig, tmp_path / f"{name}.png")
            assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "pixel value" in _texts(drawn["image"]) and "0 (black) to 255 (white)" in _texts(drawn["image"])
        assert "images (count)" in _texts(drawn["counts"])
        assert "share of pixels" in _texts(drawn["hist"])
        grid_titles = [ax.get_title() for ax in drawn["grid_label"].get_axes() if ax.get_title()]
        assert len(grid_titles) == 4 and all(t.startswith("normal\npatient ") for t in grid_titles)


def test_report_html_embeds_every_figure(reader_cache: Path, tmp_path: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        out = html_report.write_report(cache, tmp_path / "r.html")
        png = html_report.write_report(cache, tmp_path / "r.png")
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 5 and "<table>" in page and "IM-9999" in page
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_plot_errors(reader_cache: Path, tmp_path: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        with pytest.raises(InputError, match="out of range"):
            figures.image(cache["val"], 10)
        with pytest.raises(InputError, match="no label"):
            figures.grid(cache["val"], label="cat")
        with pytest.raises(InputError, match="no split"):
            figures.hist(cache, split="nope")
        with pytest.raises(InputError, match="cannot write"):
            figures.save(figures.counts(cache), tmp_path / "missing-dir" / "x.png")
