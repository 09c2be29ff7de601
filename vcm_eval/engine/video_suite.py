"""``python -m vcm_eval.suite suite=video``: several video runs in one job, then the per-sequence and per-class
tables in kbps, the BD-rate table and the figures (conf/suite/video.yaml; docs/video.md).

The suite command hands a suite whose dataset is a video dataset to ``run_video_suite`` (``engine.suite``).
Each entry of ``suite.runs`` expands and composes exactly as in the image suite (``expand_entry``, Hydra's
compose API on conf/config.yaml with ``suite.overrides`` and the job's own overrides) and runs as its own
``python -m vcm_eval`` command line would (``run_video``), in its own resumable run folder.

The image anchor's VTM streams: an entry with ``vvc=vtm`` and no ``vvc.vtm_encoder`` decodes the shipped
VTM low-delay streams (``anchors/vtm_video_anchor``, ``VvcSequenceCodec``'s reader). Before it runs, the
suite checks that a stream is shipped for every sequence at its QP, structure, intra period and frame rate
(the frames' content digest, as the reader matches them); when one is missing the entry runs VVenC
instead (``vvc=vvc``, the same structure and intra period) and the job says so and why, instead of
failing half way: CI and a fresh checkout have no VTM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from hydra import compose
from omegaconf import DictConfig

from vcm_eval.codecs.image_anchor.codec import VvcImageCodec
from vcm_eval.codecs.vvc.sequence import VvcSequenceCodec
from vcm_eval.codecs.vvc.shipped_sequences import SequenceDigest
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.engine.suite_entries import composed_entries
from vcm_eval.engine.video import build_video_dataset, is_video, run_video
from vcm_eval.errors import ConfigError
from vcm_eval.pipelines.video import listed_qp
from vcm_eval.report.tables import to_markdown
from vcm_eval.report.video import SHOWN, VIDEO_METRICS, write_video_report
from vcm_eval.utils.components import locate


def shipped_gaps(cfg: DictConfig) -> list[str]:
    """What the shipped VTM sequence streams (``vvc_sequence.shipped``) lack for the image-anchor run ``cfg``
    (empty: every stream is there)."""
    codec = VvcSequenceCodec.from_settings(cfg.vvc, cfg.vvc_sequence)  # the run's reader of the shipped streams
    shipped = codec.shipped
    if shipped is None:
        return [f"no shipped VTM video streams in {cfg.vvc_sequence.shipped!r}"]
    structure = str(cfg.vvc_sequence.structure)
    try:
        encoder = shipped.only_encoder(structure)
    except ConfigError as exc:
        return [str(exc)]
    missing, point = [], int(cfg.vvc_sequence.rate_point)
    for seq in build_video_dataset(cfg):
        if not seq.has_yuv:
            return [f"{seq.name} is not raw 4:2:0 video (the shipped streams code raw sequences)"]
        digest = SequenceDigest()
        for planes in seq.yuv_frames():
            digest.update(Yuv420(*planes))
        period = int(cfg.vvc_sequence.intra_period) or seq.intra_period
        qp = listed_qp(seq, point, codec, structure) if point else int(cfg.pipeline.qp)
        if shipped.get(digest.hexdigest(), qp, structure, encoder, intra_period=period, fps=seq.fps) is None:
            missing.append(f"{seq.name} ({seq.frame_count} frames) at QP {qp}, {structure}, intra period {period}")
    return missing


def _uses_shipped(cfg: DictConfig) -> bool:
    target = cfg.pipeline.get("_target_", "")
    return (
        bool(target)
        and locate(target, "pipeline._target_") is VvcImageCodec
        and str(cfg.vvc.backend) == "vtm"
        and not cfg.vvc.vtm_encoder
    )


def run_video_suite(cfg: DictConfig, *, base_overrides: list[str]) -> pd.DataFrame:
    """Run every entry of ``cfg.suite.runs`` on the video dataset, then print and write the tables, BD values
    against ``suite.anchors``, figures and the CTTC CSVs of the curves with 4 rate points per sequence."""
    if cfg.get("shard"):
        raise ConfigError(f"shard={cfg.shard}: the video job codes every sequence of every run and then reports "
                          "them; run single runs with shard=k/n to share their sequences between jobs")  # fmt: skip
    run_dirs: list[Path] = []
    times: list[dict[str, Any]] = []
    dataset_name, model_name, results = "", "", Path(cfg.paths.results)
    for entry, overrides, composed in composed_entries(cfg, base_overrides):
        sub = compose(config_name="config", overrides=composed)
        if not is_video(sub):
            raise ConfigError(f"suite entry {entry!r} runs dataset={sub.dataset.name}, not a video dataset; "
                              "a video suite sets dataset=<video dataset> in suite.overrides")  # fmt: skip
        if _uses_shipped(sub):
            gaps = shipped_gaps(sub)
            if gaps:
                print(f"note: {' '.join(overrides)}: the shipped VTM streams lack {'; '.join(gaps[:3])}"
                      f"{' ...' if len(gaps) > 3 else ''}; running VVenC instead (vvc=vvc)")  # fmt: skip
                sub = compose(config_name="config", overrides=[*composed, "vvc=vvc"])
        timings: dict[str, float] = {}
        result = run_video(sub, timings=timings)
        run_dirs.append(Path(result["run_dir"]))
        times.append({"run": " ".join(overrides), "run_s": round(sum(timings.values()), 1)})
        dataset_name, model_name, results = sub.dataset.name, sub.model.name, Path(sub.paths.results)
    out_dir = results / dataset_name / model_name / "suite"
    metrics = [m for m in cfg.suite.metrics if m in SHOWN] or list(VIDEO_METRICS)
    anchors = list(cfg.suite.anchors) or ["image_anchor"]
    report = write_video_report(run_dirs, out_dir, anchor=anchors, metrics=metrics, plot=cfg.suite.plot,
                                cttc_metric=metrics[0], cttc_mode="fcm")  # fmt: skip
    print(report.text)
    print("\nSeconds per run (0: found done already):\n\n" + to_markdown(pd.DataFrame(times)))
    print("wrote: " + ", ".join(str(p) for p in report.files))
    return report.frame
