"""Structured-config schemas of every config group, registered with Hydra's ConfigStore.

Each YAML option in conf/<group>/ starts from one of these schemas (``defaults: [base_<x>]``), so
a misspelled key or a wrong type fails when the config is composed, not half-way through a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from vcm_eval.codecs.fusion.config import FusionArchConfig, FusionCodecPipelineConfig, TrainFusionSettings
from vcm_eval.data.config import DATASET_SCHEMAS, DatasetConfig, SyntheticDatasetConfig
from vcm_eval.vision.config import RcnnConfig


@dataclass
class PathsConfig:
    """Where data, results and caches live (relative paths are relative to the launch dir)."""

    data: str = "${oc.env:VCM_EVAL_DATA,data}"
    results: str = "${oc.env:VCM_EVAL_RESULTS,results}"
    cache: str = "${oc.env:VCM_EVAL_CACHE,.cache/vcm_eval}"


@dataclass
class VvcConfig:
    """How VVC is run (``vcm_eval.codecs.vvc.encoder``, ``vcm_eval.codecs.vvc.vtm``; docs/anchors.md).

    ``backend``: ``ffmpeg`` (VVenC in FFmpeg; ``ffmpeg`` empty = imageio-ffmpeg's binary),
    ``vvenc_apps`` (vvencapp/vvdecapp) or ``vtm`` (VTM as MPEG's anchor scripts run it).
    ``colour``: the image anchor's colour path, ``mpeg`` or ``bt709_limited``; ``colour_ffmpeg``
    the FFmpeg that converts it ("" = FFmpeg 4.2.2 for ``mpeg``, as MPEG ran it). ``qpa`` (perceptual
    QP adaptation) is off: the task network, not a human, looks at the result. ``shipped``: the
    folder of shipped VTM image-anchor bitstreams that the ``vtm`` backend decodes instead of
    encoding (relative paths also resolve against the project root).
    """

    backend: str = "ffmpeg"
    ffmpeg: str = ""
    vvencapp: str = "vvencapp"
    vvdecapp: str = "vvdecapp"
    preset: str = "medium"  # docs/anchors.md: the encoder gap against VTM, and why medium
    threads: int = 1
    qpa: bool = False
    extra_params: str = ""
    colour: str = "mpeg"
    colour_ffmpeg: str = ""
    vtm_encoder: str = ""
    vtm_decoder: str = ""
    vtm_cfg: str = ""
    shipped: str = "anchors/vtm_image_anchor"


@dataclass
class PipelineConfig:
    """Common base: the pipeline's registered name."""

    name: str = MISSING


@dataclass
class UncompressedConfig(PipelineConfig):
    name: str = "uncompressed"


@dataclass
class ImageAnchorConfig(PipelineConfig):
    """Pipeline 1: VVC intra coding of the image at ``qp`` (0..63)."""

    name: str = "image_anchor"
    qp: int = 32


@dataclass
class FeatureAnchorConfig(PipelineConfig):
    """Pipeline 2 feature anchor: FPN levels tiled into one 10-bit frame, VVC intra at ``qp``.

    ``levels``: ``p2-p5`` (P6 rebuilt at the decoder from decoded P5) or ``p2-p6`` (all coded).
    ``minmax``: 10-bit min-max range per ``tensor`` (all coded levels) or per ``level``.
    ``chroma``: ``400`` monochrome VVC stream, or ``420`` with neutral chroma planes coded too.
    See docs/feature_anchor.md.
    """

    name: str = "feature_anchor"
    qp: int = 32
    levels: str = "p2-p5"
    minmax: str = "tensor"
    chroma: str = "400"


@dataclass
class QuantConfig(PipelineConfig):
    """Method A: per-channel normalization + ``n_symbols``-interval quantization, threshold ``z``.

    ``levels``: ``p2-p6`` (range) or ``p2+p3`` (list). ``side_dtype``: ``float16``/``float32`` for
    mu, sigma and centroids. ``centroids``: ``channel`` or ``level`` reconstruction values.
    ``entropy_model``: ``causal``, ``static`` or ``raw`` (the paper's fixed bits). docs/quant.md.
    """

    name: str = "quant"
    n_symbols: int = 4
    z: float = 1.5
    levels: str = "p2-p6"
    side_dtype: str = "float16"
    centroids: str = "channel"
    entropy_model: str = "causal"


@dataclass
class Quant8Config(PipelineConfig):
    """The paper's 8-bit features: uniform 8-bit quantization of each level (min/max sent)."""

    name: str = "quant8"
    levels: str = "p2-p6"
    side_dtype: str = "float32"


@dataclass
class UserCodecConfig(PipelineConfig):
    """``pipeline=image_codec`` / ``feature_codec``: a researcher's codec, built by Hydra from ``codec``.

    ``codec``: ``_target_`` (``module.Class``, a ``vcm_eval.codecs.base`` ImageCodec or
    FeatureCodec) and its keyword arguments, e.g. ``pipeline.codec._target_=my_codecs.JpegCodec
    pipeline.codec.quality=30``. The keyword arguments are the run's parameters. docs/your_codec.md.
    """

    name: str = MISSING
    codec: dict[str, Any] = field(default_factory=dict)


@dataclass
class SuiteConfig(PipelineConfig):
    """Several runs in one job, each an override list as typed on the command line.

    ``key=a,b,c`` values expand like a Hydra ``-m`` sweep. The job's own dataset/model/codec
    overrides apply to every run.
    """

    name: str = "suite"
    runs: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # applied to every run, before the job's own
    plot: bool = True
    metrics: list[str] = field(default_factory=lambda: ["bbox_AP", "segm_AP"])  # panels of the figure, columns of the BD table
    anchors: list[str] = field(default_factory=lambda: ["image_anchor", "feature_anchor"])  # BD references


@dataclass
class EvalConfig:
    """Evaluators and their settings (recorded with every result).

    ``coco``: pycocotools bbox + segm AP. ``cityscapes``: cityscapesscripts instance-level AP,
    run when the dataset has gtFine instanceIds files.
    """

    evaluators: list[str] = field(default_factory=lambda: ["coco", "cityscapes"])
    mask_threshold: float = 0.5
    primary_metric: str = "segm_AP"


@dataclass
class ReportConfig:
    """``report=default``: tables, BD values and figures from finished runs (docs/reporting.md).

    ``runs``: a folder or glob, or a list of them, searched recursively for run folders.
    ``anchor`` (+ ``anchor_params`` to pick one of its curves) is the BD reference. The parameters
    that move along a curve are the ones each run's codec declares (``Codec.rate_params``, kept in
    metrics.json); any other parameter starts a new curve.
    ``method``: pchip (JVET CTC sheets), cubic (VCEG-M33) or akima; ``non_monotone``: pareto
    (drop dominated points) or error; ``min_overlap``: smallest intersection over union of the
    two curves' ranges for a BD value (0..1).
    """

    runs: Any = "${paths.results}"
    output: str = "${paths.results}/report"
    anchor: str = "image_anchor"
    anchor_params: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=lambda: ["bbox_AP", "segm_AP", "cityscapes_AP"])
    method: str = "pchip"
    non_monotone: str = "pareto"
    min_overlap: float = 0.5
    plot: bool = True
    log_rate: bool = False
    formats: list[str] = field(default_factory=lambda: ["pdf", "png"])


@dataclass
class CacheConfig:
    """What runs reuse (``vcm_eval.pipelines.cache``); neither changes a result, so neither is in the run key.

    ``features``: FPN features extracted once per (model, image, thread count) and shared by every
    point of a sweep, under ``paths.cache``; no new entry is written once that folder holds
    ``max_gb`` GB (synthetic default: about 11 MB per image; Cityscapes R50-FPN: 175 MB).
    ``bitstreams``: each run keeps ``<run_dir>/bitstreams/<image_id>.bin`` and a rerun decodes it
    instead of encoding again.
    """

    features: bool = True
    max_gb: float = 20.0
    bitstreams: bool = True


@dataclass
class RunConfig:
    """The whole program's config (conf/config.yaml)."""

    pipeline: Any = MISSING
    dataset: DatasetConfig = MISSING
    model: RcnnConfig = MISSING
    codec: VvcConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    threads: int = 2
    workers: int = 2
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N (vcm_eval.device)
    progress: bool = True
    report: ReportConfig | None = None  # report=default: tables and figures instead of a run


@dataclass
class TrainTaskSettings:
    """Training of the embedded default task model (``python -m vcm_eval.vision.train``).

    AdamW with linear warm-up and cosine decay; every image is drawn from the synthetic train
    split by index, so a resumed run sees exactly the batches an uninterrupted one would.
    ``autocast_bf16`` runs forward/backward in bfloat16 on the CPU (1.4x faster here, but a
    first attempt went NaN at iteration 235 and bf16 box coordinates lose pixels: off by default).
    Non-finite losses or gradients skip the step (at most ``max_skipped`` times).
    """

    iterations: int = 700
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    grad_clip: float = 10.0
    max_skipped: int = 20
    seed: int = 0
    train_size: int = 20000
    hflip: bool = True
    autocast_bf16: bool = False
    checkpoint_every: int = 25
    workdir: str = "checkpoints/task_model"
    output: str = "vcm_eval/vision/zoo/synthetic_maskrcnn_slim.pt"
    loader_workers: int = 1


@dataclass
class TrainingConfig:
    """What every training command shares: the task model, its data, paths, threads, progress bar."""

    model: RcnnConfig = MISSING
    dataset: SyntheticDatasetConfig = MISSING  # both trainers draw their images from the generator
    paths: PathsConfig = field(default_factory=PathsConfig)
    threads: int = 2
    device: str = "auto"  # where training runs; checkpoints are saved on the CPU
    progress: bool = True


@dataclass
class TrainTaskConfig(TrainingConfig):
    """conf/train_task.yaml."""

    train: TrainTaskSettings = field(default_factory=TrainTaskSettings)



@dataclass
class TrainFusionConfig(TrainingConfig):
    """conf/train_fusion.yaml: one rate point of the fusion codec (vcm_eval.codecs.fusion.train)."""

    arch: FusionArchConfig = field(default_factory=FusionArchConfig)
    train: TrainFusionSettings = field(default_factory=TrainFusionSettings)


def register_configs() -> None:
    """Register every schema; YAML options in conf/ extend them by name."""
    cs = ConfigStore.instance()
    cs.store(name="base_run", node=RunConfig)
    cs.store(name="base_train_task", node=TrainTaskConfig)
    cs.store(name="base_train_fusion", node=TrainFusionConfig)
    for kind, node in DATASET_SCHEMAS.items():
        cs.store(group="dataset", name=f"base_{kind}", node=node)
    cs.store(group="model", name="base_rcnn", node=RcnnConfig)
    cs.store(group="codec", name="base_vvc", node=VvcConfig)
    cs.store(group="report", name="base_report", node=ReportConfig)
    for name, node in {
        "base_uncompressed": UncompressedConfig,
        "base_image_anchor": ImageAnchorConfig,
        "base_feature_anchor": FeatureAnchorConfig,
        "base_quant": QuantConfig,
        "base_quant8": Quant8Config,
        "base_user_codec": UserCodecConfig,
        "base_fusion_codec": FusionCodecPipelineConfig,
        "base_suite": SuiteConfig,
    }.items():
        cs.store(group="pipeline", name=name, node=node)


register_configs()
