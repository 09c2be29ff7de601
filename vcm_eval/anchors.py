"""``python -m vcm_eval.anchors``: ship the VTM image-anchor bitstreams of a dataset, and the anchor curves.

``curves_from=<results folder>`` instead writes the image- and feature-anchor rate-accuracy curves
of the runs found there as ``anchors/<dataset>_<pipeline>.csv`` (``anchor_curves``).

Every image of ``dataset`` at every QP of ``qps`` goes through the image anchor's codec with the
``vtm`` backend (MPEG's colour path and VTM arguments, ``vcm_eval.codecs``), and its raw VVC stream
lands in ``<output>/qp<QP>/<image_id>.266`` with a row in ``<output>/manifest.csv`` (image sha256,
QP, colour path, VTM setting, md5, encode seconds; ``vcm_eval.codecs.vvc.shipped``). Before a stream is
kept, its slice QP is read back with FFmpeg's ``trace_headers`` and must equal the QP asked for.

Rerunning resumes: streams already in the manifest are skipped, and the manifest is rewritten
atomically after every image, so a kill loses at most the images in flight. ``workers`` VTM
processes run at once (VTM is single-threaded). The command of the shipped set is in
docs/anchors.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from vcm_eval.codecs.image_anchor import VvcImageCodec
from vcm_eval.codecs.vvc.encoder import VvcEncoder
from vcm_eval.codecs.vvc.headers import slice_qps
from vcm_eval.codecs.vvc.shipped import FIELDS, MANIFEST, resolve_folder
from vcm_eval.config import PathsConfig, VvcConfig
from vcm_eval.data.config import DatasetConfig
from vcm_eval.data.datasets import build_dataset
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.atomic import atomic_write
from vcm_eval.utils.digest import image_digest
from vcm_eval.utils.manifest import manifest_text, read_manifest


@dataclass
class MakeAnchorsConfig:
    """conf/make_anchors.yaml."""

    dataset: DatasetConfig = MISSING
    vvc: VvcConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    qps: list[int] = field(default_factory=list)
    output: str = "anchors/vtm_image_anchor"
    workers: int = 2
    curves_from: str = ""  # a results folder: write its anchors' rate-accuracy curves instead of encoding
    curves_output: str = "anchors"


ConfigStore.instance().store(name="base_make_anchors", node=MakeAnchorsConfig)


def make_anchors(cfg: MakeAnchorsConfig) -> Path:
    """Encode what the manifest lacks; returns the manifest's path."""
    if not cfg.qps:
        raise ConfigError("qps is empty; list the QPs to ship, e.g. 'qps=[32,42,47,52,57]'")
    vvc = VvcEncoder.from_settings(cfg.vvc)
    if vvc.vtm is None or not vvc.can_encode:
        raise ConfigError("make_anchors runs VTM: set vvc.vtm_encoder and vvc.vtm_cfg (docs/anchors.md)")
    dataset = build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=False)
    out_dir = resolve_folder(cfg.output)
    manifest = out_dir / MANIFEST
    rows = read_manifest(manifest)
    lock = Lock()
    codecs = {
        qp: VvcImageCodec(vvc=vvc, qp=qp, colour=cfg.vvc.colour, colour_ffmpeg=cfg.vvc.colour_ffmpeg) for qp in cfg.qps
    }

    def one(qp: int, entry: dict[str, Any]) -> None:
        codec = codecs[qp]
        sample = dataset.load(entry)
        digest = image_digest(sample.image)
        started = time.perf_counter()
        stream = codec.vvc_stream(sample.image)
        seconds = time.perf_counter() - started
        coded = slice_qps(stream, vvc.ffmpeg)
        if coded != [qp]:
            raise CodecError(f"VTM coded image {sample.image_id} at slice QP {coded}, not {qp}: check vvc.vtm_cfg")
        rel = Path(f"qp{qp}") / f"{sample.image_id}.266"
        atomic_write(out_dir / rel, stream)
        row = {"image_id": sample.image_id, "file_name": entry["file_name"], "image_sha256": digest, "qp": qp,
               "colour": cfg.vvc.colour, "encoder": codec.encoder, "bitstream": rel.as_posix(), "bytes": len(stream),
               "md5": hashlib.md5(stream).hexdigest(), "encode_s": round(seconds, 3)}  # fmt: skip
        with lock:
            rows.append(row)
            atomic_write(manifest, manifest_text(rows, FIELDS, lambda r: (int(r["qp"]), int(r["image_id"]))))
        print(f"qp {qp} image {sample.image_id}: {len(stream)} bytes, {seconds:.1f} s", flush=True)

    encoder = codecs[cfg.qps[0]].encoder
    done = {(r["file_name"], int(r["qp"])) for r in rows if r["encoder"] == encoder and r["colour"] == cfg.vvc.colour}
    todo = [(qp, e) for qp in cfg.qps for e in dataset.images if (e["file_name"], qp) not in done]
    print(f"{encoder}: {len(todo)} streams to encode, {len(done)} shipped already")
    with ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as pool:
        for fut in [pool.submit(one, qp, e) for qp, e in todo]:
            fut.result()
    return manifest


