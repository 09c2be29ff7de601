"""detectron2 model-zoo weights in the torchvision R-CNN: every key mapped, every layout reproduced.

No checkpoint can be downloaded here, so the detectron2 R50-FPN Mask R-CNN state dict is written
out by name and shape (``d2_r50_fpn_shapes``, checked against detectron2 itself where it is
importable) and filled with random values. The converted torchvision modules are compared with
hand-written references of detectron2's computation: the MSRA bottleneck ResNet + FPN, the box
predictor with background last and class-specific regression, the mask head, ROIAlignV2 pooling,
the anchors, the resize rule and the aligned mask pasting. Where detectron2 is importable, its own
model and the torchvision model on the same weights must give the same detections.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import maskrcnn_inference
from torchvision.ops import batched_nms, roi_align

from vcm_eval.errors import CheckpointError, ConfigError
from vcm_eval.vision.backbone import build_fpn_backbone
from vcm_eval.vision.base import LEVELS
from vcm_eval.vision.d2_compat import AlignedRoIPooler, D2AnchorGenerator, d2_resize_shape, paste_masks_aligned
from vcm_eval.vision.d2_weights import convert_d2_state_dict, unmapped_keys
from vcm_eval.vision.registry import BACKENDS, DETECTRON2
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, TorchvisionRcnn, build_rcnn, load_weights, save_checkpoint

Shapes = list[tuple[str, tuple[int, ...]]]
FROZEN_BN = ("weight", "bias", "running_mean", "running_var")


def d2_r50_fpn_shapes(
    num_classes: int,
    *,
    masks: bool = True,
    blocks: tuple[int, ...] = (3, 4, 6, 3),
    groups: int = 1,
    width_per_group: int = 64,
) -> Shapes:
    """Names and shapes of detectron2's R50-FPN Mask (or Faster) R-CNN state dict (Base-RCNN-FPN).

    ResNet: stem conv1 7x7 + FrozenBN, stages res2..res5 of bottleneck blocks (conv1 1x1, conv2
    3x3, conv3 1x1, each with ``.norm``; block 0 has a ``shortcut``). FPN: ``fpn_lateral<k>`` 1x1
    and ``fpn_output<k>`` 3x3 with bias. RPN: StandardRPNHead, 3 anchors. ROI heads: 2fc box head
    of 1024, ``cls_score`` K+1, ``bbox_pred`` 4K; mask head 4 convs of 256, deconv, predictor K.
    ``groups`` x ``width_per_group`` (RESNETS.NUM_GROUPS / WIDTH_PER_GROUP) give detectron2's
    ResNeXt: bottleneck width ``groups * width_per_group`` at res2 (doubling per stage), conv2 grouped
    (weight [width, width / groups, 3, 3]); X101-FPN is ``blocks=(3, 4, 23, 3), groups=32, width_per_group=8``.
    """
    out: Shapes = []

    def conv_norm(prefix: str, cout: int, cin: int, k: int, g: int = 1) -> None:
        out.append((f"{prefix}.weight", (cout, cin // g, k, k)))
        out.extend((f"{prefix}.norm.{p}", (cout,)) for p in FROZEN_BN)

    def conv_bias(prefix: str, cout: int, cin: int, k: int) -> None:
        out.extend([(f"{prefix}.weight", (cout, cin, k, k)), (f"{prefix}.bias", (cout,))])

    conv_norm("backbone.bottom_up.stem.conv1", 64, 3, 7)
    cin = 64
    for stage, n_blocks in zip(range(2, 6), blocks):
        width, cout = groups * width_per_group * 2 ** (stage - 2), 256 * 2 ** (stage - 2)
        for b in range(n_blocks):
            prefix = f"backbone.bottom_up.res{stage}.{b}"
            if b == 0:
                conv_norm(f"{prefix}.shortcut", cout, cin, 1)
            conv_norm(f"{prefix}.conv1", width, cin if b == 0 else cout, 1)
            conv_norm(f"{prefix}.conv2", width, width, 3, groups)
            conv_norm(f"{prefix}.conv3", cout, width, 1)
        cin = cout
    for k, c in zip(range(2, 6), (256, 512, 1024, 2048)):
        conv_bias(f"backbone.fpn_lateral{k}", 256, c, 1)
        conv_bias(f"backbone.fpn_output{k}", 256, 256, 3)
    conv_bias("proposal_generator.rpn_head.conv", 256, 256, 3)
    conv_bias("proposal_generator.rpn_head.objectness_logits", 3, 256, 1)
    conv_bias("proposal_generator.rpn_head.anchor_deltas", 12, 256, 1)
    out += [("roi_heads.box_head.fc1.weight", (1024, 256 * 7 * 7)), ("roi_heads.box_head.fc1.bias", (1024,))]
    out += [("roi_heads.box_head.fc2.weight", (1024, 1024)), ("roi_heads.box_head.fc2.bias", (1024,))]
    out += [
        ("roi_heads.box_predictor.cls_score.weight", (num_classes + 1, 1024)),
        ("roi_heads.box_predictor.cls_score.bias", (num_classes + 1,)),
    ]
    out += [
        ("roi_heads.box_predictor.bbox_pred.weight", (4 * num_classes, 1024)),
        ("roi_heads.box_predictor.bbox_pred.bias", (4 * num_classes,)),
    ]
    if masks:
        for i in range(1, 5):
            conv_bias(f"roi_heads.mask_head.mask_fcn{i}", 256, 256, 3)
        out += [("roi_heads.mask_head.deconv.weight", (256, 256, 2, 2)), ("roi_heads.mask_head.deconv.bias", (256,))]
        conv_bias("roi_heads.mask_head.predictor", num_classes, 256, 1)
    return out


def random_d2_state(shapes: Shapes, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 values at a trained network's scale: He-init convs with a damped residual
    branch (``conv3``) so the FPN levels stay O(10), non-trivial FrozenBN statistics, fc layers at
    1/sqrt(fan_in), and small predictors (scores spread between 0 and 1 instead of saturating,
    boxes stay near their proposals)."""
    rng = np.random.default_rng(seed)
    gain = {"conv3": 0.3, "fc1": 0.7, "fc2": 0.7, "objectness_logits": 0.6, "cls_score": 0.5, "bbox_pred": 0.02}
    gain |= {"anchor_deltas": 0.02, "predictor": 0.1}
    state = {}
    for name, shape in shapes:
        if name.endswith("running_var"):
            v = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("running_mean", "bias")):
            v = rng.normal(0.0, 0.1, shape)
        elif name.endswith("norm.weight"):
            v = rng.uniform(0.5, 1.0, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            g = 1.0 / 64 if ".stem." in name else gain.get(name.split(".")[-2], 1.0)  # the stem sees 0..255 pixels
            v = rng.normal(0.0, g * math.sqrt(2.0 / fan_in), shape)
        state[name] = v.astype(np.float32)
    return state


def preset(name: str, *overrides: str) -> RcnnConfig:
    """The ``RcnnConfig`` of a conf/model preset, as the CLI composes it."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"model={name}", "model.weights=null", *overrides])
    return OmegaConf.to_object(cfg.model)  # type: ignore[return-value]


def write_pkl(path: Path, state: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f)
    return path


SMALL = ("model.min_size=128", "model.max_size=256")


@pytest.fixture(scope="module")
def cs_cfg() -> RcnnConfig:
    return preset("cityscapes_mask_rcnn_r50_fpn", *SMALL)


@pytest.fixture(scope="module")
def d2_state() -> dict[str, np.ndarray]:
    return random_d2_state(d2_r50_fpn_shapes(8))


@pytest.fixture(scope="module")
def converted(
    tmp_path_factory: pytest.TempPathFactory, cs_cfg: RcnnConfig, d2_state: dict[str, np.ndarray]
) -> TorchvisionRcnn:
    path = write_pkl(tmp_path_factory.mktemp("d2") / "model_final.pkl", d2_state)
    return TorchvisionRcnn(replace(cs_cfg, weights=str(path)))


def test_mapping_covers_every_key_both_ways(cs_cfg: RcnnConfig, d2_state: dict[str, np.ndarray]) -> None:
    target = build_rcnn(cs_cfg).state_dict()
    conv = convert_d2_state_dict(d2_state, target)
    assert conv.unmapped == [] and conv.missing == [] and conv.shape_errors == []
    assert len(d2_state) == 307 and len(conv.state_dict) == len(d2_state)  # a bijection
    assert set(conv.state_dict) == {k for k in target if not k.endswith("num_batches_tracked")}
    box_only = {
        k: v for k, v in target.items() if not k.startswith(("roi_heads.mask_head.", "roi_heads.mask_predictor."))
    }
    left = unmapped_keys(d2_state, box_only)
    assert len(left) == 12 and all(k.startswith("roi_heads.mask_head.") for k in left)
    assert "not in the configured model" in left[0]


def test_loaded_tensors_follow_torchvision_layout(converted: TorchvisionRcnn, d2_state: dict[str, np.ndarray]) -> None:
    sd = converted.model.state_dict()
    cls_w = d2_state["roi_heads.box_predictor.cls_score.weight"]
    np.testing.assert_array_equal(
        sd["roi_heads.box_predictor.cls_score.weight"][0].numpy(), cls_w[-1]
    )  # background first
    np.testing.assert_array_equal(sd["roi_heads.box_predictor.cls_score.weight"][1:].numpy(), cls_w[:-1])
    box_b = sd["roi_heads.box_predictor.bbox_pred.bias"].numpy()
    assert box_b.shape == (36,) and not box_b[:4].any()
    np.testing.assert_array_equal(box_b[4:], d2_state["roi_heads.box_predictor.bbox_pred.bias"])
    mask_w = sd["roi_heads.mask_predictor.mask_fcn_logits.weight"].numpy()
    assert mask_w.shape == (9, 256, 1, 1) and not mask_w[0].any()
    np.testing.assert_array_equal(
        sd["backbone.body.layer3.5.bn2.running_var"].numpy(),
        d2_state["backbone.bottom_up.res4.5.conv2.norm.running_var"],
    )
    np.testing.assert_array_equal(
        sd["backbone.fpn.inner_blocks.3.0.weight"].numpy(), d2_state["backbone.fpn_lateral5.weight"]
    )
    body = converted.model.backbone.body
    assert body.layer2[0].conv1.stride == (2, 2) and body.layer2[0].conv2.stride == (1, 1)  # MSRA: stride in the 1x1


def _frozen_bn(x: torch.Tensor, s: dict[str, torch.Tensor], p: str) -> torch.Tensor:
    scale = s[f"{p}.norm.weight"] / torch.sqrt(s[f"{p}.norm.running_var"] + 1e-5)
    return (
        x * scale[None, :, None, None]
        + (s[f"{p}.norm.bias"] - s[f"{p}.norm.running_mean"] * scale)[None, :, None, None]
    )


def reference_d2_backbone(
    x: torch.Tensor, s: dict[str, torch.Tensor], blocks: tuple[int, ...] = (3, 4, 6, 3), *, stride_in_1x1: bool = True
) -> dict[str, torch.Tensor]:
    """detectron2's ResNet (MSRA bottleneck: stride in conv1; C2 models such as X101: in conv2) + FPN,
    written out from its definition. A conv's groups follow from its weight (ResNeXt's grouped conv2)."""

    def conv(x: torch.Tensor, p: str, stride: int = 1) -> torch.Tensor:
        w = s[f"{p}.weight"]
        groups = x.shape[1] // w.shape[1]
        return _frozen_bn(F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups), s, p)

    bu = "backbone.bottom_up"
    x = F.max_pool2d(F.relu(conv(x, f"{bu}.stem.conv1", 2)), 3, 2, 1)
    res = {}
    for stage, n_blocks in zip(range(2, 6), blocks):
        for b in range(n_blocks):
            p, stride = f"{bu}.res{stage}.{b}", (2 if b == 0 and stage > 2 else 1)
            y = F.relu(conv(x, f"{p}.conv1", stride if stride_in_1x1 else 1))
            y = F.relu(conv(y, f"{p}.conv2", 1 if stride_in_1x1 else stride))
            y = conv(y, f"{p}.conv3")
            x = F.relu(y + (conv(x, f"{p}.shortcut", stride) if b == 0 else x))
        res[stage] = x
    out, prev = {}, None
    for k in (5, 4, 3, 2):
        lat = F.conv2d(res[k], s[f"backbone.fpn_lateral{k}.weight"], s[f"backbone.fpn_lateral{k}.bias"])
        prev = lat if prev is None else lat + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        out[f"p{k}"] = F.conv2d(prev, s[f"backbone.fpn_output{k}.weight"], s[f"backbone.fpn_output{k}.bias"], padding=1)
    out["p6"] = F.max_pool2d(out["p5"], kernel_size=1, stride=2)
    return out


def test_msra_resnet_fpn_matches_reference(
    converted: TorchvisionRcnn, cs_cfg: RcnnConfig, d2_state: dict[str, np.ndarray]
) -> None:
    image = np.random.default_rng(3).integers(0, 256, (128, 256, 3), dtype=np.uint8)
    feats = converted.features(image)
    assert feats.input_size == (128, 256)
    s = {k: torch.from_numpy(v) for k, v in d2_state.items()}
    bgr = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float()
    x = (bgr - torch.tensor([103.53, 116.28, 123.675])[:, None, None])[None]  # pixel_std 1
    with torch.no_grad():
        ref = reference_d2_backbone(x, s)
    for lv in LEVELS:
        scale = float(ref[lv].abs().max())
        assert float((feats[lv] - ref[lv][0]).abs().max()) < 1e-4 * scale, lv
    # the MSRA layout matters: the same weights with torchvision's stride-in-3x3 compute something else
    v15 = build_fpn_backbone(
        arch="resnet50", fpn_channels=256, widths=[], blocks=[], stem_width=0, stride_in_1x1=False, norm="frozen_bn"
    )
    v15.load_state_dict(
        {k[len("backbone.") :]: v for k, v in converted.model.state_dict().items() if k.startswith("backbone.")}
    )
    with torch.no_grad():
        p2 = v15(x)["0"][0]
    assert float((p2 - ref["p2"][0]).abs().max()) > 1e-2 * float(ref["p2"].abs().max())


def _decode(
    deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)
) -> torch.Tensor:
    """detectron2 Box2BoxTransform.apply_deltas (per box and class)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
    d = deltas.reshape(deltas.shape[0], -1, 4)
    dx, dy = d[..., 0] / weights[0], d[..., 1] / weights[1]
    dw = torch.clamp(d[..., 2] / weights[2], max=math.log(1000.0 / 16))
    dh = torch.clamp(d[..., 3] / weights[3], max=math.log(1000.0 / 16))
    pcx, pcy = dx * w[:, None] + cx[:, None], dy * h[:, None] + cy[:, None]
    pw, ph = torch.exp(dw) * w[:, None], torch.exp(dh) * h[:, None]
    return torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], dim=-1)


