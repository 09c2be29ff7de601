"""Schema of ``pipeline=image_anchor``."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from vcm_eval.pipelines.config import PipelineConfig


@dataclass
class ImageAnchorConfig(PipelineConfig):
    """Pipeline 1: VVC intra coding of the image at ``qp`` (0..63), with the ``vvc`` group's encoder."""

    name: str = "image_anchor"
    _target_: str = "vcm_eval.codecs.image_anchor.VvcImageCodec"
    qp: int = 32


def register(cs: ConfigStore) -> None:
    cs.store(group="pipeline", name="base_image_anchor", node=ImageAnchorConfig)
