"""The image anchor's codec (MPEG VCM image anchor): RGB -> VVC intra -> RGB.

Bitstream = vcm_eval container: tag byte, original height and width (varints), then the raw VVC
stream with its length (a varint, so a truncated file is detected, not half-decoded). Odd sizes
are padded to even as the colour path prescribes (``vcm_eval.codecs.vvc.colour``; 4:2:0 needs even
sizes, the encoder pads further to its CU grid itself and signals a conformance window), and the
decoder crops back to the original size it reads from the header. Every one of these bytes is in
the rate.

With the ``vtm`` backend and a folder of shipped bitstreams (``vvc.shipped``), a picture whose
stream was shipped for this QP, colour path and VTM setting is not encoded again: the shipped
stream (md5 checked) is the bitstream, exactly as if VTM had just written it.
"""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from vcm_eval.codecs.base import MAX_DECODE_BYTES, MAX_PIXELS, ImageCodec, check_memory, check_picture_size
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.codecs.vvc.colour import check_colour, pad_to_even, rgb_to_yuv420, yuv420_to_rgb
from vcm_eval.codecs.vvc.colour import colour_ffmpeg as colour_ffmpeg_binary
from vcm_eval.codecs.vvc.encoder import VvcEncoder, check_qp
from vcm_eval.codecs.vvc.external import ffmpeg_capabilities
from vcm_eval.codecs.vvc.shipped import ShippedBitstreams
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.utils.components import Runtime
from vcm_eval.utils.digest import image_digest

# Bytes a decode allocates per pixel: FFmpeg's 10-bit 4:2:0 picture (3), held twice while its pipe is
# read and joined, the colour conversion's input and 8-bit RGB output (3 + 3, the output twice), the crop.
BYTES_PER_PIXEL = 16

# The container around the VVC stream: height, width, the stream (the tag byte's low nibble; another is refused).
FORMAT_VERSION = 1


class VvcImageCodec(ImageCodec):
    """``encode(image) -> bytes``, ``decode(bytes) -> image`` at a fixed QP.

    Args:
        vvc: the VVC encoder/decoder.
        qp: the coded slice QP, 0..63.
        colour: ``mpeg`` (MPEG's anchor scripts) or ``bt709_limited``.
        shipped: shipped VTM bitstreams to use instead of encoding (``vtm`` backend only).
        colour_ffmpeg: the FFmpeg of the colour conversion ("" = ``colour.colour_ffmpeg``'s choice).
    """

    codec_name = "image_vvc"  # the container tag
    name = "image_anchor"
    revision_area = "image_anchor"  # its code's revision is in the run key (vcm_eval.revisions)
    rate_params = ("qp",)
    reads = ("vvc",)

    def __init__(
        self,
        *,
        vvc: VvcEncoder,
        qp: int,
        colour: str = "mpeg",
        shipped: ShippedBitstreams | None = None,
        colour_ffmpeg: str = "",
    ) -> None:
        self.vvc, self.qp, self.colour = vvc, check_qp(qp), check_colour(colour)
        self.colour_exe = colour_ffmpeg_binary(colour_ffmpeg, colour, vvc.ffmpeg)
        self.shipped = shipped if vvc.vtm is not None and shipped is not None and len(shipped) else None
        if vvc.can_encode:
            self.encoder = vvc.version()
        elif self.shipped is not None:
            self.encoder = self.shipped.only_encoder(colour)
        else:
            raise ConfigError(
                "vvc.backend=vtm needs vvc.vtm_encoder (and vvc.vtm_cfg), or shipped bitstreams in vvc.shipped"
            )

    @classmethod
    def from_config(cls, cfg: DictConfig, runtime: Runtime) -> VvcImageCodec:
        """``pipeline.qp`` with the ``vvc`` group's encoder, colour path and shipped VTM streams."""
        shipped = ShippedBitstreams(cfg.vvc.shipped) if cfg.vvc.backend == "vtm" else None
        vvc = VvcEncoder.from_settings(cfg.vvc)
        return cls(
            vvc=vvc, qp=cfg.pipeline.qp, colour=cfg.vvc.colour, shipped=shipped, colour_ffmpeg=cfg.vvc.colour_ffmpeg
        )

    def version(self) -> str:
        """The encoder setting, colour path and the FFmpeg converting it (part of the run key)."""
        return f"{self.encoder} colour:{self.colour} ({ffmpeg_capabilities(self.colour_exe)[0]})"

    def tool_versions(self) -> dict[str, str]:
        return self.vvc.tool_versions() if self.vvc.can_encode else {}

    def vvc_stream(self, image: np.ndarray) -> bytes:
        """The raw VVC stream of ``image`` (shipped if one fits, else encoded now)."""
        if self.shipped is not None:
            found = self.shipped.get(image_digest(image), self.qp, self.colour, self.encoder)
            if found is not None:
                return self.shipped.read(found)
        return self.vvc.encode(rgb_to_yuv420(pad_to_even(image, self.colour), self.colour_exe, self.colour), self.qp)

    def encode(self, image: np.ndarray) -> bytes:
        """uint8 RGB [H, W, 3] -> bytes holding everything the decoder needs."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise CodecError(f"image codec takes uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        writer = BitstreamWriter(self.codec_name, version=FORMAT_VERSION)
        writer.uint(h)
        writer.uint(w)
        writer.blob(self.vvc_stream(image))
        return writer.getvalue()

    def rate_bytes(self, data: bytes) -> int:
        """The VVC bitstream alone, as MPEG counts its anchor's rate (the container's sizes are not in it)."""
        reader = BitstreamReader(data, self.codec_name, version=FORMAT_VERSION)
        reader.uint(), reader.uint()
        return len(reader.blob())

    def decode(self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES) -> np.ndarray:
        """Bytes from ``encode`` (untrusted) -> uint8 RGB [H, W, 3] of the size in the header.

        Args:
            data: the bitstream.
            max_pixels: the largest image the header may name.
            max_memory: the most this decode may allocate (``BYTES_PER_PIXEL`` per pixel), estimated
                from the validated header before FFmpeg runs.

        Raises:
            CodecError: the stream is truncated, has bytes left over, names a size beyond the limits,
                or FFmpeg cannot decode the VVC payload into a picture of that size. (A payload altered
                into another valid picture decodes: VVC streams carry no checksum here.)
        """
        with BitstreamReader(data, self.codec_name, name=self.name, version=FORMAT_VERSION) as reader:
            h, w = check_picture_size(self.name, "image size", (reader.uint(), reader.uint()), max_pixels)
            payload = reader.blob()
        check_memory(self.name, BYTES_PER_PIXEL * (h + 1) * (w + 1), max_memory, what=f"a {w}x{h} picture")
        frame = self.vvc.decode(payload, h + h % 2, w + w % 2)
        return yuv420_to_rgb(frame, self.colour_exe, self.colour)[:h, :w]
