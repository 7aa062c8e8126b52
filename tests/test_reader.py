"""The reading API: open/Cache/Split, images/labels/meta, load(), batches(), pickling, errors."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

import xraycache
from xraycache import InputError, NotACacheError


def test_cache_and_split_api(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        assert cache.splits == ("train", "val", "test")
        assert "train" in cache and "nope" not in cache
        assert cache.label_names == ("normal", "pneumonia")
        assert cache.attrs["format"] == "xraycache"
        assert cache.settings["size"] == 32
        split = cache["train"]
        assert isinstance(split, xraycache.Split)
        assert len(split) == 40 and split.shape == (40, 32, 32)
        assert split.label_names == ("normal", "pneumonia")
        assert split.counts().tolist() == [10, 30]
        assert cache.skipped == [("train/NORMAL/IM-9999-0001.jpeg", "train", "not a JPEG or PNG image")]


def test_load_round_trips_what_the_build_wrote(reader_cache: Path, reader_cache_gzip: Path) -> None:
    with h5py.File(reader_cache, "r") as f:
        expected_x, expected_y = f["train/images"][:], f["train/labels"][:]
    for path in (reader_cache, reader_cache_gzip):
        with xraycache.open(path) as cache:
            x, y = cache["train"].load(channels=None, label_dtype=None)
        assert x.dtype == np.uint8 and x.shape == (40, 32, 32)
        np.testing.assert_array_equal(x, expected_x)
        np.testing.assert_array_equal(y, expected_y)


@pytest.mark.parametrize("which", ["none", "gzip"])
def test_images_indexing_matches_numpy(reader_cache: Path, reader_cache_gzip: Path, which: str) -> None:
    path = reader_cache if which == "none" else reader_cache_gzip
    with xraycache.open(path) as cache:
        split = cache["train"]
        x, _ = split.load(channels=None, label_dtype=None)
        images = split.images
        assert images.shape == x.shape and len(images) == 40 and images.dtype == np.uint8
        np.testing.assert_array_equal(images[3], x[3])
        np.testing.assert_array_equal(images[-1], x[-1])
        np.testing.assert_array_equal(images[10:20], x[10:20])
        np.testing.assert_array_equal(images[::7], x[::7])
        np.testing.assert_array_equal(images[[1, 5, 9]], x[[1, 5, 9]])
        np.testing.assert_array_equal(images[[9, 1, 1, -2]], x[[9, 1, 1, -2]])  # unsorted, repeated, negative
        mask = split.labels == 0
        np.testing.assert_array_equal(images[mask], x[mask])
        np.testing.assert_array_equal(images[2, 4:8, :3], x[2, 4:8, :3])
        np.testing.assert_array_equal(np.asarray(images), x)


def test_meta_columns_are_numpy_with_str(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        meta = cache["train"].meta
        for column in (
            "path",
            "patient",
            "width",
            "height",
            "mode",
            "file_size",
            "file_hash",
            "min",
            "max",
            "mean",
            "std",
        ):
            assert column in meta and len(meta[column]) == 40
        assert meta["path"].dtype.kind == "U" and meta["file_hash"].dtype.kind == "U"
        assert meta["path"][0].startswith("train/")
        assert all(len(h) == 64 for h in meta["file_hash"])
        row = meta.row(0)
        assert isinstance(row["path"], str) and isinstance(row["width"], int)
        x, _ = cache["train"].load(channels=None, label_dtype=None)
        np.testing.assert_array_equal(meta["min"], x.min(axis=(1, 2)))
        np.testing.assert_array_equal(meta["max"], x.max(axis=(1, 2)))
        np.testing.assert_allclose(meta["mean"], x.mean(axis=(1, 2)), rtol=1e-5)
        np.testing.assert_allclose(meta["std"], x.std(axis=(1, 2)), rtol=1e-4)
        assert cache.locate("train/NORMAL/IM-0003-0001.jpeg") == (
            "train",
            int(np.flatnonzero(meta["path"] == "train/NORMAL/IM-0003-0001.jpeg")[0]),
        )
        assert cache.locate("IM-0003-0001.jpeg")[0] == "train"


def _all(split: xraycache.Split, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*split.batches(**kwargs), strict=True)  # type: ignore[arg-type]
    return np.concatenate(xs), np.concatenate(ys)


def test_batches_cover_the_split_once_and_match_images(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        split = cache["train"]
        x, y = split.load(channels=None, label_dtype=None)
        batches = list(split.batches(16, seed=3))
        assert [len(b[0]) for b in batches] == [16, 16, 8]  # the short last batch is kept
        assert [len(b[0]) for b in split.batches(16, drop_last=True)] == [16, 16]
        order = split.order(seed=3)
        assert sorted(order.tolist()) == list(range(40))
        xb, yb = _all(split, batch_size=16, seed=3)
        assert xb.shape == (40, 1, 32, 32) and xb.dtype == np.uint8 and yb.dtype == np.int64  # as the adapter
        np.testing.assert_array_equal(xb[:, 0], x[order])
        np.testing.assert_array_equal(yb, y[order])
        xs, ys = _all(split, batch_size=16, shuffle=False, channels=None, label_dtype="int16")
        assert xs.shape == (40, 32, 32) and ys.dtype == np.int16  # as stored
        np.testing.assert_array_equal(xs, x)


def test_batches_are_deterministic_per_seed_and_epoch(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        split = cache["train"]
        a = _all(split, batch_size=8, seed=1, epoch=0)[0]
        b = _all(split, batch_size=8, seed=1, epoch=0)[0]
        c = _all(split, batch_size=8, seed=1, epoch=1)[0]
        d = _all(split, batch_size=8, seed=2, epoch=0)[0]
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_batches_float32_scales_to_unit_range(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        split = cache["train"]
        x, _ = split.load(channels=None, label_dtype=None)
        xb, _ = next(split.batches(40, shuffle=False, dtype="float32"))
        assert xb.dtype == np.float32 and xb.min() >= 0.0 and xb.max() <= 1.0
        np.testing.assert_allclose(xb[:, 0], x.astype(np.float32) / 255, atol=1e-6)


@pytest.mark.parametrize("which", ["none", "gzip"])
def test_balanced_batches_equalise_classes(reader_cache: Path, reader_cache_gzip: Path, which: str) -> None:
    path = reader_cache if which == "none" else reader_cache_gzip
    with xraycache.open(path) as cache:
        split = cache["train"]  # 10 normal, 30 pneumonia
        seen = np.concatenate([_all(split, batch_size=16, seed=0, epoch=e, balanced=True)[1] for e in range(25)])
        assert len(seen) == 25 * 40  # len(split) images per epoch
        share = np.bincount(seen, minlength=2) / len(seen)
        assert abs(share[0] - 0.5) < 0.06  # vs 0.25 without balancing
        x, y = split.load(channels=None, label_dtype=None)
        xb, yb = _all(split, batch_size=16, seed=0, balanced=True)
        order = split.order(seed=0, balanced=True)
        np.testing.assert_array_equal(xb[:, 0], x[order])
        np.testing.assert_array_equal(yb, y[order])


def _read_in_child(split: xraycache.Split) -> tuple[int, np.ndarray, np.ndarray]:
    return len(split), split.images[[0, 5]], split.labels.copy()


def test_split_pickles_as_path_and_name_and_reads_in_another_process(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        split = cache["train"]
        x, y = split.load(channels=None, label_dtype=None)
        blob = pickle.dumps(split)
        assert b"h5py" not in blob and len(blob) < 500
        copy = pickle.loads(blob)
        np.testing.assert_array_equal(copy.images[[0, 5]], x[[0, 5]])
        for method in ("spawn", "fork"):
            with multiprocessing.get_context(method).Pool(1) as pool:
                n, images, labels = pool.apply(_read_in_child, (split,))
            assert n == 40
            np.testing.assert_array_equal(images, x[[0, 5]])
            np.testing.assert_array_equal(labels, y)


def test_split_keeps_working_after_the_cache_is_closed(reader_cache: Path) -> None:
    cache = xraycache.open(reader_cache)
    split = cache["val"]
    cache.close()
    assert split.images[0].shape == (32, 32)
    split.close()


def test_not_a_cache_errors(tmp_path: Path, reader_cache: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(NotACacheError, match="not an HDF5 file"):
        xraycache.open(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(NotACacheError, match="not an xraycache cache"):
        xraycache.open(other)
    with pytest.raises(InputError, match="no such file"):
        xraycache.open(tmp_path / "missing.h5")


def test_input_errors_name_the_problem_and_the_fix(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        with pytest.raises(InputError, match="no split 'validation'; available: train, val, test") as info:
            cache["validation"]
        assert "\n" not in str(info.value)
        split = cache["val"]
        with pytest.raises(InputError, match=r"index 4 is out of range .* use 0 to 3"):
            split.images[4]
        with pytest.raises(InputError, match="out of range"):
            split.images[[0, -9]]
        with pytest.raises(InputError, match=r"no label 'cat'.*normal, pneumonia"):
            split.label_index("cat")
        with pytest.raises(InputError, match="batch_size"):
            next(split.batches(0))
        with pytest.raises(InputError, match="no image from"):
            cache.locate("nowhere.jpeg")


@pytest.mark.parametrize("which", ["none", "gzip"])
def test_read_into_fills_a_given_array(reader_cache: Path, reader_cache_gzip: Path, which: str) -> None:
    with xraycache.open(reader_cache if which == "none" else reader_cache_gzip) as cache:
        split = cache["train"]
        index = [7, 3, 3, 39, -1, 0]
        out = np.zeros((len(index), 32, 32), dtype=np.uint8)
        assert split.read_into(index, out) is out
        np.testing.assert_array_equal(out, split.images[index])
        with pytest.raises(xraycache.InputError, match="out is"):
            split.read_into(index, np.zeros((2, 32, 32), dtype=np.uint8))
        with pytest.raises(xraycache.InputError, match="out of range"):
            split.read_into([40], np.zeros((1, 32, 32), dtype=np.uint8))


def test_batches_channels_labels_and_normalisation(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        split = cache["train"]
        x, _ = split.load(channels=None, label_dtype=None)
        xb, yb = next(split.batches(40, shuffle=False, dtype="float32", channels=3))
        assert xb.shape == (40, 3, 32, 32) and yb.dtype == np.int64
        np.testing.assert_array_equal(xb[:, 0], xb[:, 2])
        mean, std = split.pixel_mean_std()
        assert mean == pytest.approx(x.mean(), rel=1e-6) and std == pytest.approx(x.std(), rel=1e-5)
        zb, _ = next(split.batches(40, shuffle=False, dtype="float32", normalize="dataset"))
        assert abs(float(zb.mean())) < 1e-4 and float(zb.std()) == pytest.approx(1.0, abs=1e-4)
        vb, _ = next(cache["val"].batches(4, shuffle=False, dtype="float32", normalize="dataset"))
        np.testing.assert_allclose(
            vb[:, 0], (cache["val"].load(channels=None, label_dtype=None)[0] - mean) / std, atol=1e-5
        )  # train's statistics
        xrv, _ = next(split.batches(40, shuffle=False, dtype="float32", normalize="xrv"))
        np.testing.assert_allclose(xrv[:, 0], x / 255 * 2048 - 1024, atol=1e-3)
        for options, message in (
            ({"dtype": None, "normalize": "imagenet"}, "needs a float dtype"),
            ({"dtype": "float32", "normalize": "minmax"}, "normalize="),
            ({"channels": 2}, "channels="),
            ({"dtype": "int8"}, "without wrapping"),
            ({"label_dtype": "U3"}, "not numeric"),
        ):
            with pytest.raises(xraycache.InputError, match=message):
                next(split.batches(8, **options))  # type: ignore[arg-type]
