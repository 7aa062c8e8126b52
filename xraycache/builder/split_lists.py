"""``--split-list SPLIT=FILE``: files listing the images of an official split, one a line (NIH's
``train_val_list.txt`` and ``test_list.txt`` name 86,524 and 25,596 images by file name).

An image is in the split of the list naming its path relative to SRC, else its file name where that name
is unique among the images (CheXpert's ``view1_frontal.jpg`` repeats in every study: such a name is never
guessed). An image named by two lists, or by none, is skipped with that reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.errors import DecodeError, InputError
from ..core.files import read_regular
from ..core.table_spec import SplitList
from .scan import SourceFile
from .table_rows import normalize
from .tables import MAX_TABLE_BYTES


@dataclass
class SplitLists:
    """The entries of every ``--split-list`` file, each with its split, and the files' digest."""

    split_of: dict[str, str] = field(default_factory=dict)  # path or name -> split
    twice: set[str] = field(default_factory=set)  # entries two lists give different splits
    sha256: list[str] = field(default_factory=list)  # of each file's bytes, in order

    @classmethod
    def read(cls, lists: Sequence[SplitList]) -> SplitLists:
        """Read each list once (its digest from the same bytes)."""
        out = cls()
        for listed in lists:
            data = _read(listed.file)
            out.sha256.append(hashlib.sha256(data).hexdigest())
            for entry in _entries(data, listed.file):
                if out.split_of.setdefault(entry, listed.split) != listed.split:
                    out.twice.add(entry)
        return out

    def digest(self) -> str:
        """``:`` and the sha256 of the lists' digests (empty without lists): a rebuild must see them unchanged."""
        if not self.sha256:
            return ""
        return ":" + hashlib.sha256("".join(self.sha256).encode("ascii")).hexdigest()

    def assign(self, files: list[SourceFile], unlabeled: list[tuple[str, str]]) -> list[SourceFile]:
        """Each image in the split whose list names it; the others to ``unlabeled`` with the reason."""
        names = Counter(f.path.rpartition("/")[2] for f in files)
        out = []
        for f in files:
            name = f.path.rpartition("/")[2]
            key = f.path if f.path in self.split_of else name if names[name] == 1 else None
            if key is None or key not in self.split_of:
                why = "in no --split-list file" if names[name] == 1 else "in no --split-list file by its path"
                unlabeled.append((f.path, why + ("" if names[name] == 1 else " (its file name is not unique)")))
            elif key in self.twice:
                unlabeled.append((f.path, "named by two --split-list files"))
            else:
                out.append(dataclasses.replace(f, split=self.split_of[key], source_split=self.split_of[key]))
        return out


def _read(file: str) -> bytes:
    try:
        data, _ = read_regular(file, MAX_TABLE_BYTES)
    except OSError as exc:
        raise InputError(f"cannot read split list {file}: {exc.strerror or exc}") from None
    except DecodeError as exc:
        raise InputError(f"cannot read split list {file}: {exc}") from None
    return data


def _entries(data: bytes, file: str) -> set[str]:
    """The paths or names a split list gives (normalised like a table's paths; blank lines skipped)."""
    entries = {normalize(line) for line in data.decode("utf-8-sig", "surrogateescape").splitlines()}
    entries.discard("")
    if not entries:
        raise InputError(f"split list {file} names no image")
    return entries
