"""detectron2 model-zoo checkpoints -> the torchvision Mask/Faster R-CNN of ``torchvision_rcnn``.

A detectron2 R50/X101-FPN R-CNN and torchvision's hold the same tensors under other names, with two
layout differences in the box predictor and one in the mask predictor (ResNeXt's grouped ``conv2``
weights, [width, width / groups, 3, 3], have the same layout in both and copy as they are; a
box-only Faster R-CNN checkpoint simply has no ``roi_heads.mask_head.*``):

=====================================================  =============================================
detectron2                                             torchvision
=====================================================  =============================================
backbone.bottom_up.stem.conv1.{weight, norm.*}         backbone.body.{conv1.weight, bn1.*}
backbone.bottom_up.res<s>.<b>.conv<j>.{weight,norm.*}  backbone.body.layer<s-1>.<b>.{conv<j>.weight, bn<j>.*}
backbone.bottom_up.res<s>.<b>.shortcut.{weight,norm.*} backbone.body.layer<s-1>.<b>.downsample.{0.weight, 1.*}
backbone.fpn_lateral<k> / fpn_output<k>                backbone.fpn.inner_blocks.<k-2>.0 / layer_blocks.<k-2>.0
proposal_generator.rpn_head.conv                       rpn.head.conv.0.0
  .objectness_logits / .anchor_deltas                  rpn.head.cls_logits / rpn.head.bbox_pred
roi_heads.box_head.fc1, fc2 (2fc)                      roi_heads.box_head.fc6, fc7
roi_heads.box_head.conv1..4, fc1 (4conv1fc)            roi_heads.box_head.0..3.0, 5
roi_heads.box_predictor.cls_score [K+1, D]             same name; background moved from LAST to FIRST
roi_heads.box_predictor.bbox_pred [4K, D] (or [4, D])  same name [4(K+1), D]; zero background rows first
roi_heads.mask_head.mask_fcn<i>                        roi_heads.mask_head.<i-1>.0
roi_heads.mask_head.deconv                             roi_heads.mask_predictor.conv5_mask
roi_heads.mask_head.predictor [K, C, 1, 1] (or [1,..]) roi_heads.mask_predictor.mask_fcn_logits [K+1, ...]
=====================================================  =============================================

``norm.*`` is detectron2's FrozenBN (weight, bias, running_mean, running_var). torchvision drops the
background row of the box regression and the background mask channel after prediction, so their
zero rows never reach an output. Class-agnostic regression / masks are repeated for every class.
Every checkpoint tensor is either mapped or reported (``unmapped_keys``); loading fails on any
unmapped or missing tensor unless told to ignore the unmapped ones.

The network must also *run* as detectron2's does (MSRA stride-in-1x1 ResNet, BGR 0..255 input,
ROIAlignV2, exact anchors, PIL resize, aligned mask pasting): see ``vcm_eval.vision.d2_compat`` and
the presets ``conf/model/*_r50_fpn.yaml``.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from vcm_eval.errors import CheckpointError, load_failure

Transform = Callable[[torch.Tensor, tuple[int, ...]], torch.Tensor]

_BN = ("weight", "bias", "running_mean", "running_var")  # FrozenBN tensors
# (detectron2 pattern, torchvision template, value transform name)
_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"^backbone\.bottom_up\.stem\.conv1\.weight$"), "backbone.body.conv1.weight", "copy"),
    (re.compile(r"^backbone\.bottom_up\.stem\.conv1\.norm\.(\w+)$"), "backbone.body.bn1.{0}", "copy"),
    (
        re.compile(r"^backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.weight$"),
        "backbone.body.layer{s}.{1}.conv{2}.weight",
        "copy",
    ),
    (
        re.compile(r"^backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.norm\.(\w+)$"),
        "backbone.body.layer{s}.{1}.bn{2}.{3}",
        "copy",
    ),
    (
        re.compile(r"^backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.weight$"),
        "backbone.body.layer{s}.{1}.downsample.0.weight",
        "copy",
    ),
    (
        re.compile(r"^backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.norm\.(\w+)$"),
        "backbone.body.layer{s}.{1}.downsample.1.{2}",
        "copy",
    ),
    (re.compile(r"^backbone\.fpn_lateral(\d)\.(weight|bias)$"), "backbone.fpn.inner_blocks.{k}.0.{1}", "copy"),
    (re.compile(r"^backbone\.fpn_output(\d)\.(weight|bias)$"), "backbone.fpn.layer_blocks.{k}.0.{1}", "copy"),
    (re.compile(r"^proposal_generator\.rpn_head\.conv\.(weight|bias)$"), "rpn.head.conv.0.0.{0}", "copy"),
    (
        re.compile(r"^proposal_generator\.rpn_head\.objectness_logits\.(weight|bias)$"),
        "rpn.head.cls_logits.{0}",
        "copy",
    ),
    (re.compile(r"^proposal_generator\.rpn_head\.anchor_deltas\.(weight|bias)$"), "rpn.head.bbox_pred.{0}", "copy"),
    (re.compile(r"^roi_heads\.box_head\.fc([12])\.(weight|bias)$"), "roi_heads.box_head.fc{f}.{1}", "copy"),
    (re.compile(r"^roi_heads\.box_head\.conv(\d)\.(weight|bias)$"), "roi_heads.box_head.{c}.0.{1}", "copy"),
    (
        re.compile(r"^roi_heads\.box_predictor\.cls_score\.(weight|bias)$"),
        "roi_heads.box_predictor.cls_score.{0}",
        "cls_score",
    ),
    (
        re.compile(r"^roi_heads\.box_predictor\.bbox_pred\.(weight|bias)$"),
        "roi_heads.box_predictor.bbox_pred.{0}",
        "bbox_pred",
    ),
    (re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d)\.(weight|bias)$"), "roi_heads.mask_head.{m}.0.{1}", "copy"),
    (re.compile(r"^roi_heads\.mask_head\.deconv\.(weight|bias)$"), "roi_heads.mask_predictor.conv5_mask.{0}", "copy"),
    (
        re.compile(r"^roi_heads\.mask_head\.predictor\.(weight|bias)$"),
        "roi_heads.mask_predictor.mask_fcn_logits.{0}",
        "mask_logits",
    ),
]
log = logging.getLogger(__name__)
# detectron2 buffers that are configuration, not weights: checked against the config, not loaded.
CONFIG_BUFFERS = ("pixel_mean", "pixel_std")
# Buffers older detectron2 versions saved that detectron2 itself skips on load (derived from the
# config): accepted and reported, never loaded.
SKIPPED_BUFFERS = re.compile(r"^proposal_generator\.anchor_generator\.cell_anchors\.\d+$")


def torchvision_name(d2_key: str, target: Mapping[str, torch.Tensor]) -> tuple[str, str] | None:
    """(torchvision key, value transform) of a detectron2 key, or None if it has no place.

    ``target`` (the torchvision state dict) decides between the 2fc and 4conv1fc box heads.
    """
    for pattern, template, transform in _RULES:
        m = pattern.match(d2_key)
        if m is None:
            continue
        g = m.groups()
        if ".norm." in d2_key and g[-1] not in _BN:
            return None
        first = int(g[0]) if g and g[0].isdigit() else 0
        if "{f}" in template and "roi_heads.box_head.fc6.weight" not in target:
            # 4conv1fc: torchvision's FastRCNNConvFCHead is [conv_0..conv_{n-1}, Flatten, Linear, ReLU, ...]
            n_conv = len(
                {k.split(".")[2] for k in target if k.startswith("roi_heads.box_head.") and k.endswith(".0.weight")}
            )
            return f"roi_heads.box_head.{n_conv + 1 + 2 * (first - 1)}.{g[1]}", transform
        name = template.format(*g, s=first - 1, k=first - 2, m=first - 1, c=first - 1, f=first + 5)
        return name, transform
    return None


def _cls_score(value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """[K+1, ...] background last -> background first."""
    return torch.cat([value[-1:], value[:-1]])


def _bbox_pred(value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """[4K, ...] (or class-agnostic [4, ...]) -> [4(K+1), ...] with zero background rows first."""
    n_cls = shape[0] // 4 - 1
    if value.shape[0] == 4 and n_cls > 1:
        value = value.repeat(n_cls, *([1] * (value.dim() - 1)))
    return torch.cat([value.new_zeros((4, *value.shape[1:])), value])


def _mask_logits(value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """[K, ...] (or class-agnostic [1, ...]) -> [K+1, ...] with a zero background channel first."""
    n_cls = shape[0] - 1
    if value.shape[0] == 1 and n_cls > 1:
        value = value.repeat(n_cls, *([1] * (value.dim() - 1)))
    return torch.cat([value.new_zeros((1, *value.shape[1:])), value])


_TRANSFORMS: dict[str, Transform] = {
    "copy": lambda v, shape: v,
    "cls_score": _cls_score,
    "bbox_pred": _bbox_pred,
    "mask_logits": _mask_logits,
}


@dataclass
class Conversion:
    """Result of mapping a detectron2 state dict onto a torchvision model.

    Attributes:
        state_dict: torchvision key -> float32 tensor, for every mapped tensor.
        unmapped: detectron2 keys with no place in the model, each with the reason.
        skipped: buffers detectron2 itself skips (``SKIPPED_BUFFERS``, e.g. RPN cell anchors).
        missing: torchvision keys the checkpoint did not fill (``num_batches_tracked`` excluded).
        shape_errors: one line per mapped tensor whose shape does not fit.
    """

    state_dict: dict[str, torch.Tensor]
    unmapped: list[str]
    missing: list[str]
    shape_errors: list[str]
    skipped: list[str] = field(default_factory=list)


def convert_d2_state_dict(d2_state: Mapping[str, Any], target: Mapping[str, torch.Tensor]) -> Conversion:
    """Map every tensor of a detectron2 state dict onto ``target`` (a torchvision state dict)."""
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    shape_errors: list[str] = []
    skipped: list[str] = []
    for key, raw in d2_state.items():
        if key in CONFIG_BUFFERS:
            continue
        if SKIPPED_BUFFERS.match(key):
            skipped.append(key)
            continue
        found = torchvision_name(key, target)
        if found is None:
            unmapped.append(f"{key} (no torchvision counterpart)")
            continue
        name, transform = found
        if name not in target:
            unmapped.append(f"{key} (-> {name}, not in the configured model)")
            continue
        value = torch.as_tensor(np.asarray(raw) if not isinstance(raw, torch.Tensor) else raw).float()
        shape = tuple(target[name].shape)
        try:
            value = _TRANSFORMS[transform](value, shape)
        except RuntimeError as exc:
            shape_errors.append(f"{key} {tuple(value.shape)} -> {name} {shape} ({exc})")
            continue
        if tuple(value.shape) != shape:
            shape_errors.append(f"{key} {tuple(np.shape(raw))} -> {name} {shape}")
            continue
        out[name] = value
    missing = sorted(k for k in target if k not in out and not k.endswith("num_batches_tracked"))
    return Conversion(
        state_dict=out, unmapped=sorted(unmapped), missing=missing, shape_errors=shape_errors, skipped=sorted(skipped)
    )


def unmapped_keys(d2_state: Mapping[str, Any], target: Mapping[str, torch.Tensor]) -> list[str]:
    """detectron2 keys (with the reason) that would not be loaded into ``target``."""
    return convert_d2_state_dict(d2_state, target).unmapped


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a model-zoo .pkl needs nothing else."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if module.startswith("numpy._core"):
            module = module.replace("numpy._core", "numpy.core")
        return super().find_class(module, name)


def read_d2_checkpoint(path: Path) -> dict[str, Any]:
    """The ``model`` state dict of a detectron2 checkpoint (.pkl of numpy arrays, or .pth).

    The .pkl is read by an unpickler that builds numpy arrays and dicts only; a .pth with
    ``torch.load(weights_only=True)``.
    """
    if not path.is_file():
        raise CheckpointError(
            f"task model weights {path} do not exist; set model.weights to a detectron2 .pkl/.pth file"
        )
    try:
        if path.suffix == ".pkl":
            payload = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
        else:
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means a bad or foreign file
        raise CheckpointError(
            f"cannot read detectron2 checkpoint {path}: {load_failure(exc)}; "
            "give a model-zoo .pkl or a .pth holding only tensors "
            "(re-save with torch.save({'model': ckpt['model']}, path))"
        ) from exc
    return d2_model_state(payload, path)


def d2_model_state(payload: Any, path: Path) -> dict[str, Any]:
    """The detectron2 state dict inside a loaded checkpoint (``{"model": ...}`` or the dict itself)."""
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path} holds no detectron2 state dict (expected a dict with a 'model' entry)")
    if payload.get("matching_heuristics") or not any(k.startswith("backbone.") for k in state):
        raise CheckpointError(
            f"{path} is not a detectron2 detection model "
            "(no backbone.* tensors; ImageNet backbones need training first)"
        )
    return dict(state)


def looks_like_d2(state: Mapping[str, Any]) -> bool:
    """True for detectron2 key names (``backbone.bottom_up.*``)."""
    return any(k.startswith("backbone.bottom_up.") for k in state)


def d2_state_for_model(
    d2_state: Mapping[str, Any],
    target: Mapping[str, torch.Tensor],
    *,
    ignore_unmapped: bool,
    image_mean: list[float],
    image_std: list[float],
    source: str,
) -> dict[str, torch.Tensor]:
    """Converted state dict ready for ``load_state_dict``, or a ``CheckpointError`` naming every problem.

    Args:
        d2_state: detectron2 key -> array.
        target: the torchvision model's own state dict (its ``num_batches_tracked`` are kept).
        ignore_unmapped: load despite checkpoint tensors with no place in the model.
        image_mean, image_std: the configured normalization, checked against ``pixel_mean`` /
            ``pixel_std`` when the checkpoint stores them (older detectron2 versions did).
        source: the file name, for messages.
    """
    for key, want in (("pixel_mean", image_mean), ("pixel_std", image_std)):
        if key in d2_state:
            have = np.asarray(d2_state[key], dtype=np.float64).reshape(-1)
            if not np.allclose(have, want, atol=1e-3):
                raise CheckpointError(
                    f"{source} has {key}={have.tolist()} but model.image_{key[6:]}={list(want)}; "
                    "set it to the checkpoint's"
                )
    conv = convert_d2_state_dict(d2_state, target)
    problems = []
    if conv.shape_errors:
        problems.append("shape mismatch (check model.class_names / architecture): " + "; ".join(conv.shape_errors[:8]))
    if conv.missing:
        problems.append(
            f"model tensors absent from the checkpoint: {conv.missing[:12]}{' ...' if len(conv.missing) > 12 else ''}"
        )
    if conv.unmapped and not ignore_unmapped:
        problems.append(
            f"checkpoint tensors not mapped ({len(conv.unmapped)}; "
            f"set model.ignore_unmapped_weights=true to skip them): {conv.unmapped}"
        )
    if problems:
        raise CheckpointError(f"cannot load detectron2 weights {source}: " + " | ".join(problems))
    if conv.skipped:
        log.info(
            "%s: skipped %d buffers detectron2 itself skips: %s", source, len(conv.skipped), ", ".join(conv.skipped)
        )
    state = dict(conv.state_dict)
    for k, v in target.items():
        if k.endswith("num_batches_tracked"):
            state[k] = v
    return state
