"""The options of a build, each defined once: its name, type, default, allowed values, help and CLI panel.

A ``BuildOptions`` holds four frozen parts: ``resize`` (the pixel settings, the only part a worker
receives), ``sources`` (labels, splits, identifiers), ``output`` (the file) and ``run`` (how the build
runs). Making one validates it, so every ``BuildOptions`` in the program is usable. ``settings()`` gives
the values recorded in the cache file: incremental rebuilds compare them and ``Cache.settings`` reads
them back. The command line builds its ``--flags`` from these same definitions (``cli/build.py``).

To add an option, add a field with :func:`option` to the part it belongs to: it becomes a CLI flag, a
keyword of ``xraycache.build`` and (unless ``record=False``) a setting recorded in every cache.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import os
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from . import table_spec
from .errors import OptionError

Fit = Literal["stretch", "pad", "crop"]
# "area" is exact area averaging; the others are Pillow's resampling filters.
FilterName = Literal["area", "box", "bilinear", "hamming", "lanczos"]
Classes = Literal["auto", "binary", "three"]
Compression = Literal["none", "gzip", "lzf"]
Window = Literal["auto", "dicom", "minmax", "percentile"]
OutDtype = Literal["uint8", "uint16"]
Backend = Literal["local", "loky", "dask"]

# A chest radiograph is at most ~4,300 x 4,300 px (20 MP); 64 MP leaves room and still refuses
# decompression bombs before a single pixel is allocated.
DEFAULT_MAX_PIXELS = 64_000_000
# How the 8-bit area filter computes (imaging/resize.py): recorded in every cache, so that an incremental
# rebuild of a cache whose pixels were computed otherwise (float32 before it was recorded) asks for
# --overwrite instead of mixing two roundings in one file.
RESIZE_ARITHMETIC = "fixed-point w14 f7"
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to reach a dask scheduler, and to wait for its first worker
# Seconds one source file may take to decode: a real radiograph takes well under one; a hostile file (a
# progressive JPEG whose scans each walk the whole image) can take hours, and no signal interrupts libjpeg.
DEFAULT_FILE_TIMEOUT = 60.0
MAX_FOLDS = 100

OUTPUT, LABELS, TABLES, HIGH_BIT, RUNNING, SCALING = (
    "Output",
    "Labels and splits",
    "Tables (CheXpert, MIMIC, NIH ...)",
    "High bit depth and DICOM",
    "Running",
    "Scaling out",
)


@dataclass(frozen=True)
class OptionInfo:
    """What the command line and the file need to know about one option besides its type and default."""

    help: str
    panel: str
    flags: tuple[str, ...] = ()  # CLI names; default ``--the-name``
    min: float | None = None
    max: float | None = None
    record: bool = True  # recorded in the cache under its own name (and compared by incremental rebuilds)
    metavar: str | None = None
    unit: str = ""  # said after the range in errors, e.g. "pixels"
    path: bool = False  # names a file: a str or an os.PathLike


def option(
    default: Any,
    help: str,
    *,
    panel: str,
    flags: tuple[str, ...] = (),
    min: float | None = None,
    max: float | None = None,
    record: bool = True,
    metavar: str | None = None,
    unit: str = "",
    path: bool = False,
) -> Any:
    """A dataclass field carrying its option definition (see :class:`OptionInfo`)."""
    info = OptionInfo(help, panel, flags, min, max, record, metavar, unit, path)
    return field(default=default, metadata={"option": info})


def info_of(f: dataclasses.Field[Any]) -> OptionInfo:
    """The option definition of a field of one of the parts."""
    return typing.cast(OptionInfo, f.metadata["option"])


def flag_of(f: dataclasses.Field[Any]) -> str:
    """The option's main CLI name, e.g. ``--max-pixels``: the name used in error messages."""
    flags = info_of(f).flags
    return flags[0] if flags else "--" + f.name.replace("_", "-")


def flag_for(name: str) -> str:
    """The main CLI name of the option called ``name`` (``jobs`` -> ``--jobs``)."""
    for _, f in BuildOptions.fields():
        if f.name == name:
            return flag_of(f)
    return "--" + name.replace("_", "-")


