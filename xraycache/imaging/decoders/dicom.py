"""DICOM decoder plugin (optional extra ``xraycache[dicom]``): recognise and decode single radiographs.

Pixels follow the order the standard gives (PS3.3 C.11, PS3.4 N.2): stored values -> Modality LUT
(rescale slope/intercept or a Modality LUT sequence) -> VOI LUT sequence or window centre/width (LINEAR,
LINEAR_EXACT, SIGMOID) -> MONOCHROME1 inverted, so bone is bright as in every other image. Which VOI is
used is the high-bit policy of ``window.py``. The window is applied at full resolution, then the image is
low-pass resized like any other. The header's patient and study identifiers are read here too
(``read_identifiers``); the build turns them into pseudonyms.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import DecodeError
from ...core.files import open_regular
from ...core.options import ResizeOptions
from ..resize import resize
from ..result import DecodedPixels
from ..window import linear_window, robust_range

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
PREAMBLE = 128
MAGIC = b"DICM"
INSTALL_HINT = "pip install 'xraycache[dicom]'"
HEADER_TAGS = ("PatientID", "StudyInstanceUID")


# -- recognising a DICOM file -----------------------------------------------------------


def has_preamble(data: bytes) -> bool:
    """A DICOM Part 10 file: 128-byte preamble then ``DICM``."""
    return data[PREAMBLE : PREAMBLE + 4] == MAGIC


def looks_like_raw_dataset(data: bytes) -> bool:
    """A DICOM dataset without preamble and file meta (older archives write these): first tag in group 0008."""
    if len(data) < 8 or data[:2] != b"\x08\x00" or data[3] != 0:
        return False
    vr = data[4:6]
    return (vr.isalpha() and vr.isupper()) or int.from_bytes(data[4:8], "little") < 1 << 16


def sniff_file(path: str | os.PathLike[str]) -> bool:
    """Whether a file without an image suffix is DICOM (preamble, or a raw dataset); reads 132 bytes."""
    try:
        handle, _ = open_regular(path)  # a FIFO or a device is never sniffed (it could block or never end)
        with handle:
            head = handle.read(PREAMBLE + 4)
    except (OSError, DecodeError):
        return False
    return has_preamble(head) or looks_like_raw_dataset(head)


def is_dicom(path: str | os.PathLike[str], data: bytes) -> bool:
    """Decide by content first (preamble or raw dataset), then by a .dcm/.dicom suffix."""
    return has_preamble(data) or looks_like_raw_dataset(data) or Path(path).suffix.lower() in DICOM_SUFFIXES


NAME = "DICOM"
REQUIRES = "pydicom"
MISSING = f"DICOM file, but pydicom is not installed ({INSTALL_HINT})"


def available() -> bool:
    """Whether pydicom is installed (DICOM files are skipped with the install hint otherwise).

    Looked up, not imported: importing pydicom takes ~0.15 s, which ``--version`` (and a build of JPEGs
    only) need not pay; it is imported by the first DICOM decode.
    """
    if "pydicom" in sys.modules:
        return sys.modules["pydicom"] is not None
    try:
        return importlib.util.find_spec("pydicom") is not None
    except (ImportError, ValueError):
        return False


def claims(path: str | os.PathLike[str], data: bytes) -> bool:
    """This plugin decodes ``data``: DICOM content, or a .dcm/.dicom/.dic name."""
    return is_dicom(path, data)


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise DecodeError(MISSING) from None
    return pydicom


def read_identifiers(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(PatientID, StudyInstanceUID) from a DICOM header, without reading the pixels; ("", "") if unreadable."""
    pydicom = _pydicom()
    try:
        handle, _ = open_regular(path)  # a FIFO or /dev/zero named .dcm would block or never end
    except (OSError, DecodeError):
        return "", ""  # the decoder then skips the file with its reason
    try:
        with handle:
            ds = pydicom.dcmread(handle, force=True, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
    except Exception:
        return "", ""
    return str(ds.get("PatientID", "") or "").strip(), str(ds.get("StudyInstanceUID", "") or "").strip()


# -- pixels -----------------------------------------------------------------------------


def _first(value: Any) -> float:
    """A possibly multi-valued DS/IS element -> its first value as float."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def voi_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Window centre/width to [0, 1] as PS3.3 C.11.2.1.2 defines it (LINEAR, LINEAR_EXACT, SIGMOID): one
    new float64 array, each step done in place in it (the same arithmetic, without full-size temporaries)."""
    function = (function or "LINEAR").upper()
    if function == "LINEAR" and width < 1:
        raise DecodeError(f"window width {width:g} is below 1 (LINEAR)")
    x = values.astype(np.float64)
    if function == "SIGMOID":
        x -= center
        x *= -4.0
        x /= width
        np.clip(x, -700, 700, out=x)
        np.exp(x, out=x)
        x += 1.0
        return np.divide(1.0, x, out=x)
    if function == "LINEAR_EXACT":
        x -= center
        x /= width
    else:
        x -= center - 0.5
        x /= width - 1
    x += 0.5
    return np.clip(x, 0.0, 1.0, out=x)


def _voi(ds: Any, values: np.ndarray) -> tuple[np.ndarray, str] | None:
    """The file's own VOI applied to modality values -> ([0, 1], description), or None when it has none."""
    sequence = ds.get("VOILUTSequence")
    if sequence:
        from pydicom.pixels import apply_voi

        item = sequence[0]
        integral = bool(np.all(values == np.round(values)))  # the LUT indexes integers; floats only after a rescale
        lut_out = np.asarray(apply_voi(values.astype(np.int64) if integral else values, ds, index=0), dtype=np.float64)
        lut = np.asarray(item.LUTData if isinstance(item.LUTData, (list, tuple)) else [item.LUTData])
        if lut.size > 1:
            low, high = float(lut.min()), float(lut.max())
        else:  # LUTData read as bytes: use the declared bit depth
            bits = int(item.LUTDescriptor[2])
            low, high = 0.0, float(2**bits - 1)
        return linear_window(lut_out, low, high), "dicom VOI LUT sequence"
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
        if width <= 0:
            return None
        return voi_window(values, center, width, function), f"dicom window {center:g}/{width:g} {function.lower()}"
    return None


def _skip_reason(ds: Any, max_pixels: int) -> str | None:
    """Why this dataset is not a single radiograph this build can take, or None."""
    if "PixelData" not in ds:
        other = "float" if ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds) else "no"
        sop = ds.get("SOPClassUID")
        kind = f" ({sop.name})" if sop is not None and hasattr(sop, "name") else ""
        return f"non-image DICOM{kind}: {other} pixel data"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return f"multi-frame DICOM ({frames} frames): not a single radiograph"
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols == 0:
        return "DICOM image with no rows or columns"
    if rows * cols > max_pixels:
        return f"{cols}x{rows} px is over the pixel limit of {max_pixels:,}"
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        return "PALETTE COLOR DICOM: not a radiograph"
    return None


