"""Draw docs/overview.png: what xraycache does, in one picture (the README's first figure).

python tools/draw_overview.py      # rewrites docs/overview.png
"""

from __future__ import annotations

import itertools
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).resolve().parent.parent / "docs" / "overview.png"
# (title, lines, colour, x centre)
BOXES = [
    (
        "a folder of radiographs",
        [
            "chest_xray/{train,val,test}/",
            "  {NORMAL,PNEUMONIA}/*.jpeg",
            "NIH PNGs + labels CSV",
            "DICOM (RSNA, VinDr, ...)",
        ],
        "#eeeeee",
        0.125,
    ),
    (
        "xraycache build SRC OUT.h5",
        [
            "decode once, on every core",
            "exact area resize to 256 px",
            "labels, patients, provenance",
            "leakage + near-duplicates",
            "incremental, atomic, bounded memory",
        ],
        "#9ecae1",
        0.375,
    ),
    (
        "OUT.h5: one HDF5 file",
        [
            "/train/images  (N, 256, 256) uint8",
            "/train/labels, /train/meta/*",
            "checksums, descriptors, stats",
            "/skipped: what was left out, why",
        ],
        "#fff2ae",
        0.625,
    ),
    (
        "your training loop",
        [
            'xraycache.open(f)["train"].images[i]',
            "split.batches(64, shuffle=True)",
            "xraycache.torch.XrayDataset",
            "xraycache show, verify, ...",
        ],
        "#a1d99b",
        0.875,
    ),
]


def main() -> None:
    fig = Figure(figsize=(14, 2.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    width, height, y = 0.205, 0.86, 0.07
    for title, lines, colour, x in BOXES:
        ax.add_patch(
            FancyBboxPatch(
                (x - width / 2, y), width, height, boxstyle="round,pad=0.01", facecolor=colour, edgecolor="#555555"
            )
        )
        ax.text(x, y + height - 0.1, title, ha="center", va="center", fontsize=11, fontweight="bold")
        ax.text(
            x - width / 2 + 0.012,
            y + height - 0.16,
            "\n".join(lines),
            ha="left",
            va="top",
            fontsize=9,
            family="monospace" if title.startswith(("OUT", "your")) else None,
            linespacing=1.6,
        )
    for (_, _, _, left), (_, _, _, right) in itertools.pairwise(BOXES):
        ax.add_patch(
            FancyArrowPatch(
                (left + width / 2 + 0.004, y + height / 2),
                (right - width / 2 - 0.004, y + height / 2),
                arrowstyle="-|>",
                mutation_scale=18,
                color="#333333",
            )
        )
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT)
    print(OUT)


if __name__ == "__main__":
    main()
