"""Compiled per-channel passes of the feature quantizers (numba, ``nogil``: channel groups run in threads).

Each function touches every value once or twice and allocates nothing the size of the level, so
the quantizers run near memory speed (benchmarks/bench_feature_codecs.py) instead of spending
their time in numpy temporaries. Every loop works on a channel range ``c0..c1`` of a [C, H, W]
array: a caller splits the channels into fixed groups and combines the groups' partial results in
group order, so the output never depends on how many threads ran.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Loops over a channel keep four partial sums or histograms (value j of a row goes to partial
# j % 4) and add them in a fixed order at the end: four independent dependency chains instead of
# one (measured: ``channel_stats`` 2x faster than with one sum; ``assign``, together with its
# row-wise sweeps, 2.7x), and a result that depends on the data only, never on the machine or the
# thread count.


@njit(cache=True, nogil=True)
def channel_stats(x: np.ndarray, c0: int, c1: int, mean: np.ndarray, std: np.ndarray) -> int:
    """Mean and population std (float64) of channels c0..c1-1, one sweep per channel; -> non-finite count.

    Sums of d = x - p and d * d with p the channel's first value, read once instead of twice (1.3
    -> 0.85 ns per value on a Cityscapes-size P2). Shifting by a value of the channel bounds the
    cancellation in var = E[d^2] - E[d]^2: (mean - p)^2 <= N var for N values, so E[d^2] <=
    (N + 1) var and the subtraction loses at most log2(N + 1) of float64's 53 bits (17 for P2's
    131,072 values per channel). Measured on the full-size pyramids: stds within 5e-13 of the
    two-sweep form, identical after float16 rounding.
    """
    _, h, w = x.shape
    bad = 0
    count = h * w
    w4 = w - w % 4
    for c in range(c0, c1):
        p = np.float64(x[c, 0, 0])
        s0 = s1 = s2 = s3 = 0.0
        q0 = q1 = q2 = q3 = 0.0
        for i in range(h):
            row = x[c, i]
            for j in range(0, w4, 4):
                d0, d1, d2, d3 = row[j] - p, row[j + 1] - p, row[j + 2] - p, row[j + 3] - p
                s0 += d0
                s1 += d1
                s2 += d2
                s3 += d3
                q0 += d0 * d0
                q1 += d1 * d1
                q2 += d2 * d2
                q3 += d3 * d3
            for j in range(w4, w):
                d0 = row[j] - p
                s0 += d0
                q0 += d0 * d0
        shift = ((s0 + s1) + (s2 + s3)) / count
        square = ((q0 + q1) + (q2 + q3)) / count
        if not (
            np.isfinite(shift) and np.isfinite(square)
        ):  # a NaN/inf anywhere makes a sum non-finite: count them (rare path)
            for i in range(h):
                for j in range(w):
                    bad += not np.isfinite(x[c, i, j])
        mean[c] = p + shift
        std[c] = np.sqrt(max(square - shift * shift, 0.0))
    return bad


@njit(cache=True, nogil=True)
def assign(
    x: np.ndarray,
    c0: int,
    c1: int,
    mu: np.ndarray,
    sigma: np.ndarray,
    bounds: np.ndarray,
    per_channel: bool,
    symbols: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Normalize, assign symbols and accumulate the centroid sums of channels c0..c1-1.

    z = (x - mu_c) * (1 / sigma_c) (0 for a constant channel; a product, not a quotient: 10% faster);
    the symbol is the number of boundaries t with z >= t (t <= 0) or z > t (t > 0), the paper's
    interval rule, applied as z >= edge with edge = t or the next float64 above t (the same
    comparison for every boundary). ``sums``/``counts`` [rows, n] get z and 1 per (row, symbol),
    row = channel (``per_channel``) or 0 (one row per level). Row by row: z and the symbols in one
    sweep (n <= 4, the paper's case: three comparisons per value, 1.8 -> 1.2 ns per value on a
    Cityscapes-size P2 against a sweep per boundary) or one sweep per boundary (n > 4), each also
    counting the values past each boundary (the boundaries increase, so symbol >= k + 1 exactly
    when boundary k is passed: counts without a scatter); then the per-symbol sums of z in four
    partials, from the cache-resident row.
    """
    _, h, w = x.shape
    n = sums.shape[1]
    z = np.empty(w)
    acc = np.zeros((n, 4))
    edges = np.full(max(n - 1, 3), np.inf)  # z passes boundary k exactly when z >= edges[k]
    for k in range(n - 1):
        t = bounds[k]
        edges[k] = t if t <= 0 else np.nextafter(t, np.inf)  # z > t <=> z >= the next float64 above t
    e0, e1, e2 = edges[0], edges[1], edges[2]
    above = np.zeros(edges.shape[0], dtype=np.int64)  # above[k]: values past boundary k (symbol >= k + 1)
    w4 = w - w % 4
    for c in range(c0, c1):
        m, sd = mu[c], sigma[c]
        scale = 1.0 / sd if sd > 0 else 0.0
        acc[:] = 0.0
        above[:] = 0
        for i in range(h):
            row, out = x[c, i], symbols[c, i]
            if n <= 4:  # the paper's n = 3, 4: three comparisons per value in one loop (unused edges are inf)
                p0 = p1 = p2 = 0
                for j in range(w):
                    v = (row[j] - m) * scale
                    z[j] = v
                    a0, a1, a2 = np.uint8(v >= e0), np.uint8(v >= e1), np.uint8(v >= e2)
                    out[j] = a0 + a1 + a2
                    p0 += a0
                    p1 += a1
                    p2 += a2
                above[0] += p0
                above[1] += p1
                above[2] += p2
            else:
                for j in range(w):
                    z[j] = (row[j] - m) * scale
                out[:] = 0
                for k in range(n - 1):
                    edge, passed = edges[k], 0
                    for j in range(w):
                        step = np.uint8(z[j] >= edge)
                        out[j] += step
                        passed += step
                    above[k] += passed
            for j in range(0, w4, 4):
                acc[out[j], 0] += z[j]
                acc[out[j + 1], 1] += z[j + 1]
                acc[out[j + 2], 2] += z[j + 2]
                acc[out[j + 3], 3] += z[j + 3]
            for j in range(w4, w):
                acc[out[j], 0] += z[j]
        r = c if per_channel else 0
        for k in range(n):
            sums[r, k] += (acc[k, 0] + acc[k, 1]) + (acc[k, 2] + acc[k, 3])
            counts[r, k] += (h * w if k == 0 else above[k - 1]) - (above[k] if k < n - 1 else 0)