CURVE_COLUMNS = (
    "pipeline",
    "qp",
    "bpp",
    "bbox_AP",
    "segm_AP",
    "cityscapes_AP",
    "images",
    "encoder",
    "preset",
    "colour",
    "codec_version",
)


def anchor_curves(results: Path, out_dir: Path) -> list[Path]:
    """Write ``<dataset>_<pipeline>.csv`` for the image and feature anchor runs under ``results``.

    One row per QP with rate, accuracy, image count and the encoder setting (name, VVenC preset,
    colour path, full version string), so a change that moves an anchor shows in a diff. Runs of
    one anchor pipeline that the report would draw as more than one curve (another encoder, preset,
    colour path, task model, weights, device, code revision or image count) are an error: point
    ``curves_from`` at one setup.
    """
    from vcm_eval.report.report import find_runs, load_runs

    runs, _ = load_runs(find_runs(str(results))[0])
    written = []
    for (dataset, pipeline), group in runs[runs["pipeline"].isin(["image_anchor", "feature_anchor"])].groupby(
        ["dataset", "pipeline"]
    ):
        curves = sorted({f"{c} (setup {k})" for c, k in zip(group["curve"], group["setup"], strict=True)})
        if len(curves) > 1:  # the report's identity: anything but the QP that moves the results
            raise ConfigError(
                f"{results} holds {len(curves)} {pipeline} curves {curves}; point curves_from at the runs of one"
            )
        rows = []
        for r in group.sort_values("qp").to_dict("records"):
            config = OmegaConf.load(Path(r["run_dir"]) / "config.yaml")
            assert isinstance(config, DictConfig)  # a run folder's config.yaml is a mapping
            settings = config.get("vvc") or config.get("codec")  # the VVC group (``codec`` before the rename)
            prov = json.loads((Path(r["run_dir"]) / "provenance.json").read_text())
            rows.append({**{k: r.get(k) for k in CURVE_COLUMNS}, "qp": int(r["qp"]), "images": int(r["images"]),
                         "preset": settings.preset if settings.backend != "vtm" else "",
                         "colour": settings.colour if pipeline == "image_anchor" else "",
                         "codec_version": prov.get("codec_version", "")})  # fmt: skip
        if len({(r["encoder"], r["preset"], r["images"]) for r in rows}) > 1 or len({r["qp"] for r in rows}) != len(
            rows
        ):
            raise ConfigError(
                f"{results} holds several {pipeline} setups (encoders, presets or image counts); "
                "point curves_from at one"
            )
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CURVE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
        path = out_dir / f"{dataset}_{pipeline}.csv"
        atomic_write(path, out.getvalue())
        written.append(path)
    return written


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="make_anchors")
def main(cfg: MakeAnchorsConfig) -> None:
    if cfg.curves_from:
        for path in anchor_curves(Path(cfg.curves_from), Path(cfg.curves_output)):
            print(f"wrote {path}")
        return
    print(f"manifest: {make_anchors(cfg)}")


if __name__ == "__main__":
    main()
