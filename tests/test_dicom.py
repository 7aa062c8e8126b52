"""DICOM input: the standard pixel pipeline, checked value by value, and what a build records and skips."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from _dicom import BASIC_TEXT_SR, chest, dataset, save, write  # noqa: E402

import xraycache  # noqa: E402
from xraycache.builder.identifiers import key_id, pseudonym  # noqa: E402
from xraycache.core.errors import DecodeError  # noqa: E402
from xraycache.core.options import ResizeOptions  # noqa: E402
from xraycache.imaging.decode import decode_file  # noqa: E402
from xraycache.imaging.decoders.dicom import is_dicom, voi_window  # noqa: E402

KEY = "test-key"
SIDE = 16  # images are SIDE x SIDE and built at --size SIDE: the resize is the identity, values are exact


@pytest.fixture(autouse=True)
def _pseudonym_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XRAYCACHE_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def ramp(low: int = 0, high: int = 4095) -> np.ndarray:
    """SIDE x SIDE stored values rising left to right, top to bottom, from low to high."""
    return np.linspace(low, high, SIDE * SIDE).round().astype(np.uint16).reshape(SIDE, SIDE)


def decode(path: Path, **spec: object) -> tuple[np.ndarray, dict[str, object]]:
    image = decode_file(path, ResizeOptions(size=SIDE, **spec))  # type: ignore[arg-type]
    return image.pixels, image.info


def quantize(unit: np.ndarray, top: int = 255) -> np.ndarray:
    return np.clip(unit * top + 0.5, 0, top).astype(np.uint8 if top == 255 else np.uint16)


def linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR window, written out independently of the code under test."""
    x = values.astype(np.float64)
    out = (x - (center - 0.5)) / (width - 1) + 0.5
    out[x <= center - 0.5 - (width - 1) / 2] = 0.0
    out[x > center - 0.5 + (width - 1) / 2] = 1.0
    return out


def test_window_center_width_monochrome2(tmp_path: Path) -> None:
    stored = ramp()
    path = write(tmp_path / "a.dcm", stored, center=1500, width=1000)
    pixels, info = decode(path)
    np.testing.assert_array_equal(pixels, quantize(linear(stored, 1500, 1000)))
    assert info["window"] == "dicom window 1500/1000 linear"
    assert info["photometric"] == "MONOCHROME2" and info["bits_stored"] == 12


def test_monochrome1_is_inverted_after_the_window(tmp_path: Path) -> None:
    stored = ramp()
    path = write(tmp_path / "a.dcm", stored, photometric="MONOCHROME1", center=1500, width=1000)
    pixels, info = decode(path)
    np.testing.assert_array_equal(pixels, quantize(1.0 - linear(stored, 1500, 1000)))
    assert pixels[0, 0] == 255 and pixels[-1, -1] == 0  # low stored values are white in MONOCHROME1
    assert "inverted (MONOCHROME1)" in str(info["window"])


def test_rescale_slope_intercept_comes_before_the_window(tmp_path: Path) -> None:
    stored = ramp()
    # modality values = 2 * stored - 1024; the window is given in modality units, as the standard says
    path = write(tmp_path / "a.dcm", stored, slope=2, intercept=-1024, center=2000, width=3000)
    pixels, _ = decode(path)
    np.testing.assert_array_equal(pixels, quantize(linear(2.0 * stored - 1024, 2000, 3000)))


def test_voi_lut_sequence_wins_over_window_values(tmp_path: Path) -> None:
    stored = ramp(0, 255).astype(np.uint16)
    lut = [min(4095, 3 * i * 16) for i in range(256)]  # steeper than linear, saturating at 4095
    path = write(tmp_path / "a.dcm", stored, bits_stored=8, voi_lut=(0, 12, lut), center=128, width=256)
    pixels, info = decode(path)
    expected = np.array(lut, dtype=np.float64)[stored] / max(lut)
    np.testing.assert_array_equal(pixels, quantize(expected))
    assert info["window"] == "dicom VOI LUT sequence"