def test_box_predictor_background_last_layout_matches_reference(
    converted: TorchvisionRcnn, d2_state: dict[str, np.ndarray]
) -> None:
    """detectron2's FastRCNNOutputLayers inference (softmax with background LAST, class-specific
    regression of 4K rows, clip, score > 0.05, per-class NMS 0.5, top 100) vs torchvision's
    RoIHeads with the converted predictor."""
    g = torch.Generator().manual_seed(0)
    n, (img_h, img_w) = 300, (128, 256)
    xy = torch.rand((n, 2), generator=g) * torch.tensor([200.0, 90.0])
    proposals = torch.cat([xy, xy + 8 + torch.rand((n, 2), generator=g) * 40], dim=1).clamp(
        max=torch.tensor([img_w, img_h] * 2) - 1
    )
    x = torch.relu(torch.randn((n, 1024), generator=g))
    s = {k: torch.from_numpy(v) for k, v in d2_state.items()}
    scores = F.softmax(
        x @ s["roi_heads.box_predictor.cls_score.weight"].T + s["roi_heads.box_predictor.cls_score.bias"], dim=-1
    )[:, :-1]
    deltas = x @ s["roi_heads.box_predictor.bbox_pred.weight"].T + s["roi_heads.box_predictor.bbox_pred.bias"]
    boxes = _decode(deltas, proposals)
    boxes[..., 0::2] = boxes[..., 0::2].clamp(0, img_w)
    boxes[..., 1::2] = boxes[..., 1::2].clamp(0, img_h)
    keep_mask = scores > 0.05
    idx = keep_mask.nonzero()
    b, sc = boxes[keep_mask], scores[keep_mask]
    keep = batched_nms(b, sc, idx[:, 1], 0.5)[:100]
    heads = converted.model.roi_heads
    with torch.no_grad():
        logits, regression = heads.box_predictor(x)
        tv_boxes, tv_scores, tv_labels = heads.postprocess_detections(logits, regression, [proposals], [(img_h, img_w)])
    assert len(keep) > 20
    np.testing.assert_allclose(tv_boxes[0].numpy(), b[keep].numpy(), atol=1e-3)
    np.testing.assert_allclose(tv_scores[0].numpy(), sc[keep].numpy(), rtol=1e-5)
    np.testing.assert_array_equal(
        tv_labels[0].numpy(), idx[keep, 1].numpy() + 1
    )  # d2 class c = torchvision label c + 1


