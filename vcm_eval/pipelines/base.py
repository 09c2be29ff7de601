"""What every pipeline shares: the per-image result and the three pipeline shapes.

* ``UncompressedPipeline``  - the full network on the original image (the reference; no rate).
* ``ImageCodingPipeline``   - image -> image codec -> bytes -> decoded image -> full network.
* ``FeatureCodingPipeline`` - image -> features -> feature codec -> bytes -> decoded features ->
                              rest of the network.

Pipelines differ only in the codec they call (``vcm_eval.codecs.base``: its kind picks the shape,
``coding_pipeline``), built in or a user's. Rate is computed here, in one place, from the length of
the bytes the codec returned: ``bits = 8 * codec.rate_bytes(bitstream)`` (every byte, except for
MPEG's image anchor, whose rate is the VVC bitstream alone; the rest of its container is recorded
as ``header_bytes``); the codec's ``report`` adds its own per-image numbers and its ``version()``
goes into the run key.

Every record also holds a sha256 of what the task network saw: ``features_sha256`` of the float32
features a feature codec coded (or the uncompressed run used), ``decoded_sha256`` of an image
codec's decoded pixels. Two machines, or two thread counts, compare their runs image by image with
them (README: "The same numbers on another machine").

Reuse (``vcm_eval.pipelines.cache``): feature pipelines take their features from a ``FeatureCache`` when one
is given (extracted once per image for a whole sweep), and every coding pipeline given a
``BitstreamStore`` stores each bitstream before decoding it and, on a rerun, decodes the stored one
instead of encoding again. Both give the same records as a fresh run (timings aside).
"""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vcm_eval.codecs.base import Codec, FeatureCodec, ImageCodec
from vcm_eval.data.sample import Sample
from vcm_eval.errors import CodecError
from vcm_eval.pipelines.cache import BitstreamStore, FeatureCache, StoredBitstream
from vcm_eval.revisions import revision
from vcm_eval.vision.base import FeatureSet, Instances, TaskModel
from vcm_eval.vision.complexity import StageComplexity, measure_complexity


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
    """A configured pipeline: its name, its swept parameters, its codec (None: uncompressed), one image at a time."""

    name: str
    params: dict[str, Any]
    model: TaskModel

    @property
    def codec(self) -> Codec | None: ...

    def process(self, sample: Sample, *, bitstreams: BitstreamStore | None = None) -> ImageResult: ...

    def provenance(self) -> dict[str, Any]: ...


class _Timer:
    def __enter__(self) -> _Timer:  # noqa: PYI034
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def _stored_or_encoded(
    sample: Sample, bitstreams: BitstreamStore | None, encode: Callable[[Sample], StoredBitstream]
) -> StoredBitstream:
    """The kept bitstream of ``sample`` when a previous run stored it, else ``encode(sample)`` (then kept)."""
    stored = bitstreams.get(sample.image_id) if bitstreams is not None else None
    if stored is None:
        stored = encode(sample)
        if bitstreams is not None:
            bitstreams.put(sample.image_id, stored)
    return stored


