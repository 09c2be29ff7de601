"""Schemas of ``pipeline=quant`` and ``pipeline=quant8`` and their choices (docs/quant.md)."""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from vcm_eval.pipelines.config import PipelineConfig
from vcm_eval.utils.choices import Choice


class SideDtype(Choice):
    """The dtype of the side information (mu, sigma, centroids, min/max); the order is the stream's."""

    float16 = "float16"
    float32 = "float32"


class CentroidScope(Choice):
    """One reconstruction value per ``channel`` and symbol, or per ``level`` and symbol (stream order)."""

    channel = "channel"
    level = "level"


class EntropyModel(Choice):
    """How the symbols are coded: the paper's fixed bits (``raw``), one distribution per level
    (``static``) or neighbour contexts (``causal``); the order is the stream's."""

    raw = "raw"
    static = "static"
    causal = "causal"


@dataclass
class QuantConfig(PipelineConfig):
    """Method A: per-channel normalization + ``n_symbols``-interval quantization, threshold ``z``.

    ``levels``: ``p2-p6`` (a range) or ``p2+p3`` (a list) of coded levels.
    """

    name: str = "quant"
    _target_: str = "vcm_eval.codecs.quant.NormalizedQuantizer"
    n_symbols: int = 4
    z: float = 1.5
    levels: str = "p2-p6"
    side_dtype: SideDtype = SideDtype.float16
    centroids: CentroidScope = CentroidScope.channel
    entropy_model: EntropyModel = EntropyModel.causal


@dataclass
class Quant8Config(PipelineConfig):
    """The paper's 8-bit features: uniform 8-bit quantization of each level (min/max sent)."""

    name: str = "quant8"
    _target_: str = "vcm_eval.codecs.quant.Uniform8bitQuantizer"
    levels: str = "p2-p6"
    side_dtype: SideDtype = SideDtype.float32


def register(cs: ConfigStore) -> None:
    cs.store(group="pipeline", name="base_quant", node=QuantConfig)
    cs.store(group="pipeline", name="base_quant8", node=Quant8Config)
