"""MPEG's feature anchor: FPN levels tiled into one 10-bit frame, coded as one VVC picture."""

from vcm_eval.codecs.feature_anchor.codec import FeatureVvcCodec

__all__ = ["FeatureVvcCodec"]
