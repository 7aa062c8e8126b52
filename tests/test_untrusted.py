"""Untrusted caches: every hostile file of ``_hostile_caches`` is refused by every reader in one line.

Each case runs in a fresh interpreter under a 4 GB address-space limit and a 60 s timeout: the Python API
(open, load, batches, meta), every CLI command that reads a cache (show, info, verify) and a rebuild into
the file. Each must end with the one-line error (exit 2 on the command line), the same wording from every
command, and nothing from outside the cache may come back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _hostile_caches import CASES, make_outside, small_source
from conftest import radiograph, write_image

import xraycache

ADDRESS_SPACE = 4 << 30
# The heap bomb sits in /skipped, which figures never read: those readers draw as usual.
UNTOUCHED = {"shared_string_heap": ("show grid", "show image")}
HARNESS = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
from typer.testing import CliRunner
import xraycache
from xraycache.cli import app
path, src, out_png = sys.argv[1], sys.argv[2], sys.argv[3]
results = {}
try:
    cache = xraycache.open(path)
    split = cache[cache.splits[0]]
    x, y = split.load(channels=None, label_dtype=None)
    sum(len(b) for b, _ in split.batches(2))
    list(split.meta["path"]), split.labels, cache.skipped, cache.attrs
    results["api"] = {"code": 0, "lines": ["read %d images" % len(x)]}
except xraycache.XrayCacheError as exc:
    results["api"] = {"code": exc.exit_code, "lines": str(exc).splitlines()}
commands = {
    "show stats": ["show", "stats", path],
    "show grid": ["show", "grid", path, "--out", out_png],
    "show image": ["show", "image", path, "--out", out_png],
    "info": ["info", path],
    "verify": ["verify", path],
    "rebuild": ["build", src, path, "-q", "-j", "1", "--size", "32"],
}
for name, args in commands.items():
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    results[name] = {"code": result.exit_code, "lines": lines, "exception": repr(result.exception) if result.exit_code not in (0, 1, 2) else None}
print("RESULTS " + json.dumps(results))
""".replace("ADDRESS_SPACE", str(ADDRESS_SPACE))


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source folder, a valid cache built from it at --size 32: train 4 images, test 2)."""
    root = tmp_path_factory.mktemp("untrusted")
    src = small_source(root)
    out = root / "valid.h5"
    xraycache.build(src, out, size=32, jobs=1)
    return src, out


def run_readers(path: Path, src: Path, work: Path) -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", HARNESS, str(path), str(src), str(work / "figure.png")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, f"the reader process died ({done.returncode}): {done.stderr[-2000:]}"
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line.removeprefix("RESULTS "))


def test_the_valid_cache_reads(valid: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = valid
    copy = tmp_path / "copy.h5"
    shutil.copy(out, copy)
    results = run_readers(copy, src, tmp_path)
    assert results["api"] == {"code": 0, "lines": ["read 4 images"]}
    assert all(r["code"] == 0 for r in results.values()), results


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_cache_is_refused_in_one_line(case: str, valid: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = valid
    outside = make_outside(tmp_path / "outside")
    path = tmp_path / "cache.h5"
    shutil.copy(out, path)
    CASES[case](path, outside)
    results = run_readers(path, src, tmp_path)
    for reader in UNTOUCHED.get(case, ()):  # readers that never read the hostile part may work as usual
        assert results.pop(reader)["code"] == 0
    for reader, result in results.items():
        lines = result["lines"]
        assert result["code"] == 2, f"{reader}: exit {result['code']}: {lines} {result.get('exception')}"
        assert isinstance(lines, list) and len(lines) == 1, f"{reader}: {lines}"
        assert "SECRET" not in lines[0] and "Traceback" not in lines[0]
    api = results.pop("api")["lines"][0]  # type: ignore[index]
    rebuild = results.pop("rebuild")["lines"][0]  # type: ignore[index]
    assert "pass --overwrite" in rebuild and api in rebuild, rebuild
    wording = {result["lines"][0].removeprefix("error: ") for result in results.values()}  # type: ignore[index]
    assert wording == {api}, f"commands disagree: {wording}"
    assert case in UNTOUCHED or not (tmp_path / "figure.png").exists()


def test_a_file_truncated_under_a_reader_is_an_error_not_a_crash(valid: tuple[Path, Path], tmp_path: Path) -> None:
    """A memory-mapped reader dies of SIGBUS when the file shrinks under it; positional reads give an error."""
    _, out = valid
    path = tmp_path / "cache.h5"
    shutil.copy(out, path)
    script = (
        "import os, sys, xraycache\n"
        f"cache = xraycache.open({str(path)!r})\n"
        "split = cache['train']\n"
        "first = split.images[0]\n"
        f"os.truncate({str(path)!r}, 4096)  # as `cp other.h5 cache.h5` does first\n"
        "try:\n"
        "    split.load(channels=None, label_dtype=None)\n"
        "    list(split.batches(2))\n"
        "    print('READ')\n"
        "except xraycache.NotACacheError as exc:\n"
        "    print('REFUSED', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"died with {done.returncode}: {done.stderr[-1000:]}"
    assert done.stdout.startswith("REFUSED") and "truncated or written while being read" in done.stdout


FUZZ_HARNESS = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
import xraycache
from xraycache.verify import verify
path = sys.argv[1]
out = {}
try:
    with xraycache.open(path) as cache:
        for name in cache.splits:
            split = cache[name]
            split.load(channels=None, label_dtype=None), list(split.batches(3, dtype="float32")), split.meta["path"], split.counts()
        cache.leakage(), cache.skipped
    out["read"] = "ok"
except xraycache.XrayCacheError as exc:
    out["read"] = "refused" if len(str(exc).splitlines()) == 1 else "multi-line error"
try:
    out["verify"] = "ok" if verify(path).ok else "differences"
except xraycache.XrayCacheError as exc:
    out["verify"] = "refused" if len(str(exc).splitlines()) == 1 else "multi-line error"
print("RESULTS " + json.dumps(out))
""".replace("ADDRESS_SPACE", str(ADDRESS_SPACE))


