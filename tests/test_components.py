"""Datasets are built as every component is (``vcm_eval.utils.components.build``): from the view of
their own group, with interpolations into other groups resolved, and a researcher's own builder named
by ``dataset._target_``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import compose_cfg
from omegaconf import DictConfig, OmegaConf

from vcm_eval.data.base import EvalDataset
from vcm_eval.data.datasets import build_dataset
from vcm_eval.data.video.base import VideoDataset
from vcm_eval.data.video.config import MotDatasetConfig, SyntheticVideoConfig
from vcm_eval.errors import ConfigError
from vcm_eval.utils.components import Runtime, build

SEEN: dict[str, object] = {}


def own_dataset(view: DictConfig, runtime: Runtime) -> EvalDataset:
    """A researcher's dataset builder: what ``dataset._target_`` may name (records what it was given)."""
    SEEN.update(groups=sorted(view), root=view.dataset.root, data_dir=runtime.data_dir, progress=runtime.progress)
    own = OmegaConf.merge(view.dataset, {"_target_": "vcm_eval.data.synthetic.synthetic_dataset"})
    return build_dataset(own, data_dir=runtime.data_dir, progress=runtime.progress)


@pytest.mark.usefixtures("hydra_conf")
def test_an_interpolation_into_another_group_resolves_in_the_view(tmp_path: Path) -> None:
    cfg = compose_cfg([f"paths.data={tmp_path}", "dataset.size=2", "dataset.root=${paths.data}/mine"])
    dataset = build(cfg, "dataset", Runtime(data_dir=tmp_path / "unused"))
    assert dataset.image_root == tmp_path / "mine" and len(dataset.images) == 2
    assert build_dataset(cfg.dataset, data_dir=tmp_path / "unused").image_root == tmp_path / "mine"


@pytest.mark.usefixtures("hydra_conf")
def test_an_unresolvable_interpolation_names_its_group(tmp_path: Path) -> None:
    cfg = compose_cfg([f"paths.data={tmp_path}", "dataset.root=${paths.nowhere}/x"])
    with pytest.raises(ConfigError, match=r"dataset: cannot resolve an interpolation .*paths\.nowhere"):
        build_dataset(cfg.dataset, data_dir=tmp_path)


@pytest.mark.usefixtures("hydra_conf")
def test_a_researchers_dataset_builder_gets_its_own_group_and_the_runtime(tmp_path: Path) -> None:
    cfg = compose_cfg(
        ["dataset.size=2", f"dataset.root={tmp_path / 'own'}", "dataset._target_=test_components.own_dataset"]
    )
    dataset = build_dataset(cfg.dataset, data_dir=tmp_path / "data", progress=False)
    assert isinstance(dataset, EvalDataset) and len(dataset.images) == 2
    assert SEEN == {
        "groups": ["dataset"],
        "root": str(tmp_path / "own"),
        "data_dir": tmp_path / "data",
        "progress": False,
    }


@pytest.mark.usefixtures("hydra_conf")
def test_a_builder_of_another_kind_is_refused(tmp_path: Path) -> None:
    cfg = compose_cfg(["dataset.size=2", f"dataset.root={tmp_path}"])
    with pytest.raises(ConfigError, match=r"dataset._target_=vcm_eval.data.synthetic.synthetic_dataset built a "
                                          r"EvalDataset, not a VideoDataset"):  # fmt: skip
        build_dataset(cfg.dataset, data_dir=tmp_path, kind=VideoDataset)
    with pytest.raises(ConfigError, match="dataset.limit=-1 must be >= 0"):
        build_dataset(OmegaConf.merge(cfg.dataset, {"limit": -1}), data_dir=tmp_path)


def test_video_kinds_share_the_limit_check_and_keep_their_own(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset.limit=-1 must be >= 0"):
        build_dataset(SyntheticVideoConfig(limit=-1, root=str(tmp_path / "v")), data_dir=tmp_path, kind=VideoDataset)
    assert not (tmp_path / "v").exists()  # refused before anything is written
    with pytest.raises(ConfigError, match=r"dataset.intra_period=-1 must be >= 0"):
        build_dataset(MotDatasetConfig(root=str(tmp_path), intra_period=-1), data_dir=tmp_path, kind=VideoDataset)
