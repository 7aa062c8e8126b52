"""Labels in every shape the public tables use: coded columns (CheXpert, MIMIC), list cells (PadChest), several
rows per image (RSNA, VinDr); uncertain and missing stored as such, counted against the csv module's counts."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import radiograph, write_image
from test_tables import CHEXPERT_OPTIONS, MIMIC_LABELS, _read_csv, _write_csv, chexpert, mimic, mimic_options

import xraycache
from xraycache.builder.label_cells import list_cell
from xraycache.core.errors import InputError, NotACacheError, OptionError

CHEXPERT_14 = "No Finding..Support Devices"
STATE = {"1": "positive", "0": "negative", "-1": "uncertain", "": "missing"}


def _state(cell: str) -> str:
    """A cell's state the way a reader of the table would say it (1.0 and 1 alike)."""
    text = cell.strip()
    return STATE[str(int(float(text)))] if text else "missing"


def _table_counts(rows: list[dict[str, str]], columns: list[str]) -> dict[str, Counter[str]]:
    return {c: Counter(_state(row[c]) for row in rows) for c in columns}


def _cache_counts(labels: np.ndarray, names: tuple[str, ...]) -> dict[str, Counter[str]]:
    out = {}
    for c, name in enumerate(names):
        codes = Counter(labels[:, c].tolist())
        out[name] = Counter({STATE[k]: codes[v] for k, v in (("1", 1), ("0", 0), ("-1", -1), ("", -2)) if codes[v]})
    return out


def test_chexpert_coded_columns_counted_as_the_tables_say(tmp_path: Path) -> None:
    release = chexpert(tmp_path)
    out = tmp_path / "c.h5"
    xraycache.build(
        release, out, labels=[release / "train.csv", release / "valid.csv"], label_cols=CHEXPERT_14, size=16,
        **CHEXPERT_OPTIONS,
    )  # fmt: skip
    columns = list(_read_csv(release / "train.csv")[0])[5:]
    with xraycache.open(out) as cache:
        assert cache.attrs["label_kind"] == "coded" and list(cache.label_names) == columns
        for split, table in (("train", "train.csv"), ("val", "valid.csv")):
            kept = {}
            for row in _read_csv(release / table):  # frontal rows whose file exists, once per image
                rel = row["Path"].removeprefix("CheXpert-v1.0-small/")
                if row["Frontal/Lateral"] == "Frontal" and (release / rel).exists():
                    kept[rel] = row
            labels = cache[split].labels
            assert labels.dtype == np.int8 and labels.shape == (len(kept), 14)
            assert _cache_counts(labels, cache.label_names) == _table_counts(list(kept.values()), columns)
            by_path = dict(zip(cache[split].meta["path"], labels.tolist(), strict=True))
            for rel, row in kept.items():  # row by row, not only in total
                assert [_state(x) for x in (str(v) if v != -2 else "" for v in by_path[rel])] == [
                    _state(row[c]) for c in columns
                ]
            assert list(cache[split].counts()) == [int((labels[:, c] == 1).sum()) for c in range(14)]
    assert xraycache.build(release, out, labels=[release / "train.csv", release / "valid.csv"],
                           label_cols=CHEXPERT_14, size=16, **CHEXPERT_OPTIONS).mode == "unchanged"  # fmt: skip


def test_mimic_coded_labels_from_the_joined_table_missing_where_a_study_has_no_row(tmp_path: Path) -> None:
    release = mimic(tmp_path)
    out = tmp_path / "m.h5"
    xraycache.build(release, out, **mimic_options(release, label_cols=",".join(MIMIC_LABELS)), size=16)
    with xraycache.open(out) as cache:
        assert list(cache.label_names) == MIMIC_LABELS
        every = np.concatenate([cache[s].labels for s in cache.splits])
        studies = np.concatenate([cache[s].meta["study"] for s in cache.splits])
    no_row = studies == "50000021"  # the study the label table has no row for: every label missing
    assert no_row.any() and (every[no_row] == -2).all()
    assert set(np.unique(every[~no_row])) <= {1, 0, -1, -2}


def _one_column(tmp_path: Path, cells: list[str], more: dict[str, list[str]] | None = None) -> tuple[Path, Path]:
    src = tmp_path / "src"
    rows = []
    for i, cell in enumerate(cells):
        write_image(src / f"im{i}.png", radiograph(20, 20, i), fmt="PNG")
        rows.append([f"im{i}.png", cell, *(v[i] for v in (more or {}).values())])
    _write_csv(src / "labels.csv", ["path", "A", *(more or {})], rows)
    return src, src / "labels.csv"


