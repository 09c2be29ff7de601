"""The VTM backend: JVET's reference encoder run with the arguments of MPEG's VCM anchor scripts.

Image anchor (8-bit 4:2:0 input from the MPEG colour path)::

    EncoderAppStatic -c encoder_intra_vtm.cfg -i in.yuv -b out.bin -q QP --ConformanceWindowMode=1
                     -wdt W -hgt H -f 1 -fr 30 --InternalBitDepth=10

Feature frames (10-bit monochrome) add ``--InputBitDepth=10 --InputChromaFormat=400``. VTM is in
no package registry: docs/anchors.md says how to build it; the user points ``vvc.vtm_encoder``,
``vvc.vtm_decoder`` and ``vvc.vtm_cfg`` at the result. Decoding uses ``DecoderAppStatic`` when
given, else FFmpeg's vvc decoder (bit-exact with VTM's reconstruction; tested where VTM is
configured).
"""

from __future__ import annotations

import functools
import hashlib
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from vcm_eval.codecs.vvc.external import run_tool
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.errors import CodecError, ConfigError


def existing_file(path: str, setting: str) -> str:
    """``path`` when it is a file; else a one-line error naming the setting (a VTM app, its cfg, parcat)."""
    if not Path(path).is_file():
        raise ConfigError(
            f"{setting}={path!r} does not exist; point {setting} at the file (docs/anchors.md: building VTM)"
        )
    return path


@functools.lru_cache(maxsize=8)
def vtm_banner_version(encoder: str) -> str:
    """``VTM-23.13`` from the banner VTM's encoder prints on every start."""
    try:
        proc = subprocess.run([encoder, "--help"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CodecError(f"cannot run vvc.vtm_encoder={encoder!r} ({exc}); point it at VTM's EncoderAppStatic") from exc
    found = re.search(r"VTM Encoder Version\s+(\S+)", proc.stdout + proc.stderr)
    if not found:
        raise CodecError(
            f"vvc.vtm_encoder={encoder!r} did not print a VTM encoder banner; point it at VTM's EncoderAppStatic"
        )
    return f"VTM-{found.group(1)}"


def vtm_setting(version: str, cfg: str) -> str:
    """The identity of a VTM encoder setting: version, cfg file name and the cfg's md5 prefix."""
    digest = hashlib.md5(Path(cfg).read_bytes()).hexdigest()[:12]
    return f"{version} {Path(cfg).name} md5:{digest}"


class Vtm:
    """VTM's EncoderApp (and optionally DecoderApp) for one intra picture.

    ``encoder`` may be empty: the backend then only decodes (the image anchor's shipped
    bitstreams); asking it to encode is a one-line error naming ``vvc.vtm_encoder``.
    """

    def __init__(self, *, encoder: str = "", decoder: str = "", cfg: str = "") -> None:
        self.encoder = existing_file(encoder, "vvc.vtm_encoder") if encoder else ""
        self.decoder = existing_file(decoder, "vvc.vtm_decoder") if decoder else ""
        self.cfg = existing_file(cfg, "vvc.vtm_cfg") if cfg else ""
        if self.encoder and not self.cfg:
            raise ConfigError(
                "vvc.vtm_encoder is set but vvc.vtm_cfg is empty; point it at VTM's cfg/encoder_intra_vtm.cfg"
            )

    @property
    def can_encode(self) -> bool:
        return bool(self.encoder)

    def version(self) -> str:
        """``VTM-23.13 encoder_intra_vtm.cfg md5:...``, or ``""`` when no encoder is configured."""
        return vtm_setting(vtm_banner_version(self.encoder), self.cfg) if self.encoder else ""

    def command(self, yuv: Path, bitstream: Path, frame: Yuv420, qp: int, chroma: str) -> list[str]:
        """The MPEG anchor scripts' encoder command line for this frame (the reconstruction goes
        beside the input: the cfg's default ``rec.yuv`` would land in the working folder)."""
        height, width = frame.size
        cmd = [self.encoder, "-c", self.cfg, "-i", str(yuv), "-o", str(yuv.with_name("rec.yuv")), "-b", str(bitstream),
               "-q", str(qp),
               "--ConformanceWindowMode=1",
               "-wdt", str(width), "-hgt", str(height), "-f", "1", "-fr", "30", "--InternalBitDepth=10"]  # fmt: skip
        if frame.bit_depth != 8:
            cmd.append(f"--InputBitDepth={frame.bit_depth}")
        if chroma == "400":
            cmd.append("--InputChromaFormat=400")
        return cmd

    def encode(self, frame: Yuv420, qp: int, *, chroma: str = "420") -> bytes:
        if not self.encoder:
            raise ConfigError(
                f"no shipped VTM bitstream fits this picture at QP {qp} and vvc.vtm_encoder is empty; "
                "set vvc.vtm_encoder and vvc.vtm_cfg (docs/anchors.md) to encode it"
            )
        with tempfile.TemporaryDirectory(prefix="vcm_vtm_") as tmp:
            yuv, out = Path(tmp) / "in.yuv", Path(tmp) / "out.bin"
            yuv.write_bytes(
                np.ascontiguousarray(frame.y, dtype="<u2").tobytes() if chroma == "400" else frame.tobytes()
            )
            run_tool(self.command(yuv, out, frame, qp, chroma), setting="vvc.vtm_encoder")
            return out.read_bytes()

    def decode(self, bitstream: bytes) -> bytes:
        """DecoderApp: raw stream -> raw 10-bit planes as it writes them."""
        with tempfile.TemporaryDirectory(prefix="vcm_vtm_") as tmp:
            src, out = Path(tmp) / "in.bin", Path(tmp) / "out.yuv"
            src.write_bytes(bitstream)
            run_tool([self.decoder, "-b", str(src), "-o", str(out), "-d", "10"], setting="vvc.vtm_decoder")
            return out.read_bytes()
