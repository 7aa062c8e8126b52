"""Hostile names and outputs: class, split and file names made by an attacker, and links planted where the
tool writes. No output file is written through a link, every name reaches the terminal, rich, matplotlib
and a CSV as text, and a name a reader would refuse is refused by the build.
"""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pytest
from rich.console import Console
from rich.markup import escape as rich_escape
from typer.testing import CliRunner

from tests.conftest import radiograph, write_image
from xraycache import build
from xraycache.cli import app
from xraycache.core.atomic import current_umask
from xraycache.core.errors import InputError
from xraycache.core.escape import csv_cell, markup, mathtext, terminal, unterminal

runner = CliRunner()
# a 200-brace label leaves constrained layout no room at 30 dpi: matplotlib says so, and draws it anyway
pytestmark = pytest.mark.filterwarnings("ignore:constrained_layout not applied:UserWarning")

MARKUP = "[/]close"
LINK = "[link=https://evil.example]click[/link]"
CONTROL = "\x1b]2;owned\x07\x1b[31mred\nforged\trow"
MATH = "$\\frac{a}{$"
DEEP = "$" + "{" * 200 + "$"
FORMULA = '=HYPERLINK("http://evil.example")'
MINUS_ONE = "-1"
# the labels a CSV gives (a label may hold "/", a folder name not), one image each
CLASSES = (MARKUP, LINK, CONTROL, MATH, DEEP, FORMULA, MINUS_ONE, "@SUM(1)")
FOLDERS = (CONTROL, "[link=mailto:a@evil.example]mail", "[conceal]hidden", MATH, "=1+2", "-1")
PATIENTS = ("=2+3", CONTROL, "[/]", "", "", "", "", "")
SKIPPED_NAME = "[red]empty.jpeg"
ESC_BYTES = ("\x1b", "\x07", "\x9b")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(SRC, cache): hostile class folders, labels and patients from a CSV, an empty file skipped."""
    root = tmp_path_factory.mktemp("hostile")
    src = root / "src"
    paths = []
    for index in range(len(CLASSES)):
        rel = f"{FOLDERS[index % len(FOLDERS)]}/{index}.png"
        write_image(src / rel, radiograph(40, 36, index), fmt="PNG")
        paths.append(rel)
    (src / FOLDERS[2] / SKIPPED_NAME).write_bytes(b"")
    labels = root / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "patient"])
        writer.writerows(zip(paths, CLASSES, PATIENTS, strict=True))
        writer.writerow([f"{FOLDERS[2]}/{SKIPPED_NAME}", CLASSES[0], ""])  # an empty file: skipped, named
    out = root / "hostile.h5"
    build(src, out, size=16, jobs=1, labels=labels, patient_col="patient")
    return src, out


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' consoles 400 columns wide, so that no name is folded across lines."""
    from xraycache.cli import _common

    for console in (_common.console, _common.err_console):
        monkeypatch.setattr(console, "_width", 400)


def _victim(folder: Path) -> Path:
    victim = folder / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA the-owner\n")
    return victim


def _check_replaced(link: Path, victim: Path) -> None:
    assert victim.read_text() == "ssh-ed25519 AAAA the-owner\n"  # nothing written through the link
    info = os.lstat(link)
    assert stat.S_ISREG(info.st_mode) and info.st_size > 0  # the link itself was replaced by the output
    assert info.st_mode & 0o777 == 0o666 & ~current_umask()


# 1. outputs are never written through a link


@pytest.mark.parametrize(
    ("view", "suffix"), [("report", "html"), ("report", "svg"), ("grid", "png"), ("counts", "pdf"), ("hist", "png")]
)
def test_show_never_writes_through_a_link_at_out(hostile: tuple[Path, Path], tmp_path: Path, view: str, suffix: str):
    victim = _victim(tmp_path)
    out = tmp_path / f"team-{view}.{suffix}"
    out.symlink_to(victim)
    result = runner.invoke(app, ["show", view, str(hostile[1]), "--out", str(out), "--dpi", "30"])
    assert result.exit_code == 0, result.output
    _check_replaced(out, victim)


