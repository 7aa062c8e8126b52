"""Labels from a CSV: NIH-style multi-label, single-label by path, matching rules and what is reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import radiograph, write_image
from typer.testing import CliRunner

import xraycache
from xraycache.cli import app

NIH_ROWS = [  # Image Index, Finding Labels, Follow-up #, Patient ID
    ("00000001_000.png", "Cardiomegaly", 0, 1),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, 1),
    ("00000002_000.png", "No Finding", 0, 2),
    ("00000003_000.png", "Effusion|Infiltration|Atelectasis", 0, 3),
    ("00000004_000.png", "No Finding", 0, 4),
    ("00000099_000.png", "Mass", 0, 99),  # listed, but the image is not in the folder
]
NIH_FOLDERS = {  # NIH ships its PNGs in images_001/images/, images_002/images/, ...
    "00000001_000.png": "images_001/images",
    "00000001_001.png": "images_001/images",
    "00000002_000.png": "images_001/images",
    "00000003_000.png": "images_002/images",
    "00000004_000.png": "images_002/images",
    "00000005_000.png": "images_002/images",  # in the folder, but no row in the CSV
}


def nih(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "nih"
    csv = tmp_path / "Data_Entry_2017.csv"
    if csv.exists():  # written once per test: a rebuild sees the same files
        return src, csv
    for index, (name, folder) in enumerate(sorted(NIH_FOLDERS.items())):
        write_image(src / folder / name, radiograph(40, 40, index), fmt="PNG")
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age"]
    lines += [f"{name},{labels},{follow},{patient},58" for name, labels, follow, patient in NIH_ROWS]
    csv.write_text("\n".join(lines) + "\n")
    return src, csv


def build_nih(tmp_path: Path, **kwargs: object) -> tuple[xraycache.BuildReport, Path]:
    src, csv = nih(tmp_path)
    out = tmp_path / "nih.h5"
    report = xraycache.build(
        src,
        out,
        size=16,
        jobs=1,
        labels=csv,
        path_col="Image Index",
        label_col="Finding Labels",
        label_sep="|",
        patient_col="Patient ID",
        **kwargs,  # type: ignore[arg-type]
    )
    return report, out


def test_nih_multi_label(tmp_path: Path) -> None:
    report, out = build_nih(tmp_path)
    # "Mass" is only on the row of an image that is not there: label names come from rows that match images
    names = ["Atelectasis", "Cardiomegaly", "Effusion", "Emphysema", "Infiltration", "No Finding"]
    assert report.label_names == names
    assert report.csv_rows_without_file == ["00000099_000.png"]
    assert [row.as_dict() for row in report.skipped] == [
        {"path": "images_002/images/00000005_000.png", "split": "", "reason": "no row in Data_Entry_2017.csv"}
    ]
    with xraycache.open(out) as cache:
        assert cache.attrs["label_kind"] == "multi" and cache.attrs["csv_rows_without_file"] == 1
        assert cache.splits == ("all",)  # images_001/, images_002/ are NIH's archive folders, not splits
        every = cache["all"]
        assert every.labels.dtype == np.uint8 and every.labels.shape == (5, len(names))
        expected = np.zeros((5, len(names)), dtype=np.uint8)
        expected[0, names.index("Cardiomegaly")] = 1
        expected[1, [names.index("Cardiomegaly"), names.index("Emphysema")]] = 1
        expected[2, names.index("No Finding")] = 1
        expected[3, [names.index(n) for n in ("Effusion", "Infiltration", "Atelectasis")]] = 1
        expected[4, names.index("No Finding")] = 1
        np.testing.assert_array_equal(every.labels, expected)
        assert list(every.meta["patient"]) == ["1", "1", "2", "3", "4"]
        assert list(every.counts()) == [1, 2, 1, 1, 1, 2]
        stats_hist = every._group()["stats/count"][:]
        np.testing.assert_array_equal(stats_hist, every.counts())
        with pytest.raises(xraycache.InputError, match="multi-label"):
            next(every.batches(2, balanced=True))
    assert report.counts["all"]["Cardiomegaly"] == 2
    assert report.images == 5 and report.split_images == {"all": 5}  # each image once, whatever its labels


def test_nih_rebuild_is_incremental_and_csv_change_is_detected(tmp_path: Path) -> None:
    build_nih(tmp_path)
    again, _ = build_nih(tmp_path)
    assert again.mode == "unchanged"
    csv = tmp_path / "Data_Entry_2017.csv"
    csv.write_text(csv.read_text().replace("00000002_000.png,No Finding", "00000002_000.png,Mass"))
    with pytest.raises(xraycache.InputError, match="labels_csv_sha256"):
        build_nih(tmp_path)
    report, _ = build_nih(tmp_path, overwrite=True)
    assert report.counts["all"]["Mass"] == 1


def test_show_and_stats_work_for_multi_label(tmp_path: Path) -> None:
    _, out = build_nih(tmp_path)
    runner = CliRunner()
    for args in (
        ["show", "stats", str(out)],
        ["info", str(out)],
        ["show", "grid", str(out), "-o", str(tmp_path / "g.png")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "g.png").stat().st_size > 0


def test_single_label_by_relative_path_semicolons_and_duplicate_names(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for index, rel in enumerate(["a/x.png", "b/x.png", "b/y.png", "b/z.png"]):
        write_image(src / rel, radiograph(30, 30, index), fmt="PNG")
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "file;diagnosis;pid\n"  # semicolons: sniffed
        "a/x.png;normal;p1\n"
        ".\\b\\x.png;pneumonia;p2\n"  # Windows separators and ./ are normalised
        "y.png;normal;p3\n"  # bare, unique name: matched
        "b/z.png;;p4\n"  # empty label: reported
    )
    out = tmp_path / "c.h5"
    report = xraycache.build(
        src, out, size=16, jobs=1, labels=csv, path_col="file", label_col="diagnosis", patient_col="pid"
    )
    assert report.label_names == ["normal", "pneumonia"]
    assert [row["path"] for row in report.skipped] == ["b/z.png"]
    assert report.skipped[0]["reason"] == "no label: an empty 'diagnosis' (labels.csv line 5)"
    with xraycache.open(out) as cache:
        split = cache[cache.splits[0]]
        assert dict(zip(split.meta["path"], split.labels.tolist(), strict=True)) == {
            "a/x.png": 0,
            "b/x.png": 1,
            "b/y.png": 0,
        }
        assert list(split.meta["patient"]) == ["p1", "p2", "p3"]


def test_bare_name_that_is_not_unique_is_not_guessed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for index, rel in enumerate(["a/x.png", "b/x.png"]):
        write_image(src / rel, radiograph(30, 30, index), fmt="PNG")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nx.png,normal\n")
    with pytest.raises(xraycache.InputError, match=r"1 image rows name no file under .*e\.g\. x\.png\).*not unique"):
        xraycache.build(src, tmp_path / "c.h5", size=16, jobs=1, labels=csv, dry_run=True)
    write_image(src / "c" / "y.png", radiograph(30, 30, 2), fmt="PNG")
    csv.write_text("path,label\nx.png,normal\ny.png,normal\n")
    report = xraycache.build(src, tmp_path / "c.h5", size=16, jobs=1, labels=csv, dry_run=True)
    reasons = {row["path"]: row["reason"] for row in report.skipped}
    assert set(reasons) == {"a/x.png", "b/x.png"} and all("not unique" in r for r in reasons.values())
    assert report.csv_rows_without_file == ["x.png"]


def test_missing_column_names_the_columns(tmp_path: Path) -> None:
    write_image(tmp_path / "src" / "x.png", radiograph(30, 30, 0), fmt="PNG")
    csv = tmp_path / "labels.csv"
    csv.write_text("Image Index\tFinding Labels\nx.png\tMass\n")  # tab-separated
    build = dict(size=16, jobs=1, labels=csv, path_col="Image Index", dry_run=True)
    with pytest.raises(xraycache.OptionError, match=r"no column 'label'.*: Image Index, Finding Labels$"):
        xraycache.build(tmp_path / "src", tmp_path / "o.h5", label_col="label", **build)  # type: ignore[arg-type]
    report = xraycache.build(tmp_path / "src", tmp_path / "o.h5", label_col="Finding Labels", **build)  # type: ignore[arg-type]
    assert report.label_names == ["Mass"] and report.counts == {"all": {"Mass": 1}}
    unlabeled = xraycache.build(tmp_path / "src", tmp_path / "o.h5", **build)  # type: ignore[arg-type]
    assert unlabeled.label_names == ["unlabeled"]  # no --label-col and no column "label": the images unlabeled


def test_cli_labels_options(tmp_path: Path) -> None:
    src, csv = nih(tmp_path)
    out = tmp_path / "cli.h5"
    args = ["build", str(src), str(out), "--size", "16", "-j", "1", "--labels", str(csv)]
    args += [
        "--path-col",
        "Image Index",
        "--label-col",
        "Finding Labels",
        "--label-sep",
        "|",
        "--patient-col",
        "Patient ID",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 table row(s) name no image under SRC" in result.output and "00000099_000.png" in result.output


def test_multi_label_batches_are_float_multi_hot(tmp_path: Path) -> None:
    _, out = build_nih(tmp_path)
    with xraycache.open(out) as cache:
        split = cache["all"]
        xb, yb = next(split.batches(3, shuffle=False, dtype="float32"))
        assert xb.shape == (3, 1, 16, 16) and yb.dtype == np.float32 and yb.shape == (3, len(split.label_names))
        np.testing.assert_array_equal(yb, split.labels[:3].astype(np.float32))
        assert next(split.batches(3, shuffle=False, label_dtype="uint8"))[1].dtype == np.uint8
