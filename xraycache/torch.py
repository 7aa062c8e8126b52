"""Optional PyTorch adapter: a map-style Dataset over one split, its loss weights, and batched DataLoaders.

Install PyTorch for your platform (CPU-only or CUDA) as its documentation says first, then the extra:
``pip install '.[torch]'`` (docs/reading.md, "PyTorch"). The dataset holds only the
path and options; each worker process opens the file itself on first use (a Split reopens after unpickling
or fork), so no h5py object crosses a process boundary, under the fork, spawn and forkserver start methods.
Batches are read whole: ``DataLoader(dataset, batch_size=B)`` calls ``__getitems__`` (one read of the B
images, one conversion), and :meth:`XrayDataset.loader` has each worker read a batch straight into shared
memory; both take any sampler (shuffle, ``DistributedSampler``, :meth:`XrayDataset.weighted_sampler`).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    WeightedRandomSampler,
    default_collate,
    get_worker_info,
)

from .core.errors import InputError
from .read.arrays import UNSET, PixelFormat, Unset
from .read.cache import Split
from .read.label_policy import LabelPolicy, coded_without_policy
from .read.label_policy import label_policy as label_policy_of


def _batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor; inside a DataLoader worker, in shared memory, so sending it copies nothing.

    Allocated as torch's own ``default_collate`` allocates its batches in workers; where that storage call
    is missing (another torch), a plain tensor, which the DataLoader then copies into shared memory.
    """
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    elem = torch.empty(0, dtype=dtype)
    try:
        storage = elem._typed_storage()._new_shared(int(np.prod(shape)), device=elem.device)
    except AttributeError:
        return torch.empty(shape, dtype=dtype)
    return elem.new(storage).resize_(shape)


def convert_batch(images: torch.Tensor, pixels: PixelFormat) -> torch.Tensor:
    """Apply ``pixels`` (dtype, channels, normalisation) to a stored (B, 1, H, W) batch with torch ops, on
    the batch's device (a GPU, say): what :meth:`XrayDataset.convert` does off the CPU."""
    if pixels.dtype is None or pixels.dtype.kind != "f":
        out = images if pixels.dtype is None else images.to(_torch_dtype(pixels.dtype))
        return out.repeat(1, pixels.channels, 1, 1) if pixels.channels and pixels.channels > 1 else out
    out_dtype = _torch_dtype(pixels.dtype)
    scaled = images.to(_torch_dtype(pixels.compute_dtype))  # float16 output: computed in float32, then cast
    if len(set(zip(pixels.scale, pixels.offset, strict=True))) == 1:  # one map for every channel
        scaled.mul_(pixels.scale[0]).add_(pixels.offset[0])
        scaled = scaled.to(out_dtype)
        return scaled.repeat(1, len(pixels.scale), 1, 1) if len(pixels.scale) > 1 else scaled
    return torch.cat([scaled * a + b for a, b in zip(pixels.scale, pixels.offset, strict=True)], dim=1).to(out_dtype)


def _numpy_dtype(dtype: Any) -> Any:
    """A torch dtype (``torch.float32``) as the NumPy name the readers take; anything else as it is."""
    return str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else dtype


def _torch_dtype(dtype: np.dtype[Any]) -> torch.dtype:
    """The torch dtype of a NumPy dtype (float32 -> torch.float32, uint16 -> torch.uint16, ...)."""
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