def _allowed(hint: Any) -> tuple[Any, ...] | None:
    """The values of a Literal type (also inside ``X | None``), or None when any value of the type goes."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return None


def _base_types(hint: Any) -> tuple[type, ...]:
    """Python types a value of ``hint`` may have (None included for optional options)."""
    if typing.get_origin(hint) is Literal:
        return tuple({type(a) for a in typing.get_args(hint)})
    args = typing.get_args(hint)
    if args:  # X | None
        return tuple(type(None) if a is type(None) else a for a in args)
    return (float, int) if hint is float else (hint,)


@dataclass(frozen=True)
class _Part:
    """A frozen group of options, checked against their definitions when made."""

    def __post_init__(self) -> None:
        hints = hints_of(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            hint = hints[f.name]
            name = f.name
            if typing.get_origin(hint) is tuple:  # a repeatable option: one value or several
                object.__setattr__(self, name, _strings(name, value))
                continue
            types = _base_types(hint)
            if isinstance(value, os.PathLike) and str in types:
                value = os.fspath(value)
                object.__setattr__(self, f.name, value)
            elif (
                isinstance(value, numbers.Integral) and not isinstance(value, bool) and (int in types or float in types)
            ):
                value = int(value) if int in types else float(value)  # NumPy integers too
                object.__setattr__(self, f.name, value)
            elif isinstance(value, numbers.Real) and not isinstance(value, bool) and float in types:
                value = float(value)
                object.__setattr__(self, f.name, value)
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                wanted = " or ".join("none" if t is type(None) else t.__name__ for t in types)
                raise OptionError(f"{{{name}}}: give a value of type {wanted}", **{name: value})
            allowed = _allowed(hint)
            if allowed is not None and value not in allowed:
                raise OptionError(f"{{{name}}} is not one of {', '.join(map(str, allowed))}", **{name: value})
            if _out_of_range(value, info_of(f)):
                low, high, unit = info_of(f).min, info_of(f).max, info_of(f).unit
                span = f"use {low:g} to {high:g}" if high is not None else f"use at least {low:g}"
                raise OptionError(f"{{{name}}} is out of range; {span}{' ' + unit if unit else ''}", **{name: value})
        self.check()

    def check(self) -> None:
        """Rules across fields of this part (InputError); the types, choices and ranges are already checked."""

    def recorded(self) -> dict[str, Any]:
        """This part's settings as stored in the file: fields with ``record=True``, None stored as ``""``."""
        return {f.name: _stored(getattr(self, f.name)) for f in fields(self) if info_of(f).record}


def _strings(name: str, value: Any) -> tuple[str, ...]:
    """A repeatable option's value as a tuple of strings: one string or path, or a list or tuple of them."""
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if value is None:
        return ()
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, (str, os.PathLike)) for v in items):
        raise OptionError(f"{{{name}}}: give a string, or a list of strings", **{name: value})
    return tuple(os.fspath(v) for v in items)


def _out_of_range(value: Any, info: OptionInfo) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    low, high = info.min, info.max
    return not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high)


def _stored(value: Any) -> Any:
    return "" if value is None else value


_HINTS: dict[type, dict[str, Any]] = {}


