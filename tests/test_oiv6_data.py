"""dataset=oiv6 (both forms users have) and dataset=synthetic_oid: readers, hierarchy expansion, errors."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tests.conftest import compose_cfg
from vcm_eval.data.config import Oiv6DatasetConfig, SyntheticOidDatasetConfig, SyntheticSpec
from vcm_eval.data.datasets import build_dataset
from vcm_eval.data.oid_csv import OidHierarchy, parse_hierarchy
from vcm_eval.data.oid_truth import coco_categories, read_class_map
from vcm_eval.data.oiv6 import ChallengeFiles, read_challenge_dataset
from vcm_eval.data.scene import CLASSES
from vcm_eval.data.synthetic import scene_for
from vcm_eval.data.synthetic_oid import image_id_of, oid_instances
from vcm_eval.errors import ConfigError, DataError
from vcm_eval.metrics.oid_challenge import OidChallengeTasks

PERSON, CAR, BUS, VEHICLE, PHONE = "/m/01g317", "/m/0k4j", "/m/01bjv", "/m/07yv9", "/m/050k8"
BOX_HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
)

# --- TF's oid_hierarchical_labels_expansion_test.py (tensorflow/models, research/object_detection/
# dataset_tools, the version with f also under c), inputs and expected rows as written there.
TF_HIERARCHY = {
    "LabelName": "a",
    "Subcategory": [
        {"LabelName": "b"},
        {
            "LabelName": "c",
            "Subcategory": [
                {"LabelName": "d"},
                {"LabelName": "e"},
                {"LabelName": "f", "Subcategory": [{"LabelName": "d"}]},
            ],
        },
        {"LabelName": "f", "Subcategory": [{"LabelName": "d"}]},
    ],
}
TF_BBOX_ROWS = ["123,xclick,b,1,0.1,0.2,0.1,0.2,1,1,0,0,0", "123,xclick,d,1,0.2,0.3,0.1,0.2,1,1,0,0,0"]
TF_LABEL_ROWS = ["123,verification,b,0", "123,verification,c,0", "124,verification,d,1"]
TF_SEGM_ROWS = ["123,cc,b,100,100,0.1,0.2,0.1,0.2,0,MASK", "123,cc,d,100,100,0.2,0.3,0.1,0.2,0,MASK"]
TF_BBOX_EXPECTED = [
    "123,xclick,b,1,0.1,0.2,0.1,0.2,1,1,0,0,0",
    "123,xclick,d,1,0.2,0.3,0.1,0.2,1,1,0,0,0",
    "123,xclick,f,1,0.2,0.3,0.1,0.2,1,1,0,0,0",
    "123,xclick,c,1,0.2,0.3,0.1,0.2,1,1,0,0,0",
]
TF_SEGM_EXPECTED = [
    "123,cc,b,100,100,0.1,0.2,0.1,0.2,0,MASK",
    "123,cc,d,100,100,0.2,0.3,0.1,0.2,0,MASK",
    "123,cc,f,100,100,0.2,0.3,0.1,0.2,0,MASK",
    "123,cc,c,100,100,0.2,0.3,0.1,0.2,0,MASK",
]
TF_LABEL_EXPECTED = [
    "123,verification,b,0",
    "123,verification,c,0",
    "123,verification,d,0",
    "123,verification,f,0",
    "123,verification,e,0",
    "124,verification,d,1",
    "124,verification,f,1",
    "124,verification,c,1",
]


def _expand_box_row(h: OidHierarchy, row: str, label_column: int = 2) -> list[str]:
    """TF's expand_boxes_or_segments_from_csv on one row, through ``OidHierarchy``."""
    parts = row.split(",")
    return [
        ",".join([*parts[:label_column], label, *parts[label_column + 1 :]])
        for label in h.box_labels(parts[label_column])
    ]


def _expand_label_row(h: OidHierarchy, row: str) -> list[str]:
    """TF's expand_labels_from_csv (LabelName column 2, Confidence column 3) through ``OidHierarchy``."""
    image, source, label, confidence = row.split(",")
    return [f"{image},{source},{x},{confidence}" for x in h.verified_labels(label, int(confidence) == 1)]