@njit(cache=True, nogil=True)
def cell_counts(symbols: np.ndarray, c0: int, c1: int, per_channel: bool, counts: np.ndarray) -> None:
    """Add the (row, symbol) counts of channels c0..c1-1 (rows as in ``assign``) to ``counts``."""
    _, h, w = symbols.shape
    n = counts.shape[1]
    cnt = np.zeros((n, 4), dtype=np.int64)
    w4 = w - w % 4
    for c in range(c0, c1):
        cnt[:] = 0
        for i in range(h):
            row = symbols[c, i]
            for j in range(0, w4, 4):
                cnt[row[j], 0] += 1
                cnt[row[j + 1], 1] += 1
                cnt[row[j + 2], 2] += 1
                cnt[row[j + 3], 3] += 1
            for j in range(w4, w):
                cnt[row[j], 0] += 1
        r = c if per_channel else 0
        for k in range(n):
            counts[r, k] += (cnt[k, 0] + cnt[k, 1]) + (cnt[k, 2] + cnt[k, 3])


@njit(cache=True, nogil=True)
def lookup(symbols: np.ndarray, c0: int, c1: int, table: np.ndarray, out: np.ndarray) -> None:
    """out[c, i, j] = table[c, symbols[c, i, j]] for channels c0..c1-1 (the decoders' one write pass)."""
    _, h, w = symbols.shape
    for c in range(c0, c1):
        for i in range(h):
            for j in range(w):
                out[c, i, j] = table[c, symbols[c, i, j]]


@njit(cache=True, nogil=True)
def uniform_codes(x: np.ndarray, c0: int, c1: int, lo: float, scale: float, levels: int, out: np.ndarray) -> None:
    """out = clip(rint((x - lo) / scale), 0, levels - 1) for channels c0..c1-1 (uint8 or uint16 ``out``)."""
    _, h, w = x.shape
    top = levels - 1
    for c in range(c0, c1):
        for i in range(h):
            for j in range(w):
                q = np.rint((x[c, i, j] - lo) / scale)
                out[c, i, j] = 0 if q < 0 else (min(q, top))
