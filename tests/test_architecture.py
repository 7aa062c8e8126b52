"""The package's layers hold at run time: no import cycle, and reading a cache loads no build stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import radiograph, write_image

import xraycache

HEAVY = ("joblib", "dask", "distributed", "PIL", "matplotlib", "pydicom", "xraycache.builder", "xraycache.imaging")


def _loaded_after(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; return which HEAVY modules it loaded, and what it printed."""
    script = (
        "import json, sys\n"
        + code
        + f"\nprint(json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules], 'out': OUT}}))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_no_import_cycle() -> None:
    grimp = pytest.importorskip("grimp")  # installed with import-linter (the test extra)
    graph = grimp.build_graph("xraycache")
    cycles = [module for module in sorted(graph.modules) if module in graph.find_upstream_modules(module)]
    assert cycles == [], f"modules that import themselves through others: {cycles}"


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("arch")
    for i in range(6):
        label = "NORMAL" if i % 2 else "PNEUMONIA"
        name = f"IM-{i:04d}-0001.jpeg" if label == "NORMAL" else f"person{i}_bacteria_{i}.jpeg"
        write_image(root / "src" / "train" / label / name, radiograph(120, 100, seed=i))
    out = root / "c.h5"
    xraycache.build(root / "src", out, size=32, jobs=1)
    return out


def test_reading_a_cache_loads_no_build_stack(small_cache: Path) -> None:
    result = _loaded_after(
        "import xraycache\n"
        f"cache = xraycache.open({str(small_cache)!r})\n"
        "split = cache['train']\n"
        "x, y = split.load(channels=None, label_dtype=None)\n"
        "batches = list(split.batches(4, dtype='float32'))\n"
        "from xraycache.read.stats import summarize\n"
        "stats = summarize(cache)\n"
        "leaks = cache.leakage()\n"
        "OUT = [int(x.shape[0]), len(batches), stats.splits[0].count, leaks.images]"
    )
    assert result["out"] == [6, 2, 6, 6]
    assert result["loaded"] == [], f"reading loaded {result['loaded']}"


def test_torch_adapter_loads_no_build_stack(small_cache: Path) -> None:
    pytest.importorskip("torch")
    result = _loaded_after(
        f"import xraycache.torch\nds = xraycache.torch.XrayDataset({str(small_cache)!r}, 'train')\nOUT = len(ds)"
    )
    assert result["out"] == 6
    assert [m for m in result["loaded"] if m != "PIL"] == []  # torch itself may import PIL; xraycache does not


def test_plots_load_matplotlib_only_when_drawing(small_cache: Path) -> None:
    imported = _loaded_after("import xraycache.read.figures\nimport xraycache.read.html_report\nOUT = 0")
    assert "matplotlib" not in imported["loaded"]
    drawn = _loaded_after(
        f"import xraycache\nfrom xraycache.read import figures\nOUT = 0\nfigures.counts(xraycache.open({str(small_cache)!r}))"
    )
    assert "matplotlib" in drawn["loaded"] and "joblib" not in drawn["loaded"]


def test_cli_help_loads_no_heavy_module() -> None:
    for args in (["--help"], ["build", "--help"], ["show", "--help"], ["ls", "--help"], ["export", "--help"]):
        result = _loaded_after(
            "from xraycache.cli import app\n"
            f"try:\n    app({args!r}, prog_name='xraycache')\nexcept SystemExit:\n    pass\n"
            "OUT = [m for m in ('numpy', 'h5py') if m in sys.modules]"
        )
        assert result["loaded"] == [] and result["out"] == [], (args, result)


def test_import_xraycache_is_lazy() -> None:
    result = _loaded_after("import xraycache\nOUT = [m for m in ('h5py', 'numpy') if m in sys.modules]")
    assert result["loaded"] == [] and result["out"] == []
    built = _loaded_after("import xraycache\nOUT = callable(xraycache.build)")
    assert built["out"] is True and "xraycache.builder" in built["loaded"]  # the build stack comes with ``build``
    assert "joblib" not in built["loaded"]  # only loky, dask and sharded builds need it