def test_hierarchy_expansion_reproduces_tf_test() -> None:
    h = parse_hierarchy(TF_HIERARCHY, source="tf test")
    assert "a" not in h  # the root is not a class (TF's skip_root)
    assert h.ancestors["d"] == ("c", "f") and h.descendants["c"] == ("d", "e", "f")
    assert Counter(r for row in TF_BBOX_ROWS for r in _expand_box_row(h, row)) == Counter(TF_BBOX_EXPECTED)
    assert Counter(r for row in TF_SEGM_ROWS for r in _expand_box_row(h, row)) == Counter(TF_SEGM_EXPECTED)
    assert Counter(r for row in TF_LABEL_ROWS for r in _expand_label_row(h, row)) == Counter(TF_LABEL_EXPECTED)


def test_tf_test_rows_read_from_files_expand_alike(tmp_path: Path) -> None:
    """The same inputs as challenge files on disk give the truth of TF's expected rows."""
    for image_id in ("123", "124"):
        Image.new("RGB", (100, 50)).save(tmp_path / f"{image_id}.png")
    (tmp_path / "hierarchy.json").write_text(json.dumps(TF_HIERARCHY))
    (tmp_path / "classes.csv").write_text("".join(f"{x},class {x}\n" for x in "bcdef"))
    (tmp_path / "boxes.csv").write_text(BOX_HEADER + "\n" + "\n".join(TF_BBOX_ROWS) + "\n")
    (tmp_path / "labels.csv").write_text("ImageID,Source,LabelName,Confidence\n" + "\n".join(TF_LABEL_ROWS) + "\n")
    files = ChallengeFiles(
        tmp_path / "boxes.csv", tmp_path / "labels.csv", tmp_path / "classes.csv", tmp_path / "hierarchy.json"
    )
    ds = read_challenge_dataset(name="tf", images=tmp_path, files=files, data_dir=tmp_path / "data", progress=False)
    assert ds.oid is not None
    ids = {im["oid_image_id"]: im["id"] for im in ds.images}
    t123, t124 = ds.oid.images[ids["123"]], ds.oid.images[ids["124"]]
    # TF's rows hold XMin, XMax, YMin, YMax; the truth holds pixels (x0, y0, x1, y1) of the 100 x 50 image
    expected = Counter((r.split(",")[2], *(round(float(v), 9) for v in r.split(",")[4:8])) for r in TF_BBOX_EXPECTED)
    got = Counter(
        (lab, *(round(v, 9) for v in (x0 / 100, x1 / 100, y0 / 50, y1 / 50)))
        for lab, (x0, y0, x1, y1) in zip(t123.labels, t123.boxes.tolist())
    )
    assert got == expected
    assert t123.verified == {"b": False, "c": False, "d": False, "e": False, "f": False}
    assert t124.verified == {"d": True, "f": True, "c": True} and len(t124.labels) == 0


# --- the challenge files as Open Images V6 ships them ----------------------------------------------


