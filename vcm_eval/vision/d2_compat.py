"""detectron2's test-time behaviour as torchvision-compatible parts.

A detectron2 model-zoo network loaded into torchvision's Mask R-CNN computes the same function
only if the parts around the weights behave as in detectron2 too. torchvision differs in four
places, each replaced here by a small module or function selected by ``RcnnConfig``:

- anchors: torchvision rounds its cell anchors to integers and derives each level's stride from
  ``padded size // grid size`` (61 instead of 64 for P6 of an 800-pixel input); detectron2 keeps
  the exact ``w = sqrt(size^2 / ratio)``, ``h = ratio * w`` and fixed strides 4..64
  (``D2AnchorGenerator``);
- ROI pooling: ``MultiScaleRoIAlign`` uses ``aligned=False`` and ``sampling_ratio=2``;
  detectron2's ``ROIAlignV2`` pooler uses ``aligned=True`` (the half-pixel shift) and adaptive
  sampling (``AlignedRoIPooler``), with level ``floor(4 + log2(sqrt(area) / 224 + 1e-8))``;
- resizing: detectron2 resizes the uint8 image with PIL's bilinear filter to
  ``ResizeShortestEdge``'s rounded size (``d2_resize``), torchvision interpolates the float tensor;
- mask pasting: detectron2 samples each 28x28 mask at the pixel centres of its box with
  ``grid_sample`` and keeps ``>= 0.5`` (``paste_masks_aligned``).

Everything else (box decoding, NMS, softmax, FPN, RPN selection) is the same in both libraries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops import boxes as box_ops

FPN_STRIDES = (4, 8, 16, 32, 64)  # P2..P6


class D2AnchorGenerator(AnchorGenerator):
    """One anchor size per FPN level, ``aspect_ratios`` each, at detectron2's exact positions.

    Args:
        sizes: anchor side (pixels) of each level, P2 first (detectron2: 32..512).
        aspect_ratios: height / width ratios, the same on every level (0.5, 1, 2).
        strides: pixel stride of each level (4..64).
    """

    def __init__(
        self, *, sizes: Sequence[int], aspect_ratios: Sequence[float], strides: Sequence[int] = FPN_STRIDES
    ) -> None:
        super().__init__(sizes=tuple((int(s),) for s in sizes), aspect_ratios=(tuple(aspect_ratios),) * len(sizes))
        self.strides = tuple(int(s) for s in strides[: len(sizes)])

    def generate_anchors(
        self,
        scales: list[int],
        aspect_ratios: list[float],
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """Cell anchors [A, 4] (x0, y0, x1, y1) centred on 0, size-major then ratio, unrounded."""
        rows = []
        for size in scales:
            for ratio in aspect_ratios:
                w = math.sqrt(size * size / ratio)
                h = ratio * w
                rows.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        return torch.tensor(rows, dtype=dtype, device=device)

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        grid_sizes = [fm.shape[-2:] for fm in feature_maps]
        device = feature_maps[0].device
        strides = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in self.strides]
        self.set_cell_anchors(feature_maps[0].dtype, device)
        per_level = self.grid_anchors(grid_sizes, strides)
        return [torch.cat(per_level) for _ in image_list.image_sizes]


class AlignedRoIPooler(MultiScaleRoIAlign):
    """Multi-level ROIAlign with ``aligned=True``: detectron2's ``ROIPooler`` (``ROIAlignV2``).

    A ``MultiScaleRoIAlign`` (torchvision's R-CNN constructors accept only that type) whose
    forward pools each box from its FPN level with fixed strides and detectron2's level rule.

    Args:
        featmap_names: the levels pooled from, finest first (torchvision names ``0``..``3``).
        output_size: pooled size (7 for boxes, 14 for masks).
        sampling_ratio: samples per bin side; 0 = adaptive (detectron2).
        strides: stride of each pooled level (4, 8, 16, 32).
        canonical_box_size, canonical_level: a box of this side goes to this level (FPN eq. 1).
    """

    def __init__(
        self,
        *,
        featmap_names: Sequence[str],
        output_size: int,
        sampling_ratio: int,
        strides: Sequence[int] = FPN_STRIDES[:4],
        canonical_box_size: float = 224.0,
        canonical_level: int = 4,
    ) -> None:
        super().__init__(
            featmap_names=list(featmap_names), output_size=int(output_size), sampling_ratio=int(sampling_ratio)
        )
        self.output_size = (int(output_size), int(output_size))
        self.strides = [int(s) for s in strides]
        self.min_level = round(math.log2(self.strides[0]))
        self.max_level = round(math.log2(self.strides[-1]))
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def levels(self, boxes: torch.Tensor) -> torch.Tensor:
        """Level index (0 = finest) of each box [N, 4] in input-image pixels."""
        side = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        level = torch.floor(self.canonical_level + torch.log2(side / self.canonical_box_size + 1e-8))
        return (torch.clamp(level, min=self.min_level, max=self.max_level) - self.min_level).to(torch.int64)

    def forward(
        self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:  # type: ignore[override]
        feats = [x[name] for name in self.featmap_names]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], *self.output_size))
        if rois.shape[0] == 0:
            return out
        levels = self.levels(rois[:, 1:])
        for lvl, (feat, stride) in enumerate(zip(feats, self.strides)):
            idx = torch.where(levels == lvl)[0]
            if idx.numel():
                out[idx] = roi_align(
                    feat,
                    rois[idx],
                    self.output_size,
                    spatial_scale=1.0 / stride,
                    sampling_ratio=self.sampling_ratio,
                    aligned=True,
                )
        return out


def d2_resize_shape(height: int, width: int, *, min_size: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge`` output (height, width): short side to ``min_size``,
    long side at most ``max_size``, each rounded half up."""
    scale = min_size / min(height, width)
    new_h, new_w = (float(min_size), scale * width) if height < width else (scale * height, float(min_size))
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def d2_resize(image: np.ndarray, *, min_size: int, max_size: int) -> np.ndarray:
    """uint8 [H, W, 3] resized as detectron2's test-time augmentation does (PIL bilinear)."""
    h, w = int(image.shape[0]), int(image.shape[1])
    new_h, new_w = d2_resize_shape(h, w, min_size=min_size, max_size=max_size)
    if (new_h, new_w) == (h, w):
        return image
    return np.array(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))


