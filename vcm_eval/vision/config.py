"""Config schemas of the task models: plain dataclasses, no torch (``vcm_eval.config`` imports them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from vcm_eval.data.config import DatasetConfig
from vcm_eval.utils.choices import Choice, choices, plain
from vcm_eval.utils.config import PathsConfig


class Arch(Choice):
    """``slim``: the embedded default's small ResNet; the others: torchvision's ResNets (detectron2's layout)."""

    slim = "slim"
    resnet18 = "resnet18"
    resnet34 = "resnet34"
    resnet50 = "resnet50"
    resnet101 = "resnet101"


class Norm(Choice):
    """Batch norm trained (``bn``) or frozen to an affine transform (``frozen_bn``, detectron2's)."""

    bn = "bn"
    frozen_bn = "frozen_bn"


class InputFormat(Choice):
    """The channel order the weights expect."""

    RGB = "RGB"
    BGR = "BGR"


class Convention(Choice):
    """Whose arithmetic a step follows: torchvision's or detectron2's (``vcm_eval.vision.d2_compat``)."""

    torchvision = "torchvision"
    detectron2 = "detectron2"


class RpnRank(Choice):
    """How proposals are ranked: ``sigmoid`` (torchvision) or ``logit`` (detectron2: no ties where sigmoid
    saturates)."""

    sigmoid = "sigmoid"
    logit = "logit"


# ``2fc``: two fully connected layers; ``4conv1fc``: 4 convs of fpn_channels, one fc of box_head_dim.
BoxHead = choices("BoxHead", ("2fc", "4conv1fc"), module=__name__)


class WeightsFormat(Choice):
    """How ``weights`` is read: by content (``auto``), or as a vcm_eval / torchvision / detectron2 file."""

    auto = "auto"
    vcm_eval = "vcm_eval"
    torchvision = "torchvision"
    detectron2 = "detectron2"


@dataclass
class BackboneConfig:
    """ResNet body of the FPN (see ``vcm_eval.vision.backbone``)."""

    arch: Arch = Arch.slim
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    stem_width: int = 32
    fpn_channels: int = 256
    stride_in_1x1: bool = False  # MSRA layout of detectron2's ResNets (bottleneck arch only)
    norm: Norm = Norm.bn
    # ResNeXt (bottleneck archs only): the 3x3 conv of every block has ``groups`` groups of
    # ``width_per_group`` channels at res2, doubling per stage. 1 x 64 is a plain ResNet;
    # detectron2's X101-FPN (RESNETS.NUM_GROUPS / WIDTH_PER_GROUP) is resnet101 with 32 x 8.
    groups: int = 1
    width_per_group: int = 64


@dataclass
class RcnnConfig:
    """Architecture and test-time settings of a torchvision R-CNN task model.

    ``weights`` is a checkpoint path; ``zoo:<file>`` names a file shipped in vcm_eval/vision/zoo.
    The architecture fields must match the checkpoint (checked on load). ``weights_format``:
    ``auto`` (by content), ``vcm_eval`` (``save_checkpoint``), ``torchvision`` (a plain state
    dict of this model) or ``detectron2`` (a model-zoo .pkl/.pth, see ``d2_weights``).

    The defaults are torchvision's behaviour; the detectron2 presets (conf/model/*_r50_fpn.yaml)
    set ``input_format=BGR``, ``pixel_scale=255`` (image_mean/std in those units),
    ``resize``/``anchor_generator``/``mask_paste=detectron2``, ``roi_align_aligned=true`` and
    ``roi_sampling_ratio=0`` (see ``vcm_eval.vision.d2_compat``).
    """

    name: str = "synthetic_maskrcnn_slim"
    _target_: str = "vcm_eval.vision.torchvision_rcnn.TorchvisionRcnn"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    class_names: list[str] = field(default_factory=lambda: ["person", "car", "bus"])
    with_masks: bool = True
    min_size: int = 256
    max_size: int = 512
    image_mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    image_std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    anchor_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    box_head_dim: int = 256
    mask_head_channels: list[int] = field(default_factory=lambda: [128, 128])
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    detections_per_img: int = 100
    rpn_post_nms_top_n_test: int = 1000
    box_batch_size_per_image: int = 256
    weights: str | None = "zoo:synthetic_maskrcnn_slim.pt"
    input_format: InputFormat = InputFormat.RGB
    pixel_scale: float = 1.0  # network input range 0..pixel_scale (detectron2: 255)
    resize: Convention = Convention.torchvision  # detectron2: PIL bilinear, ResizeShortestEdge rounding
    anchor_generator: Convention = Convention.torchvision  # torchvision: rounded; detectron2: exact, fixed strides
    roi_align_aligned: bool = False  # detectron2 ROIAlignV2: true
    roi_sampling_ratio: int = 2  # detectron2: 0 (adaptive)
    mask_paste: Convention = Convention.torchvision  # detectron2: grid_sample at pixel centres, >= 0.5
    rpn_pre_nms_top_n_test: int = 1000
    rpn_rank: RpnRank = RpnRank.sigmoid
    rpn_nms_thresh: float = 0.7
    box_head_type: BoxHead = BoxHead["2fc"]  # type: ignore[valid-type]
    weights_format: WeightsFormat = WeightsFormat.auto
    ignore_unmapped_weights: bool = False

    def architecture(self) -> dict[str, Any]:
        """The fields a checkpoint must agree with (test-time thresholds excluded)."""
        keep = (
            "backbone",
            "class_names",
            "with_masks",
            "anchor_sizes",
            "aspect_ratios",
            "box_head_dim",
            "mask_head_channels",
        )
        d = plain(asdict(self))
        return {k: d[k] for k in (*keep, "box_head_type")}


class Precision(Choice):
    """Mixed precision of a training step: ``auto`` = fp16 autocast + GradScaler on CUDA, off on the CPU."""

    auto = "auto"
    off = "off"
    fp16 = "fp16"
    bf16 = "bf16"


@dataclass
class TrainTaskSettings:
    """Training of a task network (``python -m vcm_eval.vision.train``; the defaults made the embedded one).

    AdamW with linear warm-up and cosine decay. Sample ``k`` of the run is image ``order[k % n]`` of a
    seeded permutation of the split's first ``train_size`` images (0 = all; the synthetic generator
    needs a number), flipped by a draw seeded with ``(seed, k)``, so a resumed run sees exactly the
    batches an uninterrupted one would. ``batch_size`` is the global batch: with several processes
    (torchrun, SLURM) each takes its share. ``finetune`` starts from ``model.weights`` (a model-zoo
    network fine-tuned on the configured dataset's train split) instead of random weights.
    ``precision``: ``bf16`` on the CPU ran 1.4x faster here, but a first attempt went NaN at
    iteration 235 and bf16 box coordinates lose pixels, so ``auto`` leaves the CPU in fp32.
    Non-finite losses or gradients skip the step (at most ``max_skipped`` times).
    """

    iterations: int = 700
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    grad_clip: float = 10.0
    max_skipped: int = 20
    seed: int = 0
    train_size: int = 20000
    hflip: bool = True
    precision: Precision = Precision.auto
    finetune: bool = False
    checkpoint_every: int = 25
    log_every: int = 10
    workdir: str = "checkpoints/task_model"
    output: str = "vcm_eval/vision/zoo/synthetic_maskrcnn_slim.pt"
    loader_workers: int = 1


@dataclass
class TrainingConfig:
    """What every training command shares: the task model, its data, paths, threads, progress bar."""

    model: RcnnConfig = MISSING
    dataset: DatasetConfig = MISSING  # any kind; its train split (dataset.split=train, train2017 for COCO)
    paths: PathsConfig = field(default_factory=PathsConfig)
    threads: int = 2
    device: str = "auto"  # where training runs (cuda:<LOCAL_RANK> under torchrun / SLURM); checkpoints saved on the CPU
    progress: bool = True
    dist_timeout_min: float = 60.0  # how long a rank waits for the others (rank 0 building a feature cache)


@dataclass
class TrainTaskConfig(TrainingConfig):
    """conf/train_task.yaml."""

    train: TrainTaskSettings = field(default_factory=TrainTaskSettings)


def register(cs: ConfigStore) -> None:
    cs.store(group="model", name="base_rcnn", node=RcnnConfig)
    cs.store(name="base_train_task", node=TrainTaskConfig)
