"""Entry point: ``python -m vcm_eval [pipeline=<name>] [key=value ...] [-m sweeps]``.

A thin wrapper around ``run``: user-fixable problems (``VcmEvalError``) print as one line and
exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from vcm_eval import config as _config  # noqa: F401 - registers the config schemas
from vcm_eval.errors import VcmEvalError


def run(cfg: DictConfig, *, base_overrides: list[str] | None = None) -> object:
    """One run, or a suite of runs (``pipeline=suite``)."""
    if cfg.pipeline.name == "suite":
        from vcm_eval.suite import run_suite

        return run_suite(cfg, base_overrides=base_overrides or [])
    from vcm_eval.run import run_single

    row = run_single(cfg)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return row


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg, base_overrides=list(HydraConfig.get().overrides.task))
    except VcmEvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
