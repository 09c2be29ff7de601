"""Compiled coding loops for small-alphabet symbol maps: context-modelled rANS and fixed-length packing.

Why hand-written: CompressAI's rANS takes Python lists (converting 45 M symbols to lists alone
costs seconds), and no library codes a symbol map with a *causal neighbour context* -- a model
chosen per symbol from symbols the decoder already has -- at memory speed. These loops are
compiled with numba (``nogil``: a thread pool runs several chunks at once) and cached on disk.

The coder is the textbook byte-wise range ANS of Duda ("Asymmetric numeral systems", 2013) in its
usual 32-bit form: state in [2**23, 2**31), byte-wise renormalization, 16-bit quantized
frequencies (they sum to exactly 2**16 per context). The encoder runs backwards over the symbols
and the decoder forwards; the final state heads the stream, and a decoder that does not end in
the initial state with every byte consumed reports a corrupt stream.

Context of the symbol at (c, i, j) of a [C, H, W] map: ``left * (n + 1) + up`` with ``left`` =
symbol (c, i, j - 1), ``up`` = symbol (c, i - 1, j) and ``n`` marking "outside the map"
(``causal``); always 0 for ``static``. Raster order per channel, so both neighbours are known.
"""

from __future__ import annotations

import numpy as np
from numba import njit

PRECISION = 16
RANS_L = 1 << 23  # lower bound of the state: 2**7 x the frequency precision keeps the coding loss small
WORD_BITS = 8  # renormalization unit: the state is in [2**23, 2**31)
CORRUPT = -1  # decoder return value: bytes missing, left over, or a wrong final state
OVERFLOW = -1  # encoder return value: the output buffer (sized to the raw code) is too small


@njit(cache=True, nogil=True)
def _context(symbols: np.ndarray, c: int, i: int, j: int, n: int, causal: bool) -> int:
    if not causal:
        return 0
    left = symbols[c, i, j - 1] if j > 0 else n
    up = symbols[c, i - 1, j] if i > 0 else n
    return left * (n + 1) + up


@njit(cache=True, nogil=True)
def context_counts(symbols: np.ndarray, c0: int, c1: int, n: int, causal: bool, out: np.ndarray) -> None:
    """Add the (context, symbol) counts of channels c0..c1-1 to ``out`` [contexts, n]."""
    _, h, w = symbols.shape
    for c in range(c0, c1):
        for i in range(h):
            for j in range(w):
                out[_context(symbols, c, i, j, n, causal), symbols[c, i, j]] += 1


@njit(cache=True, nogil=True)
def encode(symbols: np.ndarray, c0: int, c1: int, n: int, causal: bool, start: np.ndarray, freq: np.ndarray, out: np.ndarray) -> int:
    """rANS-code channels c0..c1-1 of ``symbols`` [C, H, W] into ``out`` (uint8); -> bytes used.

    ``start``/``freq`` [contexts, n]: the quantized CDF of every context. Returns ``OVERFLOW`` when
    ``out`` is too small (the caller then keeps the fixed-length code).
    """
    _, h, w = symbols.shape
    x = RANS_L
    k = 0
    cap = out.shape[0]
    inv = 1.0 / np.maximum(freq, 1)  # x // f by a float multiply and an exact integer fix-up (no division)
    for c in range(c1 - 1, c0 - 1, -1):
        for i in range(h - 1, -1, -1):
            for j in range(w - 1, -1, -1):
                ctx = _context(symbols, c, i, j, n, causal)
                s = symbols[c, i, j]
                f = freq[ctx, s]
                x_max = f << (31 - PRECISION)  # ((RANS_L >> PRECISION) << WORD_BITS) * f
                while x >= x_max:
                    if k >= cap:
                        return OVERFLOW
                    out[k] = x & 0xFF
                    k += 1
                    x >>= WORD_BITS
                q = np.int64(x * inv[ctx, s])
                r = x - q * f
                if r < 0:
                    q -= 1
                    r += f
                elif r >= f:
                    q += 1
                    r -= f
                x = (q << PRECISION) + r + start[ctx, s]
    if k + 4 > cap:
        return OVERFLOW
    for shift in range(0, 32, WORD_BITS):
        out[k] = (x >> shift) & 0xFF
        k += 1
    out[:k] = out[:k][::-1].copy()  # the decoder reads the last byte written first
    return k


@njit(cache=True, nogil=True)
def decode(data: np.ndarray, c0: int, c1: int, n: int, causal: bool, start: np.ndarray, freq: np.ndarray, symbols: np.ndarray) -> int:
    """Inverse of ``encode``: fill channels c0..c1-1 of ``symbols``; -> 0, or ``CORRUPT``."""
    _, h, w = symbols.shape
    m = data.shape[0]
    if m < 4:
        return CORRUPT
    x = (np.int64(data[0]) << 24) | (np.int64(data[1]) << 16) | (np.int64(data[2]) << 8) | np.int64(data[3])
    k = 4
    mask = (1 << PRECISION) - 1
    for c in range(c0, c1):
        for i in range(h):
            for j in range(w):
                ctx = _context(symbols, c, i, j, n, causal)
                slot = x & mask
                s = 0
                while s < n - 1 and slot >= start[ctx, s] + freq[ctx, s]:
                    s += 1
                f = freq[ctx, s]
                if f == 0:
                    return CORRUPT
                symbols[c, i, j] = s
                x = f * (x >> PRECISION) + slot - start[ctx, s]
                while x < RANS_L:
                    if k >= m:
                        return CORRUPT
                    x = (x << WORD_BITS) | np.int64(data[k])
                    k += 1
    if x != RANS_L or k != m:
        return CORRUPT
    return 0


@njit(cache=True, nogil=True)
def pack(symbols: np.ndarray, bits: int, out: np.ndarray) -> None:
    """Symbols (flat uint8) -> ``bits`` bits each, MSB first, zero-padded to whole bytes, into ``out``."""
    acc = 0
    held = 0
    k = 0
    for s in symbols:
        acc = (acc << bits) | s
        held += bits
        while held >= 8:
            held -= 8
            out[k] = (acc >> held) & 0xFF
            k += 1
        acc &= (1 << held) - 1
    if held:
        out[k] = (acc << (8 - held)) & 0xFF


@njit(cache=True, nogil=True)
def unpack(data: np.ndarray, bits: int, out: np.ndarray) -> None:
    """Inverse of ``pack``: fill ``out`` (flat uint8) with ``bits``-bit symbols."""
    acc = 0
    held = 0
    k = 0
    mask = (1 << bits) - 1
    for i in range(out.shape[0]):
        while held < bits:
            acc = ((acc << 8) | data[k]) & 0xFFFFFF
            k += 1
            held += 8
        held -= bits
        out[i] = (acc >> held) & mask
