"""Reference code the tests compare the compiled paths against (readable, slow, never used by vcm_eval).

``quantize`` / ``dequantize``: the feature anchor's 10-bit min-max quantization written with
torch, the form ``tiling.codes_frame`` / ``tiling.frame_values`` must equal bit for bit.
"""

from __future__ import annotations

import torch

from vcm_eval.vision.base import FeatureSet


def quantize(features: FeatureSet, ranges: dict[str, tuple[float, float]], *, bits: int = 10) -> FeatureSet:
    """Min-max quantization: x -> round((x - lo) / (hi - lo) * (2^bits - 1)), clipped to the range.

    A level with hi == lo (a constant tensor) maps to code 0 and is restored exactly as lo.

    Args:
        features: float levels [C, H, W].
        ranges: level -> (lo, hi), from ``minmax_ranges``.
        bits: code bit depth, 1..15.

    Returns:
        A FeatureSet of the same shapes holding int16 codes 0..2^bits - 1 (half the memory of
        float32 on a Cityscapes-size pyramid; the frame the codec sees is 16-bit anyway).
    """
    peak = float(2**bits - 1)
    out = {}
    for name, t in features.items():
        lo, hi = ranges[name]
        if hi > lo:
            out[name] = (t.float() - lo).mul_(peak / (hi - lo)).round_().clamp_(0.0, peak).to(torch.int16)
        else:
            out[name] = torch.zeros(t.shape, dtype=torch.int16)
    return features.replace(out)


def dequantize(codes: FeatureSet, ranges: dict[str, tuple[float, float]], *, bits: int = 10) -> FeatureSet:
    """Inverse of ``quantize``: code q -> lo + q * (hi - lo) / (2^bits - 1), float32."""
    peak = float(2**bits - 1)
    out = {}
    for name, q in codes.items():
        lo, hi = ranges[name]
        out[name] = (
            q.to(torch.float32, copy=True).mul_((hi - lo) / peak).add_(lo)
            if hi > lo
            else torch.full(q.shape, lo, dtype=torch.float32)
        )
    return codes.replace(out)
