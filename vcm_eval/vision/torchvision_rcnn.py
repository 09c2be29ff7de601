"""The default task network: torchvision's Mask R-CNN / Faster R-CNN, split at the FPN.

The split calls torchvision's own modules in the order of ``GeneralizedRCNN.forward`` (transform,
backbone, rpn, roi_heads, postprocess), so ``predict`` equals the unsplit forward pass exactly
(``tests/test_task_model.py``). Nothing is monkeypatched: the seam is two plain method calls.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from vcm_eval.device import resolve_device
from vcm_eval.errors import CheckpointError, ConfigError, load_failure
from vcm_eval.utils.choices import check_choices as check_dataclass_choices
from vcm_eval.utils.components import Runtime
from vcm_eval.vision.backbone import build_fpn_backbone
from vcm_eval.vision.base import LEVELS, FeatureSet, Instances, TaskModel
from vcm_eval.vision.config import RcnnConfig
from vcm_eval.vision.d2_compat import (
    AlignedRoIPooler,
    D2AnchorGenerator,
    LogitRankedRPN,
    d2_resize,
    paste_masks_aligned,
)
from vcm_eval.vision.d2_weights import d2_model_state, d2_state_for_model, looks_like_d2, read_d2_checkpoint

CHECKPOINT_FORMAT = "vcm_eval.task_model/1"
ZOO_DIR = Path(__file__).resolve().parent / "zoo"
_TV_KEYS = ("0", "1", "2", "3", "pool")  # torchvision's names for P2..P6


def architecture_diff(
    want: dict[str, Any], have: dict[str, Any], default: dict[str, Any], prefix: str = ""
) -> list[str]:
    """Keys where a checkpoint's architecture differs from the config's.

    A key an older checkpoint lacks counts as equal while the config holds its default value
    (fields added later default to the behaviour the older checkpoints were made with).
    """
    diff = []
    for k, v in want.items():
        if k not in have:
            if v != default.get(k):
                diff.append(f"{prefix}{k}: config {v} vs checkpoint (absent, i.e. {default.get(k)})")
        elif isinstance(v, dict) and isinstance(have[k], dict):
            diff += architecture_diff(v, have[k], default.get(k) or {}, f"{prefix}{k}.")
        elif v != have[k]:
            diff.append(f"{prefix}{k}: config {v} vs checkpoint {have[k]}")
    return diff


def build_rcnn(cfg: RcnnConfig) -> MaskRCNN | FasterRCNN:
    """A torchvision Mask R-CNN (or Faster R-CNN when ``with_masks`` is false) from config."""
    bb = cfg.backbone
    if bb.fpn_channels <= 0 or not cfg.class_names:
        raise ConfigError("model.backbone.fpn_channels must be > 0 and model.class_names non-empty")
    check_choices(cfg)
    backbone = build_fpn_backbone(
        arch=bb.arch,
        fpn_channels=bb.fpn_channels,
        widths=bb.widths,
        blocks=bb.blocks,
        stem_width=bb.stem_width,
        stride_in_1x1=bb.stride_in_1x1,
        norm=bb.norm,
        groups=bb.groups,
        width_per_group=bb.width_per_group,
    )
    n_cls = len(cfg.class_names) + 1
    sizes = tuple((s,) for s in cfg.anchor_sizes)
    anchors = (
        D2AnchorGenerator(sizes=cfg.anchor_sizes, aspect_ratios=cfg.aspect_ratios)
        if cfg.anchor_generator == "detectron2"
        else AnchorGenerator(sizes=sizes, aspect_ratios=(tuple(cfg.aspect_ratios),) * len(sizes))
    )
    if cfg.box_head_type == "4conv1fc":
        box_head: torch.nn.Module = FastRCNNConvFCHead(
            (bb.fpn_channels, 7, 7), [bb.fpn_channels] * 4, [cfg.box_head_dim]
        )
    else:
        box_head = TwoMLPHead(bb.fpn_channels * 7 * 7, cfg.box_head_dim)
    common: dict[str, Any] = {
        "min_size": cfg.min_size,
        "max_size": cfg.max_size,
        "image_mean": list(cfg.image_mean),
        "image_std": list(cfg.image_std),
        "rpn_anchor_generator": anchors,
        "box_roi_pool": _roi_pool(cfg, 7),
        "box_head": box_head,
        "box_predictor": FastRCNNPredictor(cfg.box_head_dim, n_cls),
        "box_score_thresh": cfg.box_score_thresh,
        "box_nms_thresh": cfg.box_nms_thresh,
        "box_detections_per_img": cfg.detections_per_img,
        "rpn_pre_nms_top_n_test": cfg.rpn_pre_nms_top_n_test,
        "rpn_post_nms_top_n_test": cfg.rpn_post_nms_top_n_test,
        "rpn_nms_thresh": cfg.rpn_nms_thresh,
        "box_batch_size_per_image": cfg.box_batch_size_per_image,
    }
    model: MaskRCNN | FasterRCNN
    if not cfg.with_masks:
        model = FasterRCNN(backbone, **common)
    else:
        mask_ch = list(cfg.mask_head_channels)
        model = MaskRCNN(
            backbone,
            mask_roi_pool=_roi_pool(cfg, 14),
            mask_head=MaskRCNNHeads(bb.fpn_channels, mask_ch, 1),
            mask_predictor=MaskRCNNPredictor(mask_ch[-1], mask_ch[-1], n_cls),
            **common,
        )
    if cfg.rpn_rank == "logit":  # same modules and weights, detectron2's ranking key
        model.rpn.__class__ = LogitRankedRPN
    return model


def check_choices(cfg: RcnnConfig) -> None:
    """Reject an unknown value of an enumerated model field, listing the valid ones."""
    check_dataclass_choices(cfg, "model")
    if cfg.pixel_scale <= 0:
        raise ConfigError(
            f"model.pixel_scale={cfg.pixel_scale} must be > 0 (1 for torchvision weights, 255 for detectron2)"
        )


def _roi_pool(cfg: RcnnConfig, size: int) -> torch.nn.Module | None:
    """The ROI pooler of the box (7) or mask (14) head; None = torchvision's default."""
    if cfg.roi_align_aligned:
        return AlignedRoIPooler(featmap_names=_TV_KEYS[:4], output_size=size, sampling_ratio=cfg.roi_sampling_ratio)
    if cfg.roi_sampling_ratio != 2:
        return MultiScaleRoIAlign(
            featmap_names=list(_TV_KEYS[:4]), output_size=size, sampling_ratio=cfg.roi_sampling_ratio
        )
    return None


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


