"""Video pipelines: a whole sequence through a codec and the task network (MPEG's FCM video conditions).

Three shapes, each running one ``VideoSequence`` at a time (frames streamed from disk, never held whole):

* ``SequenceImagePipeline`` - the image anchor for video: the sequence's 4:2:0 frames as one VVC stream
  (``VvcSequenceCodec``: the ``vvc`` group's encoder, the ``vvc_sequence`` group's structure and intra
  period; with ``vvc=vtm`` and no encoder, the shipped VTM streams), the decoded frames through the full
  network. Its rate is the VVC stream alone, as MPEG counts the image anchor.
* ``SequenceFeaturePipeline`` - the feature anchor for video: each frame's P2..P5 tiled into one 10-bit
  frame, the tiled frames coded as one VVC video (``FeatureSequenceCodec``); the decoded features through
  the rest of the network. Its rate is every byte of its container (the per-frame min-max ranges too).
* ``FramePipeline`` - any other pipeline (quant, quant8, fusion_codec, msfc, uncompressed, a researcher's
  codec): frame by frame with the image pipeline of ``build_pipeline``, each frame's bytes kept and counted;
  the sequence's bits are the sum of its frames'.

``run_sequence`` reports each finished frame through ``on_frame(index, ImageResult)`` (the engine writes the
records) and skips the network on frames in ``done`` (a resumed sequence); a sequence pipeline keeps its
stream in ``folder`` (``stream.bin`` + ``stream.json`` with its sha256) before decoding it, so a resumed
sequence decodes the kept stream instead of encoding again. ``reads`` are the config groups besides
``pipeline`` that decide its results: the run key hashes them (``vcm_eval.engine.video``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from omegaconf import DictConfig

from vcm_eval.codecs.feature_anchor.codec import FeatureVvcCodec
from vcm_eval.codecs.feature_anchor.sequence import FeatureSequenceCodec
from vcm_eval.codecs.image_anchor.codec import VvcImageCodec
from vcm_eval.codecs.vvc.colour import colour_ffmpeg, pad_to_even, rgb_to_yuv420, yuv420_to_rgb
from vcm_eval.codecs.vvc.external import QUIET, run_tool
from vcm_eval.codecs.vvc.sequence import CodedSequence, VvcSequenceCodec
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.data.sample import Sample
from vcm_eval.data.video.base import VideoSequence
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.pipelines.base import ImageResult, Pipeline, features_digest, measure_pipeline
from vcm_eval.pipelines.build import build_pipeline, feature_cache, pipeline_params, pipeline_reads, runtime_of
from vcm_eval.pipelines.cache import BitstreamStore, FeatureCache
from vcm_eval.utils.atomic import write_atomic
from vcm_eval.utils.components import Runtime, locate
from vcm_eval.vision.base import FeatureSet, Instances, TaskModel
from vcm_eval.vision.complexity import StageComplexity, measure_complexity

SEQUENCE_READS: tuple[str, ...] = ("vvc", "vvc_sequence")
OnFrame = Callable[[int, ImageResult], None]
T = TypeVar("T")


def first(items: Iterator[T], count: int) -> list[T]:
    """The first ``count`` items; a generator is then closed, so a decoder's process stops instead of decoding on."""
    out = list(islice(items, count))
    close = getattr(items, "close", None)
    if close is not None:
        close()
    return out


@dataclass(frozen=True)
class SequenceCoding:
    """What a sequence's coding adds to its frames' records.

    Attributes:
        stream_bits: the rate's bits of a sequence stream (None: a frame codec, whose frames' bits add up).
        side_bytes: bytes of the rate besides the VVC stream (the feature anchor's header and ranges).
        encode_s: seconds of the sequence's encoder (0 for frame codecs: each record has its own).
        extra: what else the sequence's result records (the coded intra period, the tiled frame size).
    """

    stream_bits: int | None = None
    side_bytes: int = 0
    encode_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class VideoPipeline(Protocol):
    """A configured video pipeline: name, parameters, what its key reads, one sequence at a time."""

    name: str
    params: dict[str, Any]
    reads: tuple[str, ...]
    rate_params: tuple[str, ...]
    sweep_params: tuple[str, ...]

    def provenance(self) -> dict[str, Any]: ...

    def tool_versions(self) -> dict[str, str]: ...

    def curve_version(self) -> str: ...

    def check(self, dataset: Iterable[VideoSequence]) -> None: ...

    def complexity(self, seq: VideoSequence, folder: Path, frames: int) -> list[StageComplexity]: ...

    def run_sequence(self, seq: VideoSequence, *, done: Collection[int], on_frame: OnFrame, folder: Path,
                     workers: int) -> SequenceCoding: ...  # fmt: skip


