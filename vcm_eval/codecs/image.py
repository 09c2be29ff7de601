"""The image codec of pipeline 1 (MPEG VCM image anchor): RGB -> VVC intra -> RGB.

Bitstream = vcm_eval container: tag byte, original height and width (varints), then the raw VVC
stream with its length (a varint, so a truncated file is detected, not half-decoded). Odd sizes are padded to even by repeating the last row/column (4:2:0 needs even sizes;
VVenC pads further to its CTU grid itself and signals a conformance window), and the decoder crops
back to the original size it reads from the header. Every one of these bytes is in the rate.
"""

from __future__ import annotations

import numpy as np

from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.codecs.colour import rgb_to_yuv420, yuv420_to_rgb
from vcm_eval.codecs.ffmpeg_vvc import VvcCodec, check_qp
from vcm_eval.errors import CodecError


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """Repeat the last row/column so both sizes are even."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, h % 2), (0, w % 2)) + ((0, 0),) * (image.ndim - 2), mode="edge")


class VvcImageCodec:
    """``encode(image) -> bytes``, ``decode(bytes) -> image`` at a fixed QP.

    Args:
        vvc: the VVC encoder/decoder.
        qp: quantization parameter, 0..63.
    """

    codec_name = "image_vvc"

    def __init__(self, *, vvc: VvcCodec, qp: int) -> None:
        self.vvc = vvc
        self.qp = check_qp(qp)

    def encode(self, image: np.ndarray) -> bytes:
        """uint8 RGB [H, W, 3] -> bytes holding everything the decoder needs."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise CodecError(f"image codec takes uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        frame = rgb_to_yuv420(pad_to_even(image), self.vvc.ffmpeg)
        writer = BitstreamWriter(self.codec_name)
        writer.uint(h)
        writer.uint(w)
        writer.blob(self.vvc.encode(frame, self.qp))
        return writer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        reader = BitstreamReader(data, self.codec_name)
        h, w = reader.uint(), reader.uint()
        payload = reader.blob()
        reader.done()
        frame = self.vvc.decode(payload, h + h % 2, w + w % 2)
        return yuv420_to_rgb(frame, self.vvc.ffmpeg)[:h, :w]