def test_sigmoid_voi_function() -> None:
    values = np.array([0.0, 1000.0, 2000.0])
    out = voi_window(values, 1000, 500, "SIGMOID")
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-4 * (values - 1000) / 500)))


def test_twelve_bits_without_voi_use_the_percentile_window(tmp_path: Path) -> None:
    stored = ramp(100, 3000)
    path = write(tmp_path / "a.dcm", stored)
    pixels, info = decode(path)
    low, high = np.percentile(stored.astype(np.float64), (0.5, 99.5))
    np.testing.assert_array_equal(pixels, quantize(np.clip((stored - low) / (high - low), 0, 1)))
    assert str(info["window"]).startswith("percentile ")
    minmax, info = decode(path, window="minmax")
    np.testing.assert_array_equal(minmax, quantize((stored - 100.0) / 2900.0))
    assert info["window"] == "minmax 100-3000"


def test_window_policy_dicom_and_minmax_override(tmp_path: Path) -> None:
    stored = ramp()
    with_voi = write(tmp_path / "voi.dcm", stored, center=1500, width=1000)
    without = write(tmp_path / "plain.dcm", stored)
    assert decode(with_voi, window="dicom")[1]["window"] == "dicom window 1500/1000 linear"
    with pytest.raises(DecodeError, match="no VOI LUT or window"):
        decode(without, window="dicom")
    pixels, info = decode(with_voi, window="minmax")  # the file's VOI is ignored on request
    np.testing.assert_array_equal(pixels, quantize(stored / 4095.0))
    assert info["window"] == "minmax 0-4095"


def test_uint16_output_keeps_the_depth(tmp_path: Path) -> None:
    stored = ramp()
    path = write(tmp_path / "a.dcm", stored)
    pixels, _ = decode(path, window="minmax", dtype="uint16")
    assert pixels.dtype == np.uint16
    np.testing.assert_array_equal(pixels, quantize(stored / 4095.0, 65535))


def test_signed_pixels(tmp_path: Path) -> None:
    stored = (ramp().astype(np.int32) - 2048).astype(np.int16)
    path = write(tmp_path / "a.dcm", stored, signed=True, center=0, width=2048)
    pixels, _ = decode(path)
    np.testing.assert_array_equal(pixels, quantize(linear(stored, 0, 2048)))


def test_raw_dataset_without_file_meta_and_without_suffix(tmp_path: Path) -> None:
    stored = ramp()
    path = write(tmp_path / "IM0001", stored, file_meta=False, center=1500, width=1000)
    data = path.read_bytes()
    assert data[128:132] != b"DICM" and is_dicom(path, data)
    pixels, _ = decode(path)
    np.testing.assert_array_equal(pixels, quantize(linear(stored, 1500, 1000)))


def test_multiframe_and_non_image_are_skipped_with_a_reason(tmp_path: Path) -> None:
    frames = np.stack([ramp(), ramp()])
    multi = write(tmp_path / "multi.dcm", frames, frames=2)
    with pytest.raises(DecodeError, match=r"multi-frame DICOM \(2 frames\)"):
        decode(multi)
    report = save(dataset(None, sop_class=BASIC_TEXT_SR, modality="SR"), tmp_path / "report.dcm")
    with pytest.raises(DecodeError, match=r"non-image DICOM.*no pixel data"):
        decode(report)


