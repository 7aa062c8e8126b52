"""The HTML report in a real browser (headless Chromium): it loads without console errors, shows every
section with every figure decoded, and its screenshot is not blank.

Skipped where no Chromium is installed; CI installs Debian's ``chromium`` and sets
XRAYCACHE_REQUIRE_BROWSER=1, so there it fails instead.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import xraycache
from xraycache.read import html_report

pytestmark = pytest.mark.slow  # a headless Chromium per test

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SECTIONS = ["statistics", "leakage", "skipped", "counts", "hist-split", "hist-class", "grid", "image"]

# Put first in <head> of a copy of the page: records script errors, failed resources and console.error,
# then, once loaded, whether each image decoded and each section has a height, in an attribute --dump-dom shows.
HOOK = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  var what = e.message || (e.target && e.target.tagName) || "error";
  window.__errors.push("error: " + what);
}, true);
var __consoleError = console.error;
console.error = function () { window.__errors.push("console.error: " + Array.from(arguments).join(" ")); };
window.addEventListener("load", function () {
  var check = {
    errors: window.__errors,
    images: Array.from(document.images).map(function (i) { return i.complete && i.naturalWidth > 0; }),
    sections: Array.from(document.querySelectorAll("section")).map(function (s) {
      return [s.id, s.getBoundingClientRect().height > 0 && !!s.querySelector("h2")];
    }),
  };
  document.documentElement.setAttribute("data-check", JSON.stringify(check));
});
</script>"""


def _browser() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("XRAYCACHE_REQUIRE_BROWSER") == "1":
            pytest.fail("XRAYCACHE_REQUIRE_BROWSER=1 but no Chromium found (apt-get install -y chromium)")
        pytest.skip("no Chromium here (apt-get install -y chromium); CI runs this test")
    return found


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _console_lines(log: str) -> list[str]:
    """Chromium logs every console message and uncaught exception as a CONSOLE line."""
    return [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory, reader_cache: Path) -> Path:
    out = tmp_path_factory.mktemp("browser") / "report.html"
    with xraycache.open(reader_cache) as cache:
        html_report.write_report(cache, out, dpi=60)
    return out


def _checked(browser: str, page: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """Load ``page`` with the hook; what the hook found, and Chromium's log."""
    hooked = tmp_path / "hooked.html"
    hooked.write_text(page.replace("<head>", "<head>" + HOOK, 1), encoding="utf-8")
    result = _chromium(browser, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", hooked.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r'data-check="([^"]*)"', result.stdout)
    assert match, "the load hook did not run: " + result.stdout[:500]
    return json.loads(html.unescape(match.group(1))), result.stderr


def test_the_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The hook is not blind: a script error and an image that does not decode are reported."""
    browser = _browser()
    broken = (
        "<!doctype html><html><head><title>x</title></head><body><section id='a'><h2>a</h2>"
        "<img src='data:image/png;base64,AAAA'></section><script>undefinedFunction();</script></body></html>"
    )
    check, log = _checked(browser, broken, tmp_path)
    assert any("undefinedFunction" in e for e in check["errors"]) and check["images"] == [False]
    assert _console_lines(log)


def test_report_loads_without_errors_and_shows_every_section(report_page: Path, tmp_path: Path) -> None:
    browser = _browser()
    check, log = _checked(browser, report_page.read_text(encoding="utf-8"), tmp_path)
    assert check["errors"] == []
    assert [name for name, _ in check["sections"]] == SECTIONS
    assert all(shown for _, shown in check["sections"]), check["sections"]
    assert len(check["images"]) == 5 and all(check["images"]), check["images"]
    assert _console_lines(log) == []


def test_report_screenshot_is_not_blank(report_page: Path, tmp_path: Path) -> None:
    browser = _browser()
    shot = tmp_path / "report.png"
    result = _chromium(
        browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,2400", report_page.as_uri()
    )
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert _console_lines(result.stderr) == []  # the page as shipped: no script, so no console line at all
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1200)
    assert pixels.std() > 20  # text, tables and figures; a blank or failed page is one flat colour
    dark = (pixels < 100).mean()
    assert 0.005 < dark < 0.6, dark  # some ink, on a mostly light page
    rows_with_ink = (pixels < 128).any(axis=1).mean()
    assert rows_with_ink > 0.3  # content down the page, not only a header
