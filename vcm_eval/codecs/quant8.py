"""The paper's 8-bit features (Method A's comparison point): uniform 8-bit quantization per level.

Each coded level is quantized between its own min and max (sent as side information) to one byte
per value, without entropy coding: the stream is the paper's 8-bit data size (43,648 KB for a
Cityscapes image) plus a header and the min/max. Stream layout: ``vcm_eval.codecs.quant`` (method 1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vcm_eval.codecs.fpn_sizes import Shapes, representation_bits
from vcm_eval.codecs.quant import (
    SIDE_DTYPES,
    check_level,
    level_set,
    pick_option,
    read_header,
    read_passthrough,
    round_side,
    write_header,
    write_passthrough,
)
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.vision.base import LEVELS, FeatureSet


class Uniform8bitQuantizer:
    """The paper's 8-bit features: uniform 8-bit quantization of each level between its min and max.

    Every value is one byte (no entropy coding), so the stream is the paper's 8-bit data size plus a
    small header and the per-level min/max.

    Args:
        levels: the levels quantized (others as in ``NormalizedQuantizer``).
        side_dtype: ``float32`` or ``float16`` for each level's min and max.
    """

    def __init__(self, *, levels: str | tuple[str, ...] = LEVELS, side_dtype: str = "float32") -> None:
        if side_dtype not in SIDE_DTYPES:
            raise ConfigError(f"side_dtype={side_dtype!r} is unknown; valid: {list(SIDE_DTYPES)}")
        self.levels, self.side_dtype = level_set(levels), side_dtype

    def raw_bits(self, shapes: Shapes) -> int:
        return representation_bits({k: v for k, v in shapes.items() if k in self.levels}, 8)

    def _split(self, features: FeatureSet) -> tuple[list[str], list[str]]:
        missing = [k for k in self.levels if k not in features]
        if missing:
            raise CodecError(f"features lack levels {missing}; set pipeline.levels to a subset of {list(features)}")
        coded = [k for k in LEVELS if k in self.levels]
        return coded, [k for k in LEVELS if k in features and k not in self.levels and k != "p6"]

    def quantize_level(self, name: str, x: torch.Tensor) -> tuple[np.ndarray, float, float]:
        """-> (uint8 codes [C, H, W], min, max) with min/max as the decoder reads them."""
        arr = check_level(name, x)
        lo, hi = round_side(np.array([arr.min(), arr.max()]), self.side_dtype, f"level {name} min/max")
        scale = (hi - lo) / 255 if hi > lo else 1.0
        codes = np.clip(np.rint((arr - lo) / scale), 0, 255).astype(np.uint8)
        return codes, float(lo), float(hi)

    @staticmethod
    def dequantize(codes: np.ndarray, lo: float, hi: float) -> torch.Tensor:
        scale = (hi - lo) / 255 if hi > lo else 0.0
        return torch.from_numpy((codes * scale + lo).astype(np.float32))

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

    def decode(self, data: bytes) -> FeatureSet:
        r, image_size, input_size, coded, passthrough, shapes = read_header(data, "uniform8")
        side_dtype = pick_option(SIDE_DTYPES, r.uint())
        levels: dict[str, torch.Tensor] = {}
        for name in coded:
            lo, hi = (float(v) for v in r.floats(2, side_dtype))
            raw = r.blob()
            if len(raw) != math.prod(shapes[name]):
                raise CodecError(f"corrupt quant8 stream: level {name} has {len(raw)} bytes, expected {math.prod(shapes[name])}")
            levels[name] = self.dequantize(np.frombuffer(raw, dtype=np.uint8).reshape(shapes[name]), lo, hi)
        levels.update(read_passthrough(r, passthrough, shapes))
        r.done()
        return FeatureSet(levels={k: levels[k] for k in LEVELS if k in levels}, image_size=image_size, input_size=input_size)

    def report(self, features: FeatureSet, data: bytes) -> dict[str, Any]:
        return {"raw_bits": self.raw_bits(features.shapes()), "values": features.num_values()}
