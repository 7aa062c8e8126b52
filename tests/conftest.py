"""Shared fixtures: small, seeded image datasets written by the tests themselves."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fast tests first, the ones marked ``slow`` last (a stable sort: file order otherwise kept), so that one
    ``python -m pytest`` says within a few minutes whether anything common is broken. ``-m "not slow"`` skips them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


# A build on loky of fewer than SERIAL_BELOW files decodes in its own process; the tests' small datasets should
# still go through that pool (its start-up, watchdog, interrupts), in this process and in the CLI subprocesses.
os.environ.setdefault("XRAYCACHE_SERIAL_BELOW", "0")

KAGGLE_FILES = {
    "train/NORMAL/IM-0115-0001.jpeg": (300, 240),
    "train/NORMAL/IM-0115-0002.jpeg": (320, 260),
    "train/NORMAL/NORMAL2-IM-1427-0001.jpeg": (280, 300),
    "train/PNEUMONIA/person12_bacteria_47.jpeg": (260, 200),
    "train/PNEUMONIA/person12_virus_3.jpeg": (310, 250),
    "train/PNEUMONIA/person3_bacteria_10.jpeg": (400, 330),
    "val/NORMAL/IM-0200-0001.jpeg": (240, 240),
    "val/PNEUMONIA/person40_virus_80.jpeg": (250, 270),
    "test/NORMAL/IM-0300-0001.jpeg": (290, 220),
    "test/PNEUMONIA/person50_bacteria_1.jpeg": (230, 260),
}


def radiograph(width: int, height: int, seed: int) -> np.ndarray:
    """A small smooth gray image with some structure and noise (deterministic from ``seed``)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    body = np.exp(-(((xx - 0.5) / 0.35) ** 2 + ((yy - 0.55) / 0.45) ** 2))
    img = 30 + 180 * body + 20 * np.sin(yy * 40 + rng.uniform(0, 6)) + rng.normal(0, 4, (height, width))
    for _ in range(12):  # structures placed by the seed: two seeds are two different pictures, not near-duplicates
        cy, cx, r = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.15)
        img += rng.uniform(-100, 100) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image(path: Path, pixels: np.ndarray, mode: str = "L", fmt: str = "JPEG", **save: object) -> Path:
    """Write ``pixels`` as an image file, creating folders; ``mode="RGB"`` stores gray as RGB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels, mode="L")
    if mode != "L":
        image = image.convert(mode)
    image.save(path, format=fmt, **save)
    return path


@pytest.fixture
def world() -> Iterator[Path]:
    """A folder every user can enter (pytest's tmp_path is 0700: useless once privileges are dropped)."""
    path = Path(tempfile.mkdtemp(prefix="xraycache-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Write a dataset of small images: ``make_dataset(files={relpath: (w, h)}, rgb={relpath})``."""

    def make(files: dict[str, tuple[int, int]] | None = None, rgb: set[str] | None = None, name: str = "src") -> Path:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        for index, (rel, (width, height)) in enumerate(sorted((KAGGLE_FILES if files is None else files).items())):
            mode = "RGB" if rel in (rgb or set()) else "L"
            fmt = "PNG" if rel.lower().endswith(".png") else "JPEG"
            write_image(root / rel, radiograph(width, height, index), mode=mode, fmt=fmt)
        return root

    return make


@pytest.fixture
def kaggle(make_dataset: Callable[..., Path]) -> Path:
    """A 10-image Kaggle-layout dataset (train/val/test, NORMAL/PNEUMONIA), one file stored as RGB."""
    return make_dataset(rgb={"train/PNEUMONIA/person12_virus_3.jpeg"})


# -- readers: one small built cache per session, shared by test_reader/stats/plots/show_cli/torch --------


def _reader_files() -> dict[str, tuple[int, int]]:
    """40 train images (10 normal, 30 pneumonia: imbalanced on purpose), 4 val, 6 test; varied sizes."""
    files: dict[str, tuple[int, int]] = {}
    for i in range(10):
        files[f"train/NORMAL/IM-{i:04d}-0001.jpeg"] = (60 + 7 * i, 50 + 5 * i)
    for i in range(30):
        kind = "bacteria" if i % 2 else "virus"
        files[f"train/PNEUMONIA/person{i // 2}_{kind}_{i}.jpeg"] = (70 + 3 * i, 64 + 2 * i)
    for split, n in (("val", 2), ("test", 3)):
        for i in range(n):
            files[f"{split}/NORMAL/IM-{500 + i:04d}-0001.jpeg"] = (64, 64)
            files[f"{split}/PNEUMONIA/person{90 + i}_bacteria_{i}.jpeg"] = (72, 60)
    return files


def _build_reader_cache(root: Path, compression: str) -> Path:
    import xraycache

    src = root / "src"
    if not src.exists():
        for index, (rel, (width, height)) in enumerate(sorted(_reader_files().items())):
            write_image(src / rel, radiograph(width, height, index))
        (src / "train/NORMAL/IM-9999-0001.jpeg").write_bytes(b"not a jpeg")  # recorded in /skipped
    out = root / f"cache-{compression}.h5"
    xraycache.build(src, out, size=32, jobs=1, compression=compression)  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="session")
def reader_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built, uncompressed 32 x 32 cache: train 40 (10/30) + 1 skipped, val 4, test 6."""
    return _build_reader_cache(tmp_path_factory.mktemp("reader"), "none")


@pytest.fixture(scope="session")
def reader_cache_gzip(reader_cache: Path) -> Path:
    """The same images built with gzip (chunked storage: the h5py read path)."""
    return _build_reader_cache(reader_cache.parent, "gzip")


# -- training caches: one of each kind the PyTorch adapter and the exports must read -------------------

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "No Finding")


@pytest.fixture(scope="session")
def uint16_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``--dtype uint16`` cache of 12-bit DICOMs: train 8 (4 normal, 4 pneumonia), val 4; 32 x 32."""
    pytest.importorskip("pydicom")
    from _dicom import chest, write

    import xraycache

    root = tmp_path_factory.mktemp("uint16")
    for i in range(12):
        split, label = ("train" if i < 8 else "val"), ("NORMAL", "PNEUMONIA")[i % 2]
        image = chest(64, 80, seed=i, kind="normal" if i % 2 == 0 else "bacterial").astype(np.uint16) * 16
        write(root / "src" / split / label / f"IM-{i:04d}-0001.dcm", image, patient=f"PAT-{i}", center=2048, width=4096)
    out = root / "dicom16.h5"
    xraycache.build(root / "src", out, size=32, jobs=1, dtype="uint16", keep_identifiers=True)
    return out


@pytest.fixture(scope="session")
def multilabel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An NIH-style multi-label cache (8-bit PNGs, a CSV with ``|``-joined findings, patient-level resplit)."""
    import xraycache

    root = tmp_path_factory.mktemp("nih")
    rng = np.random.default_rng(7)
    lines = ["Image Index,Finding Labels,Patient ID"]
    for i in range(30):
        name = f"{i:08d}_000.png"
        write_image(root / "src" / f"images_{1 + i % 2:03d}" / "images" / name, radiograph(48, 48, 100 + i), fmt="PNG")
        found = [f for f in FINDINGS[:3] if rng.random() < 0.4] or ["No Finding"]
        lines.append(f"{name},{'|'.join(found)},{i}")
    (root / "Data_Entry.csv").write_text("\n".join(lines) + "\n")
    out = root / "nih.h5"
    xraycache.build(
        root / "src",
        out,
        size=32,
        jobs=1,
        labels=root / "Data_Entry.csv",
        path_col="Image Index",
        label_col="Finding Labels",
        label_sep="|",
        patient_col="Patient ID",
        resplit="0.6,0.2,0.2",
    )  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="session")
def sharded_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache written in 2 shards joined by virtual datasets (no memmap path): train 16, val 8; 32 x 32."""
    import xraycache

    root = tmp_path_factory.mktemp("sharded")
    for i in range(24):
        split, label = ("train" if i % 3 else "val"), ("NORMAL", "PNEUMONIA")[i % 2]
        name = f"IM-{i:04d}-0001.jpeg" if label == "NORMAL" else f"person{i}_bacteria_{i}.jpeg"
        write_image(root / "src" / split / label / name, radiograph(50 + i, 40 + i, 200 + i))
    out = root / "sharded.h5"
    xraycache.build(root / "src", out, size=32, jobs=1, shards=2)
    return out