def test_awkward_coded_values_and_an_all_blank_column(tmp_path: Path) -> None:
    cells = ["1", "1.0", " -1.0 ", "-1", "0", "0.0", "", "  "]
    src, table = _one_column(tmp_path, cells, {"B": [""] * len(cells)})
    out = tmp_path / "a.h5"
    xraycache.build(src, out, labels=table, label_cols="A,B", size=16)
    with xraycache.open(out) as cache:
        labels = cache["all"].labels
        order = [int(p[2:-4]) for p in cache["all"].meta["path"]]
    assert labels[:, 0][np.argsort(order)].tolist() == [1, 1, -1, -1, 0, 0, -2, -2]
    assert (labels[:, 1] == -2).all()  # a column entirely blank: every image's label missing, none dropped


@pytest.mark.parametrize("cell", ["2", "1.5", "yes", "nan", "+1", "1,0"])
def test_a_value_that_is_not_a_code_is_one_line_naming_table_line_column_and_value(tmp_path: Path, cell: str) -> None:
    src, table = _one_column(tmp_path, ["1", "0", cell])
    with pytest.raises(InputError) as caught:
        xraycache.build(src, tmp_path / "x.h5", labels=table, label_cols="A", size=16)
    message = str(caught.value)
    assert "\n" not in message and "labels.csv line 4" in message and "'A'" in message and repr(cell) in message


def test_label_cols_option_errors(tmp_path: Path) -> None:
    src, table = _one_column(tmp_path, ["1", "0"])
    for kwargs, text in (
        ({"label_cols": "A,,B"}, "label.cols"),
        ({"label_cols": "A,A"}, "label.cols"),
        ({"label_cols": "A", "label_col": "A"}, "choose one"),
        ({"label_cols": "Z"}, "no column 'Z'"),
        ({"label_cols": "Z..A"}, "no table has the columns"),
        ({"label_sep": "|", "label_list": True}, "choose one"),
    ):
        with pytest.raises(OptionError, match=text):
            xraycache.build(src, tmp_path / "x.h5", labels=table, size=16, **kwargs)  # type: ignore[arg-type]


def test_coded_labels_are_validated_on_read_and_older_caches_still_read(tmp_path: Path) -> None:
    src, table = _one_column(tmp_path, ["1", "-1", ""])
    out = tmp_path / "a.h5"
    xraycache.build(src, out, labels=table, label_cols="A", size=16)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(out.read_bytes())
    with h5py.File(bad, "r+") as f:
        f["all/labels"][0, 0] = 5
    with pytest.raises(NotACacheError, match="not a code"):
        xraycache.open(bad)
    with h5py.File(bad, "r+") as f:
        f["all/labels"][0, 0] = 1
        f.attrs["format_version"] = 3  # a coded cache cannot be of a version before the kind existed
    with pytest.raises(NotACacheError, match="label_kind"):
        xraycache.open(bad)
    old = tmp_path / "old.h5"  # a cache as format version 3 wrote it: single labels
    xraycache.build(src, old, labels=table, label_col="A", size=16)
    with h5py.File(old, "r+") as f:
        f.attrs["format_version"] = 3
    with xraycache.open(old) as cache:
        assert cache["all"].labels.dtype == np.int16 and len(cache["all"]) == 2  # the blank cell: no label


# ---------------------------------------------------------------- list cells


@pytest.mark.parametrize(
    ("cell", "names"),
    [
        ("['pneumonia', 'infiltrates']", ["pneumonia", "infiltrates"]),
        ("[]", []),
        ("", []),
        ("['']", []),
        ("[' normal ']", ["normal"]),
        ("[\"a, b\", 'c']", ["a, b", "c"]),
        ('[\'it\\\'s\', "say \\"x\\""]', ["it's", 'say "x"']),
        ("['a' , 'b',\t'c']", ["a", "b", "c"]),
    ],
)
def test_list_cells(cell: str, names: list[str]) -> None:
    assert list_cell(cell) == names


@pytest.mark.parametrize(
    "cell", ["pneumonia", "['a'", "['a',]", "['a' 'b']", "[a, b]", "['a', __import__('os')]", "[['a']]", "['a"]
)
def test_list_cells_that_are_not_flat_lists_of_strings(cell: str) -> None:
    with pytest.raises(ValueError):
        list_cell(cell)


