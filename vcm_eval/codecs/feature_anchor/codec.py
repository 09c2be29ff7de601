"""The feature anchor's codec (MPEG VCM pipeline 2 reference): FPN levels -> one 10-bit VVC picture.

encode: keep the coded levels -> min-max range (per tensor or per level) -> 10-bit codes ->
tile into one frame (``vcm_eval.codecs.feature_anchor.tiling``; fill 512) -> one VVC intra picture, 4:0:0 or
4:2:0 with neutral chroma -> container bytes. decode: the reverse, ending in a FeatureSet that
``TaskModel.predict_from_features`` takes (it rebuilds P6 from P5 when only ``p2-p5`` is coded).

Container (``vcm_eval.codecs.bitstream``, codec id ``feature_vvc``, version 1); every byte is in
the rate, and the decoder needs nothing else:

    varint  image height, image width          original image (the detector maps boxes to it)
    varint  input height, input width          network input after resizing
    varint  flags                              bit 0: minmax (0 tensor, 1 level)
                                               bit 1: chroma (0 = 4:2:0, 1 = 4:0:0)
    varint  L, then per level: index (0 = p2 .. 4 = p6), C, H, W
    float32 lo, hi                             one pair (tensor) or L pairs (level), little-endian
    blob    varint length + the raw VVC Annex-B stream

The frame layout is not sent: ``tiling.plan_layout`` rebuilds it from the shapes. The code depth
is fixed at 10 bits in version 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from vcm_eval.codecs.base import MAX_DECODE_BYTES, MAX_PIXELS, FeatureCodec, check_feature_header, check_memory
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.codecs.feature_anchor.config import AnchorLevels, MinMax
from vcm_eval.codecs.feature_anchor.tiling import (
    MINMAX_MODES,
    Layout,
    codes_frame,
    frame_values,
    minmax_ranges,
    plan_layout,
)
from vcm_eval.codecs.vvc.encoder import VvcEncoder, check_chroma, check_qp
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.utils.choices import choice
from vcm_eval.utils.components import Runtime
from vcm_eval.vision.base import LEVELS, FeatureSet
from vcm_eval.vision.levels import parse_levels

BITS = 10
FILL = 512  # frame samples that hold no feature: mid grey, the cheapest flat block to code
# Bytes a decode allocates per frame sample: FFmpeg's 10-bit output (2 bytes luma, 1 more of chroma
# for 4:2:0), held twice while the pipe is read and joined.
FRAME_BYTES_PER_SAMPLE = 6

# The container around the tiled frame's VVC stream and its header (the tag byte's low nibble; another is refused).
FORMAT_VERSION = 1


def anchor_levels(levels: str) -> tuple[str, ...]:
    """The level names of ``levels`` (``p2-p5``: P6 is rebuilt at the decoder from decoded P5)."""
    return parse_levels(str(choice(AnchorLevels, levels.replace(" ", ""), "levels")))


ANCHOR_LEVEL_SETS = tuple(anchor_levels(v) for v in AnchorLevels.values())  # what a stream may hold


@dataclass(frozen=True)
class FrameFormat:
    """What a tiled feature frame's container says about it (the image and the video containers alike)."""

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    minmax: str
    chroma: str
    shapes: dict[str, tuple[int, int, int]]

    def layout(self) -> Layout:
        return plan_layout(self.shapes, image_size=self.image_size, input_size=self.input_size)

    def checked_layout(self, name: str, max_memory: int) -> Layout:
        """The frame's layout, once one frame's decode fits ``max_memory``: the frame FFmpeg returns (read twice)
        and the float32 values.

        Raises:
            CodecError: the estimate is above ``max_memory`` (``name`` says which stream).
        """
        layout = self.layout()
        values = sum(c * h * w for c, h, w in self.shapes.values())
        need = FRAME_BYTES_PER_SAMPLE * layout.height * layout.width + 4 * values
        check_memory(name, need, max_memory, what=f"a {layout.width}x{layout.height} frame")
        return layout


def write_frame_format(w: BitstreamWriter, layout: Layout, minmax: str, chroma: str) -> None:
    """Sizes, flags (min-max mode, chroma) and each coded level's index and shape, as varints."""
    for size in (*layout.image_size, *layout.input_size):
        w.uint(size)
    w.uint((minmax == "level") | ((chroma == "400") << 1))
    w.uint(len(layout.levels))
    for t in layout.levels:
        for value in (LEVELS.index(t.name), t.channels, t.height, t.width):
            w.uint(value)


