"""Hostile cache files: a valid small cache, then each way a shared file can be made to misbehave.

``CASES`` maps a name to a function that turns a copy of a valid cache (``path``) into the hostile file;
``outside`` is a folder outside the cache holding a file a reader must never read (a stand-in for the
system's password file) and another HDF5 file with a valid-looking images dataset.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")
SECRET = b"root:x:0:0:SECRET:/root:/bin/bash\n" * 4096


def small_source(root: Path) -> Path:
    """The source folder of the valid cache: six seeded images in the Kaggle layout (train 4, test 2)."""
    from conftest import radiograph, write_image

    for i in range(6):
        label = "NORMAL" if i % 2 else "PNEUMONIA"
        name = f"IM-{i:04d}-0001.jpeg" if label == "NORMAL" else f"person{i}_bacteria_{i}.jpeg"
        write_image(root / "src" / ("train" if i < 4 else "test") / label / name, radiograph(120, 100, seed=i))
    return root / "src"


def _replace(path: Path, name: str, make: Callable[[h5py.Group, tuple[int, ...]], None]) -> None:
    """Delete dataset ``name`` (e.g. ``train/images``) and let ``make(group, old_shape)`` put something there."""
    with h5py.File(path, "r+") as f:
        group_name, _, leaf = name.rpartition("/")
        group = f[group_name]
        shape = group[leaf].shape
        del group[leaf]
        make(group, shape)


def external_storage(path: Path, outside: Path) -> None:
    secret = outside / "passwd"
    _replace(
        path,
        "train/images",
        lambda g, shape: g.create_dataset(
            "images", shape=shape, dtype=np.uint8, external=[(str(secret), 0, h5py.h5f.UNLIMITED)]
        ),
    )


def external_link(path: Path, outside: Path) -> None:
    _replace(
        path,
        "train/images",
        lambda g, shape: g.__setitem__("images", h5py.ExternalLink(str(outside / "other.h5"), "/x")),
    )


def virtual_outside(path: Path, outside: Path) -> None:
    def make(group: h5py.Group, shape: tuple[int, ...]) -> None:
        layout = h5py.VirtualLayout(shape=shape, dtype=np.uint8)
        layout[:] = h5py.VirtualSource(str(outside / "other.h5"), "/x", shape=shape)
        group.create_virtual_dataset("images", layout)

    _replace(path, "train/images", make)


def virtual_missing(path: Path, outside: Path) -> None:
    def make(group: h5py.Group, shape: tuple[int, ...]) -> None:
        layout = h5py.VirtualLayout(shape=shape, dtype=np.uint8)
        layout[:] = h5py.VirtualSource("gone.h5", "/x", shape=shape)
        group.create_virtual_dataset("images", layout)

    _replace(path, "train/images", make)


def string_images(path: Path, outside: Path) -> None:
    _replace(
        path,
        "train/images",
        lambda g, shape: g.create_dataset("images", data=np.array(["a"] * shape[0], dtype=object), dtype=STR),
    )


def soft_link_to_strings(path: Path, outside: Path) -> None:
    _replace(path, "train/images", lambda g, shape: g.__setitem__("images", h5py.SoftLink("/train/meta/path")))


def dangling_soft_link(path: Path, outside: Path) -> None:
    _replace(path, "train/images", lambda g, shape: g.__setitem__("images", h5py.SoftLink("/nowhere")))


def looping_soft_links(path: Path, outside: Path) -> None:
    def make(group: h5py.Group, shape: tuple[int, ...]) -> None:
        group["images"] = h5py.SoftLink("/train/loop")
        group["loop"] = h5py.SoftLink("/train/images")

    _replace(path, "train/images", make)


def negative_label(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        f["train/labels"][0] = -1


def label_out_of_range(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        f["train/labels"][0] = 7


def no_label_names(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f.attrs["label_names"]


def label_names_not_a_list(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["label_names"] = 5


def format_version_not_a_number(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = "one"


def trillion_images_claimed(path: Path, outside: Path) -> None:
    _replace(
        path,
        "train/images",
        lambda g, shape: g.create_dataset("images", shape=(10**12, *shape[1:]), dtype=np.uint8, chunks=(1, *shape[1:])),
    )


def ten_million_images_claimed(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        for name in list(f["train"]):
            item = f["train"][name]
            if isinstance(item, h5py.Dataset):
                shape, dtype = item.shape, item.dtype
                del f["train"][name]
                f["train"].create_dataset(name, shape=(10**7, *shape[1:]), dtype=dtype)


def two_d_images(path: Path, outside: Path) -> None:
    _replace(path, "train/images", lambda g, shape: g.create_dataset("images", data=np.zeros(shape[:2], np.uint8)))


def float_images(path: Path, outside: Path) -> None:
    _replace(path, "train/images", lambda g, shape: g.create_dataset("images", data=np.zeros(shape, np.float32)))


def address_past_the_end(path: Path, outside: Path) -> None:
    """A file written with the earliest format (no metadata checksums) whose images point past its end."""
    copy = path.with_suffix(".early")
    with h5py.File(path) as src, h5py.File(copy, "w", libver="earliest") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value

        def rewrite(name: str, item: h5py.HLObject) -> None:
            if isinstance(item, h5py.Dataset):
                made = dst.create_dataset(name, data=item[()], dtype=item.dtype)
            else:
                made = dst.require_group(name)
            for key, value in item.attrs.items():
                made.attrs[key] = value

        src.visititems(rewrite)
    with h5py.File(copy) as f:
        offset = f["train/images"].id.get_offset()
    data = bytearray(copy.read_bytes())
    at = data.find(struct.pack("<Q", offset))
    data[at : at + 8] = struct.pack("<Q", offset + 10**9)
    path.write_bytes(bytes(data))
    copy.unlink()


def many_splits(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["splits"] = np.array([f"s{i}" for i in range(100_000)], dtype=STR)


def many_labels(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["label_names"] = np.array([f"label{i}" for i in range(200_000)], dtype=STR)


def huge_label_name(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["label_names"] = np.array(["n" * 50_000_000, "pneumonia"], dtype=STR)


def a_fifo(path: Path, outside: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def shared_string_heap(path: Path, outside: Path) -> None:
    """4,096 rows of ``skipped/path`` all pointing at one 1 MB string: 4 GB of text from a 1.5 MB file."""
    rows = 4096
    with h5py.File(path, "r+") as f:
        for name in ("path", "split", "reason"):
            del f["skipped"][name]
            first = "x" * 1_000_000 if name == "path" else "r"
            f["skipped"].create_dataset(name, data=np.array([first] + ["r"] * (rows - 1), dtype=object), dtype=STR)
        offset = f["skipped/path"].id.get_offset()
    data = bytearray(path.read_bytes())
    for i in range(1, rows):  # each row's heap reference = the first row's
        data[offset + 16 * i : offset + 16 * (i + 1)] = data[offset : offset + 16]
    path.write_bytes(bytes(data))


def huge_fixed_strings(path: Path, outside: Path) -> None:
    _replace(
        path,
        "train/meta/patient",
        lambda g, shape: g.create_dataset("patient", shape=shape, dtype="S550000000", chunks=(1,), compression="gzip"),
    )


def attribute_numpy_cannot_read(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f.attrs["command"]
        h5py.h5a.create(f.id, b"command", h5py.h5t.UNIX_D32LE.copy(), h5py.h5s.create_simple((1,)))  # never written


def histogram_of_the_wrong_shape(path: Path, outside: Path) -> None:
    _replace(path, "train/stats/hist", lambda g, shape: g.create_dataset("hist", data=np.zeros((2, 3), np.int64)))


def width_not_a_whole_number(path: Path, outside: Path) -> None:
    _replace(path, "train/meta/width", lambda g, shape: g.create_dataset("width", data=np.full(shape, np.nan)))


def huge_chunk(path: Path, outside: Path) -> None:
    """Four images in one compressed chunk of 100,000: any read of a row makes HDF5 allocate 100 MB."""
    _replace(
        path,
        "train/images",
        lambda g, shape: g.create_dataset(
            "images",
            data=np.zeros(shape, np.uint8),
            maxshape=(None, *shape[1:]),
            chunks=(100_000, *shape[1:]),
            compression="gzip",
        ),
    )


def claim_rows(path: Path, rows: int, split: str = "train") -> None:
    """Not a refusal: ``split`` made to hold ``rows`` images by repeating its own, every column compressed in
    chunks of 65,536 rows, its statistics made to agree. A valid cache, as small as a legitimate compressed
    one of that many images (tens of MB for a million at 8 px), whose rows each reader must handle in
    bounded time and memory."""
    chunk = 65_536
    with h5py.File(path, "r+") as f:
        group = f[split]
        n = group["images"].shape[0]

        def inflate(parent: h5py.Group) -> None:
            for name, item in list(parent.items()):
                if isinstance(item, h5py.Group):
                    if name != "stats":
                        inflate(item)
                    continue
                if not item.shape or item.shape[0] != n:
                    continue
                data, attrs, dtype = item[()], dict(item.attrs), item.dtype
                del parent[name]
                new = parent.create_dataset(
                    name,
                    shape=(rows, *data.shape[1:]),
                    dtype=dtype,
                    chunks=(min(rows, chunk), *data.shape[1:]),
                    compression="gzip",
                    compression_opts=1,
                )
                for start in range(0, rows, chunk):
                    stop = min(rows, start + chunk)
                    new[start:stop] = data[np.arange(start, stop) % n]
                new.attrs.update(attrs)

        before = group["stats/hist"][()]
        counts = np.bincount(group["labels"][()], minlength=before.shape[0])
        per_row = [np.bincount(image.ravel(), minlength=256) for image in group["images"][()]]
        labels = group["labels"][()]
        inflate(group)
        times = np.bincount(np.arange(rows) % n, minlength=n)
        hist = np.zeros_like(before)
        for i in range(n):
            hist[labels[i]] += times[i] * per_row[i]
        group["stats/hist"][...] = hist
        group["stats/count"][...] = np.bincount(labels[np.arange(rows) % n], minlength=counts.shape[0])


def truncated(path: Path, outside: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CASES: dict[str, Callable[[Path, Path], None]] = {
    fn.__name__: fn
    for fn in (
        external_storage,
        external_link,
        virtual_outside,
        virtual_missing,
        string_images,
        soft_link_to_strings,
        dangling_soft_link,
        looping_soft_links,
        negative_label,
        label_out_of_range,
        no_label_names,
        label_names_not_a_list,
        format_version_not_a_number,
        trillion_images_claimed,
        ten_million_images_claimed,
        two_d_images,
        float_images,
        address_past_the_end,
        many_splits,
        many_labels,
        huge_label_name,
        truncated,
        huge_chunk,
        a_fifo,
        shared_string_heap,
        huge_fixed_strings,
        attribute_numpy_cannot_read,
        histogram_of_the_wrong_shape,
        width_not_a_whole_number,
    )
}


def make_outside(folder: Path) -> Path:
    """The folder of things outside the cache: a secret text file and another HDF5 file."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "passwd").write_bytes(SECRET)
    with h5py.File(folder / "other.h5", "w") as f:
        f["x"] = np.frombuffer(SECRET[: 6 * 32 * 32], dtype=np.uint8).reshape(6, 32, 32)
    return folder
