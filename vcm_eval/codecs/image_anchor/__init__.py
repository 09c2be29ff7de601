"""MPEG's image anchor: the image as one VVC intra picture, through MPEG's colour path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vcm_eval.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from vcm_eval.codecs.image_anchor.codec import VvcImageCodec

__all__ = ["VvcImageCodec"]
__getattr__ = lazy_exports(__name__, {"VvcImageCodec": "vcm_eval.codecs.image_anchor.codec"})
