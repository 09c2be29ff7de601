"""What every pipeline shares: the per-image result and the three pipeline shapes.

* ``UncompressedPipeline``  - the full network on the original image (the reference; no rate).
* ``ImageCodingPipeline``   - image -> image codec -> bytes -> decoded image -> full network.
* ``FeatureCodingPipeline`` - image -> features -> feature codec -> bytes -> decoded features ->
                              rest of the network.

Pipelines differ only in the codec they call. Rate is computed here, in one place, from the
length of the bytes the codec returned: ``bits = 8 * len(bitstream)``.

Reuse (``vcm_eval.cache``): feature pipelines take their features from a ``FeatureCache`` when one
is given (extracted once per image for a whole sweep), and every coding pipeline given a
``BitstreamStore`` stores each bitstream before decoding it and, on a rerun, decodes the stored one
instead of encoding again. Both give the same records as a fresh run (timings aside).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vcm_eval.cache import BitstreamStore, FeatureCache, StoredBitstream
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
        features_s: the feature-extraction part of ``task_s`` (a feature-cache read on a hit;
            0 for pipelines that run the whole network at once).
    """

    bits: int
    pixels: int
    encode_s: float
    decode_s: float
    task_s: float
    instances: Instances
    extra: dict[str, Any] = field(default_factory=dict)
    features_s: float = 0.0


class Pipeline(Protocol):
    """A configured pipeline: its name, its swept parameters, and one image at a time."""

    name: str
    params: dict[str, Any]

    def process(self, sample: Sample, *, bitstreams: BitstreamStore | None = None) -> ImageResult: ...

    def provenance(self) -> dict[str, Any]: ...


class ImageCodec(Protocol):
    def encode(self, image: np.ndarray) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


class FeatureCodec(Protocol):
    """``encode(FeatureSet) -> bytes``; ``decode(bytes) -> FeatureSet``; the bytes hold everything."""

    def encode(self, features: FeatureSet) -> bytes: ...

    def decode(self, data: bytes) -> FeatureSet: ...


class _Timer:
    def __enter__(self) -> _Timer:  # noqa: PYI034
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def _stored_or_encoded(sample: Sample, bitstreams: BitstreamStore | None, encode: Callable[[Sample], StoredBitstream]) -> StoredBitstream:
    """The kept bitstream of ``sample`` when a previous run stored it, else ``encode(sample)`` (then kept)."""
    stored = bitstreams.get(sample.image_id) if bitstreams is not None else None
    if stored is None:
        stored = encode(sample)
        if bitstreams is not None:
            bitstreams.put(sample.image_id, stored)
    return stored


class UncompressedPipeline:
    """The full task network on the original image: the accuracy every codec is measured against."""

    def __init__(self, *, model: TaskModel, name: str = "uncompressed", cache: FeatureCache | None = None) -> None:
        self.model, self.name, self.cache = model, name, cache
        self.params: dict[str, Any] = {}

    def process(self, sample: Sample, *, bitstreams: BitstreamStore | None = None) -> ImageResult:
        """``predict`` = ``predict_from_features(features)``, the features from the cache if any."""
        with _Timer() as tf:
            feats = self.model.features(sample.image) if self.cache is None else self.cache.features(sample.image)
        with _Timer() as tp:
            inst = self.model.predict_from_features(feats)
        return ImageResult(0, sample.height * sample.width, 0.0, 0.0, tf.seconds + tp.seconds, inst, features_s=tf.seconds)

    def provenance(self) -> dict[str, Any]:
        return {}


class ImageCodingPipeline:
    """Image codec, then the full network on the decoded image."""

    def __init__(self, *, model: TaskModel, codec: ImageCodec, name: str, params: dict[str, Any], version: str) -> None:
        self.model, self.codec, self.name, self.params, self._version = model, codec, name, params, version

    def process(self, sample: Sample, *, bitstreams: BitstreamStore | None = None) -> ImageResult:
        stored = _stored_or_encoded(sample, bitstreams, self._encode)
        with _Timer() as td:
            decoded = self.codec.decode(stored.data)
        with _Timer() as tt:
            inst = self.model.predict(decoded)
        return ImageResult(8 * len(stored.data), sample.height * sample.width, stored.encode_s, td.seconds, tt.seconds, inst)

    def _encode(self, sample: Sample) -> StoredBitstream:
        with _Timer() as te:
            data = self.codec.encode(sample.image)
        return StoredBitstream(data, te.seconds)

    def provenance(self) -> dict[str, Any]:
        return {"codec_version": self._version}


class FeatureCodingPipeline:
    """Features, feature codec, then the rest of the network on the decoded features."""

    def __init__(
        self, *, model: TaskModel, codec: FeatureCodec, name: str, params: dict[str, Any], version: str, cache: FeatureCache | None = None
    ) -> None:
        self.model, self.codec, self.name, self.params, self._version, self.cache = model, codec, name, params, version, cache

    def process(self, sample: Sample, *, bitstreams: BitstreamStore | None = None) -> ImageResult:
        stored = _stored_or_encoded(sample, bitstreams, self._encode)  # a stored bitstream needs no features
        with _Timer() as td:
            decoded = self.codec.decode(stored.data)
        with _Timer() as tp:
            inst = self.model.predict_from_features(decoded)
        task_s = stored.features_s + tp.seconds
        return ImageResult(
            8 * len(stored.data), sample.height * sample.width, stored.encode_s, td.seconds, task_s, inst, stored.extra, features_s=stored.features_s
        )

    def _encode(self, sample: Sample) -> StoredBitstream:
        with _Timer() as tf:
            feats = self.model.features(sample.image) if self.cache is None else self.cache.features(sample.image)
        with _Timer() as te:
            data = self.codec.encode(feats)
        return StoredBitstream(data, te.seconds, tf.seconds, self.extra(feats, data))

    def extra(self, features: FeatureSet, data: bytes) -> dict[str, Any]:
        """Per-image numbers a codec wants recorded beside the real rate (none by default)."""
        report = getattr(self.codec, "report", None)
        return dict(report(features, data)) if callable(report) else {}

    def provenance(self) -> dict[str, Any]:
        return {"codec_version": self._version}
