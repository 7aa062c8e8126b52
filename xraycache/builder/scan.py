"""Find the images under a source folder and work out each one's split, label and patient.

The layout is recognised from the folder names alone (no pixel is read here), so a scan of
thousands of files takes a fraction of a second and ``build --dry-run`` can show it.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import InputError, OptionError, Skipped, literal
from ..core.options import Classes
from ..core.schema import MAX_LABELS, MAX_NAME_CHARS, MAX_SPLITS, RESERVED_SPLIT_NAMES, storable_path
from ..imaging.decoders.dicom import DICOM_SUFFIXES, maybe_dicom_name, sniff_file

if TYPE_CHECKING:
    from .table_scan import TableScan

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
# OS and archive litter: never an image, never a warning.
LITTER_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "__macosx"})
SPLIT_ORDER = ("train", "val", "test")

KAGGLE_FOLDERS = {"normal": "normal", "pneumonia": "pneumonia"}
THREE_FOLDERS = {"1_normal": "normal", "2_bacteria": "bacterial", "3_virus": "viral"}
BINARY_LABELS = ("normal", "pneumonia")
UNLABELED = "unlabeled"  # the one label of images nothing labels (a flat folder, a table without labels)
THREE_LABELS = ("normal", "bacterial", "viral")

_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),  # Kaggle pneumonia: person12_bacteria_47.jpeg
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-", re.IGNORECASE),  # Kaggle normal: IM-0115-0001.jpeg
    re.compile(r"^(\d{8})_\d{3}\.[a-z]+$", re.IGNORECASE),  # NIH ChestX-ray14: 00001315_006.png, follow-up 6
)
_KIND_PATTERN = re.compile(r"_(bacteria|virus)_", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One image file found by the scan, with what its path says about it."""

    path: str  # POSIX path relative to the source root
    split: str
    label: int
    patient: str
    # settled by prepare.py: DICOM study pseudonym, split before --resplit, fold, multi-label indices
    study: str = ""
    source_split: str = ""
    fold: int = -1
    labels: tuple[int, ...] = ()
    view: str = ""  # from a table's --view-col; a DICOM's own ViewPosition otherwise
    codes: tuple[int, ...] = ()  # coded labels (--label-cols): one code a label; ``labels`` holds the positives
    annotators: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (annotator, that one's codes): --annotator-col


@dataclass
class ScanResult:
    """Everything a build needs to know before it decodes a single pixel."""

    root: Path
    layout: str  # "kaggle", "three-folder", "class-folders", "flat" or "table"
    label_names: tuple[str, ...]
    files: list[SourceFile]  # ordered by code-point order of ``path``
    ignored: list[str] = field(default_factory=list)  # non-image files, relative paths
    unlabeled: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): no label, or an unreadable folder
    multi_label: bool = False  # labels from a CSV with --label-sep: SourceFile.labels holds them all
    coded: bool = False  # coded labels (--label-cols): SourceFile.codes holds them, ``labels`` the positives
    annotator_slots: int = 0  # --annotator-col: the most annotators an image has (the cache keeps that many)
    annotator_names: tuple[str, ...] = ()  # --annotator-col: every annotator's name, sorted
    table: TableScan | None = None  # what the --labels tables said (table_scan.py), None for a folder layout

    def one_class_warning(self) -> str | None:
        """A warning when the folders give every image the same label, or None (several classes)."""
        if len(self.label_names) != 1 or self.multi_label:
            return None
        name = self.label_names[0]
        where = (
            "SRC holds the images directly, with no class folders"
            if self.layout == "flat"
            else f"{name}/ is the only class folder"
        )
        return (
            f"one class only: every image is labelled {name!r} ({where}); for classes, put the images "
            "in SRC/CLASS/ or SRC/SPLIT/CLASS/ folders, or give --labels CSV"
        )

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names in the canonical order: train, val, test, then the rest sorted."""
        return order_splits({f.split for f in self.files})

    def unlabeled_rows(self) -> list[Skipped]:
        """The files the scan (or the labels CSV) could give no label, as the rows ``/skipped`` stores."""
        return [Skipped(storable_path(path), "", reason) for path, reason in self.unlabeled]

    def counts(self) -> dict[str, Counter[int]]:
        """Images per split and label index."""
        out: dict[str, Counter[int]] = {s: Counter() for s in self.splits}
        for f in self.files:
            out[f.split][f.label] += 1
        return out


def order_splits(names: set[str] | list[str]) -> tuple[str, ...]:
    """Order split names as train, val, test, then any other name sorted."""
    known = [s for s in SPLIT_ORDER if s in names]
    return tuple(known + sorted(set(names) - set(SPLIT_ORDER)))


def patient_id(filename: str) -> str:
    """Patient id encoded in a file name, or ``""``: Kaggle's ``person12``, ``IM-0115``; NIH's ``00001315``.

    NIH ChestX-ray14 names an image ``<patient>_<follow-up>.png`` (``00001315_006.png``: patient 00001315,
    follow-up 6), so ``--resplit`` keeps every follow-up of a patient in one split.
    """
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(filename)
        if match:
            return match.group(1)
    return ""


def pneumonia_kind(filename: str) -> str | None:
    """``bacterial`` or ``viral`` from a Kaggle pneumonia file name, ``None`` if it says neither."""
    match = _KIND_PATTERN.search(filename)
    if not match:
        return None
    return "bacterial" if match.group(1).lower() == "bacteria" else "viral"


def _is_litter(name: str) -> bool:
    return name.lower() in LITTER_NAMES or name.startswith("._")


def walk(root: Path) -> tuple[list[tuple[str, ...]], list[str], list[tuple[str, str]]]:
    """Relative path parts of every image file under root, the relative paths of other files, and the
    folders that could not be read (with the reason).

    Symlinks to files are followed; symlinked folders are not (so a link loop cannot hang the scan);
    hidden entries and OS litter are passed over. Names with an image suffix are taken whatever they are
    (a FIFO named ``x.jpeg`` is then skipped by the decoder, with its reason); extensionless names are
    sniffed for DICOM content only when they are regular files (a FIFO would block the read).
    """
    images: list[tuple[str, ...]] = []
    ignored: list[str] = []
    unreadable: list[tuple[str, str]] = []
    pending: list[tuple[str, ...]] = [()]
    while pending:
        rel_dir = pending.pop()
        folder = os.path.join(root, *rel_dir)
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            if not rel_dir:
                raise InputError(f"cannot read source folder {root}: {exc.strerror or exc}") from None
            unreadable.append(("/".join(rel_dir), f"cannot read folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            name = entry.name
            if name.startswith(".") or _is_litter(name):
                continue
            parts = (*rel_dir, name)
            if entry.is_dir(follow_symlinks=False):
                pending.append(parts)
                continue
            if entry.is_symlink() and _is_dir(entry):
                continue  # a symlinked folder: not followed
            suffix = Path(name).suffix.lower()
            if (
                suffix in IMAGE_SUFFIXES
                or suffix in DICOM_SUFFIXES
                or (maybe_dicom_name(name) and sniff_file(entry.path))
            ):
                images.append(parts)
            else:
                ignored.append("/".join(parts))
    return images, ignored, unreadable


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop
        return False


def _describe(root: Path) -> str:
    entries = sorted(p.name for p in root.iterdir())[:6] if root.is_dir() else []
    found = ", ".join(entries) if entries else "nothing"
    return f"found {found}"


def _check_folder_names(root: Path, split_folders: list[str], class_folders: list[str]) -> None:
    """InputError for split or class folders whose names a cache cannot hold, or every reader would refuse.

    Checked before anything is decoded: a name that is not UTF-8 (HDF5 stores names as UTF-8), a split named
    like a group of the file (``skipped``), a name longer than a cache's names, more splits than a reader opens.
    """
    for kind, names in (("split", split_folders), ("class", class_folders)):
        for name in names:
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(
                    f"{kind} folder '{storable_path(name)}' under {root} has a name that is not UTF-8 (its bytes "
                    "shown as \\xNN), which a cache cannot store; rename it"
                ) from None
            if len(name) > MAX_NAME_CHARS:
                raise InputError(
                    f"a {kind} folder under {root} has a name of {len(name):,} characters, more than a cache "
                    f"holds ({MAX_NAME_CHARS:,}); rename it"
                )
    reserved = [name for name in split_folders if name in RESERVED_SPLIT_NAMES]
    if reserved:
        raise InputError(
            f"split folder {reserved[0]!r} under {root}: that name is reserved in a cache (its group of skipped "
            "files); rename the folder"
        )
    if len(split_folders) > MAX_SPLITS:
        raise InputError(
            f"{root} has {len(split_folders):,} split folders, more than a cache holds ({MAX_SPLITS:,}); "
            "point SRC at the folder that holds the splits or classes"
        )


def scan(src: str | os.PathLike[str], classes: Classes = "auto") -> ScanResult:
    """Scan ``src`` and label its images from the folder layout (see docs/sources.md).

    ``classes="three"`` splits the Kaggle PNEUMONIA folder into bacterial and viral by file name;
    ``"binary"`` folds a 1_Normal/2_Bacteria/3_Virus layout into normal and pneumonia.
    """
    root = Path(src)
    if not root.exists():
        raise InputError(f"source folder {root} does not exist")
    if not root.is_dir():
        raise InputError(f"source {root} is not a folder; give the folder that holds the images")
    images, ignored, unreadable = walk(root)
    if not images:
        raise InputError(
            f"no images under {root} ({_describe(root)}); xraycache reads .jpeg/.jpg/.png and DICOM "
            "(.dcm/.dicom/.dic, or DICOM files without a suffix), in [split/]CLASS/ folders such as "
            "chest_xray/train/NORMAL/, or directly in it"
        )
    depths = Counter(len(parts) - 1 for parts in images)
    if len(depths) > 1:
        found = ", ".join(f"{n} at depth {d}" for d, n in sorted(depths.items()))
        raise InputError(
            f"images under {root} lie at mixed folder depths ({found}); expected all of them "
            "in SRC/, SRC/CLASS/ or SRC/SPLIT/CLASS/ (point SRC at the folder that holds the splits)"
        )
    depth = next(iter(depths))
    if depth > 2:
        example = "/".join(images[0])
        raise InputError(
            f"images under {root} are {depth} folders deep (e.g. {example}); expected SRC/, "
            "SRC/CLASS/ or SRC/SPLIT/CLASS/: point SRC at the folder that holds the splits"
        )
    folder_names = sorted({parts[-2] for parts in images}) if depth >= 1 else []
    _check_folder_names(root, sorted({parts[0] for parts in images}) if depth == 2 else [], folder_names)
    lowered = {name.lower() for name in folder_names}
    label_names: tuple[str, ...]
    if depth == 0:
        layout, label_names = "flat", (UNLABELED,)
    elif lowered <= set(KAGGLE_FOLDERS):
        layout = "kaggle"
        label_names = THREE_LABELS if classes == "three" else BINARY_LABELS
    elif lowered <= set(THREE_FOLDERS):
        layout = "three-folder"
        label_names = BINARY_LABELS if classes == "binary" else THREE_LABELS
    else:
        if classes != "auto":
            raise OptionError(
                "{classes:bare} needs NORMAL/PNEUMONIA or 1_Normal/2_Bacteria/3_Virus folders, "
                + literal(f"but {root} has class folders {', '.join(folder_names[:6])}"),
                classes=classes,
            )
        if len(folder_names) > MAX_LABELS:
            raise InputError(
                f"{root} has {len(folder_names):,} class folders, more than a cache holds ({MAX_LABELS:,}); "
                "point SRC at the folder that holds the splits or classes"
            )
        layout, label_names = "class-folders", tuple(folder_names)
    index = {name: i for i, name in enumerate(label_names)}

    files: list[SourceFile] = []
    unlabeled: list[tuple[str, str]] = list(unreadable)
    for parts in images:
        rel = "/".join(parts)
        name = parts[-1]
        split = parts[0] if depth == 2 else "all"
        if layout == "flat":
            label = UNLABELED
        elif layout == "kaggle":
            label = KAGGLE_FOLDERS[parts[-2].lower()]
            if classes == "three" and label == "pneumonia":
                kind = pneumonia_kind(name)
                if kind is None:
                    unlabeled.append((rel, "name says neither bacteria nor virus (--classes three)"))
                    continue
                label = kind
        elif layout == "three-folder":
            label = THREE_FOLDERS[parts[-2].lower()]
            if classes == "binary" and label != "normal":
                label = "pneumonia"
        else:
            label = parts[-2]
        files.append(SourceFile(rel, split, index[label], patient_id(name), source_split=split))
    files.sort(key=lambda f: f.path)
    ignored.sort()
    return ScanResult(root.resolve(), layout, label_names, files, ignored, unlabeled)
