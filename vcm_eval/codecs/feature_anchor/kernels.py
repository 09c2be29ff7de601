"""Compiled passes of the feature anchor: min-max codes straight into the tiled frame, and back.

One pass each, with no pyramid-sized temporaries (numba, ``nogil``); the tests check they equal
``tile(quantize(...))`` and ``dequantize(untile(...))`` bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def codes_into_frame(
    x: np.ndarray,
    c0: int,
    c1: int,
    lo: np.float32,
    ratio: np.float32,
    peak: int,
    frame: np.ndarray,
    top: int,
    left: int,
    cols: int,
) -> None:
    """Min-max codes of channels c0..c1-1 written straight into their grid cells of the frame.

    code = clip(rint(float32(x - lo) * ratio), 0, peak), all in float32 like the feature anchor's
    torch reference (tests/reference.py); channel c goes to grid cell (c // cols, c % cols).
    """
    _, h, w = x.shape
    for c in range(c0, c1):
        r0, k0 = top + (c // cols) * h, left + (c % cols) * w
        for i in range(h):
            for j in range(w):
                q = np.rint(np.float32(x[c, i, j] - lo) * ratio)
                frame[r0 + i, k0 + j] = 0 if q < 0 else min(q, peak)


@njit(cache=True, nogil=True)
def values_from_frame(
    frame: np.ndarray,
    c0: int,
    c1: int,
    top: int,
    left: int,
    cols: int,
    step: np.float32,
    lo: np.float32,
    out: np.ndarray,
) -> None:
    """Inverse of ``codes_into_frame``: out[c] = float32(code) * step + lo (float32) from channel c's grid cell."""
    _, h, w = out.shape
    for c in range(c0, c1):
        r0, k0 = top + (c // cols) * h, left + (c % cols) * w
        for i in range(h):
            for j in range(w):
                out[c, i, j] = np.float32(frame[r0 + i, k0 + j]) * step + lo