def hints_of(cls: type) -> dict[str, Any]:
    """The resolved field types of a part of BuildOptions (resolved once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


@dataclass(frozen=True)
class ResizeOptions(_Part):
    """The pixel settings: how a worker turns one file into stored pixels (all recorded in the file)."""

    size: int = option(
        256, "Output side in pixels (images are size x size).", panel=OUTPUT, min=8, max=4096, unit="pixels"
    )
    fit: Fit = option(
        "stretch",
        "stretch to the square (the notebook's way), pad to keep the aspect (fill 0), or centre-crop.",
        panel=OUTPUT,
    )
    filter: FilterName = option(
        "area",
        "Resize filter after the DCT-scaled decode: area is an exact area average (most faithful); "
        "box/bilinear/hamming/lanczos are Pillow's (box is fastest).",
        panel=OUTPUT,
    )
    max_pixels: int = option(
        DEFAULT_MAX_PIXELS, "Refuse images with more pixels than this (decompression bombs).", panel=OUTPUT, min=1
    )
    window: Window = option(
        "auto",
        "Sources deeper than 8 bits (16-bit PNG, DICOM): auto = the DICOM's own VOI where it has one, else "
        "percentile; dicom = the file's VOI (DICOMs without one are skipped); minmax = full range; "
        "percentile = 0.5-99.5%. 8-bit JPEG/PNG are never re-windowed.",
        panel=HIGH_BIT,
    )
    dtype: OutDtype = option(
        "uint8", "Stored pixel type: uint8, or uint16 to keep the depth of 16-bit sources.", panel=HIGH_BIT
    )

    def recorded(self) -> dict[str, Any]:
        return {**super().recorded(), "resize_arithmetic": RESIZE_ARITHMETIC}


@dataclass(frozen=True)
class SourceOptions(_Part):
    """Where labels, splits, folds and patient identifiers come from."""

    classes: Classes = option(
        "auto",
        "Kaggle labels: binary (normal/pneumonia) or three (normal/bacterial/viral, from file names). "
        "auto: binary for Kaggle folders, the folder names otherwise.",
        panel=LABELS,
    )
    labels: tuple[str, ...] = option(
        (),
        "Table (CSV, or .csv.gz) naming the images under SRC, at any depth, with their labels; replaces the "
        "folder layout. Repeat for several tables; SPLIT=FILE puts a table's images in SPLIT (CheXpert's "
        "train.csv and valid.csv). Delimiter sniffed.",
        panel=TABLES,
        record=False,
        metavar="[SPLIT=]FILE",
        path=True,
    )
    path_col: str = option(
        "path",
        "--labels column with the image path (relative to SRC, or ending in one), file name or id; or a "
        "template of columns such as 'files/p{subject_id:.2}/p{subject_id}/s{study_id}/{dicom_id}.jpg'.",
        panel=TABLES,
        record=False,
    )
    label_col: str | None = option(
        None,
        "--labels column with the label(s); by default the column 'label' where there is one, else none.",
        panel=TABLES,
        record=False,
    )
    label_sep: str | None = option(
        None, "Separator of several labels in one cell, e.g. '|' (NIH): multi-label.", panel=TABLES, record=False
    )
    label_list: bool = option(
        False,
        "The --label-col cells are lists of names, e.g. ['pneumonia', 'infiltrates'] (PadChest): multi-label.",
        panel=TABLES,
        record=False,
    )
    label_cols: str | None = option(
        None,
        "One column per label, coded 1 positive, 0 negative, -1 uncertain, blank missing (CheXpert, MIMIC): "
        "A,B,C or FIRST..LAST (the columns from FIRST to LAST in header order), stored as they are.",
        panel=TABLES,
        record=False,
        metavar="COLS",
    )
    annotator_col: str | None = option(
        None,
        "Column naming who gave a row's labels (VinDr's rad_id): each annotator's labels are kept too "
        "(annotators, annotator_labels), beside the image's, the union of its rows.",
        panel=TABLES,
        record=False,
    )
    join: tuple[str, ...] = option(
        (),
        "Join another table on key columns to the --labels rows, e.g. mimic-cxr-2.0.0-chexpert.csv.gz:"
        "subject_id,study_id; its columns serve every --*-col and --where. Repeatable.",
        panel=TABLES,
        record=False,
        metavar="FILE:KEYS",
    )
    where: tuple[str, ...] = option(
        (),
        "Keep only rows whose column has one of the values (COL=A,B) or none of them (COL!=A,B), e.g. "
        "'ViewPosition=PA,AP'. Repeatable: all must hold.",
        panel=TABLES,
        record=False,
        metavar="COL=VALUES",
    )
    split_col: str | None = option(
        None,
        "Column with the official split (train/validate/test ...: stored as train/val/test, the name as given "
        "in source_split).",
        panel=TABLES,
        record=False,
    )
    split_list: tuple[str, ...] = option(
        (),
        "SPLIT=FILE: the images named in FILE (one name or path a line) are in SPLIT, e.g. test=test_list.txt "
        "(NIH). Repeatable; images in no list are skipped.",
        panel=TABLES,
        record=False,
        metavar="SPLIT=FILE",
    )
    patient_col: str | None = option(None, "--labels column with the patient id.", panel=TABLES, record=False)
    study_col: str | None = option(None, "--labels column with the study id.", panel=TABLES, record=False)
    view_col: str | None = option(
        None,
        "--labels column with the view (AP, PA, Lateral ...), stored as view_position.",
        panel=TABLES,
        record=False,
    )
    patient_pattern: str | None = option(
        None,
        "Regular expression finding the patient id in each image's path (its first group, else the match), "
        "e.g. 'patient\\d+' (CheXpert).",
        panel=TABLES,
        record=False,
        metavar="REGEX",
    )
    study_pattern: str | None = option(
        None,
        "Like --patient-pattern, for the study id; include the patient where study ids repeat across "
        "patients, e.g. 'patient\\d+/study\\d+'.",
        panel=TABLES,
        record=False,
        metavar="REGEX",
    )
    resplit: str | None = option(
        None,
        "Pool all splits and re-split by patient: train,val,test fractions, e.g. 0.8,0.1,0.1 "
        "(stable, stratified in expectation).",
        panel=LABELS,
    )
    keep_test: bool = option(
        False,
        "With --resplit: leave the official test split as it is and re-split the rest into train,val (two fractions).",
        panel=LABELS,
        record=False,
    )
    seed: int = option(0, "Seed of --resplit and --folds.", panel=LABELS, record=False)
    folds: int = option(0, "Also record a patient-grouped cross-validation fold (0..K-1) per image.", panel=LABELS)
    drop_duplicates: bool = option(
        False,
        "Drop each image that is a verified near-duplicate (the same exposure re-encoded, resized or cropped) "
        "of an image kept before it in path order; each is listed as skipped with that image and their score.",
        panel=LABELS,
    )
    keep_identifiers: bool = option(
        False,
        "Store DICOM PatientID/StudyInstanceUID as they are instead of keyed pseudonyms.",
        panel=HIGH_BIT,
        record=False,
    )

    def check(self) -> None:
        if self.folds < 0 or self.folds == 1 or self.folds > MAX_FOLDS:
            raise OptionError(f"{{folds}}: use 0 (none) or 2 to {MAX_FOLDS}", folds=self.folds)
        if self.resplit is not None:
            self.fractions()
        elif self.keep_test:
            raise OptionError("{keep_test:name} goes with {resplit:name}", keep_test=True, resplit=None)
        table_only = {
            name: getattr(self, name)
            for name in (
                "label_sep",
                "label_list",
                "label_cols",
                "annotator_col",
                "patient_col",
                "study_col",
                "view_col",
                "split_col",
                "join",
                "where",
                "label_col",
            )
            if getattr(self, name)
        }
        if not self.labels and table_only:
            names = " and ".join(f"{{{name}:name}}" for name in table_only)
            verb = "needs" if len(table_only) == 1 else "need"
            raise OptionError(f"{names} {verb} {{labels:name}} (a table)", labels=None, **table_only)
        self._check_label_shape()
        tables = self.tables()
        split_sources = [
            name
            for name, given in (
                ("split_col", self.split_col),
                ("split_list", self.split_list),
                ("labels", any(t.split for t in tables)),
            )
            if given
        ]
        if len(split_sources) > 1:
            first, second = split_sources[:2]
            raise OptionError(
                f"{{{first}:name}} and {{{second}:name}} both give splits: choose one",
                **{first: getattr(self, first), second: getattr(self, second)},
            )
        if any(t.split for t in tables) and not all(t.split for t in tables):
            raise OptionError(
                "{labels:name}: give every table a split (SPLIT=FILE) or none", labels=", ".join(self.labels)
            )
        self.joins(), self.filters(), self.split_lists()
        for name in ("patient_pattern", "study_pattern"):
            if getattr(self, name) is not None:
                table_spec.compiled(getattr(self, name), name)

    def _check_label_shape(self) -> None:
        """One shape of labels at a time: one column (maybe split by a separator, or a list), or coded columns."""
        if self.label_sep and self.label_list:
            raise OptionError(
                "{label_sep:name} and {label_list:name}: a cell is split one way; choose one",
                label_sep=self.label_sep,
                label_list=True,
            )
        if self.label_cols is not None:
            given = {n: getattr(self, n) for n in ("label_col", "label_sep", "label_list") if getattr(self, n)}
            if given:
                first = next(iter(given))
                raise OptionError(
                    f"{{label_cols:name}} and {{{first}:name}}: labels come from coded columns or one column; choose one",
                    label_cols=self.label_cols,
                    **{first: given[first]},
                )
            table_spec.label_columns_spec(self.label_cols)

    def tables(self) -> tuple[table_spec.TableFile, ...]:
        """``--labels``, each as its file and the split it gives (``""`` when none)."""
        return tuple(table_spec.table_file(value) for value in self.labels)

    def joins(self) -> tuple[table_spec.JoinSpec, ...]:
        """``--join``, parsed."""
        return tuple(table_spec.join_spec(value) for value in self.join)

    def filters(self) -> tuple[table_spec.WhereSpec, ...]:
        """``--where``, parsed."""
        return tuple(table_spec.where_spec(value) for value in self.where)

    def split_lists(self) -> tuple[table_spec.SplitList, ...]:
        """``--split-list``, parsed."""
        return tuple(table_spec.split_list(value) for value in self.split_list)

    def fractions(self) -> tuple[tuple[str, float], ...]:
        """``--resplit "0.8,0.1,0.1"`` as ((split name, fraction), ...); empty without --resplit."""
        if self.resplit is None:
            return ()
        fractions = parse_fractions(self.resplit)
        if not self.keep_test:
            return fractions
        if len(fractions) != 2:
            raise OptionError(
                "{resplit} with {keep_test:name}: give 2 fractions, train,val (the test split is kept)",
                resplit=self.resplit,
                keep_test=True,
            )
        return (("train", fractions[0][1]), ("val", fractions[1][1]))

    def recorded(self) -> dict[str, Any]:
        # What decides the labels, splits and identifiers besides the recorded options, in one text: "" for a
        # folder-layout build, so caches made before these options existed compare equal.
        spec: dict[str, Any] = {}
        if self.labels:
            spec.update(path=self.path_col, label=self.label_col, sep=self.label_sep, patient=self.patient_col)
            spec.update(label_list=self.label_list, label_cols=self.label_cols, annotator=self.annotator_col)
        spec.update(
            tables=[f"{t.split}={Path(t.file).name}" if t.split else Path(t.file).name for t in self.tables()],
            study=self.study_col,
            view=self.view_col,
            split=self.split_col,
            join=[f"{Path(j.file).name}:{','.join(j.keys)}" for j in self.joins()],
            where=list(self.where),
            split_list=[f"{t.split}={Path(t.file).name}" for t in self.split_lists()],
            patient_pattern=self.patient_pattern,
            study_pattern=self.study_pattern,
            keep_test=self.keep_test,
        )
        given = {key: value for key, value in spec.items() if value}
        text = json.dumps(given, sort_keys=True) if given else ""
        return {
            **super().recorded(),
            "identifiers": "kept" if self.keep_identifiers else "pseudonymised",
            "labels_columns": text,
            "seed": self.seed if self.resplit or self.folds else 0,  # a seed that changes nothing is not a setting
        }


SPLIT_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}


def parse_fractions(text: str) -> tuple[tuple[str, float], ...]:
    """``"0.8,0.1,0.1"`` -> (("train", 0.8), ("val", 0.1), ("test", 0.1)); 2 values name train and test."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise OptionError("{resplit}: give train,val,test fractions such as 0.8,0.1,0.1", resplit=text) from None
    if len(values) not in SPLIT_NAMES:
        raise OptionError("{resplit}: give 3 fractions (train,val,test) or 2 (train,test)", resplit=text)
    if any(v < 0 or not math.isfinite(v) for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise OptionError("{resplit}: fractions must be >= 0 and add up to 1", resplit=text)
    return tuple(zip(SPLIT_NAMES[len(values)], values, strict=True))


@dataclass(frozen=True)
class OutputOptions(_Part):
    """The output file: compression, layout, and whether an existing OUT may be replaced."""

    compression: Compression = option(
        "none", "HDF5 compression of the image arrays (none reads fastest).", panel=OUTPUT
    )
    overwrite: bool = option(False, "Replace OUT if it exists.", panel=OUTPUT, record=False)
    shards: int = option(
        1,
        "Write K shard files in parallel (each by its own worker) into a folder beside OUT, joined by OUT with "
        "HDF5 virtual datasets: for when the single writer is the limit. Move OUT together with its folder.",
        panel=SCALING,
        min=1,
        max=4096,
        record=False,
    )


@dataclass(frozen=True)
class RunOptions(_Part):
    """How the build runs: workers, strictness, compute backend. Nothing here changes a stored pixel."""

    jobs: int = option(-1, "Worker processes; -1 uses every core.", panel=RUNNING, flags=("--jobs", "-j"), record=False)
    strict: bool = option(
        False, "Fail (exit 1, nothing written) if any image cannot be decoded.", panel=RUNNING, record=False
    )
    file_timeout: float = option(
        DEFAULT_FILE_TIMEOUT,
        "Seconds one source file may take to decode; a file that takes longer has its worker stopped and is "
        "skipped with that reason (forked local workers, the default on Linux).",
        panel=RUNNING,
        min=0.01,
        max=86_400,  # a day; far past it the operating system's timers overflow
        record=False,
        metavar="SECONDS",
    )
    backend: Backend = option(
        "local",
        "Where images are decoded: local (--jobs processes, forked from the build on Linux, else as loky), "
        "loky (--jobs fresh interpreters: for a calling program whose threads make forking unsafe) or dask "
        "(a dask.distributed cluster: needs --scheduler; workers must see SRC and OUT at the same paths).",
        panel=SCALING,
        record=False,
    )
    scheduler: str | None = option(
        None,
        "dask scheduler address, e.g. tcp://HOST:8786 (default: $DASK_SCHEDULER_ADDRESS).",
        panel=SCALING,
        record=False,
    )
    scheduler_timeout: float = option(
        DEFAULT_CONNECT_TIMEOUT,
        "Seconds to reach the dask scheduler and its first worker before giving up.",
        panel=SCALING,
        min=0.1,
        record=False,
    )

    def check(self) -> None:
        cpus = os.cpu_count() or 1
        if self.jobs == 0 or self.jobs < -cpus:
            raise OptionError("{jobs}: use a positive number of workers, or -1 for all cores", jobs=self.jobs)
        if self.backend != "dask" and self.scheduler:
            raise OptionError(
                "{scheduler:name} is for {backend:bare}; set it, or drop {scheduler:name}",
                scheduler=self.scheduler,
                backend="dask",
            )

    def workers(self) -> int:
        """``jobs`` as a number of local worker processes (-1: every core, -2: all but one, ...)."""
        cpus = os.cpu_count() or 1
        return max(1, cpus + 1 + self.jobs) if self.jobs < 0 else self.jobs


@dataclass(frozen=True)
class BuildOptions:
    """Every option of a build, in four validated parts: the one options object of ``xraycache.build``.

    Make one with ``BuildOptions.from_flat(size=128, jobs=2)`` or ``BuildOptions(resize=ResizeOptions(size=128))``;
    ``replace(size=64)`` gives a changed copy. Making one validates it (:class:`~xraycache.OptionError` naming
    the keyword), so every ``BuildOptions`` in the program is usable. ``help(xraycache.build)`` lists every
    option with its default and meaning.

    Parameters
    ----------
    resize : ResizeOptions
        The pixel settings (size, fit, filter, max_pixels, window, dtype): all the workers receive.
    sources : SourceOptions
        Labels, splits, folds and identifiers.
    output : OutputOptions
        Compression, overwrite, shards.
    run : RunOptions
        Workers, strictness, compute backend: nothing here changes a stored pixel.
    """

    resize: ResizeOptions = field(default_factory=ResizeOptions)
    sources: SourceOptions = field(default_factory=SourceOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    run: RunOptions = field(default_factory=RunOptions)

    PARTS: ClassVar[dict[str, type[_Part]]] = {
        "resize": ResizeOptions,
        "sources": SourceOptions,
        "output": OutputOptions,
        "run": RunOptions,
    }

    def __post_init__(self) -> None:
        for name, part in self.PARTS.items():
            if not isinstance(getattr(self, name), part):
                raise TypeError(
                    f"BuildOptions.{name} must be a {part.__name__}, not {type(getattr(self, name)).__name__}"
                )

    @classmethod
    def fields(cls) -> list[tuple[str, dataclasses.Field[Any]]]:
        """(part name, field) of every option, in definition order (the CLI's order)."""
        return [(name, f) for name, part in cls.PARTS.items() for f in fields(part)]

    @classmethod
    def from_flat(cls, **values: Any) -> BuildOptions:
        """Options from flat keywords (``size=128, jobs=2, labels="x.csv"``); InputError for unknown names."""
        return cls().replace(**values)

    def replace(self, **values: Any) -> BuildOptions:
        """A copy with some options changed, by flat name; validated like a new one."""
        owner = {f.name: part for part, f in self.fields()}
        changes: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            if key not in owner:
                close = difflib.get_close_matches(key, owner, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise TypeError(f"unknown build option {key!r}; {hint}the options are: {', '.join(owner)}")
            changes.setdefault(owner[key], {})[key] = value
        return dataclasses.replace(
            self, **{part: dataclasses.replace(getattr(self, part), **kw) for part, kw in changes.items()}
        )

    def settings(self) -> dict[str, Any]:
        """The options recorded in the cache file (root attributes), which an incremental rebuild compares."""
        return {**self.resize.recorded(), **self.sources.recorded(), **self.output.recorded(), **self.run.recorded()}


def setting_names() -> tuple[str, ...]:
    """Names of the recorded option settings (the keys of ``BuildOptions().settings()``)."""
    return tuple(BuildOptions().settings())
