"""Shipped anchor bitstreams: VTM streams made once, decoded by every run (as MPEG distributes anchors).

VTM takes seconds per picture, too slow to rerun in every job, so the embedded default's VTM
image-anchor bitstreams are committed under ``anchors/`` with a ``manifest.csv``, one row per
bitstream::

    image_id, file_name, image_sha256, qp, colour, encoder, bitstream, bytes, md5, encode_s

``image_sha256`` is ``vcm_eval.utils.digest.image_digest`` of the original pixels, so a stream is used
only for exactly the picture it was made from; ``encoder`` is the VTM setting
(``vcm_eval.codecs.vtm.vtm_setting``: version, cfg name, cfg md5). A stream whose md5 does not
match the manifest is a one-line error, never decoded. ``python -m vcm_eval.anchors`` writes them.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.resources import ANCHORS_DIR

MANIFEST = "manifest.csv"
FIELDS = ("image_id", "file_name", "image_sha256", "qp", "colour", "encoder", "bitstream", "bytes", "md5", "encode_s")


def resolve_folder(folder: str) -> Path:
    """``folder`` as given when it exists (or is absolute); ``anchors/...`` else from the package's anchors."""
    path = Path(folder)
    if path.is_absolute() or path.exists() or path.parts[:1] != ("anchors",):
        return path
    return ANCHORS_DIR.joinpath(*path.parts[1:])


@dataclass(frozen=True)
class ShippedStream:
    path: Path
    md5: str
    encode_s: float


class ShippedBitstreams:
    """The manifest of one folder, indexed by (image sha256, QP, colour path, encoder setting)."""

    def __init__(self, folder: str) -> None:
        self.folder = resolve_folder(folder)
        self._index: dict[tuple[str, int, str, str], ShippedStream] = {}
        manifest = self.folder / MANIFEST
        if not folder or not manifest.is_file():
            return
        with manifest.open(newline="") as f:
            for row in csv.DictReader(f):
                key = (row["image_sha256"], int(row["qp"]), row["colour"], row["encoder"])
                self._index[key] = ShippedStream(self.folder / row["bitstream"], row["md5"], float(row["encode_s"]))

    def __len__(self) -> int:
        return len(self._index)

    def encoders(self, colour: str) -> set[str]:
        """The encoder settings that have streams for this colour path."""
        return {k[3] for k in self._index if k[2] == colour}

    def only_encoder(self, colour: str) -> str:
        """The one encoder setting shipped for ``colour`` (used when no VTM encoder is configured)."""
        found = self.encoders(colour)
        if len(found) != 1:
            raise ConfigError(
                f"{self.folder} ships {len(found)} VTM encoder settings for colour path {colour!r} ({sorted(found)}); "
                "set vvc.vtm_encoder and vvc.vtm_cfg to pick one (or point vvc.shipped at another folder)"
            )
        return found.pop()

    def get(self, image_sha256: str, qp: int, colour: str, encoder: str) -> ShippedStream | None:
        return self._index.get((image_sha256, qp, colour, encoder))

    def read(self, stream: ShippedStream) -> bytes:
        """The stream's bytes after their md5 check (a mismatch is a one-line error)."""
        try:
            data = stream.path.read_bytes()
        except OSError as exc:
            raise CodecError(
                f"shipped bitstream {stream.path} cannot be read ({exc.strerror}); restore it from git"
            ) from exc
        if hashlib.md5(data).hexdigest() != stream.md5:
            raise CodecError(
                f"shipped bitstream {stream.path} fails its md5 check ({MANIFEST} says {stream.md5}); "
                "restore it from git"
            )
        return data
