"""Draw docs/near-duplicates.png: the verified scores of copies, of follow-up films and of every pair of
different patients, from the scores ``benchmarks.near_duplicates --scores-out`` saved.

python tools/draw_near_duplicates.py SCORES.npz      # rewrites docs/near-duplicates.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

OUT = Path(__file__).resolve().parent.parent / "docs" / "near-duplicates.png"


def main(scores_path: str) -> None:
    from xraycache.analysis.near_duplicates import THRESHOLD

    scores = np.load(scores_path)
    pools = sorted({key.split(".")[0] for key in scores.files} - {"copies"})
    fig = Figure(figsize=(9, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    bins = np.linspace(-0.2, 1.0, 121)
    for pool in pools:
        verified, same = scores[f"{pool}.verified"], scores[f"{pool}.same_patient"].astype(bool)
        ax.hist(verified[~same], bins, histtype="step", density=True, label=f"{pool}: different patients, every pair")
        if same.any():
            ax.hist(verified[same], bins, histtype="step", density=True, ls="--", label=f"{pool}: same patient")
    copies = scores["copies.verified"]
    ax.hist(copies, bins, histtype="stepfilled", alpha=0.4, density=True, label="altered copies vs their originals")
    ax.axvline(THRESHOLD, color="k", lw=1)
    ax.text(THRESHOLD, ax.get_ylim()[1] * 0.95, f" threshold {THRESHOLD}", va="top", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("verified score (aligned fine-structure correlation of 64 px thumbnails)")
    ax.set_ylabel("density (log)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(OUT)


if __name__ == "__main__":
    main(sys.argv[1])
