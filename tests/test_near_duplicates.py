"""Near-duplicates: the descriptor, the two-stage search, and what build, show, info, verify and
``xraycache duplicates`` do with them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

import xraycache
from xraycache.analysis import near_duplicates as nd
from xraycache.cli import app
from xraycache.core.pixels import pixel_descriptor
from xraycache.core.schema import DESCRIPTOR_SIDE

runner = CliRunner()


def chest(seed: int, size: int = 384) -> np.ndarray:
    """A radiograph-like image whose structures (lungs, ribs, blobs) are placed at random by ``seed``, so
    two seeds give different pictures of the same kind, as two patients' radiographs are."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 40 + 100 * np.exp(-(((xx - 0.5) / rng.uniform(0.3, 0.45)) ** 2 + ((yy - 0.55) / 0.5) ** 2))
    for side in (-1, 1):  # two lung fields, darker
        cx, cy = 0.5 + side * rng.uniform(0.15, 0.25), rng.uniform(0.4, 0.6)
        img -= 50 * np.exp(-(((xx - cx) / rng.uniform(0.08, 0.15)) ** 2 + ((yy - cy) / rng.uniform(0.15, 0.3)) ** 2))
    img += 15 * np.sin(yy * rng.uniform(25, 45) + rng.uniform(0, 6)) * (np.abs(xx - 0.5) > 0.05)
    for _ in range(12):  # random bright and dark structures
        cx, cy, r = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), rng.uniform(0.04, 0.15)
        img += rng.uniform(-60, 60) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)
    grain = Image.fromarray(rng.normal(0, 1, (48, 48)).astype(np.float32), mode="F")
    img += 12 * np.asarray(grain.resize((size, size), Image.Resampling.BICUBIC))  # detail of its own
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