def test_list_cells_with_quotes_and_commas_vocabulary_from_matched_rows(tmp_path: Path) -> None:
    src, table = _one_column(
        tmp_path, ["['pneumonia', 'infiltrates']", "['normal']", "[\"COPD signs\", 'loculated, pleural']", "[]"]
    )
    with open(table, "a", newline="") as handle:  # a row naming no file: its labels are not in the vocabulary
        csv.writer(handle, lineterminator="\n").writerow(["gone.png", "['only here']"])
    out = tmp_path / "p.h5"
    xraycache.build(src, out, labels=table, label_col="A", label_list=True, size=16)
    with xraycache.open(out) as cache:
        names = list(cache.label_names)
        assert names == sorted(["pneumonia", "infiltrates", "normal", "COPD signs", "loculated, pleural"])
        labels = cache["all"].labels
        by_path = dict(zip(cache["all"].meta["path"], labels.tolist(), strict=True))
    assert [n for n, on in zip(names, by_path["im2.png"], strict=True) if on] == ["COPD signs", "loculated, pleural"]
    assert not any(by_path["im3.png"])
    src2, table2 = _one_column(tmp_path / "bad", ["['a']", "['b', eval('1')]"])
    with pytest.raises(InputError, match=r"labels.csv line 3, column 'A'"):
        xraycache.build(src2, tmp_path / "x.h5", labels=table2, label_col="A", label_list=True, size=16)


# ---------------------------------------------------------------- policies at read time

# Codes of three images for the labels (No Finding, A, B), and what each policy makes of them.
POLICY_CODES = [[0, 1, -1], [-2, -1, 0], [1, -1, -2]]
POLICY_EXPECTED = {
    "u-ones": ([[0, 1, 1], [0, 1, 0], [1, 1, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]]),
    "u-zeros": ([[0, 1, 0], [0, 0, 0], [1, 0, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]]),
    "u-ignore": ([[0, 1, 0], [0, 0, 0], [1, 0, 0]], [[1, 1, 0], [1, 0, 1], [1, 0, 1]]),
    # No Finding positive: A and B negative (uncertain and missing alike), as torchxrayvision does
    "xrv": ([[0, 1, 0], [0, 0, 0], [1, 0, 0]], [[1, 1, 0], [0, 0, 1], [1, 1, 1]]),
}


@pytest.fixture(scope="module")
def coded_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("coded")
    cells = {"No Finding": [], "A": [], "B": []}  # type: dict[str, list[str]]
    for row in POLICY_CODES:
        for name, code in zip(cells, row, strict=True):
            cells[name].append("" if code == -2 else f"{code}.0")
    src, table = _one_column(tmp, cells.pop("No Finding"), cells)
    table.write_text(table.read_text().replace("path,A,A,B", "path,No Finding,A,B", 1))
    out = tmp / "p.h5"
    xraycache.build(src, out, labels=table, label_cols="No Finding..B", size=16)
    return out


def test_each_policy_gives_the_documented_targets_and_masks(coded_cache: Path) -> None:
    from xraycache.read.label_policy import LabelPolicy

    with xraycache.open(coded_cache) as cache:
        split = cache["all"]
        assert split.coded and split.labels.tolist() == POLICY_CODES
        for name, (targets, mask) in POLICY_EXPECTED.items():
            got = split.targets(name)
            assert got[0].tolist() == targets and got[1].tolist() == mask, name
            images, t, m = split.load(channels=1, label_dtype=None, label_policy=name)
            assert images.shape == (3, 1, 16, 16) and t.dtype == m.dtype == np.float32 and t.tolist() == targets
            batches = list(split.batches(2, shuffle=False, label_policy=name))
            assert np.concatenate([b[1] for b in batches]).tolist() == targets
            assert np.concatenate([b[2] for b in batches]).tolist() == mask
        t, m = split.targets(LabelPolicy(uncertain="ones", missing="ignore"))
        assert t.tolist() == [[0, 1, 1], [0, 1, 0], [1, 1, 0]] and m.tolist() == [[1, 1, 1], [0, 1, 1], [1, 1, 0]]
        with pytest.raises(InputError, match="label_policy"):  # no silent meaning for -1 and -2
            split.load(channels=1, label_dtype=None)
        with pytest.raises(InputError, match="label_policy"):
            next(split.batches(2))
        assert split.load(channels=None, label_dtype="int8")[1].tolist() == POLICY_CODES  # the codes as stored
        with pytest.raises(InputError, match="u-ones"):
            split.targets("u-maybe")


