"""`xraycache ls` and `xraycache export`: MedMNIST-style .npz and CSV, equal to what the reader loads."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import xraycache
from xraycache.cli import COMMAND_ORDER, app
from xraycache.read.export import CSV_COLUMNS, export_medmnist, image_rows

runner = CliRunner()


def test_medmnist_npz_reloads_as_load(reader_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "chest.npz"
    result = runner.invoke(app, ["export", str(reader_cache), str(out), "--format", "medmnist"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "50 images (train 40, val 4, test 6)" in result.stdout
    with np.load(out) as npz, xraycache.open(reader_cache) as cache:
        assert sorted(npz.files) == sorted(f"{s}_{k}" for s in cache.splits for k in ("images", "labels"))
        for name in cache.splits:
            x, y = cache[name].load(channels=None, label_dtype=None)
            images, labels = npz[f"{name}_images"], npz[f"{name}_labels"]
            assert images.dtype == np.uint8 and images.shape == x.shape  # MedMNIST: (N, H, W) uint8
            assert labels.dtype == np.uint8 and labels.shape == (len(y), 1)  # and (N, 1) labels
            np.testing.assert_array_equal(images, x)
            np.testing.assert_array_equal(labels, y.reshape(-1, 1))


def test_multi_label_npz_is_multi_hot_like_chestmnist(multilabel_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "nih.npz"  # format from the suffix
    assert runner.invoke(app, ["export", str(multilabel_cache), str(out)]).exit_code == 0
    with np.load(out) as npz, xraycache.open(multilabel_cache) as cache:
        _, y = cache["train"].load(channels=None, label_dtype=None)
        assert npz["train_labels"].shape == (len(y), len(cache.label_names))
        np.testing.assert_array_equal(npz["train_labels"], y)


def test_uint16_needs_to_uint8_and_keeps_the_high_byte(uint16_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.npz"
    refused = runner.invoke(app, ["export", str(uint16_cache), str(out)])
    assert refused.exit_code == 2 and "--to-uint8" in refused.stderr and not out.exists()
    assert runner.invoke(app, ["export", str(uint16_cache), str(out), "--to-uint8"]).exit_code == 0
    with np.load(out) as npz, xraycache.open(uint16_cache) as cache:
        x, _ = cache["train"].load(channels=None, label_dtype=None)
        np.testing.assert_array_equal(npz["train_images"], (x >> 8).astype(np.uint8))


def test_csv_has_one_row_per_image(multilabel_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "images.csv"
    assert runner.invoke(app, ["export", str(multilabel_cache), str(out), "-f", "csv"]).exit_code == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    with xraycache.open(multilabel_cache) as cache:
        assert len(rows) == sum(len(cache[s]) for s in cache.splits)
        train = [r for r in rows if r["split"] == "train"]
        split = cache["train"]
        for row in train:
            i = int(row["index"])
            names = [n for n, on in zip(split.label_names, split.labels[i], strict=True) if on]
            assert row["label"] == "|".join(names) and row["path"] == split.meta["path"][i]
            assert row["patient"] == split.meta["patient"][i] and int(row["width"]) == split.meta["width"][i]
            assert row["file_hash"] == split.meta["file_hash"][i] and len(row["file_hash"]) == 64


def test_ls_lists_split_index_label_path(reader_cache: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["ls", str(reader_cache)])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert len(lines) == 50 and all(len(fields) == 4 for fields in lines)
    split, index, label, path = lines[0]
    assert (split, index, label) == ("train", "0", "normal")
    shown = runner.invoke(app, ["show", "image", str(reader_cache), "--path", path, "--out", str(tmp_path / "i.png")])
    assert shown.exit_code == 0, shown.output  # what `show image --path` takes
    val = runner.invoke(app, ["ls", str(reader_cache), "--split", "val", "--label", "pneumonia"]).stdout
    assert [line.split("\t")[:3] for line in val.splitlines()] == [["val", "2", "pneumonia"], ["val", "3", "pneumonia"]]


def test_ls_label_filter_on_multi_label(multilabel_cache: Path) -> None:
    with xraycache.open(multilabel_cache) as cache:
        rows = list(image_rows(cache, label="Effusion"))
        expected = sum(int(cache[s].counts()[cache.label_names.index("Effusion")]) for s in cache.splits)
    assert len(rows) == expected > 0 and all("Effusion" in row.label.split("|") for row in rows)


def test_ls_into_a_closed_pipe_is_quiet(reader_cache: Path) -> None:
    script = f"from xraycache.cli import app; app(['ls', {str(reader_cache)!r}], prog_name='xraycache')"
    done = subprocess.run(
        f'{sys.executable} -c "{script}" | head -n 1', shell=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.count("\n") == 1 and "Traceback" not in done.stderr and "Broken pipe" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "{cache}", "{tmp}/x.txt"], "cannot tell the format"),
        (["export", "{missing}", "{tmp}/x.npz"], "no such file"),
        (["export", "{cache}", "{tmp}/no/such/x.npz"], "no such folder"),
        (["export", "{cache}", "{cache}", "-f", "csv"], "the cache itself"),
        (["ls", "{bad}"], "not an HDF5 file"),
        (["ls", "{cache}", "--split", "validation"], "no split 'validation'"),
        (["ls", "{cache}", "--label", "cat"], "no label 'cat'"),
    ],
)
def test_errors_are_one_line_and_exit_2(reader_cache: Path, tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    values = {"bad": bad, "missing": tmp_path / "missing.h5", "cache": reader_cache, "tmp": tmp_path}
    result = runner.invoke(app, [a.format(**values) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.output and result.stdout.strip() == ""


def test_export_leaves_no_temporary_file_on_error(uint16_cache: Path, tmp_path: Path) -> None:
    with xraycache.open(uint16_cache) as cache, pytest.raises(xraycache.InputError):
        export_medmnist(cache, tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


def test_commands_listed_after_info() -> None:
    assert COMMAND_ORDER.index("ls") == COMMAND_ORDER.index("info") + 1
    assert COMMAND_ORDER.index("export") == COMMAND_ORDER.index("ls") + 1
    listed = runner.invoke(app, ["--help"]).stdout
    assert listed.index(" info ") < listed.index(" ls ") < listed.index(" export ") < listed.index(" verify ")
