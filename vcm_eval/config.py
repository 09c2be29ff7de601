"""The one table of config schemas: each owner registers its own with Hydra's ConfigStore.

Schemas live beside the code they configure (``vcm_eval/<stage>/config.py``,
``vcm_eval/codecs/<family>/config.py``) and each module's ``register`` stores them under their
group (``pipeline/base_quant``, ``vvc/base_vvc``, ...). A YAML option in conf/<group>/ starts
from one of them (``defaults: [base_<x>]``), so a misspelled key, a wrong type or a value outside
a choice's set fails when the config is composed, not half-way through a run. Importing this
module registers everything and loads no torch (tested).

A new built-in codec is its module (with ``from_config``), its schema registered here by one
line, and one YAML file in conf/pipeline/ (docs/architecture.md).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

import vcm_eval.codecs.feature_anchor.config as feature_anchor
import vcm_eval.codecs.fusion.config as fusion
import vcm_eval.codecs.image_anchor.config as image_anchor
import vcm_eval.codecs.msfc.config as msfc
import vcm_eval.codecs.quant.config as quant
import vcm_eval.codecs.vvc.config as vvc
import vcm_eval.data.config as data
import vcm_eval.data.video.config as video_data
import vcm_eval.engine.config as engine
import vcm_eval.pipelines.config as pipelines
import vcm_eval.report.config as report
import vcm_eval.vision.config as vision
from vcm_eval.codecs.feature_anchor.config import FeatureAnchorConfig
from vcm_eval.codecs.fusion.config import FusionArchConfig, FusionCodecPipelineConfig, TrainFusionConfig
from vcm_eval.codecs.image_anchor.config import ImageAnchorConfig
from vcm_eval.codecs.quant.config import Quant8Config, QuantConfig
from vcm_eval.codecs.vvc.config import VvcConfig
from vcm_eval.data.config import DatasetConfig, SyntheticDatasetConfig
from vcm_eval.engine.config import CacheConfig, RunConfig, SuiteConfig, SuiteJobConfig
from vcm_eval.metrics.config import EvalConfig
from vcm_eval.pipelines.config import PipelineConfig, UncompressedConfig, UserCodecConfig
from vcm_eval.report.config import ReportConfig, ReportJobConfig
from vcm_eval.utils.config import PathsConfig
from vcm_eval.vision.config import RcnnConfig, TrainingConfig, TrainTaskConfig, TrainTaskSettings

OWNERS = (engine, pipelines, image_anchor, feature_anchor, quant, fusion, msfc, vvc, data, video_data, vision, report)

__all__ = [
    "CacheConfig", "DatasetConfig", "EvalConfig", "FeatureAnchorConfig", "FusionArchConfig",
    "FusionCodecPipelineConfig", "ImageAnchorConfig", "PathsConfig", "PipelineConfig", "Quant8Config", "QuantConfig",
    "RcnnConfig", "ReportConfig", "ReportJobConfig", "RunConfig", "SuiteConfig", "SuiteJobConfig",
    "SyntheticDatasetConfig", "TrainFusionConfig", "TrainTaskConfig", "TrainTaskSettings", "TrainingConfig",
    "UncompressedConfig", "UserCodecConfig", "VvcConfig", "register_configs",
]  # fmt: skip


def register_configs() -> None:
    """Register every owner's schemas; YAML options in conf/ extend them by name."""
    cs = ConfigStore.instance()
    for owner in OWNERS:
        owner.register(cs)


register_configs()
