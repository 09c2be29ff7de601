"""Sizes of the FPN pyramid and of its representations: the paper's data-size table (Table 2).

Method A's paper (docs/quant.md) counts P2..P6 of a 2048 x 1024 Cityscapes image: 44,695,552 values,
174,592 KB as float32 (28.41x the 6,144 KB input image), 43,648 KB at 8 bits (7.10x), 10,912 KB at
2 bits (1.77x); KB = 1024 bytes and the ratios are truncated to 2 decimals. ``data_size_rows``
reproduces that table from the shapes alone; ``parse_levels`` reads a level-set option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vcm_eval.errors import ConfigError
from vcm_eval.vision.base import LEVELS

STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}

Shapes = Mapping[str, tuple[int, int, int]]


def fpn_shapes(height: int, width: int, *, channels: int = 256, levels: tuple[str, ...] = LEVELS) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of each FPN level for an input of height x width pixels.

    P2..P5 have strides 4..32 (ceil division, as after detectron2's padding to a multiple of 32);
    P6 is P5 max-pooled with stride 2. A 1024 x 2048 Cityscapes image gives 44,695,552 values.
    """
    shapes: dict[str, tuple[int, int, int]] = {}
    for name in levels:
        if name not in STRIDES:
            raise ConfigError(f"unknown FPN level {name!r}; valid: {list(STRIDES)}")
        stride = min(STRIDES[name], 32)
        h, w = math.ceil(height / stride), math.ceil(width / stride)
        if name == "p6":
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        shapes[name] = (channels, h, w)
    return shapes


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
    rows: list[dict[str, Any]] = [{"representation": "input image (8-bit RGB)", "kbytes_min": kbytes(img), "kbytes_max": kbytes(img)}]
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


def parse_levels(spec: str) -> tuple[str, ...]:
    """``"p2-p6"`` (a range) or ``"p2+p3+p5"`` (a list) -> level names in pyramid order."""
    names: list[str] = []
    for token in spec.replace(" ", "").split("+"):
        lo, _, hi = token.partition("-")
        if lo not in STRIDES or (hi and hi not in STRIDES):
            raise ConfigError(
                f"levels={spec!r} is not a level set; write a range like 'p2-p6' or a list like 'p2+p3', levels {list(STRIDES)}"
            )
        a, b = LEVELS.index(lo), LEVELS.index(hi or lo)
        names.extend(LEVELS[a : b + 1])
    if not names:
        raise ConfigError(f"levels={spec!r} selects no level; use e.g. 'p2-p6'")
    return tuple(n for n in LEVELS if n in names)
