"""Pipeline name -> codec builder: the one visible table of what ``pipeline=<name>`` runs.

Every coding pipeline is a codec (``vcm_eval.codecs.base``) put into the pipeline its kind calls
for (``coding_pipeline``); the entries below only build their codec from the config. A
researcher's own codec needs no entry: ``pipeline=image_codec`` / ``pipeline=feature_codec`` with
``pipeline.codec._target_=<module.Class>`` and its keyword arguments (docs/your_codec.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from vcm_eval.codecs.base import Codec, FeatureCodec, ImageCodec
from vcm_eval.codecs.feature_anchor.codec import FeatureVvcCodec
from vcm_eval.codecs.image_anchor import VvcImageCodec
from vcm_eval.codecs.quant.nsymbol import NormalizedQuantizer
from vcm_eval.codecs.quant.uniform8 import Uniform8bitQuantizer
from vcm_eval.codecs.vvc.encoder import VvcEncoder
from vcm_eval.codecs.vvc.shipped import ShippedBitstreams
from vcm_eval.errors import ConfigError
from vcm_eval.pipelines.base import Pipeline, UncompressedPipeline, coding_pipeline
from vcm_eval.pipelines.cache import FeatureCache
from vcm_eval.utils.construct import from_config
from vcm_eval.vision.base import TaskModel

if TYPE_CHECKING:  # the fusion codec imports compressai: loaded only when that pipeline is built
    from vcm_eval.codecs.fusion.codec import FusionFeatureCodec


def build_vvc(codec_cfg: DictConfig) -> VvcEncoder:
    """The VVC tool from the ``codec`` config group."""
    return from_config(VvcEncoder, codec_cfg)


def feature_cache(cfg: DictConfig, model: TaskModel) -> FeatureCache | None:
    """The shared feature cache (``cache.features``, under ``paths.cache``), or None when off."""
    if "cache" not in cfg or not cfg.cache.features:
        return None
    return FeatureCache(root=Path(cfg.paths.cache), model=model, max_gb=cfg.cache.max_gb)


def _image_anchor(cfg: DictConfig) -> Codec:
    vvc = build_vvc(cfg.codec)
    shipped = ShippedBitstreams(cfg.codec.shipped) if cfg.codec.backend == "vtm" else None
    return VvcImageCodec(vvc=vvc, qp=cfg.pipeline.qp, colour=cfg.codec.colour, shipped=shipped, colour_ffmpeg=cfg.codec.colour_ffmpeg)


def _feature_anchor(cfg: DictConfig) -> Codec:
    p = cfg.pipeline
    vvc = build_vvc(cfg.codec)
    if not vvc.can_encode:
        raise ConfigError("the feature anchor with codec.backend=vtm needs codec.vtm_encoder and codec.vtm_cfg (no feature bitstreams are shipped)")
    return FeatureVvcCodec(vvc=vvc, qp=p.qp, levels=p.levels, minmax=p.minmax, chroma=p.chroma)


def _quant(cfg: DictConfig) -> Codec:
    p = cfg.pipeline
    return NormalizedQuantizer(
        p.n_symbols, p.z, levels=p.levels, side_dtype=p.side_dtype, centroids=p.centroids, entropy_model=p.entropy_model, threads=cfg.threads
    )


def _quant8(cfg: DictConfig) -> Codec:
    return Uniform8bitQuantizer(levels=cfg.pipeline.levels, side_dtype=cfg.pipeline.side_dtype, threads=cfg.threads)


def build_fusion_codec(cfg: DictConfig) -> tuple[FusionFeatureCodec, Path]:
    """The fusion codec of ``pipeline.quality`` / ``pipeline.checkpoint`` for ``cfg.model``, and its file."""
    from vcm_eval.codecs.fusion import zoo
    from vcm_eval.codecs.fusion.codec import FusionFeatureCodec

    p = cfg.pipeline
    path = zoo.resolve(p.checkpoint, task_model=cfg.model.name, quality=p.quality)
    fusion, _ = zoo.load(path)  # the architecture the checkpoint names
    return FusionFeatureCodec(model=fusion, device=cfg.get("device", "cpu"), checkpoint=path), path


def _fusion_codec(cfg: DictConfig) -> Codec:
    return build_fusion_codec(cfg)[0]


def user_codec(cfg: DictConfig, kind: type) -> Codec:
    """A researcher's codec: ``pipeline.codec`` instantiated by Hydra (``_target_`` + keyword arguments)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    spec = cfg.pipeline.codec
    if "_target_" not in spec:
        raise ConfigError(f"pipeline={cfg.pipeline.name} needs pipeline.codec._target_=<module.Class> of your {kind.__name__} (docs/your_codec.md)")
    try:
        codec = instantiate(spec)
    except InstantiationException as exc:
        raise ConfigError(f"cannot build pipeline.codec ({spec._target_}): {exc}; check the module is importable (PYTHONPATH) and its arguments") from exc
    if not isinstance(codec, kind) or not isinstance(codec, Codec):
        raise ConfigError(f"{spec._target_} is not a vcm_eval.codecs.base.{kind.__name__} (pipeline={cfg.pipeline.name}); subclass it")
    return codec


