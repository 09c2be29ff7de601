"""Schema of the report command (``python -m vcm_eval.report``, conf/report.yaml): reads finished runs only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from vcm_eval.utils.choices import Choice
from vcm_eval.utils.config import PathsConfig


class BdMethod(Choice):
    """BD interpolation: ``pchip`` (JVET CTC sheets), ``cubic`` (VCEG-M33) or ``akima``."""

    pchip = "pchip"
    cubic = "cubic"
    akima = "akima"


class NonMonotone(Choice):
    """A curve whose accuracy does not grow with rate: drop dominated points (``pareto``) or refuse (``error``)."""

    pareto = "pareto"
    error = "error"


class ReportFormat(Choice):
    """``default``: tables, BD values, figures; ``mpeg_cttc``: those and MPEG's CTTC CSV of every curve."""

    default = "default"
    mpeg_cttc = "mpeg_cttc"


class CttcMode(Choice):
    """Rate points per dataset MPEG's template expects: 6 for the VCM image sets, 4 for FCM sequences."""

    vcm = "vcm"
    fcm = "fcm"


@dataclass
class ReportConfig:
    """``python -m vcm_eval.report``: tables, BD values and figures from finished runs (docs/reporting.md).

    ``runs``: a folder or glob, or a list of them, searched recursively for run folders.
    ``format=mpeg_cttc`` also writes ``mpeg_cttc_<curve>.csv`` (``vcm_eval.report.mpeg_cttc``): the
    accuracy is ``cttc_metric`` ("" = the Open Images Challenge mAP@0.5 where the runs have it,
    ``oic_segm_AP50`` for a segmentation ``cttc_dataset``, else the first of ``metrics`` they have), the dataset column
    ``cttc_dataset`` ("" = the runs' dataset name, e.g. ``mpeg-oiv6-detection`` for MPEG's sheet), and a
    curve with more or fewer rate points than ``cttc_mode`` asks for is refused.
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
    method: BdMethod = BdMethod.pchip
    non_monotone: NonMonotone = NonMonotone.pareto
    min_overlap: float = 0.5
    plot: bool = True
    log_rate: bool = False
    formats: list[str] = field(default_factory=lambda: ["pdf", "png"])
    format: ReportFormat = ReportFormat.default
    cttc_metric: str = ""
    cttc_dataset: str = ""
    cttc_mode: CttcMode = CttcMode.vcm


@dataclass
class ReportJobConfig:
    """The report command's whole config."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def register(cs: ConfigStore) -> None:
    cs.store(name="base_report_job", node=ReportJobConfig)
