"""Build a fixed set of configurations and fingerprint every cache, to show a refactoring changes no byte.

    python tools/compare_builds.py record BEFORE.json   # at the old commit
    python tools/compare_builds.py record AFTER.json    # at the new one
    python tools/compare_builds.py diff BEFORE.json AFTER.json

Each scenario runs ``xraycache`` commands (the command line, so that any code layout can be compared)
on source trees made once from seeded pixels in ``--work`` (default: a folder under /tmp that both runs
share, so paths and mtimes recorded in the caches are the same). After each command it records the exit
code, the JSON report without its timings, and per cache file (OUT and its shards): the sha256 of the
file's bytes with the ``created`` attribute set to a fixed value in a copy, plus a readable fingerprint of
every group, attribute and dataset (shape, dtype, layout, chunks, filters, content hash), so a diff says
where two files part. ``--sample DIR`` adds builds of real images (e.g. ../shared/data/chest_xray).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

FIXED_CREATED = "2000-01-01T00:00:00+00:00"
CODE: Path | None = None  # --code: the checkout whose package the commands run
RANDOM = ("shard_dir", "build_id")  # attributes every build draws anew
TIMING_KEYS = {"seconds", "images_per_second", "created"}
MTIME = 1_700_000_000_000_000_000  # every source file's mtime, in ns: the caches record it


def radiograph(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth gray picture with seeded structures (two seeds: two different pictures)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    img = 30 + 180 * np.exp(-(((xx - 0.5) / 0.35) ** 2 + ((yy - 0.55) / 0.45) ** 2))
    img = img + rng.normal(0, 4, (height, width))
    for _ in range(12):
        cy, cx, r = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.15)
        img += rng.uniform(-100, 100) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2)
    return np.clip(img, 0, 255).astype(np.uint8)


def _save(path: Path, pixels: np.ndarray, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    os.utime(path, ns=(MTIME, MTIME))


def make_sources(root: Path) -> None:
    """The source trees every scenario copies: Kaggle layout (with a near-duplicate and a broken file),
    NIH-style PNGs with a CSV, and 16-bit PNGs."""
    kaggle = root / "kaggle"
    index = 0
    for split, n in (("train", 14), ("val", 4), ("test", 4)):
        for i in range(n):
            cls = "NORMAL" if i % 2 == 0 else "PNEUMONIA"
            kind = ("bacteria", "virus")[i % 3 == 0]
            name = f"IM-{index:04d}-0001.jpeg" if cls == "NORMAL" else f"person{index // 3}_{kind}_{index}.jpeg"
            _save(kaggle / split / cls / name, radiograph(80 + 3 * index, 70 + 2 * index, index))
            index += 1
    # a near-duplicate of train's first image, in val and by another patient: --resplit/--drop-duplicates act
    first = np.asarray(Image.open(kaggle / "train/NORMAL/IM-0000-0001.jpeg"))
    _save(kaggle / "val/NORMAL/IM-0900-0001.jpeg", np.asarray(Image.fromarray(first).resize((70, 60))))
    broken = kaggle / "train/NORMAL/IM-0999-0001.jpeg"
    broken.write_bytes(b"not a jpeg")
    os.utime(broken, ns=(MTIME, MTIME))

    nih = root / "nih"
    lines = ["Image Index,Finding Labels,Patient ID"]
    findings = ("Atelectasis", "Cardiomegaly", "Effusion")
    rng = np.random.default_rng(3)
    for i in range(16):
        name = f"{i // 2:08d}_{i % 2:03d}.png"
        _save(nih / "src" / f"images_{1 + i % 2:03d}" / "images" / name, radiograph(64, 64, 100 + i), "PNG")
        found = [f for f in findings if rng.random() < 0.4] or ["No Finding"]
        lines.append(f"{name},{'|'.join(found)},{i // 2}")
    lines.append("99999999_000.png,Effusion,99999999")  # a row without a file
    (nih / "labels.csv").write_text("\n".join(lines) + "\n")

    deep = root / "png16"
    for i in range(6):
        pixels = radiograph(50, 40, 300 + i).astype(np.uint16) * 200 + 17
        path = deep / ("train" if i < 4 else "val") / ("NORMAL", "PNEUMONIA")[i % 2] / f"IM-{i:04d}-0001.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        os.utime(path, ns=(MTIME, MTIME))


def fingerprint(path: Path) -> dict[str, Any]:
    """What a cache file holds, readably: every attribute and dataset; plus its normalised bytes' sha256."""
    items: dict[str, Any] = {}

    def attrs(obj: h5py.HLObject) -> dict[str, str]:
        return {k: repr(_plain(v)) if k not in RANDOM else "<random>" for k, v in obj.attrs.items() if k != "created"}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            plist = obj.id.get_create_plist()
            data = obj[()]
            if obj.dtype.kind == "O":
                blob = json.dumps([_plain(x) for x in np.asarray(data).ravel().tolist()]).encode()
            else:
                blob = np.ascontiguousarray(data).tobytes()
            items[name] = {
                "shape": list(obj.shape),
                "dtype": str(obj.dtype),
                "layout": int(plist.get_layout()),
                "chunks": obj.chunks,
                "compression": obj.compression,
                "virtual": [
                    (Path(v.file_name).name, v.dset_name, str(v.vspace.get_select_bounds()))
                    for v in (obj.virtual_sources() if obj.is_virtual else [])
                ],
                "sha256": hashlib.sha256(blob).hexdigest(),
                "attrs": attrs(obj),
            }
        else:
            items[name + "/"] = {"attrs": attrs(obj)}

    with h5py.File(path, "r") as handle:
        items["/"] = {"attrs": attrs(handle), "attr_order": list(handle.attrs)}
        handle.visititems(visit)
        sharded = "shard_dir" in handle.attrs  # its random folder name is in its bytes
    if sharded:
        return {"bytes_sha256": "(sharded: items only)", "items": items}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy.h5"
        shutil.copyfile(path, copy)
        with h5py.File(copy, "r+") as handle:
            if "created" in handle.attrs:
                created = str(_plain(handle.attrs["created"]))
                handle.attrs.modify("created", FIXED_CREATED[: len(created)].ljust(len(created), "0"))
            if "build_id" in handle.attrs:  # a random hex string of fixed length
                handle.attrs.modify("build_id", "0" * len(str(_plain(handle.attrs["build_id"]))))
        digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    return {"bytes_sha256": digest, "items": items}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Scenario:
    """One folder of work: copies of source trees, xraycache commands, a record after each."""

    def __init__(self, name: str, work: Path, sources: Path, record: dict[str, Any]) -> None:
        self.name, self.sources, self.record = name, sources, record
        self.dir = work / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.step = 0

    def tree(self, source: str) -> Path:
        target = self.dir / source
        shutil.copytree(self.sources / source, target, copy_function=shutil.copy2)
        return target

    def run(self, *args: str, out: str = "out.h5") -> None:
        """``xraycache ARGS --json``; records its exit code, report, its whole error output and every cache
        file beside OUT (and whether anything else was left there)."""
        self.step += 1
        cmd = [sys.executable, "-m", "xraycache", *args]
        env = {**os.environ, "XRAYCACHE_SERIAL_BELOW": "0"}
        if CODE is not None:  # the package of another checkout
            env["PYTHONPATH"] = str(CODE)
        done = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, env=env, check=False)
        entry: dict[str, Any] = {"args": list(args), "exit": done.returncode}
        if done.returncode == 0 and "--json" in args:
            report = json.loads(done.stdout)
            entry["report"] = {k: v for k, v in report.items() if k not in TIMING_KEYS}
        elif done.returncode != 0:
            entry["stderr"] = done.stderr.strip().splitlines()
        entry["left_beside_out"] = sorted(p.name for p in self.dir.iterdir() if p.name.startswith("."))
        target = self.dir / out
        files = {}
        if target.exists():
            stat = target.stat()
            entry["out_inode_mtime"] = [stat.st_ino, stat.st_mtime_ns]
            files[out] = fingerprint(target)
            for shard in sorted(self.dir.glob(f"{out}.shards*/*.h5")):
                files[f"shards/{shard.name}"] = fingerprint(shard)
        entry["files"] = files
        self.record[f"{self.name} #{self.step}"] = entry


