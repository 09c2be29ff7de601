"""Two small codecs written outside vcm_eval, as a researcher would (docs/your_codec.md).

* ``JpegCodec``: an image codec, Pillow's JPEG at ``quality`` (1..95).
* ``UniformZlibCodec``: a feature codec, P2..P5 each quantized uniformly to ``bits`` bits between
  its min and max, then zlib; P6 is left to the task model (rebuilt from P5).

A bitstream is untrusted input: both decoders refuse (``CodecError``) a stream that is truncated, has
bytes left over or names sizes beyond ``max_pixels``, before decoding it (docs/architecture.md,
"Threat model"). The feature codec writes vcm_eval's length-checked container
(``vcm_eval.codecs.bitstream``); a JPEG file is its own.

Run them (from any folder, with this one on PYTHONPATH):

    python -m vcm_eval pipeline=image_codec +pipeline.codec._target_=my_codecs.JpegCodec +pipeline.codec.quality=30
    python -m vcm_eval pipeline=feature_codec +pipeline.codec._target_=my_codecs.UniformZlibCodec +pipeline.codec.bits=6
"""

from __future__ import annotations

import io
import math
import zlib

import numpy as np
import PIL
import torch
from PIL import Image

from vcm_eval.codecs.base import (
    MAX_DECODE_BYTES,
    MAX_PIXELS,
    FeatureCodec,
    ImageCodec,
    check_feature_header,
    check_memory,
    check_picture_size,
)
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.errors import CodecError
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

    def decode(self, data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
        if not (data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")):  # SOI ... EOI: the whole file
            raise CodecError(f"corrupt {self.name} bitstream: not a whole JPEG file ({len(data)} bytes)")
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:
                check_picture_size(self.name, "image size", (img.height, img.width), max_pixels)  # before decoding
                return np.asarray(img.convert("RGB"))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise CodecError(f"corrupt {self.name} bitstream: Pillow cannot decode it ({exc})") from exc


class UniformZlibCodec(FeatureCodec):
    name = "uniform_zlib"
    rate_params = ("bits",)
    levels = ("p2", "p3", "p4", "p5")
    format = 2  # 1: a struct header and the shapes inside the zlib body (read before anything was checked)

    def __init__(self, bits: int = 8) -> None:
        if not 1 <= bits <= 8:
            raise ValueError(f"bits={bits} must be 1..8")
        self.bits = bits

    def version(self) -> str:
        return f"uniform-zlib/{self.format} zlib {zlib.ZLIB_VERSION}"

    def encode(self, features: FeatureSet) -> bytes:
        w = BitstreamWriter("user", version=self.format)
        for size in (*features.image_size, *features.input_size):
            w.uint(size)
        body = b""
        for name in self.levels:
            x = features[name].numpy()
            lo, hi = float(x.min()), float(x.max())
            step = (hi - lo) / (2**self.bits - 1) or 1.0
            for size in x.shape:
                w.uint(size)
            w.floats(np.array([lo, step]))
            body += np.rint((x - lo) / step).astype(np.uint8).tobytes()
        w.blob(zlib.compress(body, 9))  # every byte the decoder needs: sizes, shapes, ranges, codes
        return w.getvalue()

    def decode(self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES) -> FeatureSet:
        with BitstreamReader(data, "user", name=self.name, version=self.format) as r:  # leaving it checks the end
            image_size, input_size = (r.uint(), r.uint()), (r.uint(), r.uint())
            shapes, ranges = {}, {}
            for name in self.levels:
                shapes[name] = (r.uint(), r.uint(), r.uint())
                ranges[name] = r.floats(2)
            packed = r.blob()
        # the sizes agree and stay within the limits before anything is allocated from them
        check_feature_header(self.name, image_size, input_size, shapes, max_pixels=max_pixels)
        size = sum(math.prod(s) for s in shapes.values())
        check_memory(self.name, 5 * size, max_memory)  # the codes and their float32 values
        with np.errstate(all="ignore"):  # NaN, inf, or a largest value (lo + 255 step) beyond float32
            if not all(np.isfinite(lo + np.float32(255) * step) for lo, step in ranges.values()):
                raise CodecError(f"corrupt {self.name} bitstream: a level range is not finite")
        inflate = zlib.decompressobj()
        try:  # at most the bytes the shapes hold (no zip bomb), then the end of the zlib stream (its checksum)
            body = inflate.decompress(packed, size)
            body += inflate.decompress(inflate.unconsumed_tail, 1)
        except zlib.error as exc:
            raise CodecError(f"corrupt {self.name} bitstream: {exc}") from exc
        if len(body) != size or not inflate.eof or inflate.unused_data:
            raise CodecError(f"corrupt {self.name} bitstream: the codes hold {len(body)} bytes (or more), not {size}")
        levels, pos = {}, 0
        for name in self.levels:
            (c, h, w), (lo, step) = shapes[name], ranges[name]
            codes = np.frombuffer(body, dtype=np.uint8, count=c * h * w, offset=pos).reshape(c, h, w)
            pos += c * h * w
            levels[name] = torch.from_numpy(codes * np.float32(step) + np.float32(lo))
        return FeatureSet(levels=levels, image_size=image_size, input_size=input_size)