def paste_masks_aligned(
    masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], threshold: float = 0.5
) -> np.ndarray:
    """Binary image masks from [N, M, M] mask probabilities and their [N, 4] boxes.

    Pixel (y, x) of instance i takes the bilinear sample of mask i at the pixel centre
    (x + 0.5, y + 0.5) mapped into box i (zero outside the mask), kept where ``>= threshold``.
    Each mask is sampled only over its box's pixels, so memory stays O(N * H * W) bits.

    Returns:
        bool [N, H, W] at ``image_size`` (height, width).
    """
    img_h, img_w = image_size
    out = np.zeros((masks.shape[0], img_h, img_w), dtype=bool)
    for i in range(masks.shape[0]):
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        c0, r0 = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
        c1, r1 = min(math.ceil(x1) + 1, img_w), min(math.ceil(y1) + 1, img_h)
        if c1 <= c0 or r1 <= r0:
            continue
        xs = (torch.arange(c0, c1, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        ys = (torch.arange(r0, r1, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
        sampled = F.grid_sample(masks[i][None, None].float(), grid, align_corners=False)[0, 0]
        out[i, r0:r1, c0:c1] = (sampled >= threshold).numpy()
    return out


class LogitRankedRPN(RegionProposalNetwork):
    """torchvision's RPN with detectron2's proposal ranking: NMS and top-k by the objectness logit.

    torchvision ranks by float32 ``sigmoid(logit)``, which saturates at 1.0 above logits of about
    16: confident proposals then tie and their order (and, through tied final scores, the
    detection order) differs from detectron2, which ranks by the logit itself. The kept boxes are
    the same set whenever no ties occur; only the ranking key changes.
    """

    def filter_proposals(
        self,
        proposals: torch.Tensor,
        objectness: torch.Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        num_images, device = proposals.shape[0], proposals.device
        objectness = objectness.detach().reshape(num_images, -1)
        levels = torch.cat(
            [torch.full((n,), i, dtype=torch.int64, device=device) for i, n in enumerate(num_anchors_per_level)]
        ).reshape(1, -1)
        top_n_idx = self._get_top_n_idx(objectness, num_anchors_per_level)
        batch_idx = torch.arange(num_images, device=device)[:, None]
        objectness, levels, proposals = (
            objectness[batch_idx, top_n_idx],
            levels.expand(num_images, -1)[batch_idx, top_n_idx],
            proposals[batch_idx, top_n_idx],
        )
        final_boxes, final_scores = [], []
        for boxes, logits, lvl, shape in zip(proposals, objectness, levels, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            keep = box_ops.remove_small_boxes(boxes, self.min_size)
            boxes, logits, lvl = boxes[keep], logits[keep], lvl[keep]
            keep = torch.where(torch.sigmoid(logits) >= self.score_thresh)[0]
            boxes, logits, lvl = boxes[keep], logits[keep], lvl[keep]
            keep = box_ops.batched_nms(boxes, logits, lvl, self.nms_thresh)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(torch.sigmoid(logits[keep]))
        return final_boxes, final_scores