SCENARIOS: dict[str, Callable[[Scenario], None]] = {}


def scenario(fn: Callable[[Scenario], None]) -> Callable[[Scenario], None]:
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
def incremental(s: Scenario) -> None:
    src = s.tree("kaggle")
    s.run("build", str(src), "out.h5", "--size", "48", "--json")
    s.run("build", str(src), "out.h5", "--size", "48", "--json")  # unchanged: nothing written
    s.run("build", str(src), "out.h5", "--size", "48", "--json", "--dry-run")
    touched = src / "train/PNEUMONIA/person0_bacteria_1.jpeg"
    os.utime(touched, ns=(MTIME + 10**9, MTIME + 10**9))  # touched, same bytes
    changed = src / "test/NORMAL/IM-0018-0001.jpeg"
    changed.write_bytes((src / "test/NORMAL/IM-0020-0001.jpeg").read_bytes())
    os.utime(changed, ns=(MTIME + 2 * 10**9, MTIME + 2 * 10**9))
    (src / "val/PNEUMONIA/person5_bacteria_15.jpeg").unlink()
    _save(src / "train/PNEUMONIA/person77_bacteria_77.jpeg", radiograph(90, 80, 77))
    s.run("build", str(src), "out.h5", "--size", "48", "--json", "--dry-run")
    s.run("build", str(src), "out.h5", "--size", "48", "--json")
    s.run("build", str(src), "out.h5", "--size", "48", "--json")
    (src / "train/NORMAL/IM-0999-0001.jpeg").unlink()  # the skipped file gone: the list changes
    s.run("build", str(src), "out.h5", "--size", "48", "--json")
    s.run("build", str(src), "out.h5", "--size", "64", "--json")  # other settings: refused
    s.run("build", str(src), "out.h5", "--size", "64", "--json", "--overwrite")
    s.run("build", str(src), "strict.h5", "--size", "32", "--strict", "--json", out="strict.h5")