@pytest.mark.parametrize("policy", sorted(POLICY_EXPECTED))
def test_each_policy_in_a_dataloader(coded_cache: Path, policy: str) -> None:
    torch = pytest.importorskip("torch")
    from xraycache.torch import XrayDataset

    dataset = XrayDataset(coded_cache, "all", dtype="float32", label_policy=policy)
    targets, mask = POLICY_EXPECTED[policy]
    image, target, item_mask = dataset[1]
    assert image.shape == (1, 16, 16) and target.tolist() == targets[1] and item_mask.tolist() == mask[1]
    for loader in (dataset.loader(2), torch.utils.data.DataLoader(dataset, batch_size=2)):
        batches = list(loader)
        assert all(len(batch) == 3 for batch in batches)
        assert torch.cat([b[1] for b in batches]).tolist() == targets
        assert torch.cat([b[2] for b in batches]).tolist() == mask
    positives = (np.array(targets) * mask).sum(axis=0)
    negatives = ((1 - np.array(targets)) * mask).sum(axis=0)
    expected = np.divide(negatives, positives, out=np.ones(3), where=positives > 0)
    assert dataset.class_weights().tolist() == pytest.approx(expected.tolist())
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.zeros(3, 3), torch.tensor(targets, dtype=torch.float32), reduction="none"
    )
    assert float((loss * torch.tensor(mask)).sum()) == pytest.approx(float(np.log(2) * np.sum(mask)))


def test_a_coded_cache_needs_a_policy_in_the_dataset_and_others_refuse_one(coded_cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from xraycache.torch import XrayDataset

    with pytest.raises(InputError, match="label_policy"):
        XrayDataset(coded_cache, "all", dtype="float32")
    src, table = _one_column(tmp_path, ["a", "b"])
    out = tmp_path / "s.h5"
    xraycache.build(src, out, labels=table, label_col="A", size=16)
    with pytest.raises(InputError, match="coded labels"):
        XrayDataset(out, "all", dtype="float32", label_policy="u-ones")


def test_show_stats_and_the_report_count_each_state_per_label_and_split(coded_cache: Path) -> None:
    import json

    from typer.testing import CliRunner

    from xraycache.cli import app
    from xraycache.read import html_report

    expected = {"No Finding": [1, 1, 0, 1], "A": [1, 0, 2, 0], "B": [0, 1, 1, 1]}  # pos, neg, unc, missing
    result = CliRunner().invoke(app, ["show", "stats", str(coded_cache), "--json"])
    assert result.exit_code == 0, result.output
    classes = json.loads(result.output)["splits"][0]["classes"]
    assert {c["label"]: list(c["states"].values()) for c in classes} == expected
    assert list(classes[0]["states"]) == ["positive", "negative", "uncertain", "missing"]
    text = CliRunner().invoke(app, ["show", "stats", str(coded_cache)]).output
    assert "uncertain" in text and "missing" in text
    for label, counts in expected.items():
        assert re.search(rf"all\s+{label}\s+" + r"\s+".join(map(str, counts)), text), text
    with xraycache.open(coded_cache) as cache:
        page = html_report.report_html(cache, dpi=40)
    assert "<th>uncertain</th>" in page and "<td>No Finding</td><td>1</td><td>1</td><td>0</td><td>1</td>" in page


# ---------------------------------------------------------------- several rows per image


def test_rsna_one_row_per_box_is_one_image(tmp_path: Path) -> None:
    """RSNA pneumonia: one row per box, Target repeated on each; an image without boxes has one row."""
    src = tmp_path / "rsna"
    rows = []
    for i, boxes in enumerate([0, 1, 3, 2]):
        name = f"0004cfab-{i:04d}"
        write_image(src / "stage_2_train_images" / f"{name}.png", radiograph(20, 20, i), fmt="PNG")
        for _box in range(max(1, boxes)):
            rows.append([name, *(["264", "152", "213", "379"] if boxes else ["", "", "", ""]), "1" if boxes else "0"])
    _write_csv(src / "stage_2_train_labels.csv", ["patientId", "x", "y", "width", "height", "Target"], rows)
    out = tmp_path / "r.h5"
    xraycache.build(
        src, out, labels=src / "stage_2_train_labels.csv", path_col="patientId", label_col="Target", size=16
    )
    with xraycache.open(out) as cache:
        assert cache.skipped == []
        names = cache.label_names
        got = {p.split("/")[-1]: names[v] for p, v in zip(cache["all"].meta["path"], cache["all"].labels, strict=True)}
    assert got == {
        "0004cfab-0000.png": "0",
        "0004cfab-0001.png": "1",
        "0004cfab-0002.png": "1",
        "0004cfab-0003.png": "1",
    }


def _vindr(src: Path, folder: str, findings: dict[str, list[tuple[str, str]]]) -> None:
    """VinDr-CXR's train.csv: a row per radiologist and finding (boxes left blank), and the images."""
    rows = []
    for i, (image, given) in enumerate(findings.items()):
        write_image(src / f"{folder}{image}.png", radiograph(20, 20, i), fmt="PNG")
        rows += [[image, name, "0", rad, "", "", "", ""] for rad, name in given]
    header = ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]
    _write_csv(src / "train.csv", header, rows)