def _challenge_folder(root: Path) -> ChallengeFiles:
    """Two images, V6-style CSVs (class descriptions without header), a hierarchy and PNG masks at 1/4 size."""
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (40, 32), (90, 90, 90)).save(root / "images" / "aa11.jpg")
    Image.new("RGB", (60, 20), (90, 90, 90)).save(root / "images" / "bb22.jpg")
    (root / "classes.csv").write_text(f"{PERSON},Person\n{CAR},Car\n{BUS},Bus\n{VEHICLE},Vehicle\n")
    hierarchy = {
        "LabelName": "/m/0bl9f",
        "Subcategory": [
            {"LabelName": VEHICLE, "Subcategory": [{"LabelName": CAR}, {"LabelName": BUS}]},
            {"LabelName": PERSON},
        ],
    }
    (root / "hierarchy.json").write_text(json.dumps(hierarchy))
    (root / "boxes.csv").write_text(
        BOX_HEADER + "\n"
        f"aa11,xclick,{PERSON},1,0.1,0.35,0.125,0.875,0,0,0,0,0\n"
        f"aa11,xclick,{CAR},1,0.5,1.0,0.5,0.9999999999999999,0,1,0,0,0\n"
        f"bb22,xclick,{PERSON},1,0.0,0.5,0.0,1.0,0,1,1,0,0\n"
    )
    (root / "labels.csv").write_text(
        "ImageID,Source,LabelName,Confidence\n"
        f"aa11,verification,{PERSON},1\naa11,verification,{CAR},1\naa11,verification,{BUS},0\n"
        f"bb22,verification,{PERSON},1\nbb22,verification,{VEHICLE},0\n"
    )
    (root / "masks" / "a").mkdir(parents=True)
    small = np.zeros((8, 10), dtype=np.uint8)
    small[1:7, 1:3] = 255
    Image.fromarray(small).save(root / "masks" / "a" / "aa11_m01g317_0001.png")  # in the <first char>/ subfolder
    (root / "masks.csv").write_text(
        "MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks\n"
        f"aa11_m01g317_0001.png,aa11,{PERSON},0001,0.100000,0.350000,0.125000,0.875000,0.9,\n"
    )
    return ChallengeFiles(
        root / "boxes.csv",
        root / "labels.csv",
        root / "classes.csv",
        root / "hierarchy.json",
        root / "masks.csv",
        root / "masks",
    )


def test_challenge_files_read_expand_and_derive_a_coco_json(tmp_path: Path) -> None:
    files = _challenge_folder(tmp_path / "oid")
    cfg = Oiv6DatasetConfig(
        root=str(tmp_path / "oid"),
        boxes_csv="boxes.csv",
        labels_csv="labels.csv",
        classes_csv="classes.csv",
        hierarchy_json="hierarchy.json",
        masks_csv="masks.csv",
        masks_dir="masks",
    )
    ds = build_dataset(cfg, data_dir=tmp_path / "data", progress=False)
    assert ds.oid is not None and len(ds) == 2
    derived = list((tmp_path / "data" / "oiv6").glob("oiv6-*.json"))
    assert derived == [ds.coco_json]
    coco = json.loads(ds.coco_json.read_text())
    assert coco["categories"] == coco_categories() and len(coco["categories"]) == 80
    assert [(im["oid_image_id"], im["width"], im["height"]) for im in coco["images"]] == [
        ("aa11", 40, 32),
        ("bb22", 60, 20),
    ]
    assert [(a["category_id"], a["iscrowd"]) for a in coco["annotations"]] == [(1, 0), (3, 0), (1, 1)]
    assert ds.oid.category_to_mid[1] == PERSON and ds.oid.category_to_mid[3] == CAR and ds.oid.category_to_mid[6] == BUS
    assert 13 not in ds.oid.category_to_mid  # stop sign: no counterpart in MPEG's table, dropped
    assert ds.oid.label_map.mids[-1] == VEHICLE and ds.oid.label_map.names[ds.oid.label_map.mids.index(CAR)] == "Car"
    assert ds.oid.ancestors is not None and ds.oid.ancestors[CAR] == (VEHICLE,)

    a, b = ds.oid.images[1], ds.oid.images[2]
    assert a.labels == [PERSON, CAR, VEHICLE] and a.group_of.tolist() == [False, False, False]
    np.testing.assert_allclose(a.boxes, [[4, 4, 14, 28], [20, 16, 40, 32], [20, 16, 40, 32]])
    assert a.verified == {PERSON: True, CAR: True, VEHICLE: True, BUS: False}
    assert b.labels == [PERSON] and b.group_of.tolist() == [True] and b.masks is None
    assert b.verified == {PERSON: True, VEHICLE: False, CAR: False, BUS: False}  # absent Vehicle: its descendants too
    assert a.masks is not None and len(a.masks) == 3  # the car and its Vehicle copy have no mask: all-zero
    expected = np.kron(
        np.asarray(Image.open(tmp_path / "oid" / "masks" / "a" / "aa11_m01g317_0001.png")) > 0, np.ones((4, 4))
    )
    np.testing.assert_array_equal(mask_utils.decode(a.masks[0]), expected.astype(np.uint8))
    assert mask_utils.decode(a.masks[1]).sum() == 0 and a.masks[2] == a.masks[1]
    assert next(iter(ds)).image.shape == (32, 40, 3)

    stamp = ds.coco_json.stat().st_mtime_ns
    again = read_challenge_dataset(
        name="oiv6", images=tmp_path / "oid" / "images", files=files, data_dir=tmp_path / "data", limit=1
    )
    assert again.coco_json == ds.coco_json and ds.coco_json.stat().st_mtime_ns == stamp  # written once
    assert again.oid is not None and list(again.oid.images) == [1]  # truth only for the kept images


