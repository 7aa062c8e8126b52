"""Write small synthetic DICOM files with pydicom, for the DICOM, high-bit and leakage tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def dataset(
    stored: np.ndarray | None,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    signed: bool = False,
    slope: float | None = None,
    intercept: float | None = None,
    center: float | Sequence[float] | None = None,
    width: float | Sequence[float] | None = None,
    function: str | None = None,
    voi_lut: tuple[int, int, Sequence[int]] | None = None,  # (first mapped value, bits, data)
    patient: str = "PAT-0001",
    study: str | None = None,
    modality: str = "CR",
    view: str = "PA",
    frames: int = 1,
    sop_class: str = CR_IMAGE_STORAGE,
) -> Dataset:
    """A DICOM dataset holding ``stored`` (rows, cols) as 16-bit words (or (frames, rows, cols))."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = patient
    ds.PatientName = "Doe^Jane"
    ds.StudyInstanceUID = study or generate_uid()
    ds.Modality = modality
    if view:
        ds.ViewPosition = view
    if stored is None:
        return ds
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
        ds.RescaleType = "US"
    if center is not None:
        ds.WindowCenter = list(center) if isinstance(center, Sequence) else center
        ds.WindowWidth = list(width) if isinstance(width, Sequence) else width  # type: ignore[arg-type]
    if function:
        ds.VOILUTFunction = function
    if voi_lut is not None:
        first, bits, data = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(data), first, bits]
        item.LUTData = list(data)
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = DicomSequence([item])
    dtype = np.int16 if signed else np.uint16
    ds.PixelData = np.ascontiguousarray(stored, dtype=dtype).tobytes()
    return ds


def save(ds: Dataset, path: Path, *, file_meta: bool = True, syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` as a Part 10 file (preamble + file meta), or as a raw implicit-VR dataset without them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_meta:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = syntax
        ds.file_meta = meta
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


def write(path: Path, stored: np.ndarray | None, *, file_meta: bool = True, **kwargs: Any) -> Path:
    """``save(dataset(stored, **kwargs), path)``."""
    return save(dataset(stored, **kwargs), path, file_meta=file_meta)


def chest(width: int = 96, height: int = 112, seed: int = 0, kind: str = "normal") -> np.ndarray:
    """A chest-like 8-bit image (bone and mediastinum bright, lungs dark), drawn by xraycache.sample."""
    from xraycache.sample import SampleImage, draw

    return draw(SampleImage("chest.dcm", kind, width, height, False, seed))