def test_mask_head_matches_reference(converted: TorchvisionRcnn, d2_state: dict[str, np.ndarray]) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn((5, 256, 14, 14), generator=g)
    labels = torch.tensor([1, 3, 8, 2, 5])  # torchvision labels (1..8)
    s = {k: torch.from_numpy(v) for k, v in d2_state.items()}
    y = x
    for i in range(1, 5):
        y = F.relu(
            F.conv2d(
                y, s[f"roi_heads.mask_head.mask_fcn{i}.weight"], s[f"roi_heads.mask_head.mask_fcn{i}.bias"], padding=1
            )
        )
    y = F.relu(
        F.conv_transpose2d(y, s["roi_heads.mask_head.deconv.weight"], s["roi_heads.mask_head.deconv.bias"], stride=2)
    )
    logits = F.conv2d(y, s["roi_heads.mask_head.predictor.weight"], s["roi_heads.mask_head.predictor.bias"])
    ref = logits[torch.arange(5), labels - 1].sigmoid()
    heads = converted.model.roi_heads
    with torch.no_grad():
        got = maskrcnn_inference(heads.mask_predictor(heads.mask_head(x)), [labels])[0][:, 0]
    assert got.shape == (5, 28, 28)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5)


def test_4conv1fc_box_head_maps_and_matches_reference() -> None:
    """detectron2's FastRCNNConvFCHead with NUM_CONV 4, NUM_FC 1 (conv1..conv4, fc1) -> torchvision's."""
    head = FastRCNNConvFCHead((256, 7, 7), [256] * 4, [1024])
    target = {f"roi_heads.box_head.{k}": v for k, v in head.state_dict().items()}
    shapes: Shapes = [
        (f"roi_heads.box_head.conv{i}.{p}", (256, 256, 3, 3) if p == "weight" else (256,))
        for i in range(1, 5)
        for p in ("weight", "bias")
    ]
    shapes += [("roi_heads.box_head.fc1.weight", (1024, 256 * 49)), ("roi_heads.box_head.fc1.bias", (1024,))]
    d2 = random_d2_state(shapes, seed=6)
    conv = convert_d2_state_dict(d2, target)
    assert conv.unmapped == [] and conv.missing == [] and sorted(conv.state_dict) == sorted(target)
    head.load_state_dict({k[len("roi_heads.box_head.") :]: v for k, v in conv.state_dict.items()})
    x = torch.randn((3, 256, 7, 7), generator=torch.Generator().manual_seed(7))
    s = {k: torch.from_numpy(v) for k, v in d2.items()}
    y = x
    for i in range(1, 5):
        y = F.relu(
            F.conv2d(y, s[f"roi_heads.box_head.conv{i}.weight"], s[f"roi_heads.box_head.conv{i}.bias"], padding=1)
        )
    ref = F.relu(F.linear(y.flatten(1), s["roi_heads.box_head.fc1.weight"], s["roi_heads.box_head.fc1.bias"]))
    with torch.no_grad():
        torch.testing.assert_close(head(x), ref, rtol=1e-4, atol=1e-4)


