"""Method A: per-channel normalization + n-symbol quantization of FPN features ("2-bit features").

The paper (docs/methods.md, Method A; docs/quant.md) reduces the R50-FPN pyramid P2..P6 to a few
symbols per value:

1. normalize each channel c of each level: z = (x - mu_c) / sigma_c (mu_c, sigma_c sent);
2. quantize z into n intervals (``assign_symbols``); n = 4: z < -t | -t <= z < 0 | 0 <= z <= t |
   z > t; n = 3: z < -t | -t <= z <= t | z > t;
3. reconstruct each symbol as the mean of the normalized values that fell into its interval (the
   "centroids", sent), then x = z_hat * sigma_c + mu_c.

The paper counts a fixed ceil(log2 n) bits per value (``raw_bits``); here the symbols are also
entropy-coded (``vcm_eval.codecs.quant.entropy``) into a real bitstream that holds everything the decoder
needs, so the rate is 8 * len(bytes). ``vcm_eval.codecs.quant8.Uniform8bitQuantizer`` is the
paper's 8-bit comparison point; ``vcm_eval.codecs.quant.sizes`` reproduces its data-size table.

Stream layout (after the container's byte: codec ``quant``, format ``FORMAT_VERSION``; see
``vcm_eval.codecs.bitstream``)::

    varint method (0 n-symbol, 1 uniform 8-bit); varint image H, W, input H, W
    varint mask of coded levels, varint mask of float32 pass-through levels (bit i = LEVELS[i])
    per level (coded, then pass-through, each in LEVELS order): varint C, H, W
    method 0: varint n_symbols, side dtype id, centroid scope id, chunk_log2 (channel groups)
      per coded level: mu[C], sigma[C] (side dtype); the symbol payload (vcm_eval.codecs.quant.entropy);
                       varint K, then the centroids of the K non-empty (channel, symbol) cells
                       (side dtype; K = all cells lets the decoder write values while decoding;
                       otherwise it counts the cells from the symbols and checks K)
    method 1: varint side dtype id; per coded level: min, max (side dtype), blob of C*H*W uint8
    per pass-through level: C*H*W float32
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from vcm_eval.codecs.base import MAX_DECODE_BYTES, MAX_PIXELS, FeatureCodec
from vcm_eval.codecs.bitstream import BitstreamReader
from vcm_eval.codecs.minmax import non_finite_error
from vcm_eval.codecs.quant import kernels
from vcm_eval.codecs.quant.config import CentroidScope, EntropyModel, SideDtype
from vcm_eval.codecs.quant.entropy import (
    MAX_SYMBOLS,
    bits_per_symbol,
    channel_groups,
    decode_payload,
    encode_symbols,
    read_payload,
    run_groups,
)
from vcm_eval.codecs.quant.sizes import Shapes, representation_bits
from vcm_eval.codecs.quant.stream import (
    DEFAULT_CHUNK_LOG2,
    SIDE_DTYPES,
    check_decode_memory,
    level_array,
    pick_option,
    read_header,
    read_passthrough,
    round_side,
    stream_format_version,
    write_header,
    write_passthrough,
)
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.utils.choices import choice
from vcm_eval.utils.components import Runtime
from vcm_eval.vision.base import LEVELS, FeatureSet
from vcm_eval.vision.levels import parse_levels

CENTROID_SCOPES = tuple(CentroidScope.values())  # channel, level: the stream's ids
CHUNK_LOG2_RANGE = (10, 30)  # channel groups of 1 Ki to 1 Gi values
# What a decode allocates per coded value: 4 bytes of float32 output, 1 of symbols (when some
# (channel, symbol) cell is empty and the symbols are decoded before the values), 1 of slack.
DECODE_BYTES_PER_VALUE = 6


# --- quantization rule -----------------------------------------------------------------------


def thresholds(n_symbols: int, z: float) -> np.ndarray:
    """The n - 1 interval boundaries, symmetric about 0.

    n = 2: {0} (z unused); n >= 3: n - 1 equally spaced values from -z to +z. This gives the
    paper's {-z, 0, z} for n = 4 and {-z, z} for n = 3.
    """
    check_params(n_symbols, z)
    if n_symbols == 2:
        return np.zeros(1)
    return np.linspace(-z, z, n_symbols - 1)


def assign_symbols(normalized: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Normalized values -> 0-based symbols (the paper's symbol k is k - 1 here), uint8.

    A value equal to a boundary t goes to the upper interval when t <= 0 and to the lower one when
    t > 0: n = 4 gives exactly z < -t | -t <= z < 0 | 0 <= z <= t | z > t. (The readable rule;
    the codec applies the same rule in ``quant_kernels.assign``, and the tests check both agree.)
    """
    out = np.zeros(normalized.shape, dtype=np.uint8)
    for t in bounds:
        out += (normalized >= t) if t <= 0 else (normalized > t)
    return out


