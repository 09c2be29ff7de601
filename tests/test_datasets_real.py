"""Cityscapes and COCO loaders on tiny fixtures in the official on-disk layouts and file names.

The fixtures are written here the way the official archives lay them out; ground truth fed back as
predictions must score 100 with pycocotools and cityscapesscripts, and a wrong root must fail
with a message naming the expected layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import compose_cfg
from PIL import Image
from pycocotools import mask as mask_utils

from vcm_eval.config import EvalConfig
from vcm_eval.data.cityscapes import instance_categories
from vcm_eval.data.config import CityscapesDatasetConfig, CocoDatasetConfig
from vcm_eval.data.datasets import build_dataset
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.metrics.evaluate import evaluate_records

H, W = 96, 192
# city, sequence, frame; instances: (instanceIds value, y0, y1, x0, x1)
CITY_IMAGES: list[tuple[str, int, int, list[tuple[int, int, int, int, int]]]] = [
    ("frankfurt", 0, 294, [(26000, 40, 80, 10, 60), (26001, 50, 90, 120, 170), (24000, 10, 60, 70, 90)]),
    (
        "frankfurt",
        1,
        19,
        [(24000, 30, 80, 20, 40), (33000, 50, 90, 60, 110), (29000, 5, 30, 150, 185), (24, 5, 25, 100, 140)],
    ),
    ("lindau", 0, 19, [(28000, 20, 80, 30, 130), (25000, 30, 70, 140, 160)]),
]


def write_cityscapes(root: Path, split: str = "val") -> None:
    """leftImg8bit + gtFine (instanceIds, labelIds) PNGs named as in the official archives."""
    rng = np.random.default_rng(0)
    for city, seq, frame, instances in CITY_IMAGES:
        stem = f"{city}_{seq:06d}_{frame:06d}"
        img_dir, gt_dir = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        ids = np.full((H, W), 7, dtype=np.int32)  # road
        ids[:8] = 23  # sky
        for value, y0, y1, x0, x1 in instances:
            ids[y0:y1, x0:x1] = value
        labels = np.where(ids >= 1000, ids // 1000, ids)
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(img_dir / f"{stem}_leftImg8bit.png")
        Image.fromarray(ids.astype(np.uint16)).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
        Image.fromarray(labels.astype(np.uint8)).save(gt_dir / f"{stem}_gtFine_labelIds.png")


@pytest.fixture(scope="module")
def cs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cityscapes")
    write_cityscapes(root)
    return root


def _gt_records(coco_json: Path, drop_every: int = 0) -> list[dict[str, Any]]:
    """Each image's non-crowd ground truth as a run's records (score 1, 8 bits per image)."""
    coco = json.loads(coco_json.read_text())
    records = []
    for im in coco["images"]:
        dets = [
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": a["bbox"],
                "score": 1.0,
                "segmentation": a["segmentation"],
            }
            for a in coco["annotations"]
            if a["image_id"] == im["id"] and not a["iscrowd"]
        ]
        if drop_every:
            dets = dets[::drop_every]
        pixels = im["height"] * im["width"]
        records.append(
            {
                "image_id": im["id"],
                "bits": 8,
                "pixels": pixels,
                "encode_s": 0.0,
                "decode_s": 0.0,
                "task_s": 0.0,
                "detections": dets,
            }
        )
    return records


def test_cityscapes_categories_are_the_8_evaluated_classes() -> None:
    cats = instance_categories()
    assert [c["name"] for c in cats] == ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    assert [c["cityscapes_id"] for c in cats] == [24, 25, 26, 27, 28, 31, 32, 33]
    assert [c["id"] for c in cats] == list(range(1, 9))


def test_cityscapes_loader_builds_coco_json_from_gtfine(cs_root: Path, tmp_path: Path) -> None:
    cfg = CityscapesDatasetConfig(root=str(cs_root))
    ds = build_dataset(cfg, data_dir=tmp_path, progress=False)
    assert ds.cityscapes_gt == cs_root.resolve() / "gtFine" / "val"
    assert [im["file_name"] for im in ds.images] == [
        "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png",
        "leftImg8bit/val/frankfurt/frankfurt_000001_000019_leftImg8bit.png",
        "leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png",
    ]
    sample = next(iter(ds))
    assert sample.image.shape == (H, W, 3) and sample.image.dtype == np.uint8
    coco = json.loads(ds.coco_json.read_text())
    by_image = [[a for a in coco["annotations"] if a["image_id"] == i] for i in range(3)]
    # image 1: person + bicycle instances, a person group (id 24 < 1000) as crowd; caravan (ignoreInEval) dropped
    assert sorted((a["category_id"], a["iscrowd"]) for a in by_image[1]) == [(1, 0), (1, 1), (8, 0)]
    car = next(a for a in by_image[0] if a["category_id"] == 3)
    assert car["bbox"] == [10.0, 40.0, 50.0, 40.0] and car["area"] == 2000.0
    assert mask_utils.area(car["segmentation"]) == 2000
    # cached: a second build reuses the same file
    mtime = os.stat(ds.coco_json).st_mtime_ns
    again = build_dataset(cfg, data_dir=tmp_path, progress=False)
    assert again.coco_json == ds.coco_json and os.stat(again.coco_json).st_mtime_ns == mtime
    assert len(build_dataset(CityscapesDatasetConfig(name="c", root=str(cs_root), limit=2), data_dir=tmp_path)) == 2


def test_cityscapes_ground_truth_scores_100_with_both_evaluators(cs_root: Path, tmp_path: Path) -> None:
    ds = build_dataset(CityscapesDatasetConfig(root=str(cs_root)), data_dir=tmp_path, progress=False)
    metrics = evaluate_records(ds, _gt_records(ds.coco_json), EvalConfig())
    assert metrics["bbox_AP"] == pytest.approx(100.0)
    assert metrics["segm_AP"] == pytest.approx(100.0)
    assert metrics["cityscapes_AP"] == pytest.approx(100.0)
    assert metrics["bpp"] == pytest.approx(24 / (3 * H * W))
    worse = evaluate_records(ds, _gt_records(ds.coco_json, drop_every=2), EvalConfig())
    assert worse["cityscapes_AP"] < 90.0 and worse["segm_AP"] < 90.0


def test_cityscapes_wrong_root_names_the_layout(cs_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset.root"):
        build_dataset(CityscapesDatasetConfig(name="c"), data_dir=tmp_path)
    with pytest.raises(DataError, match=r"leftImg8bit/val/<city>/<city>_<seq>_<frame>_leftImg8bit.png"):
        build_dataset(CityscapesDatasetConfig(name="c", root=str(cs_root / "gtFine")), data_dir=tmp_path)
    with pytest.raises(DataError, match="leftImg8bit/test"):
        build_dataset(CityscapesDatasetConfig(name="c", root=str(cs_root), split="test"), data_dir=tmp_path)
    broken = tmp_path / "broken"
    write_cityscapes(broken)
    (broken / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_instanceIds.png").unlink()
    with pytest.raises(DataError, match="lindau_000000_000019_gtFine_instanceIds.png"):
        build_dataset(CityscapesDatasetConfig(name="c", root=str(broken)), data_dir=tmp_path)


def _polygon(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_coco(root: Path, split: str = "val2017") -> Path:
    """<root>/<split>/<12-digit id>.jpg + <root>/annotations/instances_<split>.json (polygons + a crowd RLE)."""
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(1)
    cats = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
    ]
    boxes = {
        139: [(1, 10, 10, 60, 90), (3, 80, 40, 150, 100)],
        285: [(3, 5, 20, 100, 70)],
        632: [(1, 30, 30, 70, 110), (1, 100, 20, 140, 100)],
    }
    images, anns = [], []
    for image_id, objs in boxes.items():
        name = f"{image_id:012d}.jpg"
        Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(root / split / name)
        images.append({"id": image_id, "file_name": name, "height": 120, "width": 160})
        for cat, x0, y0, x1, y1 in objs:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "segmentation": _polygon(x0, y0, x1, y1),
                    "area": float((x1 - x0) * (y1 - y0)),
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "iscrowd": 0,
                }
            )
    crowd = np.zeros((120, 160), dtype=np.uint8)
    crowd[100:118, 0:60] = 1
    rle = mask_utils.encode(np.asfortranarray(crowd))
    anns.append(
        {
            "id": len(anns) + 1,
            "image_id": 285,
            "category_id": 1,
            "segmentation": {"size": [120, 160], "counts": rle["counts"].decode("ascii")},
            "area": float(crowd.sum()),
            "bbox": [0.0, 100.0, 60.0, 18.0],
            "iscrowd": 1,
        }
    )
    coco = {"images": images, "annotations": anns, "categories": cats}
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(coco))
    return path


def _polygon_gt_as_rle_records(coco_json: Path) -> list[dict[str, Any]]:
    coco = json.loads(coco_json.read_text())
    records = []
    for im in coco["images"]:
        dets = []
        for a in coco["annotations"]:
            if a["image_id"] != im["id"] or a["iscrowd"]:
                continue
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], im["height"], im["width"]))
            rle["counts"] = rle["counts"].decode("ascii")
            dets.append(
                {
                    "image_id": im["id"],
                    "category_id": a["category_id"],
                    "bbox": a["bbox"],
                    "score": 1.0,
                    "segmentation": rle,
                }
            )
        records.append(
            {
                "image_id": im["id"],
                "bits": 0,
                "pixels": 1,
                "encode_s": 0.0,
                "decode_s": 0.0,
                "task_s": 0.0,
                "detections": dets,
            }
        )
    return records


def test_coco_loader_from_root_and_ground_truth_scores_100(tmp_path: Path) -> None:
    coco_json = write_coco(tmp_path / "coco")
    ds = build_dataset(CocoDatasetConfig(root=str(tmp_path / "coco")), data_dir=tmp_path)
    assert ds.image_ids == [139, 285, 632] and ds.cityscapes_gt is None
    assert ds.path_of(285) == tmp_path / "coco" / "val2017" / "000000000285.jpg"
    assert {c.name: c.coco_id for c in ds.categories} == {"person": 1, "car": 3}
    assert next(iter(ds)).image.shape == (120, 160, 3)
    metrics = evaluate_records(ds, _polygon_gt_as_rle_records(coco_json), EvalConfig(evaluators=["coco", "cityscapes"]))
    assert metrics["bbox_AP"] == pytest.approx(100.0) and metrics["segm_AP"] == pytest.approx(100.0)
    assert "cityscapes_AP" not in metrics  # no gtFine: the Cityscapes evaluator does not run
    explicit = CocoDatasetConfig(images=str(tmp_path / "coco" / "val2017"), annotations=str(coco_json), limit=1)
    assert build_dataset(explicit, data_dir=tmp_path).image_ids == [139]


def test_coco_wrong_root_names_the_layout(tmp_path: Path) -> None:
    write_coco(tmp_path / "coco")
    with pytest.raises(ConfigError, match="dataset.root"):
        build_dataset(CocoDatasetConfig(), data_dir=tmp_path)
    with pytest.raises(DataError, match=r"annotations/instances_val2017.json"):
        build_dataset(CocoDatasetConfig(root=str(tmp_path)), data_dir=tmp_path)
    wrong_images = CocoDatasetConfig(root=str(tmp_path / "coco"), images=str(tmp_path / "coco"))
    with pytest.raises(DataError, match="000000000139.jpg"):
        build_dataset(wrong_images, data_dir=tmp_path)


def test_presets_compose_with_user_paths(hydra_conf: None, cs_root: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        ["dataset=cityscapes", f"dataset.root={cs_root}", "model=cityscapes_mask_rcnn_r50_fpn", "model.weights=/w.pkl"]
    )
    assert cfg.dataset.kind == "cityscapes" and cfg.model.min_size == 1024 and cfg.model.max_size == 2048
    assert list(cfg.model.class_names) == [c["name"] for c in instance_categories()]
    assert cfg.model.image_mean == [103.53, 116.28, 123.675] and cfg.model.input_format == "BGR"
    ds = build_dataset(cfg.dataset, data_dir=tmp_path, progress=False)
    assert len(ds) == 3
    coco = compose_cfg(
        ["dataset=coco", "dataset.root=/data/coco", "model=coco_faster_rcnn_r50_fpn", "model.weights=/w.pkl"]
    )
    assert coco.dataset.split == "val2017" and coco.model.min_size == 800 and coco.model.max_size == 1333
    assert len(coco.model.class_names) == 80 and coco.model.with_masks is False


@pytest.mark.parametrize(
    ("kind", "foreign"), [("synthetic", "annotations=x.json"), ("coco", "seed=1"), ("cityscapes", "images=/x")]
)
def test_each_dataset_kind_refuses_another_kinds_field(hydra_conf: None, kind: str, foreign: str) -> None:
    """One schema per kind: a field of another kind fails at composition, it is not silently ignored."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match=f"dataset.{foreign.split('=')[0]}"):
        compose_cfg([f"dataset={kind}", f"dataset.{foreign}"])