class XrayDataset(Dataset):
    """``dataset[i] -> (image, label)`` for one split of a cache, with torchvision's dataset conventions.

    The outputs are those of ``Split.load()`` and ``Split.batches()`` (one definition,
    ``xraycache.read.arrays``), per image:

    - image: a (C, H, W) tensor; as stored (uint8, or uint16) with ``dtype=None``, scaled to [0, 1] with
      a float ``dtype``; ``channels=3`` repeats the gray channel for ImageNet-pretrained backbones.
    - label: an int class index (``CrossEntropyLoss``; batched by the DataLoader into int64), or a float32
      (C,) multi-hot tensor for a multi-label cache (``BCEWithLogitsLoss``).
    - with ``label_policy`` (coded caches, ``--label-cols``): ``(image, target, mask)``, target and mask
      float32 (C,) tensors, the mask 1 where the target counts in the loss (``xraycache.read.label_policy``).

    Parameters
    ----------
    path : str or os.PathLike
        The cache file.
    split : str, default "train"
        The split to read.
    transform : callable, optional
        Called with each image tensor; its result is returned as it is (torchvision v2 transforms work).
    target_transform : callable, optional
        Called with each stored label (an int, or the (C,) uint8 multi-hot row); its result is returned.
    dtype : dtype or None, default None
        None keeps the stored pixels (convert batches on the GPU with :meth:`convert`: 2-4x fewer bytes
        leave the workers); ``"float32"`` (any float) scales to [0, 1]. Omitted, it is still float32 in
        this release, with a FutureWarning: pass it to choose.
    channels : {1, 3}, default 1
        Output channels.
    normalize : {None, "dataset", "imagenet", "xrv"}, default None
        With a float dtype: the pixel mean and std of ``stats_split`` (by default the cache's ``train``
        split), ImageNet's, or torchxrayvision's [-1024, 1024] range.
    stats_split : str, optional
        The split ``normalize="dataset"`` takes its statistics from.
    label_policy : {"u-ones", "u-zeros", "u-ignore", "xrv"} or LabelPolicy, optional
        What uncertain and missing labels of a coded cache become (required for one): items and batches are
        then ``(image, target, mask)``.
    raw, deferred : bool
        Deprecated: ``dtype=None`` says "as stored" (``raw=True`` handed NumPy arrays to ``transform``: take
        ``image.numpy()``; ``deferred=True`` kept items as stored and converted in :meth:`convert`: give
        ``convert`` the format instead).

    Attributes
    ----------
    classes : list of str
        Class names, indexed by label value (torchvision's ``classes``).
    class_to_idx : dict of str to int
        Class name -> label value.
    targets : list
        Every image's label: ints, or (for a multi-label cache) multi-hot rows as lists of 0/1.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        raw: bool = False,
        dtype: str | np.dtype[Any] | type | Unset | None = UNSET,
        channels: int = 1,
        normalize: str | None = None,
        stats_split: str | None = None,
        deferred: bool = False,
        label_policy: str | LabelPolicy | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.split_name = split
        self.transform = transform
        self.target_transform = target_transform
        dtype = _numpy_dtype(dtype)
        if isinstance(dtype, Unset):
            if not raw and not deferred:
                warnings.warn(
                    "XrayDataset will return images as stored (uint8/uint16), as Split.load() and batches() do; "
                    "today it returns float32 in [0, 1]. Pass dtype='float32' to keep float images, or dtype=None "
                    "and convert batches on the device with dataset.convert(batch)",
                    FutureWarning,
                    stacklevel=2,
                )
            dtype = "float32"
        for name, used in (("raw", raw), ("deferred", deferred)):
            if used:
                warnings.warn(
                    f"XrayDataset({name}=True) is deprecated: dtype=None keeps images as stored"
                    + (" (a tensor; image.numpy() is the array)" if name == "raw" else "; convert(batch) converts"),
                    FutureWarning,
                    stacklevel=2,
                )
        self.raw = raw
        if raw and (normalize is not None or channels != 1 or deferred):
            raise InputError("raw=True hands the stored array to transform; drop channels=, normalize= and deferred=")
        if channels not in (1, 3):
            raise InputError(f"channels={channels!r}; use 1 (gray) or 3 (gray repeated for RGB backbones)")
        probe = Split(self.path, split)  # fails here, in the parent, with a one-line error if wrong
        try:
            self._len = len(probe)
            self.label_names: tuple[str, ...] = probe.label_names
            self.multi_label: bool = probe.multi_label
            self.label_policy: LabelPolicy | None = label_policy_of(label_policy)
            if self.label_policy is not None and not probe.coded:
                raise InputError(f"{self.path}: label_policy applies to coded labels (a cache built with --label-cols)")
            if probe.coded and self.label_policy is None:
                raise coded_without_policy(self.path)
            self._counts = probe.counts()
            self.stats_split = stats_split
            self.normalize = normalize
            # validated and computed once, in the parent (the dataset statistics need a pass over meta)
            self.pixels: PixelFormat = probe.pixel_format(dtype, channels, normalize, stats_split)
            self.deferred = deferred
            self._item_pixels = probe.pixel_format(None, 1) if deferred else self.pixels
            opened = probe.opened
            self._float = (
                self.pixels
                if self.pixels.dtype is not None and self.pixels.dtype.kind == "f"
                else probe.pixel_format("float32", channels)
            )
        finally:
            probe.close()
        self.classes: list[str] = list(self.label_names)
        self.class_to_idx: dict[str, int] = {name: index for index, name in enumerate(self.classes)}
        self._split: Split | None = None
        self._scratch: np.ndarray | None = None  # stored pixels of the last batch, reused (never returned)
        self._opened = opened  # the build the probe opened: workers refuse another one at the path
        self._formats: dict[tuple[Any, ...], PixelFormat] = {}

    @functools.cached_property
    def targets(self) -> list[Any]:
        """Every image's label (torchvision's ``targets``): ints, or multi-hot rows as lists of 0/1. Made when
        first asked for, not when the dataset is (a list of Python ints grows with the split, and would travel
        to every DataLoader worker)."""
        return self._open().labels.astype(np.int64).tolist()

    @property
    def num_classes(self) -> int:
        """Number of classes: the size of a model's output layer."""
        return len(self.label_names)

    def _open(self) -> Split:
        if self._split is None:
            self._split = Split(self.path, self.split_name, opened=self._opened)
        return self._split

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: Any) -> tuple[Any, ...]:
        """``dataset[i]`` -> one (image, label); ``dataset[[i, j, ...]]`` -> one batch (images, labels).

        The batch form is what :meth:`loader` asks for: a worker reads the images straight into a batch in
        shared memory, which reaches the training process without another copy.
        """
        if isinstance(index, (list, tuple)) or (isinstance(index, (np.ndarray, torch.Tensor)) and index.ndim):
            return self._batch(np.asarray(index, dtype=np.int64).reshape(-1))
        index = int(index)
        if not -self._len <= index < self._len:  # IndexError ends ``for item in dataset``
            raise IndexError(f"index {index} is out of range for {self._len} images")
        return self.__getitems__([index])[0]

    def _batch(self, index: np.ndarray) -> tuple[Any, ...]:
        if self.raw or self.transform is not None or self.target_transform is not None:
            return default_collate(self.__getitems__(index.tolist()))  # per-image transforms: as DataLoader does
        split = self._open()
        fmt = self._item_pixels
        n = index.size
        images = _batch_tensor(fmt.shape((n, *split.shape[1:])), _torch_dtype(fmt.out_dtype))
        if fmt.dtype is None and fmt.channels == 1:  # as stored: read straight into the batch
            split.read_into(index, images.numpy()[:, 0])
        else:  # read into a buffer this process keeps, then convert into the batch
            if self._scratch is None or self._scratch.shape[0] < n:
                self._scratch = np.empty((n, *split.shape[1:]), dtype=split.images.dtype)
            fmt.apply(split.read_into(index, self._scratch[:n]), out=images.numpy())
        stored = split.labels[index]
        if self.label_policy is not None:
            targets, mask = self.label_policy.apply(stored, self.label_names)
            return images, torch.from_numpy(targets), torch.from_numpy(mask)
        labels = torch.from_numpy(stored.astype(np.float32 if self.multi_label else np.int64))
        return images, labels

    def loader(
        self,
        batch_size: int,
        shuffle: bool = False,
        sampler: Sampler[int] | Iterable[int] | None = None,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> DataLoader[Any]:
        """A ``DataLoader`` whose workers read whole batches, e.g. ``train.loader(64, shuffle=True, num_workers=2)``.

        The same batches as ``DataLoader(dataset, batch_size, shuffle=..., sampler=...)``, made cheaper: each
        worker reads a batch of images straight into shared memory and converts it there (no per-image
        tensors, no collate copy). ``sampler`` may be any sampler of indices (``DistributedSampler``,
        :meth:`weighted_sampler`, ...); the other keywords go to ``DataLoader`` (``num_workers``,
        ``persistent_workers``, ``pin_memory``, ``multiprocessing_context``, ...).
        """
        if batch_size < 1:
            raise InputError(f"batch_size {batch_size} must be at least 1")
        if sampler is not None and shuffle:
            raise InputError("give shuffle=True or a sampler, not both (a sampler decides the order)")
        if sampler is None:
            sampler = RandomSampler(self, generator=generator) if shuffle else SequentialSampler(self)
        batches = BatchSampler(sampler, batch_size, drop_last)
        return DataLoader(self, batch_size=None, sampler=batches, generator=generator, **kwargs)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, ...]]:
        """The samples at ``indices``, read together: what ``DataLoader`` workers call for each batch."""
        split = self._open()
        index = np.asarray(indices, dtype=np.int64)
        pixels = split.images[index]  # one sorted read, in the order asked
        stored = split.labels[index]
        if self.raw:
            images: Sequence[Any] = list(pixels)
        else:
            images = torch.from_numpy(self._item_pixels.apply(pixels)).unbind(0)
        if self.transform is not None:
            images = [self.transform(image) for image in images]
        if self.label_policy is not None:
            target, mask = self.label_policy.apply(stored, self.label_names)
            rows: Sequence[Any] = torch.from_numpy(target).unbind(0)
            if self.target_transform is not None:
                rows = [self.target_transform(row) for row in rows]
            masks = torch.from_numpy(mask).unbind(0)
            return [(image, t, m) for image, t, m in zip(images, rows, masks, strict=True)]
        if self.target_transform is not None:
            stored_rows = list(stored) if self.multi_label else stored.tolist()
            targets: Sequence[Any] = [self.target_transform(label) for label in stored_rows]
        elif self.multi_label:
            targets = torch.from_numpy(stored.astype(np.float32)).unbind(0)
        else:
            targets = stored.astype(np.int64).tolist()  # ints, as torchvision's datasets give
        return list(zip(images, targets, strict=True))

    def convert(
        self,
        images: torch.Tensor,
        dtype: str | np.dtype[Any] | type | Unset | None = UNSET,
        channels: int | None = None,
        normalize: str | Unset | None = UNSET,
        stats_split: str | None = None,
    ) -> torch.Tensor:
        """A batch as stored (B, 1, H, W) -> float, on the batch's device:
        ``train.convert(images.to(device, non_blocking=True), normalize="dataset")``.

        Parameters
        ----------
        images : torch.Tensor
            A batch of items of a ``dtype=None`` dataset (uint8 or uint16, one channel).
        dtype : float dtype, optional
            Default: this dataset's float dtype (float32 unless it was given another).
        channels : {1, 3}, optional
            Default: this dataset's.
        normalize : {None, "dataset", "imagenet", "xrv"}, optional
            Default: this dataset's ``normalize``.
        stats_split : str, optional
            For ``normalize="dataset"``; default: this dataset's.

        Returns
        -------
        torch.Tensor
            (B, C, H, W), the same values items of that format have.
        """
        if images.dtype.is_floating_point or images.ndim != 4:
            raise InputError(
                f"convert() takes batches as stored (B, C, H, W) uint8 or uint16, from a dtype=None dataset; "
                f"this one is {images.dtype} {tuple(images.shape)}: it is converted already"
            )
        images = images[:, :1]  # the stored gray channel (channels=3 items repeat it)
        if isinstance(dtype, Unset) and isinstance(normalize, Unset) and channels is None and stats_split is None:
            pixels = self.pixels if self.deferred else self._float
        else:
            pixels = self._format(_numpy_dtype(dtype), channels, normalize, stats_split)
        if images.device.type == "cpu":
            return torch.from_numpy(pixels.apply(images.numpy()[:, 0]))  # the items' own NumPy code, exactly
        return convert_batch(images, pixels)

    def _format(self, dtype: Any, channels: int | None, normalize: Any, stats_split: str | None) -> PixelFormat:
        """The float format ``convert`` was asked for, the dataset's where not said; made once per request."""
        dtype = self._float.dtype if isinstance(dtype, Unset) else dtype
        channels = channels if channels is not None else (self._float.channels or 1)
        normalize = self.normalize if isinstance(normalize, Unset) else normalize
        stats_split = stats_split if stats_split is not None else self.stats_split
        key = (str(np.dtype(dtype)) if dtype is not None else None, channels, normalize, stats_split)
        if key not in self._formats:
            self._formats[key] = self._open().pixel_format(dtype, channels, normalize, stats_split)
        return self._formats[key]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_split"] = None  # each worker opens its own file
        state["_scratch"] = None
        state.pop("targets", None)  # made again where it is asked for
        return state

    def class_weights(self) -> torch.Tensor:
        """Loss weights from the stored label counts, float32 (C,).

        Single-label: inverse class frequency scaled to mean 1 over the classes present (0 for a class
        with no image), for ``CrossEntropyLoss(weight=...)``. Multi-label: ``negatives / positives`` per
        class, the ``pos_weight`` of ``BCEWithLogitsLoss`` (1 for a class with no positive image); with a
        ``label_policy``, the targets' positives and negatives where the mask counts them.
        """
        counts = self._counts.astype(np.float64)
        if self.label_policy is not None:
            targets, mask = self.label_policy.apply(self._open().labels, self.label_names)
            counts = (targets * mask).sum(axis=0, dtype=np.float64)
            negatives = ((1 - targets) * mask).sum(axis=0, dtype=np.float64)
            weights = np.divide(negatives, counts, out=np.ones_like(counts), where=counts > 0)
        elif self.multi_label:
            negatives = self._len - counts
            weights = np.divide(negatives, counts, out=np.ones_like(counts), where=counts > 0)
        else:
            present = counts > 0
            weights = np.divide(1.0, counts, out=np.zeros_like(counts), where=present)
            if present.any():
                weights /= weights[present].mean()
        return torch.from_numpy(weights.astype(np.float32))

    def sample_weights(self) -> torch.Tensor:
        """Per-image weights inverse to its class's frequency (float64 (N,)): each class drawn equally often."""
        if self.multi_label:
            raise InputError(
                "a weighted sampler needs one label per image; this cache is multi-label: "
                "weight the loss instead, BCEWithLogitsLoss(pos_weight=dataset.class_weights())"
            )
        counts = self._counts.astype(np.float64)
        labels = self._open().labels.astype(np.int64)
        return torch.from_numpy(1.0 / counts[labels])

    def weighted_sampler(
        self, num_samples: int | None = None, replacement: bool = True, generator: torch.Generator | None = None
    ) -> WeightedRandomSampler:
        """A ``WeightedRandomSampler`` that balances the classes (single-label caches; InputError otherwise).

        Draws ``num_samples`` (default ``len(dataset)``) images per epoch. It samples for one process:
        under ``DistributedSampler`` training, weight the loss with :meth:`class_weights` instead.
        """
        weights = self.sample_weights()
        n = num_samples or self._len
        return WeightedRandomSampler(weights, n, replacement=replacement, generator=generator)  # type: ignore[arg-type]  # takes a tensor

    def __repr__(self) -> str:
        kind = "multi-label" if self.multi_label else "single-label"
        return f"<xraycache.torch.XrayDataset {self.split_name!r} of {self.path}: {self._len} images, {kind}>"
