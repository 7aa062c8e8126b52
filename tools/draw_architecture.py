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
    "builder": ("#9ecae1", "xraycache.builder: pipeline.run_build, the one orchestrator of a build"),
    "read": ("#a1d99b", "xraycache.read (+ xraycache.torch): Cache/Split, stats, figures, HTML report"),
    "imaging": ("#fdd0a2", "xraycache.imaging: decoder plugins, window, resize"),
    "analysis": ("#dadaeb", "xraycache.analysis: near-duplicates, leakage on stored columns"),
    "core": ("#fff2ae", "xraycache.core: errors, BuildOptions, schema, validating open, atomic write"),
}
# (label, detail, layer, x, y)
STAGES = [
    ("SRC folder", "chest_xray/train/\nNORMAL/*.jpeg, or a\nrelease + its tables", None, 0.07, 0.70),
    ("scan", "builder/scan.py or\ntable_scan.py: folders\nor tables name files", "builder", 0.21, 0.70),
    ("prepare", "builder/prepare.py\ntable rows, DICOM ids,\nresplit, folds", "builder", 0.35, 0.70),
    ("plan", "builder/plan.py (pure)\nreuse from old OUT\n(old_cache.py) or decode", "builder", 0.49, 0.70),
    ("execute", "builder/execute.py\nworkers.py run imaging/\ndecode.py -> writer.py", "builder", 0.63, 0.70),
    ("commit", "builder/commit.py\nregroup, rewrite.py,\nrename (core/atomic.py)", "builder", 0.77, 0.70),
    ("OUT.h5", "core/schema.py:\none HDF5 file\n(shards.py: K + a join)", "core", 0.92, 0.70),
    ("open", "core/validate.py\nopen_cache: the one\nvalidating open", "core", 0.92, 0.30),
    ("read", "read/cache.py: load(),\nbatches(),\nxraycache.torch", "read", 0.70, 0.30),
    ("analyse", "read/stats.py,\nanalysis/leakage.py\nfrom stored columns", "read", 0.485, 0.30),
    ("show", "read/figures.py,\nhtml_report.py; cli:\nshow, info, verify", "cli", 0.27, 0.30),
]


def main() -> None:
    fig = Figure(figsize=(13, 5.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    w, h = 0.125, 0.22
    centres = {}
    for label, detail, layer, x, y in STAGES:
        colour = LAYERS[layer][0] if layer else "white"
        box = FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.006", facecolor=colour, edgecolor="#444444"
        )
        ax.add_patch(box)
        ax.text(x, y + 0.065, label, ha="center", va="center", fontsize=11, fontweight="bold")
        ax.text(x, y - 0.025, detail, ha="center", va="center", fontsize=7.5)
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
    ax.text(
        0.015,
        0.93,
        "build: xraycache build SRC OUT.h5 (builder/pipeline.py: scan -> prepare -> plan -> execute -> commit)",
        fontsize=11,
        color="#08519c",
        fontweight="bold",
    )
    ax.text(0.015, 0.47, "read: xraycache.open / show / torch", fontsize=11, color="#006d2c", fontweight="bold")
    for i, (colour, text) in enumerate(LAYERS.values()):
        y = 0.125 - (i % 3) * 0.045
        x = 0.02 + (i // 3) * 0.5
        ax.add_patch(FancyBboxPatch((x, y - 0.013), 0.02, 0.026, boxstyle="square,pad=0", facecolor=colour))
        ax.text(x + 0.027, y, text, va="center", fontsize=8.5)
    ax.text(
        0.015,
        0.885,
        "each layer imports only the layers below it (core at the bottom); builder and read never import each other",
        ha="left",
        fontsize=8.5,
        va="top",
        style="italic",
    )
    fig.savefig(OUT, dpi=110, facecolor="white")
    print(OUT)


if __name__ == "__main__":
    main()
