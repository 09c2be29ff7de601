"""MPEG VCM's test-condition networks: detectron2's X101-FPN Faster / Mask R-CNN in the torchvision model.

``model=coco_faster_rcnn_x101_fpn`` and ``model=coco_mask_rcnn_x101_fpn`` are the model-zoo configs
COCO-Detection/faster_rcnn_X_101_32x8d_FPN_3x and COCO-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_3x:
ResNeXt-101 32x8d (stride in the grouped 3x3, FrozenBN), PIXEL_STD [57.375, 57.120, 58.395], BGR.
No checkpoint can be downloaded here, so a random state dict in detectron2's X101 key names and shapes
(``x101_shapes``, checked against detectron2 itself where it is importable) is written as a model-zoo
.pkl and loaded through the converter; the converted backbone is compared with a hand-written reference
of detectron2's ResNeXt + FPN, and, where detectron2 is importable, both backends must give the same
detections from the same file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import CONF_DIR, compose_cfg
from hydra import initialize_config_dir
from test_d2_weights import d2_r50_fpn_shapes, preset, random_d2_state, reference_d2_backbone, write_pkl

from vcm_eval.codecs.base import FeatureCodec, ImageCodec
from vcm_eval.errors import ConfigError
from vcm_eval.pipelines.build import build_codec
from vcm_eval.vision.backbone import build_fpn_backbone
from vcm_eval.vision.base import LEVELS, FeatureSet, Instances
from vcm_eval.vision.d2_weights import convert_d2_state_dict
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, TorchvisionRcnn, build_rcnn

MASK, FASTER = "coco_mask_rcnn_x101_fpn", "coco_faster_rcnn_x101_fpn"
X101_BLOCKS = (3, 4, 23, 3)
X101_STD = [57.375, 57.120, 58.395]
NATIVE = ("model.min_size=256", "model.max_size=512")  # the 512x256 test image is not resized
MASK_HEAD = ("roi_heads.mask_head.", "roi_heads.mask_predictor.")
RESNET_SHAPE: dict[str, Any] = {"fpn_channels": 256, "widths": [], "blocks": [], "stem_width": 64}  # slim-only fields


def x101_shapes(num_classes: int = 80, *, masks: bool = True) -> list[tuple[str, tuple[int, ...]]]:
    """detectron2's X101-FPN state dict: R50-FPN's names, 23 res4 blocks, conv2 in 32 groups of 8 (x2 per stage)."""
    return d2_r50_fpn_shapes(num_classes, masks=masks, blocks=X101_BLOCKS, groups=32, width_per_group=8)


def random_x101_state(*, masks: bool = True) -> dict[str, np.ndarray]:
    """Random X101 weights at a trained scale (``random_d2_state``); the stem is scaled up by the pixel std,
    since X101 sees (pixel - mean) / 57 where R50 sees pixel - mean."""
    state = random_d2_state(x101_shapes(masks=masks))
    state["backbone.bottom_up.stem.conv1.weight"] *= X101_STD[0]
    return state


@pytest.fixture(scope="module")
def x101_state() -> dict[str, np.ndarray]:
    return random_x101_state()


@pytest.fixture(scope="module")
def x101_pkls(tmp_path_factory: pytest.TempPathFactory, x101_state: dict[str, np.ndarray]) -> dict[str, Path]:
    """The Mask X101 .pkl and its box-only (Faster R-CNN) version, as the model zoo ships them."""
    folder = tmp_path_factory.mktemp("x101")
    box_only = {k: v for k, v in x101_state.items() if not k.startswith(MASK_HEAD)}
    return {
        MASK: write_pkl(folder / "mask_x101.pkl", x101_state),
        FASTER: write_pkl(folder / "faster_x101.pkl", box_only),
    }


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from vcm_eval.data.synthetic import SyntheticSpec, scene_for

    return scene_for(SyntheticSpec(), "val", 0).image  # 256 x 512 RGB


def test_presets_are_the_zoo_yaml_files() -> None:
    mask, faster = preset(MASK), preset(FASTER)
    for cfg in (mask, faster):
        bb = cfg.backbone
        assert (bb.arch, bb.groups, bb.width_per_group) == ("resnet101", 32, 8)
        assert (bb.stride_in_1x1, bb.norm) == (False, "frozen_bn")
        assert cfg.image_std == X101_STD and cfg.image_mean == [103.53, 116.28, 123.675]
        assert (cfg.input_format, cfg.pixel_scale, cfg.min_size, cfg.max_size) == ("BGR", 255.0, 800, 1333)
        assert len(cfg.class_names) == 80 and cfg.class_names[0] == "person" and cfg.box_head_dim == 1024
    assert mask.with_masks is True and faster.with_masks is False
    assert (mask.name, faster.name) == (MASK, FASTER)
    r50 = preset("coco_mask_rcnn_r50_fpn").backbone
    assert (r50.groups, r50.width_per_group, r50.stride_in_1x1) == (1, 64, True)  # today's presets unchanged


def test_x101_key_list_maps_onto_both_presets_one_to_one(x101_state: dict[str, np.ndarray]) -> None:
    target = build_rcnn(preset(MASK)).state_dict()
    assert target["backbone.body.layer1.0.conv2.weight"].shape == (256, 8, 3, 3)  # 32 groups of 8
    assert target["backbone.body.layer4.2.conv2.weight"].shape == (2048, 64, 3, 3)
    assert len([k for k in target if k.startswith("backbone.body.layer3.") and k.endswith("conv2.weight")]) == 23
    conv = convert_d2_state_dict(x101_state, target)
    assert conv.unmapped == [] and conv.missing == [] and conv.shape_errors == []
    assert len(x101_state) == 562 and len(conv.state_dict) == 562
    assert set(conv.state_dict) == {k for k in target if not k.endswith("num_batches_tracked")}
    faster_target = build_rcnn(preset(FASTER)).state_dict()
    assert not any(k.startswith(MASK_HEAD) for k in faster_target)
    box_only = {k: v for k, v in x101_state.items() if not k.startswith(MASK_HEAD)}
    conv = convert_d2_state_dict(box_only, faster_target)
    assert conv.unmapped == [] and conv.missing == [] and conv.shape_errors == [] and len(conv.state_dict) == 550


@pytest.mark.parametrize("name", [MASK, FASTER])
def test_x101_pkl_loads_and_runs_end_to_end(
    name: str, x101_pkls: dict[str, Path], x101_state: dict[str, np.ndarray], image: np.ndarray
) -> None:
    model = TorchvisionRcnn(replace(preset(name, *NATIVE), weights=str(x101_pkls[name])))
    sd = model.model.state_dict()
    for d2_key, tv_key in (
        ("backbone.bottom_up.res2.0.conv2.weight", "backbone.body.layer1.0.conv2.weight"),
        ("backbone.bottom_up.res4.22.conv2.norm.running_var", "backbone.body.layer3.22.bn2.running_var"),
        ("backbone.bottom_up.res5.0.shortcut.weight", "backbone.body.layer4.0.downsample.0.weight"),
        ("roi_heads.box_head.fc1.weight", "roi_heads.box_head.fc6.weight"),
    ):
        np.testing.assert_array_equal(sd[tv_key].numpy(), x101_state[d2_key])
    body = model.model.backbone.body
    assert body.layer2[0].conv1.stride == (1, 1) and body.layer2[0].conv2.stride == (2, 2)  # C2 model: stride in 3x3
    assert body.layer2[0].conv2.groups == 32
    feats = model.features(image)
    assert isinstance(feats, FeatureSet) and feats.input_size == (256, 512) and feats.image_size == (256, 512)
    assert {lv: tuple(feats[lv].shape) for lv in LEVELS} == {
        "p2": (256, 64, 128),
        "p3": (256, 32, 64),
        "p4": (256, 16, 32),
        "p5": (256, 8, 16),
        "p6": (256, 4, 8),
    }
    inst = model.predict_from_features(feats)
    assert isinstance(inst, Instances) and len(inst) == 100
    assert inst.boxes.shape == (100, 4) and inst.labels.min() >= 1 and inst.labels.max() <= 80
    if name == FASTER:
        assert inst.masks is None
    else:
        assert inst.masks is not None and inst.masks.shape == (100, 256, 512) and inst.masks.dtype == np.bool_
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):  # coded end to end, both ways
        quant = build_codec(compose_cfg(["pipeline=quant", f"model={name}"]))
        anchor = build_codec(compose_cfg(["pipeline=image_anchor", "pipeline.qp=37", f"model={name}"]))
    assert isinstance(quant, FeatureCodec) and isinstance(anchor, ImageCodec)
    coded = quant.encode(feats)
    decoded = quant.decode(coded)
    assert {lv: decoded[lv].shape for lv in decoded} == {lv: feats[lv].shape for lv in decoded} and len(coded) > 1000
    assert len(model.predict_from_features(decoded)) > 0
    picture = anchor.decode(anchor.encode(image))
    assert picture.shape == image.shape and np.abs(picture.astype(int) - image).mean() < 20
    assert len(model.predict(picture)) > 0


def test_x101_backbone_matches_resnext_reference(x101_state: dict[str, np.ndarray], image: np.ndarray) -> None:
    cfg = preset(MASK, *NATIVE)
    body = build_fpn_backbone(arch="resnet101", norm="frozen_bn", groups=32, width_per_group=8, **RESNET_SHAPE)
    prefix = "backbone."
    target = {prefix + k: v for k, v in body.state_dict().items()}
    conv = convert_d2_state_dict({k: v for k, v in x101_state.items() if k.startswith(prefix)}, target)
    assert conv.unmapped == [] and conv.missing == []
    body.load_state_dict({k[len(prefix) :]: v for k, v in conv.state_dict.items()})
    bgr = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float()
    x = ((bgr - torch.tensor(cfg.image_mean)[:, None, None]) / torch.tensor(cfg.image_std)[:, None, None])[None]
    s = {k: torch.from_numpy(v) for k, v in x101_state.items() if k.startswith(prefix)}
    with torch.no_grad():
        ref = reference_d2_backbone(x, s, X101_BLOCKS, stride_in_1x1=False)
        got = body.eval()(x)
    for lv, key in zip(LEVELS, ("0", "1", "2", "3", "pool")):
        assert got[key].shape == ref[lv].shape
        torch.testing.assert_close(got[key], ref[lv], rtol=1e-4, atol=1e-4 * float(ref[lv].abs().max()))


def test_grouped_convs_need_a_bottleneck_resnet() -> None:
    with pytest.raises(ConfigError, match=r"groups=32 / width_per_group=8 .*bottleneck ResNet"):
        build_fpn_backbone(arch="resnet18", groups=32, width_per_group=8, **RESNET_SHAPE)
    with pytest.raises(ConfigError, match="groups/width_per_group need a torchvision ResNet arch"):
        build_fpn_backbone(arch="slim", fpn_channels=256, widths=[32] * 4, blocks=[1] * 4, stem_width=32, groups=2)
    with pytest.raises(ConfigError, match="must be >= 1"):
        build_fpn_backbone(arch="resnet50", groups=0, **RESNET_SHAPE)


def test_default_backbone_fields_keep_older_checkpoints_loadable() -> None:
    arch = RcnnConfig().architecture()["backbone"]
    assert (arch["groups"], arch["width_per_group"]) == (1, 64)


# --- against detectron2 itself (skipped where it is not installed) ---------------------------------


@pytest.mark.parametrize("name", [MASK, FASTER])
def test_hand_written_x101_key_list_is_detectron2s(name: str) -> None:
    pytest.importorskip("detectron2", reason="detectron2 is not installed (optional extra)")
    from vcm_eval.vision.detectron2_rcnn import Detectron2Rcnn

    d2 = Detectron2Rcnn(preset(name, *NATIVE))
    have = {k: tuple(v.shape) for k, v in d2.model.state_dict().items()}
    assert have == dict(x101_shapes(masks=name == MASK))


@pytest.mark.parametrize("name", [MASK, FASTER])
def test_both_backends_give_the_same_x101_detections(name: str, x101_pkls: dict[str, Path], image: np.ndarray) -> None:
    pytest.importorskip("detectron2", reason="detectron2 is not installed (optional extra)")
    from vcm_eval.vision.detectron2_rcnn import Detectron2Rcnn

    cfg = replace(preset(name, *NATIVE), weights=str(x101_pkls[name]))
    results = {}
    models = {"torchvision": TorchvisionRcnn(cfg), "detectron2": Detectron2Rcnn(cfg)}
    for backend, model in models.items():
        feats = model.features(image)
        results[backend] = (feats, model.predict_from_features(feats))
    (f_tv, tv), (f_d2, d2) = results["torchvision"], results["detectron2"]
    for lv in LEVELS:
        assert float((f_tv[lv] - f_d2[lv]).abs().max()) < 1e-4 * float(f_d2[lv].abs().max())
    assert len(d2) == 100 and len(tv) == len(d2)
    np.testing.assert_array_equal(tv.labels, d2.labels)
    np.testing.assert_allclose(tv.scores, d2.scores, atol=1e-5)
    np.testing.assert_allclose(tv.boxes, d2.boxes, atol=1e-3)
    if name == FASTER:
        assert tv.masks is None and d2.masks is None
    else:
        assert tv.masks is not None and d2.masks is not None
        assert (tv.masks != d2.masks).mean() < 1e-4
