"""The scan: layouts, labels, splits, patient ids, ordering, and its errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from xraycache.builder.scan import order_splits, patient_id, pneumonia_kind, scan
from xraycache.core.errors import InputError


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person12_bacteria_47.jpeg", "person12"),
        ("person1430_virus_3.jpeg", "person1430"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0467-0001-0002.jpeg", "IM-0467"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("NORMAL2-IM-0983-0001-0001.jpeg", "NORMAL2-IM-0983"),
        ("00001315_006.png", "00001315"),  # NIH: patient 00001315, follow-up 6
        ("00000001_000.PNG", "00000001"),
        ("0001315_006.png", ""),  # not NIH's 8 + 3 digits
        ("00001315_006_b.png", ""),
        ("scan_001.png", ""),
        ("personal.jpeg", ""),
    ],
)
def test_patient_id(name: str, patient: str) -> None:
    assert patient_id(name) == patient


def test_pneumonia_kind() -> None:
    assert pneumonia_kind("person12_bacteria_47.jpeg") == "bacterial"
    assert pneumonia_kind("person12_virus_3.jpeg") == "viral"
    assert pneumonia_kind("person12_47.jpeg") is None


def test_split_order() -> None:
    assert order_splits({"test", "extra", "train", "val", "a"}) == ("train", "val", "test", "a", "extra")


def test_kaggle_binary(kaggle: Path) -> None:
    found = scan(kaggle)
    assert found.layout == "kaggle"
    assert found.label_names == ("normal", "pneumonia")
    assert found.splits == ("train", "val", "test")
    by_path = {f.path: f for f in found.files}
    assert by_path["train/NORMAL/IM-0115-0001.jpeg"].label == 0
    assert by_path["train/PNEUMONIA/person12_virus_3.jpeg"].label == 1
    assert by_path["train/PNEUMONIA/person12_virus_3.jpeg"].patient == "person12"
    assert by_path["val/NORMAL/IM-0200-0001.jpeg"].split == "val"
    assert [f.path for f in found.files] == sorted(by_path)  # code-point order of the paths
    assert found.counts()["train"] == {0: 3, 1: 3}


def test_kaggle_three(kaggle: Path) -> None:
    found = scan(kaggle, classes="three")
    assert found.label_names == ("normal", "bacterial", "viral")
    labels = {f.path: found.label_names[f.label] for f in found.files}
    assert labels["train/PNEUMONIA/person12_bacteria_47.jpeg"] == "bacterial"
    assert labels["train/PNEUMONIA/person12_virus_3.jpeg"] == "viral"
    assert labels["test/NORMAL/IM-0300-0001.jpeg"] == "normal"


def test_kaggle_three_unnamed_pneumonia_is_reported(make_dataset: Callable[..., Path]) -> None:
    root = make_dataset(
        {"NORMAL/a.jpeg": (40, 40), "PNEUMONIA/b.jpeg": (40, 40), "PNEUMONIA/person1_virus_1.jpeg": (40, 40)}
    )
    found = scan(root, classes="three")
    assert [f.path for f in found.files] == ["NORMAL/a.jpeg", "PNEUMONIA/person1_virus_1.jpeg"]
    assert found.unlabeled == [("PNEUMONIA/b.jpeg", "name says neither bacteria nor virus (--classes three)")]


def test_three_folder_layout(make_dataset: Callable[..., Path]) -> None:
    root = make_dataset(
        {
            "train/1_Normal/a.jpeg": (40, 40),
            "train/2_Bacteria/b.jpeg": (40, 40),
            "train/3_Virus/c.jpeg": (40, 40),
            "test/3_Virus/d.jpeg": (40, 40),
        }
    )
    found = scan(root)
    assert found.layout == "three-folder"
    assert found.label_names == ("normal", "bacterial", "viral")
    assert [found.label_names[f.label] for f in found.files] == ["viral", "normal", "bacterial", "viral"]
    assert found.splits == ("train", "test")
    binary = scan(root, classes="binary")
    assert [binary.label_names[f.label] for f in binary.files] == ["pneumonia", "normal", "pneumonia", "pneumonia"]


def test_generic_class_folders_without_split(make_dataset: Callable[..., Path]) -> None:
    root = make_dataset({"effusion/x.png": (40, 40), "cardiomegaly/y.jpg": (40, 40), "effusion/z.JPEG": (40, 40)})
    found = scan(root)
    assert found.layout == "class-folders"
    assert found.label_names == ("cardiomegaly", "effusion")
    assert found.splits == ("all",)
    assert [(f.path, f.label) for f in found.files] == [
        ("cardiomegaly/y.jpg", 0),
        ("effusion/x.png", 1),
        ("effusion/z.JPEG", 1),
    ]
    with pytest.raises(InputError, match="classes='three' needs"):
        scan(root, classes="three")


def test_flat_folder_is_unlabeled(make_dataset: Callable[..., Path]) -> None:
    root = make_dataset({"b.jpeg": (40, 40), "a.png": (40, 40)})
    found = scan(root)
    assert found.layout == "flat"
    assert found.label_names == ("unlabeled",)
    assert [f.path for f in found.files] == ["a.png", "b.jpeg"]
    assert {f.split for f in found.files} == {"all"}


def test_non_images_are_ignored_and_litter_is_invisible(kaggle: Path) -> None:
    (kaggle / "train" / "NORMAL" / "notes.txt").write_text("hello")
    (kaggle / "labels.csv").write_text("a,b\n")
    (kaggle / "train" / ".DS_Store").write_bytes(b"\0\0")
    (kaggle / "train" / "NORMAL" / "._IM-0115-0001.jpeg").write_bytes(b"\0")
    (kaggle / "train" / "Thumbs.db").write_bytes(b"\0")
    found = scan(kaggle)
    assert found.ignored == ["labels.csv", "train/NORMAL/notes.txt"]
    assert len(found.files) == 10


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "no images under"),
        ({"a.jpeg": (30, 30), "cls/b.jpeg": (30, 30)}, "mixed folder depths"),
        ({"x/y/z/a.jpeg": (30, 30)}, "3 folders deep"),
    ],
)
def test_unusable_sources_get_one_line_errors(make_dataset: Callable[..., Path], files: dict, message: str) -> None:
    root = make_dataset(files)
    with pytest.raises(InputError, match=message) as info:
        scan(root)
    assert "\n" not in str(info.value)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        scan(tmp_path / "nope")
    (tmp_path / "file.jpeg").write_bytes(b"x")
    with pytest.raises(InputError, match="is not a folder"):
        scan(tmp_path / "file.jpeg")
