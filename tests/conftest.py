"""Shared fixtures: a small synthetic dataset on disk and Hydra config composition."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from vcm_eval.determinism import pin_cpu_kernels

pin_cpu_kernels()  # as every command does, before torch's first convolution (tests run the code in-process)

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import vcm_eval.config  # noqa: F401 - registers the config schemas
from vcm_eval.codecs.vvc.encoder import VvcEncoder
from vcm_eval.data.synthetic import SyntheticSpec, scene_for, write_split
from vcm_eval.resources import CONF_DIR


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 synthetic val images of the default spec, written once per test session."""
    root = tmp_path_factory.mktemp("synthetic")
    write_split(root, SyntheticSpec(), "val", 6, progress=False)
    return root


@pytest.fixture
def hydra_conf() -> Iterator[None]:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The config ``python -m vcm_eval`` would build from these overrides (inside ``hydra_conf``)."""
    return compose(config_name="config", overrides=overrides)


def compose_suite(overrides: list[str]) -> DictConfig:
    """The config ``python -m vcm_eval.suite`` would build from these overrides (inside ``hydra_conf``)."""
    return compose(config_name="suite", overrides=overrides)


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own feature cache (``paths.cache`` defaults to ``$VCM_EVAL_CACHE``): no test
    reads features another test, or an earlier checkout, wrote."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("VCM_EVAL_CACHE", str(folder))
    return folder


def records_without_timings(results: Path) -> dict[tuple[str, int], dict]:
    """(run folder name, image id) -> that image's record minus its ``*_s`` timings, for every run under ``results``."""
    out = {}
    for f in results.rglob("records.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            out[(f.parent.name, rec["image_id"])] = {k: v for k, v in rec.items() if not k.endswith("_s")}
    return out


@pytest.fixture(scope="session")
def vvc() -> VvcEncoder:
    """VVenC + FFmpeg's vvc decoder with the codec's own defaults."""
    return VvcEncoder()


@pytest.fixture(scope="session")
def val_image() -> np.ndarray:
    """Synthetic val image 0 of the default spec (512 x 256 RGB)."""
    return scene_for(SyntheticSpec(), "val", 0).image
