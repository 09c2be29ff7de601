"""Pipeline name -> builder: the one visible table of what ``pipeline=<name>`` runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from vcm_eval.cache import FeatureCache
from vcm_eval.codecs.feature_vvc import FeatureVvcCodec
from vcm_eval.codecs.image import VvcImageCodec
from vcm_eval.codecs.quant import NormalizedQuantizer, codec_version
from vcm_eval.codecs.quant8 import Uniform8bitQuantizer
from vcm_eval.codecs.shipped import ShippedBitstreams
from vcm_eval.codecs.vvc import VvcCodec
from vcm_eval.construct import from_config
from vcm_eval.errors import ConfigError
from vcm_eval.pipelines.base import FeatureCodingPipeline, ImageCodingPipeline, Pipeline, UncompressedPipeline
from vcm_eval.vision.base import TaskModel

if TYPE_CHECKING:  # the fusion codec imports compressai: loaded only when that pipeline is built
    from vcm_eval.codecs.fusion.codec import FusionFeatureCodec


def build_vvc(codec_cfg: DictConfig) -> VvcCodec:
    """The VVC tool from the ``codec`` config group."""
    return from_config(VvcCodec, codec_cfg)


def feature_cache(cfg: DictConfig, model: TaskModel) -> FeatureCache | None:
    """The shared feature cache (``cache.features``, under ``paths.cache``), or None when off."""
    if "cache" not in cfg or not cfg.cache.features:
        return None
    return FeatureCache(root=Path(cfg.paths.cache), model=model, max_gb=cfg.cache.max_gb)


def _uncompressed(cfg: DictConfig, model: TaskModel) -> Pipeline:
    return UncompressedPipeline(model=model, cache=feature_cache(cfg, model))


def _image_anchor(cfg: DictConfig, model: TaskModel) -> Pipeline:
    vvc = build_vvc(cfg.codec)
    shipped = ShippedBitstreams(cfg.codec.shipped) if cfg.codec.backend == "vtm" else None
    codec = VvcImageCodec(vvc=vvc, qp=cfg.pipeline.qp, colour=cfg.codec.colour, shipped=shipped, colour_ffmpeg=cfg.codec.colour_ffmpeg)
    return ImageCodingPipeline(model=model, codec=codec, name="image_anchor", params={"qp": cfg.pipeline.qp}, version=codec.version())


def _feature_anchor(cfg: DictConfig, model: TaskModel) -> Pipeline:
    p = cfg.pipeline
    vvc = build_vvc(cfg.codec)
    if not vvc.can_encode:
        raise ConfigError("the feature anchor with codec.backend=vtm needs codec.vtm_encoder and codec.vtm_cfg (no feature bitstreams are shipped)")
    codec = FeatureVvcCodec(vvc=vvc, qp=p.qp, split=p.split, minmax=p.minmax, chroma=p.chroma)
    return FeatureCodingPipeline(
        model=model, codec=codec, name="feature_anchor", params=pipeline_params(cfg), version=vvc.version(), cache=feature_cache(cfg, model)
    )


def _quant(cfg: DictConfig, model: TaskModel) -> Pipeline:
    p = cfg.pipeline
    codec = NormalizedQuantizer(
        p.n_symbols, p.z, levels=p.levels, side_dtype=p.side_dtype, centroids=p.centroids, entropy_model=p.entropy_model, threads=cfg.threads
    )
    return FeatureCodingPipeline(
        model=model, codec=codec, name="quant", params=pipeline_params(cfg), version=codec_version(), cache=feature_cache(cfg, model)
    )


def _quant8(cfg: DictConfig, model: TaskModel) -> Pipeline:
    codec = Uniform8bitQuantizer(levels=cfg.pipeline.levels, side_dtype=cfg.pipeline.side_dtype, threads=cfg.threads)
    return FeatureCodingPipeline(
        model=model, codec=codec, name="quant8", params=pipeline_params(cfg), version=codec_version(), cache=feature_cache(cfg, model)
    )


def build_fusion_codec(cfg: DictConfig) -> tuple[FusionFeatureCodec, Path]:
    """The fusion codec of ``pipeline.quality`` / ``pipeline.checkpoint`` for ``cfg.model``, and its file."""
    from vcm_eval.codecs.fusion import zoo
    from vcm_eval.codecs.fusion.codec import FusionFeatureCodec
    from vcm_eval.codecs.fusion.config import FusionArchConfig

    p = cfg.pipeline
    path = zoo.resolve(p.checkpoint, task_model=cfg.model.name, quality=p.quality)
    fusion, _ = zoo.load(path, FusionArchConfig(**p.arch))
    return FusionFeatureCodec(model=fusion, device=cfg.get("device", "cpu")), path


def _fusion_codec(cfg: DictConfig, model: TaskModel) -> Pipeline:
    import hashlib

    codec, path = build_fusion_codec(cfg)
    version = f"fusion checkpoint {path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
    cache = feature_cache(cfg, model)
    return FeatureCodingPipeline(model=model, codec=codec, name="fusion_codec", params={"quality": cfg.pipeline.quality}, version=version, cache=cache)


@dataclass(frozen=True)
class PipelineEntry:
    """How to build a pipeline and which config groups change its results (for the run key)."""

    build: Callable[[DictConfig, TaskModel], Pipeline]
    uses: tuple[str, ...]


PIPELINES: dict[str, PipelineEntry] = {
    "uncompressed": PipelineEntry(_uncompressed, ()),
    "image_anchor": PipelineEntry(_image_anchor, ("codec",)),
    "feature_anchor": PipelineEntry(_feature_anchor, ("codec",)),
    "quant": PipelineEntry(_quant, ()),
    "quant8": PipelineEntry(_quant8, ()),
    "fusion_codec": PipelineEntry(_fusion_codec, ()),
}


def pipeline_entry(name: str) -> PipelineEntry:
    if name not in PIPELINES:
        raise ConfigError(f"pipeline {name!r} is unknown; valid: {sorted(PIPELINES)} (or suite)")
    return PIPELINES[name]


def build_pipeline(cfg: DictConfig, model: TaskModel) -> Pipeline:
    return pipeline_entry(cfg.pipeline.name).build(cfg, model)


def pipeline_params(cfg: DictConfig) -> dict[str, Any]:
    """The swept parameters of a pipeline config (every field but its name)."""
    return {k: v for k, v in cfg.pipeline.items() if k != "name"}