def user_codec_params(cfg: DictConfig) -> dict[str, Any]:
    """A user codec's parameters are its keyword arguments (what the run folder and the report show)."""
    spec = OmegaConf.to_container(cfg.pipeline.codec, resolve=True)
    assert isinstance(spec, dict)
    return {str(k): v for k, v in spec.items() if not str(k).startswith("_")}


def pipeline_params(cfg: DictConfig) -> dict[str, Any]:
    """The swept parameters of a pipeline config (every field but its name)."""
    return {k: v for k, v in cfg.pipeline.items() if k != "name"}


@dataclass(frozen=True)
class PipelineEntry:
    """How to build a pipeline's codec, its parameters, and which config groups change its results (run key).

    ``codec`` None: no codec (the uncompressed reference). ``named_by_codec``: the runs are filed
    and plotted under the codec's own ``name`` (user codecs), not the pipeline's.
    """

    codec: Callable[[DictConfig], Codec] | None
    uses: tuple[str, ...] = ()
    params: Callable[[DictConfig], dict[str, Any]] = pipeline_params
    named_by_codec: bool = False


PIPELINES: dict[str, PipelineEntry] = {
    "uncompressed": PipelineEntry(None),
    "image_anchor": PipelineEntry(_image_anchor, ("codec",), params=lambda cfg: {"qp": cfg.pipeline.qp}),
    "feature_anchor": PipelineEntry(_feature_anchor, ("codec",)),
    "quant": PipelineEntry(_quant),
    "quant8": PipelineEntry(_quant8),
    "fusion_codec": PipelineEntry(_fusion_codec, params=lambda cfg: {"quality": cfg.pipeline.quality}),
    "image_codec": PipelineEntry(lambda cfg: user_codec(cfg, ImageCodec), params=user_codec_params, named_by_codec=True),
    "feature_codec": PipelineEntry(lambda cfg: user_codec(cfg, FeatureCodec), params=user_codec_params, named_by_codec=True),
}


def pipeline_entry(name: str) -> PipelineEntry:
    if name not in PIPELINES:
        raise ConfigError(f"pipeline {name!r} is unknown; valid: {sorted(PIPELINES)} (or suite)")
    return PIPELINES[name]


def build_pipeline(cfg: DictConfig, model: TaskModel) -> Pipeline:
    entry = pipeline_entry(cfg.pipeline.name)
    if entry.codec is None:
        return UncompressedPipeline(model=model, cache=feature_cache(cfg, model))
    codec = entry.codec(cfg)
    name = (codec.name or type(codec).__name__.lower()) if entry.named_by_codec else cfg.pipeline.name
    cache = feature_cache(cfg, model) if isinstance(codec, FeatureCodec) else None
    return coding_pipeline(codec, model=model, name=name, params=entry.params(cfg), cache=cache)