def test_aligned_pooler_is_roialignv2_with_fpn_level_rule() -> None:
    g = torch.Generator().manual_seed(2)
    feats = {str(i): torch.randn((1, 4, 256 // 2**i, 512 // 2**i), generator=g) for i in range(4)}
    boxes = torch.tensor(
        [
            [10.0, 10.0, 30.0, 40.0],
            [0.0, 0.0, 111.9, 111.9],
            [5.0, 7.0, 117.0, 119.0],
            [20.0, 10.0, 500.0, 900.0],
            [3.5, 4.25, 260.0, 200.0],
        ]
    )
    pooler = AlignedRoIPooler(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=0)
    got = pooler(feats, [boxes], [(1024, 2048)])
    side = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.clamp(torch.floor(4 + torch.log2(side / 224 + 1e-8)), 2, 5).long() - 2
    assert levels.tolist() == [0, 0, 1, 3, 2]
    for i, lvl in enumerate(levels.tolist()):
        roi = torch.cat([torch.zeros(1), boxes[i]])[None]
        ref = roi_align(
            feats[str(lvl)], roi, (7, 7), spatial_scale=1.0 / 2 ** (lvl + 2), sampling_ratio=0, aligned=True
        )
        torch.testing.assert_close(got[i], ref[0])
        unaligned = roi_align(
            feats[str(lvl)], roi, (7, 7), spatial_scale=1.0 / 2 ** (lvl + 2), sampling_ratio=0, aligned=False
        )
        assert not torch.allclose(got[i], unaligned[0])


def test_anchors_are_exact_with_fixed_strides() -> None:
    gen = D2AnchorGenerator(sizes=[32, 64, 128, 256, 512], aspect_ratios=[0.5, 1.0, 2.0])
    # an 800x1216 input: P6 is 13x19 and torchvision would infer stride 800 // 13 = 61; detectron2 uses 64
    maps = [torch.zeros((1, 1, math.ceil(800 / s), math.ceil(1216 / s))) for s in (4, 8, 16, 32, 64)]
    anchors = gen(ImageList(torch.zeros((1, 3, 800, 1216)), [(800, 1199)]), maps)[0]
    per_level = [m.shape[-2] * m.shape[-1] * 3 for m in maps]
    assert anchors.shape == (sum(per_level), 4)
    p2_first = anchors[:3]
    w = [math.sqrt(32 * 32 / r) for r in (0.5, 1.0, 2.0)]
    h = [r * wi for r, wi in zip((0.5, 1.0, 2.0), w)]
    np.testing.assert_allclose(p2_first.numpy(), [[-a / 2, -b / 2, a / 2, b / 2] for a, b in zip(w, h)], rtol=1e-6)
    p6 = anchors[-per_level[-1] :]
    cx = (p6[:, 0] + p6[:, 2]) / 2
    assert float(cx.max()) == pytest.approx(64.0 * (maps[-1].shape[-1] - 1))  # stride 64, not 61
    assert float(p2_first[0, 2]) != round(float(p2_first[0, 2]))  # unrounded (torchvision rounds to 23)


def test_resize_rule_matches_resize_shortest_edge() -> None:
    assert d2_resize_shape(1024, 2048, min_size=1024, max_size=2048) == (1024, 2048)
    assert d2_resize_shape(480, 640, min_size=800, max_size=1333) == (800, 1067)
    assert d2_resize_shape(427, 640, min_size=800, max_size=1333) == (800, 1199)
    assert d2_resize_shape(640, 480, min_size=800, max_size=1333) == (1067, 800)
    assert d2_resize_shape(200, 1000, min_size=800, max_size=1333) == (267, 1333)


def test_paste_masks_aligned() -> None:
    ones = torch.ones((1, 28, 28))
    box = torch.tensor([[10.2, 20.0, 50.7, 61.3]])
    got = paste_masks_aligned(ones, box, (80, 90))[0]
    ys, xs = np.mgrid[0:80, 0:90] + 0.5
    inside = (xs >= 10.2) & (xs <= 50.7) & (ys >= 20.0) & (ys <= 61.3)
    np.testing.assert_array_equal(got, inside)  # a full mask covers exactly the pixel centres in its box
    g = torch.Generator().manual_seed(4)
    probs = torch.rand((3, 28, 28), generator=g)
    boxes = torch.tensor([[0.0, 0.0, 30.0, 20.0], [5.5, 3.2, 88.0, 70.9], [60.0, 50.0, 89.0, 79.0]])
    got = paste_masks_aligned(probs, boxes, (80, 90))
    for i in range(3):  # the full-image formula: sample every pixel centre, zero outside the mask
        gx = (torch.arange(90) + 0.5 - boxes[i, 0]) / (boxes[i, 2] - boxes[i, 0]) * 2 - 1
        gy = (torch.arange(80) + 0.5 - boxes[i, 1]) / (boxes[i, 3] - boxes[i, 1]) * 2 - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]
        full = F.grid_sample(probs[i][None, None], grid, align_corners=False)[0, 0] >= 0.5
        np.testing.assert_array_equal(got[i], full.numpy())


def test_unmapped_and_mismatched_checkpoints_fail_with_the_keys(
    tmp_path: Path, cs_cfg: RcnnConfig, converted: TorchvisionRcnn, d2_state: dict[str, np.ndarray]
) -> None:
    target = converted.model.state_dict()  # load_weights is what TorchvisionRcnn calls with its model's state dict
    extra = {**d2_state, "roi_heads.keypoint_head.conv_fcn1.weight": np.zeros((512, 256, 3, 3), np.float32)}
    path = write_pkl(tmp_path / "extra.pkl", extra)
    with pytest.raises(
        CheckpointError,
        match=r"ignore_unmapped_weights=true to skip them\): \['roi_heads\.keypoint_head\.conv_fcn1\.weight",
    ):
        load_weights(path, cs_cfg, target)
    state = load_weights(path, replace(cs_cfg, ignore_unmapped_weights=True), target)
    assert set(state) == set(target)
    coco = write_pkl(tmp_path / "coco.pkl", random_d2_state(d2_r50_fpn_shapes(80)))
    with pytest.raises(CheckpointError, match=r"cls_score\.weight \(81, 1024\) -> .*\(9, 1024\)"):
        load_weights(coco, cs_cfg, target)
    with pytest.raises(ConfigError, match="pixel_scale"):
        load_weights(coco, replace(cs_cfg, pixel_scale=1.0), target)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_weights(evil, cs_cfg, target)


def test_pth_and_torchvision_state_dicts_load(
    tmp_path: Path, converted: TorchvisionRcnn, cs_cfg: RcnnConfig, d2_state: dict[str, np.ndarray]
) -> None:
    target = converted.model.state_dict()
    pth = tmp_path / "model_final.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in d2_state.items()}, "iteration": 90000}, pth)
    from_pth = load_weights(pth, cs_cfg, target)
    assert set(from_pth) == set(target)
    for k, v in target.items():
        torch.testing.assert_close(from_pth[k], v, rtol=0, atol=0)
    tv = tmp_path / "tv.pth"
    torch.save(target, tv)
    from_tv = load_weights(tv, cs_cfg, target)  # auto: torchvision key names
    torch.testing.assert_close(from_tv["rpn.head.conv.0.0.weight"], target["rpn.head.conv.0.0.weight"], rtol=0, atol=0)
    box_only = {
        k: v for k, v in target.items() if not k.startswith(("roi_heads.mask_head.", "roi_heads.mask_predictor."))
    }
    with pytest.raises(CheckpointError, match="roi_heads.mask_head.0.0.weight"):
        load_weights(tv, replace(cs_cfg, with_masks=False), box_only)


def test_older_checkpoints_without_new_architecture_keys_still_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = RcnnConfig(weights=None)
    model = build_rcnn(cfg)
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, cfg, meta={}, half=False)
    payload = torch.load(path, weights_only=True)
    arch = payload["architecture"]
    del arch["box_head_type"], arch["backbone"]["stride_in_1x1"], arch["backbone"]["norm"]
    torch.save(payload, path)
    TorchvisionRcnn(RcnnConfig(weights=str(path)))  # defaults hold: the old architecture matches
    with pytest.raises(CheckpointError, match=r"box_head_type: config 4conv1fc vs checkpoint \(absent"):
        TorchvisionRcnn(RcnnConfig(weights=str(path), box_head_type="4conv1fc"))


def test_detectron2_backend_without_detectron2_says_how_to_get_it() -> None:
    if importlib.util.find_spec("detectron2") is not None:
        pytest.skip("detectron2 is installed: the backend builds (tested below)")
    from vcm_eval.vision.registry import build_task_model

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=["model=cityscapes_mask_rcnn_r50_fpn", f"model._target_={DETECTRON2}"]
        )
    with pytest.raises(ConfigError, match="needs detectron2.*leave model._target_ at its default"):
        build_task_model(cfg.model)


