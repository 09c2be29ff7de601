"""The ``paths`` schema every command shares (runs, suites, reports, training, anchors)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PathsConfig:
    """Where data, results and caches live (relative paths are relative to the launch dir)."""

    data: str = "${oc.env:VCM_EVAL_DATA,data}"
    results: str = "${oc.env:VCM_EVAL_RESULTS,results}"
    cache: str = "${oc.env:VCM_EVAL_CACHE,.cache/vcm_eval}"