def altered(pixels: np.ndarray, kind: str) -> Image.Image:
    """One of the changes a copy of a radiograph carries when it is exported again."""
    image = Image.fromarray(pixels)
    w, h = image.size
    if kind == "jpeg60":
        return jpeg(image, 60)
    if kind == "half":
        return image.resize((w // 2, h // 2), Image.Resampling.BILINEAR)
    if kind == "bigger":
        return image.resize((w * 3 // 2, h * 3 // 2), Image.Resampling.BICUBIC)
    if kind in ("bright+", "bright-"):
        return ImageEnhance.Brightness(image).enhance(1.1 if kind == "bright+" else 0.9)
    if kind in ("contrast+", "contrast-"):
        return ImageEnhance.Contrast(image).enhance(1.1 if kind == "contrast+" else 0.9)
    if kind == "crop5":
        return image.crop((w // 20, h // 20, w - w // 20, h - h // 20))
    if kind == "crop5left":
        return image.crop((w // 20, 0, w, h))
    if kind == "shift":
        return image.transform(image.size, Image.Transform.AFFINE, (1, 0, w // 40, 0, 1, -h // 40), fillcolor=0)
    raise ValueError(kind)


KINDS = ("jpeg60", "half", "bigger", "bright+", "bright-", "contrast+", "contrast-", "crop5", "crop5left", "shift")


def stored(image: Image.Image, size: int = 256) -> np.ndarray:
    """What a build stores (stretched to the square), near enough for the descriptor."""
    return np.asarray(image.convert("L").resize((size, size), Image.Resampling.BOX))


def test_descriptor_is_an_exact_block_mean_and_handles_any_side() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    expected = np.floor(pixels.reshape(32, 8, 32, 8).mean(axis=(1, 3)) + 0.5).astype(np.uint8)
    assert np.array_equal(pixel_descriptor(pixels), expected)
    for side in (20, 100, 250):  # not multiples of 32, smaller than 32 too
        flat = np.full((side, side), 77, dtype=np.uint8)
        assert pixel_descriptor(flat).shape == (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE)
        assert (pixel_descriptor(flat) == 77).all()
    deep = np.full((64, 64), 65535, dtype=np.uint16)
    assert (pixel_descriptor(deep) == 255).all()


def source(images: np.ndarray | list[np.ndarray]) -> nd.PixelSource:
    """A pixel source over stored images held in memory."""
    stack = np.asarray(images)
    return lambda rows: stack[rows]


@pytest.mark.parametrize("kind", KINDS)
def test_each_alteration_passes_the_screen_and_the_check(kind: str) -> None:
    screens, checks = [], []
    for seed in range(4):
        original = chest(seed)
        first, second = stored(Image.fromarray(original)), stored(altered(original, kind))
        a, b = pixel_descriptor(first)[None], pixel_descriptor(second)[None]
        screens.append(float(nd.pair_scores(a, b)[0]))
        assert nd.pair_scores(b, a)[0] == pytest.approx(screens[-1], abs=1e-6)  # symmetric
        checks.append(float(nd.verified_scores(first[None], second[None])[0]))
        assert nd.verified_scores(second[None], first[None])[0] == pytest.approx(checks[-1], abs=1e-5)
    assert min(screens) >= nd.SCREEN, (kind, screens)
    assert min(checks) >= nd.THRESHOLD, (kind, checks)


def test_different_images_score_below_the_threshold() -> None:
    pictures = np.stack([stored(Image.fromarray(chest(seed))) for seed in range(30)])
    a, b = np.triu_indices(len(pictures), k=1)
    scores = nd.verified_scores(pictures[a], pictures[b])
    assert scores.max() < nd.THRESHOLD
    assert nd.verified_scores(pictures[:1], pictures[:1])[0] == pytest.approx(1.0, abs=1e-5)


def test_a_pair_the_screen_passes_is_not_paired_unless_its_pixels_agree() -> None:
    """Two pictures whose 32 px descriptors are equal but whose fine structure differs: the descriptors
    alone would pair them; the check on the pixels does not."""
    rng = np.random.default_rng(5)
    base = 50 + 0.6 * stored(Image.fromarray(chest(7)))  # no clipping of the texture below
    texture = rng.normal(0, 15, (64, 64))  # detail at the check's 64 px, none at the descriptors' 32 px
    texture -= texture.reshape(32, 2, 32, 2).mean(axis=(1, 3)).repeat(2, 0).repeat(2, 1)
    texture = texture.repeat(4, 0).repeat(4, 1)
    first = np.clip(base.astype(float) + texture, 0, 255).astype(np.uint8)
    second = np.clip(base.astype(float) - texture, 0, 255).astype(np.uint8)
    assert np.abs(pixel_descriptor(first).astype(int) - pixel_descriptor(second)).max() <= 2
    assert nd.pair_scores(pixel_descriptor(first)[None], pixel_descriptor(second)[None])[0] >= nd.SCREEN
    pairs = nd.find_pairs(np.stack([pixel_descriptor(first), pixel_descriptor(second)]), pixels=source([first, second]))
    assert len(pairs) == 0 and pairs.verified == 1 and pairs.images_read == 2


@pytest.mark.slow
def test_candidate_search_finds_every_planted_copy_among_many() -> None:
    """Over ALL_PAIRS_UP_TO images the first stage picks the pairs to verify: it must not lose copies."""
    n = nd.ALL_PAIRS_UP_TO + 100
    rng = np.random.default_rng(1)
    originals = [chest(seed, size=256) for seed in range(n)]
    images = [stored(Image.fromarray(p)) for p in originals]
    planted = rng.choice(n, size=20, replace=False)
    for i, index in enumerate(planted):
        images.append(stored(altered(originals[index], KINDS[i % len(KINDS)])))
    pairs = nd.find_pairs(np.stack([pixel_descriptor(i) for i in images]), pixels=source(images))
    assert pairs.candidates < n * nd.CANDIDATES  # a candidate search ran, not every pair
    assert pairs.images_read < len(images) // 2  # only the pixels of screened pairs were read
    found = set(zip(pairs.a.tolist(), pairs.b.tolist(), strict=True))
    expected = {(int(index), n + i) for i, index in enumerate(planted)}
    assert found == expected  # and nothing else: the originals are all different
    assert (pairs.score >= nd.THRESHOLD).all()


def test_groups_join_chains_and_keep_singles_out() -> None:
    pairs = nd.Pairs(np.array([0, 1, 5]), np.array([1, 2, 6]), np.ones(3, np.float32), 3, 8)
    assert nd.groups(8, pairs) == [[0, 1, 2], [5, 6]]


# -- through the build ----------------------------------------------------------------------------


def write(path: Path, image: Image.Image | np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    picture.convert("L").save(path, "JPEG", quality=92)


@pytest.fixture
def leaky(tmp_path: Path) -> Path:
    """Kaggle folders with a cropped, brightened copy of a training image in test, under a new patient."""
    src = tmp_path / "src"
    for i in range(6):
        write(src / "train" / "NORMAL" / f"IM-{i:04d}-0001.jpeg", chest(100 + i))
        write(src / "train" / "PNEUMONIA" / f"person{i}_bacteria_{i}.jpeg", chest(200 + i))
    write(src / "test" / "NORMAL" / "IM-0900-0001.jpeg", chest(300))
    copy = ImageEnhance.Brightness(altered(chest(102), "crop5")).enhance(1.08)
    write(src / "test" / "NORMAL" / "IM-0901-0001.jpeg", copy)
    return src


def test_show_stats_info_verify_and_duplicates_report_the_copy(leaky: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    assert runner.invoke(app, ["build", str(leaky), str(out), "--size", "64", "-q"]).exit_code == 0
    with xraycache.open(out) as cache:
        assert cache["train"].descriptors.shape == (12, 32, 32)
        report = cache.leakage()
    assert [(d.a, d.b) for d in report.near_duplicates] == [
        (("train", "train/NORMAL/IM-0002-0001.jpeg"), ("test", "test/NORMAL/IM-0901-0001.jpeg"))
    ]
    result = runner.invoke(app, ["show", "stats", str(out), "--json"])
    listed = json.loads(result.stdout)["leakage"]["near_duplicates"]
    assert listed == [
        {
            "a": {"split": "train", "path": "train/NORMAL/IM-0002-0001.jpeg"},
            "b": {"split": "test", "path": "test/NORMAL/IM-0901-0001.jpeg"},
            "score": listed[0]["score"],
        }
    ]
    assert nd.THRESHOLD <= listed[0]["score"] <= 1
    assert "near-duplicates: 1 pair(s) across splits" in runner.invoke(app, ["show", "stats", str(out)]).stdout
    assert "near-duplicates: 1 pair(s) across splits" in runner.invoke(app, ["info", str(out)]).stdout
    verified = runner.invoke(app, ["verify", str(out)])
    assert verified.exit_code == 0 and "near-duplicates: 1 pair(s) across splits" in verified.stdout
    groups = json.loads(runner.invoke(app, ["duplicates", str(out), "--json"]).stdout)["near_duplicate_groups"]
    assert groups == [
        [
            {"split": "test", "path": "test/NORMAL/IM-0901-0001.jpeg"},
            {"split": "train", "path": "train/NORMAL/IM-0002-0001.jpeg"},
        ]
    ] or groups == [
        [
            {"split": "train", "path": "train/NORMAL/IM-0002-0001.jpeg"},
            {"split": "test", "path": "test/NORMAL/IM-0901-0001.jpeg"},
        ]
    ]
    text = runner.invoke(app, ["duplicates", str(out)]).stdout
    assert "1 group(s) of near-duplicates" in text and "IM-0901-0001.jpeg" in text


def test_drop_duplicates_keeps_the_first_in_path_order(leaky: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.h5"
    result = runner.invoke(app, ["build", str(leaky), str(out), "--size", "64", "--drop-duplicates", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dropped_duplicates"] == 1 and data["images"] == 13
    [row] = data["skipped"]
    assert row["path"] == "train/NORMAL/IM-0002-0001.jpeg"  # "test/..." comes first in path order
    assert "near-duplicate of test/NORMAL/IM-0901-0001.jpeg (test; verified score " in row["reason"]
    assert float(row["reason"].split("verified score ")[1][:5]) >= nd.THRESHOLD
    with xraycache.open(out) as cache:
        assert cache.skipped[0].path == row["path"]
        assert len(cache["train"]) == 11 and "train/NORMAL/IM-0002-0001.jpeg" not in cache["train"].meta["path"]
        assert cache["train"].counts().tolist() == [5, 6]
        assert cache["train"].stored_hist().sum() == 11 * 64 * 64
        assert cache.leakage().near_duplicates == []
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0


def test_resplit_keeps_a_near_duplicate_group_in_one_split(leaky: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    args = ["build", str(leaky), str(out), "--size", "64", "--resplit", "0.5,0.5", "--json"]
    for seed in range(8):  # a seed where hashing alone puts the two patients apart
        result = runner.invoke(app, [*args, "--seed", str(seed), "--overwrite"])
        assert result.exit_code == 0, result.output
        if json.loads(result.stdout)["moved_duplicates"]:
            break
    else:
        pytest.fail("no seed split the copy from its original")
    with xraycache.open(out) as cache:
        assert cache.leakage().near_duplicates_across == []
        assert len(cache.leakage().near_duplicates) == 1
        assert sum(len(cache[s]) for s in cache.splits) == 14
        for name in cache.splits:  # the statistics are those of the rows each split holds after the move
            split = cache[name]
            assert split.counts().tolist() == np.bincount(split.labels, minlength=2).tolist()
            assert split.stored_hist().sum() == len(split) * 64 * 64
            assert (split.descriptors == np.stack([pixel_descriptor(i) for i in split.images[:]])).all()
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    again = runner.invoke(app, [*args, "--seed", str(seed)])
    assert json.loads(again.stdout)["mode"] == "unchanged"  # a moved image is reused where it is


def test_a_cache_without_descriptors_says_to_rebuild(leaky: Path, tmp_path: Path) -> None:
    out = tmp_path / "old.h5"
    assert runner.invoke(app, ["build", str(leaky), str(out), "--size", "64", "-q"]).exit_code == 0
    with h5py.File(out, "r+") as file:  # what a format-1 cache looks like
        file.attrs["format_version"] = 1
        for split in ("train", "test"):
            del file[split]["descriptors"]
    with xraycache.open(out) as cache:
        assert "--overwrite" in cache.leakage().near_duplicates_unavailable
    result = runner.invoke(app, ["duplicates", str(out)])
    assert result.exit_code == 2 and "rebuild it with --overwrite" in result.stdout
    assert "near-duplicates: not searched" in runner.invoke(app, ["show", "stats", str(out)]).stdout
    rebuild = runner.invoke(app, ["build", str(leaky), str(out), "--size", "64"])
    assert rebuild.exit_code == 2 and "cache format 1, older" in rebuild.output and "--overwrite" in rebuild.output


def test_verify_finds_a_descriptor_that_does_not_match_its_pixels(leaky: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    assert runner.invoke(app, ["build", str(leaky), str(out), "--size", "64", "-q"]).exit_code == 0
    with h5py.File(out, "r+") as file:
        file["train/descriptors"][3] = 255 - file["train/descriptors"][3]
    result = runner.invoke(app, ["verify", str(out), "--json"])
    assert result.exit_code == 1
    assert [p["kind"] for p in json.loads(result.stdout)["problems"]] == ["descriptor"]


def test_a_descriptor_dataset_of_the_wrong_shape_is_refused(leaky: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.h5"
    assert runner.invoke(app, ["build", str(leaky), str(out), "--size", "64", "-q"]).exit_code == 0
    with h5py.File(out, "r+") as file:
        del file["train/descriptors"]
        file["train"].create_dataset("descriptors", data=np.zeros((12, 4, 4), np.uint8))
    result = runner.invoke(app, ["duplicates", str(out)])
    assert result.exit_code != 0 and "descriptors" in result.output and "Traceback" not in result.output


def test_the_report_page_lists_the_pair(leaky: Path, tmp_path: Path) -> None:
    out, page = tmp_path / "c.h5", tmp_path / "r.html"
    assert runner.invoke(app, ["build", str(leaky), str(out), "--size", "64", "-q"]).exit_code == 0
    assert runner.invoke(app, ["show", "report", str(out), "--out", str(page)]).exit_code == 0
    html = page.read_text()
    assert "<h3>near duplicates: 1</h3>" in html
    assert "leakage found across splits: 1 near-duplicate pair(s) (" in html
    assert "<th>image</th><th>looks like</th><th>score</th>" in html
    assert "train/NORMAL/IM-0002-0001.jpeg (train)" in html and "test/NORMAL/IM-0901-0001.jpeg (test)" in html


def test_folds_keep_a_near_duplicate_group_in_one_fold(leaky: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    copy, original = "test/NORMAL/IM-0901-0001.jpeg", "train/NORMAL/IM-0002-0001.jpeg"
    seen_apart = False
    for seed in range(12):
        args = ["build", str(leaky), str(out), "--size", "64", "--folds", "3", "--seed", str(seed), "--overwrite", "-q"]
        assert runner.invoke(app, args).exit_code == 0
        with xraycache.open(out) as cache:
            fold = {}
            for split in cache.splits:
                for path, value in zip(cache[split].meta["path"], cache[split].meta["fold"], strict=True):
                    fold[str(path)] = int(value)
            assert fold[copy] == fold[original], seed
            assert sorted(cache.splits) == ["test", "train"] and len(cache["test"]) == 2  # splits stay the folders'
        from xraycache.builder.splits import assign_fold

        seen_apart |= assign_fold("patient:IM-0901", 3, seed) != assign_fold("patient:IM-0002", 3, seed)
    assert seen_apart  # some seed hashed the two patients into different folds, and they were joined


@pytest.mark.parametrize("n", [5, nd.ALL_PAIRS_UP_TO + 50])
def test_identical_pictures_are_one_group_and_blank_ones_none(n: int) -> None:
    """Nothing to project in a set of one picture: equal descriptors still make one group (a star of pairs
    where the candidates find none). Blank images are nobody's near-duplicate: one blank image per patient
    would otherwise join every patient into one unit for --resplit."""
    pixels = stored(Image.fromarray(chest(3, 256)))
    picture = pixel_descriptor(pixels)
    same = nd.find_pairs(np.repeat(picture[None], n, 0), pixels=source(np.repeat(pixels[None], n, 0)))
    assert (same.score >= 1 - 1e-5).all() and nd.groups(n, same) == [list(range(n))]
    blank = np.zeros((n, 256, 256), np.uint8)
    blank[::2] += 1  # one gray level apart: still blank
    flat = np.stack([pixel_descriptor(i) for i in blank])
    assert len(nd.find_pairs(flat, pixels=source(blank))) == 0
    mixed = np.concatenate([blank, pixels[None], pixels[None]])
    pairs = nd.find_pairs(np.stack([pixel_descriptor(i) for i in mixed]), pixels=source(mixed))
    assert [(int(a), int(b)) for a, b in zip(pairs.a, pairs.b, strict=True)] == [(n, n + 1)]


def test_a_damaged_hash_column_is_no_traceback(leaky: Path, tmp_path: Path) -> None:
    """Found by the fuzzer: a non-ASCII byte in meta/file_hash crashed the leakage report of verify and show."""
    out = tmp_path / "h.h5"
    assert runner.invoke(app, ["build", str(leaky), str(out), "--size", "64", "-q"]).exit_code == 0
    with h5py.File(out, "r+") as file:
        file["test/meta/file_hash"][0] = b"\xb2" + bytes(file["test/meta/file_hash"][0])[1:]
    result = runner.invoke(app, ["verify", str(out)])
    assert result.exit_code == 0 and "near-duplicates: 1 pair(s) across splits" in result.stdout
    for command in (["show", "stats", str(out)], ["info", str(out)]):  # the readers name the damaged column
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "file_hash cannot be read" in result.output, command
        assert "Traceback" not in result.output


def test_drop_duplicates_drops_only_copies_of_a_kept_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain A~B, B~C with A not~C: B goes (it copies A), C stays (what it copies, B, is gone), and each
    dropped image names the kept one it copies and their own score, not a score of the chain."""
    from xraycache.builder import regroup as rg

    pairs = nd.Pairs(np.array([0, 1, 3]), np.array([1, 2, 4]), np.array([0.97, 0.95, 0.99], np.float32), 3, 5)
    monkeypatch.setattr(rg, "find_pairs", lambda descriptors, pixels: pairs)
    rows = rg.Rows(
        paths=[f"train/N/{name}.jpeg" for name in "abcde"],
        patients=["p1", "p2", "p3", "p4", "p5"],
        descriptors=np.zeros((5, 32, 32), np.uint8),
        folds=np.full(5, -1, np.int16),
        pixels=lambda rows: np.zeros((len(rows), 8, 8), np.uint8),
    )
    layout = rg.regroup({"train": rows}, drop=True, resplit=False)
    assert layout is not None
    assert [(s.path, s.reason) for s in layout.dropped] == [
        ("train/N/b.jpeg", "near-duplicate of train/N/a.jpeg (train; verified score 0.970): --drop-duplicates"),
        ("train/N/e.jpeg", "near-duplicate of train/N/d.jpeg (train; verified score 0.990): --drop-duplicates"),
    ]
    assert layout.rows["train"] == [("train", 0), ("train", 2), ("train", 3)]


def test_the_leakage_line_says_leakage_only_across_splits() -> None:
    from xraycache.analysis.leakage import DuplicateGroup, LeakageReport, NearDuplicate
    from xraycache.read.report_text import leakage_summary

    within = LeakageReport(4, 4, 0, near_duplicates=[NearDuplicate(("train", "a"), ("train", "b"), 0.97)])
    line = leakage_summary(within)
    assert line.startswith("no leakage across splits; within a split (not leakage): 1 near-duplicate pair(s) (")
    assert not within.leaks and not within.clean
    across = LeakageReport(
        4,
        4,
        0,
        duplicates=[DuplicateGroup("x", [("train", "a"), ("test", "c")], True)],
        near_duplicates=[NearDuplicate(("train", "a"), ("test", "b"), 0.97)],
    )
    assert leakage_summary(across).startswith(
        "leakage found across splits: 1 identical-file group(s), 1 near-duplicate pair(s) ("
    )
    assert across.leaks
    assert leakage_summary(LeakageReport(4, 4, 0)).startswith("no leakage across splits (")


def test_images_too_small_to_verify_pair_only_when_identical() -> None:
    """At 8 px the fine structure the check compares is gone: different pictures must not pair there (they
    scored up to 0.975), while identical ones still do, without a pixel check."""
    pictures = [stored(Image.fromarray(chest(seed)), size=8) for seed in range(40)]
    pictures.append(pictures[3].copy())
    descriptors = np.stack([pixel_descriptor(p) for p in pictures])
    pairs = nd.find_pairs(descriptors, pixels=source(pictures))
    assert list(zip(pairs.a.tolist(), pairs.b.tolist(), strict=True)) == [(3, 40)]


def test_a_reader_bounds_the_pairs_it_verifies() -> None:
    pictures = [stored(Image.fromarray(chest(seed))) for seed in range(6)]
    copies = [np.asarray(altered(p, "jpeg60")) for p in pictures]
    descriptors = np.stack([pixel_descriptor(p) for p in pictures + copies])
    with pytest.raises(nd.TooManyPairs, match="more than the 2 this command checks"):
        nd.find_pairs(descriptors, pixels=source(pictures + copies), max_checked=2)
    assert len(nd.find_pairs(descriptors, pixels=source(pictures + copies), max_checked=100)) >= 6