def provenance(ds: Any) -> dict[str, Any]:
    """The per-image provenance columns a DICOM file fills."""
    return {
        "format": "DICOM",
        "modality": str(ds.get("Modality", "") or ""),
        "view_position": str(ds.get("ViewPosition", "") or ""),
        "photometric": str(ds.get("PhotometricInterpretation", "") or ""),
        "bits_stored": int(ds.get("BitsStored", 0) or 0),
    }


def decode(data: bytes, spec: ResizeOptions) -> DecodedPixels:
    """Decode a DICOM file's bytes to stored pixels and provenance; DecodeError with the reason it is skipped."""
    pydicom = _pydicom()
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise DecodeError(f"unreadable DICOM: {exc}") from None
    reason = _skip_reason(ds, spec.max_pixels)
    if reason:
        raise DecodeError(reason)
    if "TransferSyntaxUID" not in ds.file_meta:  # raw dataset: pydicom guessed the encoding while reading
        implicit = bool(getattr(ds, "is_implicit_VR", True))
        little = bool(getattr(ds, "is_little_endian", True))
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else (pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
        )
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        stored = ds.pixel_array
    except Exception as exc:
        name = getattr(syntax, "name", str(syntax))
        if syntax.is_compressed:
            raise DecodeError(f"cannot decode {name} pixel data ({INSTALL_HINT} installs decoders): {exc}") from None
        raise DecodeError(f"corrupt or truncated DICOM pixel data: {exc}") from None
    # the encoded pixels (a copy of the file's bytes, as large as it) are not needed any more: the decoded
    # array holds its own copy
    if not np.may_share_memory(stored, np.frombuffer(ds.PixelData, dtype=np.uint8)):
        del ds.PixelData
    info = provenance(ds)
    height, width = int(stored.shape[0]), int(stored.shape[1])
    photometric = info["photometric"] or "MONOCHROME2"
    if stored.ndim == 3:  # RGB / YBR (pydicom gives RGB): luma, like a colour JPEG, never windowed
        top = float(2 ** int(ds.get("BitsStored", 8) or 8) - 1)
        info["window"] = "none (colour)"
        return DecodedPixels(resize(_luma(stored, top), spec), width, height, "RGB", info)
    # modality values as they come (the stored integers unless the file rescales them): converted to float64
    # where a window needs them, once, not kept beside a float64 copy (8 bytes a pixel each)
    values = np.asarray(apply_modality_lut(stored, ds))
    del stored
    unit, how = _render_gray(ds, values, spec)
    if photometric == "MONOCHROME1":
        unit = np.subtract(1.0, unit, out=unit)
        how += ", inverted (MONOCHROME1)"
    info["window"] = how
    bits = info["bits_stored"] or 8
    mode = "L" if bits <= 8 else ("I" if int(ds.get("PixelRepresentation", 0) or 0) else "I;16")
    return DecodedPixels(resize(unit, spec), width, height, mode, info)


