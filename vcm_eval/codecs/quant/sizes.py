"""Sizes of the FPN pyramid and of its representations: the paper's data-size table (Table 2).

Method A's paper (docs/quant.md) counts P2..P6 of a 2048 x 1024 Cityscapes image: 44,695,552 values,
174,592 KB as float32 (28.41x the 6,144 KB input image), 43,648 KB at 8 bits (7.10x), 10,912 KB at
2 bits (1.77x); KB = 1024 bytes and the ratios are truncated to 2 decimals. ``data_size_rows``
reproduces that table from the shapes alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vcm_eval.vision.levels import fpn_shapes

Shapes = Mapping[str, tuple[int, int, int]]


def num_values(shapes: Shapes) -> int:
    return sum(c * h * w for c, h, w in shapes.values())


def representation_bits(shapes: Shapes, bits_per_value: int) -> int:
    """Bits of the features at a fixed number of bits per value (32 float, 8, or ceil(log2 n))."""
    return num_values(shapes) * bits_per_value


def image_bits(height: int, width: int) -> int:
    """Bits of the 8-bit RGB input image: H * W * 3 * 8 (6,144 KB for 2048 x 1024)."""
    return height * width * 24


def kbytes(bits: int) -> float:
    """Bits -> KB as the paper counts them (1 KB = 1024 bytes)."""
    return bits / 8 / 1024


def truncate2(ratio: float) -> float:
    """The paper's ratios are truncated, not rounded, to 2 decimals (174,592 / 6,144 = 28.416 -> 28.41)."""
    return math.floor(ratio * 100 + 1e-9) / 100


def data_size_rows(height: int, width: int, *, channels: int = 256) -> list[dict[str, Any]]:
    """The paper's Table 2 for an input image: representation, KB, ratio to the image (truncated).

    The 3-symbol row gives the paper's range: 1 bit (lower bound) to 2 bits (fixed-length) per value.
    """
    shapes = fpn_shapes(height, width, channels=channels)
    img = image_bits(height, width)
    rows: list[dict[str, Any]] = [
        {"representation": "input image (8-bit RGB)", "kbytes_min": kbytes(img), "kbytes_max": kbytes(img)}
    ]
    for label, lo, hi in (
        ("float32 features", 32, 32),
        ("8-bit features", 8, 8),
        ("4 symbols (2 bit)", 2, 2),
        ("3 symbols (1-2 bit)", 1, 2),
    ):
        b_lo, b_hi = representation_bits(shapes, lo), representation_bits(shapes, hi)
        rows.append(
            {
                "representation": label,
                "values": num_values(shapes),
                "kbytes_min": kbytes(b_lo),
                "kbytes_max": kbytes(b_hi),
                "ratio_min": truncate2(b_lo / img),
                "ratio_max": truncate2(b_hi / img),
            }
        )
    return rows
