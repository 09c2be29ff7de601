"""``python -m vcm_eval.report [report.runs=...] [report.anchor=...]``: tables, BD-rate and figures of finished runs.

Reads run folders only (conf/report.yaml; ``vcm_eval.report.report``); never runs a network.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vcm_eval import config as _config  # noqa: F401 - registers the config schemas
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.cli import guarded, run_command


def run(cfg: DictConfig) -> object:
    """The report of ``cfg.report``; prints its tables and the files it wrote."""
    from vcm_eval.report.report import run_report

    result = run_report(cfg)
    print(result.text)
    for path in result.incomplete:
        print(f"not finished (rerun its command to resume): {path}")
    print("wrote: " + ", ".join(str(p) for p in result.files))
    return result


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="report")
def main(cfg: DictConfig) -> None:
    guarded(lambda: run(cfg))


def cli() -> None:
    run_command(main)


if __name__ == "__main__":
    cli()
