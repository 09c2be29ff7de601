"""The compiled symbol coder (rANS with causal contexts, bit packing) and the quantizers' compiled passes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter, varint_bytes
from vcm_eval.codecs.quant import kernels as quant_kernels
from vcm_eval.codecs.quant import rans
from vcm_eval.codecs.quant.entropy import (
    LEFT_UP,
    Tables,
    channel_groups,
    context_weights,
    decode_symbols,
    encode_symbols,
    marginal_counts,
    num_contexts,
    pack_fixed,
    unpack_fixed,
    varint_len,
)
from vcm_eval.codecs.quant.nsymbol import NormalizedQuantizer, assign_symbols, thresholds
from vcm_eval.codecs.quant.uniform8 import Uniform8bitQuantizer
from vcm_eval.errors import CodecError
from vcm_eval.vision.base import FeatureSet


def _round_trip(
    symbols: np.ndarray, n: int, model: str, chunk_log2: int = 12, threads: int = 1
) -> tuple[np.ndarray, str, int]:
    coded = encode_symbols(symbols, n, model=model, chunk_log2=chunk_log2, threads=threads)
    w = BitstreamWriter("quant")
    w.raw(coded.payload)
    r = BitstreamReader(w.getvalue(), "quant")
    out = decode_symbols(r, symbols.shape, n, chunk_log2=chunk_log2, threads=threads)
    r.done()
    return out, coded.mode, len(coded.payload)


def _smooth_symbols(n: int, shape: tuple[int, int, int], seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """Symbols of a smooth normalized field (``shift`` skews their distribution towards the top)."""
    x = np.random.default_rng(seed).standard_normal(shape).cumsum(1).cumsum(2)
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
    return assign_symbols(x + shift, thresholds(n, 1.0))


@pytest.mark.parametrize("n", [2, 3, 4, 7, 16])
@pytest.mark.parametrize("model", ["static", "causal"])
def test_rans_round_trip_is_exact_and_compresses_smooth_maps(n: int, model: str) -> None:
    # causal: neighbours predict a smooth map; static: only a skewed histogram compresses
    symbols = _smooth_symbols(n, (8, 65, 81), seed=n, shift=0.0 if model == "causal" else 1.2)
    out, mode, size = _round_trip(symbols, n, model)
    np.testing.assert_array_equal(out, symbols)
    assert mode == model  # the model beats the fixed-length code
    assert 8 * size < symbols.size * max(1, math.ceil(math.log2(n)))


def test_one_symbol_contexts_cost_almost_nothing() -> None:
    symbols = np.zeros((4, 64, 64), dtype=np.uint8)
    symbols[2, 10:20, 5:9] = 3  # a few contexts with several symbols, most with exactly one (frequency 2**16)
    out, mode, size = _round_trip(symbols, 4, "causal")
    np.testing.assert_array_equal(out, symbols)
    assert mode == "causal" and size < 160


@pytest.mark.parametrize("channels", [48, 47])
def test_the_stream_does_not_depend_on_threads(channels: int) -> None:
    # groups of 16 channels (the coder's lanes): 48 -> three full groups, 47 -> a last group of 15
    symbols = _smooth_symbols(4, (channels, 40, 40))
    assert [b - a for a, b in channel_groups(symbols.shape, 11)] == [16, 16, channels - 32]
    one = encode_symbols(symbols, 4, model="causal", chunk_log2=11, threads=1).payload
    for threads in (2, 5):
        assert encode_symbols(symbols, 4, model="causal", chunk_log2=11, threads=threads).payload == one
        out, _, _ = _round_trip(symbols, 4, "causal", chunk_log2=11, threads=threads)
        np.testing.assert_array_equal(out, symbols)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 1, 17), (17, 5, 1), (33, 7, 9)])
@pytest.mark.parametrize("model", ["static", "causal"])
def test_edge_shapes_round_trip(shape: tuple[int, int, int], model: str) -> None:
    # one value, one row, one column, and channel counts that leave lanes idle in the last round
    symbols = np.random.default_rng(sum(shape)).integers(0, 4, size=shape).astype(np.uint8)
    symbols[..., ::2] = 1  # skewed enough that the model can beat 2 bits per value on larger maps
    coded = encode_symbols(symbols, 4, model=model, chunk_log2=10)
    w = BitstreamWriter("quant")
    w.raw(coded.payload)
    np.testing.assert_array_equal(
        decode_symbols(BitstreamReader(w.getvalue(), "quant"), shape, 4, chunk_log2=10), symbols
    )


def test_encoder_quotients_are_exact_at_the_extremes() -> None:
    # floor(x / f) as floor(x * inv) (rans.flat_tables): exact for x < f * 2**32, every f <= 2**16
    freq = np.array([1, 2, 3, 5, 7, 255, 4097, 40961, 65521, 65535, 65536], dtype=np.int64)
    _, _, _, inv = rans.flat_tables(np.zeros_like(freq), freq)
    for f, i in zip(freq, inv):
        q = np.unique(
            np.concatenate(
                [
                    np.arange(1, 1000),
                    (1 << 32) - np.arange(1, 1000),
                    np.random.default_rng(int(f)).integers(1, 1 << 32, 10_000),
                ]
            )
        )
        for x in (q * f, q * f + f - 1, np.minimum(q * f + f // 2, (f << 32) - 1)):
            np.testing.assert_array_equal((x.astype(np.float64) * i).astype(np.int64), x // f)


def test_causal_picks_the_neighbours_that_predict() -> None:
    # stripes along the anti-diagonal: up-right predicts every symbol, left and up do not
    i, j = np.meshgrid(np.arange(48), np.arange(64), indexing="ij")
    symbols = np.broadcast_to(((i + j) // 3 % 4).astype(np.uint8), (16, 48, 64)).copy()
    coded = encode_symbols(symbols, 4, model="causal", chunk_log2=16)
    assert coded.mode == "causal" and coded.neighbours & 0b1000  # up-right is in the chosen set
    out, _, size = _round_trip(symbols, 4, "causal", chunk_log2=16)
    np.testing.assert_array_equal(out, symbols)
    # at most what left + up alone would need (their ideal code length and table)
    counts = np.zeros(num_contexts(4, LEFT_UP) * 4, dtype=np.int64)
    rans.context_counts(symbols, 0, 16, 4, context_weights(LEFT_UP, 4), counts)
    tables = Tables.from_counts(counts.reshape(-1, 4))
    assert size < 0.5 * (tables.code_bits(counts.reshape(-1, 4)) / 8 + tables.table_bytes())


@pytest.mark.parametrize("room", [(1 << 31) - 1, 100])  # 100: the int32 partials are flushed every row
def test_context_counts_match_a_numpy_count(room: int) -> None:
    n, shape = 4, (5, 21, 30)
    symbols = _smooth_symbols(n, shape)
    padded = np.pad(symbols.astype(np.int64), ((0, 0), (1, 0), (1, 1)), constant_values=n)
    left, up, up_left, up_right = padded[:, 1:, :-2], padded[:, :-1, 1:-1], padded[:, :-1, :-2], padded[:, :-1, 2:]
    context = ((left * (n + 1) + up) * (n + 1) + up_left) * (n + 1) + up_right
    expected = np.bincount((context * n + symbols).ravel(), minlength=num_contexts(n, 0b1111) * n)
    counts = np.zeros_like(expected)
    rans.context_counts(symbols, 0, shape[0], n, context_weights(0b1111, n), counts, room)
    np.testing.assert_array_equal(counts, expected)


def test_counts_of_fewer_neighbours_are_marginals_of_the_richer_ones() -> None:
    symbols = _smooth_symbols(4, (5, 20, 30))

    def counts(neighbours: int) -> np.ndarray:
        out = np.zeros(num_contexts(4, neighbours) * 4, dtype=np.int64)
        rans.context_counts(symbols, 0, 5, 4, context_weights(neighbours, 4), out)
        return out.reshape(-1, 4)

    full = counts(0b1111)
    for neighbours in (0, 0b0001, LEFT_UP, 0b0111, 0b1011, 0b1100):
        np.testing.assert_array_equal(marginal_counts(full, 0b1111, neighbours, 4), counts(neighbours))


def test_estimated_size_is_the_coded_size() -> None:
    symbols = _smooth_symbols(4, (32, 48, 64))
    coded = encode_symbols(symbols, 4, model="causal", chunk_log2=20)
    counts = np.zeros(num_contexts(4, 0b1111) * 4, dtype=np.int64)
    rans.context_counts(symbols, 0, 32, 4, context_weights(0b1111, 4), counts)
    marginal = marginal_counts(counts.reshape(-1, 4), 0b1111, coded.neighbours, 4)
    tables = Tables.from_counts(marginal)
    estimate = tables.code_bits(marginal) / 8 + tables.table_bytes()
    # payload = mode, neighbour set, table, length varints and the lanes' final states beside the code
    assert estimate < len(coded.payload) < 1.01 * estimate + 2 * 3 * 16 + 16


@pytest.mark.parametrize("chunk_log2", [14, 10])
def test_corrupt_rans_words_are_codec_errors(chunk_log2: int) -> None:
    # 14: one stream of two rounds; 10: two streams of 16 channels
    symbols = _smooth_symbols(4, (32, 30, 30))
    payload = bytearray(encode_symbols(symbols, 4, model="causal", chunk_log2=chunk_log2).payload)
    payload[-3] ^= 0xFF  # inside the last stream: wrong final state or words left over
    w = BitstreamWriter("quant")
    w.raw(bytes(payload))
    with pytest.raises(CodecError, match="corrupt"):
        decode_symbols(BitstreamReader(w.getvalue(), "quant"), symbols.shape, 4, chunk_log2=chunk_log2)


def test_varint_arrays_are_the_single_varints_back_to_back() -> None:
    values = np.array([0, 1, 127, 128, 300, 16383, 16384, 65536, 2**35 + 7, 2**63 - 1], dtype=np.int64)
    one, many = BitstreamWriter("quant"), BitstreamWriter("quant")
    for v in values:
        one.uint(int(v))
    many.uints(values)
    assert many.getvalue() == one.getvalue()
    assert list(varint_bytes(values)) == [varint_len(int(v)) for v in values]
    r = BitstreamReader(many.getvalue(), "quant")
    np.testing.assert_array_equal(r.uints(len(values)), values)
    r.done()
    with pytest.raises(CodecError, match="truncated"):
        BitstreamReader(many.getvalue()[:-1], "quant").uints(len(values))


def test_frequency_tables_sum_to_the_precision_and_keep_every_seen_symbol() -> None:
    counts = np.array([[0, 0, 0, 0], [1, 10**9, 0, 3], [5, 5, 5, 5], [0, 7, 0, 0]])
    t = Tables.from_counts(counts)
    assert t.freq[0].sum() == 0 and list(t.freq[3]) == [0, 2**16, 0, 0]
    assert all(t.freq[k].sum() == 2**16 for k in (1, 2, 3))
    assert ((t.freq > 0) == (counts > 0)).all()
    w = BitstreamWriter("quant")
    t.write(w)
    back = Tables.read(BitstreamReader(w.getvalue(), "quant"), 4, 4)
    np.testing.assert_array_equal(back.freq, t.freq)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 16])
def test_bit_packing_is_msb_first_and_exact(n: int) -> None:
    symbols = np.random.default_rng(n).integers(0, n, size=1001).astype(np.uint8)
    data = pack_fixed(symbols, n)
    b = max(1, math.ceil(math.log2(n)))
    bits = "".join(format(int(s), f"0{b}b") for s in symbols)
    assert data == int(bits + "0" * (-len(bits) % 8), 2).to_bytes(len(data), "big")
    np.testing.assert_array_equal(unpack_fixed(data, symbols.size, n), symbols)


@pytest.mark.parametrize("t", [0.5, 1.0, 1.5])
def test_compiled_symbol_rule_equals_the_readable_one_at_the_boundaries(t: float) -> None:
    values = np.array([-1e9, np.nextafter(-t, -np.inf), -t, np.nextafter(0, -1), 0.0, t, np.nextafter(t, np.inf), 1e9])
    for n in (2, 3, 4, 5, 16):  # n <= 4: one loop of three comparisons; n > 4: one sweep per boundary
        bounds = thresholds(n, t)
        x = values.astype(np.float64).reshape(1, 1, -1)
        symbols = np.empty(x.shape, dtype=np.uint8)
        sums, counts = np.zeros((1, n)), np.zeros((1, n), dtype=np.int64)
        quant_kernels.assign(x, 0, 1, np.zeros(1), np.ones(1), bounds, True, symbols, sums, counts)
        np.testing.assert_array_equal(symbols.reshape(-1), assign_symbols(values, bounds))


def test_quantizers_give_the_same_bytes_for_any_thread_count() -> None:
    gen = torch.Generator().manual_seed(0)
    levels = {
        k: torch.randn(24, h, w, generator=gen).cumsum(1).cumsum(2)
        for k, h, w in (("p2", 40, 56), ("p3", 20, 28), ("p4", 10, 14), ("p5", 5, 7), ("p6", 3, 4))
    }
    f = FeatureSet(levels=levels, image_size=(160, 224), input_size=(160, 224))
    for codec in (
        lambda th: NormalizedQuantizer(4, 1.0, centroids="level", chunk_log2=11, threads=th),
        lambda th: Uniform8bitQuantizer(threads=th),
    ):
        one, two = codec(1), codec(2)
        data = one.encode(f)
        assert two.encode(f) == data
        for k, v in two.decode(data).items():
            assert torch.equal(v, one.decode(data)[k])


def test_old_format_streams_are_refused_with_the_reason() -> None:
    data = bytearray(
        Uniform8bitQuantizer().encode(
            FeatureSet(
                levels={k: torch.ones(2, 3, 3) for k in ("p2", "p3", "p4", "p5", "p6")},
                image_size=(8, 8),
                input_size=(8, 8),
            )
        )
    )
    data[0] = (data[0] & 0xF0) | 1  # format 1: the anti-diagonal CompressAI coder
    with pytest.raises(CodecError, match="format 1.*re-encode"):
        NormalizedQuantizer(4, 1.0).decode(bytes(data))


@pytest.mark.parametrize("neighbours", [0, LEFT_UP, 0b1111])
def test_branch_free_renormalization_writes_and_reads_the_same_words(neighbours: int) -> None:
    symbols = _smooth_symbols(4, (20, 30, 40), shift=0.5)
    counts = np.zeros(num_contexts(4, neighbours) * 4, dtype=np.int64)
    weights = context_weights(neighbours, 4)
    rans.context_counts(symbols, 0, 20, 4, weights, counts)
    tables = Tables.from_counts(counts.reshape(-1, 4))
    start, freq, end, inv = rans.flat_tables(tables.start, tables.freq)
    words = []
    for encode in (rans.encode, rans.encode_branchless):
        out = np.empty(symbols.size, dtype=np.uint16)
        words.append(out[: encode(symbols, 0, 20, 4, weights, start, freq, inv, out)].copy())
    np.testing.assert_array_equal(words[0], words[1])
    for decode in (rans.decode, rans.decode_branchless):
        back = np.zeros_like(symbols)
        assert (
            decode(
                words[0],
                0,
                20,
                4,
                weights,
                start,
                freq,
                end,
                back,
                np.empty((0, 4), np.float32),
                np.empty((0, 0, 0), np.float32),
            )
            == 0
        )
        np.testing.assert_array_equal(back, symbols)
