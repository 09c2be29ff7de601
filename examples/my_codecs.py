"""Two small codecs written outside vcm_eval, as a researcher would (docs/your_codec.md).

* ``JpegCodec``: an image codec, Pillow's JPEG at ``quality`` (1..95).
* ``UniformZlibCodec``: a feature codec, P2..P5 each quantized uniformly to ``bits`` bits between
  its min and max, then zlib; P6 is left to the task model (rebuilt from P5).

Run them (from any folder, with this one on PYTHONPATH):

    python -m vcm_eval pipeline=image_codec +pipeline.codec._target_=my_codecs.JpegCodec +pipeline.codec.quality=30
    python -m vcm_eval pipeline=feature_codec +pipeline.codec._target_=my_codecs.UniformZlibCodec +pipeline.codec.bits=6
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import PIL
import torch
from PIL import Image

from vcm_eval.codecs.base import FeatureCodec, ImageCodec
from vcm_eval.vision.base import FeatureSet


class JpegCodec(ImageCodec):
    name = "jpeg"
    rate_params = ("quality",)  # moves a point along one curve

    def __init__(self, quality: int = 75) -> None:
        if not 1 <= quality <= 95:
            raise ValueError(f"quality={quality} must be 1..95")
        self.quality = quality

    def version(self) -> str:
        return f"Pillow {PIL.__version__} JPEG"

    def encode(self, image: np.ndarray) -> bytes:
        out = io.BytesIO()
        Image.fromarray(image).save(out, format="JPEG", quality=self.quality)
        return out.getvalue()  # the JPEG file holds its size: nothing else is needed

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))


class UniformZlibCodec(FeatureCodec):
    name = "uniform_zlib"
    rate_params = ("bits",)
    levels = ("p2", "p3", "p4", "p5")

    def __init__(self, bits: int = 8) -> None:
        if not 1 <= bits <= 8:
            raise ValueError(f"bits={bits} must be 1..8")
        self.bits = bits

    def version(self) -> str:
        return f"uniform-zlib/1 zlib {zlib.ZLIB_VERSION}"

    def encode(self, features: FeatureSet) -> bytes:
        head = struct.pack("<4H", *features.image_size, *features.input_size)
        body = b""
        for name in self.levels:
            x = features[name].numpy()
            lo, hi = float(x.min()), float(x.max())
            step = (hi - lo) / (2**self.bits - 1) or 1.0
            codes = np.rint((x - lo) / step).astype(np.uint8)
            body += struct.pack("<3Hff", *x.shape, lo, step) + codes.tobytes()
        return head + zlib.compress(body, 9)  # every byte the decoder needs: sizes, shapes, ranges, codes

    def decode(self, data: bytes) -> FeatureSet:
        ih, iw, nh, nw = struct.unpack_from("<4H", data)
        body, pos, levels = zlib.decompress(data[8:]), 0, {}
        for name in self.levels:
            c, h, w, lo, step = struct.unpack_from("<3Hff", body, pos)
            pos += struct.calcsize("<3Hff")
            codes = np.frombuffer(body, dtype=np.uint8, count=c * h * w, offset=pos).reshape(c, h, w)
            pos += c * h * w
            levels[name] = torch.from_numpy(codes * np.float32(step) + np.float32(lo))
        return FeatureSet(levels=levels, image_size=(ih, iw), input_size=(nh, nw))
