"""Compiled coding loops for small-alphabet symbol maps: context-modelled rANS in 16 lanes, and bit packing.

Why hand-written: CompressAI's rANS takes Python lists (converting 45 M symbols to lists alone
costs seconds), and no library codes a symbol map with a *causal neighbour context* -- a model
chosen per symbol from symbols the decoder already has -- at memory speed. These loops are
compiled with numba (``nogil``: a thread pool runs several channel groups at once) and cached on
disk.

The coder is range ANS (Duda, "Asymmetric numeral systems", 2013) with 16-bit words: a 48-bit
state in [2**32, 2**48), at most one 16-bit word moved per symbol, 16-bit quantized frequencies
(each used context sums to exactly 2**16). ``LANES`` = 16 states are interleaved in one word
stream (Giesen, "Interleaved entropy coders", 2014): lane l codes channels c0 + l, c0 + l + 16, ...
of its channel group, so each step codes 16 independent symbols. One state update is a chain of
dependent operations (the next context needs the symbol just decoded); 16 independent chains per
step keep the CPU busy. Together with the table indices of a row computed ahead, the one-add
symbol search and one table load per symbol, measured on 16 channels of a Cityscapes-size P2 (one
thread): encode 5.0 -> 3.9-4.2 ns, decode 7.5 -> 4.5-4.6 ns per symbol against the format-2
coder's two byte-wise streams in lockstep; on the whole P2, encode 3.1, decode 4.4 ns with the indices in int32
straight from the rows and a row's decoding loop as a function of its own (docs/performance.md).
The encoder runs backwards over the symbols and lanes and the decoder forwards; the decoder reads
the lanes' final states first (3 words each, high word first) and then one word whenever a lane's
state drops below 2**32, lanes in order. A decoder that does not end with every lane in the initial
state and every word consumed reports a corrupt stream.

Context of the symbol at (c, i, j) of a [C, H, W] map: ``sum_k weight_k * neighbour_k`` over the
neighbours (left (c, i, j-1), up (c, i-1, j), up-left (c, i-1, j-1), up-right (c, i-1, j+1)), each
``n`` when outside the map; ``entropy.context_weights`` turns a set of neighbours into mixed-radix
weights (0 for a neighbour not used; all 0 = one context, the ``static`` model). Raster order per
channel, so every neighbour is decoded before it is needed.

Division in the encoder: ``x // f`` for x < 2**48, f <= 2**16 as ``floor(x * inv)`` in float64 with
``inv = (1 / f) * (1 + 2**-50)`` (``flat_tables``): the bias puts an exact quotient above the
rounding error (relative 2**-51 > 2**-53) and keeps x = q f + f - 1 below q + 1 ((2**32 + 1) *
2**-49 < 1 / f), so the quotient is exact without a fix-up (tests/test_entropy.py checks it at
the extremes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

PRECISION = 16  # frequencies sum to 2**16 per context
WORD_BITS = 16  # renormalization unit
STATE_LOW = 1 << 32  # the state is in [2**32, 2**48): 2**16 x the frequency precision keeps the coding loss negligible
STATE_WORDS = 3  # a lane's final state: 48 bits
LANES = 16  # interleaved states per stream
INVERSE_BIAS = 2.0**-50
CORRUPT = -1  # decoder return value: words missing, left over, an unused context, or a wrong final state
OVERFLOW = -1  # encoder return value: the output buffer (sized to the raw code) is too small
MASK = (1 << WORD_BITS) - 1
START_BITS = (1 << 32) - 1  # freq_start = freq << 32 | start: the coding loops' one table load per symbol
FREQ_BITS = ~START_BITS

# Symbol search for n <= 4 in one add (SIMD within a register): the n - 1 interval ends of a context
# sit in 20-bit fields as 2**19 - end; adding the slot to every field sets a field's bit 19 exactly
# when slot >= end (slot, end <= 2**16: no carry between fields), and the symbol is the number of
# bits set: one load and a few register operations instead of n - 1 loads and compares.
SWAR_SYMBOLS = 4
SWAR_FIELD = 20
SWAR_REPEAT = 1 + (1 << SWAR_FIELD) + (1 << 2 * SWAR_FIELD)
SWAR_SIGNS = (1 << SWAR_FIELD - 1) * SWAR_REPEAT


@intrinsic  # type: ignore[misc]
def _popcount(typingctx: object, value: types.Integer) -> tuple[object, object]:
    """LLVM's ctpop: the number of bits set (one instruction on x86-64 with POPCNT)."""

    def codegen(context: object, builder: object, signature: object, args: list[object]) -> object:
        return builder.ctpop(args[0])  # type: ignore[attr-defined]

    return types.int64(types.int64), codegen