def test_vindr_rows_per_radiologist_and_finding_give_the_union(tmp_path: Path) -> None:
    """VinDr-CXR: one row per radiologist and finding; the image's labels are the union over its rows."""
    src = tmp_path / "vindr"
    findings = {
        "a": [("R8", "No finding"), ("R9", "No finding"), ("R10", "No finding")],
        "b": [
            ("R8", "Aortic enlargement"),
            ("R8", "Cardiomegaly"),
            ("R9", "Aortic enlargement"),
            ("R10", "No finding"),
        ],
    }
    _vindr(src, "train/", findings)
    out = tmp_path / "v.h5"
    options = {"labels": src / "train.csv", "path_col": "image_id", "label_col": "class_name", "size": 16}
    xraycache.build(src, out, label_sep="|", **options)
    with xraycache.open(out) as cache:
        names = list(cache.label_names)
        by_path = dict(zip(cache["train"].meta["path"], cache["train"].labels.tolist(), strict=True))
    assert names == ["Aortic enlargement", "Cardiomegaly", "No finding"]
    assert by_path["train/a.png"] == [0, 0, 1] and by_path["train/b.png"] == [1, 1, 1]
    single = tmp_path / "s.h5"  # one label per image: rows that disagree skip the image, and say how to union
    xraycache.build(src, single, **options)
    with xraycache.open(single) as cache:
        assert list(cache["train"].meta["path"]) == ["train/a.png"]
        (skip,) = cache.skipped
    assert skip.path == "train/b.png" and "different labels" in skip.reason and "--label-sep" in skip.reason


def test_coded_rows_of_one_image_keep_the_strongest_statement(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "x.png", radiograph(20, 20, 1), fmt="PNG")
    rows = [["x.png", "0", "", "-1", ""], ["x.png", "-1", "", "0", "1.0"], ["x.png", "", "", "", "0"]]
    _write_csv(src / "t.csv", ["path", "A", "B", "C", "D"], rows)
    out = tmp_path / "x.h5"
    xraycache.build(src, out, labels=src / "t.csv", label_cols="A..D", size=16)
    with xraycache.open(out) as cache:
        assert cache["all"].labels.tolist() == [[-1, -2, -1, 1]]


def test_per_annotator_labels_are_kept_beside_the_union(tmp_path: Path) -> None:
    src = tmp_path / "vindr"
    findings = {
        "a": [("R9", "No finding"), ("R10", "No finding")],
        "b": [
            ("R8", "Aortic enlargement"),
            ("R8", "Cardiomegaly"),
            ("R9", "Aortic enlargement"),
            ("R10", "No finding"),
        ],
    }
    _vindr(src, "", findings)
    out = tmp_path / "v.h5"
    xraycache.build(
        src, out, labels=src / "train.csv", path_col="image_id", label_col="class_name", label_sep="|",
        annotator_col="rad_id", size=16,
    )  # fmt: skip
    with xraycache.open(out) as cache:
        split = cache["all"]
        names, who, codes = split.annotator_labels()  # type: ignore[misc]
        paths = list(split.meta["path"])
        union = split.labels
    assert names == ("R10", "R8", "R9") and who.shape == (2, 3) and codes.shape == (2, 3, 3)
    a, b = paths.index("a.png"), paths.index("b.png")
    assert [names[k] for k in who[a] if k >= 0] == ["R10", "R9"] and who[a, 2] == -1 and (codes[a, 2] == -2).all()
    assert codes[a, :2].tolist() == [[0, 0, 1], [0, 0, 1]]
    given = {names[k]: codes[b, slot].tolist() for slot, k in enumerate(who[b])}
    assert given == {"R10": [0, 0, 1], "R8": [1, 1, 0], "R9": [1, 0, 0]}
    assert union[b].tolist() == [1, 1, 1] and union[a].tolist() == [0, 0, 1]
    with h5py.File(out, "r+") as f:  # an index past the names is refused on read
        f["all/annotators"][0, 0] = 7
    with pytest.raises(NotACacheError, match="annotators"):
        xraycache.open(out)


