"""Tables choose the images: CheXpert-small, MIMIC-CXR-JPG and NIH ChestX-ray14 trees in their release layouts.

Each tree is made here with the release's folder layout and table headers (from the datasets' documentation)
and awkward rows: duplicates, rows whose file is missing, laterals, studies without labels, NIH's twelve
archive folders. The expected counts are computed from the same tables with the csv module alone, the way
a user would check them, and compared with what the cache holds.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import radiograph, write_image
from typer.testing import CliRunner

import xraycache
from xraycache.cli import app
from xraycache.verify import verify

CHEXPERT_HEADER = [
    "Path",
    "Sex",
    "Age",
    "Frontal/Lateral",
    "AP/PA",
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
MIMIC_METADATA_HEADER = [
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
MIMIC_LABELS = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]
NIH_HEADER = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
]


def _image(path: Path, seed: int) -> None:
    write_image(path, radiograph(24 + seed % 7, 20 + seed % 5, seed), fmt="PNG" if path.suffix == ".png" else "JPEG")


def _write_csv(path: Path, header: list[str], rows: list[list[str]], gz: bool = False) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.write_bytes(gzip.compress(text.getvalue().encode()))
    else:
        path.write_text(text.getvalue())


def _read_csv(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:  # type: ignore[operator]
        return list(csv.DictReader(handle))


def _meta(cache_path: Path) -> dict[str, dict[str, list[str]]]:
    """Per split, the meta columns a check needs."""
    out = {}
    with xraycache.open(cache_path) as cache:
        for name in cache.splits:
            split = cache[name]
            out[name] = {
                column: [str(v) for v in split.meta[column]]
                for column in ("path", "patient", "study", "view_position", "source_split")
            }
    return out


# ---------------------------------------------------------------- CheXpert-v1.0-small


def chexpert(root: Path) -> Path:
    """``CheXpert-v1.0-small/`` as released: train.csv, valid.csv, train/patientNNNNN/studyN/viewN_*.jpg."""
    release = root / "CheXpert-v1.0-small"
    rng = np.random.default_rng(3)
    train, valid = [], []
    seed = 0
    for patient in range(1, 13):
        for study in range(1, 1 + patient % 3 + 1):
            views = ["view1_frontal"] + (["view2_lateral"] if (patient + study) % 3 == 0 else [])
            for view in views:
                rel = f"train/patient{patient:05d}/study{study}/{view}.jpg"
                frontal = "frontal" in view
                labels = [rng.choice(["1.0", "0.0", "-1.0", ""]) for _ in range(14)]
                row = [f"CheXpert-v1.0-small/{rel}", "Female", "61", "Frontal" if frontal else "Lateral"]
                row += [rng.choice(["AP", "PA"]) if frontal else "", *labels]
                train.append(row)
                if not (patient == 5 and study == 1):  # a row whose file is missing
                    seed += 1
                    _image(release / rel, seed)
    train.append(list(train[0]))  # a duplicate row
    for patient in range(64541, 64545):
        rel = f"valid/patient{patient}/study1/view1_frontal.jpg"
        seed += 1
        _image(release / rel, seed)
        valid.append([f"CheXpert-v1.0-small/{rel}", "Male", "70", "Frontal", "AP", *(["0.0"] * 13), "1.0"])
    _write_csv(release / "train.csv", CHEXPERT_HEADER, train)
    _write_csv(release / "valid.csv", CHEXPERT_HEADER, valid)
    return release


def chexpert_expected(release: Path) -> dict[str, Counter[str]]:
    """Images, patients, studies and views per split, from the tables and the files alone."""
    out: dict[str, Counter[str]] = {}
    for table, split in (("train.csv", "train"), ("valid.csv", "val")):
        seen = {}
        for row in _read_csv(release / table):
            rel = row["Path"].removeprefix("CheXpert-v1.0-small/")
            if row["Frontal/Lateral"] == "Frontal" and (release / rel).exists():
                seen[rel] = row
        patients = {re.search(r"patient\d+", p).group() for p in seen}  # type: ignore[union-attr]
        studies = {re.search(r"patient\d+/study\d+", p).group() for p in seen}  # type: ignore[union-attr]
        counts = Counter(f"view {row['AP/PA']}" for row in seen.values())
        counts.update(images=len(seen), patients=len(patients), studies=len(studies))
        out[split] = counts
    return out


def _counts(meta: dict[str, dict[str, list[str]]]) -> dict[str, Counter[str]]:
    out = {}
    for split, columns in meta.items():
        counts = Counter(f"view {v}" for v in columns["view_position"] if v)
        counts.update(
            images=len(columns["path"]),
            patients=len(set(columns["patient"])),
            studies=len(set(columns["study"])),
        )
        out[split] = counts
    return out


CHEXPERT_OPTIONS = {
    "path_col": "Path",
    "where": "Frontal/Lateral=Frontal",
    "patient_pattern": r"patient\d+",
    "study_pattern": r"patient\d+/study\d+",
    "view_col": "AP/PA",
}


@pytest.mark.parametrize("from_parent", [False, True])
def test_chexpert_small_builds_from_its_tables(tmp_path: Path, from_parent: bool) -> None:
    release = chexpert(tmp_path)
    src = release.parent if from_parent else release
    out = tmp_path / "chexpert.h5"
    report = xraycache.build(
        src,
        out,
        size=16,
        jobs=1,
        labels=[release / "train.csv", release / "valid.csv"],
        **CHEXPERT_OPTIONS,  # type: ignore[arg-type]
    )
    expected = chexpert_expected(release)
    assert _counts(_meta(out)) == expected
    meta = _meta(out)
    assert set(meta["val"]["source_split"]) == {"valid"}  # the release's name kept, stored as val
    assert all(s.startswith(p + "/") for p, s in zip(meta["train"]["patient"], meta["train"]["study"], strict=True))
    assert report.csv_rows_without_file == ["CheXpert-v1.0-small/train/patient00005/study1/view1_frontal.jpg"]
    assert report.tables["found_by"] == "path" and report.tables["dropped_folders"] == (0 if from_parent else 1)
    laterals = sum(row["Frontal/Lateral"] == "Lateral" for row in _read_csv(release / "train.csv"))
    assert report.tables["removed_by_where"] == {"Frontal/Lateral=Frontal": laterals}
    assert report.skipped == []  # the duplicate row agrees with the first: one image
    assert report.label_names == ["unlabeled"]


def test_chexpert_tables_as_splits_and_a_resplit_of_train_only(tmp_path: Path) -> None:
    release = chexpert(tmp_path)
    out = tmp_path / "c.h5"
    xraycache.build(
        release,
        out,
        size=16,
        jobs=1,
        labels=[f"train={release / 'train.csv'}", f"test={release / 'valid.csv'}"],
        resplit="0.5,0.5",
        keep_test=True,
        seed=1,
        **CHEXPERT_OPTIONS,  # type: ignore[arg-type]
    )
    meta = _meta(out)
    expected = chexpert_expected(release)
    assert len(meta["test"]["path"]) == expected["val"]["images"]  # the official split, untouched
    assert {p.split("/")[0] for p in meta["test"]["path"]} == {"valid"}
    assert set(meta["train"]["patient"]).isdisjoint(meta["val"]["patient"])  # cut by patient
    assert len(meta["train"]["path"]) + len(meta["val"]["path"]) == expected["train"]["images"]


def test_chexpert_label_column_values_and_blanks(tmp_path: Path) -> None:
    release = chexpert(tmp_path)
    out = tmp_path / "c.h5"
    report = xraycache.build(
        release,
        out,
        size=16,
        jobs=1,
        labels=[release / "train.csv", release / "valid.csv"],
        label_col="Pneumonia",
        **CHEXPERT_OPTIONS,  # type: ignore[arg-type]
    )
    rows = {
        row["Path"].removeprefix("CheXpert-v1.0-small/"): row["Pneumonia"]
        for table in ("train.csv", "valid.csv")
        for row in _read_csv(release / table)
        if row["Frontal/Lateral"] == "Frontal" and (release / row["Path"].removeprefix("CheXpert-v1.0-small/")).exists()
    }
    blank = sorted(path for path, value in rows.items() if not value)
    assert sorted(row["path"] for row in report.skipped) == blank
    assert all("no label: an empty 'Pneumonia'" in row["reason"] for row in report.skipped)
    with xraycache.open(out) as cache:
        got = Counter(
            cache.label_names[label]
            for name in cache.splits
            for label in cache[name].labels.tolist()  # type: ignore[union-attr]
        )
    assert got == Counter(v for v in rows.values() if v)


# ---------------------------------------------------------------- MIMIC-CXR-JPG 2.x


def mimic(root: Path) -> Path:
    """``mimic-cxr-jpg/2.1.0/`` as released: files/pXX/pSUBJECT/sSTUDY/DICOM.jpg and the three .csv.gz tables."""
    release = root / "mimic-cxr-jpg" / "2.1.0"
    metadata, splits, labels = [], [], []
    rng = np.random.default_rng(5)
    seed = 0
    for s, subject in enumerate((10000032, 10000764, 11000011, 12000034, 19999987)):
        for k in range(3):
            study = 50000000 + s * 10 + k
            if not (s == 2 and k == 1):  # a study without a row in the label table
                labels.append(
                    [str(subject), str(study), *(rng.choice(["1.0", "0.0", "-1.0", ""]) for _ in MIMIC_LABELS)]
                )
            for v, view in enumerate(("PA", "LATERAL") if k != 2 else ("AP", "")):
                dicom = f"{s:08x}-{k:08x}-{v:08x}-{seed:08x}-0000dead"
                metadata.append([dicom, str(subject), str(study), "CHEST (PA AND LAT)", view, "3056", "2544"])
                metadata[-1] += ["21800506", "213014.531", "CHEST (PA AND LAT)", "postero-anterior", "Erect"]
                splits.append([dicom, str(study), str(subject), ("train", "validate", "test")[s % 3]])
                rel = f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg"
                if not (s == 4 and k == 0 and v == 0):  # a row whose file is missing
                    seed += 1
                    _image(release / rel, seed)
    _write_csv(release / "mimic-cxr-2.0.0-metadata.csv.gz", MIMIC_METADATA_HEADER, metadata, gz=True)
    _write_csv(
        release / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], splits, gz=True
    )
    _write_csv(release / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *MIMIC_LABELS], labels, gz=True)
    return release


MIMIC_PATH = "files/p{subject_id:.2}/p{subject_id}/s{study_id}/{dicom_id}.jpg"


def mimic_options(release: Path, **more: object) -> dict[str, object]:
    return {
        "labels": release / "mimic-cxr-2.0.0-metadata.csv.gz",
        "path_col": MIMIC_PATH,
        "join": [
            f"{release / 'mimic-cxr-2.0.0-split.csv.gz'}:dicom_id",
            f"{release / 'mimic-cxr-2.0.0-chexpert.csv.gz'}:subject_id,study_id",
        ],
        "split_col": "split",
        "where": "ViewPosition=PA,AP",
        "patient_col": "subject_id",
        "study_col": "study_id",
        "view_col": "ViewPosition",
        **more,
    }


def test_mimic_cxr_jpg_joins_splits_views_and_studies_without_labels(tmp_path: Path) -> None:
    release = mimic(tmp_path)
    out = tmp_path / "mimic.h5"
    report = xraycache.build(release, out, size=16, jobs=1, **mimic_options(release))  # type: ignore[arg-type]
    split_of = {r["dicom_id"]: r["split"] for r in _read_csv(release / "mimic-cxr-2.0.0-split.csv.gz")}
    labelled = {(r["subject_id"], r["study_id"]) for r in _read_csv(release / "mimic-cxr-2.0.0-chexpert.csv.gz")}
    expected: dict[str, Counter[str]] = {}
    kept = without_labels = 0
    for row in _read_csv(release / "mimic-cxr-2.0.0-metadata.csv.gz"):
        s = row["subject_id"]
        rel = f"files/p{s[:2]}/p{s}/s{row['study_id']}/{row['dicom_id']}.jpg"
        if row["ViewPosition"] not in ("PA", "AP") or not (release / rel).exists():
            continue
        kept += 1
        without_labels += (s, row["study_id"]) not in labelled
        split = {"validate": "val"}.get(split_of[row["dicom_id"]], split_of[row["dicom_id"]])
        expected.setdefault(split, Counter()).update(["images", f"view {row['ViewPosition']}"])
    for split, counts in expected.items():
        rows = [
            r
            for r in _read_csv(release / "mimic-cxr-2.0.0-metadata.csv.gz")
            if r["ViewPosition"] in ("PA", "AP")
            and {"validate": "val"}.get(split_of[r["dicom_id"]], split_of[r["dicom_id"]]) == split
            and (
                release / f"files/p{r['subject_id'][:2]}/p{r['subject_id']}/s{r['study_id']}/{r['dicom_id']}.jpg"
            ).exists()
        ]
        counts.update(patients=len({r["subject_id"] for r in rows}), studies=len({r["study_id"] for r in rows}))
    assert _counts(_meta(out)) == expected
    assert sum(c["images"] for c in expected.values()) == kept == report.images
    assert {s: set(m["source_split"]) for s, m in _meta(out).items()}["val"] == {"validate"}
    chexpert_rows = report.tables["rows_without_join"]["mimic-cxr-2.0.0-chexpert.csv.gz"]
    # counted over the rows the filters keep (a lateral without labels is not counted); the images kept
    assert without_labels > 0 and chexpert_rows == without_labels
    assert report.tables["found_by"] == "path" and len(report.csv_rows_without_file) == 1


def test_mimic_label_from_the_joined_study_table_says_why_an_image_has_none(tmp_path: Path) -> None:
    release = mimic(tmp_path)
    report = xraycache.build(
        release, tmp_path / "m.h5", size=16, jobs=1, dry_run=True, **mimic_options(release, label_col="Edema")
    )  # type: ignore[arg-type]
    reasons = [row["reason"] for row in report.skipped]
    assert any("no row in mimic-cxr-2.0.0-chexpert.csv.gz for its subject_id,study_id" in r for r in reasons)
    assert all(r.startswith("no label: ") for r in reasons)


def test_mimic_command_line(tmp_path: Path) -> None:
    release = mimic(tmp_path)
    args = ["build", str(release), str(tmp_path / "m.h5"), "--size", "16", "-j", "1"]
    for key, value in mimic_options(release).items():
        for one in value if isinstance(value, list) else [value]:
            args += [f"--{key.replace('_', '-')}", str(one)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "--where ViewPosition=AP,PA removed" in result.output.replace("\n", " ")
    assert re.search(r"val: \d+ images, \d+ patients, \d+ studies; views", result.output)


# ---------------------------------------------------------------- NIH ChestX-ray14


def nih(root: Path, kaggle_mirror: bool) -> Path:
    """NIH's release: images/ (or the Kaggle mirror's images_001/images ... images_012/images), the data
    entry table and the official list files."""
    release = root / ("nih-kaggle" if kaggle_mirror else "nih")
    rows, train_val, test = [], [], []
    seed = 0
    for patient in range(1, 25):
        for follow in range(1 + patient % 3):
            name = f"{patient:08d}_{follow:03d}.png"
            folder = f"images_{1 + (patient - 1) // 2:03d}/images" if kaggle_mirror else "images"
            seed += 1
            if name != "00000007_000.png":  # a row whose file is missing
                _image(release / folder / name, seed)
            findings = ("No Finding", "Effusion|Mass", "Cardiomegaly")[seed % 3]
            view = "PA" if seed % 4 else "AP"
            rows.append([name, findings, str(follow), str(patient), "58", "M", view, "2500", "2048", "0.143", "0.143"])
            (test if patient % 4 == 0 else train_val).append(name)
    (release / "images" if not kaggle_mirror else release / "images_001" / "images").mkdir(parents=True, exist_ok=True)
    _write_csv(release / "Data_Entry_2017_v2020.csv", NIH_HEADER, rows)
    (release / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (release / "test_list.txt").write_text("\n".join(test) + "\n")
    return release


def nih_options(release: Path, **more: object) -> dict[str, object]:
    return {
        "labels": release / "Data_Entry_2017_v2020.csv",
        "path_col": "Image Index",
        "label_col": "Finding Labels",
        "label_sep": "|",
        "patient_col": "Patient ID",
        "view_col": "View Position",
        "split_list": [f"train={release / 'train_val_list.txt'}", f"test={release / 'test_list.txt'}"],
        **more,
    }


@pytest.mark.parametrize("kaggle_mirror", [False, True])
def test_nih_official_lists_and_a_val_cut_from_train_val_by_patient(tmp_path: Path, kaggle_mirror: bool) -> None:
    release = nih(tmp_path, kaggle_mirror)
    out = tmp_path / "nih.h5"
    report = xraycache.build(release, out, size=16, jobs=1, **nih_options(release, resplit="0.75,0.25", keep_test=True))  # type: ignore[arg-type]
    meta = _meta(out)
    assert set(meta) == {"train", "val", "test"}  # not twelve folders as splits
    names = {split: [p.rsplit("/", 1)[-1] for p in m["path"]] for split, m in meta.items()}
    listed_test = (release / "test_list.txt").read_text().split()
    assert sorted(names["test"]) == sorted(n for n in listed_test if n != "00000007_000.png")
    assert set(meta["train"]["patient"]).isdisjoint(meta["val"]["patient"])
    assert set(meta["train"]["patient"] + meta["val"]["patient"]).isdisjoint(meta["test"]["patient"])
    rows = {r["Image Index"]: r for r in _read_csv(release / "Data_Entry_2017_v2020.csv")}
    for split, column in meta.items():
        assert Counter(column["view_position"]) == Counter(rows[n]["View Position"] for n in names[split])
        assert column["patient"] == [rows[n]["Patient ID"] for n in names[split]]
    assert report.csv_rows_without_file == ["00000007_000.png"]
    assert report.tables["found_by"] == "name"


def test_nih_image_in_no_list_is_skipped_and_named(tmp_path: Path) -> None:
    release = nih(tmp_path, False)
    lines = (release / "test_list.txt").read_text().split()
    (release / "test_list.txt").write_text("\n".join(lines[1:]) + "\n")
    report = xraycache.build(release, tmp_path / "n.h5", size=16, jobs=1, dry_run=True, **nih_options(release))  # type: ignore[arg-type]
    assert [(row["path"], row["reason"]) for row in report.skipped] == [
        (f"images/{lines[0]}", "in no --split-list file")
    ]


# ---------------------------------------------------------------- what a hostile table can't do


def test_a_gzip_bomb_stops_at_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xraycache.builder import tables

    monkeypatch.setattr(tables, "MAX_TABLE_BYTES", 1 << 20)
    (tmp_path / "src").mkdir()
    bomb = tmp_path / "t.csv.gz"
    bomb.write_bytes(gzip.compress(b"path,label\n" + b"a" * (8 << 20)))
    with pytest.raises(xraycache.InputError, match=r"t\.csv\.gz: more than 1,048,576 bytes once decompressed"):
        xraycache.build(tmp_path / "src", tmp_path / "o.h5", labels=bomb, dry_run=True)
    broken = tmp_path / "b.csv.gz"
    broken.write_bytes(gzip.compress(b"path,label\nx.png,a\n" * 100)[:-30])
    with pytest.raises(xraycache.InputError, match=r"^cannot read labels table .*b\.csv\.gz: "):
        xraycache.build(tmp_path / "src", tmp_path / "o.h5", labels=broken, dry_run=True)


def test_paths_that_leave_src_and_templates_that_reach_into_objects(tmp_path: Path) -> None:
    src = tmp_path / "data" / "src"
    write_image(src / "a" / "x.png", radiograph(20, 20, 1), fmt="PNG")
    write_image(tmp_path / "data" / "secret" / "y.png", radiograph(20, 20, 2), fmt="PNG")
    table = tmp_path / "t.csv"
    table.write_text("path,label\na/x.png,n\n../secret/y.png,n\na/../../secret/y.png,n\n")
    report = xraycache.build(src, tmp_path / "o.h5", size=16, jobs=1, labels=table, dry_run=True)
    assert report.counts == {"all": {"n": 1}}
    assert report.csv_rows_without_file == ["../secret/y.png", "a/../../secret/y.png"]
    for template in ("{path.__class__}", "{path[0]}", "{path!r}", "{path:>10}", "{"):
        with pytest.raises(xraycache.OptionError, match="path_col"):
            xraycache.build(src, tmp_path / "o.h5", labels=table, path_col=template, dry_run=True)


def test_a_join_with_rows_that_disagree_takes_nothing_for_that_key(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(3):
        write_image(src / "d" / f"{i}.png", radiograph(20, 20, i), fmt="PNG")
    (tmp_path / "images.csv").write_text("path,id\nd/0.png,a\nd/1.png,b\nd/2.png,c\n")
    (tmp_path / "labels.csv").write_text("id,finding\na,x\nb,y\nb,z\n")  # b twice, differently; c not at all
    report = xraycache.build(
        src,
        tmp_path / "o.h5",
        size=16,
        jobs=1,
        labels=tmp_path / "images.csv",
        join=f"{tmp_path / 'labels.csv'}:id",
        label_col="finding",
        dry_run=True,
    )
    assert report.counts == {"all": {"x": 1}}
    reasons = {row["path"]: row["reason"] for row in report.skipped}
    assert reasons == {
        "d/1.png": "no label: rows that disagree in labels.csv for its id (images.csv line 3)",
        "d/2.png": "no label: no row in labels.csv for its id (images.csv line 4)",
    }
    assert report.tables["ambiguous_join_keys"] == {"labels.csv": 1}


def test_option_errors_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    table = tmp_path / "t.csv"
    table.write_text("path,label,view\nx.png,a,PA\n")
    cases = [
        ({"labels": table, "where": "View=PA"}, r"^t\.csv has no column 'View' \(where='View=PA'\); the columns"),
        ({"labels": table, "join": "nothing"}, r"^join='nothing': give FILE:KEYS"),
        ({"labels": table, "join": f"{table}:id"}, r"t\.csv has no column 'id' to join on"),
        ({"labels": table, "split_col": "split", "split_list": "test=l.txt"}, "both give splits"),
        ({"where": "view=PA"}, r"^where needs labels \(a table\)$"),
        ({"labels": table, "keep_test": True}, r"keep_test goes with resplit"),
        ({"labels": table, "resplit": "0.8,0.1,0.1", "keep_test": True}, "give 2 fractions, train,val"),
        ({"labels": [table, f"test={table}"]}, r"give every table a split \(SPLIT=FILE\) or none"),
        ({"labels": table, "resplit": "0.5,0.5", "keep_test": True}, "no image is in a split named test"),
        ({"labels": table, "split_list": "skipped=l.txt"}, "cannot name a split"),
    ]
    write_image(tmp_path / "src" / "x.png", radiograph(20, 20, 1), fmt="PNG")
    for options, message in cases:
        with pytest.raises(xraycache.OptionError, match=message):
            xraycache.build(tmp_path / "src", tmp_path / "o.h5", dry_run=True, **options)  # type: ignore[arg-type]


def test_verify_checks_a_table_built_cache_against_its_sources(tmp_path: Path) -> None:
    release = chexpert(tmp_path)
    out = tmp_path / "c.h5"
    xraycache.build(release, out, size=16, jobs=1, labels=[release / "train.csv"], **CHEXPERT_OPTIONS)  # type: ignore[arg-type]
    clean = verify(out, src=release)
    assert clean.ok and not clean.new and not clean.missing  # laterals beside the images are not "new"
    victim = release / "train" / "patient00002" / "study1" / "view1_frontal.jpg"
    victim.write_bytes(victim.read_bytes() + b"\0")
    (release / "train" / "patient00003" / "study1" / "view1_frontal.jpg").unlink()
    found = verify(out, src=release)
    assert found.changed == ["train/patient00002/study1/view1_frontal.jpg"]
    assert found.missing == ["train/patient00003/study1/view1_frontal.jpg"]


# ---------------------------------------------------------------- awkward tables


def _flat(src: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        _image(src / name, i + 1)


def test_padchest_list_cells_keep_their_quotes_and_commas(tmp_path: Path) -> None:
    _flat(tmp_path / "src", ["a.png", "b.png"])
    table = tmp_path / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
    rows = [
        ["a.png", "0", "PA", "Physician", "['normal']"],
        ["b.png", "0", "PA", "Physician", "['COPD signs', 'normal']"],
    ]
    rows += [[f"missing{i}.png", "0", "L", "RNN_model", "['normal', 'pleural effusion']"] for i in range(200)]
    _write_csv(table, ["ImageID", "ImageDir", "Projection", "MethodLabel", "Labels"], rows)
    report = xraycache.build(
        tmp_path / "src",
        tmp_path / "o.h5",
        labels=table,
        path_col="ImageID",
        label_col="Labels",
        view_col="Projection",
        dry_run=True,
    )
    assert report.label_names == ["['COPD signs', 'normal']", "['normal']"]  # one cell each: not split at a comma


def test_tables_with_other_columns_and_partial_downloads(tmp_path: Path) -> None:
    release = chexpert(tmp_path)
    (release / "other.csv").write_text("path,label\ntrain/patient00001/study1/view1_frontal.jpg,x\n")
    with pytest.raises(xraycache.OptionError, match=r"^other\.csv has no column 'Path' \(path_col='Path'\)"):
        xraycache.build(
            release, tmp_path / "o.h5", labels=[release / "train.csv", release / "other.csv"], path_col="Path"
        )
    # the first patients not downloaded: the rows still find the others' files by path
    for folder in sorted((release / "train").iterdir())[:6]:
        for file in folder.rglob("*.jpg"):
            file.unlink()
    report = xraycache.build(
        release, tmp_path / "o.h5", dry_run=True, **{**CHEXPERT_OPTIONS, "labels": release / "train.csv"}
    )  # type: ignore[arg-type]
    assert report.images > 0 and report.tables["found_by"] == "path"
    assert report.images == chexpert_expected(release)["train"]["images"]
    # SRC deep inside the release: the folders that tell files apart are never dropped
    deep = release / "train" / "patient00010" / "study1"
    with pytest.raises(xraycache.InputError, match="name no file under"):
        xraycache.build(deep, tmp_path / "o.h5", dry_run=True, **{**CHEXPERT_OPTIONS, "labels": release / "train.csv"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cell", "message"),
    [("a/b", "which it holds a '/'"), ("skipped", "reserved"), ("x" * 1001, "1,001 characters")],
)
def test_split_names_a_cache_cannot_hold_are_refused_before_decoding(tmp_path: Path, cell: str, message: str) -> None:
    _flat(tmp_path / "src", ["a.png"])
    (tmp_path / "t.csv").write_text(f"path,split\na.png,{cell}\n")
    with pytest.raises(xraycache.InputError, match=message):
        xraycache.build(tmp_path / "src", tmp_path / "o.h5", labels=tmp_path / "t.csv", split_col="split")


def test_cells_with_nul_stray_bytes_and_blank_first_lines(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _flat(src, ["über/a.png", "b.png"])
    (tmp_path / "nul.csv").write_text("path,view\nb.png,P\0A\n")
    with pytest.raises(xraycache.InputError, match=r"nul\.csv line 2: a cell holds a NUL"):
        xraycache.build(src, tmp_path / "o.h5", labels=tmp_path / "nul.csv", view_col="view", dry_run=True)
    # one byte that is not UTF-8 (a latin-1 é) does not turn the UTF-8 paths into mojibake
    (tmp_path / "mixed.csv").write_bytes(
        "\n\npath,label\nüber/a.png,x\nb.png,caf\xe9\n".encode().replace(b"\xc3\xa9", b"\xe9")
    )
    report = xraycache.build(src, tmp_path / "o.h5", size=16, jobs=1, labels=tmp_path / "mixed.csv")
    assert report.images == 2 and report.label_names == ["caf\\xe9", "x"]


def test_a_table_with_too_many_rows_stops_at_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xraycache.builder import tables

    monkeypatch.setattr(tables, "MAX_TABLE_ROWS", 1000)
    _flat(tmp_path / "src", ["a.png"])
    (tmp_path / "big.csv.gz").write_bytes(gzip.compress(b"path\n" + b"x\n" * 5000))
    with pytest.raises(xraycache.InputError, match=r"more than 1,000 rows"):
        xraycache.build(tmp_path / "src", tmp_path / "o.h5", labels=tmp_path / "big.csv.gz", dry_run=True)
    (tmp_path / "header.csv").write_text("path,label\n")
    with pytest.raises(xraycache.InputError, match=r"header\.csv has no rows below its line of column names"):
        xraycache.build(tmp_path / "src", tmp_path / "o.h5", labels=tmp_path / "header.csv", dry_run=True)


def test_patterns_whose_group_takes_no_part_and_the_no_label_warning(tmp_path: Path) -> None:
    _flat(tmp_path / "src", ["p1/a.png", "q2/b.png"])
    (tmp_path / "t.csv").write_text("path,Label\np1/a.png,x\nq2/b.png,y\n")
    report = xraycache.build(
        tmp_path / "src",
        tmp_path / "o.h5",
        size=16,
        jobs=1,
        labels=tmp_path / "t.csv",
        patient_pattern=r"(p\d)|q\d",
    )
    assert any("no labels: no --label-col given" in w and "Label" in w for w in report.warnings)
    assert sorted(_meta(tmp_path / "o.h5")["all"]["patient"]) == ["", "p1"]  # group 1 took no part: no id


def test_keep_test_never_moves_an_official_test_image(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "t1.png", 7)
    for name in ("x1.png", "x2.png"):  # byte copies of the test image, in train, of another patient
        (src / name).write_bytes((src / "t1.png").read_bytes())
    _image(src / "y.png", 8)
    (tmp_path / "t.csv").write_text("path,split,pid\nt1.png,test,A\nx1.png,train,B\nx2.png,train,B\ny.png,train,C\n")
    out = tmp_path / "o.h5"
    xraycache.build(
        src,
        out,
        size=16,
        jobs=1,
        labels=tmp_path / "t.csv",
        split_col="split",
        patient_col="pid",
        resplit="0.5,0.5",
        keep_test=True,
    )
    meta = _meta(out)
    assert sorted(meta["test"]["path"]) == ["t1.png", "x1.png", "x2.png"]  # the copies join test


def test_a_rebuild_with_the_same_tables_is_up_to_date_and_a_changed_table_is_seen(tmp_path: Path) -> None:
    release = mimic(tmp_path)
    out = tmp_path / "m.h5"
    first = xraycache.build(release, out, size=16, jobs=1, **mimic_options(release))  # type: ignore[arg-type]
    again = xraycache.build(release, out, size=16, jobs=1, **mimic_options(release))  # type: ignore[arg-type]
    assert again.mode == "unchanged" and again.reused == first.images
    labels = release / "mimic-cxr-2.0.0-chexpert.csv.gz"
    rows = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(rows.replace(b"1.0", b"0.0", 1)))
    with pytest.raises(xraycache.InputError, match="labels_csv_sha256"):
        xraycache.build(release, out, size=16, jobs=1, **mimic_options(release))  # type: ignore[arg-type]
