"""``python -m vcm_eval.video_anchors``: ship the VTM streams of a video dataset (the video anchor).

Every sequence of ``dataset`` (default: the synthetic video) at every QP of ``qps`` is coded by
``VvcSequenceCodec`` with the ``vtm`` backend and the ``vvc_sequence`` preset's structure and VTM cfg
(default: low delay, ``encoder_lowdelay_vtm.cfg``), at the sequence's test-condition intra period
(``vvc_sequence.intra_period=0``) or the one given. The raw stream lands in
``<output>/qp<QP>/<sequence>.266`` with a row in ``<output>/manifest.csv``
(``vcm_eval.codecs.vvc.shipped_sequences``: content sha256 of the frames, QP, structure, intra period,
frames, fps, VTM setting, size, md5, encode seconds).

Why each check: a shipped stream replaces VTM in every later run, so it must be what the manifest
says. Before a stream is kept, its headers are read back (``headers.stream_structure``): it must hold
every frame of the sequence, its intra pictures must sit at POC 0, P, 2P, ... (P = the intra period),
their slices must carry the QP asked for, and a low-delay stream must not reorder pictures. Then it
must decode: FFmpeg's vvc decoder must return every frame, and VTM's DecoderApp (``vvc.vtm_decoder``,
when set) the same frames (``check_decodes`` says which VTM streams fail this).

Rerunning resumes: streams already in the manifest (same frames, QP, structure, intra period and VTM
setting) are skipped, and the manifest is rewritten atomically after every stream, so a kill loses at
most the streams in flight. ``workers`` VTM processes run at once (VTM is single-threaded). The
command of the shipped set is in docs/anchors.md ("VTM video anchor streams").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from vcm_eval.codecs.vvc.config import VvcConfig, VvcSequenceConfig
from vcm_eval.codecs.vvc.headers import StreamStructure, stream_structure
from vcm_eval.codecs.vvc.sequence import CodedSequence, VvcSequenceCodec
from vcm_eval.codecs.vvc.shipped import MANIFEST, resolve_folder
from vcm_eval.codecs.vvc.shipped_sequences import FIELDS, SHIPPED_SEQUENCES, SequenceDigest
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.config import PathsConfig
from vcm_eval.data.config import DatasetConfig
from vcm_eval.data.datasets import build_dataset
from vcm_eval.data.video.base import VideoDataset, VideoSequence
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.resources import CONF_DIR
from vcm_eval.utils.atomic import atomic_write
from vcm_eval.utils.manifest import manifest_text, read_manifest


@dataclass
class MakeVideoAnchorsConfig:
    """conf/make_video_anchors.yaml: which sequences, coded how, written where."""

    dataset: DatasetConfig = MISSING
    vvc: VvcConfig = MISSING
    vvc_sequence: VvcSequenceConfig = MISSING
    paths: PathsConfig = field(default_factory=PathsConfig)
    qps: list[int] = field(default_factory=list)
    output: str = SHIPPED_SEQUENCES
    workers: int = 1


ConfigStore.instance().store(name="base_make_video_anchors", node=MakeVideoAnchorsConfig)


def content_digest(sequence: VideoSequence) -> str:
    """``content_sha256`` of a sequence: the digest of the 8-bit frames VTM reads (``Yuv420`` of ``yuv_frames``)."""
    digest = SequenceDigest()
    for planes in sequence.yuv_frames():
        digest.update(Yuv420(*planes))
    return digest.hexdigest()


def check_stream(structure: StreamStructure, coded: CodedSequence, name: str) -> None:
    """Refuse a stream whose headers disagree with how it was asked to be coded (module docstring).

    Raises:
        CodecError: the picture count, intra positions, intra QP or picture order is not the asked one.
    """
    where = f"VTM's stream of {name} at QP {coded.qp} ({coded.structure}, intra period {coded.intra_period})"
    if structure.count != coded.frames:
        raise CodecError(f"{where} holds {structure.count} pictures, not {coded.frames}: not shipped")
    step = coded.intra_period if coded.intra_period > 0 else coded.frames
    if structure.intra_pocs != list(range(0, coded.frames, step)):
        raise CodecError(f"{where} has intra pictures at POCs {structure.intra_pocs}: check vvc_sequence.vtm_cfg")
    if set(structure.intra_qps) != {coded.qp}:
        raise CodecError(f"{where} codes its intra slices at QP {sorted(set(structure.intra_qps))}, not "
                         f"{coded.qp}: check vvc_sequence.vtm_cfg (IntraQPOffset)")  # fmt: skip
    pocs = [p.poc for p in structure.pictures]
    if coded.structure == "low_delay" and pocs != sorted(pocs):
        raise CodecError(f"{where} reorders pictures (POCs {pocs} in decoding order): not low delay")


def check_decodes(coded: CodedSequence, name: str, ffmpeg: VvcSequenceCodec, vtm: VvcSequenceCodec) -> None:
    """Refuse a stream that FFmpeg's vvc decoder (what CI decodes with) cannot decode whole, or, when
    ``vvc.vtm_decoder`` is set, that VTM's DecoderApp decodes to other frames.

    Why: headers can be right while the stream is not conforming. VTM-23.13's low-delay cfg with a CRA
    every intra period writes such streams (trailing pictures keep reference-list entries before the
    CRA; DecoderApp stops with ``checkCRA: Invalid state``, FFmpeg drops every picture after the error).

    Raises:
        CodecError: a decoder fails, returns another number of frames, or the two decoders disagree.
    """
    where = f"VTM's stream of {name} at QP {coded.qp} ({coded.structure}, intra period {coded.intra_period})"
    try:
        frames = [f.tobytes() for f in ffmpeg.decode(coded)]
        if vtm.vtm is not None and vtm.vtm.decoder and [f.tobytes() for f in vtm.decode(coded)] != frames:
            raise CodecError("VTM's DecoderApp and FFmpeg decode it to different frames")
    except CodecError as exc:
        raise CodecError(f"{where} does not decode ({exc}): not shipped; docs/anchors.md") from exc


def _video(cfg: MakeVideoAnchorsConfig) -> VideoDataset:
    video = build_dataset(cfg.dataset, data_dir=Path(cfg.paths.data), progress=False, kind=object)
    if not isinstance(video, VideoDataset):
        raise ConfigError(f"dataset={cfg.dataset.name} is not a video dataset; pick one (dataset=synthetic_video, sfu)")
    return video


def make_video_anchors(cfg: MakeVideoAnchorsConfig) -> Path:
    """Encode what the manifest lacks (module docstring); returns the manifest's path.

    Raises:
        ConfigError: no QPs, no VTM encoder and cfg, not a video dataset, or the output folder holds
            streams of another setting at the same paths.
        CodecError: VTM fails or writes a stream its headers show to be other than asked (not kept).
    """
    if not cfg.qps:
        raise ConfigError("qps is empty; list the intra QPs to ship, e.g. 'qps=[32,37,42,47]'")
    if str(cfg.vvc.backend) != "vtm" or not cfg.vvc.vtm_encoder or not cfg.vvc_sequence.vtm_cfg:
        raise ConfigError("make_video_anchors runs VTM: set vvc=vtm, vvc.vtm_encoder=<EncoderApp> and "
                          "vvc_sequence.vtm_cfg=<VTM cfg/encoder_lowdelay_vtm.cfg> (docs/anchors.md)")  # fmt: skip
    codec = VvcSequenceCodec(backend="vtm", ffmpeg=cfg.vvc.ffmpeg, vtm_encoder=cfg.vvc.vtm_encoder,
                             vtm_decoder=cfg.vvc.vtm_decoder, vtm_cfg=cfg.vvc_sequence.vtm_cfg,
                             vtm_parcat=cfg.vvc_sequence.vtm_parcat)  # fmt: skip
    decoder = VvcSequenceCodec(ffmpeg=cfg.vvc.ffmpeg)  # FFmpeg's vvc decoder, as CI decodes the shipped streams
    encoder = codec.single.version()
    structure = str(cfg.vvc_sequence.structure)
    video = _video(cfg)
    out_dir = resolve_folder(cfg.output)
    manifest = out_dir / MANIFEST
    rows: list[dict[str, Any]] = list(read_manifest(manifest))
    lock = Lock()

    def period(seq: VideoSequence) -> int:
        return cfg.vvc_sequence.intra_period or seq.intra_period

    def setting(row: dict[str, Any]) -> tuple[str, str, int]:
        return row["encoder"], row["structure"], int(row["intra_period"])

    def one(qp: int, seq: VideoSequence, digest: str) -> None:
        hashed = SequenceDigest()

        def frames() -> Iterator[Yuv420]:
            for planes in seq.yuv_frames():
                frame = Yuv420(*planes)
                hashed.update(frame)
                yield frame

        coded = codec.encode(frames(), fps=seq.fps, qp=qp, structure=structure, intra_period=period(seq))
        if hashed.hexdigest() != digest:
            raise CodecError(f"sequence {seq.name} read back other frames than before; is its folder being rewritten?")
        check_stream(stream_structure(coded.data, codec.ffmpeg), coded, seq.name)
        check_decodes(coded, seq.name, decoder, codec)
        rel = Path(f"qp{qp}") / f"{seq.name}.266"
        row: dict[str, Any] = {
            "sequence": seq.name, "content_sha256": digest, "qp": qp, "structure": structure,
            "intra_period": coded.intra_period, "chroma": coded.chroma, "frames": coded.frames, "width": coded.width,
            "height": coded.height, "fps": f"{coded.fps:g}", "encoder": encoder, "bitstream": rel.as_posix(),
            "bytes": len(coded.data), "md5": hashlib.md5(coded.data).hexdigest(), "encode_s": round(coded.encode_s, 3),
        }  # fmt: skip
        with lock:
            atomic_write(out_dir / rel, coded.data)
            rows[:] = [r for r in rows if r["bitstream"] != rel.as_posix()] + [row]  # a regenerated sequence
            atomic_write(manifest, manifest_text(rows, FIELDS, lambda r: (int(r["qp"]), str(r["sequence"]))))
        print(f"qp {qp} {seq.name}: {len(coded.data)} bytes, {coded.kbps:.1f} kbps, {coded.encode_s:.1f} s", flush=True)

    digests = {seq.name: content_digest(seq) for seq in video.sequences}
    todo = []
    for qp in cfg.qps:
        for seq in video.sequences:
            rel = f"qp{qp}/{seq.name}.266"
            here = [r for r in rows if r["bitstream"] == rel]
            if here and setting(here[0]) != (encoder, structure, period(seq)):
                raise ConfigError(f"{manifest} ships {rel} as {setting(here[0])}, not "
                                  f"{(encoder, structure, period(seq))}; write this setting to another folder "
                                  "(output=...)")  # fmt: skip
            if not (here and here[0]["content_sha256"] == digests[seq.name]):
                todo.append((qp, seq))
    print(f"{encoder}, {structure}: {len(todo)} streams to encode, {len(cfg.qps) * len(digests) - len(todo)} shipped")
    with ThreadPoolExecutor(max_workers=max(1, cfg.workers)) as pool:
        for fut in [pool.submit(one, qp, seq, digests[seq.name]) for qp, seq in todo]:
            fut.result()
    return manifest


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="make_video_anchors")
def main(cfg: MakeVideoAnchorsConfig) -> None:
    print(f"manifest: {make_video_anchors(cfg)}")


if __name__ == "__main__":
    main()
