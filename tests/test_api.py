"""The Python API follows the protocols h5py, NumPy and torchvision users know: mappings, Python's own
exceptions, ``__array__``'s ``copy``, one default per reader output, explicit build keywords."""

from __future__ import annotations

import errno
import inspect
import pickle
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import xraycache
from xraycache.core.options import BuildOptions

ROOT = Path(__file__).resolve().parent.parent


# -- Cache is a Mapping[str, Split]; errors are Python's too ------------------------------------------


def test_cache_is_a_read_only_mapping_of_splits(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        assert isinstance(cache, Mapping)
        assert list(cache) == list(cache.keys()) == ["train", "val", "test"] == list(cache.splits)
        assert len(cache) == 3 and "val" in cache and "nope" not in cache
        assert [split.name for split in cache.values()] == ["train", "val", "test"]
        assert dict(cache.items())["val"] is cache["val"]
        assert cache.get("nope") is None and cache.get("val") is cache["val"]
        assert {cache: 1}[cache] == 1 and cache == cache  # hashable, equal to itself, as an h5py File
        with pytest.raises(KeyError) as missing:
            cache["nope"]
        assert isinstance(missing.value, xraycache.InputError)
        assert str(missing.value) == f"{reader_cache} has no split 'nope'; available: train, val, test"
        with pytest.raises(KeyError, match="no meta column 'nope'"):
            cache["train"].meta["nope"]
        with pytest.raises(KeyError, match="no label 'cat'"):
            cache["train"].label_index("cat")
    with pytest.raises(KeyError):
        xraycache.Split(reader_cache, "nope")


def test_opening_a_missing_file_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        xraycache.open(tmp_path / "nope.h5")
    assert isinstance(missing.value, xraycache.CacheNotFoundError)
    assert isinstance(missing.value, xraycache.InputError)
    assert missing.value.errno == errno.ENOENT
    assert str(missing.value).startswith(f"{tmp_path / 'nope.h5'}: no such file")


def test_index_past_the_end_is_an_index_error_and_iteration_stops(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        split = cache["val"]
        with pytest.raises(IndexError) as past:
            split.images[len(split)]
        assert isinstance(past.value, xraycache.InputError)
        assert "out of range for split 'val' of length 4" in str(past.value)
        with pytest.raises(IndexError):
            split.images[[0, -5]]
        with pytest.raises(IndexError):
            split.meta.row(4)
        images = list(split.images)
        assert len(images) == len(split) and all(image.shape == (32, 32) for image in images)
        np.testing.assert_array_equal(np.stack(images), split.images[:])


def test_array_protocol_honours_copy(reader_cache: Path) -> None:
    with xraycache.open(reader_cache) as cache:
        split = cache["val"]
        stored = split.images[:]
        np.testing.assert_array_equal(np.asarray(split.images), stored)
        np.testing.assert_array_equal(np.array(split.images, copy=True), stored)
        assert np.asarray(split.images, dtype=np.float32).dtype == np.float32
        with pytest.raises(ValueError, match="copy"):
            np.asarray(split.images, copy=False)  # a read always makes a new array, as h5py says


def test_the_cli_keeps_one_line_errors(reader_cache: Path) -> None:
    from xraycache.cli import app

    result = CliRunner().invoke(app, ["show", "image", str(reader_cache), "--split", "nope"])
    assert result.exit_code == 2
    assert "has no split 'nope'" in result.output and "Traceback" not in result.output


# -- one default per reader output ----------------------------------------------------------------------


def test_load_batches_and_the_dataset_give_the_same_arrays(reader_cache: Path) -> None:
    torch = pytest.importorskip("torch")
    from xraycache.torch import XrayDataset

    with xraycache.open(reader_cache) as cache:
        split = cache["train"]
        images, labels = split.load(channels=1, label_dtype=None)  # the defaults every reader will share
        assert images.shape == (40, 1, 32, 32) and images.dtype == np.uint8
        assert labels.dtype == np.int64
        xb, yb = next(split.batches(40, shuffle=False))  # batches() has them already
        np.testing.assert_array_equal(xb, images)
        assert xb.dtype == images.dtype and yb.dtype == labels.dtype
        as_float, _ = split.load(dtype="float32", channels=1, label_dtype=None)
        np.testing.assert_allclose(as_float, images / 255.0, atol=1e-7)
    dataset = XrayDataset(reader_cache, "train", dtype=None)
    image, label = dataset[5]
    assert image.dtype == torch.uint8 and image.shape == (1, 32, 32)
    np.testing.assert_array_equal(image.numpy(), images[5])
    assert label == labels[5]


def test_changing_defaults_warn_first_and_keep_todays_output(reader_cache: Path) -> None:
    pytest.importorskip("torch")
    from xraycache.torch import XrayDataset

    with xraycache.open(reader_cache) as cache:
        split = cache["train"]
        with pytest.warns(FutureWarning, match=r"Split.load\(\) will return images \(N, 1, H, W\) and int64"):
            images, labels = split.load()
        assert images.shape == (40, 32, 32) and labels.dtype == split.labels.dtype  # today's output
        kept, kept_labels = split.load(channels=None, label_dtype=split.labels.dtype)  # said: no warning
        np.testing.assert_array_equal(kept, images)
        assert kept_labels.dtype == labels.dtype
    with pytest.warns(FutureWarning, match="XrayDataset will return images as stored"):
        dataset = XrayDataset(reader_cache, "train")
    assert dataset[0][0].dtype.is_floating_point  # still float32 in this release


def test_torchvision_conventions(reader_cache: Path, multilabel_cache: Path) -> None:
    pytest.importorskip("torch")
    from xraycache.torch import XrayDataset

    dataset = XrayDataset(reader_cache, "train", dtype="float32")
    assert dataset.classes == ["normal", "pneumonia"]
    assert dataset.class_to_idx == {"normal": 0, "pneumonia": 1}
    with xraycache.open(reader_cache) as cache:
        assert dataset.targets == cache["train"].labels.tolist()
    assert all(type(t) is int for t in dataset.targets)
    assert dataset.targets.count(0) == 10 and dataset.targets.count(1) == 30
    label = dataset[0][1]
    assert type(label) is int and label == dataset.targets[0]
    multi = XrayDataset(multilabel_cache, "train", dtype="float32")
    assert multi.classes == list(multi.label_names)
    assert all(len(row) == len(multi.classes) and set(row) <= {0, 1} for row in multi.targets)
    np.testing.assert_array_equal(multi[2][1].numpy(), np.array(multi.targets[2], dtype=np.float32))
    assert pickle.loads(pickle.dumps(dataset)).class_to_idx == dataset.class_to_idx


# -- build(): every option a keyword, errors that name it ------------------------------------------------


def test_build_lists_every_option_as_a_keyword() -> None:
    names = [f.name for _, f in BuildOptions.fields()]
    parameters = inspect.signature(xraycache.build).parameters
    for name in names:
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert parameters["size"].default == 256 and parameters["jobs"].default == -1
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    doc = inspect.getdoc(xraycache.build) or ""
    for name in names:
        assert f"\n{name} : " in doc, name
    assert "Output side in pixels" in doc and "Parameters\n----------" in doc


def test_help_shows_every_option() -> None:
    text = subprocess.run(
        [sys.executable, "-c", "import xraycache; help(xraycache.build)"],
        capture_output=True,
        text=True,
        check=True,
        env={"PAGER": "cat", "PATH": "/usr/bin:/bin"},
    ).stdout
    for _, field in BuildOptions.fields():
        assert f"{field.name}: " in text or f"{field.name} : " in text, field.name


def test_the_typed_keywords_match_the_options() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_build_settings.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    from xraycache.core.build_settings import BuildSettings

    assert list(BuildSettings.__annotations__) == [f.name for _, f in BuildOptions.fields()]


def test_option_errors_name_the_keyword_in_python_and_the_flag_on_the_command_line(tmp_path: Path) -> None:
    from xraycache.cli import app

    with pytest.raises(xraycache.OptionError) as bad:
        xraycache.build(tmp_path, tmp_path / "out.h5", jobs=0)
    assert str(bad.value) == "jobs=0: use a positive number of workers, or -1 for all cores"
    assert isinstance(bad.value, xraycache.InputError)
    with pytest.raises(xraycache.OptionError, match=r"^size=3 is out of range; use 8 to 4096 pixels$"):
        xraycache.build(tmp_path, tmp_path / "out.h5", size=3)
    with pytest.raises(xraycache.OptionError, match=r"^label_sep needs labels \(a table\)$"):
        xraycache.build(tmp_path, tmp_path / "out.h5", label_sep="|")
    with pytest.raises(TypeError, match="did you mean 'size'"):
        xraycache.build(tmp_path, tmp_path / "out.h5", sizes=3)  # type: ignore[call-arg]
    result = CliRunner().invoke(app, ["build", str(tmp_path), str(tmp_path / "out.h5"), "--jobs", "0"])
    assert result.exit_code == 2
    assert "--jobs 0: use a positive number of workers" in result.output and "jobs=0" not in result.output


def test_a_rebuild_with_other_settings_names_overwrite_as_the_caller_knows_it(make_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from xraycache.cli import app

    src = make_dataset()
    out = tmp_path / "out.h5"
    xraycache.build(src, out, size=32, jobs=1)
    with pytest.raises(xraycache.OptionError, match=r"other settings \(size 32 -> 48\); pass overwrite=True"):
        xraycache.build(src, out, size=48, jobs=1)
    result = CliRunner().invoke(app, ["build", str(src), str(out), "--size", "48", "-j", "1"])
    assert result.exit_code == 2 and "pass --overwrite to rebuild" in result.output


def test_public_entry_points_document_their_parameters() -> None:
    pytest.importorskip("torch")
    from xraycache.torch import XrayDataset

    for entry in (xraycache.build, xraycache.open, xraycache.Split.batches, xraycache.Split.load, XrayDataset):
        doc = inspect.getdoc(entry) or ""
        assert "Parameters\n----------" in doc, entry
    for entry in (xraycache.build, xraycache.open, xraycache.Split.load):
        assert "Returns\n-------" in (inspect.getdoc(entry) or ""), entry
    assert "Attributes\n----------" in (inspect.getdoc(xraycache.Cache) or "")
    assert "Parameters\n----------" in (inspect.getdoc(xraycache.BuildOptions) or "")


# -- edge cases found by a reviewer who uses h5py, NumPy and torchvision ----------------------------------


def test_option_errors_pickle_even_with_braces_in_the_message(tmp_path: Path) -> None:
    import copy

    with pytest.raises(xraycache.InputError) as bad:
        xraycache.build(tmp_path / "brace{x}", tmp_path / "out.h5")  # not an option error: no template
    for error in (
        xraycache.OptionError("{jobs}: use a positive number", jobs=0),
        xraycache.OptionError("a {{literal}} brace and {label_col:name}", label_col="a{b}"),
        bad.value,
    ):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
        assert str(copy.copy(error)) == str(error)
    strict = xraycache.StrictError(
        "{strict}: 1 file(s) could not be taken: a{b}.jpeg".replace("{b}", "{{b}}"), strict=True
    )
    assert pickle.loads(pickle.dumps(strict)).for_cli() == "--strict: 1 file(s) could not be taken: a{b}.jpeg"


def test_build_refuses_options_that_are_not_build_options(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="options must be a BuildOptions, not int; give the others as keywords"):
        xraycache.build(tmp_path, tmp_path / "out.h5", 256)  # type: ignore[arg-type]


def test_a_scheduler_address_that_is_not_one_is_an_option_error(tmp_path: Path, make_dataset) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("distributed")
    with pytest.raises(xraycache.OptionError, match=r"^scheduler='tcp://x' is not a scheduler address"):
        xraycache.build(make_dataset(), tmp_path / "out.h5", backend="dask", scheduler="tcp://x", size=32)


def test_iteration_gives_independent_images_and_numpy_scalars_index(reader_cache: Path) -> None:
    torch = pytest.importorskip("torch")
    with xraycache.open(reader_cache) as cache:
        split = cache["train"]
        first = next(iter(split.images))
        assert first.base is None  # its own memory, not a view that keeps a whole block alive
        for key in (np.int64(3), np.array(3), torch.tensor(3)):
            np.testing.assert_array_equal(split.images[key], split.images[3])
        assert "path" in split.meta and "nope" not in split.meta


def test_convert_takes_stored_batches_only_and_any_channels(reader_cache: Path, uint16_cache: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from xraycache.torch import XrayDataset

    floats = XrayDataset(reader_cache, "val", dtype="float32")
    batch, _ = next(iter(DataLoader(floats, batch_size=4)))
    with pytest.raises(xraycache.InputError, match=r"convert\(\) takes batches as stored"):
        floats.convert(batch)
    three = XrayDataset(reader_cache, "val", dtype=None, channels=3)
    stored, _ = next(iter(DataLoader(three, batch_size=4)))
    assert stored.shape == (4, 3, 32, 32)
    converted = three.convert(stored)
    assert converted.shape == (4, 3, 32, 32) and converted.dtype == torch.float32
    np.testing.assert_allclose(converted.numpy(), stored.numpy() / 255.0, atol=1e-7)
    deep = XrayDataset(uint16_cache, "train", dtype=torch.float16)  # a torch dtype works too
    image = deep[0][0]
    assert image.dtype == torch.float16 and bool(torch.isfinite(image).all()) and float(image.max()) <= 1.0
    with xraycache.open(uint16_cache) as cache:
        half, _ = cache["train"].load(dtype="float16", channels=1, label_dtype=None)
    assert np.isfinite(half).all() and half.max() <= 1.0
    stored16, _ = next(iter(DataLoader(XrayDataset(uint16_cache, "train", dtype=None), batch_size=2)))
    on_device = XrayDataset(uint16_cache, "train", dtype=None).convert(stored16, dtype="float16")
    assert bool(torch.isfinite(on_device).all())


def test_an_unclosed_cache_leaves_no_resource_warning(reader_cache: Path) -> None:
    code = (
        "import gc, warnings; warnings.simplefilter('error'); import xraycache\n"
        f"image = xraycache.open({str(reader_cache)!r})['train'].images[0]\n"
        "gc.collect(); print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-X", "dev", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert "ResourceWarning" not in done.stderr


@pytest.mark.slow
def test_type_checkers_see_the_build_keywords(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    user = tmp_path / "user.py"
    user.write_text('import xraycache\nxraycache.build("a", "b", size="x")\nxraycache.build("a", "b", sise=3)\n')
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", str(user)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "MYPYPATH": str(ROOT)},
    )
    assert 'Argument "size" to "build" has incompatible type "str"' in done.stdout, done.stdout
    assert '"sise"' in done.stdout, done.stdout
    assert (ROOT / "xraycache" / "py.typed").is_file()