def _no_nul(text: str) -> str:
    """HDF5 variable-length strings cannot hold a NUL: h5py refuses to write one, so the mutation could not be made."""
    return text.replace("\0", "")


def _mutate(path: Path, data: object) -> str:
    """One random change to the cache at ``path``, drawn with hypothesis; returns what it did."""
    import h5py
    import numpy as np
    from hypothesis import strategies as st

    draw = data.draw  # type: ignore[attr-defined]
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
        contiguous = {n: (f[n].id.get_offset(), f[n].id.get_storage_size()) for n in names if f[n].id.get_offset()}
    action = draw(st.sampled_from(["flip", "flip", "delete", "retype", "reshape", "attribute", "link"]))
    target = draw(st.sampled_from(sorted(contiguous) if action == "flip" else names))
    if action == "flip":  # bytes of a dataset's stored data: the file stays readable, the values change
        offset, size = contiguous[target]
        raw = bytearray(path.read_bytes())
        for _ in range(draw(st.integers(1, 8))):
            raw[offset + draw(st.integers(0, size - 1))] ^= draw(st.integers(1, 255))
        path.write_bytes(bytes(raw))
        return f"flip bytes of {target}"
    with h5py.File(path, "r+") as f:
        if action == "attribute":
            key = draw(st.sampled_from(["size", "label_names", "splits", "dtype", "format_version", "label_kind"]))
            value = draw(
                st.one_of(
                    st.integers(-(2**40), 2**40),
                    st.text(max_size=20).map(_no_nul),
                    st.lists(st.text(max_size=8).map(_no_nul), max_size=5).map(
                        lambda v: np.array(v, dtype=h5py.string_dtype())
                    ),
                )
            )
            f.attrs[key] = value
            return f"attribute {key} = {value!r}"[:200]
        shape = f[target].shape
        del f[target]
        if action == "retype":
            dtype = draw(st.sampled_from(["int8", "float64", "S3", "uint16", "int64"]))
            f.create_dataset(target, shape=shape, dtype=dtype)
        elif action == "reshape":
            rows = max(0, (shape[0] if shape else 1) + draw(st.integers(-3, 3)))
            f.create_dataset(target, shape=(rows, *shape[1:]), dtype="uint8")
        elif action == "link":
            f[target] = h5py.SoftLink("/" + draw(st.sampled_from(names)))
        return f"{action} {target}"