def _challenge_mask(mask: np.ndarray) -> str:
    """The challenge's Mask column: base64 of zlib of the COCO RLE counts (TF's encoding)."""
    counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
    return base64.b64encode(zlib.compress(counts)).decode("ascii")


def test_mpeg_csvs_with_coco_names_and_rle_masks(tmp_path: Path) -> None:
    """MPEG's own files (CompressAI-Vision data/mpeg-vcm): 7 columns, COCO class names, RLE masks."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "0001eeaf4aed83f9.jpg")
    (tmp_path / "bbox.csv").write_text(
        "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\n"
        "0001eeaf4aed83f9,cell_phone,0.25,0.5,0.2,0.6,0\n0001eeaf4aed83f9,person,0.0,1.0,0.0,1.0,1\n"
    )
    (tmp_path / "labels.csv").write_text(
        "ImageID,LabelName,Confidence\n0001eeaf4aed83f9,cell_phone,1\n0001eeaf4aed83f9,dog,0\n"
    )
    phone = np.zeros((10, 20), dtype=bool)
    phone[2:6, 5:10] = True
    half = np.zeros((5, 10), dtype=bool)
    half[0:5, 0:10] = True
    (tmp_path / "masks.csv").write_text(
        "ImageID,LabelName,ImageWidth,ImageHeight,XMin,YMin,XMax,YMax,IsGroupOf,Mask,MaskPath\n"
        f"0001eeaf4aed83f9,cell_phone,20,10,0.25,0.2,0.5,0.6,0,{_challenge_mask(phone)},x.png\n"
        f"0001eeaf4aed83f9,person,10,5,0.0,0.0,1.0,1.0,1,{_challenge_mask(half)},y.png\n"
    )
    cfg = Oiv6DatasetConfig(root=str(tmp_path), boxes_csv="bbox.csv", labels_csv="labels.csv", masks_csv="masks.csv")
    ds = build_dataset(cfg, data_dir=tmp_path / "data", progress=False)
    assert ds.oid is not None and ds.oid.ancestors is None
    t = ds.oid.images[1]
    assert t.labels == [PHONE, PERSON] and t.group_of.tolist() == [False, True]
    assert t.verified == {PHONE: True, "/m/0bt9lr": False}
    assert t.masks is not None
    np.testing.assert_array_equal(mask_utils.decode(t.masks[0]).astype(bool), phone)
    assert mask_utils.decode(t.masks[1]).all()  # the 10x5 mask brought to the image's 20x10
    assert ds.oid.category_to_mid[77] == PHONE and ds.oid.label_map.id_of(PHONE) is not None


def test_compressai_vision_json(tmp_path: Path) -> None:
    """CompressAI-Vision's mpeg-oiv6-*-coco.json: COCO keys + oic_labelmap + oic_annotations."""
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    for name, size in (("a.jpg", (50, 40)), ("b.jpg", (30, 30))):
        Image.new("RGB", size).save(tmp_path / "images" / name)
    phone = np.zeros((40, 50), dtype=bool)
    phone[8:24, 10:30] = True
    oic = [
        {
            "image_id": 7,
            "annotations": {
                "bbox": [[0.2, 0.2, 0.6, 0.6]],  # YMin, XMin, YMax, XMax
                "cls": [2],
                "group_of": [0],
                "img_cls": ["cell_phone", "person"],
                "mask": [_challenge_mask(phone)],
                "img_size": [{"img_height": 40, "img_width": 50}],
            },
        },
        {
            "image_id": 9,
            "annotations": {"bbox": [[0.0, 0.0, 1.0, 0.5]], "cls": [1], "group_of": [1], "img_cls": ["person"]},
        },
    ]
    doc = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "height": 40, "width": 50},
            {"id": 9, "file_name": "b.jpg", "height": 30, "width": 30},
        ],
        "categories": coco_categories(),
        "annotations": [],
        "oic_labelmap": [{"id": 1, "name": "person"}, {"id": 2, "name": "cell phone"}],
        "oic_annotations": oic,
    }
    (tmp_path / "annotations" / "mpeg-oiv6-segmentation-coco.json").write_text(json.dumps(doc))
    cfg = Oiv6DatasetConfig(root=str(tmp_path), coco_json="annotations/mpeg-oiv6-segmentation-coco.json")
    ds = build_dataset(cfg, data_dir=tmp_path / "data", progress=False)
    assert ds.oid is not None and not (tmp_path / "data").exists()  # nothing derived: the json is the image list
    assert ds.oid.label_map.mids == (PERSON, PHONE) and ds.oid.label_map.names == ("Person", "Mobile phone")
    a, b = ds.oid.images[7], ds.oid.images[9]
    np.testing.assert_allclose(a.boxes, [[10, 8, 30, 24]])
    assert a.labels == [PHONE] and a.verified == {PHONE: True, PERSON: False}  # verified, no box: absent
    assert a.masks is not None
    np.testing.assert_array_equal(mask_utils.decode(a.masks[0]).astype(bool), phone)
    np.testing.assert_allclose(b.boxes, [[0, 0, 15, 30]])
    assert b.group_of.tolist() == [True] and b.masks is None and b.verified == {PERSON: True}

    telephone = "/m/07cx4"  # optional expansion (CompressAI-Vision itself does not expand)
    tree = {
        "LabelName": "/m/0bl9f",
        "Subcategory": [{"LabelName": PERSON}, {"LabelName": telephone, "Subcategory": [{"LabelName": PHONE}]}],
    }
    (tmp_path / "hierarchy.json").write_text(json.dumps(tree))
    expanded = build_dataset(
        Oiv6DatasetConfig(root=str(tmp_path), coco_json=cfg.coco_json, hierarchy_json="hierarchy.json"),
        data_dir=tmp_path / "data",
        progress=False,
    )
    assert expanded.oid is not None and expanded.oid.label_map.mids == (PERSON, PHONE, telephone)
    a = expanded.oid.images[7]
    assert a.labels == [PHONE, telephone] and a.verified == {PHONE: True, telephone: True, PERSON: False}
    assert a.masks is not None and a.masks[1] == a.masks[0]