LUMA_ROWS = 256  # rows of a colour image converted to luma at a time


def _luma(rgb: np.ndarray, top: float) -> np.ndarray:
    """(H, W, 3) colour values -> (H, W) ITU-R 601 luma in [0, 1] (``top`` maps to 1), float64. A block of
    rows at a time, so that no full-size float64 colour copy (24 bytes a pixel) or temporary exists: the same
    arithmetic per pixel as on the whole image."""
    unit = np.empty(rgb.shape[:2], dtype=np.float64)
    for start in range(0, len(rgb), LUMA_ROWS):
        block = rgb[start : start + LUMA_ROWS].astype(np.float64)
        unit[start : start + LUMA_ROWS] = block[..., 0] * 0.299 + block[..., 1] * 0.587 + block[..., 2] * 0.114
    unit /= top
    return np.clip(unit, 0, 1, out=unit)


def _render_gray(ds: Any, values: np.ndarray, spec: ResizeOptions) -> tuple[np.ndarray, str]:
    """Modality values -> [0, 1] by the window policy."""
    if spec.window in ("auto", "dicom"):
        applied = _voi(ds, values)
        if applied is not None:
            return applied
        if spec.window == "dicom":
            raise DecodeError("no VOI LUT or window centre/width in the file (--window dicom)")
        bits = int(ds.get("BitsStored", 16) or 16)
        if bits <= 8 and values.min() >= 0 and values.max() <= 255:  # 8-bit data: never re-windowed
            return values / 255.0, "none (8-bit)"
    how = "minmax" if spec.window == "minmax" else "percentile"
    low, high = robust_range(values, how)
    return linear_window(values, low, high), f"{how} {low:g}-{high:g}"


def maybe_dicom_name(name: str) -> bool:
    """Names DICOM files often have without a .dcm suffix: none at all, or a UID (``1.2.840.113619.2.55``)."""
    suffix = Path(name).suffix
    return suffix == "" or suffix[1:].isdigit()
