"""The default task network: torchvision's Mask R-CNN / Faster R-CNN, split at the FPN.

The split calls torchvision's own modules in the order of ``GeneralizedRCNN.forward`` (transform,
backbone, rpn, roi_heads, postprocess), so ``predict`` equals the unsplit forward pass exactly
(``tests/test_task_model.py``). Nothing is monkeypatched: the seam is two plain method calls.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from vcm_eval.errors import CheckpointError, ConfigError
from vcm_eval.vision.backbone import build_fpn_backbone
from vcm_eval.vision.base import LEVELS, FeatureSet, Instances, TaskModel

CHECKPOINT_FORMAT = "vcm_eval.task_model/1"
ZOO_DIR = Path(__file__).resolve().parent / "zoo"
_TV_KEYS = ("0", "1", "2", "3", "pool")  # torchvision's names for P2..P6


@dataclass
class BackboneConfig:
    """ResNet body of the FPN (see ``vcm_eval.vision.backbone``)."""

    arch: str = "slim"
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    stem_width: int = 32
    fpn_channels: int = 256


@dataclass
class RcnnConfig:
    """Architecture and test-time settings of a torchvision R-CNN task model.

    ``weights`` is a checkpoint path; ``zoo:<file>`` names a file shipped in vcm_eval/vision/zoo.
    The architecture fields must match the checkpoint (checked on load).
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

    def architecture(self) -> dict[str, Any]:
        """The fields a checkpoint must agree with (test-time thresholds excluded)."""
        keep = ("backbone", "class_names", "with_masks", "anchor_sizes", "aspect_ratios", "box_head_dim", "mask_head_channels")
        d = asdict(self)
        return {k: d[k] for k in keep}


def build_rcnn(cfg: RcnnConfig) -> MaskRCNN | FasterRCNN:
    """A torchvision Mask R-CNN (or Faster R-CNN when ``with_masks`` is false) from config."""
    bb = cfg.backbone
    if bb.fpn_channels <= 0 or not cfg.class_names:
        raise ConfigError("model.backbone.fpn_channels must be > 0 and model.class_names non-empty")
    backbone = build_fpn_backbone(
        arch=bb.arch, fpn_channels=bb.fpn_channels, widths=bb.widths, blocks=bb.blocks, stem_width=bb.stem_width
    )
    n_cls = len(cfg.class_names) + 1
    anchors = AnchorGenerator(
        sizes=tuple((s,) for s in cfg.anchor_sizes), aspect_ratios=(tuple(cfg.aspect_ratios),) * len(cfg.anchor_sizes)
    )
    pooled = bb.fpn_channels * 7 * 7
    common: dict[str, Any] = dict(
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        image_mean=list(cfg.image_mean),
        image_std=list(cfg.image_std),
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(pooled, cfg.box_head_dim),
        box_predictor=FastRCNNPredictor(cfg.box_head_dim, n_cls),
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.detections_per_img,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
    )
    if not cfg.with_masks:
        return FasterRCNN(backbone, **common)
    mask_ch = list(cfg.mask_head_channels)
    return MaskRCNN(
        backbone,
        mask_head=MaskRCNNHeads(bb.fpn_channels, mask_ch, 1),
        mask_predictor=MaskRCNNPredictor(mask_ch[-1], mask_ch[-1], n_cls),
        **common,
    )


def resolve_weights(weights: str) -> Path:
    """``zoo:<file>`` -> the shipped file; anything else is a path."""
    return ZOO_DIR / weights[4:] if weights.startswith("zoo:") else Path(weights).expanduser()


