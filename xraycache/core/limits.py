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

# Screened pairs a reader verifies on their pixels (about 1.5 ms each: 20,000 are about 30 s). A legitimate
# cache has few (the 496-image sample: 51 images read); a file others made can make every pair pass the
# screen (5,000 crafted rows gave 34,888). Past it the report says the search was not done.
SEARCH_PAIRS = 20_000
