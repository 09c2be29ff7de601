"""Min-max ranges of feature levels, written once for every codec that quantizes between min and max.

The feature anchor (10 bit, one range per tensor or per level) and the paper's 8-bit features
(one range per level) both need a level's (min, max) and must refuse NaN/inf values with the
same clear error. The range comes from one compiled pass (``min_max``) over channel ranges, so
callers may split a level into channel groups and combine the parts (``combine_ranges``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numba import njit

from vcm_eval.errors import CodecError


@njit(cache=True, nogil=True)
def min_max(x: np.ndarray, c0: int, c1: int) -> tuple[float, float, int]:
    """(min, max, non-finite count) of channels c0..c1-1 of a [C, H, W] array."""
    _, h, w = x.shape
    lo, hi, bad = np.inf, -np.inf, 0
    for c in range(c0, c1):
        for i in range(h):
            for j in range(w):
                v = x[c, i, j]
                if not np.isfinite(v):
                    bad += 1
                    continue
                lo = min(lo, v)
                hi = max(hi, v)
    return lo, hi, bad


def non_finite_error(name: str, bad: int) -> CodecError:
    """The one error of every feature codec for NaN/inf values in a level."""
    return CodecError(
        f"feature level {name} has {bad} NaN/inf values; features must be finite "
        "(check the task model's weights and the input image)"
    )


def combine_ranges(name: str, parts: Iterable[tuple[float, float, int]]) -> tuple[float, float]:
    """(min, max) of a level from the ``min_max`` results of its channel groups.

    Raises:
        CodecError: any value is NaN/inf.
    """
    found = list(parts)
    bad = sum(p[2] for p in found)
    if bad:
        raise non_finite_error(name, bad)
    return float(min(p[0] for p in found)), float(max(p[1] for p in found))


def level_range(name: str, x: np.ndarray) -> tuple[float, float]:
    """(min, max) of a whole float32 level [C, H, W] in one pass (``CodecError`` for NaN/inf)."""
    return combine_ranges(name, [min_max(x, 0, x.shape[0])])
