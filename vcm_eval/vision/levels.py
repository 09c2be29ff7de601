"""The FPN levels every task network and feature codec names: P2..P6, their strides and shapes.

One place for what a level set is (``parse_levels``: ``p2-p5``, ``p2+p3``) and how big each level
is for an input size (``fpn_shapes``), so codecs, the tiling and the paper's size table agree.
"""

from __future__ import annotations

import math

from vcm_eval.errors import ConfigError

LEVELS = ("p2", "p3", "p4", "p5", "p6")
STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}


def fpn_shapes(
    height: int, width: int, *, channels: int = 256, levels: tuple[str, ...] = LEVELS
) -> dict[str, tuple[int, int, int]]:
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


def parse_levels(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    """``"p2-p6"`` (a range), ``"p2+p3+p5"`` (a list) or a tuple of names -> level names in pyramid order."""
    if not isinstance(spec, str):
        spec = "+".join(spec)
    names: list[str] = []
    for token in spec.replace(" ", "").split("+"):
        lo, _, hi = token.partition("-")
        if lo not in STRIDES or (hi and hi not in STRIDES):
            raise ConfigError(
                f"levels={spec!r} is not a level set; write a range like 'p2-p6' or a list like 'p2+p3', "
                f"levels {list(STRIDES)}"
            )
        a, b = LEVELS.index(lo), LEVELS.index(hi or lo)
        names.extend(LEVELS[a : b + 1])
    if not names:
        raise ConfigError(f"levels={spec!r} selects no level; use e.g. 'p2-p6'")
    return tuple(n for n in LEVELS if n in names)
