"""Shared helpers: the dataset's files and digest, the machine, medians, and small generated data.

Everything here is cheap and import-light, because it is imported by the benchmark worker that each
virtual environment (Pillow-SIMD, stock Pillow) runs side by side.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def compile_package() -> None:
    """Write the bytecode of the xraycache that runs, as ``pip install .`` does when it installs it.

    An editable install (or PYTHONPATH=the checkout) under PYTHONDONTWRITEBYTECODE=1 would otherwise compile
    every module from source in every process timed (~70 ms of a build's start-up here), which no installed
    copy pays."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("xraycache")
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(str(Path(spec.origin).parent), quiet=1)


def list_images(root: str | os.PathLike[str]) -> list[str]:
    """Every image file under ROOT, sorted, as absolute paths (the same order in every process)."""
    found = []
    for dirpath, _, names in os.walk(root):
        found.extend(os.path.join(dirpath, n) for n in names if n.lower().endswith(IMAGE_SUFFIXES))
    return sorted(found)


def data_digest(root: str | os.PathLike[str]) -> dict[str, object]:
    """Identify a dataset without hashing its pixels: sha256 over sorted (relative name, size) pairs."""
    files = list_images(root)
    digest = hashlib.sha256()
    total = 0
    for path in files:
        size = os.path.getsize(path)
        total += size
        digest.update(f"{os.path.relpath(path, root)}\0{size}\n".encode())
    return {"path": str(root), "files": len(files), "bytes": total, "sha256": digest.hexdigest()[:16]}


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (0.0 for an empty one, so a skipped figure stays numeric)."""
    return float(statistics.median(values)) if values else 0.0


def machine_info() -> dict[str, object]:
    """CPU model, cores, RAM, OS and Python: what every figure was measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = 0
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": model,
        "cores": os.cpu_count() or 1,
        "ram_gb": round(ram / 1e9, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def git_commit(repo: str | os.PathLike[str]) -> str:
    """Short commit of REPO's HEAD, with ``+dirty`` when tracked files are modified."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=repo, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _small_xray(rng: np.random.Generator, side: int) -> bytes:
    """One small radiograph-like grayscale JPEG: smooth body and lungs plus grain (fast to draw)."""
    from PIL import Image

    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    img = 40 + 120 * np.exp(-(((yy - 0.6) / 0.5) ** 2 + ((xx - 0.5) / 0.42) ** 2))
    for cx in (0.33, 0.67):
        img -= 50 * np.exp(-(((yy - 0.5) / 0.25) ** 2 + ((xx - cx + rng.uniform(-0.03, 0.03)) / 0.12) ** 2))
    img += 20 * np.sin(yy * 60 + rng.uniform(0, 6.28)) * (img > 80)
    img += rng.standard_normal((side, side)).astype(np.float32) * 4
    buffer = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_small_dataset(directory: str | os.PathLike[str], n: int, side: int = 320, seed: int = 0) -> Path:
    """Write N small generated JPEGs under ``DIR/chest_xray/train/{NORMAL,PNEUMONIA}``; returns that root.

    Why not :func:`xraycache.sample.write_sample`: it draws large images (~13 s per 600), too slow for
    the 10,000- and 35,000-image memory and load runs. Here 64 distinct images are drawn and their
    bytes written round-robin, so tens of thousands of files take seconds; the build decodes each
    file independently, so repetition does not flatter its speed.
    """
    root = Path(directory) / "chest_xray"
    rng = np.random.default_rng(seed)
    blobs = [_small_xray(rng, side) for _ in range(min(64, n))]
    for folder in ("NORMAL", "PNEUMONIA"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rel = f"train/NORMAL/IM-{i:06d}-0001.jpeg" if i % 3 == 0 else f"train/PNEUMONIA/person{i}_bacteria_{i}.jpeg"
        (root / rel).write_bytes(blobs[i % len(blobs)])
    return root


def append_record(history: Path, record: dict[str, Any]) -> None:
    """Append one run's record to a JSON-lines history file (made, with its folder, if missing)."""
    history.parent.mkdir(parents=True, exist_ok=True)
    with open(history, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
