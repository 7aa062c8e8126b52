"""Regenerate the performance table of docs/performance.md from the latest full run in the history.

    python -m benchmarks.readme            # rewrite the block between the bench markers in docs/performance.md
    python -m benchmarks.readme --check    # exit 1 if docs/performance.md is not up to date (no write)
    python -m benchmarks.readme --page P   # another page

Only the text between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` is replaced; if the markers
are missing, a "## Performance" section holding them is inserted before "## License" (or at the end).
The README keeps one small table of its own, with the command that made it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report import markdown

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
SECTION_INTRO = """## Performance

Measured by `python -m benchmarks.run --env /tmp/vsimd/bin/python` (see `benchmarks/`), which times
the notebook's loop, the machine's decode-only limit and `xraycache build` side by side, rep by rep,
appends every figure to `benchmarks/results/history.jsonl` and plots it; `python -m benchmarks.readme`
then writes the table below from the latest full run (the history has every filter; only the
default one is shown here). Ratios are medians of per-rep ratios. Install the tools with
`pip install '.[bench]'` (and Pillow-SIMD in a second venv, `bash scripts/pillow-simd.sh`);
`--quick` is a smoke run on tiny generated data, `--data DIR` benchmarks another dataset.
"""


def latest(history: Path) -> dict[str, Any]:
    """The last non-quick record of HISTORY (the last record if every run was quick)."""
    records = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    if not records:
        raise SystemExit(f"{history} holds no runs; run python -m benchmarks.run first")
    full = [r for r in records if not r.get("quick")]
    return (full or records)[-1]


def render(readme: str, block: str) -> str:
    """Page text with the bench block replaced (or a Performance section inserted before License)."""
    body = f"{START}\n{block.strip()}\n{END}"
    if START in readme and END in readme:
        head, rest = readme.split(START, 1)
        _, tail = rest.split(END, 1)
        return head + body + tail
    section = f"{SECTION_INTRO}\n{body}\n\n"
    marker = "## License"
    if marker in readme:
        head, tail = readme.split(marker, 1)
        return head + section + marker + tail
    return readme.rstrip("\n") + "\n\n" + section


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, verify) the performance block of docs/performance.md."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__.split("\n")[0])
    p.add_argument("--history", type=Path, default=ROOT / "benchmarks" / "results" / "history.jsonl")
    p.add_argument("--page", "--readme", dest="readme", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--check", action="store_true", help="do not write; exit 1 if the page is stale")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    new = render(text, markdown(latest(args.history), compact=True))
    if args.check:
        return 0 if new == text else 1
    if new != text:
        args.readme.write_text(new)
    print(f"{args.readme}: performance table {'updated' if new != text else 'already up to date'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