def _json_form(tmp_path: Path, doc: dict[str, Any] | str) -> Oiv6DatasetConfig:
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "annotations").mkdir(exist_ok=True)
    Image.new("RGB", (30, 30)).save(tmp_path / "images" / "b.jpg")
    path = tmp_path / "annotations" / "mpeg-oiv6-detection-coco.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return Oiv6DatasetConfig(root=str(tmp_path), coco_json="annotations/mpeg-oiv6-detection-coco.json")


def _json_doc(**changes: Any) -> dict[str, Any]:
    ann = {"bbox": [[0.0, 0.0, 1.0, 0.5]], "cls": [1], "group_of": [0], "img_cls": ["person"]}
    doc = {
        "images": [{"id": 9, "file_name": "b.jpg", "height": 30, "width": 30}],
        "categories": coco_categories(),
        "annotations": [],
        "oic_labelmap": [{"id": 1, "name": "person"}],
        "oic_annotations": [{"image_id": 9, "annotations": {**ann, **changes.pop("ann", {})}}],
    }
    return {**doc, **changes}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", r"mpeg-oiv6-detection-coco\.json is not JSON"),
        ({"images": [], "categories": []}, r"mpeg-oiv6-detection-coco\.json has no oic_labelmap, oic_annotations"),
        (_json_doc(oic_labelmap=[{"id": 1, "name": "unicorn"}]), r"oic_labelmap entry .* is unknown"),
        (_json_doc(ann={"img_cls": ["unicorn"]}), r"img_cls 'unicorn' has no MID"),
        (_json_doc(ann={"cls": []}), r"oic_annotations\[0\]: malformed entry .*differ in length"),
    ],
    ids=["not-json", "missing-keys", "unknown-labelmap-name", "unknown-img-cls", "short-entry"],
)
def test_a_bad_compressai_vision_json_is_a_one_line_error_naming_it(
    tmp_path: Path, doc: dict[str, Any] | str, message: str
) -> None:
    cfg = _json_form(tmp_path, doc)
    with pytest.raises(DataError, match=message) as info:
        build_dataset(cfg, data_dir=tmp_path / "data", progress=False)
    assert "\n" not in str(info.value)
    assert _json_form(tmp_path, _json_doc()) and build_dataset(cfg, data_dir=tmp_path / "data", progress=False).oid


