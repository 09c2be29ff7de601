"""Build a run's pipeline from its config: the codec ``pipeline._target_`` names, in the shape its kind needs.

Every coding pipeline is a codec (``vcm_eval.codecs.base``) put into the pipeline its kind calls
for (``coding_pipeline``). A built-in codec builds itself (``from_config``) from the ``pipeline``
group and the groups it declares in ``reads``; a researcher's codec needs no entry anywhere:
``pipeline=image_codec`` / ``feature_codec`` with ``pipeline.codec._target_=<module.Class>`` and
its keyword arguments (docs/your_codec.md). ``pipeline=uncompressed`` has no codec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vcm_eval.codecs.base import Codec, FeatureCodec, ImageCodec
from vcm_eval.errors import ConfigError
from vcm_eval.pipelines.base import Pipeline, UncompressedPipeline, coding_pipeline
from vcm_eval.pipelines.cache import FeatureCache
from vcm_eval.utils.components import Runtime, build, locate, params_view, reads_of
from vcm_eval.vision.base import TaskModel


def _user_codec(cfg: DictConfig, kind: type[ImageCodec | FeatureCodec]) -> Codec:
    """A researcher's codec: ``pipeline.codec`` instantiated by Hydra (``_target_`` + keyword arguments)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    spec = cfg.pipeline.codec
    if "_target_" not in spec:
        raise ConfigError(
            f"pipeline={cfg.pipeline.name} needs pipeline.codec._target_=<module.Class> of your {kind.__name__} "
            "(docs/your_codec.md)"
        )
    try:
        codec = instantiate(spec)
    except InstantiationException as exc:
        raise ConfigError(
            f"cannot build pipeline.codec ({spec._target_}): {exc}; "
            "check the module is importable (PYTHONPATH) and its arguments"
        ) from exc
    if not isinstance(codec, kind):
        raise ConfigError(
            f"{spec._target_} is not a vcm_eval.codecs.base.{kind.__name__} (pipeline={cfg.pipeline.name}); subclass it"
        )
    return codec


def user_image_codec(cfg: DictConfig, runtime: Runtime) -> Codec:
    """``pipeline=image_codec``: a researcher's ``ImageCodec`` from ``pipeline.codec``."""
    return _user_codec(cfg, ImageCodec)


def user_feature_codec(cfg: DictConfig, runtime: Runtime) -> Codec:
    """``pipeline=feature_codec``: a researcher's ``FeatureCodec`` from ``pipeline.codec``."""
    return _user_codec(cfg, FeatureCodec)


def is_user_codec(cfg: DictConfig) -> bool:
    """Runs of a researcher's codec are filed and plotted under the codec's own name and arguments."""
    return "codec" in cfg.pipeline


def pipeline_reads(cfg: DictConfig) -> tuple[str, ...]:
    """The config groups besides ``pipeline`` that the pipeline's codec reads (its ``reads``)."""
    target = cfg.pipeline.get("_target_", "")
    return reads_of(locate(target, "pipeline._target_")) if target else ()


def pipeline_params(cfg: DictConfig) -> dict[str, Any]:
    """The parameters a run is filed and tabled under: the pipeline's settings, or a user codec's arguments."""
    if is_user_codec(cfg):
        spec = OmegaConf.to_container(cfg.pipeline.codec, resolve=True)
        if not isinstance(spec, dict):
            raise ConfigError("pipeline.codec must be a mapping of _target_ and keyword arguments")
        return {str(k): v for k, v in spec.items() if not str(k).startswith("_")}
    return params_view(cfg.pipeline)


def feature_cache(cfg: DictConfig, model: TaskModel) -> FeatureCache | None:
    """The shared feature cache (``cache.features``, under ``paths.cache``), or None when off."""
    if "cache" not in cfg or not cfg.cache.features:
        return None
    return FeatureCache(root=Path(cfg.paths.cache), model=model, max_gb=cfg.cache.max_gb)


def build_codec(cfg: DictConfig, runtime: Runtime | None = None) -> Codec | None:
    """The pipeline's codec (None for ``uncompressed``); parameters are validated here, before anything is written."""
    if not cfg.pipeline.get("_target_", ""):
        return None
    codec = build(cfg, "pipeline", runtime or runtime_of(cfg))
    if not isinstance(codec, Codec):
        raise ConfigError(
            f"pipeline._target_={cfg.pipeline._target_} built a {type(codec).__name__}, not a vcm_eval codec"
        )
    return codec


def runtime_of(cfg: DictConfig) -> Runtime:
    """How a run of ``cfg`` executes: its threads, resolved device, data folder and progress bars."""
    from vcm_eval.device import resolve_device

    return Runtime(
        threads=cfg.threads,
        device=str(resolve_device(cfg.device)),
        data_dir=Path(cfg.paths.data),
        progress=cfg.progress,
    )


def build_pipeline(cfg: DictConfig, model: TaskModel, runtime: Runtime | None = None) -> Pipeline:
    """The configured pipeline around ``model`` (``runtime`` default: ``runtime_of(cfg)``)."""
    codec = build_codec(cfg, runtime or runtime_of(cfg))
    if codec is None:
        return UncompressedPipeline(model=model, name=cfg.pipeline.name, cache=feature_cache(cfg, model))
    name = (codec.name or type(codec).__name__.lower()) if is_user_codec(cfg) else cfg.pipeline.name
    cache = feature_cache(cfg, model) if isinstance(codec, FeatureCodec) else None
    limits = dict(cfg.decode) if "decode" in cfg else None  # decode.* (DecodeLimits)
    return coding_pipeline(codec, model=model, name=name, params=pipeline_params(cfg), cache=cache, limits=limits)
