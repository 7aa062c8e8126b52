"""Bounds on the work a reader does for a cache file: a file's row count is whatever it claims, so work
that grows faster than its rows is bounded here, by a number a legitimate cache of that use stays under.

No imports: the command line's options read these defaults while ``--help`` loads neither numpy nor h5py.
"""

from __future__ import annotations

# Images the near-duplicate search compares when a command runs it along the way (``info``, ``show``,
# ``verify``), and by default in ``duplicates``. Its candidate stage grows with the square of the count
# (docs/leakage.md: 41 s at 100,000 images, several times that when descriptors crowd together), and a small
# compressed file can claim a million images.
SEARCH_IMAGES = 20_000
DUPLICATES_SEARCH_IMAGES = 100_000
