"""The decode workers: forked, loky and in-process decodes store the same bytes; a forked worker outlives no
build and writes nothing to the caller's streams; a file that kills its worker is skipped, not fatal."""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import xraycache
from tests.conftest import radiograph, write_image
from tests.test_incremental import assert_same_cache
from xraycache.builder import workers
from xraycache.core import interrupts
from xraycache.core.atomic import AtomicFile
from xraycache.core.errors import StrictError
from xraycache.core.interrupts import interrupt_guard
from xraycache.imaging.result import DecodedImage, DecodeFailure, DecodeResult

needs_fork = pytest.mark.skipif(not workers.CAN_FORK, reason="forked workers are Linux-only (loky elsewhere)")
PARENT = os.getpid()


def forked_children() -> list[multiprocessing.process.BaseProcess]:
    """This process's live forked children (loky keeps its own pool between builds)."""
    return [p for p in multiprocessing.active_children() if isinstance(p, multiprocessing.context.ForkProcess)]


def test_forked_loky_and_in_process_decodes_store_the_same_bytes(kaggle: Path, tmp_path: Path) -> None:
    serial = xraycache.build(kaggle, tmp_path / "serial.h5", size=48, jobs=1).out
    forked = xraycache.build(kaggle, tmp_path / "forked.h5", size=48, jobs=2).out
    loky = xraycache.build(kaggle, tmp_path / "loky.h5", size=48, jobs=2, backend="loky").out
    assert_same_cache(Path(serial), Path(forked))
    assert_same_cache(Path(serial), Path(loky))


