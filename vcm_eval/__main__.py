"""``python -m vcm_eval pipeline=<name> [key=value ...] [-m sweeps]``: one run, or a Hydra sweep of runs.

A thin wrapper around ``run(cfg)`` (conf/config.yaml). The main job and the report are commands
of their own: ``python -m vcm_eval.suite`` and ``python -m vcm_eval.report``. The previous
release's forms (``pipeline=suite``, ``report=default``) still reach them, with a warning, for
one release. Errors: ``vcm_eval.utils.cli``.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from vcm_eval import config as _config  # noqa: F401 - registers the config schemas
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.cli import guarded, run_command


def run(cfg: DictConfig) -> dict[str, object]:
    """One run of ``cfg.pipeline`` over ``cfg.dataset``; prints and returns its summary row."""
    from vcm_eval.engine.run import run_single
    from vcm_eval.engine.video import is_video

    if is_video(cfg):  # a video dataset: every sequence through the pipeline (docs/video.md)
        from vcm_eval.engine.video import run_video
        from vcm_eval.report.video import video_text

        result = run_video(cfg)
        if result.get("pending"):  # a shard whose partner jobs are still coding (shard=k/n)
            print(f"shard {result['shard']}: its sequences are done; {len(result['pending'])} of the run's sequences "
                  f"are still being coded by other jobs ({', '.join(result['pending'])}); the last job to finish "
                  f"writes {result['run_dir']}/video.json")  # fmt: skip
            return result
        print(video_text([result]))
        return result
    row = run_single(cfg)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return row


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    guarded(lambda: run(cfg))


def forwarded(argv: list[str]) -> str | None:
    """The command a previous-release command line now belongs to: ``suite``, ``report`` or None."""
    if "pipeline=suite" in argv[1:]:
        return "suite"
    if any(a.startswith(("report=", "report.", "+report")) for a in argv[1:]):
        return "report"
    return None


def cli() -> None:
    """``python -m vcm_eval`` / ``vcm-eval``."""
    command = forwarded(sys.argv)
    if command == "suite":
        from vcm_eval import suite

        print(
            "warning: 'pipeline=suite' is deprecated; run the main job with: python -m vcm_eval.suite", file=sys.stderr
        )
        renamed = {"pipeline.runs": "suite.runs", "pipeline.overrides": "suite.overrides",
                   "pipeline.plot": "suite.plot", "pipeline.metrics": "suite.metrics",
                   "pipeline.anchors": "suite.anchors"}  # fmt: skip
        args = [a for a in sys.argv[1:] if a != "pipeline=suite"]
        sys.argv = [
            sys.argv[0],
            *(renamed.get(a.partition("=")[0], a.partition("=")[0]) + a[len(a.partition("=")[0]) :] for a in args),
        ]
        suite.cli()
        return
    if command == "report":
        from vcm_eval.report import __main__ as report

        print(
            "warning: 'report=default' is deprecated; run: python -m vcm_eval.report report.runs=...", file=sys.stderr
        )
        sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a.partition("=")[0] not in ("report", "+report"))]
        report.cli()
        return
    run_command(main)


if __name__ == "__main__":
    cli()
