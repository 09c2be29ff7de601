"""Config schemas of the task models: plain dataclasses, no torch (``vcm_eval.config`` imports them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BackboneConfig:
    """ResNet body of the FPN (see ``vcm_eval.vision.backbone``)."""

    arch: str = "slim"
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    stem_width: int = 32
    fpn_channels: int = 256
    stride_in_1x1: bool = False  # MSRA layout of detectron2's ResNets (bottleneck arch only)
    norm: str = "bn"  # bn | frozen_bn


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
    backend: str = "torchvision"
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
    input_format: str = "RGB"  # RGB | BGR: channel order the weights expect
    pixel_scale: float = 1.0  # network input range 0..pixel_scale (detectron2: 255)
    resize: str = "torchvision"  # torchvision | detectron2 (PIL bilinear, ResizeShortestEdge rounding)
    anchor_generator: str = "torchvision"  # torchvision (rounded) | detectron2 (exact, fixed strides)
    roi_align_aligned: bool = False  # detectron2 ROIAlignV2: true
    roi_sampling_ratio: int = 2  # detectron2: 0 (adaptive)
    mask_paste: str = "torchvision"  # torchvision | detectron2 (grid_sample at pixel centres, >= 0.5)
    rpn_pre_nms_top_n_test: int = 1000
    rpn_rank: str = "sigmoid"  # sigmoid (torchvision) | logit (detectron2: no ties where sigmoid saturates)
    rpn_nms_thresh: float = 0.7
    box_head_type: str = "2fc"  # 2fc | 4conv1fc (4 conv of fpn_channels, one fc of box_head_dim)
    weights_format: str = "auto"  # auto | vcm_eval | torchvision | detectron2
    ignore_unmapped_weights: bool = False

    def architecture(self) -> dict[str, Any]:
        """The fields a checkpoint must agree with (test-time thresholds excluded)."""
        keep = ("backbone", "class_names", "with_masks", "anchor_sizes", "aspect_ratios", "box_head_dim", "mask_head_channels")
        d = asdict(self)
        return {k: d[k] for k in (*keep, "box_head_type")}
