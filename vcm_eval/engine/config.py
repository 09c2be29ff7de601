"""Schemas of the run and suite commands (conf/config.yaml, conf/suite.yaml) and the ``cache`` group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from vcm_eval.codecs.vvc.config import VvcConfig, VvcSequenceConfig
from vcm_eval.data.config import DatasetConfig
from vcm_eval.metrics.config import EvalConfig, TrackerConfig
from vcm_eval.pipelines.config import DecodeLimits
from vcm_eval.utils.config import PathsConfig
from vcm_eval.vision.config import RcnnConfig


@dataclass
class CacheConfig:
    """What runs reuse (``vcm_eval.pipelines.cache``); neither changes a result, so neither is in the run key.

    ``features``: FPN features extracted once per (model, image, thread count, extraction code
    revision) and shared by every point of a sweep, under ``paths.cache``; no new entry is written
    once that folder holds ``max_gb`` GB (synthetic default: about 11 MB per image; Cityscapes
    R50-FPN: 175 MB). ``bitstreams``: each run keeps ``<run_dir>/bitstreams/<image_id>.bin`` and
    a rerun decodes it instead of encoding again.
    """

    features: bool = True
    max_gb: float = 20.0
    bitstreams: bool = True


@dataclass
class RunConfig:
    """``python -m vcm_eval``: one pipeline configuration over a dataset (conf/config.yaml).

    ``threads``, ``workers``, ``device``, ``progress`` decide how a run executes; of them only
    the resolved device type is in the run key (GPU and CPU kernels differ in their last bits).
    ``shard`` (video runs): ``k/n`` makes this process the k-th of n jobs sharing one run's sequences
    (``engine.video.shard_of``); not in the key, so the n jobs write one run folder.
    """

    pipeline: Any = MISSING
    dataset: DatasetConfig = MISSING
    model: RcnnConfig = MISSING
    vvc: VvcConfig = MISSING
    vvc_sequence: VvcSequenceConfig = field(default_factory=VvcSequenceConfig)  # video runs (docs/video.md)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)  # video runs with tracks (docs/video.md)
    paths: PathsConfig = field(default_factory=PathsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    decode: DecodeLimits = field(default_factory=DecodeLimits)  # bounds of one decode (not in the key)
    threads: int = 2
    workers: int = 2
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N (vcm_eval.device)
    progress: bool = True
    shard: str = ""


@dataclass
class SuiteConfig:
    """Several runs in one job (conf/suite/<name>.yaml), each an override list as typed on the command line.

    ``key=a,b,c`` values expand like a Hydra ``-m`` sweep; ``overrides`` apply to every run first,
    then the job's own command-line overrides (dataset, model, vvc, ...).
    """

    runs: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    plot: bool = True
    metrics: list[str] = field(default_factory=lambda: ["bbox_AP", "segm_AP"])  # figure panels, BD table columns
    anchors: list[str] = field(default_factory=lambda: ["image_anchor", "feature_anchor"])  # BD references
    name: str = "main"  # its folder: <results>/<dataset>/<model>/suite (main) or suite_<name>
    published: str = ""  # a CSV of published BD-rates (anchors/*.csv) printed beside the measured ones


@dataclass
class SuiteJobConfig(RunConfig):
    """``python -m vcm_eval.suite`` (conf/suite.yaml): the run config every entry starts from, and the suite."""

    suite: SuiteConfig = MISSING


def register(cs: ConfigStore) -> None:
    cs.store(name="base_run", node=RunConfig)
    cs.store(name="base_suite_job", node=SuiteJobConfig)
    cs.store(group="suite", name="base_suite", node=SuiteConfig)