# --- synthetic_oid ------------------------------------------------------------------------------------


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_synthetic_oid_round_trip(tmp_path: Path) -> None:
    """Counts read back through the challenge reader equal the generator's rules applied to the scenes."""
    n = 16
    ds = build_dataset(SyntheticOidDatasetConfig(size=n), data_dir=tmp_path / "a", progress=False)
    assert ds.oid is not None and len(ds) == n and ds.image_ids == list(range(n))
    assert ds.oid.category_to_mid == {1: PERSON, 2: CAR, 3: BUS}
    assert ds.oid.label_map.mids == (PERSON, CAR, BUS, VEHICLE)
    assert image_id_of(3) == ds.path_of(3).stem
    spec, mids = SyntheticSpec(), {"person": PERSON, "car": CAR, "bus": BUS}
    total_boxes = total_group_of = total_negatives = 0
    for i in range(n):
        scene = scene_for(spec, "val", i)
        names = [CLASSES[c].name for c in scene.instance_classes]
        inst = oid_instances(scene)
        crowds = [x for x in inst if x.group_of]
        vehicles = names.count("car") + names.count("bus")
        in_crowds = names.count("person") - sum(1 for x in inst if x.mid == PERSON and not x.group_of)
        assert in_crowds >= 3 * len(crowds) and (in_crowds == 0) == (not crowds)  # crowd members lose their boxes
        t = ds.oid.images[i]
        assert len(t.labels) == len(inst) + vehicles  # + one Vehicle copy per car or bus
        assert int(t.group_of.sum()) == len(crowds) and t.labels.count(VEHICLE) == vehicles
        absent = {mids[c] for c in mids if c not in names}
        assert {k for k, v in t.verified.items() if not v} == (absent if i % 2 == 0 else set())
        assert {k for k, v in t.verified.items() if v} == {mids[c] for c in set(names)} | (
            {VEHICLE} if vehicles else set()
        )
        total_boxes += len(t.labels)
        total_group_of += len(crowds)
        total_negatives += len(absent) if i % 2 == 0 else 0
    assert total_group_of == 2 and [i for i, t in ds.oid.images.items() if t.group_of.any()] == [12, 14]
    assert total_negatives > 0 and total_boxes == sum(len(t.labels) for t in ds.oid.images.values())

    crowd_image = ds.oid.images[12]
    assert crowd_image.masks is not None
    assert mask_utils.decode(crowd_image.masks[int(np.flatnonzero(crowd_image.group_of)[0])]).sum() == 0  # no mask
    first, t0 = oid_instances(scene_for(spec, "val", 0))[0], ds.oid.images[0]
    assert t0.masks is not None and first.mask is not None
    np.testing.assert_array_equal(mask_utils.decode(t0.masks[0]).astype(bool), first.mask)

    # Scored end to end: the synthetic scenes' own instances as detections (every crowd member detected on its
    # own) give 100 only because the detections inside a group-of box count as one true positive, not as false
    # positives; the two crowds hold 3 or more such detections each.
    coco = json.loads(Path(ds.coco_json).read_text())
    detections: dict[int, list[dict[str, Any]]] = {i: [] for i in range(n)}
    for ann in coco["annotations"]:
        detections[int(ann["image_id"])].append(
            {"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"], "score": 1.0}
        )
    scored = OidChallengeTasks.from_dataset(ds, ds.image_ids)
    assert scored is not None
    for i in range(n):
        scored.process([{"image_id": i, "file_name": str(ds.path_of(i))}], [{"detections": detections[i]}])
    assert scored.evaluate() == {"oic": {"AP50": pytest.approx(100.0)}}
    assert scored.bbox.per_class_ap == {m: pytest.approx(100.0) for m in (PERSON, CAR, BUS, VEHICLE)}
    crowd = ds.oid.images[12].boxes[np.flatnonzero(ds.oid.images[12].group_of)[0]]
    inside = [d for d in detections[12] if d["category_id"] == 1 and d["bbox"][0] >= crowd[0] - 1
              and d["bbox"][0] + d["bbox"][2] <= crowd[2] + 1]  # fmt: skip
    assert len(inside) >= 3
    plain = dataclasses.replace(  # the same boxes, none of them group-of: the crowd's members are then misses
        ds.oid,
        images={i: dataclasses.replace(t, group_of=np.zeros_like(t.group_of)) for i, t in ds.oid.images.items()},
    )
    strict = OidChallengeTasks(truth=plain)
    for i in range(n):
        strict.process([{"image_id": i, "file_name": str(ds.path_of(i))}], [{"detections": detections[i]}])
    assert strict.evaluate()["oic"]["AP50"] < 100.0 and strict.bbox.per_class_ap[PERSON] < 100.0

    again = build_dataset(SyntheticOidDatasetConfig(size=n), data_dir=tmp_path / "b", progress=False)
    assert _digest(next((tmp_path / "a").glob("*/oid-v1"))) == _digest(next((tmp_path / "b").glob("*/oid-v1")))
    assert again.oid is not None
    for i in range(n):
        np.testing.assert_array_equal(again.oid.images[i].boxes, ds.oid.images[i].boxes)
        assert again.oid.images[i].labels == ds.oid.images[i].labels


