"""Config schemas of the MSFC comparator: architecture, ``pipeline=msfc``, and its training (docs/msfc.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from vcm_eval.codecs.fusion.config import FeatureSource
from vcm_eval.pipelines.config import PipelineConfig
from vcm_eval.utils.choices import Choice, plain
from vcm_eval.utils.components import NOT_A_PARAM
from vcm_eval.vision.config import Precision, TrainingConfig


class FusedScale(Choice):
    """The FPN level whose scale the fused single-scale feature has: P5 (stride 32) or P4 (stride 16)."""

    p5 = "p5"
    p4 = "p4"


class MsffLayout(Choice):
    """``bottom_up``: top-down then bottom-up aggregation ("enhanced MSFC with bottom-up MSFF");
    ``direct``: every level resized to the fused scale and concatenated (the first MSFC's layout)."""

    bottom_up = "bottom_up"
    direct = "direct"


@dataclass
class MsfcArchConfig:
    """Shape of ``MsfcModel``: what training builds; every checkpoint stores its own.

    ``channels``: width of the fusion (MSFF) and reconstruction (MSFR) modules; ``code_channels``:
    the channels SSFC reduces the fused feature to, i.e. the channels VVC codes.
    """

    in_channels: int = 256
    channels: int = 64
    code_channels: int = 64
    scale: FusedScale = FusedScale.p5
    msff: MsffLayout = MsffLayout.bottom_up

    def as_dict(self) -> dict[str, Any]:
        """Plain values (choices as their text): what a checkpoint stores."""
        return dict(plain(asdict(self)))


@dataclass
class MsfcConfig(PipelineConfig):
    """``pipeline=msfc``: P2..P5 fused by the trained MSFF + SSFC, 10-bit min-max, one VVC picture at ``qp``.

    ``checkpoint`` empty = the zoo file ``<task model name>.pt`` in vcm_eval/codecs/msfc/zoo;
    ``zoo:<file>`` names a zoo file; otherwise a path. The VVC encoder comes from the ``vvc`` group.
    """

    name: str = "msfc"
    _target_: str = "vcm_eval.codecs.msfc.codec.MsfcFeatureCodec"
    qp: int = 37
    checkpoint: str = field(default="", metadata=NOT_A_PARAM)


@dataclass
class TrainMsfcSettings:
    """Training of the fusion (MSFF + SSFC encoder) and reconstruction (SSFC decoder + MSFR) modules.

    loss = weighted mean over P2..P5 of the level MSE (+ ``task_weight`` x the MSE of the frozen RPN
    head's outputs). No rate term: VVC makes the rate. ``noise`` > 0 adds uniform noise of
    ``noise`` 10-bit min-max steps to the fused code in training (a proxy of quantization and VVC
    error). Data: the fusion codec's (``vcm_eval.data.train_stream``: aligned random crops of P2..P5
    of the first ``train_images`` images of the dataset's train split, from the shared fp16 cache or
    ``online``).
    """

    iterations: int = 2200
    batch_size: int = 8  # the global batch (all processes)
    crop: int = 64  # P2 crop side, a multiple of 8 (P5 = P2 / 8)
    lr: float = 1e-3
    lr_drop_at: float = 0.8
    level_weights: list[float] = field(default_factory=lambda: [8.0, 2.0, 1.0, 1.0])  # P2..P5, as the fusion ladder
    task_weight: float = 0.0
    noise: float = 0.0
    train_images: int = 400
    features: FeatureSource = FeatureSource.cache
    cache_max_gb: float = 4.0
    grad_clip: float = 1.0
    precision: Precision = Precision.auto
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10
    workdir: str = "checkpoints/msfc"
    output: str = ""  # "" = the zoo file of the task model
    init_from: str = ""  # start from these modules (a path or zoo:<file>) instead of random weights


@dataclass
class TrainMsfcConfig(TrainingConfig):
    """conf/train_msfc.yaml: the MSFC modules for one task model (vcm_eval.codecs.msfc.train)."""

    arch: MsfcArchConfig = field(default_factory=MsfcArchConfig)
    train: TrainMsfcSettings = field(default_factory=TrainMsfcSettings)


def register(cs: ConfigStore) -> None:
    cs.store(group="pipeline", name="base_msfc", node=MsfcConfig)
    cs.store(name="base_train_msfc", node=TrainMsfcConfig)