@scenario
def options(s: Scenario) -> None:
    src = s.tree("kaggle")
    s.run("build", str(src), "a.h5", "--size", "40", "--fit", "pad", "--compression", "gzip", "--json", out="a.h5")
    s.run(
        "build",
        str(src),
        "b.h5",
        "--size",
        "40",
        "--fit",
        "crop",
        "--filter",
        "lanczos",
        "--jobs",
        "1",
        "--json",
        out="b.h5",
    )
    s.run("build", str(src), "c.h5", "--size", "36", "--dtype", "uint16", "--classes", "three", "--json", out="c.h5")
    s.run("build", str(src), "d.h5", "--size", "32", "--backend", "loky", "--compression", "lzf", "--json", out="d.h5")
    deep = s.tree("png16")
    s.run("build", str(deep), "e.h5", "--size", "32", "--dtype", "uint16", "--window", "minmax", "--json", out="e.h5")
    s.run("build", str(deep), "f.h5", "--size", "32", "--json", out="f.h5")
    s.run("build", str(src), "g.h5", "--size", "32", "--strict", "--json", out="g.h5")  # a broken file: refused


@scenario
def regroup(s: Scenario) -> None:
    src = s.tree("kaggle")
    resplit = ("build", str(src), "r.h5", "--size", "32", "--resplit", "0.6,0.2,0.2", "--folds", "3", "--seed", "1")
    s.run(*resplit, "--json", out="r.h5")
    s.run(*resplit, "--json", out="r.h5")
    _save(src / "test/NORMAL/IM-0500-0001.jpeg", radiograph(88, 77, 500))
    s.run(*resplit, "--json", out="r.h5")
    s.run("build", str(src), "d.h5", "--size", "32", "--drop-duplicates", "--json", out="d.h5")
    s.run("build", str(src), "d.h5", "--size", "32", "--drop-duplicates", "--json", out="d.h5")
    s.run("build", str(src), "f.h5", "--size", "32", "--folds", "4", "--json", out="f.h5")


@scenario
def shards(s: Scenario) -> None:
    src = s.tree("kaggle")
    s.run("build", str(src), "s.h5", "--size", "32", "--shards", "3", "--json", out="s.h5")
    s.run("build", str(src), "s.h5", "--size", "32", "--shards", "3", "--json", out="s.h5")
    _save(src / "train/NORMAL/IM-0600-0001.jpeg", radiograph(70, 66, 600))
    s.run("build", str(src), "s.h5", "--size", "32", "--shards", "3", "--json", out="s.h5")
    s.run("build", str(src), "s.h5", "--size", "32", "--shards", "2", "--json", out="s.h5")
    s.run("build", str(src), "s.h5", "--size", "32", "--json", out="s.h5")  # sharded OUT rewritten as one file
    s.run("build", str(src), "s.h5", "--size", "32", "--json", out="s.h5")
    s.run("build", str(src), "t.h5", "--size", "32", "--shards", "2", "--resplit", "0.5,0.5", "--json", out="t.h5")


@scenario
def csv_labels(s: Scenario) -> None:
    nih = s.tree("nih")
    args = ["--labels", str(nih / "labels.csv"), "--path-col", "Image Index", "--label-col", "Finding Labels"]
    args += ["--label-sep", "|", "--patient-col", "Patient ID", "--size", "32"]
    s.run("build", str(nih / "src"), "m.h5", *args, "--json", out="m.h5")
    s.run("build", str(nih / "src"), "m.h5", *args, "--json", out="m.h5")
    s.run("build", str(nih / "src"), "n.h5", *args, "--resplit", "0.7,0.3", "--json", out="n.h5")
    single = ["--labels", str(nih / "labels.csv"), "--path-col", "Image Index", "--label-col", "Finding Labels"]
    s.run("build", str(nih / "src"), "o.h5", *single, "--size", "32", "--json", out="o.h5")


