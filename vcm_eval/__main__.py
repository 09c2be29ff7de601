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
    """One run, a suite of runs (``pipeline=suite``), or a report of finished runs (``report=...``)."""
    if cfg.get("report") is not None:
        from vcm_eval.report.report import run_report

        result = run_report(cfg)
        print(result.text)
        for path in result.incomplete:
            print(f"not finished (rerun its command to resume): {path}")
        print("wrote: " + ", ".join(str(p) for p in result.files))
        return result
    if cfg.pipeline.name == "suite":
        from vcm_eval.suite import run_suite

        return run_suite(cfg, base_overrides=base_overrides or [])
    from vcm_eval.run import run_single

    row = run_single(cfg)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return row


def multirun_flag_first(argv: list[str]) -> list[str]:
    """Move ``-m``/``--multirun`` before the overrides: Hydra's parser rejects it after one, so
    ``python -m vcm_eval pipeline=x -m pipeline.qp=22,27`` would fail without this."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return argv[:1] + flags + [a for a in argv[1:] if a not in ("-m", "--multirun")]


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg, base_overrides=list(HydraConfig.get().overrides.task))
    except VcmEvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def missing_launcher(argv: list[str]) -> str | None:
    """The install hint when ``hydra/launcher=slurm`` is asked for without the submitit plugin."""
    wants = any(a.startswith("hydra/launcher=") and a.split("=", 1)[1] in ("slurm", "submitit_slurm", "submitit_local") for a in argv[1:])
    if not wants:
        return None
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        return "hydra/launcher=slurm needs the submitit launcher: pip install 'vcm_eval[cluster]' (hydra-submitit-launcher)"
    return None


if __name__ == "__main__":
    sys.argv = multirun_flag_first(sys.argv)
    if (hint := missing_launcher(sys.argv)) is not None:
        print(f"error: {hint}", file=sys.stderr)
        sys.exit(2)
    main()
