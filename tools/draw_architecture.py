"""Draw docs/architecture.png: the data flow of a build and a read, each stage coloured by its layer.

python tools/draw_architecture.py      # rewrites docs/architecture.png
"""

from __future__ import annotations

import itertools
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).resolve().parent.parent / "docs" / "architecture.png"
LAYERS = {  # name: (colour, modules)
    "cli": ("#d9d9d9", "xraycache.cli: parse, call, print (the only code that prints)"),
    "builder": ("#9ecae1", "xraycache.builder: scan, prepare, plan, workers, writer, shards"),
    "read": ("#a1d99b", "xraycache.read (+ xraycache.torch): Cache/Split, stats, figures, HTML report"),
    "imaging": ("#fdd0a2", "xraycache.imaging: decoder plugins, window, resize"),
    "analysis": ("#dadaeb", "xraycache.analysis: leakage on stored columns"),
    "core": ("#fff2ae", "xraycache.core: errors, BuildOptions, file format, atomic write"),
}
# (label, detail, layer, x, y)
STAGES = [
    ("SRC folder", "chest_xray/train/NORMAL/*.jpeg\n(+ labels CSV, DICOM)", None, 0.085, 0.70),
    ("scan", "builder/scan.py\nlayout, labels, patients", "builder", 0.252, 0.70),
    ("prepare + plan", "builder/prepare.py, plan.py\nCSV, resplit, reuse old OUT", "builder", 0.419, 0.70),
    ("decode", "imaging/decode.py in loky or dask\nworkers: bytes -> resized array", "imaging", 0.586, 0.70),
    ("write", "builder/writer.py (one process)\nor builder/shards.py", "builder", 0.753, 0.70),
    ("OUT.h5", "core/schema.py: one HDF5 file,\nwritten atomically (core/atomic.py)", "core", 0.915, 0.70),
    ("open", "core/validate.py open_cache:\nthe one validating open", "core", 0.915, 0.30),
    ("read", "read/cache.py: load(), batches(),\nxraycache.torch", "read", 0.70, 0.30),
    ("analyse", "read/stats.py, analysis/leakage.py\nfrom stored histograms/columns", "read", 0.485, 0.30),
    ("show", "read/figures.py, html_report.py,\ncli: show, info, verify", "cli", 0.27, 0.30),
]


def main() -> None:
    fig = Figure(figsize=(13, 5.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    w, h = 0.142, 0.2
    centres = {}
    for label, detail, layer, x, y in STAGES:
        colour = LAYERS[layer][0] if layer else "white"
        box = FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.006", facecolor=colour, edgecolor="#444444"
        )
        ax.add_patch(box)
        ax.text(x, y + 0.045, label, ha="center", va="center", fontsize=11, fontweight="bold")
        ax.text(x, y - 0.035, detail, ha="center", va="center", fontsize=7.5)
        centres[label] = (x, y)
    order = [s[0] for s in STAGES]
    for a, b in itertools.pairwise(order):
        (x0, y0), (x1, y1) = centres[a], centres[b]
        if y0 == y1:
            start = (x0 + w / 2 * (1 if x1 > x0 else -1), y0)
            end = (x1 - w / 2 * (1 if x1 > x0 else -1), y1)
        else:
            start, end = (x0, y0 - h / 2), (x1, y1 + h / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="#333333", lw=1.4))
    ax.text(0.015, 0.93, "build: xraycache build SRC OUT.h5", fontsize=11, color="#08519c", fontweight="bold")
    ax.text(0.015, 0.47, "read: xraycache.open / show / torch", fontsize=11, color="#006d2c", fontweight="bold")
    for i, (colour, text) in enumerate(LAYERS.values()):
        y = 0.125 - (i % 3) * 0.045
        x = 0.02 + (i // 3) * 0.5
        ax.add_patch(FancyBboxPatch((x, y - 0.013), 0.02, 0.026, boxstyle="square,pad=0", facecolor=colour))
        ax.text(x + 0.027, y, text, va="center", fontsize=8.5)
    ax.text(
        0.985,
        0.955,
        "each layer imports only the layers below it (core at the bottom); builder and read never import each other",
        ha="right",
        fontsize=8.5,
        va="top",
        style="italic",
    )
    fig.savefig(OUT, dpi=110, facecolor="white")
    print(OUT)


if __name__ == "__main__":
    main()
