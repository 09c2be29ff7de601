"""Optional backend: detectron2's own GeneralizedRCNN as a ``TaskModel``
(``model._target_=vcm_eval.vision.detectron2_rcnn.Detectron2Rcnn``).

For users who have detectron2 installed and want its exact code path. The split is detectron2's
own seam, called explicitly in the order of ``GeneralizedRCNN.inference``: ``preprocess_image`` ->
``backbone`` (P2..P6) | ``proposal_generator`` -> ``roi_heads`` -> ``detector_postprocess``.
The network is described by the same ``RcnnConfig`` as the default backend (the presets in
conf/model/*_r50_fpn.yaml), translated to a detectron2 ``CfgNode`` by ``d2_cfg``; weights are
loaded with detectron2's ``DetectionCheckpointer`` (model-zoo .pkl or .pth).

Importing this module needs detectron2 (``vcm_eval.vision.registry`` turns the ImportError into
a ``ConfigError`` that says how to install it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import ImageList
from omegaconf import DictConfig, OmegaConf

from vcm_eval.errors import ConfigError
from vcm_eval.utils.components import Runtime
from vcm_eval.vision.base import LEVELS, FeatureSet, Instances, TaskModel
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, resolve_weights

_DEPTHS = {"resnet50": 50, "resnet101": 101}


def d2_cfg(cfg: RcnnConfig) -> CfgNode:
    """detectron2 config of the R-CNN an ``RcnnConfig`` describes (Base-RCNN-FPN + overrides)."""
    if cfg.backbone.arch not in _DEPTHS:
        raise ConfigError(
            f"the detectron2 backend needs model.backbone.arch in {sorted(_DEPTHS)}, not {cfg.backbone.arch!r}"
        )
    if cfg.pixel_scale != 255.0:
        raise ConfigError(
            f"model.backend=detectron2 feeds 0..255 pixels: set model.pixel_scale=255 (got {cfg.pixel_scale})"
        )
    c = get_cfg()
    c.MODEL.DEVICE = "cpu"
    c.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    c.MODEL.MASK_ON = bool(cfg.with_masks)
    c.MODEL.PIXEL_MEAN, c.MODEL.PIXEL_STD = list(cfg.image_mean), list(cfg.image_std)
    c.INPUT.FORMAT = cfg.input_format
    c.INPUT.MIN_SIZE_TEST, c.INPUT.MAX_SIZE_TEST = int(cfg.min_size), int(cfg.max_size)
    c.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    c.MODEL.RESNETS.DEPTH = _DEPTHS[cfg.backbone.arch]
    c.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    c.MODEL.RESNETS.STRIDE_IN_1X1 = bool(cfg.backbone.stride_in_1x1)
    c.MODEL.RESNETS.NORM = "FrozenBN" if cfg.backbone.norm == "frozen_bn" else "BN"
    c.MODEL.RESNETS.NUM_GROUPS = int(cfg.backbone.groups)  # ResNeXt: X101-FPN is 32 x 8
    c.MODEL.RESNETS.WIDTH_PER_GROUP = int(cfg.backbone.width_per_group)
    c.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    c.MODEL.FPN.OUT_CHANNELS = int(cfg.backbone.fpn_channels)
    c.MODEL.ANCHOR_GENERATOR.SIZES = [[int(s)] for s in cfg.anchor_sizes]
    c.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[float(r) for r in cfg.aspect_ratios]]
    c.MODEL.RPN.IN_FEATURES = list(LEVELS)
    c.MODEL.RPN.PRE_NMS_TOPK_TEST = int(cfg.rpn_pre_nms_top_n_test)
    c.MODEL.RPN.POST_NMS_TOPK_TEST = int(cfg.rpn_post_nms_top_n_test)
    c.MODEL.RPN.NMS_THRESH = float(cfg.rpn_nms_thresh)
    c.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    c.MODEL.ROI_HEADS.IN_FEATURES = list(LEVELS[:4])
    c.MODEL.ROI_HEADS.NUM_CLASSES = len(cfg.class_names)
    c.MODEL.ROI_HEADS.SCORE_THRESH_TEST = float(cfg.box_score_thresh)
    c.MODEL.ROI_HEADS.NMS_THRESH_TEST = float(cfg.box_nms_thresh)
    c.TEST.DETECTIONS_PER_IMAGE = int(cfg.detections_per_img)
    pooler = "ROIAlignV2" if cfg.roi_align_aligned else "ROIAlign"
    c.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    c.MODEL.ROI_BOX_HEAD.NUM_CONV = 4 if cfg.box_head_type == "4conv1fc" else 0
    c.MODEL.ROI_BOX_HEAD.CONV_DIM = int(cfg.backbone.fpn_channels)
    c.MODEL.ROI_BOX_HEAD.NUM_FC = 1 if cfg.box_head_type == "4conv1fc" else 2
    c.MODEL.ROI_BOX_HEAD.FC_DIM = int(cfg.box_head_dim)
    c.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    c.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = int(cfg.roi_sampling_ratio)
    c.MODEL.ROI_BOX_HEAD.POOLER_TYPE = pooler
    if len(set(cfg.mask_head_channels)) != 1:
        raise ConfigError(
            f"detectron2's mask head has equal conv widths; model.mask_head_channels={list(cfg.mask_head_channels)}"
        )
    c.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    c.MODEL.ROI_MASK_HEAD.NUM_CONV = len(cfg.mask_head_channels)
    c.MODEL.ROI_MASK_HEAD.CONV_DIM = int(cfg.mask_head_channels[0])
    c.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
    c.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = int(cfg.roi_sampling_ratio)
    c.MODEL.ROI_MASK_HEAD.POOLER_TYPE = pooler
    c.freeze()
    return c


class Detectron2Rcnn(TaskModel):
    """detectron2's GeneralizedRCNN split at the FPN.

    Args:
        cfg: the same model config as the torchvision backend; ``weights`` must be a detectron2
            checkpoint (or None for the random initialization, in tests).
        model: an already built detectron2 model (tests share one between backends).
    """

    def __init__(self, cfg: RcnnConfig, *, model: torch.nn.Module | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.class_names = tuple(cfg.class_names)
        self.d2_cfg = d2_cfg(cfg)
        self._fingerprint_src = "detectron2" + json.dumps(asdict(cfg), sort_keys=True)
        if model is None:
            model = build_model(self.d2_cfg)
            if cfg.weights:
                path = resolve_weights(cfg.weights)
                DetectionCheckpointer(model).load(str(path))
                self._fingerprint_src += hashlib.sha256(path.read_bytes()).hexdigest()
        self.model: Any = model.eval()  # a detectron2 GeneralizedRCNN
        self.resize = T.ResizeShortestEdge([cfg.min_size, cfg.min_size], cfg.max_size)

    @classmethod
    def from_config(cls, cfg: DictConfig, runtime: Runtime) -> Detectron2Rcnn:
        """The ``model`` group's network in detectron2 (it runs where detectron2 puts it; the device is unused)."""
        return cls(OmegaConf.to_object(cfg.model))  # type: ignore[arg-type]

    @torch.inference_mode()
    def features(self, image: np.ndarray) -> FeatureSet:
        pixels = image[:, :, ::-1] if self.cfg.input_format == "BGR" else image
        pixels = self.resize.get_transform(pixels).apply_image(np.ascontiguousarray(pixels))
        tensor = torch.as_tensor(np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32))
        images = self.model.preprocess_image([{"image": tensor}])
        feats = self.model.backbone(images.tensor)
        h, w = images.image_sizes[0]
        levels = {name: feats[name][0] for name in LEVELS}
        return FeatureSet(
            levels=levels, image_size=(int(image.shape[0]), int(image.shape[1])), input_size=(int(h), int(w))
        )

    def rebuild_p6(self, p5: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.backbone.top_block(p5[None])[0][0]

    @torch.inference_mode()
    def predict_from_features(self, features: FeatureSet) -> Instances:
        levels = self.all_levels(features)
        feats: dict[str, Any] = {name: levels[name][None].float() for name in LEVELS}
        p2 = feats["p2"]
        images = ImageList(torch.empty((1, 0, p2.shape[-2] * 4, p2.shape[-1] * 4)), [features.input_size])
        proposals, _ = self.model.proposal_generator(images, feats, None)
        results, _ = self.model.roi_heads(images, feats, proposals, None)
        out = detector_postprocess(results[0], *features.image_size)
        masks = out.pred_masks.numpy().astype(bool) if out.has("pred_masks") else None
        return Instances(
            boxes=out.pred_boxes.tensor.float().numpy(),
            scores=out.scores.float().numpy(),
            labels=out.pred_classes.numpy().astype(np.int64) + 1,
            masks=masks,
        )