def _read_torch(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(
            f"task model weights {path} do not exist; set model.weights to a checkpoint, or train one with "
            "`python -m vcm_eval.vision.train`"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read task model checkpoint {path}: {load_failure(exc)}; re-download or retrain it"
        ) from exc


def load_checkpoint(path: Path, cfg: RcnnConfig, payload: Any = None) -> dict[str, torch.Tensor]:
    """Read a checkpoint and check it matches ``cfg``; returns its float32 state dict."""
    if payload is None:
        payload = _read_torch(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a vcm_eval task model checkpoint (format {CHECKPOINT_FORMAT})")
    diff = architecture_diff(cfg.architecture(), payload["architecture"], RcnnConfig().architecture())
    if diff:
        detail = "; ".join(diff)
        raise CheckpointError(
            f"checkpoint {path} does not match the configured model ({detail}); fix model.* or model.weights"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}


def load_weights(path: Path, cfg: RcnnConfig, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict for a model (``target`` = its own state dict) from any supported format.

    ``auto``: a .pkl is a detectron2 model-zoo file; a torch file is a vcm_eval checkpoint if it
    says so, detectron2 if its keys are detectron2's (``backbone.bottom_up.*``), else a torchvision
    state dict of this model. Every tensor is mapped or the error lists it.
    """
    fmt = str(cfg.weights_format)
    payload = None if fmt == "detectron2" or (fmt == "auto" and path.suffix == ".pkl") else _read_torch(path)
    if fmt == "auto":
        state = payload.get("model", payload) if isinstance(payload, dict) else None
        if payload is None or (isinstance(state, dict) and looks_like_d2(state)):
            fmt = "detectron2"
        else:
            fmt = "vcm_eval" if isinstance(payload, dict) and "format" in payload else "torchvision"
    if fmt == "vcm_eval":
        return load_checkpoint(path, cfg, payload)
    if fmt == "detectron2":
        if cfg.pixel_scale != 255.0:
            raise ConfigError(
                f"detectron2 weights {path.name} expect 0..255 input but model.pixel_scale={cfg.pixel_scale}; "
                "use a detectron2 preset (model=cityscapes_mask_rcnn_r50_fpn, coco_mask_rcnn_r50_fpn, ...)"
            )
        d2_state = read_d2_checkpoint(path) if payload is None else d2_model_state(payload, path)
        norm = {"image_mean": list(cfg.image_mean), "image_std": list(cfg.image_std)}
        return d2_state_for_model(
            d2_state, target, ignore_unmapped=cfg.ignore_unmapped_weights, source=path.name, **norm
        )
    return torchvision_state_for_model(payload, target, ignore_unmapped=cfg.ignore_unmapped_weights, source=path.name)


def torchvision_state_for_model(
    payload: Any, target: dict[str, torch.Tensor], *, ignore_unmapped: bool, source: str
) -> dict[str, Any]:
    """A plain torchvision state dict checked key by key and shape by shape against the model."""
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source} is not a state dict of tensors; set model.weights_format to its format")
    state = dict[str, torch.Tensor](state)
    unmapped = sorted(k for k in state if k not in target)
    missing = sorted(k for k in target if k not in state and not k.endswith("num_batches_tracked"))
    wrong = [
        f"{k} {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in state.items()
        if v.shape != target.get(k, v).shape
    ]
    problems = [f"shape mismatch: {wrong[:8]}"] if wrong else []
    problems += [f"model tensors absent from the checkpoint: {missing[:12]}"] if missing else []
    if unmapped and not ignore_unmapped:
        problems.append(
            "checkpoint tensors not in the model (set model.ignore_unmapped_weights=true to skip them): "
            f"{unmapped[:20]}"
        )
    if problems:
        raise CheckpointError(f"cannot load torchvision weights {source}: " + " | ".join(problems))
    out = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items() if k in target}
    return {**{k: v for k, v in target.items() if k.endswith("num_batches_tracked")}, **out}


class TorchvisionRcnn(TaskModel):
    """Torchvision Mask/Faster R-CNN as a ``TaskModel``.

    Args:
        cfg: architecture, test-time settings and weights.
        model: an already built network (training uses this); if None it is built from cfg
            and the weights loaded.
    """

    def __init__(self, cfg: RcnnConfig, *, model: MaskRCNN | FasterRCNN | None = None, device: str = "cpu") -> None:
        self.cfg = cfg
        self.device = resolve_device(device)
        self.name = cfg.name
        self.class_names = tuple(cfg.class_names)
        self._fingerprint_src = json.dumps(asdict(cfg), sort_keys=True)
        if model is None:
            with torch.random.fork_rng():  # weights=None gives the same network in every process
                torch.manual_seed(0)
                model = build_rcnn(cfg)
            if cfg.weights:
                path = resolve_weights(cfg.weights)
                model.load_state_dict(load_weights(path, cfg, model.state_dict()))
                self._fingerprint_src += hashlib.sha256(path.read_bytes()).hexdigest()
        self.model = model.eval().to(self.device)

    @classmethod
    def from_config(cls, cfg: DictConfig, runtime: Runtime) -> TorchvisionRcnn:
        """The ``model`` group's network with its weights, on the runtime's device."""
        model: RcnnConfig = OmegaConf.to_object(cfg.model)  # type: ignore[assignment]
        return cls(model, device=runtime.device)

    @torch.inference_mode()
    def features(self, image: np.ndarray) -> FeatureSet:
        cfg, transform = self.cfg, self.model.transform
        pixels = np.array(image, dtype=np.uint8, copy=True)
        if cfg.resize == "detectron2":
            pixels = np.ascontiguousarray(d2_resize(pixels, min_size=cfg.min_size, max_size=cfg.max_size))
        tensor = torch.from_numpy(pixels).to(self.device).permute(2, 0, 1).float()
        if cfg.input_format == "BGR":
            tensor = tensor.flip(0)
        tensor = tensor.div_(255.0) if cfg.pixel_scale == 1.0 else tensor.mul_(cfg.pixel_scale / 255.0)
        if cfg.resize == "detectron2":  # already resized: normalize and pad only
            images = ImageList(
                transform.batch_images([transform.normalize(tensor)], transform.size_divisible),
                [tuple(tensor.shape[-2:])],
            )
        else:
            images, _ = transform([tensor])
        feats = self.model.backbone(images.tensors)
        levels = {name: feats[key][0].cpu() for name, key in zip(LEVELS, _TV_KEYS)}  # codecs and caches work on the CPU
        h, w = images.image_sizes[0]
        return FeatureSet(
            levels=levels, image_size=(int(image.shape[0]), int(image.shape[1])), input_size=(int(h), int(w))
        )

    def rebuild_p6(self, p5: torch.Tensor) -> torch.Tensor:
        top = self.model.backbone.fpn.extra_blocks
        with torch.inference_mode():
            p5 = p5[None].to(self.device)
            return top([p5], [p5], ["3"])[0][-1][0].cpu()

    @torch.inference_mode()
    def predict_from_features(self, features: FeatureSet) -> Instances:
        levels = self.all_levels(features)
        feats = OrderedDict((key, levels[name][None].float().to(self.device)) for name, key in zip(LEVELS, _TV_KEYS))
        p2 = feats["0"]
        padded = torch.empty((1, 0, p2.shape[-2] * 4, p2.shape[-1] * 4), device=self.device)
        images = ImageList(padded, [features.input_size])
        proposals, _ = self.model.rpn(images, feats)
        detections, _ = self.model.roi_heads(feats, proposals, images.image_sizes)
        detections = [{k: v.cpu() for k, v in d.items()} for d in detections]
        if self.cfg.mask_paste == "detectron2":
            return self._postprocess_d2(detections[0], features)
        det = self.model.transform.postprocess(detections, images.image_sizes, [features.image_size])[0]
        return to_instances(det)

    def _postprocess_d2(self, det: dict[str, torch.Tensor], features: FeatureSet) -> Instances:
        """detectron2's ``detector_postprocess``: scale boxes, clip, drop empty, paste masks aligned."""
        (in_h, in_w), (out_h, out_w) = features.input_size, features.image_size
        boxes = det["boxes"] * torch.tensor([out_w / in_w, out_h / in_h] * 2)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, out_w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, out_h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        masks = det.get("masks")
        return Instances(
            boxes=boxes[keep].float().numpy(),
            scores=det["scores"][keep].float().numpy(),
            labels=det["labels"][keep].numpy().astype(np.int64),
            masks=None if masks is None else paste_masks_aligned(masks[keep][:, 0], boxes[keep], features.image_size),
        )


def to_instances(det: dict[str, torch.Tensor], mask_threshold: float = 0.5) -> Instances:
    """Torchvision's output dict -> ``Instances`` (masks binarized at 0.5 as torchvision does)."""
    masks = det.get("masks")
    return Instances(
        boxes=det["boxes"].float().numpy(),
        scores=det["scores"].float().numpy(),
        labels=det["labels"].numpy().astype(np.int64),
        masks=None if masks is None else (masks[:, 0] > mask_threshold).numpy(),
    )
