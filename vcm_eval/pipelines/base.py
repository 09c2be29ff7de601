"""What every pipeline shares: the per-image result and the three pipeline shapes.

* ``UncompressedPipeline``  - the full network on the original image (the reference; no rate).
* ``ImageCodingPipeline``   - image -> image codec -> bytes -> decoded image -> full network.
* ``FeatureCodingPipeline`` - image -> features -> feature codec -> bytes -> decoded features ->
                              rest of the network.

Pipelines differ only in the codec they call. Rate is computed here, in one place, from the
length of the bytes the codec returned: ``bits = 8 * len(bitstream)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vcm_eval.data.sample import Sample
from vcm_eval.vision.base import FeatureSet, Instances, TaskModel


@dataclass
class ImageResult:
    """One image through one pipeline configuration.

    Attributes:
        bits: 8 x bytes of the bitstream (0 for the uncompressed reference).
        pixels: H x W of the original image (the bpp denominator).
        encode_s, decode_s: codec seconds (0 when there is no codec).
        task_s: task-network seconds (feature extraction + the rest of the network).
        instances: the detections.
        extra: pipeline-specific per-image numbers (e.g. the quant method's raw bit count).
    """

    bits: int
    pixels: int
    encode_s: float
    decode_s: float
    task_s: float
    instances: Instances
    extra: dict[str, Any] = field(default_factory=dict)


class Pipeline(Protocol):
    """A configured pipeline: its name, its swept parameters, and one image at a time."""

    name: str
    params: dict[str, Any]

    def process(self, sample: Sample) -> ImageResult: ...

    def provenance(self) -> dict[str, Any]: ...


class ImageCodec(Protocol):
    def encode(self, image: np.ndarray) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


class FeatureCodec(Protocol):
    """``encode(FeatureSet) -> bytes``; ``decode(bytes) -> FeatureSet``; the bytes hold everything."""

    def encode(self, features: FeatureSet) -> bytes: ...

    def decode(self, data: bytes) -> FeatureSet: ...


class _Timer:
    def __enter__(self) -> _Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


class UncompressedPipeline:
    """The full task network on the original image: the accuracy every codec is measured against."""

    def __init__(self, *, model: TaskModel, name: str = "uncompressed") -> None:
        self.model, self.name, self.params = model, name, {}

    def process(self, sample: Sample) -> ImageResult:
        with _Timer() as t:
            inst = self.model.predict(sample.image)
        return ImageResult(0, sample.height * sample.width, 0.0, 0.0, t.seconds, inst)

    def provenance(self) -> dict[str, Any]:
        return {}


class ImageCodingPipeline:
    """Image codec, then the full network on the decoded image."""

    def __init__(self, *, model: TaskModel, codec: ImageCodec, name: str, params: dict[str, Any], version: str) -> None:
        self.model, self.codec, self.name, self.params, self._version = model, codec, name, params, version

    def process(self, sample: Sample) -> ImageResult:
        with _Timer() as te:
            data = self.codec.encode(sample.image)
        with _Timer() as td:
            decoded = self.codec.decode(data)
        with _Timer() as tt:
            inst = self.model.predict(decoded)
        return ImageResult(8 * len(data), sample.height * sample.width, te.seconds, td.seconds, tt.seconds, inst)

    def provenance(self) -> dict[str, Any]:
        return {"codec_version": self._version}


class FeatureCodingPipeline:
    """Features, feature codec, then the rest of the network on the decoded features."""

    def __init__(self, *, model: TaskModel, codec: FeatureCodec, name: str, params: dict[str, Any], version: str) -> None:
        self.model, self.codec, self.name, self.params, self._version = model, codec, name, params, version

    def process(self, sample: Sample) -> ImageResult:
        with _Timer() as tf:
            feats = self.model.features(sample.image)
        with _Timer() as te:
            data = self.codec.encode(feats)
        with _Timer() as td:
            decoded = self.codec.decode(data)
        with _Timer() as tp:
            inst = self.model.predict_from_features(decoded)
        extra = self.extra(feats, data)
        return ImageResult(8 * len(data), sample.height * sample.width, te.seconds, td.seconds, tf.seconds + tp.seconds, inst, extra)

    def extra(self, features: FeatureSet, data: bytes) -> dict[str, Any]:
        """Per-image numbers a codec wants recorded beside the real rate (none by default)."""
        report = getattr(self.codec, "report", None)
        return dict(report(features, data)) if callable(report) else {}

    def provenance(self) -> dict[str, Any]:
        return {"codec_version": self._version}
