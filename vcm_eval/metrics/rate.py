"""Rate of a run from its records: bits per pixel of the ORIGINAL images, from real bytes.

``bpp`` = total bits / total pixels over the evaluated images (equal to the mean per-image bpp
when all images have one size, as in Cityscapes and the synthetic default); ``bpp_mean`` = the
mean of per-image bpp, reported beside it for datasets of mixed sizes (COCO).

``header_bytes_per_image``: the container bytes a codec records beside its rate (the image anchor,
whose rate is the VVC bitstream alone as MPEG counts it; the feature anchor, whose rate counts
them too).

``feature_ratio_pct`` (feature pipelines): the learned-codec papers' measure, coded bits / the
float32 bits of the uncompressed P2..P5 (``p2_p5_values`` the pipeline records per image), in %.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rate_summary(records: list[dict[str, Any]]) -> dict[str, float]:
    """bpp, bpp_mean, kbytes per image and the mean codec/task seconds of a run's records."""
    if not records:
        return {}
    bits = np.array([r["bits"] for r in records], dtype=np.float64)
    pixels = np.array([r["pixels"] for r in records], dtype=np.float64)
    if not bits.any():  # the uncompressed reference codes nothing: it has no rate
        return {
            "bpp": float("nan"),
            **{k: float(np.mean([r[k] for r in records])) for k in ("encode_s", "decode_s", "task_s")},
        }
    out = {
        "bpp": float(bits.sum() / pixels.sum()),
        "bpp_mean": float(np.mean(bits / pixels)),
        "kbytes_per_image": float(bits.mean() / 8 / 1000),
    }
    if all("header_bytes" in r for r in records):  # bytes a codec's container holds beside the counted rate
        out["header_bytes_per_image"] = float(np.mean([r["header_bytes"] for r in records]))
    if all("p2_p5_values" in r for r in records):
        out["feature_ratio_pct"] = float(100.0 * bits.sum() / (32.0 * sum(r["p2_p5_values"] for r in records)))
    for key in ("encode_s", "decode_s", "task_s"):
        out[key] = float(np.mean([r[key] for r in records]))
    return out
