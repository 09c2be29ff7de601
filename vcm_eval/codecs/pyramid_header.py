"""The sizes a learned feature codec's stream starts with: the image, the network input, and P2.

Written as ``image H, W | form [| input H, W]`` (varints) with

    form = (input == image) | (P2 H - ceil(input H / 4)) << 1 | (P2 W - ceil(input W / 4)) << 4

The task network pads its input to a multiple of (up to) 32, so P2 is ``ceil(input / 4)`` plus 0..7: three
bits a side, and P2 always agrees with the input size (a free P2 size in the stream once let one decode ask
for 256 x 32767 x 32767 floats). The fusion codec and MSFC write it; each level below P2 is half the one above.
"""

from __future__ import annotations

import math

from vcm_eval.codecs.base import MAX_PIXELS, check_feature_header
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.errors import CodecError

P2_SLACK = 7  # P2 = ceil(input / 4) + 0..7
FORM_BITS = 7


def check_p2(codec: str, p2: tuple[int, int], input_size: tuple[int, int]) -> None:
    """Refuse a P2 size no task network gives for ``input_size`` (what the encoder is handed)."""
    (h2, w2), (nh, nw) = p2, input_size
    if not (0 <= h2 - math.ceil(nh / 4) <= P2_SLACK and 0 <= w2 - math.ceil(nw / 4) <= P2_SLACK):
        raise CodecError(f"{codec}: P2 of {h2}x{w2} is not what a task network gives for an input of {nh}x{nw}")


def write_pyramid_sizes(
    w: BitstreamWriter, codec: str, image_size: tuple[int, int], input_size: tuple[int, int], p2: tuple[int, int]
) -> None:
    """The three sizes, P2 as its offset from ``ceil(input / 4)``.

    Raises:
        CodecError: P2 is not a size a task network gives for the input (``check_p2``).
    """
    check_p2(codec, p2, input_size)
    (ih, iw), (nh, nw), (h2, w2) = image_size, input_size, p2
    same = (ih, iw) == (nh, nw)
    for value in (ih, iw, int(same) | (h2 - math.ceil(nh / 4)) << 1 | (w2 - math.ceil(nw / 4)) << 4):
        w.uint(value)
    if not same:
        w.uint(nh)
        w.uint(nw)


def read_pyramid_sizes(
    r: BitstreamReader, codec: str, *, max_pixels: int = MAX_PIXELS
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(image size, input size, P2 size), validated before anything is sized from them.

    Raises:
        CodecError: undefined form bits, or sizes that disagree or exceed ``max_pixels``.
    """
    image_size = (r.uint(), r.uint())
    form = r.uint()
    if form >= 1 << FORM_BITS:
        raise CodecError(f"corrupt {codec} bitstream: size form {form} ({FORM_BITS} bits are defined)")
    input_size = image_size if form & 1 else (r.uint(), r.uint())
    check_feature_header(codec, image_size, input_size, max_pixels=max_pixels)
    p2 = (math.ceil(input_size[0] / 4) + (form >> 1 & P2_SLACK), math.ceil(input_size[1] / 4) + (form >> 4 & P2_SLACK))
    return image_size, input_size, p2