popcount = cast(Callable[[int], int], _popcount)  # how the compiled loops call it (typed for mypy)


@njit(cache=True, nogil=True)
def swar_ends(end: np.ndarray, n: int) -> np.ndarray:
    """Per context: the packed fields 2**19 - end[t], t < n - 1 (0 for the fields of t >= n - 1, never set)."""
    contexts = end.shape[0] // n
    packed = np.zeros(contexts, dtype=np.int64)
    if n <= SWAR_SYMBOLS:
        for c in range(contexts):
            for t in range(n - 1):
                packed[c] += ((1 << SWAR_FIELD - 1) - end[c * n + t]) << (SWAR_FIELD * t)
    return packed


def flat_tables(start: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, freq, interval end, biased 1 / freq) as flat int64/float64 arrays indexed by context * n + symbol."""
    start, freq = (
        np.ascontiguousarray(start, dtype=np.int64).ravel(),
        np.ascontiguousarray(freq, dtype=np.int64).ravel(),
    )
    return start, freq, start + freq, (1.0 / np.maximum(freq, 1)) * (1.0 + INVERSE_BIAS)


@njit(cache=True, nogil=True)
def _above_bases(above: np.ndarray, weights: np.ndarray, n: int, out: np.ndarray) -> None:
    """out[j, lane] = n * (weight_up * up + weight_up_left * up_left + weight_up_right * up_right) for a row.

    The part of every table index the row above fixes, computed for a whole row at once (a loop
    without dependencies between its iterations), so the sequential coding loops add only the left
    neighbour's share.
    """
    wu, wul, wur = weights[1] * n, weights[2] * n, weights[3] * n
    for j in range(out.shape[0]):
        up, up_left, up_right, dst = above[j + 1], above[j], above[j + 2], out[j]
        for lane in range(LANES):
            dst[lane] = wu * up[lane] + wul * up_left[lane] + wur * up_right[lane]


@njit(cache=True, nogil=True, inline="always")
def _scaled_weights(weights: np.ndarray, n: int) -> tuple[np.int32, np.int32, np.int32, np.int32]:
    """The neighbours' weights times n as int32 (``_row_cells``' index arithmetic: twice the values per vector step)."""
    return np.int32(weights[0] * n), np.int32(weights[1] * n), np.int32(weights[2] * n), np.int32(weights[3] * n)


@njit(cache=True, nogil=True, inline="always")
def _row_cells(
    row: np.ndarray,
    up: np.ndarray,
    has_up: bool,
    n: int,
    wl: np.int32,
    wu: np.int32,
    wul: np.int32,
    wur: np.int32,
    dst: np.ndarray,
) -> None:
    """dst[j] = the table index (context * n + symbol) of every symbol of a row, from the row and the one above.

    ``wl``..``wur``: ``_scaled_weights``; a neighbour outside the map is n.
    The interior is one loop without dependencies or edge tests (vectorized by the compiler); the
    first and last columns and a first row (``has_up`` false) are handled apart.
    """
    w = row.shape[0]
    edge = np.int32(n)
    if not has_up:
        above = (wu + wul + wur) * edge
        dst[0] = wl * edge + above + np.int32(row[0])
        for j in range(1, w):
            dst[j] = wl * np.int32(row[j - 1]) + above + np.int32(row[j])
        return
    right = np.int32(up[1]) if w > 1 else edge
    dst[0] = wl * edge + wu * np.int32(up[0]) + wul * edge + wur * right + np.int32(row[0])
    for j in range(1, w - 1):
        dst[j] = (
            wl * np.int32(row[j - 1])
            + wu * np.int32(up[j])
            + wul * np.int32(up[j - 1])
            + wur * np.int32(up[j + 1])
            + np.int32(row[j])
        )
    if w > 1:
        dst[w - 1] = (
            wl * np.int32(row[w - 2])
            + wu * np.int32(up[w - 1])
            + wul * np.int32(up[w - 2])
            + wur * edge
            + np.int32(row[w - 1])
        )


PARTIALS = 8  # context_counts: interleaved partial histograms


@njit(cache=True, nogil=True)
def context_counts(
    symbols: np.ndarray, c0: int, c1: int, n: int, weights: np.ndarray, out: np.ndarray, room: int = (1 << 31) - 1
) -> None:
    """Add the (context, symbol) counts of channels c0..c1-1 to ``out`` (flat, context * n + symbol).

    ``weights``: int64 [4] for (left, up, up-left, up-right). Per row, the table indices are
    computed first (``_row_cells``), then counted in ``PARTIALS`` interleaved partial
    histograms (cell * 8 + j % 8: a run of one symbol does not make each increment wait for the
    previous one, and a cell's partials share a cache line) of int32, added into ``out`` before
    they could overflow (``room``: the most values counted between two flushes; smaller only in
    tests). Measured on a Cityscapes-size P2: 1.24 -> 0.79 ns per value against four
    separate int64 histograms of padded int64 rows.
    """
    _, h, w = symbols.shape
    wl, wu, wul, wur = _scaled_weights(weights, n)
    index = np.empty(w, dtype=np.int32)
    cells = out.shape[0]
    part = np.zeros(cells * PARTIALS, dtype=np.int32)
    pending = 0  # values counted since the last flush (a bound on any partial)
    for c in range(c0, c1):
        for i in range(h):
            if pending > room - w:
                for k in range(cells):
                    for t in range(PARTIALS):
                        out[k] += part[k * PARTIALS + t]
                part[:] = 0
                pending = 0
            _row_cells(symbols[c, i], symbols[c, max(i - 1, 0)], i > 0, n, wl, wu, wul, wur, index)
            for j in range(w):
                part[np.uint64(index[j] * PARTIALS + (j & (PARTIALS - 1)))] += 1
            pending += w
    for k in range(cells):
        for t in range(PARTIALS):
            out[k] += part[k * PARTIALS + t]


@njit(cache=True, nogil=True, inline="always")
def _encode(
    symbols: np.ndarray,
    c0: int,
    c1: int,
    n: int,
    weights: np.ndarray,
    start: np.ndarray,
    freq: np.ndarray,
    inv: np.ndarray,
    out: np.ndarray,
    branchless: bool,
) -> int:
    """rANS-code channels c0..c1-1 of ``symbols`` [C, H, W] (uint8) into ``out`` (uint16 words); -> words used.

    ``start``/``freq``/``inv``: the flat tables of ``flat_tables``; ``weights`` as in
    ``context_counts``. The words are returned in decode order (lane states first). Returns
    ``OVERFLOW`` when ``out`` is too small (the caller then keeps the fixed-length code).
    All table indices of a row are computed first, lane by lane (``_row_cells``: int32, straight
    from the symbol rows; on a Cityscapes-size P2 3.5 -> 3.1 ns per symbol against int64 sums of
    padded copies), so the sequential loop only codes.
    """
    _, h, w = symbols.shape
    wl, wu, wul, wur = _scaled_weights(weights, n)
    channels = c1 - c0
    used = min(LANES, channels)
    cap = out.shape[0] - STATE_WORDS * used
    x = np.full(LANES, STATE_LOW, dtype=np.int64)
    index = np.empty((LANES, w), dtype=np.int32)
    freq_start = (freq << 32) | start  # one load for both
    k = 0
    for r in range((channels + LANES - 1) // LANES - 1, -1, -1):
        first = c0 + r * LANES
        lanes = min(LANES, c1 - first)
        for i in range(h - 1, -1, -1):
            for lane in range(lanes):
                _row_cells(
                    symbols[first + lane, i],
                    symbols[first + lane, max(i - 1, 0)],
                    i > 0,
                    n,
                    wl,
                    wu,
                    wul,
                    wur,
                    index[lane],
                )
            for j in range(w - 1, -1, -1):
                for t in range(lanes):  # the decoder refills lanes in order: renormalize in reverse
                    at = np.uint64(lanes - 1 - t)  # unsigned indices: no negative-index wrap-around code in the loop
                    bl = np.uint64(index[at, j])
                    fs = freq_start[bl]
                    xl = x[at]
                    if branchless:  # the word is stored either way and kept when needed (k moves on)
                        need = xl >= (fs & FREQ_BITS)
                        out[k] = xl & MASK
                        k += need
                        xl >>= WORD_BITS * need
                    elif xl >= (fs & FREQ_BITS):  # x >= ((STATE_LOW >> PRECISION) << WORD_BITS) * f = f << 32
                        if k >= cap:
                            return OVERFLOW
                        out[k] = xl & MASK
                        k += 1
                        xl >>= WORD_BITS
                    q = np.int64(np.float64(xl) * inv[bl])  # exact floor(xl / f): see the module docstring
                    x[at] = (q << PRECISION) + (xl - q * (fs >> 32)) + (fs & START_BITS)
                if k > cap:  # branch-free: at most `lanes` words a step, within the room kept for the final states
                    return OVERFLOW
    for lane in range(used - 1, -1, -1):
        for t in range(STATE_WORDS):
            out[k] = (x[lane] >> (WORD_BITS * t)) & MASK
            k += 1
    out[:k] = out[:k][::-1].copy()
    return k


@njit(cache=True, nogil=True, inline="always")
def _decode_row(
    words: np.ndarray,
    k: int,
    x: np.ndarray,
    lanes: int,
    n: int,
    row: np.ndarray,
    bases: np.ndarray,
    left_base: np.ndarray,
    packed: np.ndarray,
    freq_start: np.ndarray,
    end: np.ndarray,
    branchless: bool,
) -> tuple[int, bool]:
    """Decode one row of every lane into ``row[1:]`` (lane-interleaved); -> (words consumed so far, an unused
    context met).

    ``bases[j, lane]``: the row above's share of the table index, ``left_base``: the left
    neighbour's. A compiled function of its own (``_decode`` calls it once per row): with fewer
    arrays live the loop reloads fewer pointers from the stack (on P2: causal 2%, static 8% faster).
    """
    m = words.shape[0]
    unused = False
    for j in range(bases.shape[0]):
        dst, left, base_row = row[j + 1], row[j], bases[j]
        for lane in range(lanes):
            base = left_base[left[lane]] + base_row[lane]
            xl = x[lane]
            slot = xl & MASK
            if n <= SWAR_SYMBOLS:  # the symbol = how many intervals end at or below the slot, in one add
                sym = popcount(
                    (packed[np.uint64(base)] + (slot | slot << SWAR_FIELD | slot << 2 * SWAR_FIELD)) & SWAR_SIGNS
                )
            else:
                sym = 0
                for t in range(n - 1):
                    sym += slot >= end[np.uint64(base + t)]
            fs = freq_start[np.uint64(base + sym)]  # unsigned indices: no negative-index wrap-around code in the loop
            f = fs >> 32
            unused |= f == 0
            xl = f * (xl >> PRECISION) + slot - (fs & START_BITS)
            if branchless:  # a word is read either way and kept when needed
                word = np.int64(words[np.uint64(min(k, m - 1))])
                need = xl < STATE_LOW
                xl = (xl << WORD_BITS) | word if need else xl
                k += need
            elif xl < STATE_LOW:
                xl = (xl << WORD_BITS) | np.int64(words[np.uint64(min(k, m - 1))])
                k += 1
            x[lane] = xl
            dst[lane] = sym
    return k, unused


@njit(cache=True, nogil=True)
def _decode_row_branch(
    words: np.ndarray,
    k: int,
    x: np.ndarray,
    lanes: int,
    n: int,
    row: np.ndarray,
    bases: np.ndarray,
    left_base: np.ndarray,
    packed: np.ndarray,
    freq_start: np.ndarray,
    end: np.ndarray,
) -> tuple[int, bool]:
    """``_decode_row`` with a branch per renormalization."""
    return _decode_row(words, k, x, lanes, n, row, bases, left_base, packed, freq_start, end, False)


@njit(cache=True, nogil=True)
def _decode_row_branchless(
    words: np.ndarray,
    k: int,
    x: np.ndarray,
    lanes: int,
    n: int,
    row: np.ndarray,
    bases: np.ndarray,
    left_base: np.ndarray,
    packed: np.ndarray,
    freq_start: np.ndarray,
    end: np.ndarray,
) -> tuple[int, bool]:
    """``_decode_row`` with branch-free renormalization."""
    return _decode_row(words, k, x, lanes, n, row, bases, left_base, packed, freq_start, end, True)


@njit(cache=True, nogil=True, inline="always")
def _decode(
    words: np.ndarray,
    c0: int,
    c1: int,
    n: int,
    weights: np.ndarray,
    start: np.ndarray,
    freq: np.ndarray,
    end: np.ndarray,
    symbols: np.ndarray,
    table: np.ndarray,
    values: np.ndarray,
    branchless: bool,
) -> int:
    """Inverse of ``encode``: fill channels c0..c1-1 of ``symbols`` (uint8 [C, H, W]); -> 0, or ``CORRUPT``.

    With a non-empty ``values`` (float32 [C, H, W]), write ``table[c, symbol]`` there instead
    (``table``: float32 [C, n]; ``symbols`` is then not touched): the quantizer's reconstruction
    in the same pass, no symbol map written and read again.

    Words running out stop nothing (the last word is re-read and the final check fails): a damaged
    stream ends the loop instead of reading past its end.
    """
    _, h, w = values.shape if values.shape[0] else symbols.shape
    channels = c1 - c0
    used = min(LANES, channels)
    m = words.shape[0]
    if m < STATE_WORDS * used:
        return CORRUPT
    x = np.full(LANES, STATE_LOW, dtype=np.int64)
    k = 0
    for lane in range(used):
        xl = np.int64(0)
        for _ in range(STATE_WORDS):
            xl = (xl << WORD_BITS) | np.int64(words[k])
            k += 1
        x[lane] = xl
    row = np.full((w + 2, LANES), n, dtype=np.uint8)
    above = np.full((w + 2, LANES), n, dtype=np.uint8)
    bases = np.empty((w, LANES), dtype=np.int64)
    left_base = np.arange(n + 1) * (weights[0] * n)  # the left neighbour's share of the table index
    packed = swar_ends(end, n).repeat(n)  # indexed by context * n, like the other tables
    freq_start = (freq << 32) | start  # one load for both
    decode_row = _decode_row_branchless if branchless else _decode_row_branch
    unused = False
    for r in range((channels + LANES - 1) // LANES):
        first = c0 + r * LANES
        lanes = min(LANES, c1 - first)
        above[:] = n
        for i in range(h):
            _above_bases(above, weights, n, bases)
            k, bad = decode_row(words, k, x, lanes, n, row, bases, left_base, packed, freq_start, end)
            unused |= bad
            if unused:
                return CORRUPT
            if values.shape[0]:
                for lane in range(lanes):
                    dst_values, lane_table = values[first + lane, i], table[first + lane]
                    for j in range(w):
                        dst_values[j] = lane_table[row[j + 1, lane]]
            else:
                for lane in range(lanes):
                    dst_symbols = symbols[first + lane, i]
                    for j in range(w):
                        dst_symbols[j] = row[j + 1, lane]
            row, above = above, row
            row[0] = n
    for lane in range(used):
        if x[lane] != STATE_LOW:
            return CORRUPT
    return 0 if k == m else CORRUPT


# The loops above with the renormalization chosen when they are compiled (``branchless`` a constant
# after inlining): the branch wins where a word moves every ten symbols or more rarely (the causal
# model), the branch-free form where words move often (the static model; measured on P2: encode
# 4.7 -> 3.9, decode 6.1 -> 5.3 ns per symbol), and neither pays for the other's flag.


@njit(cache=True, nogil=True)
def encode(
    symbols: np.ndarray,
    c0: int,
    c1: int,
    n: int,
    weights: np.ndarray,
    start: np.ndarray,
    freq: np.ndarray,
    inv: np.ndarray,
    out: np.ndarray,
) -> int:
    """``_encode`` with a branch per renormalization (few words per symbol)."""
    return _encode(symbols, c0, c1, n, weights, start, freq, inv, out, False)


@njit(cache=True, nogil=True)
def encode_branchless(
    symbols: np.ndarray,
    c0: int,
    c1: int,
    n: int,
    weights: np.ndarray,
    start: np.ndarray,
    freq: np.ndarray,
    inv: np.ndarray,
    out: np.ndarray,
) -> int:
    """``_encode`` with branch-free renormalization (many words per symbol); the same words."""
    return _encode(symbols, c0, c1, n, weights, start, freq, inv, out, True)


@njit(cache=True, nogil=True)
def decode(
    words: np.ndarray,
    c0: int,
    c1: int,
    n: int,
    weights: np.ndarray,
    start: np.ndarray,
    freq: np.ndarray,
    end: np.ndarray,
    symbols: np.ndarray,
    table: np.ndarray,
    values: np.ndarray,
) -> int:
    """``_decode`` with a branch per renormalization."""
    return _decode(words, c0, c1, n, weights, start, freq, end, symbols, table, values, False)


@njit(cache=True, nogil=True)
def decode_branchless(
    words: np.ndarray,
    c0: int,
    c1: int,
    n: int,
    weights: np.ndarray,
    start: np.ndarray,
    freq: np.ndarray,
    end: np.ndarray,
    symbols: np.ndarray,
    table: np.ndarray,
    values: np.ndarray,
) -> int:
    """``_decode`` with branch-free renormalization."""
    return _decode(words, c0, c1, n, weights, start, freq, end, symbols, table, values, True)


@njit(cache=True, nogil=True)
def pack(symbols: np.ndarray, bits: int, out: np.ndarray) -> None:
    """Symbols (flat uint8) -> ``bits`` bits each, MSB first, zero-padded to whole bytes, into ``out``."""
    if 8 % bits == 0:  # 1, 2, 4, 8 bits: whole symbols per byte, one byte per step
        per = 8 // bits
        whole = symbols.shape[0] // per
        for k in range(whole):
            b = 0
            for t in range(per):
                b = (b << bits) | symbols[k * per + t]
            out[k] = b
        if whole * per < symbols.shape[0]:
            b = 0
            for t in range(per):
                i = whole * per + t
                b = (b << bits) | (symbols[i] if i < symbols.shape[0] else 0)
            out[whole] = b
        return
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
    mask = (1 << bits) - 1
    if 8 % bits == 0:  # whole symbols per byte: one byte per step
        per = 8 // bits
        whole = out.shape[0] // per
        for k in range(whole):
            b = data[k]
            for t in range(per):
                out[k * per + t] = (b >> (8 - bits * (t + 1))) & mask
        for i in range(whole * per, out.shape[0]):
            out[i] = (data[whole] >> (8 - bits * (i - whole * per + 1))) & mask
        return
    acc = 0
    held = 0
    k = 0
    for i in range(out.shape[0]):
        while held < bits:
            acc = ((acc << 8) | data[k]) & 0xFFFFFF
            k += 1
            held += 8
        held -= bits
        out[i] = (acc >> held) & mask


def stream_words(blob: bytes) -> np.ndarray:
    """A stream's bytes -> its uint16 words (little-endian, as ``encode``'s words are written)."""
    return np.frombuffer(blob, dtype="<u2").astype(np.uint16, copy=False)