def keep_stream(folder: Path, data: bytes, meta: dict[str, Any]) -> None:
    """``folder/stream.json`` (sha256, length, ``meta``), then ``folder/stream.bin``: if it exists, both are whole."""
    info = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), **meta}
    write_atomic(folder / "stream.json", lambda f: f.write(json.dumps(info).encode()))
    write_atomic(folder / "stream.bin", lambda f: f.write(data))


def kept_stream(folder: Path) -> tuple[bytes, dict[str, Any]] | None:
    """The kept stream and its metadata, None when none was kept.

    Raises:
        CodecError: the files exist but the bytes do not match their checksum (never decoded silently).
    """
    path = folder / "stream.bin"
    if not path.is_file():
        return None
    try:
        meta = json.loads((folder / "stream.json").read_text())
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        raise CodecError(f"kept stream {path} has no readable stream.json ({exc}); delete both to re-encode") from exc
    if meta.get("bytes") != len(data) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
        raise CodecError(f"kept stream {path} is corrupt (checksum mismatch); delete it and stream.json to re-encode")
    return data, meta


def default_rgb(frame: Yuv420, ffmpeg: str) -> np.ndarray:
    """A decoded 10-bit frame -> uint8 RGB by FFmpeg's default matrix and range: the conversion that made the
    source's RGB frames (``VideoSequence.frames()``, as MPEG's SFU preparation), so the network sees coded
    frames exactly as it sees the originals."""
    height, width = frame.size
    cmd = [ffmpeg, *QUIET, "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{width}x{height}", "-i", "pipe:",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]  # fmt: skip
    return np.frombuffer(run_tool(cmd, stdin=frame.tobytes()), np.uint8).reshape(height, width, 3).copy()