def features_digest(features: FeatureSet) -> str:
    """sha256 of the levels' float32 bytes in level order, with their shapes (16 hex digits)."""
    h = hashlib.sha256()
    for name, level in features.items():
        arr = np.ascontiguousarray(level.detach().cpu().numpy(), dtype=np.float32)
        h.update(f"{name}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def codec_identity(codec: Codec) -> dict[str, Any]:
    """What identifies a codec's bytes beyond its config: its version, and for a built-in codec its code revision."""
    area = codec.revision_area
    return {"codec_version": codec.version(), **({"codec_code": revision(area)} if area else {})}


def _rate(codec: Codec, data: bytes) -> tuple[int, dict[str, Any]]:
    """(bits of the rate, the container bytes outside it when the codec counts less than all).

    A stream whose container cannot be parsed to find the part the rate counts (it will fail to
    decode too) counts every byte it has.
    """
    try:
        counted = codec.rate_bytes(data)
    except CodecError:
        counted = len(data)
    return 8 * counted, ({"header_bytes": len(data) - counted} if counted != len(data) else {})


DECODE_ERROR = "decode_error"  # the record field of an image whose stream did not decode: why


def decode_limits(codec: Codec, limits: Mapping[str, int] | None) -> dict[str, int]:
    """The ``decode.*`` limits (``DecodeLimits``) that ``codec.decode`` takes as keyword arguments (every
    built-in codec takes both; a researcher's codec those it declares, or none)."""
    if not limits:
        return {}
    parameters = inspect.signature(codec.decode).parameters  # type: ignore[attr-defined]
    anything = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    return {k: int(v) for k, v in limits.items() if anything or k in parameters}


def _decoded(codec: ImageCodec | FeatureCodec, data: bytes, limits: dict[str, int]) -> tuple[Any, dict[str, str]]:
    """(the decoded image or features, {}), or (None, {"decode_error": why}) when the stream does not decode.

    Only ``CodecError`` (a stream the decoder refuses: corrupt, truncated, over the limits) is a
    failure of the image; anything else is a bug and propagates.
    """
    try:
        return codec.decode(data, **limits), {}  # type: ignore[call-arg]
    except CodecError as exc:
        return None, {DECODE_ERROR: str(exc)}


def failed_ids(records: Iterable[Mapping[str, Any]]) -> list[int]:
    """The ids (image ids, or frame indices of a video run) of the records whose stream did not decode (``_decoded``),
    in order: each a record without detections, counted in the run's ``decode_failures``."""
    return sorted(int(r["image_id"]) for r in records if DECODE_ERROR in r)


def _failed(sample: Sample, bits: int, stored: StoredBitstream, decode_s: float, extra: dict[str, Any]) -> ImageResult:
    """An image whose stream did not decode: its bits still count, it has no detections (never left out of the mAP)."""
    nothing = Instances(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), None)
    pixels = sample.height * sample.width
    return ImageResult(bits, pixels, stored.encode_s, decode_s, stored.features_s, nothing, extra, stored.features_s)


class UncompressedPipeline:
    """The full task network on the original image: the accuracy every codec is measured against."""

    def __init__(self, *, model: TaskModel, name: str = "uncompressed", cache: FeatureCache | None = None) -> None:
        self.model, self.name, self.cache = model, name, cache
        self.params: dict[str, Any] = {}
        self.codec: Codec | None = None

    def process(self, sample: Sample, *, bitstreams: BitstreamStore | None = None) -> ImageResult:
        """``predict`` = ``predict_from_features(features)``, the features from the cache if any."""
        with _Timer() as tf:
            feats = self.model.features(sample.image) if self.cache is None else self.cache.features(sample.image)
        with _Timer() as tp:
            inst = self.model.predict_from_features(feats)
        extra = {"features_sha256": features_digest(feats)}
        return ImageResult(
            0, sample.height * sample.width, 0.0, 0.0, tf.seconds + tp.seconds, inst, extra, features_s=tf.seconds
        )

    def provenance(self) -> dict[str, Any]:
        return {}


