"""The last step of a build: the near-duplicates' verdict applied, the file finished, rewritten when rows
must go or move, made durable and renamed over OUT.

Near-duplicates are known only from decoded pixels, so they are found in the rows as written
(``regroup.py``); the file is then rewritten with the rows the layout keeps (``rewrite.py``), or compacted
when skipped files left rows unused, and only then renamed into place (``core/atomic.py``): a reader, a
crash or another user sees the old OUT or the complete new one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ..core.errors import Skipped
from ..core.schema import storable_path
from .job import BuildJob, Outcome
from .plan import Plan
from .regroup import Layout, regroup
from .rewrite import compact, rearrange
from .scan import SourceFile
from .writer import CacheWriter


def commit(job: BuildJob, writer: CacheWriter, written: list[SourceFile], plan: Plan) -> Outcome:
    """Regroup near-duplicates where the build asks for it, then :func:`commit_file`; what OUT now holds.

    ``written``: the files the execution wrote, in order."""
    layout = None
    if job.regroups:
        rows = {split: writer.written_rows(split) for split in writer.capacities}
        layout = regroup(
            rows,
            drop=job.drop_duplicates,
            resplit=job.group_near_duplicates,
            folds=job.group_folds,
            fixed=job.fixed_splits,
        )
    if layout is None:
        outcome = Outcome.written(plan, written)
    else:
        job.skips.extend(layout.dropped)  # after the strict check: dropping is what was asked for
        outcome = Outcome.written(
            plan,
            written,
            _placed(written, layout),
            dropped_duplicates=len(layout.dropped),
            moved_duplicates=layout.moved,
        )
    commit_file(writer, job.skips.entries, layout)
    return outcome


def commit_file(writer: CacheWriter, skipped: Sequence[Skipped] = (), layout: Layout | None = None) -> Path:
    """Finish ``writer``'s file with the ``skipped`` rows, rewrite it into the rows ``layout`` keeps (or
    just the rows written, when files were skipped), make it durable and rename it to OUT."""
    written = writer.finish(skipped)
    if layout is not None:
        rearrange(writer.output, layout, len(writer.label_names))
    elif any(written[split] < capacity for split, capacity in writer.capacities.items()):
        compact(writer.output, written)
    return writer.output.commit()


def _placed(kept: list[SourceFile], layout: Layout) -> list[SourceFile]:
    """The files the final file holds, each with the split (and fold) the layout put it in."""
    dropped = {row.path for row in layout.dropped}
    split_of = {}
    for split, rows in layout.rows.items():
        for row in rows:
            split_of[row] = split
    out = []
    index = {split: 0 for split in layout.rows}
    for source in kept:  # written in this order, so the n-th file of a split is its row n
        row = (source.split, index[source.split])
        index[source.split] += 1
        if storable_path(source.path) in dropped:
            continue
        fold = layout.folds.get(row, source.fold)
        out.append(dataclasses.replace(source, split=split_of[row], fold=fold))
    return out