def test_configs_compose(hydra_conf: None, tmp_path: Path) -> None:
    cfg = compose_cfg(["dataset=synthetic_oid", "dataset.size=3", f"paths.data={tmp_path}"])
    ds = build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=False)
    assert ds.name == "synthetic_oid" and ds.oid is not None and len(ds.oid.images) == 3
    cfg = compose_cfg(["dataset=oiv6", "dataset.root=/nowhere", "dataset.boxes_csv=b.csv"])
    assert cfg.dataset.kind == "oiv6" and cfg.dataset.images == "images"
    with pytest.raises(Exception, match="boxes_cvs"):
        compose_cfg(["dataset=oiv6", "dataset.boxes_cvs=b.csv"])


# --- errors -------------------------------------------------------------------------------------------


def test_missing_file_names_it_and_the_setting(tmp_path: Path) -> None:
    _challenge_folder(tmp_path)
    cfg = Oiv6DatasetConfig(
        root=str(tmp_path), boxes_csv="boxes.csv", labels_csv="labels-missing.csv", classes_csv="classes.csv"
    )
    with pytest.raises(DataError, match=r"labels-missing\.csv does not exist; set dataset\.labels_csv"):
        build_dataset(cfg, data_dir=tmp_path / "data", progress=False)
    cfg = Oiv6DatasetConfig(root=str(tmp_path), coco_json="annotations/none.json")
    with pytest.raises(DataError, match=r"none\.json does not exist; set dataset\.coco_json"):
        build_dataset(cfg, data_dir=tmp_path / "data", progress=False)
    with pytest.raises(ConfigError, match="boxes_csv"):
        build_dataset(Oiv6DatasetConfig(root=str(tmp_path)), data_dir=tmp_path / "data", progress=False)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (f"aa11,xclick,{PERSON},1,0.1,abc,0.1,0.8,0,0,0,0,0", r"boxes\.csv line 3, column XMax: 'abc' is not a number"),
        (
            f"aa11,xclick,{PERSON},1,0.1,0.3,0.1,0.8,0,0,2,0,0",
            r"boxes\.csv line 3, column IsGroupOf: '2' is not 0 or 1",
        ),
        (
            "aa11,xclick,/m/0zzzz,1,0.1,0.3,0.1,0.8,0,0,0,0,0",
            r"boxes\.csv line 3, column LabelName: '/m/0zzzz' is not a MID of .*classes\.csv",
        ),
        (f"aa11,xclick,{PERSON},1,0.1,0.3,0.1", r"boxes\.csv line 3: 13 columns expected"),
        (f"aa11,xclick,{PERSON},1,0.5,0.3,0.1,0.8,0,0,0,0,0", r"boxes\.csv line 3: XMin > XMax"),
    ],
)
def test_malformed_row_names_file_row_and_column(tmp_path: Path, row: str, message: str) -> None:
    files = _challenge_folder(tmp_path)
    lines = files.boxes_csv.read_text().splitlines()
    files.boxes_csv.write_text("\n".join([lines[0], lines[1], row, *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=message):
        read_challenge_dataset(
            name="oiv6", images=tmp_path / "images", files=files, data_dir=tmp_path / "data", progress=False
        )


def test_missing_column_and_label_outside_the_hierarchy(tmp_path: Path) -> None:
    files = _challenge_folder(tmp_path)
    files.labels_csv.write_text("ImageID,Source,LabelName\naa11,verification,/m/01g317\n")
    with pytest.raises(DataError, match=r"labels\.csv has no column Confidence"):
        read_challenge_dataset(
            name="oiv6", images=tmp_path / "images", files=files, data_dir=tmp_path / "data", progress=False
        )
    files.labels_csv.write_text("ImageID,Source,LabelName,Confidence\naa11,verification,/m/0bl9f,1\n")
    (tmp_path / "classes.csv").write_text(f"{PERSON},Person\n{CAR},Car\n/m/0bl9f,Entity\n")
    with pytest.raises(DataError, match=r"labels\.csv line 2: class /m/0bl9f is not in the hierarchy"):
        read_challenge_dataset(
            name="oiv6", images=tmp_path / "images", files=files, data_dir=tmp_path / "data", progress=False
        )


MASK_PNG = Path("masks") / "a" / "aa11_m01g317_0001.png"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r, f: f.hierarchy_json.write_text("{nope"), r"hierarchy\.json is not JSON"),
        (lambda r, f: (r / MASK_PNG).unlink(), r"masks\.csv line 2: mask PNG 'aa11_m01g317_0001\.png' is in neither"),
        (lambda r, f: (r / MASK_PNG).write_bytes(b"not a png"), r"cannot read mask .*aa11_m01g317_0001\.png"),
        (
            lambda r, f: f.labels_csv.write_text(f.labels_csv.read_text().replace(f"{PERSON},1", f"{PERSON},0.5", 1)),
            r"labels\.csv line 2, column Confidence: '0\.5' is not 0 or 1; use the human-verified",
        ),
    ],
    ids=["hierarchy-not-json", "mask-png-missing", "mask-png-unreadable", "fractional-confidence"],
)
def test_damaged_challenge_files_are_one_line_errors_naming_them(
    tmp_path: Path, damage: Callable[[Path, ChallengeFiles], object], message: str
) -> None:
    files = _challenge_folder(tmp_path)
    damage(tmp_path, files)
    with pytest.raises(DataError, match=message) as info:
        read_challenge_dataset(
            name="oiv6", images=tmp_path / "images", files=files, data_dir=tmp_path / "data", progress=False
        )
    assert "\n" not in str(info.value)


def test_class_map_covers_mpeg_subset() -> None:
    """Every COCO class MPEG's subset is labelled with (CompressAI-Vision data/mpeg-vcm) has a MID."""
    mpeg = (
        "person car dog bird boat airplane book apple tie carrot sheep bus pizza vase train handbag donut knife bowl "
        "surfboard skateboard bottle truck spoon cat cake horse laptop cup keyboard traffic_light clock elephant "
        "orange broccoli motorcycle cow zebra cell_phone toilet couch suitcase sports_ball backpack tennis_racket "
        "giraffe sandwich"
    )
    table = {e.coco_name: e.mid for e in read_class_map()}
    assert len(table) == 80 and sum(1 for m in table.values() if m) == 70
    assert len(mpeg.split()) == 47 and all(table[name.replace("_", " ")].startswith("/m/") for name in mpeg.split())
