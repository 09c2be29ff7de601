"""The slice QP a VVC bitstream really carries, read with FFmpeg's ``trace_headers`` bitstream filter.

SliceQpY = 26 + ``pps_init_qp_minus26`` + (``ph_qp_delta`` when the PPS puts the QP delta in the
picture header, else ``sh_qp_delta``) - H.266 (V3) 7.4.3.5 / 7.4.8. ``trace_headers`` prints every
syntax element with its value, so nothing is parsed by hand. Used by the tests (the configured QP
is the coded QP) and by ``python -m vcm_eval.anchors`` to check every shipped stream.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from vcm_eval.errors import CodecError

_ELEMENT = re.compile(r"\]\s+\d+\s+(pps_pic_parameter_set_id|pps_init_qp_minus26|ph_pic_parameter_set_id|ph_qp_delta|sh_qp_delta)\s+\S+\s+=\s+(-?\d+)")


def slice_qps(bitstream: bytes, ffmpeg: str) -> list[int]:
    """SliceQpY of every slice of a raw VVC (Annex-B) stream, in decoding order."""
    with tempfile.TemporaryDirectory(prefix="vcm_trace_") as tmp:
        src = Path(tmp) / "in.266"
        src.write_bytes(bitstream)
        cmd = [ffmpeg, "-hide_banner", "-nostdin", "-f", "vvc", "-i", str(src), "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CodecError(f"trace_headers could not read the VVC stream: {' | '.join(proc.stderr.strip().splitlines()[-3:])}")
    init_qp: dict[int, int] = {}
    pps_id = ph_pps = 0
    ph_delta: int | None = None
    qps = []
    for name, value in _ELEMENT.findall(proc.stderr):
        v = int(value)
        if name == "pps_pic_parameter_set_id":
            pps_id = v
        elif name == "pps_init_qp_minus26":
            init_qp[pps_id] = v
        elif name == "ph_pic_parameter_set_id":
            ph_pps, ph_delta = v, None
        elif name == "ph_qp_delta":
            ph_delta = v
        else:  # sh_qp_delta: one per slice
            qps.append(26 + init_qp.get(ph_pps, 0) + v)
    if ph_delta is not None and not qps:  # QP delta in the picture header, none in the slices
        qps.append(26 + init_qp.get(ph_pps, 0) + ph_delta)
    if not qps:
        raise CodecError("no slice QP found in the VVC stream (no slice header traced)")
    return qps
