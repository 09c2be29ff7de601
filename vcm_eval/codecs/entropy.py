"""Lossless coding of small-alphabet symbol maps [C, H, W] (the 2-bit quantizer's symbols).

The quantizer of ``vcm_eval.codecs.quant`` turns every feature value into one of ``n`` symbols
(n <= 16). This module writes those symbols, per FPN level, in one of three ways:

* ``raw``: the paper's fixed-length code, ceil(log2 n) bits per value, bit-packed MSB first.
* ``static``: one symbol distribution per level, measured by the encoder and sent in the stream
  (16-bit quantized frequencies), then rANS.
* ``causal``: one distribution per *context* = (left neighbour's symbol, upper neighbour's symbol)
  in the same channel, ``(n + 1) ** 2`` of them (``n`` marks "outside the map"). FPN maps are
  spatially smooth, so a neighbour predicts the symbol well: on the task network's features this
  needs about half the bits of ``static``.

The coding loops (rANS, bit packing) are compiled: ``vcm_eval.codecs.rans``. Symbols are coded in
raster order per channel; the channels are split into groups of whole channels with at most
``2 ** chunk_log2`` symbols, each group its own rANS stream, so groups code and decode in parallel
threads (``threads``) and the stream is the same for any thread count.

Per level the encoder keeps whichever of ``raw`` and the chosen model is smaller (a mode varint
says which), so the coded payload is never larger than the paper's fixed-length size.

Payload layout of one level (varints as in ``vcm_eval.codecs.bitstream``)::

    mode varint     0 raw | 1 static | 2 causal
    raw:            varint length + ceil(C*H*W*b/8) bytes, b = ceil(log2 n)
    static/causal:  per context: varint mask of the symbols that occur (bit s = symbol s; 0 = the
                    context never occurs), then the 16-bit frequency of each of those symbols but
                    the last (varints; the last gets 2**16 - their sum);
                    then per channel group: varint byte length + the rANS bytes (final state first)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from vcm_eval.codecs import rans
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.errors import CodecError

MODELS = ("raw", "static", "causal")
MODE_IDS = {"raw": 0, "static": 1, "causal": 2}
TOTAL = 1 << rans.PRECISION
MAX_SYMBOLS = 16

T = TypeVar("T")
G = TypeVar("G")


def bits_per_symbol(n_symbols: int) -> int:
    """The paper's fixed-length code: ceil(log2 n) bits per value (1 for n = 2)."""
    return max(1, math.ceil(math.log2(n_symbols)))