def test_show_default_name_in_the_current_folder_is_not_followed(
    hostile: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    victim = _victim(tmp_path)
    monkeypatch.chdir(tmp_path)
    planted = tmp_path / f"{hostile[1].stem}-image.png"
    planted.symlink_to(victim)
    result = runner.invoke(app, ["show", "image", str(hostile[1]), "--dpi", "30"])
    assert result.exit_code == 0, result.output
    _check_replaced(planted, victim)


def test_write_output_leaves_out_as_it_was_when_writing_fails(tmp_path: Path):
    from xraycache.core.atomic import write_output

    out = tmp_path / "figure.png"
    out.write_bytes(b"old")

    def fail(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_output(out, fail)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]  # no temporary left


def test_sample_images_are_not_written_through_links(tmp_path: Path):
    from xraycache.sample import plan, write_sample

    victim = _victim(tmp_path)
    first = tmp_path / "sample" / "chest_xray" / plan(3, 0)[0].relpath
    first.parent.mkdir(parents=True)
    first.symlink_to(victim)
    write_sample(tmp_path / "sample", n=3, seed=0, jobs=1)
    _check_replaced(first, victim)


# 2. terminal injection: control characters shown escaped, and taken back


def test_ls_prints_names_escaped_one_line_per_image_and_show_image_takes_them_back(
    hostile: tuple[Path, Path], tmp_path: Path
):
    result = runner.invoke(app, ["ls", str(hostile[1])])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(CLASSES)
    assert all(line.count("\t") == 3 for line in lines)  # no forged rows or columns
    assert not any(char in result.stdout for char in ESC_BYTES)
    escaped = terminal(CONTROL)
    assert escaped == "\\x1b]2;owned\\x07\\x1b[31mred\\nforged\\trow"
    path = next(line.split("\t")[3] for line in lines if line.split("\t")[3].startswith(escaped))
    assert unterminal(path) == f"{CONTROL}/0.png"
    shown = runner.invoke(app, ["show", "image", str(hostile[1]), "--path", path, "--out", str(tmp_path / "i.png")])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.strip() == str(tmp_path / "i.png")
    row = next(line for line in lines if line.split("\t")[2] == escaped)
    label = runner.invoke(app, ["ls", str(hostile[1]), "--label", escaped])
    assert label.exit_code == 0 and label.stdout.splitlines() == [row]


@pytest.mark.parametrize("command", [["info"], ["show", "stats"], ["duplicates"]])
def test_commands_print_no_control_character_from_a_name(hostile: tuple[Path, Path], command: list[str], wide: None):
    result = runner.invoke(app, [*command, str(hostile[1])])
    assert result.exit_code in (0, 2), result.output  # duplicates: 2 when the search was not possible
    assert not any(char in result.output for char in ESC_BYTES)
    if command != ["duplicates"]:
        assert "\\x1b]2;owned\\x07" in result.output  # shown, not dropped


def test_terminal_escape_round_trips_every_control_character():
    names = ["".join(map(chr, range(0x00, 0xA0))), "a\\x1b\\\\b", "\u202egnp.exe", "tab\there", "plain/é.png"]
    for name in names:
        escaped = terminal(name)
        assert all(ch.isprintable() and ch not in "\u202e" for ch in escaped)
        assert unterminal(escaped) == name
    with pytest.raises(ValueError, match="not an escape"):
        unterminal("a\\q")


# 3. rich markup: names printed as written


def test_build_with_markup_in_a_label_prints_its_summary(hostile: tuple[Path, Path], tmp_path: Path, wide: None):
    labels = ["--labels", str(hostile[0].parent / "labels.csv"), "--patient-col", "patient"]
    result = runner.invoke(app, ["build", str(hostile[0]), str(tmp_path / "c.h5"), "--size", "16", "-j", "1", *labels])
    assert result.exit_code == 0, result.output
    assert MARKUP in result.output and LINK in result.output and SKIPPED_NAME in result.output


def test_show_stats_and_info_print_markup_names_as_written(hostile: tuple[Path, Path], wide: None):
    for command in (["show", "stats"], ["info"]):
        result = runner.invoke(app, [*command, str(hostile[1])])
        assert result.exit_code == 0, result.output
        assert MARKUP in result.output and LINK in result.output and SKIPPED_NAME in result.output
        assert FOLDERS[2] in result.output  # in the skipped file's path


def test_label_with_markup_selects_in_ls_and_grid(hostile: tuple[Path, Path], tmp_path: Path):
    listed = runner.invoke(app, ["ls", str(hostile[1]), "--label", MARKUP])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.split("\t")[2] == MARKUP
    grid = runner.invoke(app, ["show", "grid", str(hostile[1]), "--label", MARKUP, "--out", str(tmp_path / "g.png")])
    assert grid.exit_code == 0, grid.output


@pytest.mark.parametrize("command", [["ls"], ["show", "grid"]])
def test_unknown_label_error_lists_markup_labels_in_one_line(
    hostile: tuple[Path, Path], tmp_path: Path, command: list[str], wide: None
):
    out = [] if command == ["ls"] else ["--out", str(tmp_path / "g.png")]
    result = runner.invoke(app, [*command, str(hostile[1]), "--label", "nope", *out])
    assert result.exit_code == 2, result.output
    assert MARKUP in result.output and LINK in result.output and len(result.output.splitlines()) == 1


def test_an_error_naming_a_markup_label_is_one_line(hostile: tuple[Path, Path]):
    result = runner.invoke(app, ["ls", str(hostile[1]), "--split", "[bold]nope[/]"])
    assert result.exit_code == 2
    assert "[bold]nope[/]" in result.output and "Traceback" not in result.output


def test_markup_escape_matches_rich_and_keeps_the_install_hint():
    for text in ["pip install 'xraycache[dicom]'", MARKUP, LINK, "a\\[b]", "ends\\", "[conceal]x"]:
        assert markup(text) == rich_escape(text)
    console = Console(width=200, record=True, emoji=False)
    console.print(markup("pip install 'xraycache[dicom]' [conceal]secret"), end="")
    assert console.export_text() == "pip install 'xraycache[dicom]' [conceal]secret"


# 4. matplotlib: names drawn as text


@pytest.mark.parametrize("view", ["counts", "grid", "hist", "report"])
def test_figures_draw_mathtext_names_as_text(hostile: tuple[Path, Path], tmp_path: Path, view: str):
    args = ["show", view, str(hostile[1]), "--out", str(tmp_path / f"{view}.png"), "--dpi", "30"]
    result = runner.invoke(app, [*args, "--by-class"] if view == "hist" else args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{view}.png").stat().st_size > 0


def test_html_report_with_mathtext_names(hostile: tuple[Path, Path], tmp_path: Path):
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["show", "report", str(hostile[1]), "--out", str(out), "--dpi", "30"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "\\frac{a}{" in page
    assert "\\x1b]2;owned\\x07" in page and not any(char in page for char in ESC_BYTES)  # shown, not dropped


def test_mathtext_escape_is_drawn_as_written():
    from matplotlib.text import Text

    for name in (MATH, DEEP, "a\\$b$", "$$"):
        drawn, is_math = Text(text=mathtext(name))._preprocess_math(mathtext(name))
        assert (drawn, is_math) == (name, False)


# 5. CSV formula injection


def test_csv_export_escapes_formulas_and_keeps_numbers(hostile: tuple[Path, Path], tmp_path: Path):
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["export", str(hostile[1]), str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    labels = {row["label"] for row in rows}
    assert "'" + FORMULA in labels and "'@SUM(1)" in labels and MINUS_ONE in labels
    assert not any(row[column].startswith(("=", "+", "@")) for row in rows for column in row)
    assert all(row["index"].isdigit() and row["width"] == "40" for row in rows)
    assert {"'=1+2/4.png", "'-1/5.png"} <= {row["path"] for row in rows}
    assert {row["patient"] for row in rows} >= {"'=2+3", CONTROL, "[/]"}


def test_csv_cell_rules():
    assert [csv_cell(v) for v in ("=1+1", "+1a", "-x", "@a", "\tx", "\rx", "-1", "+3.5", "x=1", "")] == [
        "'=1+1",
        "'+1a",
        "'-x",
        "'@a",
        "'\tx",
        "'\rx",
        "-1",
        "+3.5",
        "x=1",
        "",
    ]


# 6. names that would break the build, or a cache no reader opens


def _tiny(src: Path, rel: str) -> None:
    write_image(src / rel, radiograph(24, 20, len(rel)), fmt="PNG")


def test_split_folder_named_skipped_is_refused(tmp_path: Path):
    src = tmp_path / "src"
    for split in ("train", "skipped"):
        _tiny(src, f"{split}/NORMAL/a.png")
    with pytest.raises(InputError, match=r"'skipped'.*reserved"):
        build(src, tmp_path / "c.h5", size=16, jobs=1)
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize("depth", ["class", "split"])
def test_folder_name_not_utf8_is_refused_in_one_line(tmp_path: Path, depth: str):
    src = tmp_path / "src"
    bad = os.fsdecode(b"N\xffRMAL")
    _tiny(src, f"train/{bad}/a.png" if depth == "class" else f"{bad}/NORMAL/a.png")
    _tiny(src, "train/PNEU/b.png" if depth == "class" else "train/NORMAL/b.png")
    result = runner.invoke(app, ["build", str(src), str(tmp_path / "c.h5"), "--size", "16", "-j", "1"])
    assert result.exit_code == 2, result.output
    assert f"{depth} folder 'N\\xffRMAL'" in result.output and "not UTF-8" in result.output
    assert "Traceback" not in result.output


def test_more_split_folders_than_a_reader_opens_is_refused(tmp_path: Path):
    src = tmp_path / "src"
    for i in range(1001):
        (src / f"s{i:04d}" / "NORMAL").mkdir(parents=True)
        (src / f"s{i:04d}" / "NORMAL" / "a.png").write_bytes(b"")  # the scan reads names, not pixels
    with pytest.raises(InputError, match="1,001 split folders"):
        build(src, tmp_path / "c.h5", size=16, jobs=1, dry_run=True)


def test_out_that_is_a_source_image_is_refused(tmp_path: Path):
    src = tmp_path / "src"
    for rel in ("train/NORMAL/x.png", "train/PNEUMONIA/y.png"):
        _tiny(src, rel)
    source = src / "train/NORMAL/x.png"
    before = source.read_bytes()
    link = tmp_path / "elsewhere.png"
    link.symlink_to(source)
    for out in (source, link):
        result = runner.invoke(app, ["build", str(src), str(out), "--size", "16", "-j", "1", "--overwrite"])
        assert result.exit_code == 2, result.output
        assert "is the source file train/NORMAL/x.png" in result.output
    assert source.read_bytes() == before
    inside = runner.invoke(app, ["build", str(src), str(src / "cache.h5"), "--size", "16", "-j", "1"])
    assert inside.exit_code == 0, inside.output  # a cache inside SRC stays allowed