@needs_fork
def test_the_forked_pool_is_used_for_a_few_files(kaggle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked pool starts in milliseconds: unlike loky's, it runs however few the files are."""
    monkeypatch.setattr(workers, "SERIAL_BELOW", 200)
    seen: list[int] = []
    decode = workers.ForkedPool.decode

    def spy(self: workers.ForkedPool, root: str, files: list, spec: object):  # type: ignore[no-untyped-def]
        seen.append(len(files))
        return decode(self, root, files, spec)  # type: ignore[arg-type]

    monkeypatch.setattr(workers.ForkedPool, "decode", spy)
    report = xraycache.build(kaggle, tmp_path / "c.h5", size=32, jobs=2)
    assert seen == [report.images] == [10]


@needs_fork
def test_pixels_come_back_through_the_shared_ring(
    kaggle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every image's pixels cross in the ring, whose blocks are reused within one build (one task in flight
    per worker here), and a slow consumer still gets each image's own pixels: a block goes to a new task only
    once its pixels were taken. The cache is the one an in-process build writes, and the one a build without
    the ring writes."""
    serial = xraycache.build(kaggle, tmp_path / "serial.h5", size=40, jobs=1).out
    monkeypatch.setattr(workers, "TASKS_IN_FLIGHT", 1)
    taken: list[int] = []
    take = workers.PixelRing.take

    def slow(self: workers.PixelRing, results: list, parked: list[int], first_slot: int) -> None:  # type: ignore[type-arg]
        time.sleep(0.05)  # the other worker finishes its task meanwhile, and would get this block if it were free
        taken.extend(parked)
        take(self, results, parked, first_slot)

    monkeypatch.setattr(workers.PixelRing, "take", slow)
    ringed = xraycache.build(kaggle, tmp_path / "ring.h5", size=40, jobs=2).out
    assert len(taken) == 10  # ten images, each parked in the ring by its worker
    assert_same_cache(Path(serial), Path(ringed))
    monkeypatch.setattr(workers, "RING_MAX_BYTES", 0)  # too large for the ring: pickled, as on loky
    taken.clear()
    pickled = xraycache.build(kaggle, tmp_path / "pickled.h5", size=40, jobs=2).out
    assert taken == []
    assert_same_cache(Path(serial), Path(pickled))


def test_the_ring_gives_each_slot_back_and_leaves_other_results_alone() -> None:
    ring = workers.PixelRing(4, (3, 5), np.dtype(np.uint16))
    rng = np.random.default_rng(0)
    images = [_decoded(rng.integers(0, 65535, (3, 5), dtype=np.uint16)) for _ in range(2)]
    odd = _decoded(np.ones((2, 2), dtype=np.uint16))  # not the shape the slots hold: keeps its pixels
    originals = [image.pixels.copy() for image in images]
    results: list[DecodeResult] = [images[0], DecodeFailure("broken"), odd, images[1]]
    parked = [i for i, result in enumerate(results) if ring.park(i, result)]
    assert parked == [0, 3]
    assert images[0].pixels.size == images[1].pixels.size == 0 and odd.pixels.shape == (2, 2)
    ring.take(results, parked, 0)
    for image, original in zip(images, originals, strict=True):
        assert np.array_equal(image.pixels, original) and image.pixels.dtype == np.uint16
    assert ring.park(0, _decoded(np.zeros((3, 5), dtype=np.uint16)))  # the slot reused: what was taken is a copy
    assert np.array_equal(images[0].pixels, originals[0])
    assert np.array_equal(odd.pixels, np.ones((2, 2))) and results[1] == DecodeFailure("broken")


def _decoded(pixels: np.ndarray) -> DecodedImage:
    return DecodedImage(pixels, 1, 1, "L", 1, "", 0, np.zeros(256, np.int64), np.zeros((32, 32), np.uint8), b"")


@needs_fork
def test_no_forked_worker_outlives_a_build(kaggle: Path, tmp_path: Path) -> None:
    """Forked workers hold every descriptor the build had when they started: none may outlive it, even when
    the build fails and its traceback (which keeps the decode generator alive) is still referenced."""
    (kaggle / "train/NORMAL/zz-broken.jpeg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "c.h5"
    with pytest.raises(StrictError) as failed:
        xraycache.build(kaggle, out, size=32, jobs=2, strict=True)
    assert forked_children() == []
    assert failed.value is not None  # the traceback is still alive here
    report = xraycache.build(kaggle, out, size=32, jobs=2)  # the output's lock is free
    assert report.images == 10 and len(report.skipped) == 1
    assert forked_children() == []


def _segfault() -> None:
    """Die of SIGSEGV, quietly: the worker was forked from pytest, whose faulthandler plugin enabled Python's
    fault handler on a copy of the terminal's stderr; the child inherits both, and would print a "Fatal Python
    error" dump of this expected crash. Real crashes elsewhere keep their dumps."""
    faulthandler.disable()
    os.kill(os.getpid(), signal.SIGSEGV)


def _crash_on_person(root: str, source: object, spec: object) -> object:
    """decode_task that kills its process on one file, as a decoder crash on a hostile file would."""
    if os.getpid() != PARENT and "person12_virus_3" in str(source.path):  # type: ignore[attr-defined]
        _segfault()
    return _DECODE(root, source, spec)  # type: ignore[arg-type]


_DECODE = workers.decode_task


@needs_fork
def test_a_file_that_kills_its_worker_is_skipped_and_the_build_goes_on(
    kaggle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = xraycache.build(kaggle, tmp_path / "clean.h5", size=32, jobs=2)
    monkeypatch.setattr(workers, "decode_task", _crash_on_person)
    report = xraycache.build(kaggle, tmp_path / "c.h5", size=32, jobs=2)
    assert [(row.path, row.reason) for row in report.skipped] == [
        ("train/PNEUMONIA/person12_virus_3.jpeg", "the decoder crashed on this file (SIGSEGV)")
    ]
    assert report.images == clean.images - 1
    assert forked_children() == []
    with xraycache.open(clean.out) as a, xraycache.open(report.out) as b:
        kept = [i for i, p in enumerate(a["train"].meta["path"]) if "person12_virus_3" not in str(p)]
        assert (
            a["train"].load(channels=None, label_dtype=None)[0][kept]
            == b["train"].load(channels=None, label_dtype=None)[0]
        ).all()
        assert list(b["train"].meta["path"]) == [a["train"].meta["path"][i] for i in kept]


def _crash_on_the_last(root: str, source: object, spec: object) -> object:
    """decode_task that kills its process on the last files of the list, where the tasks are one file each."""
    if os.getpid() != PARENT and source.path.split("/")[-1] >= "IM-0034":  # type: ignore[attr-defined]
        _segfault()
    return _DECODE(root, source, spec)  # type: ignore[arg-type]


@needs_fork
def test_files_that_kill_their_workers_at_the_end_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Near the end the tasks are one file each and workers die one after the other, also between a result
    and the next submission: each crash is isolated, none fails the build."""
    for i in range(40):
        write_image(tmp_path / "src/train/NORMAL" / f"IM-{i:04d}.jpeg", radiograph(90, 80, seed=i))
    monkeypatch.setattr(workers, "decode_task", _crash_on_the_last)
    check = interrupts.check
    # the build made slow between taking a result and submitting the next task, so a worker dies in between
    monkeypatch.setattr(interrupts, "check", lambda: (time.sleep(0.01), check()))
    report = xraycache.build(tmp_path / "src", tmp_path / "c.h5", size=32, jobs=2)
    assert [row.path for row in report.skipped] == [f"train/NORMAL/IM-{i:04d}.jpeg" for i in range(34, 40)]
    assert {row.reason for row in report.skipped} == {"the decoder crashed on this file (SIGSEGV)"}
    assert report.images == 34
    assert forked_children() == []


def _noisy(root: str, source: object, spec: object) -> object:
    print("worker stdout")
    print("worker stderr", file=sys.stderr)
    warnings.warn("worker warning", UserWarning, stacklevel=1)
    return _DECODE(root, source, spec)  # type: ignore[arg-type]


@needs_fork
def test_forked_workers_write_nothing_to_the_callers_streams(
    kaggle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """In a notebook the streams are the kernel's sockets, shared with a forked child: it must not use them."""
    monkeypatch.setattr(workers, "decode_task", _noisy)
    xraycache.build(kaggle, tmp_path / "c.h5", size=32, jobs=2)
    captured = capfd.readouterr()
    assert "worker" not in captured.out + captured.err


class Finalised:
    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)  # the handler runs, and raises, inside this finaliser


def test_a_ctrl_c_swallowed_by_a_callback_still_stops_the_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python drops an exception raised in a ``__del__`` or weakref callback, also the KeyboardInterrupt of a
    SIGINT that lands there: the guard raises it again between images and before the rename, silently."""

    out = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt), interrupt_guard(), AtomicFile(out) as new:
        new.tmp.write_bytes(b"complete")
        Finalised()  # dropped at once: the raise is swallowed
        interrupts.check()  # ... and made again here
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert "Exception ignored" not in capsys.readouterr().err
    with AtomicFile(out) as new:  # a later file commits as usual: the request ended with its guard
        new.tmp.write_bytes(b"complete")
    assert out.read_bytes() == b"complete"


def test_a_lost_ctrl_c_is_not_committed(tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt), interrupt_guard(), AtomicFile(out) as new:
        new.tmp.write_bytes(b"complete")
        Finalised()
    assert list(tmp_path.iterdir()) == []  # the rename refused, the new file removed