# --- against detectron2 itself (skipped where it is not installed) ---------------------------------


def test_hand_written_key_list_is_detectron2s() -> None:
    pytest.importorskip("detectron2", reason="detectron2 is not installed (optional extra)")
    from vcm_eval.vision.detectron2_rcnn import Detectron2Rcnn

    d2 = Detectron2Rcnn(preset("cityscapes_mask_rcnn_r50_fpn", *SMALL))
    have = {k: tuple(v.shape) for k, v in d2.model.state_dict().items()}
    assert have == dict(d2_r50_fpn_shapes(8))


def test_both_backends_give_the_same_detections(tmp_path: Path, d2_state: dict[str, np.ndarray]) -> None:
    pytest.importorskip("detectron2", reason="detectron2 is not installed (optional extra)")
    from vcm_eval.vision.registry import build_task_model

    path = write_pkl(tmp_path / "model_final.pkl", d2_state)
    image = np.random.default_rng(5).integers(0, 256, (128, 256, 3), dtype=np.uint8)
    image[30:90, 40:120] = (200, 40, 40)
    results = {}
    for backend in ("torchvision", "detectron2"):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                config_name="config",
                overrides=[
                    "model=cityscapes_mask_rcnn_r50_fpn",
                    f"model.weights={path}",
                    f"model._target_={BACKENDS[backend]}",
                    *SMALL,
                ],
            )
        model = build_task_model(cfg.model)
        feats = model.features(image)
        results[backend] = (feats, model.predict_from_features(feats))
    (f_tv, tv), (f_d2, d2) = results["torchvision"], results["detectron2"]
    for lv in LEVELS:
        assert float((f_tv[lv] - f_d2[lv]).abs().max()) < 1e-4 * float(f_d2[lv].abs().max())
    assert len(d2) > 10 and len(tv) == len(d2)
    np.testing.assert_array_equal(tv.labels, d2.labels)
    np.testing.assert_allclose(tv.scores, d2.scores, atol=1e-5)
    np.testing.assert_allclose(tv.boxes, d2.boxes, atol=1e-3)
    assert tv.masks is not None and d2.masks is not None
    assert (tv.masks != d2.masks).mean() < 1e-4