@pytest.mark.slow
def test_random_mutations_end_in_one_line_or_a_flagged_read(valid: tuple[Path, Path], tmp_path: Path) -> None:
    """Hypothesis: any structural change or byte flip is refused in one line, or read consistently (verify flags
    it, or it did not matter); never a crash, a hang or a traceback."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _, out = valid

    examples = int(os.environ.get("XRAYCACHE_FUZZ_EXAMPLES", "25"))  # more for a deeper local run

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def check(data: object) -> None:
        path = tmp_path / "fuzzed.h5"
        shutil.copy(out, path)
        change = _mutate(path, data)
        done = subprocess.run(
            [sys.executable, "-c", FUZZ_HARNESS, str(path)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{change}: the reader died ({done.returncode}): {done.stderr[-1500:]}"
        line = next(line for line in done.stdout.splitlines() if line.startswith("RESULTS "))
        result = json.loads(line.removeprefix("RESULTS "))
        assert result["read"] in ("ok", "refused") and result["verify"] in ("ok", "differences", "refused"), (
            change,
            result,
        )

    check()


def test_sharded_cache_reads_only_its_own_shards(valid: tuple[Path, Path], tmp_path: Path) -> None:
    import h5py
    import numpy as np

    src, _ = valid
    outside = make_outside(tmp_path / "outside")
    built = tmp_path / "built"
    built.mkdir()
    xraycache.build(src, built / "s.h5", size=32, jobs=2, shards=2)
    with xraycache.open(built / "s.h5") as cache:
        assert len(cache["train"]) == 4

    def variant(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(built, folder)
        return folder / "s.h5"

    def refused(path: Path, words: str) -> None:
        with pytest.raises(xraycache.NotACacheError, match=words):
            xraycache.open(path)

    escape = variant("escape")
    with h5py.File(escape, "r+") as f:
        f.attrs["shard_dir"] = "../outside"
    refused(escape, "shard_dir")

    absolute = variant("absolute")
    with h5py.File(absolute, "r+") as f:
        shape = f["train/images"].shape
        del f["train/images"]
        layout = h5py.VirtualLayout(shape=shape, dtype=np.uint8)
        layout[:] = h5py.VirtualSource(str(outside / "other.h5"), "/x", shape=shape)
        f["train"].create_virtual_dataset("images", layout)
    refused(absolute, r"reads .*other\.h5.*outside its own shards")

    inner = variant("inner")
    with h5py.File(inner) as f:
        shard = inner.parent / str(f.attrs["shard_dir"]) / "shard-0000.h5"
    with h5py.File(shard, "r+") as f:
        shape = f["train/images"].shape
        del f["train/images"]
        f["train"].create_dataset("images", shape=shape, dtype=np.uint8, external=[(str(outside / "passwd"), 0, 10**6)])
    refused(inner, r"shard shard-0000\.h5 is not a valid xraycache cache: /train/images: is stored in another file")


def test_a_refused_out_is_replaced_with_overwrite(valid: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = valid
    path = tmp_path / "cache.h5"
    shutil.copy(out, path)
    CASES["external_storage"](path, make_outside(tmp_path / "outside"))
    with pytest.raises(xraycache.InputError, match=r"external raw storage.*pass overwrite=True"):
        xraycache.build(src, path, size=32, jobs=1)
    report = xraycache.build(src, path, size=32, jobs=1, overwrite=True)
    assert report.mode == "cold" and report.images == 6
    with xraycache.open(path) as cache:
        assert len(cache["train"]) == 4


def test_a_cache_without_splits_is_one_line_for_every_figure(valid: tuple[Path, Path], tmp_path: Path) -> None:
    import h5py
    from typer.testing import CliRunner

    from xraycache.cli import app

    _, out = valid
    path = tmp_path / "empty.h5"
    shutil.copy(out, path)
    with h5py.File(path, "r+") as f:
        f.attrs["splits"] = np.array([], dtype=h5py.string_dtype())
    for view in ("grid", "image", "hist", "counts", "report"):
        result = CliRunner().invoke(app, ["show", view, str(path), "--out", str(tmp_path / f"{view}.png")])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and "holds no images" in lines[0], (view, result.output)


def test_a_sharded_cache_holding_more_text_than_its_own_file_reads(tmp_path: Path) -> None:
    """The text bound is the cache with its shards: a sharded cache's own file is small, its rows live in the
    shards (300 names of 240 characters: 72 KB of paths, a 29 KB joining file)."""
    src = tmp_path / "src"
    for i in range(300):
        write_image(src / "train" / "NORMAL" / (f"IM-{i:04d}-" + "x" * 220 + ".jpeg"), radiograph(24, 24, seed=i))
    out = tmp_path / "s.h5"
    xraycache.build(src, out, size=16, jobs=2, shards=2)
    assert out.stat().st_size < 300 * 240
    with xraycache.open(out) as cache:
        assert len(cache["train"].meta["path"]) == 300
    assert xraycache.build(src, out, size=16, jobs=2, shards=2).mode == "unchanged"
    (src / "train" / "NORMAL" / ("IM-0000-" + "x" * 220 + ".jpeg")).unlink()
    assert xraycache.build(src, out, size=16, jobs=2, shards=1).mode == "incremental"  # copies every text column
