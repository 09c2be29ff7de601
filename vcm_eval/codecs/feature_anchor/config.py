"""Schema of ``pipeline=feature_anchor`` and its choices."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from vcm_eval.pipelines.config import PipelineConfig
from vcm_eval.utils.choices import Choice, choices

# P2..P5 (P6 rebuilt from the decoded P5) or all five levels: what the task model can run from.
AnchorLevels = choices("AnchorLevels", ("p2-p5", "p2-p6"), module=__name__)
# 400: a monochrome VVC stream; 420: neutral chroma planes coded too. The order is the stream's.
Chroma = choices("Chroma", ("420", "400"), module=__name__)


class MinMax(Choice):
    """10-bit min-max range per ``tensor`` (all coded levels) or per ``level`` (the stream's flag order)."""

    tensor = "tensor"
    level = "level"


@dataclass
class FeatureAnchorConfig(PipelineConfig):
    """Pipeline 2 feature anchor: FPN levels tiled into one 10-bit frame, VVC intra at ``qp``.

    See docs/feature_anchor.md.
    """

    name: str = "feature_anchor"
    _target_: str = "vcm_eval.codecs.feature_anchor.FeatureVvcCodec"
    qp: int = 32
    levels: AnchorLevels = AnchorLevels["p2-p5"]  # type: ignore[valid-type]
    minmax: MinMax = MinMax.tensor
    chroma: Chroma = Chroma["400"]  # type: ignore[valid-type]


def register(cs: ConfigStore) -> None:
    cs.store(group="pipeline", name="base_feature_anchor", node=FeatureAnchorConfig)