def test_coded_annotators_keep_each_ones_codes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "x.png", radiograph(20, 20, 1), fmt="PNG")
    _write_csv(src / "t.csv", ["path", "who", "A", "B"], [["x.png", "r1", "1.0", ""], ["x.png", "r2", "-1.0", "0.0"]])
    out = tmp_path / "x.h5"
    xraycache.build(src, out, labels=src / "t.csv", label_cols="A,B", annotator_col="who", size=16)
    with xraycache.open(out) as cache:
        names, who, codes = cache["all"].annotator_labels()  # type: ignore[misc]
        assert cache["all"].labels.tolist() == [[1, 0]]
    assert names == ("r1", "r2") and who.tolist() == [[0, 1]] and codes.tolist() == [[[1, -2], [-1, 0]]]


def _annotators_by_path(path: Path) -> dict[str, tuple[list[int], list[list[int]]]]:
    with xraycache.open(path) as cache:
        split = cache["all"]
        _, who, codes = split.annotator_labels()  # type: ignore[misc]
        return {p: (w.tolist(), c.tolist()) for p, w, c in zip(split.meta["path"], who, codes, strict=True)}


def test_annotators_survive_sharding_and_an_incremental_rebuild(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rows = []
    for i in range(6):
        write_image(src / f"im{i}.png", radiograph(20, 20, i), fmt="PNG")
        rows += [[f"im{i}.png", who, "1" if (i + k) % 2 else "0", "-1" if i == k else ""] for k, who in enumerate("pq")]
    _write_csv(src / "t.csv", ["path", "who", "A", "B"], rows)
    options = {"labels": src / "t.csv", "label_cols": "A,B", "annotator_col": "who", "size": 16}
    plain, sharded = tmp_path / "one.h5", tmp_path / "sharded.h5"
    xraycache.build(src, plain, **options)  # type: ignore[arg-type]
    xraycache.build(src, sharded, shards=2, **options)  # type: ignore[arg-type]
    before = _annotators_by_path(plain)
    write_image(src / "im3.png", radiograph(22, 20, 9), fmt="PNG")  # one image changed: the others are copied
    report = xraycache.build(src, plain, **options)  # type: ignore[arg-type]
    assert report.mode == "incremental" and _annotators_by_path(plain) == before == _annotators_by_path(sharded)
    assert before["im0.png"] == ([0, 1], [[0, -1], [1, -2]]) and before["im1.png"] == ([0, 1], [[1, -2], [0, -1]])


def test_the_documented_mimic_command_with_coded_labels_and_show_stats(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xraycache.cli import app

    release = mimic(tmp_path)
    out = tmp_path / "m.h5"
    args = ["build", str(release), str(out), "--size", "16", "-j", "1", "--label-cols", "Atelectasis..Support Devices"]
    for key, value in mimic_options(release).items():
        for one in value if isinstance(value, list) else [value]:
            args += [f"--{key.replace('_', '-')}", str(one)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with xraycache.open(out) as cache:
        assert cache.attrs["label_kind"] == "coded" and list(cache.label_names) == MIMIC_LABELS
    shown = CliRunner().invoke(app, ["show", "stats", str(out)]).output
    assert "coded labels" in shown and "uncertain" in shown


def test_exports_of_a_coded_cache(coded_cache: Path, tmp_path: Path) -> None:
    from xraycache.read.export import export_medmnist, label_texts

    with xraycache.open(coded_cache) as cache:
        assert label_texts(cache["all"]) == ["A", "", "No Finding"]  # the positives, never -1 or -2 taken as yes
        with pytest.raises(InputError, match="coded labels"):
            export_medmnist(cache, tmp_path / "x.npz")


def test_more_coded_columns_than_a_cache_holds_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xraycache.builder import prepare

    monkeypatch.setattr(prepare, "MAX_LABELS", 2)
    src, table = _one_column(tmp_path, ["1", "0"], {"B": ["", ""], "C": ["1", "1"]})
    with pytest.raises(OptionError, match="3 distinct labels") as caught:
        xraycache.build(src, tmp_path / "x.h5", labels=table, label_cols="A..C", size=16)
    assert "\n" not in str(caught.value) and re.search("label.cols right", str(caught.value))
