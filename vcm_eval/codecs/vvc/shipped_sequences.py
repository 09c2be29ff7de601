"""Shipped VTM sequence bitstreams: video anchor streams made once, decoded by every run.

VTM codes a sequence at seconds per frame and is in no package registry (CI has none), so the VTM
streams of the embedded default's video are committed under ``anchors/vtm_video_anchor/`` with a
``manifest.csv``, one row per stream (``python -m vcm_eval.video_anchors`` writes them)::

    sequence, content_sha256, qp, structure, intra_period, chroma, frames, width, height, fps,
    encoder, bitstream, bytes, md5, encode_s

``content_sha256`` is ``sequence_digest`` of the frames the encoder read (the raw YUV planes), so a
stream is used only for exactly the frames it was made from, whatever the sequence is called.
``qp`` is the intra slices' coded QP (``VvcSequenceCodec``'s QP, not VTM's ``-q``), ``encoder`` the
VTM setting (``vcm_eval.codecs.vvc.vtm.vtm_setting``: version, cfg name, cfg md5). A stream whose
md5 does not match the manifest is a one-line error, never decoded.

Usage (``VvcSequenceCodec`` does this itself with ``shipped=``)::

    shipped = ShippedSequences("anchors/vtm_video_anchor")
    entry = shipped.get(sequence_digest(seq.yuv_frames()), 32, "low_delay", shipped.only_encoder("low_delay"))
    data = shipped.read(entry)  # the raw Annex-B stream, md5 checked
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcm_eval.codecs.vvc.config import SHIPPED_SEQUENCES
from vcm_eval.codecs.vvc.shipped import MANIFEST, resolve_folder
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.errors import CodecError, ConfigError

FIELDS = ("sequence", "content_sha256", "qp", "structure", "intra_period", "chroma", "frames", "width", "height",
          "fps", "encoder", "bitstream", "bytes", "md5", "encode_s")  # fmt: skip


class SequenceDigest:
    """sha256 of a sequence's raw frames, fed one frame at a time (frames are never held whole).

    Each frame adds its planes' shapes and sample type, then their samples: the same frames give the
    same digest whether they come from ``VideoSequence.yuv_frames()`` or as ``Yuv420``; an 8-bit frame
    and its 10-bit version differ (they are different encoder inputs).
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"vcm_eval sequence v1")
        self.frames = 0

    def update(self, frame: Yuv420 | Sequence[np.ndarray]) -> None:
        """Add one frame: a ``Yuv420`` or its (Y, U, V) planes."""
        planes = (frame.y, frame.u, frame.v) if isinstance(frame, Yuv420) else tuple(frame)
        self._hash.update(repr([(p.shape, p.dtype.str) for p in planes]).encode())
        for p in planes:
            self._hash.update(np.ascontiguousarray(p).data)
        self.frames += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def sequence_digest(frames: Iterable[Yuv420 | Sequence[np.ndarray]]) -> str:
    """The ``content_sha256`` of a sequence: ``SequenceDigest`` over ``frames`` (e.g. ``seq.yuv_frames()``)."""
    digest = SequenceDigest()
    for frame in frames:
        digest.update(frame)
    return digest.hexdigest()


@dataclass(frozen=True)
class ShippedSequence:
    """One manifest row: a shipped stream and how it was coded (``ShippedSequences.read`` gives its bytes)."""

    sequence: str
    content_sha256: str
    qp: int
    structure: str
    intra_period: int
    chroma: str
    frames: int
    width: int
    height: int
    fps: float
    encoder: str
    path: Path
    md5: str
    encode_s: float


