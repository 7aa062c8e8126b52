"""The README stays a five-minute read whose code runs: its NumPy snippet runs as written on the quick start's
demo.h5, and every relative link of the README, CONTRIBUTING.md and docs/ leads to a file and heading that exist.
(The PyTorch loop is run by tests/test_training_loop.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = "<!-- numpy-snippet"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_the_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < 300, f"README.md has {len(lines)} lines: move details to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: no heading #{anchor} in {linked.name}"


@pytest.mark.slow
def test_the_numpy_snippet_runs_on_the_demo(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert code and '"demo.h5"' in code.group(1)
    cli = [sys.executable, "-m", "xraycache"]
    subprocess.run([*cli, "sample", "demo"], cwd=tmp_path, check=True, capture_output=True, timeout=600)
    subprocess.run([*cli, "build", "demo/chest_xray", "demo.h5", "-q"], cwd=tmp_path, check=True, timeout=600)
    (tmp_path / "snippet.py").write_text(code.group(1))
    done = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"val accuracy \d\.\d{3} on \d+ images", done.stdout), done.stdout
