"""MPEG's feature anchor: FPN levels tiled into one 10-bit frame, coded as one VVC picture."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vcm_eval.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from vcm_eval.codecs.feature_anchor.codec import FeatureVvcCodec

__all__ = ["FeatureVvcCodec"]
__getattr__ = lazy_exports(__name__, {"FeatureVvcCodec": "vcm_eval.codecs.feature_anchor.codec"})