class ShippedSequences:
    """The manifest of one folder of shipped sequence streams (empty when it has none).

    Args:
        folder: the folder holding ``manifest.csv`` (``anchors/...`` resolves against the package's
            anchors when it does not exist relative to the working folder).
    """

    def __init__(self, folder: str = SHIPPED_SEQUENCES) -> None:
        self.folder = resolve_folder(folder)
        self.entries: list[ShippedSequence] = []
        manifest = self.folder / MANIFEST
        if not folder or not manifest.is_file():
            return
        with manifest.open(newline="") as f:
            for row in csv.DictReader(f):
                self.entries.append(_entry(self.folder, row, manifest))

    def __len__(self) -> int:
        return len(self.entries)

    def encoders(self, structure: str) -> set[str]:
        """The encoder settings that have streams of this structure."""
        return {e.encoder for e in self.entries if e.structure == structure}

    def only_encoder(self, structure: str | None = None) -> str:
        """The one encoder setting shipped (for ``structure``, or for all): what a run without VTM uses.

        Raises:
            ConfigError: none, or several settings are shipped (naming them).
        """
        found = self.encoders(structure) if structure else {e.encoder for e in self.entries}
        if len(found) != 1:
            what = f"{structure} streams" if structure else "sequence streams"
            raise ConfigError(
                f"{self.folder} ships {len(found)} VTM encoder settings for {what} ({sorted(found)}); set "
                "vvc.vtm_encoder and vvc_sequence.vtm_cfg to pick one (or use another folder of shipped streams)"
            )
        return found.pop()

    def get(self, content_sha256: str, qp: int, structure: str, encoder: str, *, intra_period: int | None = None,
            chroma: str = "420", fps: float | None = None) -> ShippedSequence | None:  # fmt: skip
        """The stream made from exactly these frames at this intra QP, structure and encoder setting, or None.

        ``intra_period`` and ``fps`` (None: any) must match too when given: a stream coded at another
        period is another stream, and the frame rate is signalled in it and counts its kbps.

        Raises:
            ConfigError: several streams fit (another intra period or frame rate); give ``intra_period``/``fps``.
        """
        found = [e for e in self.entries
                 if (e.content_sha256, e.qp, e.structure, e.encoder, e.chroma) == (content_sha256, qp, structure,
                                                                                     encoder, chroma)
                 and (intra_period is None or e.intra_period == intra_period)
                 and (fps is None or round(e.fps, 3) == round(float(fps), 3))]  # fmt: skip
        if len(found) > 1:
            periods = sorted({(e.intra_period, e.fps) for e in found})
            raise ConfigError(f"{self.folder} ships {len(found)} streams of these frames at QP {qp} {structure} "
                              f"(intra period, fps: {periods}); pass intra_period and fps to pick one")  # fmt: skip
        return found[0] if found else None

    def read(self, entry: ShippedSequence) -> bytes:
        """The stream's bytes after their md5 check.

        Raises:
            CodecError: the file is missing or unreadable, or its md5 is not the manifest's (one line,
                naming the file and the fix).
        """
        try:
            data = entry.path.read_bytes()
        except OSError as exc:
            raise CodecError(f"shipped sequence stream {entry.path} cannot be read ({exc.strerror}); "
                             "restore it from git") from exc  # fmt: skip
        if hashlib.md5(data).hexdigest() != entry.md5:
            raise CodecError(f"shipped sequence stream {entry.path} fails its md5 check ({MANIFEST} says "
                             f"{entry.md5}); restore it from git")  # fmt: skip
        return data


def _entry(folder: Path, row: dict[str, str], manifest: Path) -> ShippedSequence:
    """One manifest row as a ``ShippedSequence`` (a malformed row is a one-line error naming the manifest)."""
    try:
        return ShippedSequence(
            sequence=row["sequence"], content_sha256=row["content_sha256"], qp=int(row["qp"]),
            structure=row["structure"], intra_period=int(row["intra_period"]), chroma=row["chroma"],
            frames=int(row["frames"]), width=int(row["width"]), height=int(row["height"]), fps=float(row["fps"]),
            encoder=row["encoder"], path=folder / row["bitstream"], md5=row["md5"], encode_s=float(row["encode_s"]),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"{manifest} has a malformed row ({exc!r}: {row}); restore it from git") from exc