def check_params(n_symbols: int, z: float) -> None:
    if not 2 <= n_symbols <= MAX_SYMBOLS:
        raise ConfigError(f"n_symbols={n_symbols} is out of range; use 2..{MAX_SYMBOLS} (the paper uses 3 and 4)")
    if not (math.isfinite(z) and z > 0):
        raise ConfigError(f"z={z} must be a finite threshold > 0 (the paper sweeps 0.5, 1.0, 1.5, 2.0)")


@dataclass
class QuantizedLevel:
    """One level after normalization and quantization (what the decoder gets back).

    Attributes:
        symbols: uint8 [C, H, W], 0-based.
        mu, sigma: float64 [C] per-channel mean and std, rounded to the side dtype.
        centroids: float64 [C, n] (channel scope) or [1, n] (level scope), rounded; a cell no
            value fell into holds 0 and is not sent.
        counts: how many values fell into each cell (same shape as ``centroids``).
    """

    symbols: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    centroids: np.ndarray
    counts: np.ndarray

    def reconstruct(self, groups: list[tuple[int, int]] | None = None, threads: int = 1) -> torch.Tensor:
        """x_hat = centroid[c, s] * sigma_c + mu_c (float64, then float32); a constant channel gives mu_c exactly.

        The C x n reconstruction values are computed once; one compiled pass writes the level.
        """
        c = self.symbols.shape[0]
        table = reconstruction_table(self.centroids, self.mu, self.sigma)
        out = np.empty(self.symbols.shape, dtype=np.float32)
        run_groups(lambda g: kernels.lookup(self.symbols, g[0], g[1], table, out), groups or [(0, c)], threads)
        return torch.from_numpy(out)