@scenario
def retried(s: Scenario) -> None:
    src = s.tree("kaggle")
    broken = src / "train/NORMAL/IM-0999-0001.jpeg"
    for shards in ("1", "2"):
        out = f"r{shards}.h5"
        args = ("build", str(src), out, "--size", "32", "--shards", shards)
        s.run(*args, "--json", out=out)
        s.run(*args, "--json", "--strict", out=out)  # up to date, but a file is skipped: strict fails
        s.run(*args, "--json", "--dry-run", out=out)
        s.run(*args, "--json", "--dry-run", "--shards", "3", out=out)
    _save(broken, radiograph(90, 90, 999))  # the file skipped last time decodes now
    for shards in ("1", "2"):
        out = f"r{shards}.h5"
        s.run("build", str(src), out, "--size", "32", "--shards", shards, "--json", out=out)
    empty = s.dir / "empty"
    (empty / "train/NORMAL").mkdir(parents=True)
    s.run("build", str(empty), "e.h5", "--json", out="e.h5")
    bad = s.dir / "bad"
    for i in range(3):
        (bad / "train/NORMAL").mkdir(parents=True, exist_ok=True)
        (bad / f"train/NORMAL/IM-{i:04d}-0001.jpeg").write_bytes(b"not a jpeg")
    s.run("build", str(bad), "b.h5", "--json", out="b.h5")
    s.run("build", str(bad), "b.h5", "--json", "--strict", out="b.h5")


def sample_scenario(sample: Path) -> Callable[[Scenario], None]:
    def real(s: Scenario) -> None:
        s.run("build", str(sample), "real.h5", "--json", out="real.h5")
        s.run("build", str(sample), "real.h5", "--json", out="real.h5")
        s.run("build", str(sample), "dup.h5", "--size", "128", "--drop-duplicates", "--json", out="dup.h5")

    return real


def record(path: Path, work: Path, sample: Path | None) -> None:
    sources = work / "sources"
    if not sources.exists():
        make_sources(sources)
    result: dict[str, Any] = {}
    chosen = dict(SCENARIOS)
    if sample is not None:
        chosen["real"] = sample_scenario(sample.absolute())
    for name, fn in chosen.items():
        print(f"scenario {name} ...", file=sys.stderr, flush=True)
        fn(Scenario(name, work, sources, result))
    path.write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
    print(f"{len(result)} steps recorded in {path}", file=sys.stderr)


def diff(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    problems = 0
    for step in sorted(set(a) | set(b)):
        x, y = a.get(step), b.get(step)
        if x is None or y is None:
            print(f"{step}: only in {'after' if x is None else 'before'}")
            problems += 1
            continue
        x = {k: v for k, v in x.items() if k != "out_inode_mtime"} | {"same_file": _same(a, step)}
        y = {k: v for k, v in y.items() if k != "out_inode_mtime"} | {"same_file": _same(b, step)}
        if x != y:
            problems += 1
            print(f"{step} ({' '.join(x['args'])}):")
            _explain(x, y, "  ")
    byte_checked = sum(len(entry["files"]) for entry in a.values())
    print(
        f"{len(a)} steps, {byte_checked} cache files compared: {'identical' if not problems else f'{problems} differ'}"
    )
    return 1 if problems else 0


def _same(record: dict[str, Any], step: str) -> bool | None:
    """Whether OUT is the very file of the step before (same inode and mtime): nothing written."""
    name, _, number = step.rpartition(" #")
    previous = record.get(f"{name} #{int(number) - 1}")
    if previous is None or "out_inode_mtime" not in previous or "out_inode_mtime" not in record[step]:
        return None
    return bool(previous["out_inode_mtime"] == record[step]["out_inode_mtime"])


def _explain(x: Any, y: Any, indent: str) -> None:
    if isinstance(x, dict) and isinstance(y, dict):
        for key in sorted(set(x) | set(y), key=str):
            if x.get(key) != y.get(key):
                print(f"{indent}{key}:")
                _explain(x.get(key), y.get(key), indent + "  ")
    else:
        print(f"{indent}before: {str(x)[:300]}")
        print(f"{indent}after:  {str(y)[:300]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    rec = sub.add_parser("record", help="build every scenario and write the record")
    rec.add_argument("record", type=Path)
    rec.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "xraycache-compare")
    rec.add_argument("--sample", type=Path, help="a folder of real images to build too")
    rec.add_argument("--code", type=Path, help="run the package of this checkout (default: the installed one)")
    dif = sub.add_parser("diff", help="compare two records")
    dif.add_argument("before", type=Path)
    dif.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.verb == "record":
        global CODE
        CODE = args.code.absolute() if args.code else None
        record(args.record, args.work, args.sample)
        return 0
    return diff(args.before, args.after)


if __name__ == "__main__":
    raise SystemExit(main())
