"""Optional PyTorch adapter: a map-style Dataset over one split, safe with ``DataLoader(num_workers=N)``.

Install with ``pip install torch==2.13.0`` then ``pip install 'xraycache[torch]'``. The dataset holds only the
path and split name; each worker process opens the file itself on first use (a Split reopens after
unpickling or fork), so no h5py object ever crosses a process boundary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .read.cache import Split


class XrayDataset(Dataset):
    """``dataset[i] -> (image, label)``: image a float32 tensor (1, H, W) in [0, 1], label an int64 tensor.

    ``transform`` receives that tensor (or, with ``raw=True``, the uint8 NumPy array (H, W)) and
    ``target_transform`` the int label; their results are returned as they are.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[int], Any] | None = None,
        raw: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.split_name = split
        self.transform = transform
        self.target_transform = target_transform
        self.raw = raw
        probe = Split(self.path, split)  # fails here, in the parent, with a one-line error if wrong
        self._len = len(probe)
        self.label_names = probe.label_names
        probe.close()
        self._split: Split | None = None

    def _open(self) -> Split:
        if self._split is None:
            self._split = Split(self.path, self.split_name)
        return self._split

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        split = self._open()
        pixels = split.images[int(index)]
        label = int(split.labels[int(index)])
        image: Any = pixels if self.raw else torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(0)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            return image, self.target_transform(label)
        return image, torch.tensor(label, dtype=torch.int64)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_split"] = None  # each worker opens its own file
        return state

    def class_weights(self) -> torch.Tensor:
        """Per-sample weights inverse to class frequency, for ``WeightedRandomSampler`` (balanced epochs)."""
        split = self._open()
        return torch.from_numpy(1.0 / split.counts()[split.labels].astype(np.float64))
