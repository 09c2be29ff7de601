"""Lossless coding of small-alphabet symbol maps [C, H, W] with CompressAI's rANS coder.

The quantizer of ``vcm_eval.codecs.quant`` turns every feature value into one of ``n`` symbols
(n <= 16). This module writes those symbols, per FPN level, in one of three ways:

* ``raw``: the paper's fixed-length code, ceil(log2 n) bits per value, bit-packed MSB first.
* ``static``: one symbol distribution per level, measured by the encoder and sent in the stream
  (16-bit quantized frequencies), then rANS (``compressai.ans``).
* ``causal``: one distribution per *context* = (left neighbour's symbol, upper neighbour's symbol)
  in the same channel, ``(n + 1) ** 2`` of them (``n`` marks "outside the map"). FPN maps are
  spatially smooth, so a neighbour predicts the symbol well: on the task network's features this
  needs about half the bits of ``static``.

Coding order: channel-interleaved anti-diagonals. Diagonal ``d`` holds the positions with
``row + col = d`` of every channel, so both neighbours of a position lie on diagonal ``d - 1``
and the decoder decodes a whole diagonal (all channels) in one rANS call. Diagonals are grouped
into chunks of at most ``2 ** chunk_log2`` symbols, each its own rANS stream (bounded memory).

Per level the encoder keeps whichever of ``raw`` and the chosen model is smaller (a mode varint
says which), so the coded payload is never larger than the paper's fixed-length size.

Payload layout of one level (varints as in ``vcm_eval.codecs.bitstream``)::

    mode varint     0 raw | 1 static | 2 causal
    raw:            varint length + ceil(C*H*W*b/8) bytes, b = ceil(log2 n)
    static/causal:  per context: n varints = quantized frequencies of symbols 0..n-1 (the escape
                    symbol gets 2**16 - sum), or a single 0 for a context that never occurs;
                    then per chunk: varint byte length + the rANS bytes
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.errors import CodecError

MODELS = ("raw", "static", "causal")
MODE_IDS = {"raw": 0, "static": 1, "causal": 2}
PRECISION = 16  # compressai.ans works with 16-bit quantized CDFs
MAX_SYMBOLS = 16


def bits_per_symbol(n_symbols: int) -> int:
    """The paper's fixed-length code: ceil(log2 n) bits per value (1 for n = 2)."""
    return max(1, math.ceil(math.log2(n_symbols)))


def varint_len(value: int) -> int:
    """Bytes of an unsigned LEB128 varint (as ``BitstreamWriter.uint`` writes it)."""
    return max(1, (int(value).bit_length() + 6) // 7)


def pack_fixed(symbols: np.ndarray, n_symbols: int) -> bytes:
    """Symbols (any shape, values < n) -> ceil(log2 n) bits each, MSB first, zero-padded."""
    b = bits_per_symbol(n_symbols)
    bits = np.unpackbits(symbols.astype(np.uint8).reshape(-1, 1), axis=1)[:, 8 - b :]
    return np.packbits(bits.reshape(-1)).tobytes()


def unpack_fixed(data: bytes, count: int, n_symbols: int) -> np.ndarray:
    """Inverse of ``pack_fixed``: ``count`` uint8 symbols."""
    b = bits_per_symbol(n_symbols)
    if len(data) != math.ceil(count * b / 8):
        raise CodecError(f"raw symbol payload has {len(data)} bytes, expected {math.ceil(count * b / 8)}; the bitstream is corrupt")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * b].reshape(count, b)
    weights = (1 << np.arange(b - 1, -1, -1)).astype(np.uint8)
    out = (bits * weights).sum(axis=1).astype(np.uint8)
    return out


