"""The PyTorch adapter in real DataLoaders with worker processes, on every kind of cache.

Skipped without torch, except in CI (``XRAYCACHE_REQUIRE_TORCH=1``, set by ``.ci/run``), where a missing
torch fails instead of silently skipping the adapter's tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import xraycache

if os.environ.get("XRAYCACHE_REQUIRE_TORCH") == "1":
    import torch
else:
    torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader, DistributedSampler

from xraycache.read.arrays import IMAGENET_MEAN, IMAGENET_STD
from xraycache.torch import XrayDataset, convert_batch

KINDS = ("uint8", "uint16", "multilabel", "sharded")


def _double(x: object) -> object:
    return x * 2  # type: ignore[operator]


def _name(label: int) -> str:
    return ("normal", "pneumonia")[label]


@pytest.fixture(params=KINDS)
def any_cache(request: pytest.FixtureRequest) -> Path:
    """Each kind of cache in turn: uint8, uint16 (DICOM), NIH-style multi-label, 2 shards."""
    name = {"uint8": "reader_cache", "uint16": "uint16_cache", "multilabel": "multilabel_cache"}
    return request.getfixturevalue(name.get(request.param, "sharded_cache"))


def expected(path: Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """What the adapter must give for the whole split: float32 (N, 1, H, W) in [0, 1], int64 or float32 labels."""
    with xraycache.open(path) as cache:
        x, y = cache[split].load(channels=None, label_dtype=None)
    top = np.iinfo(x.dtype).max
    labels = y.astype(np.float32) if y.ndim == 2 else y.astype(np.int64)
    return (x.astype(np.float64) / top).astype(np.float32)[:, None], labels


def collect(loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*loader, strict=True)
    return torch.cat(images).numpy(), torch.cat(labels).numpy()


def test_items_are_float_in_unit_range_with_training_labels(any_cache: Path) -> None:
    dataset = XrayDataset(any_cache, "train", dtype="float32")
    x, y = expected(any_cache)
    image, label = dataset[3]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    np.testing.assert_allclose(image.numpy(), x[3], atol=1e-6)
    if dataset.multi_label:
        assert label.dtype == torch.float32 and label.shape == (dataset.num_classes,)
        np.testing.assert_array_equal(label.numpy(), y[3])
    else:
        assert type(label) is int and label == y[3]  # an int, as torchvision's datasets give


def test_uint16_cache_reaches_one_not_257(uint16_cache: Path) -> None:
    images = torch.stack([image for image, _ in XrayDataset(uint16_cache, "train", dtype="float32")])
    with xraycache.open(uint16_cache) as cache:
        top = int(cache["train"].meta["max"].max())
    assert top > 60000 and float(images.min()) >= 0.0  # a 16-bit range, not 8 bits scaled by 257
    assert float(images.max()) == pytest.approx(top / 65535) and float(images.max()) <= 1.0
    stored = XrayDataset(uint16_cache, "train", dtype=None)
    batch, _ = next(iter(DataLoader(stored, batch_size=4, num_workers=2)))
    assert batch.dtype == torch.uint16 and batch.shape == (4, 1, 32, 32)  # as stored, to convert on the GPU:
    np.testing.assert_allclose(
        (batch.float() / 65535).numpy(), images[:4].numpy(), atol=1e-6
    )  # torch has few uint16 ops


@pytest.mark.parametrize("kind", KINDS)
def test_dataloader_two_workers_matches_load(kind: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue({"uint8": "reader_cache", "uint16": "uint16_cache"}.get(kind, f"{kind}_cache"))
    dataset = XrayDataset(path, "train", dtype="float32")
    loader = DataLoader(dataset, batch_size=5, shuffle=False, num_workers=2)
    images, labels = collect(loader)
    x, y = expected(path)
    np.testing.assert_allclose(images, x, atol=1e-6)
    np.testing.assert_array_equal(labels, y)
    assert labels.dtype == y.dtype


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_start_methods_and_persistent_workers(reader_cache: Path, method: str) -> None:
    dataset = XrayDataset(reader_cache, "train", transform=_double, dtype="float32")
    dataset[0]  # the parent has the file open before the workers start: each must open its own
    loader = DataLoader(
        dataset,
        batch_size=8,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context=method,
        generator=torch.Generator().manual_seed(0),
    )
    x, y = expected(reader_cache)
    orders = []
    for _ in range(2):  # the same workers serve a second epoch, in another order
        images, labels = collect(loader)
        rows = images.reshape(len(images), -1) / 2
        np.testing.assert_allclose(np.unique(rows, axis=0), np.unique(x.reshape(len(x), -1), axis=0), atol=1e-6)
        assert sorted(labels.tolist()) == sorted(y.tolist())
        orders.append(labels.tolist())
    assert orders[0] != orders[1]


def test_distributed_sampler_covers_the_split_once(sharded_cache: Path) -> None:
    dataset = XrayDataset(sharded_cache, "train", dtype="float32")
    x, y = expected(sharded_cache)
    seen: list[int] = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=3, drop_last=True)
        sampler.set_epoch(1)
        indices = list(sampler)
        loader = DataLoader(dataset, batch_size=3, sampler=sampler, num_workers=2)
        images, labels = collect(loader)
        np.testing.assert_allclose(images, x[indices], atol=1e-6)
        np.testing.assert_array_equal(labels, y[indices])
        seen += indices
    assert sorted(seen) == list(range(len(dataset)))


def test_channels_dtype_and_normalisation(reader_cache: Path) -> None:
    x, _ = expected(reader_cache)
    three = XrayDataset(reader_cache, "train", channels=3, normalize="imagenet", dtype="float32")[0][0].numpy()
    mean, std = np.array(IMAGENET_MEAN)[:, None, None], np.array(IMAGENET_STD)[:, None, None]
    np.testing.assert_allclose(three, (x[0] - mean) / std, atol=1e-5)
    xrv = XrayDataset(reader_cache, "val", normalize="xrv", dtype="float32")[0][0].numpy()
    np.testing.assert_allclose(xrv, expected(reader_cache, "val")[0][0] * 2048 - 1024, atol=1e-3)
    raw, _ = XrayDataset(reader_cache, "train", dtype=None)[0]
    assert raw.dtype == torch.uint8 and raw.shape == (1, 32, 32)
    with pytest.raises(xraycache.InputError, match="float dtype"):
        XrayDataset(reader_cache, "train", dtype=None, normalize="dataset")
    with pytest.raises(xraycache.InputError, match="normalize="):
        XrayDataset(reader_cache, "train", normalize="zscore", dtype="float32")
    with pytest.raises(xraycache.InputError, match="channels="):
        XrayDataset(reader_cache, "train", channels=2, dtype="float32")


@pytest.mark.parametrize("kind", ["uint8", "uint16"])
def test_dataset_normalisation_uses_the_train_statistics(kind: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue("reader_cache" if kind == "uint8" else "uint16_cache")
    train = np.concatenate(
        [image.numpy() for image, _ in XrayDataset(path, "train", normalize="dataset", dtype="float32")]
    )
    assert abs(train.mean()) < 1e-4 and train.std() == pytest.approx(1.0, abs=1e-3)
    x_train, _ = expected(path, "train")
    x_val, _ = expected(path, "val")
    val = XrayDataset(path, "val", normalize="dataset", dtype="float32")[0][0].numpy()
    mean, std = x_train.astype(np.float64).mean(), x_train.astype(np.float64).std()
    np.testing.assert_allclose(val, (x_val[0] - mean) / std, atol=1e-4)  # scaled as the model's training data
    own = XrayDataset(path, "val", normalize="dataset", stats_split="val", dtype="float32")
    assert abs(np.concatenate([image.numpy() for image, _ in own]).mean()) < 1e-4


def test_numpy_batches_match_the_adapter(any_cache: Path) -> None:
    dataset = XrayDataset(any_cache, "train", channels=3, normalize="dataset", dtype="float32")
    with xraycache.open(any_cache) as cache:
        xb, yb = next(cache["train"].batches(4, shuffle=False, dtype="float32", channels=3, normalize="dataset"))
    images, labels = next(iter(DataLoader(dataset, batch_size=4)))
    np.testing.assert_allclose(xb, images.numpy(), atol=1e-6)
    np.testing.assert_array_equal(yb, labels.numpy())
    assert xb.dtype == np.float32 and yb.dtype == labels.numpy().dtype


def test_class_weights_single_label(reader_cache: Path) -> None:
    dataset = XrayDataset(reader_cache, "train", dtype="float32")  # 10 normal, 30 pneumonia
    weights = dataset.class_weights()
    assert weights.dtype == torch.float32
    np.testing.assert_allclose(weights.numpy(), [1.5, 0.5], rtol=1e-6)  # inverse frequency, mean 1
    torch.nn.CrossEntropyLoss(weight=weights)(torch.zeros(2, 2), torch.tensor([0, 1]))


def test_class_weights_multi_label_is_pos_weight(multilabel_cache: Path) -> None:
    dataset = XrayDataset(multilabel_cache, "train", dtype="float32")
    _, y = expected(multilabel_cache)
    positives = y.sum(axis=0)
    pos_weight = dataset.class_weights()
    assert pos_weight.shape == (dataset.num_classes,)
    np.testing.assert_allclose(pos_weight.numpy(), np.where(positives > 0, (len(y) - positives) / positives, 1.0))
    loss = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)(torch.zeros(len(y), len(positives)), torch.from_numpy(y))
    assert torch.isfinite(loss)


def test_weighted_sampler_balances_single_label(reader_cache: Path) -> None:
    dataset = XrayDataset(reader_cache, "train", dtype="float32")
    sampler = dataset.weighted_sampler(num_samples=4000, generator=torch.Generator().manual_seed(0))
    _, y = expected(reader_cache)
    share = np.bincount(y[list(sampler)], minlength=2) / 4000
    assert abs(share[0] - 0.5) < 0.05  # vs 0.25 unweighted
    images, _ = next(iter(DataLoader(dataset, batch_size=8, sampler=dataset.weighted_sampler())))
    assert images.shape == (8, 1, 32, 32)


def test_weighted_sampler_refuses_multi_label(multilabel_cache: Path) -> None:
    with pytest.raises(xraycache.InputError, match=r"multi-label.*pos_weight"):
        XrayDataset(multilabel_cache, "train", dtype="float32").weighted_sampler()


def test_transforms_as_before(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        x, y = cache["train"].load(channels=None, label_dtype=None)
    stored = XrayDataset(reader_cache, "train", dtype=None, transform=_double, target_transform=_name)
    pixels, name = stored[3]
    assert name == ("normal", "pneumonia")[int(y[3])]
    np.testing.assert_array_equal(pixels.numpy()[0], x[3] * 2)
    doubled, label = XrayDataset(reader_cache, "train", transform=_double, dtype="float32")[3]
    np.testing.assert_allclose(doubled.numpy()[0], x[3] / 255.0 * 2, atol=1e-6)
    assert type(label) is int and label == y[3]  # an int, as torchvision's datasets give


def test_raw_and_deferred_still_work_with_a_warning(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        x, _ = cache["train"].load(channels=None, label_dtype=None)
    with pytest.warns(FutureWarning, match=r"raw=True\) is deprecated"):
        raw = XrayDataset(reader_cache, "train", raw=True, transform=_double)
    np.testing.assert_array_equal(raw[3][0], x[3] * 2)  # the stored NumPy array, as before
    with pytest.warns(FutureWarning, match=r"deferred=True\) is deprecated"):
        deferred = XrayDataset(reader_cache, "train", deferred=True, normalize="dataset")
    stored, _ = next(iter(DataLoader(deferred, batch_size=4)))
    eager = XrayDataset(reader_cache, "train", dtype="float32", normalize="dataset")
    np.testing.assert_allclose(deferred.convert(stored).numpy(), next(iter(DataLoader(eager, batch_size=4)))[0])


def test_wrong_split_fails_in_the_parent(reader_cache: Path) -> None:
    with pytest.raises(xraycache.InputError, match="no split"):
        XrayDataset(reader_cache, "nope", dtype="float32")


@pytest.mark.parametrize(("channels", "normalize"), [(1, None), (1, "dataset"), (3, "imagenet"), (3, "xrv")])
def test_stored_batches_convert_to_what_the_float_items_are(
    any_cache: Path, channels: int, normalize: str | None
) -> None:
    eager = XrayDataset(any_cache, "train", channels=channels, normalize=normalize, dtype="float32")
    deferred = XrayDataset(any_cache, "train", dtype=None)
    stored, labels = next(iter(DataLoader(deferred, batch_size=6, num_workers=2)))
    assert stored.dtype in (torch.uint8, torch.uint16) and stored.shape == (6, 1, 32, 32)  # as stored
    images, expected_labels = next(iter(DataLoader(eager, batch_size=6)))
    converted = deferred.convert(stored, channels=channels, normalize=normalize)
    assert converted.dtype == torch.float32 and converted.shape == (6, channels, 32, 32)
    np.testing.assert_allclose(converted.numpy(), images.numpy(), rtol=1e-6, atol=1e-4 if normalize == "xrv" else 1e-6)
    np.testing.assert_array_equal(labels.numpy(), expected_labels.numpy())
    on_device = convert_batch(stored, eager.pixels)  # the torch ops a GPU runs, here on the CPU
    assert on_device.dtype == converted.dtype and on_device.shape == converted.shape
    np.testing.assert_allclose(
        on_device.numpy(), converted.numpy(), rtol=1e-5, atol=1e-3 if normalize == "xrv" else 1e-5
    )


# -- dataset.loader(): whole batches read in the workers, straight into shared memory ---------------------


@pytest.mark.parametrize("options", [{}, {"channels": 3, "normalize": "dataset"}, {"dtype": None}])
def test_loader_gives_the_dataloader_batches(any_cache: Path, options: dict[str, object]) -> None:
    dataset = XrayDataset(any_cache, "train", **{"dtype": "float32", **options})  # type: ignore[arg-type]
    fast = collect(dataset.loader(5, num_workers=2))
    plain = collect(DataLoader(dataset, batch_size=5))
    np.testing.assert_array_equal(fast[0], plain[0])
    np.testing.assert_array_equal(fast[1], plain[1])
    assert fast[0].dtype == plain[0].dtype and fast[1].dtype == plain[1].dtype
    x, y = expected(any_cache)
    if options.get("dtype", "float32") == "float32" and not options.get("normalize"):
        np.testing.assert_allclose(fast[0], x, atol=1e-6)
    np.testing.assert_array_equal(fast[1], y)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_loader_start_methods_and_persistent_workers(uint16_cache: Path, method: str) -> None:
    dataset = XrayDataset(uint16_cache, "train", dtype=None)
    dataset[[0, 1]]  # the parent has read before the workers start
    loader = dataset.loader(
        3,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context=method,
        generator=torch.Generator().manual_seed(1),
    )
    x, y = expected(uint16_cache)
    orders = []
    for _ in range(2):
        stored, labels = zip(*loader, strict=True)
        images = torch.cat([dataset.convert(batch) for batch in stored]).numpy()
        rows = images.reshape(len(images), -1)
        np.testing.assert_allclose(np.unique(rows, axis=0), np.unique(x.reshape(len(x), -1), axis=0), atol=1e-6)
        orders.append(torch.cat(labels).tolist())
        assert sorted(orders[-1]) == sorted(y.tolist())
    assert len(loader) == 3  # 8 images in batches of 3


def test_loader_with_distributed_sampler(multilabel_cache: Path) -> None:
    dataset = XrayDataset(multilabel_cache, "train", dtype="float32")
    x, y = expected(multilabel_cache)
    seen: list[int] = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=5)
        sampler.set_epoch(2)
        indices = list(sampler)
        images, labels = collect(dataset.loader(4, sampler=sampler, num_workers=2))
        np.testing.assert_allclose(images, x[indices], atol=1e-6)
        np.testing.assert_array_equal(labels, y[indices])
        seen += indices
    assert set(seen) == set(range(len(dataset)))


def test_loader_with_transforms_and_weighted_sampler(reader_cache: Path) -> None:
    dataset = XrayDataset(reader_cache, "train", transform=_double, dtype="float32")
    sampler = dataset.weighted_sampler(num_samples=16, generator=torch.Generator().manual_seed(0))
    indices = list(sampler)
    sampler.generator = torch.Generator().manual_seed(0)  # draw the same 16 again
    images, labels = collect(dataset.loader(8, sampler=sampler, num_workers=2))
    x, y = expected(reader_cache)
    np.testing.assert_allclose(images, x[indices] * 2, atol=1e-6)
    np.testing.assert_array_equal(labels, y[indices])
    with pytest.raises(xraycache.InputError, match="not both"):
        dataset.loader(8, shuffle=True, sampler=sampler)