def test_rle_compressed_decodes_like_uncompressed(tmp_path: Path) -> None:
    stored = ramp()
    plain = write(tmp_path / "plain.dcm", stored, center=1500, width=1000)
    ds = pydicom.dcmread(plain)
    ds.compress(pydicom.uid.RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    np.testing.assert_array_equal(decode(tmp_path / "rle.dcm")[0], decode(plain)[0])


def test_jpeg2000_compressed_decodes_like_uncompressed(tmp_path: Path) -> None:
    pytest.importorskip("openjpeg")  # pylibjpeg-openjpeg (MIT): encoder and decoder
    stored = np.kron(ramp(), np.ones((4, 4), dtype=np.uint16))  # 64 x 64: J2K needs room for its resolutions
    plain = write(tmp_path / "plain.dcm", stored, center=1500, width=1000)
    ds = pydicom.dcmread(plain)
    ds.compress(pydicom.uid.JPEG2000Lossless)
    ds.save_as(tmp_path / "j2k.dcm")
    np.testing.assert_array_equal(decode(tmp_path / "j2k.dcm")[0], decode(plain)[0])


def test_pseudonyms_are_keyed_and_stable() -> None:
    a = pseudonym("PAT-1", b"k1")
    assert a == pseudonym("PAT-1", b"k1") and a.startswith("p-") and len(a) == 18
    assert a != pseudonym("PAT-1", b"k2") and a != pseudonym("PAT-2", b"k1")
    assert pseudonym("", b"k1") == "" and pseudonym("1.2.3", b"k1", "study").startswith("s-")
    assert key_id(b"k1") != key_id(b"k2") and "k1" not in key_id(b"k1")


def _folder(tmp_path: Path) -> Path:
    """A DICOM folder in the Kaggle-like layout: every variant the build has to handle."""
    src = tmp_path / "src"
    image = chest(64, 80).astype(np.uint16) * 16  # 12-bit, bone bright
    write(src / "train/NORMAL/a.dcm", image, patient="PAT-A", study="1.2.3.1", center=2048, width=4096)
    write(src / "train/NORMAL/b.dcm", 4095 - image, patient="PAT-A", photometric="MONOCHROME1")
    write(src / "train/PNEUMONIA/IM0007", image, patient="PAT-B", file_meta=False, view="AP")
    write(src / "train/PNEUMONIA/c.dcm", image, slope=2, intercept=-1024, patient="PAT-C")
    write(src / "test/NORMAL/multi.dcm", np.stack([image, image]), frames=2, patient="PAT-D")
    save(dataset(None, sop_class=BASIC_TEXT_SR, modality="SR"), src / "test/NORMAL/sr.dcm")
    write(src / "test/PNEUMONIA/d.dcm", image, patient="PAT-E", view="LL", modality="DX")
    (src / "test/PNEUMONIA/notes.txt").write_text("not an image")
    return src


def test_build_a_dicom_folder(tmp_path: Path) -> None:
    src = _folder(tmp_path)
    out = tmp_path / "d.h5"
    report = xraycache.build(src, out, size=32, jobs=1)
    reasons = {row["path"]: row["reason"] for row in report.skipped}
    assert set(reasons) == {"test/NORMAL/multi.dcm", "test/NORMAL/sr.dcm"}
    assert "multi-frame" in reasons["test/NORMAL/multi.dcm"] and "non-image" in reasons["test/NORMAL/sr.dcm"]
    assert report.ignored == ["test/PNEUMONIA/notes.txt"]
    with xraycache.open(out) as cache:
        train = cache["train"]
        meta = {name: list(train.meta[name]) for name in train.meta}
        assert meta["path"] == [
            "train/NORMAL/a.dcm",
            "train/NORMAL/b.dcm",
            "train/PNEUMONIA/IM0007",
            "train/PNEUMONIA/c.dcm",
        ]
        assert meta["format"] == ["DICOM"] * 4
        assert meta["photometric"] == ["MONOCHROME2", "MONOCHROME1", "MONOCHROME2", "MONOCHROME2"]
        assert meta["view_position"] == ["PA", "PA", "AP", "PA"] and meta["bits_stored"] == [12] * 4
        assert meta["modality"] == ["CR"] * 4 and cache["test"].meta["modality"][0] == "DX"
        # identifiers: keyed pseudonyms, the same patient twice gets the same one, the raw id is nowhere
        assert meta["patient"][0] == meta["patient"][1] == pseudonym("PAT-A", KEY.encode())
        assert meta["study"][0] == pseudonym("1.2.3.1", KEY.encode(), "study")
        assert all("PAT" not in p for p in meta["patient"]) and cache.attrs["identifiers"] == "pseudonymised"
        assert cache.attrs["pseudonym_key_id"] == key_id(KEY.encode())
        images = train.images[:]
        # a (VOI window) and b (MONOCHROME1, percentile) show the same chest, bone bright in both
        assert np.corrcoef(images[0].ravel(), images[1].ravel())[0, 1] > 0.99
        for image in images:
            assert image[16, 16] > image[16, 10] + 30  # spine brighter than the lung field beside it
    assert b"PAT-A" not in out.read_bytes()


def test_keep_identifiers(tmp_path: Path) -> None:
    src = _folder(tmp_path)
    out = tmp_path / "d.h5"
    xraycache.build(src, out, size=16, jobs=1, keep_identifiers=True)
    with xraycache.open(out) as cache:
        assert list(cache["train"].meta["patient"][:2]) == ["PAT-A", "PAT-A"]
        assert cache.attrs["identifiers"] == "kept" and cache.attrs["pseudonym_key_id"] == ""


def test_key_file_is_made_once_when_no_key_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XRAYCACHE_PSEUDONYM_KEY")
    src = _folder(tmp_path)
    xraycache.build(src, tmp_path / "1.h5", size=16, jobs=1)
    key_file = tmp_path / "config/xraycache/pseudonym.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    xraycache.build(src, tmp_path / "2.h5", size=16, jobs=1)
    with xraycache.open(tmp_path / "1.h5") as one, xraycache.open(tmp_path / "2.h5") as two:
        assert list(one["train"].meta["patient"]) == list(two["train"].meta["patient"])


def test_changed_window_is_a_changed_setting(tmp_path: Path) -> None:
    src = _folder(tmp_path)
    out = tmp_path / "d.h5"
    xraycache.build(src, out, size=16, jobs=1)
    assert xraycache.build(src, out, size=16, jobs=1).mode == "unchanged"
    with pytest.raises(xraycache.InputError, match="window 'auto' -> 'minmax'"):
        xraycache.build(src, out, size=16, jobs=1, window="minmax")


@pytest.mark.skipif(shutil.which("h5ls") is None, reason="hdf5-tools (h5ls, h5dump) not installed")
def test_hdf5_tools_read_the_file(tmp_path: Path) -> None:
    out = tmp_path / "d.h5"
    xraycache.build(_folder(tmp_path), out, size=16, jobs=1, dtype="uint16", folds=3)
    listing = subprocess.run(["h5ls", "-r", str(out)], capture_output=True, text=True, check=True).stdout
    assert "/train/images" in listing and "/train/meta/view_position" in listing
    header = subprocess.run(["h5dump", "-H", str(out)], capture_output=True, text=True, check=True).stdout
    assert "H5T_STD_U16LE" in header


def test_rsna_style_flat_dicoms_with_csv_by_id(tmp_path: Path) -> None:
    src = tmp_path / "stage_2_train_images"
    image = chest(48, 48).astype(np.uint16) * 16
    ids = ["0004cfab-14fd", "00313ee0-9eaa", "00322d4d-1c29"]
    for index, pid in enumerate(ids):
        write(src / f"{pid}.dcm", image, patient=pid, photometric="MONOCHROME1" if index else "MONOCHROME2")
    csv = tmp_path / "stage_2_train_labels.csv"
    rows = [f"{ids[0]},,,,,0", f"{ids[1]},264,152,213,379,1", f"{ids[1]},562,152,256,453,1", f"{ids[2]},,,,,0"]
    csv.write_text("patientId,x,y,width,height,Target\n" + "\n".join(rows) + "\n")
    out = tmp_path / "rsna.h5"
    report = xraycache.build(src, out, size=16, jobs=1, labels=csv, path_col="patientId", label_col="Target")
    assert report.skipped == [] and report.csv_rows_without_file == [] and report.label_names == ["0", "1"]
    with xraycache.open(out) as cache:
        split = cache["all"]
        assert split.labels.tolist() == [0, 1, 0]
        assert all(p.startswith("p-") for p in split.meta["patient"])  # DICOM PatientID, pseudonymised