def varint_len(value: int) -> int:
    """Bytes of an unsigned LEB128 varint (as ``BitstreamWriter.uint`` writes it)."""
    return max(1, (int(value).bit_length() + 6) // 7)


def channel_groups(shape: Sequence[int], chunk_log2: int) -> list[tuple[int, int]]:
    """Channel ranges [c0, c1) of whole channels with at most 2**chunk_log2 values (>= 1 channel each)."""
    channels, per_channel = int(shape[0]), math.prod(int(s) for s in shape[1:])
    step = max(1, (1 << chunk_log2) // max(per_channel, 1))
    return [(c, min(c + step, channels)) for c in range(0, channels, step)]


def work_units(groups: Sequence[tuple[int, int]], threads: int) -> list[tuple[int, ...]]:
    """Which channel groups one task codes: pairs of equal-sized neighbours, or single groups.

    The rANS loops code two streams in lockstep 1.1-1.7x faster than one at a time (two independent
    dependency chains), so groups are paired when that still leaves a task per thread; a group
    without an equal-sized partner (a level's last) runs alone. The streams do not change.
    """
    if len(groups) < 2 * threads:
        return [(k,) for k in range(len(groups))]
    units: list[tuple[int, ...]] = []
    k = 0
    while k < len(groups):
        size = groups[k][1] - groups[k][0]
        if k + 1 < len(groups) and groups[k + 1][1] - groups[k + 1][0] == size:
            units.append((k, k + 1))
            k += 2
        else:
            units.append((k,))
            k += 1
    return units


def run_groups(work: Callable[[G], T], groups: Sequence[G], threads: int) -> list[T]:
    """``work`` on every channel group, in ``threads`` threads (the compiled loops release the GIL); results in group order."""
    if threads <= 1 or len(groups) == 1:
        return [work(g) for g in groups]
    with ThreadPoolExecutor(max_workers=min(threads, len(groups))) as pool:
        return list(pool.map(work, groups))


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
        raise CodecError(f"raw symbol payload has {len(data)} bytes, expected {math.ceil(count * b / 8)}; the bitstream is corrupt")
    out = np.empty(count, dtype=np.uint8)
    rans.unpack(np.frombuffer(data, dtype=np.uint8), b, out)
    if out.size and int(out.max()) >= n_symbols:
        raise CodecError(f"decoded symbol outside 0..{n_symbols - 1}; the bitstream is corrupt")
    return out


def num_contexts(n_symbols: int, model: str) -> int:
    return 1 if model == "static" else (n_symbols + 1) ** 2


@dataclass
class Tables:
    """16-bit quantized frequencies [contexts, n] (each used row sums to 2**16; unused rows are 0)."""

    freq: np.ndarray

    @property
    def start(self) -> np.ndarray:
        return np.cumsum(self.freq, axis=1) - self.freq

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> Tables:
        """Every symbol that occurs gets at least 1; the largest frequency absorbs the rounding."""
        counts = counts.astype(np.int64)
        freq = np.zeros_like(counts)
        for k, row in enumerate(counts):
            total = int(row.sum())
            if total == 0:
                continue
            f = np.where(row > 0, np.maximum(row * TOTAL // total, 1), 0)
            f[int(np.argmax(f))] += TOTAL - int(f.sum())
            freq[k] = f
        return cls(freq)

    def write(self, w: BitstreamWriter) -> None:
        for row in self.freq:
            used = np.flatnonzero(row)
            w.uint(int(sum(1 << int(s) for s in used)))
            for s in used[:-1]:
                w.uint(int(row[s]))

    @classmethod
    def read(cls, r: BitstreamReader, contexts: int, n_symbols: int) -> Tables:
        freq = np.zeros((contexts, n_symbols), dtype=np.int64)
        for k in range(contexts):
            mask = r.uint()
            if mask >= 1 << n_symbols:
                raise CodecError(f"corrupt symbol table: mask {mask} for {n_symbols} symbols; the bitstream is damaged")
            used = [s for s in range(n_symbols) if mask >> s & 1]
            if not used:
                continue
            listed = [r.uint() for _ in used[:-1]]
            if min(listed, default=1) < 1 or sum(listed) >= TOTAL:
                raise CodecError(f"corrupt symbol frequency table {listed}; the bitstream is damaged")
            freq[k, used] = [*listed, TOTAL - sum(listed)]
        return cls(freq)


@dataclass
class CodedSymbols:
    """One level's coded symbols: the payload bytes and the mode that won (``raw`` or the model)."""

    payload: bytes
    mode: str


def encode_symbols(symbols: np.ndarray, n_symbols: int, *, model: str, chunk_log2: int, threads: int = 1) -> CodedSymbols:
    """Code a uint8 symbol map [C, H, W] (values < n_symbols) as one level's payload.

    Args:
        symbols: uint8 [C, H, W].
        n_symbols: alphabet size, 2..16.
        model: ``raw``, ``static`` or ``causal`` (see the module docstring).
        chunk_log2: at most 2**chunk_log2 symbols per rANS stream.
        threads: channel groups coded at once.

    Returns:
        The payload (mode varint first): the smaller of ``raw`` and ``model``.
    """
    def raw() -> CodedSymbols:
        return CodedSymbols(_payload("raw", [pack_fixed(symbols, n_symbols)]), "raw")

    if model == "raw":
        return raw()
    symbols = np.ascontiguousarray(symbols, dtype=np.uint8)
    causal, contexts = model == "causal", num_contexts(n_symbols, model)
    groups = channel_groups(symbols.shape, chunk_log2)

    def count(g: tuple[int, int]) -> np.ndarray:
        out = np.zeros((contexts, n_symbols), dtype=np.int64)
        rans.context_counts(symbols, g[0], g[1], n_symbols, causal, out)
        return out

    tables = Tables.from_counts(np.sum(run_groups(count, groups, threads), axis=0))
    start, freq, _, inv = rans.flat_tables(tables.start, tables.freq)
    per_channel, bits = math.prod(symbols.shape[1:]), bits_per_symbol(n_symbols)

    def buffer(g: tuple[int, int]) -> np.ndarray:
        return np.empty(math.ceil((g[1] - g[0]) * per_channel * bits / 8) + 4, dtype=np.uint8)

    def code(unit: tuple[int, ...]) -> list[bytes | None]:
        if len(unit) == 1:
            (c0, c1), out = groups[unit[0]], buffer(groups[unit[0]])
            used = rans.encode(symbols, c0, c1, n_symbols, causal, start, freq, inv, out)
            return [None if used == rans.OVERFLOW else out[:used].tobytes()]
        (a, a1), (b, _) = groups[unit[0]], groups[unit[1]]
        out_a, out_b = buffer(groups[unit[0]]), buffer(groups[unit[1]])
        pair = rans.encode_pair(symbols, a, b, a1 - a, n_symbols, causal, start, freq, inv, out_a, out_b)
        return [None if k == rans.OVERFLOW else out[:k].tobytes() for k, out in zip(pair, (out_a, out_b))]

    streams = [blob for unit in run_groups(code, work_units(groups, threads), threads) for blob in unit]
    if any(s is None for s in streams):  # a group would not beat the fixed-length code
        return raw()
    coded = _payload(model, [s for s in streams if s is not None], tables)
    packed = math.ceil(symbols.size * bits / 8)
    return raw() if len(coded) >= 1 + varint_len(packed) + packed else CodedSymbols(coded, model)


def _payload(mode: str, blobs: list[bytes], tables: Tables | None = None) -> bytes:
    """Mode varint, the frequency tables, then each blob length-prefixed."""
    w = BitstreamWriter("quant")
    w.uint(MODE_IDS[mode])
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
    tables: Tables | None = None
    streams: list[np.ndarray] | None = None


def read_payload(r: BitstreamReader, shape: tuple[int, int, int], n_symbols: int, *, chunk_log2: int) -> LevelPayload:
    """Read (not decode) one level's payload as written by ``encode_symbols``."""
    mode = r.uint()
    names = {v: k for k, v in MODE_IDS.items()}
    if mode not in names:
        raise CodecError(f"unknown symbol coding mode {mode}; the bitstream is corrupt or from a newer vcm_eval")
    if names[mode] == "raw":
        return LevelPayload("raw", raw=r.blob())
    tables = Tables.read(r, num_contexts(n_symbols, names[mode]), n_symbols)
    streams = []
    for _ in channel_groups(shape, chunk_log2):
        blob = r.blob()
        if len(blob) < 4:
            raise CodecError(f"rANS stream of {len(blob)} bytes is shorter than its final state; the bitstream is corrupt")
        streams.append(np.frombuffer(blob, dtype=np.uint8))
    return LevelPayload(names[mode], tables=tables, streams=streams)


def decode_symbols(r: BitstreamReader, shape: tuple[int, int, int], n_symbols: int, *, chunk_log2: int, threads: int = 1) -> np.ndarray:
    """Read one level's payload (as written by ``encode_symbols``) -> uint8 symbols [C, H, W]."""
    payload = read_payload(r, shape, n_symbols, chunk_log2=chunk_log2)
    if payload.mode == "raw":
        return unpack_fixed(payload.raw, math.prod(shape), n_symbols).reshape(shape)
    assert payload.tables is not None and payload.streams is not None
    start, freq, end, _ = rans.flat_tables(payload.tables.start, payload.tables.freq)
    streams, groups = payload.streams, channel_groups(shape, chunk_log2)
    symbols = np.empty(shape, dtype=np.uint8)
    causal = payload.mode == "causal"

    def work(unit: tuple[int, ...]) -> int:
        if len(unit) == 1:
            c0, c1 = groups[unit[0]]
            return int(rans.decode(streams[unit[0]], c0, c1, n_symbols, causal, start, freq, end, symbols))
        (a, a1), (b, _) = groups[unit[0]], groups[unit[1]]
        return int(rans.decode_pair(streams[unit[0]], streams[unit[1]], a, b, a1 - a, n_symbols, causal, start, freq, end, symbols))

    if any(status == rans.CORRUPT for status in run_groups(work, work_units(groups, threads), threads)):
        raise CodecError("rANS decoding failed (bytes missing or left over, or a wrong final state); the bitstream is corrupt")
    return symbols
