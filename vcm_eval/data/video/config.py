"""Config schemas of the video datasets (MPEG's FCM video test conditions; docs/video.md).

``dataset=synthetic_video|sfu|mot`` picks a kind. Every kind builds a ``VideoDataset``
(``vcm_eval.data.video.base``) through the builder its ``_target_`` names, a function
``(cfg, runtime) -> VideoDataset`` (``vcm_eval.data.datasets.build_dataset``). As for the image
datasets, each schema holds only the fields its reader uses, so a misspelled or foreign key fails
when the config is composed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from vcm_eval.data.config import DatasetConfig


@dataclass
class VideoDatasetConfig(DatasetConfig):
    """What every video dataset kind has, on the image datasets' base (so ``dataset=<video kind>`` composes
    wherever a ``DatasetConfig`` is expected; ``split`` is not used by the video kinds).

    ``limit`` > 0 keeps the first ``limit`` frames of every sequence (0 = all); ``sequences`` keeps
    the sequences of these names and ``classes`` those of these classes (empty = all). ``root`` is the
    dataset's folder (empty: the kind's default). ``_target_`` names the builder, a function
    ``(cfg, runtime) -> VideoDataset``. ``tracked``: the category names a tracker follows
    on this dataset when ``tracker.categories`` is empty (empty = all; TVD and HiEve: ``[person]``, the
    only class of their ground truth, as JDE tracks it). ``cttc_class``: a class's name in the CTTC CSV,
    ``{}`` standing for the class (upper-cased, as MPEG's ``gen_mpeg_cttc_csv.py`` names them: SFU
    ``CLASS-AB``, TVD ``TVD``, HiEve ``HIEVE-1080P``).
    """

    sequences: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    tracked: list[str] = field(default_factory=list)
    cttc_class: str = "CLASS-{}"


@dataclass
class SyntheticVideoSpec:
    """Everything that determines the synthetic video (and so the name of its folder).

    ``sequence_count`` sequences of ``frames`` frames of ``width`` x ``height`` at ``fps``; each holds
    between ``min_objects`` and ``max_objects`` moving objects; an object with fewer than
    ``min_visible_pixels`` visible pixels in a frame is painted over there (never unlabelled).
    """

    seed: int = 0
    height: int = 128
    width: int = 256
    sequence_count: int = 3
    frames: int = 16
    fps: int = 30
    min_objects: int = 3
    max_objects: int = 6
    min_visible_pixels: int = 24


@dataclass
class SyntheticVideoConfig(VideoDatasetConfig, SyntheticVideoSpec):
    """``kind: synthetic_video``: the embedded default's video, generated on first use.

    Written under ``root`` (empty = ``paths.data``/<folder named by the generator settings>) in
    both distributed layouts (SFU-HW-Objects-v1 and MOT); read back through the SFU reader (frames,
    detection truth) and the MOT reader (tracks).
    """

    name: str = "synthetic_video"
    kind: str = "synthetic_video"
    _target_: str = "vcm_eval.data.video.synthetic.synthetic_video_dataset"


@dataclass
class SfuDatasetConfig(VideoDatasetConfig):
    """``kind: sfu``: SFU-HW-Objects-v1 as distributed (raw YUV + per-frame YOLO-style text files).

    ``root`` holds ``Class<X>/<yuv>`` and ``Class<X>/Annotations/<Name>/*_<frame>.txt``
    (vcm_eval.data.video.sfu). ``sequence_list``: the CSV of sequences (empty = MPEG's FCM list
    shipped with vcm_eval, ``sfu_hw_objects.csv``).
    """

    name: str = "sfu"
    kind: str = "sfu"
    _target_: str = "vcm_eval.data.video.sfu.sfu_dataset"
    sequence_list: str = ""


@dataclass
class MotDatasetConfig(VideoDatasetConfig):
    """``kind: mot``: a tracking set in MOT layout (TVD, HiEve): ``<root>/<seq>/{seqinfo.ini,img1/,gt/gt.txt}``.

    ``intra_period``: the coding intra period of every sequence (0 = MPEG's rule: 32 up to 30 fps, 64
    above). ``seq_class``: the class of every sequence (empty = its height, e.g. ``1080p``, which
    groups HiEve's sequences as MPEG reports them).
    """

    name: str = "mot"
    kind: str = "mot"
    _target_: str = "vcm_eval.data.video.mot.mot_dataset"
    intra_period: int = 0
    seq_class: str = ""


VIDEO_DATASET_SCHEMAS: dict[str, type[VideoDatasetConfig]] = {
    "synthetic_video": SyntheticVideoConfig,
    "sfu": SfuDatasetConfig,
    "mot": MotDatasetConfig,
}


def register(cs: ConfigStore) -> None:
    """Store each kind's schema as ``dataset/base_<kind>`` (conf/dataset/<kind>.yaml extends it)."""
    for kind, node in VIDEO_DATASET_SCHEMAS.items():
        cs.store(group="dataset", name=f"base_{kind}", node=node)