def _diagonals(height: int, width: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, cols) of every anti-diagonal ``row + col = d``, d = 0 .. H + W - 2."""
    for d in range(height + width - 1):
        rows = np.arange(max(0, d - width + 1), min(height - 1, d) + 1)
        yield rows, d - rows


def _chunks(shape: tuple[int, int, int], chunk_log2: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Diagonals grouped greedily into chunks of at most 2**chunk_log2 symbols (>= 1 diagonal each)."""
    channels, height, width = shape
    limit = 1 << chunk_log2
    chunks: list[list[tuple[np.ndarray, np.ndarray]]] = [[]]
    size = 0
    for diag in _diagonals(height, width):
        n = channels * len(diag[0])
        if chunks[-1] and size + n > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(diag)
        size += n
    return chunks


def _contexts(symbols: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_symbols: int, model: str) -> np.ndarray:
    """Context index [C, len(rows)] of the positions (rows, cols) from already-known neighbours."""
    if model == "static":
        return np.zeros((symbols.shape[0], len(rows)), dtype=np.int64)
    left = np.full((symbols.shape[0], len(rows)), n_symbols, dtype=np.int64)
    up = left.copy()
    has_left, has_up = cols > 0, rows > 0
    left[:, has_left] = symbols[:, rows[has_left], cols[has_left] - 1]
    up[:, has_up] = symbols[:, rows[has_up] - 1, cols[has_up]]
    return left * (n_symbols + 1) + up


def num_contexts(n_symbols: int, model: str) -> int:
    return 1 if model == "static" else (n_symbols + 1) ** 2


@dataclass
class _Tables:
    """Quantized CDFs (length n + 2, last = 2**16) of each context, as compressai.ans wants them."""

    cdfs: list[list[int]]
    freqs: list[list[int] | None]  # what the stream stores; None = context unused

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> _Tables:
        from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf

        cdfs: list[list[int]] = []
        freqs: list[list[int] | None] = []
        for row in counts:
            total = int(row.sum())
            if total == 0:
                freqs.append(None)
                cdfs.append(_uniform_cdf(len(row)))
                continue
            pmf = torch.tensor([*(row / total), 0.0], dtype=torch.float32)  # + escape symbol
            cdf = pmf_to_quantized_cdf(pmf, PRECISION).tolist()
            freqs.append([cdf[i + 1] - cdf[i] for i in range(len(row))])
            cdfs.append(cdf)
        return cls(cdfs, freqs)

    def write(self, w: BitstreamWriter) -> None:
        for f in self.freqs:
            if f is None:
                w.uint(0)
            else:
                for v in f:
                    w.uint(v)

    @classmethod
    def read(cls, r: BitstreamReader, contexts: int, n_symbols: int) -> _Tables:
        cdfs: list[list[int]] = []
        freqs: list[list[int] | None] = []
        for _ in range(contexts):
            first = r.uint()
            if first == 0:
                freqs.append(None)
                cdfs.append(_uniform_cdf(n_symbols))
                continue
            f = [first] + [r.uint() for _ in range(n_symbols - 1)]
            if min(f) < 1 or sum(f) >= 1 << PRECISION:
                raise CodecError(f"corrupt symbol frequency table {f}; the bitstream is damaged")
            freqs.append(f)
            cdfs.append([0, *np.cumsum(f).tolist(), 1 << PRECISION])
        return cls(cdfs, freqs)


def _uniform_cdf(n_symbols: int) -> list[int]:
    """A valid CDF for a context that never occurs (never used to code anything)."""
    step = (1 << PRECISION) // (n_symbols + 1)
    return [i * step for i in range(n_symbols + 1)] + [1 << PRECISION]


@dataclass
class CodedSymbols:
    """One level's coded symbols: the payload bytes and the mode that won (``raw`` or the model)."""

    payload: bytes
    mode: str