def read_frame_format(r: BitstreamReader, name: str, *, max_pixels: int) -> FrameFormat:
    """``write_frame_format``'s fields, each validated before anything is sized from it.

    Raises:
        CodecError: unknown flags, too many, unknown or unordered levels, a level set the anchor does not
            code, or sizes that disagree or exceed ``max_pixels`` (``name`` says which stream).
    """
    image_size, input_size = (r.uint(), r.uint()), (r.uint(), r.uint())
    check_feature_header(name, image_size, input_size, max_pixels=max_pixels)
    flags = r.uint()
    if flags > 3:
        raise CodecError(f"corrupt {name} bitstream: flags {flags} (only bits 0-1 are defined)")
    count = r.uint()
    if count > len(LEVELS):
        raise CodecError(f"corrupt {name} bitstream: {count} levels (at most {len(LEVELS)})")
    shapes: dict[str, tuple[int, int, int]] = {}
    for _ in range(count):
        idx, c, h, w = r.uint(), r.uint(), r.uint(), r.uint()
        if idx >= len(LEVELS) or (shapes and LEVELS.index(list(shapes)[-1]) >= idx):
            raise CodecError(f"corrupt {name} bitstream: level index {idx} is unknown or out of order")
        shapes[LEVELS[idx]] = (c, h, w)
    if tuple(shapes) not in ANCHOR_LEVEL_SETS:
        raise CodecError(f"corrupt {name} bitstream: levels {list(shapes)}; the anchor codes {ANCHOR_LEVEL_SETS}")
    check_feature_header(name, image_size, input_size, shapes, max_pixels=max_pixels)
    return FrameFormat(image_size, input_size, MINMAX_MODES[flags & 1], "400" if flags & 2 else "420", shapes)


@dataclass(frozen=True)
class _Header(FrameFormat):
    ranges: dict[str, tuple[float, float]]


