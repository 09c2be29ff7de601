"""The embedded synthetic dataset: deterministic, and its COCO and Cityscapes files agree."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from vcm_eval.data.config import SyntheticSpec
from vcm_eval.data.scene import CLASSES
from vcm_eval.data.synthetic import scene_for, write_split


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic(tmp_path: Path) -> None:
    spec = SyntheticSpec()
    write_split(tmp_path / "a", spec, "val", 3, progress=False)
    write_split(tmp_path / "b", spec, "val", 3, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    other = scene_for(SyntheticSpec(seed=1), "val", 0)
    assert not np.array_equal(other.image, scene_for(spec, "val", 0).image)


def test_scene_properties() -> None:
    spec = SyntheticSpec()
    heights, classes, occluded = [], set(), 0
    for i in range(20):
        scene = scene_for(spec, "train", i)
        assert scene.image.shape == (256, 512, 3) and scene.image.dtype == np.uint8
        for cls_idx, mask in zip(scene.instance_classes, scene.instance_masks):
            ys = np.nonzero(mask.any(axis=1))[0]
            heights.append(ys.max() - ys.min() + 1)
            classes.add(cls_idx)
        # instance masks are disjoint (occlusion resolved)
        total = np.sum([m.astype(int) for m in scene.instance_masks], axis=0)
        assert total.max() <= 1
        # occlusion: another instance's pixels inside an instance's bounding box
        for k, m in enumerate(scene.instance_masks):
            ys, xs = np.nonzero(m)
            box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            others = [o for j, o in enumerate(scene.instance_masks) if j != k]
            occluded += any(o[box].any() for o in others)
    assert classes == set(range(len(CLASSES))) and len(CLASSES) >= 3
    assert min(heights) < 16 and max(heights) > 100  # small to large: every FPN level matters
    assert occluded > 0


def test_coco_and_cityscapes_describe_the_same_instances(synth_root: Path) -> None:
    coco = json.loads((synth_root / "annotations" / "instances_val.json").read_text())
    cats = {c["id"]: c["cityscapes_id"] for c in coco["categories"]}
    for image in coco["images"]:
        stem = Path(image["file_name"]).name.replace("_leftImg8bit.png", "")
        city = stem.split("_")[0]
        ids = np.asarray(Image.open(synth_root / "gtFine" / "val" / city / f"{stem}_gtFine_instanceIds.png"))
        labels = np.asarray(Image.open(synth_root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png"))
        cs_instances = {int(v): ids == v for v in np.unique(ids) if v >= 1000}
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert len(anns) == len(cs_instances) > 0
        for ann in anns:
            mask = mask_utils.decode(ann["segmentation"]).astype(bool)
            match = [v for v, m in cs_instances.items() if np.array_equal(m, mask)]
            assert len(match) == 1 and match[0] // 1000 == cats[ann["category_id"]]
            assert np.all(labels[mask] == cats[ann["category_id"]])
            x, y, w, h = ann["bbox"]
            ys, xs = np.nonzero(mask)
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        rgb = np.asarray(Image.open(synth_root / image["file_name"]))
        assert rgb.shape == (image["height"], image["width"], 3)
