"""The split task network equals torchvision's own unsplit forward pass, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcm_eval.data.config import SyntheticSpec
from vcm_eval.data.synthetic import scene_for
from vcm_eval.errors import CheckpointError
from vcm_eval.vision.base import LEVELS
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, TorchvisionRcnn, build_rcnn, save_checkpoint, to_instances


@pytest.fixture(scope="module")
def model() -> TorchvisionRcnn:
    torch.manual_seed(0)
    return TorchvisionRcnn(RcnnConfig(weights=None))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return scene_for(SyntheticSpec(), "val", 1).image


def test_features_are_p2_to_p6_with_256_channels(model: TorchvisionRcnn, image: np.ndarray) -> None:
    feats = model.features(image)
    assert list(feats) == list(LEVELS)
    assert feats.shapes() == {
        "p2": (256, 64, 128),
        "p3": (256, 32, 64),
        "p4": (256, 16, 32),
        "p5": (256, 8, 16),
        "p6": (256, 4, 8),
    }
    assert feats.image_size == (256, 512) and feats.input_size == (256, 512)
    assert torch.equal(model.rebuild_p6(feats["p5"]), feats["p6"])


def test_split_equals_unsplit_forward(model: TorchvisionRcnn, image: np.ndarray) -> None:
    with torch.inference_mode():
        ref = to_instances(model.model([torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255.0])[0])
    split = model.predict_from_features(model.features(image))
    chained = model.predict(image)
    assert len(ref) > 0
    for got in (split, chained):
        np.testing.assert_array_equal(got.boxes, ref.boxes)
        np.testing.assert_array_equal(got.scores, ref.scores)
        np.testing.assert_array_equal(got.labels, ref.labels)
        np.testing.assert_array_equal(got.masks, ref.masks)


def test_p5_split_rebuilds_p6(model: TorchvisionRcnn, image: np.ndarray) -> None:
    feats = model.features(image)
    without_p6 = feats.replace({k: v for k, v in feats.items() if k != "p6"})
    a, b = model.predict_from_features(feats), model.predict_from_features(without_p6)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_odd_image_size(model: TorchvisionRcnn, image: np.ndarray) -> None:
    odd = image[:203, :333]
    feats = model.features(odd)
    assert feats.image_size == (203, 333)
    inst = model.predict_from_features(feats)
    assert inst.masks is not None and inst.masks.shape[1:] == (203, 333)
    assert (inst.boxes[:, 2] <= 333).all() and (inst.boxes[:, 3] <= 203).all()


def test_checkpoint_round_trip_and_mismatch(tmp_path, model: TorchvisionRcnn, image: np.ndarray) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, model.model, model.cfg, meta={"note": "test"}, half=False)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "vcm_eval.task_model/1"
    loaded = TorchvisionRcnn(RcnnConfig(weights=str(path)))
    np.testing.assert_array_equal(loaded.predict(image).boxes, model.predict(image).boxes)
    with pytest.raises(CheckpointError, match="box_head_dim"):
        TorchvisionRcnn(RcnnConfig(weights=str(path), box_head_dim=128))
    with pytest.raises(CheckpointError, match="do not exist"):
        TorchvisionRcnn(RcnnConfig(weights=str(tmp_path / "missing.pt")))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        TorchvisionRcnn(RcnnConfig(weights=str(tmp_path / "junk.pt")))


def test_faster_rcnn_variant_has_no_masks(image: np.ndarray) -> None:
    m = TorchvisionRcnn(
        RcnnConfig(weights=None, with_masks=False), model=build_rcnn(RcnnConfig(weights=None, with_masks=False))
    )
    assert m.predict(image).masks is None
