"""MPEG's image anchor: the image as one VVC intra picture, through MPEG's colour path."""

from vcm_eval.codecs.image_anchor.codec import VvcImageCodec

__all__ = ["VvcImageCodec"]
