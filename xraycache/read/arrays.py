"""Stored pixels and labels -> the arrays training code takes: one definition for ``batches()`` and the adapter.

Images (B, H, W) uint8 or uint16 become (B, C, H, W): as stored, or float scaled to [0, 1] by the stored
type's maximum (255 or 65535), optionally normalised. Normalisation is one multiply-add per channel, fused
with the scaling: ``"dataset"`` uses a split's pixel mean and std (from the per-image statistics the build
stored), ``"imagenet"`` the torchvision constants, ``"xrv"`` torchxrayvision's [-1024, 1024] range.
Labels become int64 class indices, or float32 multi-hot rows for a multi-label cache (what
``CrossEntropyLoss`` and ``BCEWithLogitsLoss`` take).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from ..core.errors import InputError

Normalize = Literal["dataset", "imagenet", "xrv"]
NORMALIZE_CHOICES: tuple[str, ...] = get_args(Normalize)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
XRV_RANGE = 1024.0  # torchxrayvision: (2 * x / maxval - 1) * 1024


class Unset:
    """The default of a parameter whose default is changing: the caller omitted it, so the old default
    applies, with a FutureWarning saying what will change."""

    def __repr__(self) -> str:
        return "<default>"


UNSET = Unset()


def _dtype(dtype: str | np.dtype[Any] | type | None, what: str) -> np.dtype[Any] | None:
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        raise InputError(f"{what} {dtype!r} is not a NumPy dtype; use e.g. 'float32'") from None


@dataclass(frozen=True)
class PixelFormat:
    """How stored images become training arrays: out dtype, channels and the per-channel ``x * a + b``.

    ``dtype=None`` keeps the stored type (no scaling); ``channels=None`` keeps (B, H, W); ``scale`` and
    ``offset`` (one per output channel) include the division by the stored maximum.
    """

    stored: np.dtype[Any]
    dtype: np.dtype[Any] | None
    channels: int | None
    scale: tuple[float, ...] = ()
    offset: tuple[float, ...] = ()

    @classmethod
    def make(
        cls,
        stored: np.dtype[Any],
        dtype: str | np.dtype[Any] | type | None = "float32",
        channels: int | None = 1,
        normalize: str | None = None,
        mean_std: tuple[float, float] | None = None,
    ) -> PixelFormat:
        """Validate the options (InputError naming the allowed values) and precompute the affine map.

        ``mean_std`` is the pixel mean and std in stored units, needed for ``normalize="dataset"``.
        """
        stored = np.dtype(stored)
        out = _dtype(dtype, "dtype")
        if channels not in (None, 1, 3):
            raise InputError(f"channels={channels!r}; use 1 (gray), 3 (gray repeated for RGB backbones) or None")
        if normalize is not None and normalize not in NORMALIZE_CHOICES:
            raise InputError(f"normalize={normalize!r}; use None or one of: {', '.join(NORMALIZE_CHOICES)}")
        if out is not None and out.kind not in "fiu":
            raise InputError(f"dtype {dtype!r} is not numeric; use 'float32', or None for the stored {stored}")
        if out is not None and out.kind in "iu" and not np.can_cast(stored, out):
            raise InputError(
                f"dtype {out} cannot hold {stored} pixels without wrapping; use None (as stored) or 'float32'"
            )
        if out is None or out.kind != "f":
            if normalize is not None:
                raise InputError(f"normalize={normalize!r} needs a float dtype; use dtype='float32'")
            return cls(stored, out, channels)
        top = float(np.iinfo(stored).max) if stored.kind in "iu" else 1.0  # 255, or 65535 for a uint16 cache
        n = channels or 1
        mean: tuple[float, ...]
        std: tuple[float, ...]
        if normalize is None:
            mean, std = (0.0,) * n, (1.0,) * n
        elif normalize == "imagenet":
            mean, std = IMAGENET_MEAN, IMAGENET_STD
            if n == 1:  # one gray channel: the average of the RGB constants
                mean, std = (sum(mean) / 3,), (sum(std) / 3,)
        elif normalize == "xrv":
            mean, std = (0.5,) * n, (0.5 / XRV_RANGE,) * n
        else:
            if mean_std is None:
                raise InputError("normalize='dataset' needs the split's pixel mean and std")
            m, s = mean_std[0] / top, mean_std[1] / top
            if not s > 0:
                raise InputError("normalize='dataset': every pixel of the split has the same value (std 0)")
            mean, std = (m,) * n, (s,) * n
        scale = tuple(1.0 / (top * s) for s in std)
        offset = tuple(-m / s for m, s in zip(mean, std, strict=True))
        return cls(stored, out, channels, scale, offset)

    def shape(self, stored_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for stored images of shape (B, H, W)."""
        if self.channels is None:
            return stored_shape
        return (stored_shape[0], self.channels, *stored_shape[1:])

    @property
    def out_dtype(self) -> np.dtype[Any]:
        """The output dtype: ``dtype``, or the stored type when that is kept."""
        return self.dtype if self.dtype is not None else self.stored

    def apply(self, images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(B, H, W) stored pixels -> (B, C, H, W) (or (B, H, W) for ``channels=None``), into ``out`` if given.

        Without ``out``, float output is a new array and kept integer pixels may be a view of ``images``.
        """
        if self.dtype is None or self.dtype.kind != "f":  # no scaling
            data = images if self.dtype is None else images.astype(self.dtype, copy=False)
            if out is not None:
                out[...] = data if self.channels is None else data[:, None]  # broadcast over the channels
                return out
            if self.channels is None:
                return data
            return np.repeat(data[:, None], self.channels, axis=1) if self.channels > 1 else data[:, None]
        n = self.channels or 1
        if out is None:
            target = np.empty((images.shape[0], n, *images.shape[1:]), dtype=self.dtype)
        else:
            target = out if self.channels is not None else out[:, None]
        work = self.compute_dtype
        for c in range(n):
            if c and self.scale[c] == self.scale[0] and self.offset[c] == self.offset[0]:
                target[:, c] = target[:, 0]  # the same map: copy, do not recompute
                continue
            if work == self.dtype:
                np.multiply(images, work.type(self.scale[c]), out=target[:, c], dtype=work)
                if self.offset[c]:
                    target[:, c] += work.type(self.offset[c])
            else:  # float16: 65535 overflows it, so the map runs in float32 and the result is cast
                values = np.multiply(images, work.type(self.scale[c]), dtype=work)
                if self.offset[c]:
                    values += work.type(self.offset[c])
                target[:, c] = values
        return target if self.channels is not None else target[:, 0]

    @property
    def compute_dtype(self) -> np.dtype[Any]:
        """The float type the affine map runs in: the output's, or float32 where the output is narrower (a
        uint16 pixel does not fit float16)."""
        assert self.dtype is not None
        return self.dtype if self.dtype.itemsize >= 4 else np.dtype(np.float32)


def label_dtype_for(labels: np.ndarray, label_dtype: str | np.dtype[Any] | type | None) -> np.dtype[Any]:
    """The labels' output dtype: ``None`` -> int64 class indices, or float32 multi-hot for (N, C) labels."""
    out = _dtype(label_dtype, "label_dtype")
    if out is None:
        return np.dtype(np.float32 if labels.ndim == 2 else np.int64)
    if out.kind not in "fiub":
        raise InputError(f"label_dtype {label_dtype!r} is not numeric; use 'int64', 'float32' or None")
    return out


def mean_std_from_image_stats(mean: np.ndarray, std: np.ndarray) -> tuple[float, float]:
    """Pixel mean and std of a set of same-sized images, exactly, from each image's own mean and std."""
    if mean.size == 0:
        raise InputError("normalize='dataset' needs at least one image in the split")
    m = mean.astype(np.float64)
    s = std.astype(np.float64)
    total_mean = float(m.mean())
    second = float((s * s + m * m).mean())  # E[x^2] per image, averaged: images have equal pixel counts
    return total_mean, max(second - total_mean * total_mean, 0.0) ** 0.5
