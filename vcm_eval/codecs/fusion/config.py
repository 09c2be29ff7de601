"""Config schemas of the fusion codec: architecture, the pipeline, and its training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class FusionArchConfig:
    """Shape of ``FusionCodecModel``: what training builds; every checkpoint stores its own."""

    in_channels: int = 256
    channels: int = 64
    latent_channels: int = 64
    hyper_channels: int = 48
    entropy_model: str = "gmm"  # Cheng et al. 2020's mixture; "meanscale" was the first generation's
    attention: bool = True
    latent_stride: int = 32  # P2 needs the latent resolution (docs/fusion_codec.md, level swap); 64 = first generation
    decoder: str = "parallel"  # L-MSFC's per-level branches; "cascade" = first generation

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FusionCodecPipelineConfig:
    """``pipeline=fusion_codec``: evaluate the trained rate point ``quality`` (1 = lowest rate).

    ``checkpoint`` empty = the zoo file ``<task model name>_q<quality>.pt`` shipped in
    vcm_eval/codecs/fusion/zoo; otherwise a path (``zoo:<file>`` names a zoo file). The model is
    built with the architecture the checkpoint stores.
    """

    name: str = "fusion_codec"
    quality: int = 6
    checkpoint: str = ""


@dataclass
class TrainFusionSettings:
    """Training of one rate point: loss = bpp + lmbda * (weighted mean level MSE + task_weight * RPN-output MSE).

    bpp is per pixel of the input image the crop came from (a P2 crop of c x c covers 4c x 4c
    image pixels). Adam on the transforms, a separate Adam on the entropy bottleneck quantiles
    (CompressAI's aux loss). Features of ``train_images`` synthetic train images are extracted once
    with the task model and cached (fp16) under ``paths.cache``.
    """

    quality: int = MISSING
    lmbda: float = MISSING
    iterations: int = 3000
    batch_size: int = 8
    crop: int = 64
    lr: float = 1e-4
    aux_lr: float = 1e-2
    lr_drop_at: float = 0.8
    level_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])  # P2..P5 in the distortion
    task_weight: float = 0.0  # weight of the task-aware term: MSE of the frozen RPN's outputs on decoded vs original levels
    train_images: int = 400
    seed: int = 0
    checkpoint_every: int = 50
    workdir: str = "checkpoints/fusion_q${train.quality}"
    output: str = ""
    init_from: str = ""
    export_only: bool = False  # write ``output`` from the work dir's last.pt without training (a snapshot of a running point)
