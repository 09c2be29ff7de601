"""``python -m vcm_eval.suite [suite=main] [key=value ...]``: the main job (conf/suite.yaml, conf/suite/).

Every entry of the suite runs as its own ``python -m vcm_eval`` command line would; the job's
own overrides (``dataset.limit=5``, ``vvc.preset=slow``) apply to every entry. Then one summary
table, one BD-rate table and the figures (``vcm_eval.engine.suite``).
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from vcm_eval import config as _config  # noqa: F401 - registers the config schemas
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.cli import guarded, run_command


def run(cfg: DictConfig, *, base_overrides: list[str]) -> object:
    """Run the suite ``cfg.suite`` with the job's own overrides applied to every entry."""
    from vcm_eval.engine.suite import run_suite

    return run_suite(cfg, base_overrides=base_overrides)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="suite")
def main(cfg: DictConfig) -> None:
    guarded(lambda: run(cfg, base_overrides=list(HydraConfig.get().overrides.task)))


def cli() -> None:
    run_command(main)


if __name__ == "__main__":
    cli()
