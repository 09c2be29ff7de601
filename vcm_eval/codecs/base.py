"""The one codec contract: every codec vcm_eval evaluates, built in or a researcher's own.

A codec turns what it codes into bytes that hold everything its decoder needs, and back:

* ``ImageCodec``: ``encode(image) -> bytes``, ``decode(bytes) -> image`` (uint8 RGB [H, W, 3]);
  the whole task network then runs on the decoded image.
* ``FeatureCodec``: ``encode(FeatureSet) -> bytes``, ``decode(bytes) -> FeatureSet``; the rest of
  the network runs on the decoded features (P6 rebuilt from P5 when the codec drops it).

Besides the two methods a codec declares:

* ``name``: the pipeline name its runs are filed and plotted under (``jpeg``, ``quant``);
* ``rate_params``: its knobs that move a point along one rate-accuracy curve (``qp``, ``z``,
  ``quality``); any other parameter starts a new curve in the report;
* ``sweep_params``: rate knobs worth a figure of accuracy against the knob itself (the 2-bit
  method's ``z``, as its paper plots it); the report draws ``<knob>_sweep_<metric>`` for each;
* ``version()``: what, beyond its config, decides its bytes (format version, encoder build,
  checkpoint hash): part of the run key, so a changed codec never reuses old records;
* ``report(original, data)``: per-image numbers recorded beside the rate (default: none);
* ``tool_versions()``: external libraries behind ``version()``, for provenance.json (default: none);
* ``rate_bytes(data)``: the bytes the rate counts (default: all of them);
* ``reads``: the config groups besides ``pipeline`` a built-in codec's ``from_config(cfg, runtime)``
  reads (``("vvc",)``); it gets exactly those (``vcm_eval.utils.components.build``) and the run key
  hashes exactly those. A researcher's codec is built by Hydra from ``pipeline.codec`` instead.

The rate is never the codec's to state: the pipeline counts ``8 * rate_bytes(bytes)``, which is
``len(bytes)`` for every codec except MPEG's image anchor (the VVC bitstream alone, as MPEG counts it).

``decode`` reads untrusted bytes (docs/architecture.md, "Threat model: untrusted bitstreams"): a
stream that is truncated, has bytes left over, or names sizes that disagree or exceed the limits
raises ``CodecError``; it never decodes into a silent surprise or allocates without bound. The
built-in decoders take two keyword arguments for that, with these defaults: ``max_pixels``
(``MAX_PIXELS``, the largest image or network input a header may name) and ``max_memory``
(``MAX_DECODE_BYTES``, the most a decode may allocate by the estimate it makes from the validated
header before allocating). The helpers below are what they use; a researcher's codec may too.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from vcm_eval.errors import CodecError
from vcm_eval.pipelines.config import DecodeLimits
from vcm_eval.vision.base import FeatureSet
from vcm_eval.vision.levels import LEVELS, STRIDES

# The defaults of the ``decode.*`` settings (``DecodeLimits``): 64 M pixels (8192 x 8192) is 16x the largest
# test-condition picture (SFU class A, 2560 x 1600, 4 M) and 32x a Cityscapes image, so no real image is
# refused, while a corrupt header cannot ask for more; 4 GiB is what one decode may allocate by its own
# estimate (the largest real decode, a feature codec's Cityscapes-size pyramid, stays under 1 GiB).
MAX_PIXELS: int = DecodeLimits.max_pixels
MAX_DECODE_BYTES: int = DecodeLimits.max_memory
# Channels of a coded FPN level: 256 for every task network here; more is a corrupt header.
MAX_CHANNELS = 4096
# How far the height's and the width's scale (input / image) may disagree: 2 pixels of rounding a side
# (a resize floors or rounds: under 1) and 10% more, for inputs also cropped or padded a little (and
# hand-built test pyramids); a header whose sizes were altered disagrees by far more.
RESIZE_SLACK, RESIZE_TOLERANCE = 2, 1.1


def check_picture_size(codec: str, what: str, size: tuple[int, int], max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """A (height, width) read from a header: both >= 1 and at most ``max_pixels`` pixels together.

    Raises:
        CodecError: naming ``codec``, ``what`` (``image size``, ``input size``) and the limit.
    """
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise CodecError(f"corrupt {codec} bitstream: {what} {h}x{w} is empty")
    if h * w > max_pixels:
        raise CodecError(
            f"{codec} bitstream names a {what} of {h}x{w} = {h * w} pixels, above max_pixels={max_pixels}; "
            "the stream is corrupt, or pass a larger max_pixels to decode it"
        )
    return h, w


def check_resized(codec: str, image_size: tuple[int, int], input_size: tuple[int, int]) -> None:
    """The network input is the image resized by one scale factor (``RESIZE_SLACK``, ``RESIZE_TOLERANCE``).

    Both task-network backends keep the aspect ratio (torchvision floors ``side * scale``, detectron2
    rounds it), so the two scales ``input / image`` of the height and of the width must agree up to
    rounding; a header whose sizes disagree more is corrupt.
    """
    (ih, iw), (nh, nw) = image_size, input_size
    # the scale intervals [(n - slack) / i, (n + slack) / i] of both sides meet, one widened by the tolerance
    h_lo, h_hi = (nh - RESIZE_SLACK) / ih, (nh + RESIZE_SLACK) / ih
    w_lo, w_hi = (nw - RESIZE_SLACK) / iw, (nw + RESIZE_SLACK) / iw
    if h_lo > RESIZE_TOLERANCE * w_hi or w_lo > RESIZE_TOLERANCE * h_hi:
        raise CodecError(
            f"corrupt {codec} bitstream: input size {nh}x{nw} is not the image size {ih}x{iw} resized by one factor"
        )


def level_size_bounds(input_size: tuple[int, int], level: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """((lowest H, highest H), (lowest W, highest W)) of an FPN level for a network input of ``input_size``.

    Lowest: ``ceil(side / stride)`` (no padding); highest: the input padded to a multiple of 32
    first, as both task networks pad it (``ceil(side / 32) * 32 / stride``). P2 is between
    ``ceil(side / 4)`` and 7 more; P6 is P5 max-pooled with stride 2.
    """
    out = []
    for side in input_size:
        stride = min(STRIDES[level], 32)
        lo, hi = math.ceil(side / stride), math.ceil(side / 32) * (32 // stride)
        if level == "p6":
            lo, hi = math.ceil(lo / 2), math.ceil(hi / 2)
        out.append((lo, hi))
    return out[0], out[1]


def check_levels(
    codec: str, input_size: tuple[int, int], shapes: Mapping[str, tuple[int, int, int]], *, channels: int | None = None
) -> None:
    """Each level's (C, H, W) read from a header is what a task network gives for ``input_size``.

    H and W within ``level_size_bounds``, each level exactly half the one below (rounded up, as
    the FPN's stride-2 stages give), C from 1 to ``MAX_CHANNELS`` (or exactly ``channels``, where
    the codec's model fixes it). With the input size bounded by ``max_pixels``, this bounds every
    level too.

    Raises:
        CodecError: naming the codec, the level and the size it should have.
    """
    previous: tuple[str, int, int] | None = None
    for name in LEVELS:
        if name not in shapes:
            previous = None
            continue
        c, h, w = (int(v) for v in shapes[name])
        if not 1 <= c <= (channels or MAX_CHANNELS) or (channels is not None and c != channels):
            want = f"{channels}" if channels is not None else f"1..{MAX_CHANNELS}"
            raise CodecError(f"corrupt {codec} bitstream: level {name} has {c} channels, expected {want}")
        (hlo, hhi), (wlo, whi) = level_size_bounds(input_size, name)
        if not (hlo <= h <= hhi and wlo <= w <= whi):
            raise CodecError(
                f"corrupt {codec} bitstream: level {name} is {h}x{w}; an input of {input_size[0]}x{input_size[1]} "
                f"gives {hlo}..{hhi} x {wlo}..{whi}"
            )
        if previous is not None and (h, w) != (math.ceil(previous[1] / 2), math.ceil(previous[2] / 2)):
            raise CodecError(
                f"corrupt {codec} bitstream: level {name} is {h}x{w}, "
                f"not half of {previous[0]} ({previous[1]}x{previous[2]})"
            )
        previous = (name, h, w)


def check_feature_header(
    codec: str,
    image_size: tuple[int, int],
    input_size: tuple[int, int],
    shapes: Mapping[str, tuple[int, int, int]] | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    channels: int | None = None,
) -> None:
    """All of a feature header's sizes: each within ``max_pixels``, agreeing with each other (see above).

    Encoders call it too, so they never write a stream their decoder refuses.
    """
    check_picture_size(codec, "image size", image_size, max_pixels)
    check_picture_size(codec, "input size", input_size, max_pixels)
    check_resized(codec, image_size, input_size)
    if shapes is not None:
        check_levels(codec, input_size, shapes, channels=channels)


def check_memory(codec: str, need: int, max_memory: int = MAX_DECODE_BYTES, *, what: str = "") -> None:
    """Refuse a decode whose estimated allocation ``need`` (bytes) is above ``max_memory``, before allocating.

    Raises:
        CodecError: naming the codec, the estimate and what it is made of.
    """
    if need > max_memory:
        detail = f" ({what})" if what else ""
        raise CodecError(
            f"decoding this {codec} bitstream needs about {need / 2**20:.0f} MiB{detail}, above "
            f"max_memory={max_memory} bytes; the stream is corrupt, or pass a larger max_memory to decode it"
        )


class Codec(ABC):
    """What image and feature codecs share (see the module docstring)."""

    kind: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ()
    revision_area: ClassVar[str] = ""  # built-in codecs: their area in vcm_eval.revisions (in the run key)
    name: str = ""
    rate_params: tuple[str, ...] = ()
    sweep_params: tuple[str, ...] = ()

    @abstractmethod
    def version(self) -> str:
        """Identity of the bytes this codec writes beyond its config (in the run key)."""

    def report(self, original: Any, data: bytes) -> dict[str, Any]:
        """Per-image numbers recorded beside the real rate; ``original`` is what ``encode`` got."""
        return {}

    def tool_versions(self) -> dict[str, str]:
        """Versions of external libraries behind ``version()``, for provenance.json only (default: none)."""
        return {}

    def curve_version(self) -> str:
        """What stays the same along one rate-accuracy curve (the report's curve identity; default
        ``version()``). A codec with one checkpoint per rate point names the family, not the file."""
        return self.version()

    def rate_bytes(self, data: bytes) -> int:
        """The bytes the rate counts: all of them (the default, and every codec but one).

        MPEG counts its image anchor's rate as the VVC bitstream alone; ``VvcImageCodec`` returns
        that, and the pipeline records the rest of its container as ``header_bytes``.
        """
        return len(data)


class ImageCodec(Codec):
    """Codes the image; the full task network runs on the decoded image."""

    kind = "image"

    @abstractmethod
    def encode(self, image: np.ndarray) -> bytes:
        """uint8 RGB [H, W, 3] -> bytes holding everything ``decode`` needs."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """bytes -> uint8 RGB [H, W, 3] of the original size; ``CodecError`` for a stream it cannot read."""


class FeatureCodec(Codec):
    """Codes the task network's FPN features; the rest of the network runs on the decoded ones."""

    kind = "feature"

    @abstractmethod
    def encode(self, features: FeatureSet) -> bytes:
        """FeatureSet (float32 levels [C, H, W], image and input sizes) -> bytes."""

    @abstractmethod
    def decode(self, data: bytes) -> FeatureSet:
        """bytes -> FeatureSet of the coded levels and the sizes (P6 may be left to the model).

        Raises ``CodecError`` for a stream it cannot read.
        """