def reconstruction_table(centroids: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """float32 [C, n]: centroid[c, s] * sigma_c + mu_c in float64, then float32 (centroids [C, n] or [1, n])."""
    c = mu.shape[0]
    rows = centroids if centroids.shape[0] == c else np.broadcast_to(centroids, (c, centroids.shape[1]))
    return np.ascontiguousarray((rows * sigma[:, None] + mu[:, None]).astype(np.float32))


def _cell_counts(
    symbols: np.ndarray, n_symbols: int, scope: str, groups: list[tuple[int, int]], threads: int
) -> np.ndarray:
    """How many values fell into each (channel, symbol) cell: [C, n], or [1, n] for level scope."""
    rows = symbols.shape[0] if scope == "channel" else 1

    def count(g: tuple[int, int]) -> np.ndarray:
        out = np.zeros((rows, n_symbols), dtype=np.int64)
        kernels.cell_counts(symbols, g[0], g[1], scope == "channel", out)
        return out

    return np.sum(run_groups(count, groups, threads), axis=0)


@dataclass
class StreamStats:
    """Where the bytes of one stream went (bits): the symbol payloads and everything else (read from the stream)."""

    raw_bits: int
    symbol_bits: int
    side_bits: int
    values: int
    modes: str


class NormalizedQuantizer(FeatureCodec):
    """Method A as a FeatureCodec: ``encode(FeatureSet) -> bytes``, ``decode(bytes) -> FeatureSet``.

    Args:
        n_symbols: number of intervals n, 2..16 (paper: 3 and 4).
        z: threshold z_t > 0 in units of the channel's standard deviation (paper: 0.5..2.0).
        levels: the levels quantized (default P2..P6, as in the paper). Other levels of the
            FeatureSet except P6 pass through as float32 (counted); an uncoded P6 is dropped and
            rebuilt from P5 by the task model.
        side_dtype: ``float16`` or ``float32`` for mu, sigma and the centroids.
        centroids: ``channel`` (one reconstruction value per channel and symbol: keeps every
            channel's mean) or ``level`` (one per level and symbol, n values per level).
        entropy_model: ``causal`` (neighbour-context rANS), ``static`` (one distribution per
            level) or ``raw`` (the paper's fixed ceil(log2 n) bits); see vcm_eval.codecs.entropy.
        chunk_log2: channel groups of at most 2**chunk_log2 values: the unit of parallel work and
            of a rANS stream (part of the stream, so the bytes do not depend on ``threads``).
        threads: channel groups processed at once (compiled loops in a thread pool).
    """

    name = "quant"
    revision_area = "quant"  # its code's revision is in the run key (vcm_eval.revisions)
    rate_params = ("z",)
    sweep_params = ("z",)  # the paper plots mAP against z, one line per n

    def __init__(
        self,
        n_symbols: int,
        z: float,
        *,
        levels: str | tuple[str, ...] = LEVELS,
        side_dtype: str = "float16",
        centroids: str = "channel",
        entropy_model: str = "causal",
        chunk_log2: int = DEFAULT_CHUNK_LOG2,
        threads: int = 1,
    ) -> None:
        check_params(n_symbols, z)
        side_dtype, centroids = (
            str(choice(SideDtype, side_dtype, "side_dtype")),
            str(choice(CentroidScope, centroids, "centroids")),
        )
        entropy_model = str(choice(EntropyModel, entropy_model, "entropy_model"))
        if not CHUNK_LOG2_RANGE[0] <= chunk_log2 <= CHUNK_LOG2_RANGE[1]:
            raise ConfigError(
                f"chunk_log2={chunk_log2} is out of range; use {CHUNK_LOG2_RANGE[0]}..{CHUNK_LOG2_RANGE[1]}"
            )
        self.n_symbols, self.z, self.levels = n_symbols, float(z), parse_levels(levels)
        self.side_dtype, self.centroids, self.entropy_model, self.chunk_log2 = (
            side_dtype,
            centroids,
            entropy_model,
            chunk_log2,
        )
        self.threads = max(1, int(threads))
        self.bounds = thresholds(n_symbols, self.z)

    @classmethod
    def from_config(cls, cfg: DictConfig, runtime: Runtime) -> NormalizedQuantizer:
        """The ``pipeline`` group's settings; ``runtime.threads`` channel groups at once (same bytes for any count)."""
        p = cfg.pipeline
        return cls(p.n_symbols, p.z, levels=p.levels, side_dtype=p.side_dtype, centroids=p.centroids,
                   entropy_model=p.entropy_model, threads=runtime.threads)  # fmt: skip

    def version(self) -> str:
        return stream_format_version()

    # the paper's rate
    def raw_bits(self, shapes: Shapes) -> int:
        """The paper's data size: ceil(log2 n) bits per value of the coded levels (no side info)."""
        return representation_bits(
            {k: v for k, v in shapes.items() if k in self.levels}, bits_per_symbol(self.n_symbols)
        )

    # quantization without coding
    def quantize_level(self, name: str, x: torch.Tensor) -> QuantizedLevel:
        """Normalize + quantize one level [C, H, W]; mu, sigma and centroids as the decoder sees them.

        Two compiled passes per channel group: mean/std (one sweep of shifted sums), then
        normalization, symbol, cell counts and centroid sums together. Group partials are added
        in group order, so the result does not depend on ``threads``.
        """
        arr = level_array(name, x)
        c = arr.shape[0]
        groups = channel_groups(arr.shape, self.chunk_log2)
        mean, std = np.empty(c), np.empty(c)
        bad = sum(run_groups(lambda g: kernels.channel_stats(arr, g[0], g[1], mean, std), groups, self.threads))
        if bad:
            raise non_finite_error(name, bad)
        mu = round_side(mean, self.side_dtype, f"level {name} channel mean")
        sigma = round_side(std, self.side_dtype, f"level {name} channel std")
        symbols = np.empty(arr.shape, dtype=np.uint8)
        rows = c if self.centroids == "channel" else 1

        def assign(g: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
            sums, counts = np.zeros((rows, self.n_symbols)), np.zeros((rows, self.n_symbols), dtype=np.int64)
            kernels.assign(arr, g[0], g[1], mu, sigma, self.bounds, self.centroids == "channel", symbols, sums, counts)
            return sums, counts

        parts = run_groups(assign, groups, self.threads)
        sums, counts = np.sum([p[0] for p in parts], axis=0), np.sum([p[1] for p in parts], axis=0)
        means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        return QuantizedLevel(symbols, mu, sigma, round_side(means, self.side_dtype, f"level {name} centroid"), counts)

    def symbols(self, features: FeatureSet) -> dict[str, np.ndarray]:
        """0-based symbols [C, H, W] of each coded level (what the bitstream must give back)."""
        return {k: self.quantize_level(k, features[k]).symbols for k in self._coded(features)}

    def reconstruct(self, features: FeatureSet) -> FeatureSet:
        """What ``decode(encode(features))`` returns, computed without coding."""
        out = {
            k: self._reconstruct(self.quantize_level(k, features[k])) if k in self.levels else features[k].float()
            for k in self._kept(features)
        }
        return features.replace(out)

    def _coded(self, features: FeatureSet) -> list[str]:
        missing = [k for k in self.levels if k not in features]
        if missing:
            raise CodecError(f"features lack levels {missing}; set pipeline.levels to a subset of {list(features)}")
        return [k for k in LEVELS if k in self.levels]

    def _kept(self, features: FeatureSet) -> list[str]:
        self._coded(features)
        return [k for k in LEVELS if k in features and (k in self.levels or k != "p6")]

    # the bitstream
    def encode(self, features: FeatureSet) -> bytes:
        """FeatureSet -> bytes (everything the decoder needs; see the module docstring)."""
        coded, kept = self._coded(features), self._kept(features)
        w = write_header("nsymbol", features, coded, [k for k in kept if k not in coded])
        for v in (
            self.n_symbols,
            SIDE_DTYPES.index(self.side_dtype),
            CENTROID_SCOPES.index(self.centroids),
            self.chunk_log2,
        ):
            w.uint(v)
        for name in coded:
            q = self.quantize_level(name, features[name])
            w.floats(q.mu, self.side_dtype)
            w.floats(q.sigma, self.side_dtype)
            level_symbols = encode_symbols(
                q.symbols,
                self.n_symbols,
                model=self.entropy_model,
                chunk_log2=self.chunk_log2,
                threads=self.threads,
                histogram=q.counts.sum(axis=0),
            )
            w.raw(level_symbols.payload)
            w.uint(int((q.counts > 0).sum()))
            w.floats(q.centroids[q.counts > 0], self.side_dtype)
        write_passthrough(w, features, [k for k in kept if k not in coded])
        return w.getvalue()

    def stream_stats(self, data: bytes) -> StreamStats:
        """Where the bytes of a stream went, read from its structure (no symbol is decoded)."""
        r, _, _, coded, passthrough, shapes = read_header(data, "nsymbol")
        n, side_dtype, _, chunk_log2 = self._read_settings(r)
        symbol_bytes, modes = 0, []
        for name in coded:
            r.floats(2 * shapes[name][0], side_dtype)
            start = r.position
            modes.append(read_payload(r, shapes[name], n, chunk_log2=chunk_log2).mode)
            symbol_bytes += r.position - start
            r.floats(r.uint(), side_dtype)
        read_passthrough(r, passthrough, shapes)
        r.done()
        values = sum(math.prod(s) for s in shapes.values())
        raw = representation_bits({k: shapes[k] for k in coded}, bits_per_symbol(n))
        return StreamStats(raw, 8 * symbol_bytes, 8 * (len(data) - symbol_bytes), values, ",".join(modes))

    def decode(self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES) -> FeatureSet:
        """Bytes from ``encode`` (untrusted) -> float32 FeatureSet (coded + pass-through levels).

        Args:
            data: the bitstream.
            max_pixels: the largest image or input size the header may name.
            max_memory: the most this decode may allocate (``DECODE_BYTES_PER_VALUE`` per coded value, 4 per
                pass-through value), estimated from the validated header before allocating.

        Raises:
            CodecError: the stream is truncated, has bytes left over, names sizes that disagree or exceed
                the limits, holds side information that is not finite, or its rANS coder does not end in
                its initial state with every word read.
        """
        coded, passthrough, image_size, input_size = self._read(
            data, values=True, max_pixels=max_pixels, max_memory=max_memory
        )
        levels = {k: torch.from_numpy(v) for k, v in coded.items()} | passthrough
        return FeatureSet(
            levels={k: levels[k] for k in LEVELS if k in levels}, image_size=image_size, input_size=input_size
        )

    def _reconstruct(self, q: QuantizedLevel) -> torch.Tensor:
        return q.reconstruct(channel_groups(q.symbols.shape, self.chunk_log2), self.threads)

    def decode_symbols(self, data: bytes) -> dict[str, np.ndarray]:
        """The 0-based symbols [C, H, W] of each coded level, as the decoder reads them."""
        return self._read(data, values=False)[0]

    def _read_settings(self, r: BitstreamReader) -> tuple[int, str, str, int]:
        """n_symbols, side dtype, centroid scope and chunk_log2 after the header, each checked against its range."""
        n = r.uint()
        if not 2 <= n <= MAX_SYMBOLS:
            raise CodecError(f"corrupt {self.name} bitstream: n_symbols={n} (2..{MAX_SYMBOLS})")
        side_dtype, scope = (
            pick_option(SIDE_DTYPES, r.uint(), self.name),
            pick_option(CENTROID_SCOPES, r.uint(), self.name),
        )
        chunk_log2 = r.uint()
        if not CHUNK_LOG2_RANGE[0] <= chunk_log2 <= CHUNK_LOG2_RANGE[1]:
            raise CodecError(
                f"corrupt {self.name} bitstream: chunk_log2={chunk_log2} ({CHUNK_LOG2_RANGE[0]}..{CHUNK_LOG2_RANGE[1]})"
            )
        return n, side_dtype, scope, chunk_log2

    def _side(self, r: BitstreamReader, count: int, side_dtype: str, what: str) -> np.ndarray:
        """``count`` side-information values as float64, refused unless finite (the encoder only writes finite ones)."""
        with np.errstate(invalid="ignore"):  # a signalling NaN in a corrupt stream: refused just below
            out = r.floats(count, side_dtype).astype(np.float64)
        if not np.isfinite(out).all():
            raise CodecError(f"corrupt {self.name} bitstream: {what} holds NaN or inf")
        return out

    def _read(
        self, data: bytes, *, values: bool, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES
    ) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor], tuple[int, int], tuple[int, int]]:
        """Each coded level's float32 values (``values``) or uint8 symbols, the pass-through levels, the sizes.

        A level's payload is read before it is decoded, and the centroid count K follows it: when
        every (channel, symbol) cell holds a value (K = cells, the usual case beyond tiny levels),
        the reconstruction table is known before the first symbol and the decoding loop writes the
        values itself (measured on a Cityscapes-size P2: 5.6 -> 4.6 ns per value for decoding,
        cell counts and reconstruction together). Otherwise the symbols are decoded first, their
        cells counted (K checked against them) and looked up.
        """
        r, image_size, input_size, coded, passthrough, shapes = read_header(data, "nsymbol", max_pixels=max_pixels)
        check_decode_memory(self.name, shapes, passthrough, DECODE_BYTES_PER_VALUE, max_memory)
        n, side_dtype, scope, chunk_log2 = self._read_settings(r)
        out: dict[str, np.ndarray] = {}
        for name in coded:
            shape = shapes[name]
            mu, sigma = (
                self._side(r, shape[0], side_dtype, f"{name} mean"),
                self._side(r, shape[0], side_dtype, f"{name} std"),
            )
            payload = read_payload(r, shape, n, chunk_log2=chunk_log2)
            sent, rows = r.uint(), (shape[0] if scope == "channel" else 1)
            if sent > rows * n:
                raise CodecError(
                    f"corrupt {self.name} bitstream: level {name} sends {sent} centroids of {rows * n} cells"
                )
            if values and sent == rows * n:
                centroids = self._side(r, sent, side_dtype, f"{name} centroids").reshape(rows, n)
                table = reconstruction_table(centroids, mu, sigma)
                out[name] = decode_payload(payload, shape, n, chunk_log2=chunk_log2, threads=self.threads, table=table)
                continue
            symbols = decode_payload(payload, shape, n, chunk_log2=chunk_log2, threads=self.threads)
            groups = channel_groups(shape, chunk_log2)
            counts = _cell_counts(symbols, n, scope, groups, self.threads)
            if sent != int((counts > 0).sum()):
                raise CodecError(
                    f"corrupt {self.name} bitstream: level {name} sends {sent} centroids, "
                    f"its symbols fill {int((counts > 0).sum())} cells"
                )
            centroids = np.zeros(counts.shape)
            centroids[counts > 0] = self._side(r, sent, side_dtype, f"{name} centroids")
            level = QuantizedLevel(symbols, mu, sigma, centroids, counts)
            out[name] = level.reconstruct(groups, self.threads).numpy() if values else symbols
        passthrough_levels = read_passthrough(r, passthrough, shapes)
        r.done()
        return out, passthrough_levels, image_size, input_size

    def report(self, features: FeatureSet, data: bytes) -> dict[str, Any]:
        """Per-image numbers recorded beside the real rate: the paper's raw bits and the byte split."""
        stats = self.stream_stats(data)
        return {
            "raw_bits": stats.raw_bits,
            "values": features.num_values(),
            "symbol_bits": stats.symbol_bits,
            "side_bits": stats.side_bits,
            "modes": stats.modes,
        }
