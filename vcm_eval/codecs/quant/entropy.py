"""Lossless coding of small-alphabet symbol maps [C, H, W] (the 2-bit quantizer's symbols).

The quantizer of ``vcm_eval.codecs.quant.nsymbol`` turns every feature value into one of ``n`` symbols
(n <= 16). This module writes those symbols, per FPN level, in one of three ways:

* ``raw``: the paper's fixed-length code, ceil(log2 n) bits per value, bit-packed MSB first.
* ``static``: one symbol distribution per level, measured by the encoder and sent in the stream
  (16-bit quantized frequencies), then rANS.
* ``causal``: one distribution per *context* = the symbols of already-coded neighbours in the same
  channel: left and up always, plus up-left, up-right or both where that pays (``n`` marks
  "outside the map"; ``(n + 1) ** k`` contexts for k neighbours). FPN maps are spatially smooth,
  so the neighbours predict the symbol well: on the task network's features this needs about
  half the bits of ``static``. The encoder counts the richest neighbour set once, estimates the
  size of every candidate set from those counts (code length of the quantized frequencies plus
  their table) and codes with the smallest: up-left and up-right each cost a larger table and
  pay on large maps (measured on full-size pyramids: 2-12% fewer bits than left + up alone).

The coding loops (rANS in 16 interleaved lanes, bit packing) are compiled:
``vcm_eval.codecs.quant.rans``. Symbols are coded in raster order per channel; the channels are split
into groups of whole channels with at most ``2 ** chunk_log2`` symbols, each group its own rANS
stream, so groups code and decode in parallel threads (``threads``) and the stream is the same
for any thread count.

Per level the encoder keeps whichever of ``raw`` and the chosen model is smaller (a mode varint
says which), so the coded payload is never larger than the paper's fixed-length size.

Payload layout of one level (varints as in ``vcm_eval.codecs.bitstream``)::

    mode varint     0 raw | 1 static | 2 causal
    raw:            varint length + ceil(C*H*W*b/8) bytes, b = ceil(log2 n)
    causal:         varint neighbour mask (bit 0 left, 1 up, 2 up-left, 3 up-right)
    static/causal:  per context: varint mask of the symbols that occur (bit s = symbol s; 0 = the
                    context never occurs); then, context by context, the 16-bit frequency of each
                    of those symbols but the last (varints; the last gets 2**16 - their sum);
                    then per channel group: varint byte length + the rANS words (uint16,
                    little-endian; the lanes' final states first)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter, varint_bytes
from vcm_eval.codecs.quant import kernels as quant_kernels
from vcm_eval.codecs.quant import rans
from vcm_eval.codecs.quant.config import EntropyModel
from vcm_eval.errors import CodecError

MODELS = tuple(EntropyModel.values())  # raw, static, causal
MODE_IDS = {"raw": 0, "static": 1, "causal": 2}
TOTAL = 1 << rans.PRECISION
MAX_SYMBOLS = 16
CODEC = "quant"  # the codec these payloads belong to, in errors

# Neighbour sets (bit k = NEIGHBOURS[k]). ``causal`` always uses left + up and adds up-left,
# up-right or both when the estimate says they pay. A set is a candidate only while its table has
# at most MAX_TABLE_CELLS (context, symbol) cells (n = 4: all four neighbours, 2,500 cells; n = 16:
# left + up only); the counts are taken once for the union of the candidates.
NEIGHBOURS = ("left", "up", "up_left", "up_right")
LEFT_UP = 0b0011
CAUSAL_SETS = (LEFT_UP, LEFT_UP | 0b0100, LEFT_UP | 0b1000, 0b1111)
MAX_TABLE_CELLS = 1 << 13
# Above this many bits per symbol a lane moves a word every 16 symbols or more often, and the
# coding loops' branch-free renormalization beats the branch (rans.encode_branchless; measured on a
# Cityscapes-size P2: the static model at 1.56 bits 12-16% faster, the causal at 0.7 bits 3-8% slower).
BRANCHLESS_BITS = 1.0

T = TypeVar("T")
G = TypeVar("G")


def bits_per_symbol(n_symbols: int) -> int:
    """The paper's fixed-length code: ceil(log2 n) bits per value (1 for n = 2)."""
    return max(1, math.ceil(math.log2(n_symbols)))


