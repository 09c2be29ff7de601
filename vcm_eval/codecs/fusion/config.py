"""Config schemas of the fusion codec: architecture, the pipeline, and its training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from vcm_eval.pipelines.config import PipelineConfig
from vcm_eval.utils.choices import Choice, plain
from vcm_eval.utils.components import NOT_A_PARAM
from vcm_eval.vision.config import Precision, TrainingConfig


class FusionEntropy(Choice):
    """``gmm``: Cheng et al. 2020's Gaussian mixture; ``meanscale``: the first generation's Gaussian."""

    meanscale = "meanscale"
    gmm = "gmm"


class DecoderLayout(Choice):
    """``parallel``: L-MSFC's per-level branches; ``cascade``: the first generation's."""

    parallel = "parallel"
    cascade = "cascade"


@dataclass
class FusionArchConfig:
    """Shape of ``FusionCodecModel``: what training builds; every checkpoint stores its own."""

    in_channels: int = 256
    channels: int = 64
    latent_channels: int = 64
    hyper_channels: int = 48
    entropy_model: FusionEntropy = (
        FusionEntropy.gmm
    )  # Cheng et al. 2020's mixture; "meanscale" was the first generation's
    attention: bool = True
    latent_stride: int = 32  # P2 needs the latent resolution (docs/fusion_codec.md, level swap); 64 = first generation
    decoder: DecoderLayout = DecoderLayout.parallel  # L-MSFC's per-level branches; "cascade" = first generation

    def as_dict(self) -> dict[str, Any]:
        """Plain values (choices as their text): what a checkpoint stores."""
        return dict(plain(asdict(self)))


@dataclass
class FusionCodecPipelineConfig(PipelineConfig):
    """``pipeline=fusion_codec``: evaluate the trained rate point ``quality`` (1 = lowest rate).

    ``checkpoint`` empty = the zoo file ``<task model name>_q<quality>.pt`` shipped in
    vcm_eval/codecs/fusion/zoo; otherwise a path (``zoo:<file>`` names a zoo file). The model is
    built with the architecture the checkpoint stores.
    """

    name: str = "fusion_codec"
    _target_: str = "vcm_eval.codecs.fusion.codec.FusionFeatureCodec"
    quality: int = 6
    checkpoint: str = field(default="", metadata=NOT_A_PARAM)


class FeatureSource(Choice):
    """Where training features come from: ``cache`` (bounded, fp16 on disk) or ``online`` (task network, per batch)."""

    cache = "cache"
    online = "online"


class LrSchedule(Choice):
    """``step``: lr / 10 at ``lr_drop_at`` of the run; ``plateau``: L-MSFC's ReduceLROnPlateau on a held-out loss."""

    step = "step"
    plateau = "plateau"


@dataclass
class TrainFusionSettings:
    """Training of one rate point: loss = bpp + lmbda * (weighted mean level MSE + task_weight * RPN-output MSE).

    bpp is per pixel of the input image the crop came from (a P2 crop of c x c covers 4c x 4c
    image pixels). Adam on the transforms, a separate Adam on the entropy bottleneck quantiles
    (CompressAI's aux loss). Images: the first ``train_images`` of the dataset's train split (0 =
    all); their features come from a bounded fp16 cache under ``paths.cache`` (``features=cache``,
    at most ``cache_max_gb``) or from the task network per batch (``online``); the two give the same
    batches (``vcm_eval.data.train_stream``). ``batch_size`` is the global batch (all processes).
    ``crop`` is the P2 crop side (0 = whole images, one per process); ``p6_weight`` adds the MSE of
    P6 = maxpool(P5) to the distortion as L-MSFC does (level weights 1 and p6_weight 1 = its 0.2 x
    sum over P2..P6). ``schedule=plateau`` halves (``plateau_factor``) the lr after
    ``plateau_patience`` validations without improvement on the last ``val_images`` images (held
    out), every ``val_every`` iterations, and stops at ``min_lr``.
    """

    quality: int = MISSING
    lmbda: float = MISSING
    lambdas: dict[str, float] = field(default_factory=dict)  # lambda per quality (q1: ...) a recipe's lmbda reads
    iterations: int = 3000
    batch_size: int = 8
    crop: int = 64
    lr: float = 1e-4
    aux_lr: float = 1e-2
    lr_drop_at: float = 0.8
    level_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])  # P2..P5 in the distortion
    task_weight: float = (
        0.0  # weight of the task-aware term: MSE of the frozen RPN's outputs on decoded vs original levels
    )
    train_images: int = 400
    features: FeatureSource = FeatureSource.cache
    cache_max_gb: float = 4.0
    crops_per_image: int = 1
    hflip: bool = False
    p6_weight: float = 0.0
    grad_clip: float = 1.0
    max_skipped: int = 0  # steps with a non-finite loss or gradient skipped before the run fails
    schedule: LrSchedule = LrSchedule.step
    val_images: int = 0
    val_every: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 9
    min_lr: float = 0.0
    precision: Precision = Precision.auto
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    workdir: str = "checkpoints/fusion_q${train.quality}"
    output: str = ""
    init_from: str = ""
    export_only: bool = (
        False  # write ``output`` from the work dir's last.pt without training (a snapshot of a running point)
    )


@dataclass
class TrainFusionConfig(TrainingConfig):
    """conf/train_fusion.yaml: one rate point of the fusion codec (vcm_eval.codecs.fusion.train)."""

    arch: FusionArchConfig = field(default_factory=FusionArchConfig)
    train: TrainFusionSettings = field(default_factory=TrainFusionSettings)


def register(cs: ConfigStore) -> None:
    cs.store(group="pipeline", name="base_fusion_codec", node=FusionCodecPipelineConfig)
    cs.store(name="base_train_fusion", node=TrainFusionConfig)
