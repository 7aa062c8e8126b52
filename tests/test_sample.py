"""The synthetic sample: a spread of sizes that exercises every DCT scale a default build decodes at."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from xraycache.core.options import ResizeOptions
from xraycache.imaging.decoders.pillow import draft_request
from xraycache.sample import _draw_image, draw, encode, plan


def _dct_scale(width: int, height: int) -> int:
    """The denominator libjpeg decodes at for the default build's draft request."""
    data = encode(plan(3)[0], np.zeros((height, width), np.uint8))
    image = Image.open(io.BytesIO(data))
    image.draft("L", draft_request(width, height, ResizeOptions()))
    return round(width / image.size[0])


def test_the_demo_sizes_exercise_every_dct_scale() -> None:
    items = plan(600, seed=0)
    scales = {}
    for item in items:
        short = min(item.width, item.height)
        scales.setdefault(1 if short < 1024 else 2 if short < 2048 else 4, item)
    assert sorted(scales) == [1, 2, 4]
    assert {_dct_scale(i.width, i.height) for i in scales.values()} == {1, 2, 4}
    assert {i.kind for i in items} == {"normal", "bacterial", "viral"}
    assert 0.05 < sum(i.rgb for i in items) / len(items) < 0.15


def test_drawn_images_look_like_radiographs() -> None:
    """Dark surround, bright body and spine, darker lungs; grain present; deterministic from the seed."""
    item = next(i for i in plan(20, seed=1) if i.kind != "normal")
    pixels = draw(item)
    assert pixels.shape == (item.height, item.width) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, np.asarray(_draw_image(item)))
    assert np.array_equal(pixels, draw(item))
    h, w = pixels.shape
    corner = pixels[: h // 10, : w // 10].mean()
    spine = pixels[h // 2 - h // 20 : h // 2 + h // 20, w // 2 - w // 100 : w // 2 + w // 100 + 1].mean()
    assert corner < 40 < spine
    assert pixels[h // 10 : h // 5, : w // 10].std() > 1.5  # film grain on the flat surround
