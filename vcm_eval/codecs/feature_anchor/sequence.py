"""The feature anchor for video: every frame's FPN levels tiled into one 10-bit frame, a sequence's frames coded
as one VVC video (MPEG's FCM feature anchor on video; docs/video.md).

Per frame, exactly the image feature anchor's packing (``FeatureVvcCodec.frame``: min-max range per tensor
or per level, 10-bit codes, the tiling of ``tiling.plan_layout``, fill 512); the frames then go to
``VvcSequenceCodec`` as one monochrome (``400``) or neutral-chroma (``420``) sequence, in the random-access or
low-delay structure of the ``vvc_sequence`` group. The min-max ranges change from frame to frame, so each
frame's pair (or one pair per level) is side information in the container and in the rate.

Container (``vcm_eval.codecs.bitstream``, tag ``feature_vvc_video``, version 1); every byte is in the
rate and the decoder needs nothing else:

    varint  N                                  frames
    varint  image height, image width          original frame (one size per sequence)
    varint  input height, input width          network input after resizing
    varint  flags                              bit 0: minmax (0 tensor, 1 level); bit 1: chroma (1 = 4:0:0)
    varint  L, then per level: index (0 = p2 .. 4 = p6), C, H, W
    float32 N x (1 or L) x (lo, hi)            every frame's ranges, frame by frame, little-endian
    blob    varint length + the raw VVC Annex-B stream of the N tiled frames

Why one header for the sequence: every frame of a sequence has the image's size, so its levels have one
shape; sending them per frame would add bytes that carry nothing. A frame whose shapes differ from the
first frame's is refused when encoding.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from vcm_eval.codecs.base import MAX_DECODE_BYTES, MAX_PIXELS, check_feature_header
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.codecs.feature_anchor.codec import (
    BITS,
    FILL,
    FrameFormat,
    anchor_levels,
    read_frame_format,
    write_frame_format,
)
from vcm_eval.codecs.feature_anchor.config import MinMax
from vcm_eval.codecs.feature_anchor.tiling import Layout, codes_frame, frame_values, minmax_ranges
from vcm_eval.codecs.vvc.encoder import check_chroma, check_qp
from vcm_eval.codecs.vvc.sequence import CodedSequence, VvcSequenceCodec
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.errors import CodecError
from vcm_eval.utils.choices import choice
from vcm_eval.vision.base import FeatureSet

VERSION = 1


@dataclass(frozen=True)
class CodedFeatureSequence:
    """A sequence's feature-anchor bytes and how they split.

    Attributes:
        data: the container (header, side information, VVC stream): what the rate counts.
        frames: frames coded.
        stream_bytes: bytes of the VVC stream inside ``data`` (the rest is header and min-max side information).
        frame_height, frame_width: the tiled frame's size in samples.
        encode_s: wall-clock seconds of the VVC encoder with the feature packing fed to it (the features'
            extraction included when the caller computes them lazily, as the video pipeline does).
    """

    data: bytes
    frames: int
    stream_bytes: int
    frame_height: int
    frame_width: int
    encode_s: float

    @property
    def side_bytes(self) -> int:
        """Header and per-frame min-max ranges: the container bytes besides the VVC stream."""
        return len(self.data) - self.stream_bytes


@dataclass(frozen=True)
class _Header(FrameFormat):
    frames: int


class FeatureSequenceCodec:
    """Codes the FPN features of a sequence's frames as one VVC video and decodes them back frame by frame.

    Args:
        vvc: the sequence coder (encoder settings; VVenC or VTM).
        qp: the intra slices' coded QP (``VvcSequenceCodec``), 0..63.
        levels: ``p2-p5`` (P6 rebuilt by the task model) or ``p2-p6``.
        minmax: ``tensor`` (one range per frame) or ``level`` (one per level and frame).
        chroma: ``400`` (monochrome stream) or ``420`` (neutral chroma coded too).
        structure: ``random_access`` or ``low_delay``.
    """

    codec_name = "feature_vvc_video"  # the container tag
    name = "feature_anchor"

    def __init__(
        self,
        *,
        vvc: VvcSequenceCodec,
        qp: int,
        levels: str = "p2-p5",
        minmax: str = "tensor",
        chroma: str = "400",
        structure: str = "low_delay",
    ) -> None:
        self.vvc, self.qp, self.levels = vvc, check_qp(qp), anchor_levels(levels)
        self.minmax, self.chroma = str(choice(MinMax, minmax, "minmax")), check_chroma(chroma)
        self.structure = structure

    def version(self) -> str:
        """The sequence coder's version (encoder build or VTM setting) and this container's format."""
        return f"{self.vvc.version()} / {self.codec_name} v{VERSION}"

    def encode(self, features: Iterable[FeatureSet], *, fps: float, intra_period: int) -> CodedFeatureSequence:
        """Pack and code the frames' features (consumed one at a time: a sequence is never held whole).

        Args:
            features: each frame's FeatureSet, in display order.
            fps: the sequence's frame rate (signalled in the stream).
            intra_period: pictures between intra pictures (``vvc_sequence``'s, or the sequence's).

        Raises:
            CodecError: no frame, a coded level missing, non-finite values, or a frame whose shapes or sizes
                differ from the first frame's; the encoder failed.
        """
        ranges: list[list[tuple[float, float]]] = []
        first: dict[str, object] = {}

        def frames() -> Iterator[Yuv420]:
            for k, feats in enumerate(features):
                missing = [lv for lv in self.levels if lv not in feats]
                if missing:
                    raise CodecError(f"frame {k}: features lack levels {missing} that pipeline.levels codes")
                coded = feats.replace({lv: feats[lv] for lv in self.levels})
                shape = (coded.shapes(), coded.image_size, coded.input_size)
                if first and shape != first["shape"]:
                    raise CodecError(f"frame {k} has levels {shape}, frame 0 {first['shape']}; one sequence has one "
                                     "frame size")  # fmt: skip
                level_ranges = minmax_ranges(coded, self.minmax)
                frame, layout = codes_frame(coded, level_ranges, bits=BITS, fill=FILL)
                if not first:
                    check_feature_header(self.name, coded.image_size, coded.input_size, coded.shapes())
                    first.update(shape=shape, layout=layout)
                names = [t.name for t in layout.levels]
                ranges.append([level_ranges[n] for n in names] if self.minmax == "level" else [level_ranges[names[0]]])
                yield Yuv420.from_luma(frame)

        start = time.perf_counter()
        coded_video = self.vvc.encode(frames(), fps=fps, qp=self.qp, structure=self.structure,
                                      intra_period=intra_period, chroma=self.chroma)  # fmt: skip
        layout = first["layout"]
        if not isinstance(layout, Layout):
            raise CodecError("no frame to encode; a sequence needs at least one frame")
        w = BitstreamWriter(self.codec_name, version=VERSION)
        w.uint(coded_video.frames)
        write_frame_format(w, layout, self.minmax, self.chroma)
        w.floats(np.asarray(ranges, dtype=np.float32).ravel())
        w.blob(coded_video.data)
        data = w.getvalue()
        seconds = time.perf_counter() - start
        return CodedFeatureSequence(data, coded_video.frames, len(coded_video.data), layout.height, layout.width,
                                    seconds)  # fmt: skip

    def _parse(self, data: bytes, *, max_pixels: int, max_memory: int) -> tuple[_Header, np.ndarray, bytes]:
        """The header (validated before anything is allocated from it), the ranges [N, 1 or L, 2], the VVC stream."""
        with BitstreamReader(data, self.codec_name, name=f"{self.name} (video)", version=VERSION) as r:
            count = r.uint()
            if count < 1:
                raise CodecError(f"corrupt {self.name} video bitstream: {count} frames")
            f = read_frame_format(r, f"{self.name} video", max_pixels=max_pixels)
            shapes, minmax = f.shapes, f.minmax
            pairs = len(shapes) if minmax == "level" else 1
            if count * pairs * 8 > r.remaining:  # checked before the read sizes an array from the count
                raise CodecError(f"{self.name} video bitstream truncated: {count} frames of ranges do not fit in "
                                 f"its {r.remaining} remaining bytes")  # fmt: skip
            ranges = r.floats(2 * pairs * count).reshape(count, pairs, 2)
            if not (np.isfinite(ranges).all() and (ranges[..., 0] <= ranges[..., 1]).all()):
                raise CodecError(f"corrupt {self.name} video bitstream: min-max ranges are not finite lo <= hi")
            stream = r.blob()
        header = _Header(f.image_size, f.input_size, minmax, f.chroma, shapes, count)
        header.checked_layout(self.name, max_memory)  # one frame at a time
        return header, ranges, stream

    def decode(
        self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES
    ) -> Iterator[FeatureSet]:
        """Bytes from ``encode`` (untrusted) -> each frame's float32 FeatureSet, one at a time, in display order.

        Args:
            data: the container.
            max_pixels: the largest image or input size the header may name.
            max_memory: the most one frame's decode may allocate, estimated from the validated header.

        Raises:
            CodecError: a truncated or inconsistent container, one beyond the limits, or a VVC stream that does
                not decode into exactly the frames the header names.
        """
        header, ranges, stream = self._parse(data, max_pixels=max_pixels, max_memory=max_memory)
        layout = header.layout()
        names = list(header.shapes)
        video = CodedSequence(
            stream, header.frames, layout.height, layout.width, 1.0, self.qp, self.structure, -1, header.chroma, 0.0
        )  # decoding reads the stream, its frame count, size and chroma only
        for k, frame in enumerate(self.vvc.decode(video)):
            level_ranges = {
                n: (
                    float(ranges[k, i if header.minmax == "level" else 0, 0]),
                    float(ranges[k, i if header.minmax == "level" else 0, 1]),
                )
                for i, n in enumerate(names)
            }
            yield frame_values(np.ascontiguousarray(frame.y), layout, level_ranges, bits=BITS)  # fmt: skip