def test_buffers_detectron2_skips_are_accepted_and_reported(
    tmp_path: Path,
    cs_cfg: RcnnConfig,
    converted: TorchvisionRcnn,
    d2_state: dict[str, np.ndarray],
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = converted.model.state_dict()
    cells = {f"proposal_generator.anchor_generator.cell_anchors.{i}": np.zeros((3, 4), np.float32) for i in range(5)}
    older = {
        **d2_state,
        **cells,
        "pixel_mean": np.array([103.53, 116.28, 123.675], np.float32),
        "pixel_std": np.ones(3, np.float32),
    }
    with caplog.at_level("INFO", logger="vcm_eval.vision.d2_weights"):
        state = load_weights(
            write_pkl(tmp_path / "older.pkl", older), cs_cfg, target
        )  # no ignore_unmapped_weights needed
    assert set(state) == set(target)
    assert "skipped 5 buffers" in caplog.text and "cell_anchors.4" in caplog.text
    for k, v in target.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)


def test_rpn_ranks_saturated_proposals_by_logit_as_detectron2() -> None:
    from torchvision.models.detection.rpn import RegionProposalNetwork

    from vcm_eval.vision.d2_compat import LogitRankedRPN

    # logits 17..21 all saturate to sigmoid 1.0 in float32: torchvision cannot order them
    logits = torch.tensor([[17.0, 21.0, 19.0, 18.0, 20.0]])
    assert torch.sigmoid(logits).unique().numel() == 1
    boxes = torch.tensor([[[i * 20.0, 0.0, i * 20.0 + 10.0, 10.0] for i in range(5)]])
    rpn = RegionProposalNetwork(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        0.7, 0.3, 256, 0.5, {"testing": 10}, {"testing": 10}, 0.7,
    )  # fmt: skip
    rpn.eval()
    rpn.__class__ = LogitRankedRPN
    kept, scores = rpn.filter_proposals(boxes, logits, [(100, 200)], [5])
    assert kept[0][:, 0].tolist() == [20.0, 80.0, 40.0, 60.0, 0.0]  # descending logit: 21, 20, 19, 18, 17
    assert scores[0].tolist() == [1.0] * 5