class FeatureVvcCodec(FeatureCodec):
    """``encode(FeatureSet) -> bytes``, ``decode(bytes) -> FeatureSet`` at a fixed QP.

    Args:
        vvc: the VVC encoder/decoder.
        qp: VVC quantization parameter, 0..63.
        levels: ``p2-p5`` (P6 rebuilt by the task model) or ``p2-p6`` (all five levels coded).
        minmax: ``tensor`` (one range for all coded levels) or ``level`` (one range per level).
        chroma: ``400`` (monochrome stream) or ``420`` (neutral chroma planes coded too).
    """

    codec_name = "feature_vvc"  # the container tag
    name = "feature_anchor"
    revision_area = "feature_anchor"  # its code's revision is in the run key (vcm_eval.revisions)
    rate_params = ("qp",)
    reads = ("vvc",)

    def __init__(
        self, *, vvc: VvcEncoder, qp: int, levels: str = "p2-p5", minmax: str = "tensor", chroma: str = "400"
    ) -> None:
        self.vvc, self.qp, self.levels = vvc, check_qp(qp), anchor_levels(levels)
        self.minmax, self.chroma = str(choice(MinMax, minmax, "minmax")), check_chroma(chroma)

    @classmethod
    def from_config(cls, cfg: DictConfig, runtime: Runtime) -> FeatureVvcCodec:
        """``pipeline.qp``, ``levels``, ``minmax``, ``chroma`` with the ``vvc`` group's encoder."""
        vvc = VvcEncoder.from_settings(cfg.vvc)
        if not vvc.can_encode:
            raise ConfigError(
                "the feature anchor with vvc.backend=vtm needs vvc.vtm_encoder and vvc.vtm_cfg "
                "(no feature bitstreams are shipped)"
            )
        p = cfg.pipeline
        return cls(vvc=vvc, qp=p.qp, levels=str(p.levels), minmax=p.minmax, chroma=str(p.chroma))

    def version(self) -> str:
        """The VVC encoder that makes the picture (part of the run key)."""
        return self.vvc.version()

    def tool_versions(self) -> dict[str, str]:
        return self.vvc.tool_versions()

    def encode(self, features: FeatureSet) -> bytes:
        """Float32 levels [C, H, W] -> bytes holding everything the decoder needs.

        Raises:
            CodecError: a coded level is missing, or a value is NaN/inf.
        """
        _, ranges, frame, layout = self.frame(features)
        payload = self.vvc.encode(Yuv420.from_luma(frame), self.qp, chroma=self.chroma)
        del frame
        w = BitstreamWriter(self.codec_name, version=FORMAT_VERSION)
        write_frame_format(w, layout, self.minmax, self.chroma)
        pairs = [ranges[t.name] for t in layout.levels] if self.minmax == "level" else [ranges[self.levels[0]]]
        w.floats(np.asarray(pairs, dtype=np.float32).ravel())
        w.blob(payload)
        return w.getvalue()

    def frame(self, features: FeatureSet) -> tuple[FeatureSet, dict[str, tuple[float, float]], np.ndarray, Layout]:
        """The coded levels, their min-max ranges, and the 10-bit uint16 frame VVC codes (and its layout).

        Min-max, codes and tiling in two compiled passes (``tiling.minmax_ranges``, ``tiling.codes_frame``).
        """
        missing = [lv for lv in self.levels if lv not in features]
        if missing:
            raise CodecError(
                f"features lack levels {missing} that pipeline.levels codes; "
                f"the task model must give {list(self.levels)}"
            )
        coded = features.replace({lv: features[lv] for lv in self.levels})
        ranges = minmax_ranges(coded, self.minmax)
        frame, layout = codes_frame(coded, ranges, bits=BITS, fill=FILL)
        return coded, ranges, frame, layout

    def decoded_frame(
        self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES
    ) -> np.ndarray:
        """The decoded 10-bit frame of a bitstream (before un-tiling), e.g. for its PSNR."""
        header, payload = self._parse(data, max_pixels=max_pixels, max_memory=max_memory)
        return self._frame(header, payload)

    def _frame(self, header: _Header, payload: bytes) -> np.ndarray:
        layout = header.layout()
        return self.vvc.decode(payload, layout.height, layout.width, chroma=header.chroma).y

    def _parse(
        self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES
    ) -> tuple[_Header, bytes]:
        """The header, validated before anything is allocated from it, and the VVC payload.

        Sizes within ``max_pixels`` and agreeing (the input a resize of the image, each level the
        size a task network gives for it), a level set the anchor codes, finite ranges, and the
        decode's memory (the frame FFmpeg returns, twice while it is read, and the float32 values)
        within ``max_memory``.
        """
        with BitstreamReader(data, self.codec_name, name=self.name, version=FORMAT_VERSION) as r:
            f = read_frame_format(r, self.name, max_pixels=max_pixels)
            shapes, minmax = f.shapes, f.minmax
            lohi = r.floats(2 * (len(shapes) if minmax == "level" else 1)).reshape(-1, 2)
            if not (np.isfinite(lohi).all() and (lohi[:, 0] <= lohi[:, 1]).all()):
                raise CodecError(f"corrupt {self.name} bitstream: min-max ranges {lohi.tolist()}")
            pairs = [lohi[i if minmax == "level" else 0] for i in range(len(shapes))]
            ranges = {name: (float(lo), float(hi)) for name, (lo, hi) in zip(shapes, pairs)}
            payload = r.blob()
        header = _Header(f.image_size, f.input_size, minmax, f.chroma, shapes, ranges)
        header.checked_layout(self.name, max_memory)
        return header, payload

    def decode(self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES) -> FeatureSet:
        """Bytes from ``encode`` (untrusted) -> float32 FeatureSet of the coded levels (+ image/input size).

        Args:
            data: the bitstream.
            max_pixels: the largest image or input size the header may name.
            max_memory: the most this decode may allocate, estimated from the validated header.

        Raises:
            CodecError: the stream is truncated, has bytes left over, its header is inconsistent or
                beyond the limits, or FFmpeg cannot decode the VVC payload into the frame it names.
                (A payload altered into another valid picture decodes: VVC has no checksum here.)
        """
        header, payload = self._parse(data, max_pixels=max_pixels, max_memory=max_memory)
        return frame_values(self._frame(header, payload), header.layout(), header.ranges, bits=BITS)

    def report(self, features: FeatureSet, data: bytes) -> dict[str, Any]:
        """Per-image numbers recorded beside the rate: header bytes and frame size in samples."""
        header, payload = self._parse(data)
        layout = header.layout()
        return {"header_bytes": len(data) - len(payload), "frame_height": layout.height, "frame_width": layout.width}