def encode_symbols(symbols: np.ndarray, n_symbols: int, *, model: str, chunk_log2: int) -> CodedSymbols:
    """Code a uint8 symbol map [C, H, W] (values < n_symbols) as one level's payload.

    Args:
        symbols: uint8 [C, H, W].
        n_symbols: alphabet size, 2..16.
        model: ``raw``, ``static`` or ``causal`` (see the module docstring).
        chunk_log2: at most 2**chunk_log2 symbols per rANS stream.

    Returns:
        The payload (mode varint first): the smaller of ``raw`` and ``model``.
    """
    from compressai.ans import RansEncoder

    raw = _payload("raw", [pack_fixed(symbols, n_symbols)])
    if model == "raw":
        return CodedSymbols(raw, "raw")
    contexts = num_contexts(n_symbols, model)
    chunks = _chunks(symbols.shape, chunk_log2)  # type: ignore[arg-type]
    seq_sym, seq_ctx = [], []
    for chunk in chunks:
        syms = np.concatenate([symbols[:, r, c].reshape(-1) for r, c in chunk])
        ctxs = np.concatenate([_contexts(symbols, r, c, n_symbols, model).reshape(-1) for r, c in chunk])
        seq_sym.append(syms)
        seq_ctx.append(ctxs)
    counts = np.zeros((contexts, n_symbols), dtype=np.int64)
    for s, c in zip(seq_sym, seq_ctx):
        counts += np.bincount(c * n_symbols + s, minlength=contexts * n_symbols).reshape(contexts, n_symbols)
    tables = _Tables.from_counts(counts)
    sizes = [len(cdf) for cdf in tables.cdfs]
    offsets = [0] * contexts
    streams = [RansEncoder().encode_with_indexes(s.tolist(), c.tolist(), tables.cdfs, sizes, offsets) for s, c in zip(seq_sym, seq_ctx)]
    coded = _payload(model, streams, tables)
    return CodedSymbols(raw, "raw") if len(coded) >= len(raw) else CodedSymbols(coded, model)


def _payload(mode: str, blobs: list[bytes], tables: _Tables | None = None) -> bytes:
    """Mode varint, the frequency tables, then each blob length-prefixed."""
    w = BitstreamWriter("quant")
    w.uint(MODE_IDS[mode])
    if tables is not None:
        tables.write(w)
    for blob in blobs:
        w.blob(blob)
    return w.getvalue()[1:]  # without the writer's codec tag: a payload inside a stream, not a stream


def decode_symbols(r: BitstreamReader, shape: tuple[int, int, int], n_symbols: int, *, chunk_log2: int) -> np.ndarray:
    """Read one level's payload (as written by ``encode_symbols``) -> uint8 symbols [C, H, W]."""
    from compressai.ans import RansDecoder

    mode = r.uint()
    names = {v: k for k, v in MODE_IDS.items()}
    if mode not in names:
        raise CodecError(f"unknown symbol coding mode {mode}; the bitstream is corrupt or from a newer vcm_eval")
    channels, height, width = shape
    count = channels * height * width
    if names[mode] == "raw":
        return unpack_fixed(r.blob(), count, n_symbols).reshape(shape)
    model = names[mode]
    contexts = num_contexts(n_symbols, model)
    tables = _Tables.read(r, contexts, n_symbols)
    sizes = [len(cdf) for cdf in tables.cdfs]
    offsets = [0] * contexts
    symbols = np.zeros(shape, dtype=np.uint8)
    for chunk in _chunks(shape, chunk_log2):
        stream = r.blob()
        if len(stream) < 8 or len(stream) % 4:
            raise CodecError(f"rANS chunk of {len(stream)} bytes is not whole 32-bit words; the bitstream is corrupt")
        decoder = RansDecoder()
        decoder.set_stream(stream)
        for rows, cols in chunk:
            ctx = _contexts(symbols, rows, cols, n_symbols, model)
            values = np.asarray(decoder.decode_stream(ctx.reshape(-1).tolist(), tables.cdfs, sizes, offsets), dtype=np.int64)
            if values.size and (values.min() < 0 or values.max() >= n_symbols):
                raise CodecError(f"decoded symbol outside 0..{n_symbols - 1}; the bitstream is corrupt")
            symbols[:, rows, cols] = values.reshape(channels, len(rows)).astype(np.uint8)
    return symbols