class ImageCodingPipeline:
    """Image codec, then the full network on the decoded image."""

    def __init__(
        self,
        *,
        model: TaskModel,
        codec: ImageCodec,
        name: str,
        params: dict[str, Any],
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.model, self.codec, self.name, self.params = model, codec, name, params
        self.limits = decode_limits(codec, limits)

    def process(self, sample: Sample, *, bitstreams: BitstreamStore | None = None) -> ImageResult:
        stored = _stored_or_encoded(sample, bitstreams, self._encode)
        bits, header = _rate(self.codec, stored.data)
        with _Timer() as td:
            decoded, error = _decoded(self.codec, stored.data, self.limits)
        if decoded is None:
            return _failed(sample, bits, stored, td.seconds, {**stored.extra, **header, **error})
        with _Timer() as tt:
            inst = self.model.predict(decoded)
        extra = {
            **stored.extra,
            **header,
            "decoded_sha256": hashlib.sha256(np.ascontiguousarray(decoded).tobytes()).hexdigest()[:16],
        }
        return ImageResult(bits, sample.height * sample.width, stored.encode_s, td.seconds, tt.seconds, inst, extra)

    def _encode(self, sample: Sample) -> StoredBitstream:
        with _Timer() as te:
            data = self.codec.encode(sample.image)
        return StoredBitstream(data, te.seconds, extra=dict(self.codec.report(sample.image, data)))

    def provenance(self) -> dict[str, Any]:
        return codec_identity(self.codec)


class FeatureCodingPipeline:
    """Features, feature codec, then the rest of the network on the decoded features."""

    def __init__(
        self,
        *,
        model: TaskModel,
        codec: FeatureCodec,
        name: str,
        params: dict[str, Any],
        cache: FeatureCache | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.model, self.codec, self.name, self.params, self.cache = model, codec, name, params, cache
        self.limits = decode_limits(codec, limits)

    def process(self, sample: Sample, *, bitstreams: BitstreamStore | None = None) -> ImageResult:
        stored = _stored_or_encoded(sample, bitstreams, self._encode)  # a stored bitstream needs no features
        bits, header = _rate(self.codec, stored.data)
        with _Timer() as td:
            decoded, error = _decoded(self.codec, stored.data, self.limits)
        if decoded is None:
            return _failed(sample, bits, stored, td.seconds, {**stored.extra, **header, **error})
        with _Timer() as tp:
            inst = self.model.predict_from_features(decoded)
        task_s = stored.features_s + tp.seconds
        return ImageResult(
            bits,
            sample.height * sample.width,
            stored.encode_s,
            td.seconds,
            task_s,
            inst,
            {**stored.extra, **header},
            features_s=stored.features_s,
        )

    def _encode(self, sample: Sample) -> StoredBitstream:
        with _Timer() as tf:
            feats = self.model.features(sample.image) if self.cache is None else self.cache.features(sample.image)
        with _Timer() as te:
            data = self.codec.encode(feats)
        p2_p5_values = sum(feats[k].numel() for k in ("p2", "p3", "p4", "p5") if k in feats)  # for feature_ratio_pct
        extra = {
            **self.codec.report(feats, data),
            "p2_p5_values": p2_p5_values,
            "features_sha256": features_digest(feats),
        }
        return StoredBitstream(data, te.seconds, tf.seconds, extra)

    def provenance(self) -> dict[str, Any]:
        return codec_identity(self.codec)


def coding_pipeline(
    codec: Codec,
    *,
    model: TaskModel,
    name: str,
    params: dict[str, Any],
    cache: FeatureCache | None = None,
    limits: Mapping[str, int] | None = None,
) -> Pipeline:
    """The pipeline that runs ``codec``: its kind (image or feature) decides the shape, nothing else.
    ``limits``: the ``decode.*`` settings passed to its ``decode`` (``decode_limits``)."""
    if isinstance(codec, ImageCodec):
        return ImageCodingPipeline(model=model, codec=codec, name=name, params=params, limits=limits)
    if isinstance(codec, FeatureCodec):
        return FeatureCodingPipeline(model=model, codec=codec, name=name, params=params, cache=cache, limits=limits)
    raise TypeError(f"{type(codec).__name__} is neither an ImageCodec nor a FeatureCodec (vcm_eval.codecs.base)")


def measure_pipeline(
    pipeline: Pipeline, sample: Sample, *, bitstreams: BitstreamStore | None = None
) -> StageComplexity:
    """MACs of each stage of ``pipeline`` on one image (FCM's complexity; ``vcm_eval.vision.complexity``).

    The network after the split runs on what the decoder gives back (the proposal count, hence
    its MACs, changes with coding): the decoded features of a feature codec, the decoded image of
    an image codec, whose whole network then counts as the two parts on the decoded image. A
    codec's encoder and decoder count where they are networks (``complexity_stages``).
    """
    codec, model = pipeline.codec, pipeline.model
    if isinstance(codec, FeatureCodec):
        stored = bitstreams.get(sample.image_id) if bitstreams is not None else None
        data = stored.data if stored is not None else codec.encode(model.features(sample.image))
        return measure_complexity(model, sample.image, codec=codec, decoded=codec.decode(data))
    if isinstance(codec, ImageCodec):
        stored = bitstreams.get(sample.image_id) if bitstreams is not None else None
        return measure_complexity(
            model, codec.decode(stored.data if stored is not None else codec.encode(sample.image))
        )
    return measure_complexity(model, sample.image)