def save_checkpoint(path: Path, model: torch.nn.Module, cfg: RcnnConfig, *, meta: dict[str, Any], half: bool) -> None:
    """Write a weights-only checkpoint (loadable with ``torch.load(weights_only=True)``)."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "architecture": cfg.architecture(), "meta": meta, "state_dict": state}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, cfg: RcnnConfig) -> dict[str, torch.Tensor]:
    """Read a checkpoint and check it matches ``cfg``; returns its float32 state dict."""
    if not path.is_file():
        raise CheckpointError(
            f"task model weights {path} do not exist; set model.weights to a checkpoint, or train one with "
            "`python -m vcm_eval.vision.train`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"cannot read task model checkpoint {path}: {exc}; re-download or retrain it") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a vcm_eval task model checkpoint (format {CHECKPOINT_FORMAT})")
    want, have = cfg.architecture(), payload["architecture"]
    diff = sorted(k for k in want if want[k] != have.get(k))
    if diff:
        detail = "; ".join(f"{k}: config {want[k]} vs checkpoint {have.get(k)}" for k in diff)
        raise CheckpointError(f"checkpoint {path} does not match the configured model ({detail}); fix model.* or model.weights")
    return {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}


class TorchvisionRcnn(TaskModel):
    """Torchvision Mask/Faster R-CNN as a ``TaskModel``.

    Args:
        cfg: architecture, test-time settings and weights.
        model: an already built network (training uses this); if None it is built from cfg
            and the weights loaded.
    """

    def __init__(self, cfg: RcnnConfig, *, model: MaskRCNN | FasterRCNN | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.class_names = tuple(cfg.class_names)
        self._fingerprint_src = json.dumps(asdict(cfg), sort_keys=True)
        if model is None:
            model = build_rcnn(cfg)
            if cfg.weights:
                path = resolve_weights(cfg.weights)
                model.load_state_dict(load_checkpoint(path, cfg))
                self._fingerprint_src += hashlib.sha256(path.read_bytes()).hexdigest()
        self.model = model.eval()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self._fingerprint_src.encode()).hexdigest()[:16]

    @torch.inference_mode()
    def features(self, image: np.ndarray) -> FeatureSet:
        tensor = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0)
        images, _ = self.model.transform([tensor])
        feats = self.model.backbone(images.tensors)
        levels = {name: feats[key][0] for name, key in zip(LEVELS, _TV_KEYS)}
        h, w = images.image_sizes[0]
        return FeatureSet(levels=levels, image_size=(int(image.shape[0]), int(image.shape[1])), input_size=(int(h), int(w)))

    def rebuild_p6(self, p5: torch.Tensor) -> torch.Tensor:
        top = self.model.backbone.fpn.extra_blocks
        with torch.inference_mode():
            return top([p5[None]], [p5[None]], ["3"])[0][-1][0]

    @torch.inference_mode()
    def predict_from_features(self, features: FeatureSet) -> Instances:
        levels = dict(features.levels)
        if "p6" not in levels:
            levels["p6"] = self.rebuild_p6(levels["p5"])
        missing = [lv for lv in LEVELS if lv not in levels]
        if missing:
            raise ConfigError(f"features lack levels {missing}; the detector needs p2..p5 (p6 is rebuilt)")
        feats = OrderedDict((key, levels[name][None].float()) for name, key in zip(LEVELS, _TV_KEYS))
        p2 = feats["0"]
        padded = torch.empty((1, 0, p2.shape[-2] * 4, p2.shape[-1] * 4))
        images = ImageList(padded, [features.input_size])
        proposals, _ = self.model.rpn(images, feats)
        detections, _ = self.model.roi_heads(feats, proposals, images.image_sizes)
        det = self.model.transform.postprocess(detections, images.image_sizes, [features.image_size])[0]
        return to_instances(det)


def to_instances(det: dict[str, torch.Tensor], mask_threshold: float = 0.5) -> Instances:
    """Torchvision's output dict -> ``Instances`` (masks binarized at 0.5 as torchvision does)."""
    masks = det.get("masks")
    return Instances(
        boxes=det["boxes"].float().numpy(),
        scores=det["scores"].float().numpy(),
        labels=det["labels"].numpy().astype(np.int64),
        masks=None if masks is None else (masks[:, 0] > mask_threshold).numpy(),
    )