def _windowed(jobs: Iterable[Callable[[], ImageResult] | None], workers: int, emit: Callable[[ImageResult], None],
              ) -> None:  # fmt: skip
    """Run the jobs (None: nothing to do for that frame) ``workers`` at a time; ``emit`` each result in the
    caller's thread as it finishes (the order does not matter: records are keyed by frame)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: set[Future[ImageResult]] = set()
        for job in jobs:
            if job is None:
                continue
            pending.add(pool.submit(job))
            if len(pending) >= max(1, workers):
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    emit(fut.result())
        for fut in pending:
            emit(fut.result())


def _period(configured: int, seq: VideoSequence) -> int:
    """``vvc_sequence.intra_period`` (0: the sequence's test condition)."""
    return configured or seq.intra_period


def listed_qp(seq: VideoSequence, rate_point: int, codec: VvcSequenceCodec, structure: str) -> int:
    """The intra slices' coded QP of ``seq`` at its ``rate_point``-th test-condition QP (1-based; MPEG's ``-q``):
    that ``-q`` + the encoder's ``IntraQPOffset``, so the encoder is given MPEG's ``-q`` itself.

    Raises:
        ConfigError: the sequence's list has no such point, or the QP is out of range.
    """
    if not seq.qps:
        raise ConfigError(f"vvc_sequence.rate_point={rate_point}: sequence {seq.name} has no test-condition QPs "
                          "(its dataset lists none: docs/video.md, Not done); set vvc_sequence.rate_point=0 and "
                          "pipeline.qp")  # fmt: skip
    if not 1 <= rate_point <= len(seq.qps):
        raise ConfigError(f"vvc_sequence.rate_point={rate_point}: sequence {seq.name} lists {len(seq.qps)} "
                          f"test-condition QPs {list(seq.qps)}; pick 1..{len(seq.qps)}, or set rate_point=0 and "
                          "pipeline.qp")  # fmt: skip
    qp = seq.qps[rate_point - 1] + codec.intra_qp_offset(structure)
    codec.base_qp(qp, structure)
    return qp


class _FixedRate:
    """What the sequence pipelines that code every sequence at their configured rate share: nothing to check."""

    def check(self, dataset: Iterable[VideoSequence]) -> None:
        """Nothing depends on the sequences: the configured parameters were checked when the pipeline was built."""


class SequenceImagePipeline:
    """The image anchor for video (module docstring): every sequence at ``qp``, or (``rate_point`` k >= 1) each at
    the k-th QP of its test-condition list, MPEG's ``-q`` (``qp_of``)."""

    reads: tuple[str, ...] = SEQUENCE_READS
    sweep_params: tuple[str, ...] = ()

    def __init__(self, *, model: TaskModel, codec: VvcSequenceCodec, qp: int, structure: str, intra_period: int = 0,
                 colour: str = "mpeg", colour_exe: str = "", name: str = "image_anchor", rate_point: int = 0,
                 params: dict[str, Any] | None = None) -> None:  # fmt: skip
        if rate_point < 0:
            raise ConfigError(f"vvc_sequence.rate_point={rate_point} must be >= 0 (0: every sequence at pipeline.qp)")
        self.model, self.codec, self.qp, self.structure = model, codec, qp, structure
        self.intra_period, self.colour, self._colour_exe = intra_period, colour, colour_exe
        self.rate_point = rate_point
        self.rate_params: tuple[str, ...] = ("rate_point",) if rate_point else ("qp",)
        self.name, self.params = name, dict(params or {self.rate_params[0]: rate_point or qp})
        codec.base_qp(qp, structure)  # a QP the structure cannot reach fails before anything is written

    def qp_of(self, seq: VideoSequence) -> int:
        """The intra slices' coded QP of ``seq``: ``qp``, or with a rate point the list's ``-q`` + ``IntraQPOffset``
        (the encoder then gets MPEG's ``-q`` itself, as the anchor's command line).

        Raises:
            ConfigError: the sequence's list has no such point, or its QP is out of range.
        """
        return listed_qp(seq, self.rate_point, self.codec, self.structure) if self.rate_point else self.qp

    def check(self, dataset: Iterable[VideoSequence]) -> None:
        """Every sequence's QP (``qp_of``), before anything is written."""
        for seq in dataset:
            self.qp_of(seq)

    def provenance(self) -> dict[str, Any]:
        return {"codec_version": self.codec.version()}

    def tool_versions(self) -> dict[str, str]:
        return self.codec.tool_versions()

    def curve_version(self) -> str:
        return self.codec.version()

    def _source(self, seq: VideoSequence) -> Iterator[Yuv420]:
        """The encoder's input: the raw 4:2:0 samples when the sequence has them, else its RGB frames through the
        ``vvc.colour`` path (MPEG's anchor scripts' FFmpeg conversion), padded to even sizes."""
        if seq.has_yuv:
            for planes in seq.yuv_frames():
                yield Yuv420(*planes)
            return
        exe = self._colour_exe or colour_ffmpeg("", self.colour, self.codec.ffmpeg)
        for frame in seq.frames():
            yield rgb_to_yuv420(pad_to_even(frame.image, self.colour), exe, self.colour)

    def _rgb(self, seq: VideoSequence, frame: Yuv420) -> np.ndarray:
        if seq.has_yuv:
            return default_rgb(frame, self.codec.ffmpeg)[: seq.height, : seq.width]
        exe = self._colour_exe or colour_ffmpeg("", self.colour, self.codec.ffmpeg)
        return yuv420_to_rgb(frame, exe, self.colour)[: seq.height, : seq.width]

    def coded(self, seq: VideoSequence, folder: Path) -> CodedSequence:
        """The sequence's stream: the kept one, else encoded now (and kept before anything decodes it)."""
        kept = kept_stream(folder)
        if kept is not None:
            data, m = kept
            return CodedSequence(data, int(m["frames"]), int(m["height"]), int(m["width"]), float(m["fps"]),
                                 int(m["qp"]), str(m["structure"]), int(m["intra_period"]), str(m["chroma"]),
                                 float(m["encode_s"]))  # fmt: skip
        segments = folder / "vtm_segments"  # VTM's finished intra periods: a killed encode resumes from them
        coded = self.codec.encode(self._source(seq), fps=seq.fps, qp=self.qp_of(seq), structure=self.structure,
                                  intra_period=_period(self.intra_period, seq), segments_dir=segments)  # fmt: skip
        if coded.frames != seq.frame_count:
            raise CodecError(f"{seq.name}: {coded.frames} frames were coded, the sequence has {seq.frame_count}")
        meta = {k: getattr(coded, k) for k in ("frames", "height", "width", "fps", "qp", "structure", "intra_period",
                                                "chroma", "encode_s")}  # fmt: skip
        keep_stream(folder, coded.data, meta)
        shutil.rmtree(segments, ignore_errors=True)  # the whole stream is kept now
        return coded

    def run_sequence(self, seq: VideoSequence, *, done: Collection[int], on_frame: OnFrame, folder: Path,
                     workers: int) -> SequenceCoding:  # fmt: skip
        """Code (or read the kept stream), decode frame by frame, run the full network on the frames not ``done``."""
        coded = self.coded(seq, folder)
        pixels, per_frame_encode = seq.width * seq.height, coded.encode_s / coded.frames
        if len(set(done) & set(range(coded.frames))) < coded.frames:

            def jobs() -> Iterator[Callable[[], ImageResult] | None]:
                clock = time.perf_counter()
                for k, frame in enumerate(self.codec.decode(coded)):
                    decode_s = time.perf_counter() - clock  # the decoder's time to this frame
                    yield None if k in done else self._job(seq, k, frame, pixels, per_frame_encode, decode_s)
                    clock = time.perf_counter()

            _windowed(jobs(), workers, lambda r: on_frame(int(r.extra.pop("frame")), r))
        return SequenceCoding(stream_bits=coded.bits, encode_s=coded.encode_s,
                              extra={"qp": coded.qp, "intra_period": coded.intra_period,
                                     "structure": coded.structure})  # fmt: skip

    def complexity(self, seq: VideoSequence, folder: Path, frames: int) -> list[StageComplexity]:
        """MACs of the first ``frames`` frames: the whole network on each decoded frame (VVC is not a network), as
        ``measure_pipeline`` counts an image codec; the kept stream is decoded only that far."""
        frames_out = first(self.codec.decode(self.coded(seq, folder)), frames)
        return [measure_complexity(self.model, self._rgb(seq, frame)) for frame in frames_out]

    def _job(self, seq: VideoSequence, k: int, frame: Yuv420, pixels: int, encode_s: float,
             decode_s: float) -> Callable[[], ImageResult]:  # fmt: skip
        def run() -> ImageResult:
            start = time.perf_counter()
            rgb = self._rgb(seq, frame)
            convert_s, start = time.perf_counter() - start, time.perf_counter()
            inst = self.model.predict(rgb)
            digest = hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()[:16]
            return ImageResult(0, pixels, encode_s, decode_s + convert_s, time.perf_counter() - start, inst,
                               {"frame": k, "decoded_sha256": digest})  # fmt: skip

        return run


class SequenceFeaturePipeline(_FixedRate):
    """The feature anchor for video (module docstring)."""

    reads: tuple[str, ...] = SEQUENCE_READS
    rate_params: tuple[str, ...] = ("qp",)
    sweep_params: tuple[str, ...] = ()

    def __init__(self, *, model: TaskModel, codec: FeatureSequenceCodec, intra_period: int = 0,
                 cache: FeatureCache | None = None, name: str = "feature_anchor",
                 params: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.model, self.codec, self.intra_period, self.cache = model, codec, intra_period, cache
        self.name, self.params = name, dict(params or {"qp": codec.qp})
        codec.vvc.base_qp(codec.qp, codec.structure)

    def provenance(self) -> dict[str, Any]:
        return {"codec_version": self.codec.version()}

    def tool_versions(self) -> dict[str, str]:
        return self.codec.vvc.tool_versions()

    def curve_version(self) -> str:
        return self.codec.version()

    def _features(self, seq: VideoSequence, timing: dict[str, float], digests: list[str]) -> Iterator[FeatureSet]:
        for frame in seq.frames():
            start = time.perf_counter()
            feats = self.model.features(frame.image) if self.cache is None else self.cache.features(frame.image)
            timing["features_s"] += time.perf_counter() - start
            digests.append(features_digest(feats))
            yield feats

    def run_sequence(self, seq: VideoSequence, *, done: Collection[int], on_frame: OnFrame, folder: Path,
                     workers: int) -> SequenceCoding:  # fmt: skip
        """Extract and pack every frame's features into the encoder (or read the kept stream), then decode frame by
        frame and run the rest of the network on the frames not ``done``."""
        kept = kept_stream(folder)
        if kept is None:
            timing, digests = {"features_s": 0.0}, list[str]()
            coded = self.codec.encode(self._features(seq, timing, digests), fps=seq.fps,
                                      intra_period=_period(self.intra_period, seq))  # fmt: skip
            meta: dict[str, Any] = {
                "frames": coded.frames, "stream_bytes": coded.stream_bytes, "frame_height": coded.frame_height,
                "frame_width": coded.frame_width, "encode_s": coded.encode_s - timing["features_s"],
                "features_s": timing["features_s"], "features_sha256": digests,
            }  # fmt: skip
            keep_stream(folder, coded.data, meta)
            data = coded.data
        else:
            data, meta = kept
        frames = int(str(meta["frames"]))
        encode_s, features_s = float(meta["encode_s"]) / frames, float(meta["features_s"]) / frames
        pixels = seq.width * seq.height
        digests = list(meta.get("features_sha256", []))
        if len(set(done) & set(range(frames))) < frames:

            def jobs() -> Iterator[Callable[[], ImageResult] | None]:
                clock = time.perf_counter()
                for k, feats in enumerate(self.codec.decode(data)):
                    decode_s = time.perf_counter() - clock
                    extra = {"frame": k, **({"features_sha256": digests[k]} if k < len(digests) else {})}
                    yield None if k in done else self._job(feats, pixels, encode_s, decode_s, features_s, extra)
                    clock = time.perf_counter()

            _windowed(jobs(), workers, lambda r: on_frame(int(r.extra.pop("frame")), r))
        side = len(data) - int(meta["stream_bytes"])
        return SequenceCoding(stream_bits=8 * len(data), side_bytes=side, encode_s=float(meta["encode_s"]),
                              extra={"frame_height": int(meta["frame_height"]),
                                     "frame_width": int(meta["frame_width"])})  # fmt: skip

    def complexity(self, seq: VideoSequence, folder: Path, frames: int) -> list[StageComplexity]:
        """MACs of the first ``frames`` frames: the network before the split on the frame, the network after it on
        the decoded features of the kept stream (VVC and the tiling are not networks)."""
        kept = kept_stream(folder)
        if kept is None:
            raise CodecError(f"{seq.name}: no kept stream in {folder} to count the complexity on; rerun the sequence")
        pairs = zip(first(seq.frames(), frames), first(self.codec.decode(kept[0]), frames), strict=True)
        return [measure_complexity(self.model, f.image, decoded=feats) for f, feats in pairs]

    def _job(self, feats: FeatureSet, pixels: int, encode_s: float, decode_s: float, features_s: float,
             extra: dict[str, Any]) -> Callable[[], ImageResult]:  # fmt: skip
        def run() -> ImageResult:
            start = time.perf_counter()
            inst: Instances = self.model.predict_from_features(feats)
            task_s = time.perf_counter() - start
            return ImageResult(0, pixels, encode_s, decode_s, features_s + task_s, inst, extra, features_s=features_s)

        return run


class FramePipeline(_FixedRate):
    """Any image pipeline, frame by frame (module docstring); each frame's bitstream kept under ``bitstreams/``."""

    sweep_params: tuple[str, ...] = ()

    def __init__(self, pipeline: Pipeline, *, reads: tuple[str, ...], keep: bool = True) -> None:
        self.pipeline, self.reads, self.keep = pipeline, reads, keep
        self.name, self.params = pipeline.name, pipeline.params
        codec = pipeline.codec
        self.rate_params = tuple(codec.rate_params) if codec else ()
        self.sweep_params = tuple(codec.sweep_params) if codec else ()

    def provenance(self) -> dict[str, Any]:
        return self.pipeline.provenance()

    def tool_versions(self) -> dict[str, str]:
        return self.pipeline.codec.tool_versions() if self.pipeline.codec else {}

    def curve_version(self) -> str:
        return self.pipeline.codec.curve_version() if self.pipeline.codec else ""

    def _store(self, folder: Path) -> BitstreamStore | None:
        return BitstreamStore(folder / "bitstreams") if self.keep and self.pipeline.codec else None

    def complexity(self, seq: VideoSequence, folder: Path, frames: int) -> list[StageComplexity]:
        """MACs of the first ``frames`` frames, as an image run counts them (``measure_pipeline``, kept bytes)."""
        store = self._store(folder)
        return [measure_pipeline(self.pipeline, Sample(f.index, f.image, Path(seq.name) / f"{f.index:06d}"),
                                 bitstreams=store) for f in first(seq.frames(), frames)]  # fmt: skip

    def run_sequence(self, seq: VideoSequence, *, done: Collection[int], on_frame: OnFrame, folder: Path,
                     workers: int) -> SequenceCoding:  # fmt: skip
        """Every frame not ``done`` through the image pipeline (its kept bitstream decoded on a rerun)."""
        store = self._store(folder)

        def job(sample: Sample) -> Callable[[], ImageResult]:
            def run() -> ImageResult:
                result = self.pipeline.process(sample, bitstreams=store)
                result.extra["frame"] = sample.image_id
                return result

            return run

        jobs = (None if f.index in done else job(Sample(f.index, f.image, Path(seq.name) / f"{f.index:06d}"))
                for f in seq.frames())  # fmt: skip
        _windowed(jobs, workers, lambda r: on_frame(int(r.extra.pop("frame")), r))
        return SequenceCoding()


def build_video_pipeline(cfg: DictConfig, model: TaskModel, runtime: Runtime | None = None) -> VideoPipeline:
    """The video pipeline of ``cfg.pipeline``: the image and feature anchors code whole sequences (with the
    ``vvc`` and ``vvc_sequence`` groups); every other pipeline runs frame by frame.

    Raises:
        ConfigError: a bad parameter (QP, levels, structure), checked before anything is written.
    """
    runtime = runtime or runtime_of(cfg)
    target = cfg.pipeline.get("_target_", "")
    cls = locate(target, "pipeline._target_") if target and "codec" not in cfg.pipeline else None
    params = pipeline_params(cfg)
    point = int(cfg.vvc_sequence.rate_point) if "vvc_sequence" in cfg else 0
    if point and cls is not VvcImageCodec:
        raise ConfigError(
            f"vvc_sequence.rate_point={point} picks the image anchor's test-condition QPs; "
            f"pipeline={cfg.pipeline.name} codes at its own parameters: set vvc_sequence.rate_point=0"
        )
    if cls is VvcImageCodec or cls is FeatureVvcCodec:
        if "vvc_sequence" not in cfg:
            raise ConfigError("a video run needs the vvc_sequence group (vvc_sequence=low_delay|random_access)")
        sequence = VvcSequenceCodec.from_settings(cfg.vvc, cfg.vvc_sequence)
        structure, period = str(cfg.vvc_sequence.structure), int(cfg.vvc_sequence.intra_period)
        p = cfg.pipeline
        if cls is VvcImageCodec:
            exe = cfg.vvc.colour_ffmpeg or ""
            if point:  # the rate point replaces pipeline.qp as the run's parameter
                params = {**{k: v for k, v in params.items() if k != "qp"}, "rate_point": point}
            return SequenceImagePipeline(model=model, codec=sequence, qp=p.qp, structure=structure,
                                         intra_period=period, colour=str(cfg.vvc.colour), colour_exe=exe,
                                         name=str(p.name), rate_point=point, params=params)  # fmt: skip
        codec = FeatureSequenceCodec(vvc=sequence, qp=p.qp, levels=str(p.levels), minmax=str(p.minmax),
                                     chroma=str(p.chroma), structure=structure)  # fmt: skip
        return SequenceFeaturePipeline(model=model, codec=codec, intra_period=period, cache=feature_cache(cfg, model),
                                       name=str(p.name), params=params)  # fmt: skip
    keep = bool(cfg.cache.bitstreams) if "cache" in cfg else True
    return FramePipeline(build_pipeline(cfg, model, runtime), reads=pipeline_reads(cfg), keep=keep)


def video_reads(cfg: DictConfig) -> tuple[str, ...]:
    """The config groups besides ``pipeline`` a video run's results depend on (without building anything)."""
    target = cfg.pipeline.get("_target_", "")
    cls = locate(target, "pipeline._target_") if target and "codec" not in cfg.pipeline else None
    return SEQUENCE_READS if cls is VvcImageCodec or cls is FeatureVvcCodec else pipeline_reads(cfg)