def varint_len(value: int) -> int:
    """Bytes of an unsigned LEB128 varint (as ``BitstreamWriter.uint`` writes it)."""
    return int(varint_bytes(np.asarray([value]))[0])


def channel_groups(shape: Sequence[int], chunk_log2: int) -> list[tuple[int, int]]:
    """Channel ranges [c0, c1): most whole channels, a multiple of 16 (the coder's lanes), of <= 2**chunk_log2 values.

    At least 16 channels per group (more values than 2**chunk_log2 where 16 channels hold more),
    so every group fills the rANS coder's 16 lanes; a level's last group may be smaller.
    """
    channels, per_channel = int(shape[0]), math.prod(int(s) for s in shape[1:])
    step = max(rans.LANES, (1 << chunk_log2) // max(per_channel, 1) // rans.LANES * rans.LANES)
    return [(c, min(c + step, channels)) for c in range(0, channels, step)]


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One lasting pool per thread count: a codec runs a dozen parallel passes per image, and
    starting threads for each cost more than the smaller levels' work (measured: ~0.1 ms a thread)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vcm_eval-groups")


def run_groups(work: Callable[[G], T], groups: Sequence[G], threads: int) -> list[T]:
    """``work`` on every channel group in ``threads`` threads (the compiled loops release the GIL), results in order."""
    if threads <= 1 or len(groups) == 1:
        return [work(g) for g in groups]
    return list(_pool(threads).map(work, groups))


def pack_fixed(symbols: np.ndarray, n_symbols: int) -> bytes:
    """Symbols (any shape, values < n) -> ceil(log2 n) bits each, MSB first, zero-padded."""
    b = bits_per_symbol(n_symbols)
    flat = np.ascontiguousarray(symbols, dtype=np.uint8).reshape(-1)
    out = np.zeros(math.ceil(flat.size * b / 8), dtype=np.uint8)
    rans.pack(flat, b, out)
    return out.tobytes()


def unpack_fixed(data: bytes, count: int, n_symbols: int) -> np.ndarray:
    """Inverse of ``pack_fixed``: ``count`` uint8 symbols."""
    b = bits_per_symbol(n_symbols)
    if len(data) != math.ceil(count * b / 8):
        raise CodecError(
            f"corrupt {CODEC} bitstream: raw symbol payload has {len(data)} bytes, expected {math.ceil(count * b / 8)}"
        )
    out = np.empty(count, dtype=np.uint8)
    rans.unpack(np.frombuffer(data, dtype=np.uint8), b, out)
    if out.size and int(out.max()) >= n_symbols:
        raise CodecError(f"corrupt {CODEC} bitstream: decoded symbol outside 0..{n_symbols - 1}")
    return out


# --- context models ----------------------------------------------------------------------------


def num_contexts(n_symbols: int, neighbours: int) -> int:
    """(n + 1) ** k contexts for a set of k neighbours (1 for the empty set: ``static``)."""
    return (n_symbols + 1) ** int(neighbours).bit_count()


def context_weights(neighbours: int, n_symbols: int) -> np.ndarray:
    """Mixed-radix weights of (left, up, up-left, up-right) for a neighbour set: context = sum(weight * symbol).

    The first neighbour in NEIGHBOURS order is the most significant digit (left + up: left * (n + 1) + up).
    """
    used = [k for k in range(len(NEIGHBOURS)) if neighbours >> k & 1]
    weights = np.zeros(len(NEIGHBOURS), dtype=np.int64)
    for rank, k in enumerate(used):
        weights[k] = (n_symbols + 1) ** (len(used) - 1 - rank)
    return weights


def candidate_sets(n_symbols: int) -> list[int]:
    """The neighbour sets ``causal`` may choose from: left + up, and richer ones whose tables stay small."""
    return [m for m in CAUSAL_SETS if m == LEFT_UP or num_contexts(n_symbols, m) * n_symbols <= MAX_TABLE_CELLS]


def marginal_counts(counts: np.ndarray, counted: int, wanted: int, n_symbols: int) -> np.ndarray:
    """Counts [contexts of ``counted``, n] summed over the neighbours ``wanted`` leaves out (``wanted`` a subset)."""
    used = [k for k in range(len(NEIGHBOURS)) if counted >> k & 1]
    grid = counts.reshape((n_symbols + 1,) * len(used) + (n_symbols,))
    drop = tuple(axis for axis, k in enumerate(used) if not wanted >> k & 1)
    return grid.sum(axis=drop).reshape(-1, n_symbols) if drop else counts


@dataclass
class Tables:
    """16-bit quantized frequencies [contexts, n] (each used row sums to 2**16; unused rows are 0)."""

    freq: np.ndarray

    @property
    def start(self) -> np.ndarray:
        return np.cumsum(self.freq, axis=1) - self.freq

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> Tables:
        """Every symbol that occurs gets at least 1; the largest frequency (first of equals) absorbs the rounding."""
        counts = np.asarray(counts, dtype=np.int64)
        total = counts.sum(axis=1, keepdims=True)
        freq = np.where(counts > 0, np.maximum(counts * TOTAL // np.maximum(total, 1), 1), 0)
        used = np.flatnonzero(total[:, 0] > 0)
        top = np.argmax(freq[used], axis=1)
        freq[used, top] += TOTAL - freq[used].sum(axis=1)
        return cls(freq)

    def code_bits(self, counts: np.ndarray) -> float:
        """Bits the rANS spends on symbols with these counts (the ideal code length of the quantized frequencies)."""
        seen = counts > 0
        return float(-(counts[seen] * np.log2(self.freq[seen] / TOTAL)).sum())

    def table_bytes(self) -> int:
        """Bytes ``write`` produces (computed, not written)."""
        masks, listed = self._layout()
        return int(sum(varint_bytes(v).sum() for v in (masks, self.freq[listed])))

    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        """(symbol mask per context, which frequencies are sent: every used symbol's but a context's last)."""
        used = self.freq > 0
        masks = (used * (1 << np.arange(self.freq.shape[1]))).sum(axis=1)
        return masks, used & (np.cumsum(used[:, ::-1], axis=1)[:, ::-1] > 1)

    def write(self, w: BitstreamWriter) -> None:
        """All contexts' symbol masks, then the sent frequencies, context by context (varints)."""
        masks, listed = self._layout()
        w.uints(masks)
        w.uints(self.freq[listed])

    @classmethod
    def read(cls, r: BitstreamReader, contexts: int, n_symbols: int) -> Tables:
        masks = r.uints(contexts)
        if int(masks.max()) >= 1 << n_symbols:
            raise CodecError(
                f"corrupt {r.name} bitstream: symbol table mask {int(masks.max())} for {n_symbols} symbols"
            )
        freq = np.zeros((contexts, n_symbols), dtype=np.int64)
        used = (masks[:, None] >> np.arange(n_symbols) & 1).astype(bool)
        listed = cls(used.astype(np.int64))._layout()[1]
        freq[listed] = r.uints(int(listed.sum()))
        sums = freq.sum(axis=1)
        if int(freq[listed].min(initial=1)) < 1 or int(sums.max()) >= TOTAL:
            raise CodecError(
                f"corrupt {r.name} bitstream: symbol frequency table with a frequency of 0 or a sum over 2**16"
            )
        rows = np.flatnonzero(masks)
        last = n_symbols - 1 - np.argmax(used[rows, ::-1], axis=1)
        freq[rows, last] = TOTAL - sums[rows]
        return cls(freq)


@dataclass
class ModelChoice:
    """The neighbour set that won, its tables, and the bits its symbols will take (the estimate that chose it)."""

    neighbours: int
    tables: Tables
    code_bits: float


def choose_model(counts: np.ndarray, counted: int, candidates: Sequence[int], n_symbols: int) -> ModelChoice:
    """The neighbour set (and its tables) with the fewest estimated bytes: code length + table."""
    best: tuple[float, ModelChoice] | None = None
    for neighbours in candidates:
        marginal = marginal_counts(counts, counted, neighbours, n_symbols)
        tables = Tables.from_counts(marginal)
        bits = tables.code_bits(marginal)
        size = bits / 8 + tables.table_bytes()
        if best is None or size < best[0]:
            best = (size, ModelChoice(neighbours, tables, bits))
    if best is None:
        raise CodecError("no context model to choose from; pass at least one neighbour set")
    return best[1]


# --- level payloads --------------------------------------------------------------------------


@dataclass
class CodedSymbols:
    """One level's coded symbols: the payload bytes and the mode that won (``raw`` or the model)."""

    payload: bytes
    mode: str
    neighbours: int = 0


def encode_symbols(
    symbols: np.ndarray,
    n_symbols: int,
    *,
    model: str,
    chunk_log2: int,
    threads: int = 1,
    histogram: np.ndarray | None = None,
) -> CodedSymbols:
    """Code a uint8 symbol map [C, H, W] (values < n_symbols) as one level's payload.

    Args:
        symbols: uint8 [C, H, W].
        n_symbols: alphabet size, 2..16.
        model: ``raw``, ``static`` or ``causal`` (see the module docstring).
        chunk_log2: at most 2**chunk_log2 symbols per rANS stream.
        threads: channel groups coded at once.
        histogram: how often each symbol occurs, when the caller knows it (the quantizer counts
            its cells): the ``static`` model then needs no counting pass.

    Returns:
        The payload (mode varint first): the smaller of ``raw`` and ``model``.
    """

    def raw() -> CodedSymbols:
        return CodedSymbols(_payload("raw", [pack_fixed(symbols, n_symbols)]), "raw")

    if model == "raw":
        return raw()
    symbols = np.ascontiguousarray(symbols, dtype=np.uint8)
    candidates = candidate_sets(n_symbols) if model == "causal" else [0]
    counted = int(np.bitwise_or.reduce(candidates))
    groups = channel_groups(symbols.shape, chunk_log2)
    count_weights = context_weights(counted, n_symbols)

    def count(g: tuple[int, int]) -> np.ndarray:
        out = np.zeros(num_contexts(n_symbols, counted) * n_symbols, dtype=np.int64)
        rans.context_counts(symbols, g[0], g[1], n_symbols, count_weights, out)
        return out

    if histogram is not None and counted == 0:  # static: the caller already counted the symbols
        counts = np.asarray(histogram, dtype=np.int64).reshape(1, n_symbols)
    else:
        counts = np.sum(run_groups(count, groups, threads), axis=0).reshape(-1, n_symbols)
    choice = choose_model(counts, counted, candidates, n_symbols)
    neighbours, tables = choice.neighbours, choice.tables
    start, freq, _, inv = rans.flat_tables(tables.start, tables.freq)
    weights = context_weights(neighbours, n_symbols)
    per_channel, bits = math.prod(symbols.shape[1:]), bits_per_symbol(n_symbols)

    encode = rans.encode_branchless if choice.code_bits >= BRANCHLESS_BITS * symbols.size else rans.encode

    def code(g: tuple[int, int]) -> bytes | None:
        out = np.empty(
            math.ceil((g[1] - g[0]) * per_channel * bits / rans.WORD_BITS) + rans.STATE_WORDS * rans.LANES,
            dtype=np.uint16,
        )
        used = encode(symbols, g[0], g[1], n_symbols, weights, start, freq, inv, out)
        return None if used == rans.OVERFLOW else out[:used].astype("<u2").tobytes()

    streams = run_groups(code, groups, threads)
    if any(s is None for s in streams):  # a group would not beat the fixed-length code
        return raw()
    coded = _payload(model, [s for s in streams if s is not None], tables, neighbours)
    packed = math.ceil(symbols.size * bits / 8)
    return raw() if len(coded) >= 1 + varint_len(packed) + packed else CodedSymbols(coded, model, neighbours)


def _payload(mode: str, blobs: list[bytes], tables: Tables | None = None, neighbours: int = 0) -> bytes:
    """Mode varint, the neighbour set (causal), the frequency tables, then each blob length-prefixed."""
    w = BitstreamWriter("quant")
    w.uint(MODE_IDS[mode])
    if mode == "causal":
        w.uint(neighbours)
    if tables is not None:
        tables.write(w)
    for blob in blobs:
        w.blob(blob)
    return w.getvalue()[1:]  # without the writer's codec tag: a payload inside a stream, not a stream


@dataclass
class LevelPayload:
    """One level's payload as read from the stream, before any symbol is decoded."""

    mode: str
    raw: bytes = b""
    neighbours: int = 0
    tables: Tables | None = None
    streams: list[np.ndarray] | None = None


def read_payload(r: BitstreamReader, shape: tuple[int, int, int], n_symbols: int, *, chunk_log2: int) -> LevelPayload:
    """Read (not decode) one level's payload as written by ``encode_symbols``."""
    mode = r.uint()
    names = {v: k for k, v in MODE_IDS.items()}
    if mode not in names:
        raise CodecError(
            f"corrupt {r.name} bitstream: unknown symbol coding mode {mode} (or a stream from a newer vcm_eval)"
        )
    if names[mode] == "raw":
        return LevelPayload("raw", raw=r.blob())
    neighbours = r.uint() if names[mode] == "causal" else 0
    if names[mode] == "causal" and neighbours not in candidate_sets(n_symbols):
        raise CodecError(
            f"corrupt {r.name} bitstream: symbol payload with neighbour set {neighbours} for {n_symbols} symbols"
        )
    tables = Tables.read(r, num_contexts(n_symbols, neighbours), n_symbols)
    streams = []
    for c0, c1 in channel_groups(shape, chunk_log2):
        blob = r.blob()
        if len(blob) % 2 or len(blob) < 2 * rans.STATE_WORDS * min(rans.LANES, c1 - c0):
            raise CodecError(
                f"corrupt {r.name} bitstream: a rANS stream of {len(blob)} bytes cannot hold its lanes' final states"
            )
        streams.append(rans.stream_words(blob))
    return LevelPayload(names[mode], neighbours=neighbours, tables=tables, streams=streams)


def decode_symbols(
    r: BitstreamReader, shape: tuple[int, int, int], n_symbols: int, *, chunk_log2: int, threads: int = 1
) -> np.ndarray:
    """Read one level's payload (as written by ``encode_symbols``) -> uint8 symbols [C, H, W]."""
    return decode_payload(
        read_payload(r, shape, n_symbols, chunk_log2=chunk_log2),
        shape,
        n_symbols,
        chunk_log2=chunk_log2,
        threads=threads,
    )


def decode_payload(
    payload: LevelPayload,
    shape: tuple[int, int, int],
    n_symbols: int,
    *,
    chunk_log2: int,
    threads: int = 1,
    table: np.ndarray | None = None,
) -> np.ndarray:
    """Decode a level's payload -> uint8 symbols [C, H, W], or with ``table`` (float32 [C, n]) the float32 values
    table[c, symbol].

    The values are written by the decoding loop itself (one pass: no symbol map written and read
    again); ``raw`` payloads are unpacked, then looked up.
    """
    groups = channel_groups(shape, chunk_log2)
    if payload.mode == "raw":
        symbols = unpack_fixed(payload.raw, math.prod(shape), n_symbols).reshape(shape)
        if table is None:
            return symbols
        values = np.empty(shape, dtype=np.float32)
        run_groups(lambda g: quant_kernels.lookup(symbols, g[0], g[1], table, values), groups, threads)
        return values
    assert payload.tables is not None and payload.streams is not None
    start, freq, end, _ = rans.flat_tables(payload.tables.start, payload.tables.freq)
    weights = context_weights(payload.neighbours, n_symbols)
    streams = payload.streams
    none = np.empty((0, 0, 0), dtype=np.uint8)
    symbols = np.empty(shape, dtype=np.uint8) if table is None else none
    values = np.empty(shape, dtype=np.float32) if table is not None else np.empty((0, 0, 0), dtype=np.float32)
    lookup = (
        np.ascontiguousarray(table, dtype=np.float32)
        if table is not None
        else np.empty((0, n_symbols), dtype=np.float32)
    )

    decode = (
        rans.decode_branchless
        if rans.WORD_BITS * sum(len(w) for w in streams) >= BRANCHLESS_BITS * math.prod(shape)
        else rans.decode
    )

    def work(k: int) -> int:
        return int(
            decode(
                streams[k], groups[k][0], groups[k][1], n_symbols, weights, start, freq, end, symbols, lookup, values
            )
        )

    if any(status == rans.CORRUPT for status in run_groups(work, range(len(groups)), threads)):
        raise CodecError(
            f"corrupt {CODEC} bitstream: rANS decoding failed (words missing or left over, an unused context, "
            "or a wrong final state)"
        )
    return symbols if table is None else values
