"""A worker's memory per pixel: the largest sources a build takes are decoded within a bound per pixel of the
image (``docs/reliability.md`` states it per pixel of ``--max-pixels``), measured as the peak RSS of a fresh
process around one decode, with margins over what was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")
from _dicom import dataset, save  # noqa: E402
from pydicom.uid import RLELossless  # noqa: E402

needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
SIDE = 4000  # 16 MP: large enough that the image's arrays dwarf everything else in the process
# The peak is the process's own high-water mark (VmHWM, reset by exec): ru_maxrss of a child starts at its
# parent's size when it was forked, here the size of pytest.
HARNESS = """
import json, sys
from xraycache.core.options import ResizeOptions
from xraycache.imaging.decode import decode_file
import pydicom, pydicom.pixels  # imported before the baseline: their code is no part of the image's cost
def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
before = peak_kb()
result = decode_file(sys.argv[1], ResizeOptions(size=256))
after = peak_kb()
print(json.dumps({"extra_kb": after - before, "shape": list(result.pixels.shape)}))
"""


def _bands() -> np.ndarray:
    """A (SIDE, SIDE) uint8 image of horizontal bands: long runs, as RLE compresses a radiograph's border."""
    rows = np.arange(SIDE)[:, None]
    return np.broadcast_to(((rows // 50) * 37 % 256).astype(np.uint8), (SIDE, SIDE))


def _rgb_dicom(path: Path, bits: int, rle: bool) -> Path:
    ds = dataset(None)
    ds.Rows = ds.Columns = SIDE
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    bands = _bands()
    rgb = np.stack([bands, bands // 2, 255 - bands], axis=-1).astype(np.uint8 if bits == 8 else np.uint16)
    ds.PixelData = (rgb if bits == 8 else rgb * np.uint16(200)).tobytes()
    save(ds, path)
    if rle:
        compressed = pydicom.dcmread(path)
        compressed.compress(RLELossless)
        compressed.save_as(path)
    return path


def _gray16(path: Path, dicom: bool) -> Path:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    values = ((xx * 5 + yy * 11) % 4001).astype(np.uint16)
    if dicom:
        return save(dataset(values, center=2000, width=3000), path)
    Image.fromarray(values).save(path)
    return path


# (maker, bound in bytes a pixel): measured at 16 MP, 13.6-14.2 bytes a pixel for the first three and 23.1
# for the raw 16-bit colour file (whose bytes alone are 6 a pixel); before the pipeline was made lean the
# same decodes took 20.2, 38.0, 66.0 and (at 64 MP) 49
CASES = {
    "rgb_rle.dcm": (lambda p: _rgb_dicom(p, 8, rle=True), 20),
    "gray16.png": (lambda p: _gray16(p, dicom=False), 17),
    "gray16_window.dcm": (lambda p: _gray16(p, dicom=True), 20),
    "rgb16_raw.dcm": (lambda p: _rgb_dicom(p, 16, rle=False), 30),
}


@pytest.mark.slow
@needs_proc
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_large_image_is_decoded_within_its_bytes_per_pixel(name: str, tmp_path: Path) -> None:
    make, bound = CASES[name]
    path = make(tmp_path / name)
    done = subprocess.run([sys.executable, "-c", HARNESS, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["shape"] == [256, 256]
    per_pixel = result["extra_kb"] * 1024 / SIDE**2
    assert per_pixel <= bound, f"{name}: {per_pixel:.1f} bytes a pixel (bound {bound})"
