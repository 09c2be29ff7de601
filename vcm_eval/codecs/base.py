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
* ``tool_versions()``: external libraries behind ``version()``, for provenance.json (default: none).

The rate is never the codec's to state: the pipeline counts ``8 * len(bytes)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from vcm_eval.vision.base import FeatureSet


class Codec(ABC):
    """What image and feature codecs share (see the module docstring)."""

    kind: ClassVar[str]
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


class ImageCodec(Codec):
    """Codes the image; the full task network runs on the decoded image."""

    kind = "image"

    @abstractmethod
    def encode(self, image: np.ndarray) -> bytes:
        """uint8 RGB [H, W, 3] -> bytes holding everything ``decode`` needs."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """bytes -> uint8 RGB [H, W, 3] of the original size."""


class FeatureCodec(Codec):
    """Codes the task network's FPN features; the rest of the network runs on the decoded ones."""

    kind = "feature"

    @abstractmethod
    def encode(self, features: FeatureSet) -> bytes:
        """FeatureSet (float32 levels [C, H, W], image and input sizes) -> bytes."""

    @abstractmethod
    def decode(self, data: bytes) -> FeatureSet:
        """bytes -> FeatureSet with the coded levels and the sizes (P6 may be left to the model)."""
