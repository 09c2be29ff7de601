"""The codecs vcm_eval evaluates, one family per subpackage, and the contract every codec follows.

Public contract (what a researcher's own codec needs; docs/your_codec.md):

* ``ImageCodec`` / ``FeatureCodec`` (``codecs.base``): ``encode`` -> bytes, ``decode`` -> the input;
* ``FeatureSet`` (from ``vcm_eval.vision.base``): what a feature codec codes;
* ``CodecError``: what a decoder raises for a stream it cannot read;
* ``BitstreamWriter`` / ``BitstreamReader`` (``codecs.bitstream``): a length-checked container.

Families: ``vvc`` (the VVC encoders, colour path, shipped VTM streams), ``image_anchor``,
``feature_anchor`` (tiling into one 10-bit frame), ``quant`` (the 2-bit method and the 8-bit
point), ``fusion`` (the learned multi-scale codec). ``minmax`` holds the min-max ranges the
feature anchor and the 8-bit point share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vcm_eval.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from vcm_eval.codecs.base import Codec, FeatureCodec, ImageCodec
    from vcm_eval.errors import CodecError
    from vcm_eval.vision.base import FeatureSet

__all__ = ["Codec", "CodecError", "FeatureCodec", "FeatureSet", "ImageCodec"]
# Loaded on first use: importing a family's config schema (``codecs.fusion.config``) must not load
# torch with the contract.
__getattr__ = lazy_exports(
    __name__,
    {
        "Codec": "vcm_eval.codecs.base",
        "ImageCodec": "vcm_eval.codecs.base",
        "FeatureCodec": "vcm_eval.codecs.base",
        "CodecError": "vcm_eval.errors",
        "FeatureSet": "vcm_eval.vision.base",
    },
)
