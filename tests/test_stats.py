"""Statistics read from the stored histograms and meta, checked against NumPy on the loaded arrays."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import xraycache
from xraycache.read.stats import split_hist, summarize


def test_stored_histograms_match_the_pixels(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        for name in cache.splits:
            x, y = cache[name].load(channels=None, label_dtype=None)
            hist = split_hist(cache[name])
            for label in range(len(cache.label_names)):
                expected = np.bincount(x[y == label].reshape(-1), minlength=256)
                np.testing.assert_array_equal(hist[label], expected)


def test_summary_matches_numpy(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        stats = summarize(cache)
        assert [s.split for s in stats.splits] == ["train", "val", "test"]
        assert stats.image_shape == [32, 32] and stats.label_names == ["normal", "pneumonia"]
        assert len(stats.skipped) == 1 and stats.skipped[0]["reason"]
        for s in stats.splits:
            split = cache[s.split]
            x, y = split.load(channels=None, label_dtype=None)
            width, height = split.meta["width"], split.meta["height"]
            assert s.count == len(y) == s.total.count
            groups = [(s.total, np.ones_like(y, dtype=bool)), *((g, y == i) for i, g in enumerate(s.classes))]
            for group, mask in groups:
                pixels = x[mask].astype(np.float64)
                assert group.count == int(mask.sum())
                assert group.share == pytest.approx(mask.sum() / len(y))
                assert group.pixel_min == pixels.min() and group.pixel_max == pixels.max()
                assert group.pixel_mean == pytest.approx(pixels.mean(), abs=1e-3)
                assert group.pixel_std == pytest.approx(pixels.std(), abs=1e-3)
                assert (group.width_min, group.width_max) == (width[mask].min(), width[mask].max())
                assert (group.height_min, group.height_max) == (height[mask].min(), height[mask].max())
            counts = np.bincount(y, minlength=2)
            assert s.imbalance == pytest.approx(counts.max() / counts[counts > 0].min(), abs=1e-3)
        train = stats.splits[0]
        assert [g.count for g in train.classes] == [10, 30] and train.imbalance == pytest.approx(3.0)


def test_summary_is_json_ready(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        data = json.loads(json.dumps(summarize(cache).to_dict()))
    assert data["splits"][0]["classes"][0]["label"] == "normal"
