"""The optional PyTorch adapter in a real DataLoader with worker processes (skipped without torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xraycache

torch = pytest.importorskip("torch")

from xraycache.torch import XrayDataset  # noqa: E402


def _double(x: object) -> object:
    return x * 2  # type: ignore[operator]


def _name(label: int) -> str:
    return ("normal", "pneumonia")[label]


def test_dataset_items(reader_cache: Path) -> None:
    dataset = XrayDataset(reader_cache, "train")
    x, y = xraycache.open(reader_cache)["train"].load()
    assert len(dataset) == 40 and dataset.label_names == ("normal", "pneumonia")
    image, label = dataset[3]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32 and label.dtype == torch.int64
    np.testing.assert_allclose(image[0].numpy(), x[3] / 255.0, atol=1e-6)
    assert int(label) == int(y[3])
    raw = XrayDataset(reader_cache, "train", raw=True, transform=_double, target_transform=_name)
    pixels, name = raw[3]
    assert name == ("normal", "pneumonia")[int(y[3])]
    np.testing.assert_array_equal(pixels, x[3] * 2)
    assert dataset.class_weights().shape == (40,)


def test_dataloader_with_two_workers(reader_cache: Path) -> None:
    dataset = XrayDataset(reader_cache, "train")
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=False, num_workers=2)
    images, labels = zip(*loader, strict=True)
    x, y = xraycache.open(reader_cache)["train"].load()
    np.testing.assert_allclose(torch.cat(images)[:, 0].numpy(), x / 255.0, atol=1e-6)
    np.testing.assert_array_equal(torch.cat(labels).numpy(), y)


def test_wrong_split_fails_in_the_parent(reader_cache: Path) -> None:
    with pytest.raises(xraycache.InputError, match="no split"):
        XrayDataset(reader_cache, "nope")
