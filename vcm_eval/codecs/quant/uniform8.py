"""The paper's 8-bit features (Method A's comparison point): uniform 8-bit quantization per level.

Each coded level is quantized between its own min and max (sent as side information) to one byte
per value, without entropy coding: the stream is the paper's 8-bit data size (43,648 KB for a
Cityscapes image) plus a header and the min/max. Stream layout:
``vcm_eval.codecs.quant.nsymbol`` (method 1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from vcm_eval.codecs.base import MAX_DECODE_BYTES, MAX_PIXELS, FeatureCodec
from vcm_eval.codecs.minmax import combine_ranges, min_max
from vcm_eval.codecs.quant import kernels
from vcm_eval.codecs.quant.config import SideDtype
from vcm_eval.codecs.quant.entropy import channel_groups, run_groups
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
from vcm_eval.errors import CodecError
from vcm_eval.utils.choices import choice
from vcm_eval.utils.components import Runtime
from vcm_eval.vision.base import LEVELS, FeatureSet
from vcm_eval.vision.levels import parse_levels


class Uniform8bitQuantizer(FeatureCodec):
    """The paper's 8-bit features: uniform 8-bit quantization of each level between its min and max.

    Every value is one byte (no entropy coding), so the stream is the paper's 8-bit data size plus a
    small header and the per-level min/max.

    Args:
        levels: the levels quantized (others as in ``NormalizedQuantizer``).
        side_dtype: ``float32`` or ``float16`` for each level's min and max.
        threads: channel groups processed at once (compiled loops in a thread pool; same bytes for any count).
    """

    name = "quant8"
    revision_area = "quant"  # its code's revision is in the run key (vcm_eval.revisions)

    def __init__(
        self, *, levels: str | tuple[str, ...] = LEVELS, side_dtype: str = "float32", threads: int = 1
    ) -> None:
        side_dtype = str(choice(SideDtype, side_dtype, "side_dtype"))
        self.levels, self.side_dtype, self.threads = parse_levels(levels), side_dtype, max(1, int(threads))

    @classmethod
    def from_config(cls, cfg: DictConfig, runtime: Runtime) -> Uniform8bitQuantizer:
        """The ``pipeline`` group's levels and side dtype; ``runtime.threads`` channel groups at once."""
        return cls(levels=cfg.pipeline.levels, side_dtype=cfg.pipeline.side_dtype, threads=runtime.threads)

    def version(self) -> str:
        return stream_format_version()

    def raw_bits(self, shapes: Shapes) -> int:
        return representation_bits({k: v for k, v in shapes.items() if k in self.levels}, 8)

    def _split(self, features: FeatureSet) -> tuple[list[str], list[str]]:
        missing = [k for k in self.levels if k not in features]
        if missing:
            raise CodecError(f"features lack levels {missing}; set pipeline.levels to a subset of {list(features)}")
        coded = [k for k in LEVELS if k in self.levels]
        return coded, [k for k in LEVELS if k in features and k not in self.levels and k != "p6"]

    def quantize_level(self, name: str, x: torch.Tensor) -> tuple[np.ndarray, float, float]:
        """-> (uint8 codes [C, H, W], min, max) with min/max as the decoder reads them (two compiled passes)."""
        arr = level_array(name, x)
        groups = channel_groups(arr.shape, DEFAULT_CHUNK_LOG2)
        found = combine_ranges(name, run_groups(lambda g: min_max(arr, g[0], g[1]), groups, self.threads))
        lo, hi = round_side(np.array(found), self.side_dtype, f"level {name} min/max")
        scale = (hi - lo) / 255 if hi > lo else 1.0
        codes = np.empty(arr.shape, dtype=np.uint8)
        run_groups(lambda g: kernels.uniform_codes(arr, g[0], g[1], lo, scale, 256, codes), groups, self.threads)
        return codes, float(lo), float(hi)

    def dequantize(self, codes: np.ndarray, lo: float, hi: float) -> torch.Tensor:
        """codes * step + min (float64, then float32), via a 256-entry table and one compiled pass."""
        scale = (hi - lo) / 255 if hi > lo else 0.0
        table = np.ascontiguousarray(
            np.broadcast_to((np.arange(256) * scale + lo).astype(np.float32), (codes.shape[0], 256))
        )
        out = np.empty(codes.shape, dtype=np.float32)
        run_groups(
            lambda g: kernels.lookup(codes, g[0], g[1], table, out),
            channel_groups(codes.shape, DEFAULT_CHUNK_LOG2),
            self.threads,
        )
        return torch.from_numpy(out)

    def encode(self, features: FeatureSet) -> bytes:
        coded, passthrough = self._split(features)
        w = write_header("uniform8", features, coded, passthrough)
        w.uint(SIDE_DTYPES.index(self.side_dtype))
        for name in coded:
            codes, lo, hi = self.quantize_level(name, features[name])
            w.floats(np.array([lo, hi]), self.side_dtype)
            w.blob(codes.tobytes())
        write_passthrough(w, features, passthrough)
        return w.getvalue()

    def decode(self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES) -> FeatureSet:
        """Bytes from ``encode`` (untrusted) -> float32 FeatureSet of the coded and pass-through levels.

        Args:
            data: the bitstream.
            max_pixels: the largest image or input size the header may name.
            max_memory: the most this decode may allocate (1 byte of codes + 4 of output per coded value,
                4 per pass-through value), estimated from the validated header before allocating.

        Raises:
            CodecError: the stream is truncated, has bytes left over, names sizes that disagree or exceed
                the limits, or holds a min/max that is not finite.
        """
        r, image_size, input_size, coded, passthrough, shapes = read_header(data, "uniform8", max_pixels=max_pixels)
        check_decode_memory(self.name, shapes, passthrough, 5, max_memory)
        side_dtype = pick_option(SIDE_DTYPES, r.uint(), self.name)
        levels: dict[str, torch.Tensor] = {}
        for name in coded:
            lo, hi = (float(v) for v in r.floats(2, side_dtype))
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise CodecError(f"corrupt {self.name} bitstream: level {name} has range [{lo}, {hi}]")
            raw = r.blob()
            if len(raw) != math.prod(shapes[name]):
                raise CodecError(
                    f"corrupt {self.name} bitstream: level {name} has {len(raw)} bytes, "
                    f"expected {math.prod(shapes[name])}"
                )
            levels[name] = self.dequantize(np.frombuffer(raw, dtype=np.uint8).reshape(shapes[name]), lo, hi)
        levels.update(read_passthrough(r, passthrough, shapes))
        r.done()
        return FeatureSet(
            levels={k: levels[k] for k in LEVELS if k in levels}, image_size=image_size, input_size=input_size
        )

    def report(self, features: FeatureSet, data: bytes) -> dict[str, Any]:
        return {"raw_bits": self.raw_bits(features.shapes()), "values": features.num_values()}
