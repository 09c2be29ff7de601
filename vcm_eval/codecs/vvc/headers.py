"""The slice QP a VVC bitstream really carries, read with FFmpeg's ``trace_headers`` bitstream filter.

SliceQpY = 26 + ``pps_init_qp_minus26`` + (``ph_qp_delta`` when the PPS puts the QP delta in the
picture header, else ``sh_qp_delta``) - H.266 (V3) 7.4.3.5 / 7.4.8. ``trace_headers`` prints every
syntax element with its value, so nothing is parsed by hand. Used by the tests (the configured QP
is the coded QP) and by ``python -m vcm_eval.anchors`` to check every shipped stream.

``stream_structure`` reads a whole multi-picture stream the same way: each coded picture's POC, NAL
type, TemporalId, slice types and slice QPs, hence the picture count and the intra period
(``vcm_eval.codecs.vvc.sequence`` and its tests).
"""

from __future__ import annotations

import itertools
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcm_eval.errors import CodecError

_ELEMENT = re.compile(
    r"\]\s+\d+\s+(pps_pic_parameter_set_id|pps_init_qp_minus26|ph_pic_parameter_set_id|ph_qp_delta|sh_qp_delta)"
    r"\s+\S+\s+=\s+(-?\d+)"
)


def slice_qps(bitstream: bytes, ffmpeg: str) -> list[int]:
    """SliceQpY of every slice of a raw VVC (Annex-B) stream, in decoding order."""
    with tempfile.TemporaryDirectory(prefix="vcm_trace_") as tmp:
        src = Path(tmp) / "in.266"
        src.write_bytes(bitstream)
        cmd = [
            ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-f",
            "vvc",
            "-i",
            str(src),
            "-c",
            "copy",
            "-bsf:v",
            "trace_headers",
            "-f",
            "null",
            "-",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CodecError(
            f"trace_headers could not read the VVC stream: {' | '.join(proc.stderr.strip().splitlines()[-3:])}"
        )
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


# --- Coded structure of a multi-picture stream (vcm_eval.codecs.vvc.sequence) ----------------------------------------

_ANY_ELEMENT = re.compile(r"\]\s+\d+\s+([A-Za-z_0-9]+(?:\[[^\]]*\])*)\s+\S+\s+=\s+(-?\d+)\s*$")
SLICE_TYPES = {0: "B", 1: "P", 2: "I"}  # sh_slice_type, H.266 Table 9
IRAP_TYPES = {7: "IDR_W_RADL", 8: "IDR_N_LP", 9: "CRA_NUT"}  # nal_unit_type of IRAP pictures
LEADING_TYPES = (2, 3)  # RADL_NUT, RASL_NUT


@dataclass(frozen=True)
class CodedPicture:
    """One coded picture of a VVC stream, as its headers say.

    Attributes:
        decode_index: position in decoding order (0 = first picture of the stream).
        poc: picture order count (display order), PicOrderCntVal of H.266 8.3.1.
        nal_type: ``nal_unit_type`` of its slices (7/8 IDR, 9 CRA, 0 TRAIL, 2 RADL, 3 RASL, ...).
        temporal_id: TemporalId (``nuh_temporal_id_plus1 - 1``): the hierarchy level of a random-access GOP.
        slice_types: ``"I"``, ``"P"`` or ``"B"`` per slice.
        slice_qps: SliceQpY per slice.
    """

    decode_index: int
    poc: int
    nal_type: int
    temporal_id: int
    slice_types: tuple[str, ...]
    slice_qps: tuple[int, ...]

    @property
    def is_intra(self) -> bool:
        """Every slice is an I slice (an IRAP picture, or an intra picture of a low-delay stream)."""
        return bool(self.slice_types) and all(t == "I" for t in self.slice_types)

    @property
    def is_irap(self) -> bool:
        """An IDR or CRA picture: decoding can start here."""
        return self.nal_type in IRAP_TYPES


@dataclass(frozen=True)
class StreamStructure:
    """The coded pictures of a VVC stream in decoding order, and what the tests and reports read from them."""

    pictures: tuple[CodedPicture, ...]

    @property
    def count(self) -> int:
        """Number of coded pictures."""
        return len(self.pictures)

    @property
    def intra_pocs(self) -> list[int]:
        """POCs of the pictures whose slices are all I slices, in display order."""
        return sorted(p.poc for p in self.pictures if p.is_intra)

    @property
    def irap_pocs(self) -> list[int]:
        """POCs of the IRAP (IDR/CRA) pictures, in display order."""
        return sorted(p.poc for p in self.pictures if p.is_irap)

    @property
    def intra_period(self) -> int | None:
        """The distance in pictures between consecutive intra pictures; None with a single intra picture.

        Raises:
            CodecError: the intra pictures are not evenly spaced (no single period).
        """
        pocs = self.intra_pocs
        gaps = {b - a for a, b in itertools.pairwise(pocs)}
        if not gaps:
            return None
        if len(gaps) > 1:
            raise CodecError(f"intra pictures at POCs {pocs} are not evenly spaced: the stream has no one intra period")
        return gaps.pop()

    @property
    def intra_qps(self) -> list[int]:
        """SliceQpY of every slice of the intra pictures, in display order."""
        return [q for p in sorted(self.pictures, key=lambda p: p.poc) if p.is_intra for q in p.slice_qps]

    def qps_by_poc(self) -> dict[int, tuple[int, ...]]:
        """SliceQpY of each picture's slices, by POC."""
        return {p.poc: p.slice_qps for p in self.pictures}


def trace_headers(bitstream: bytes, ffmpeg: str) -> str:
    """The log of FFmpeg's ``trace_headers`` bitstream filter on a raw VVC (Annex-B) stream: every syntax
    element of every parameter set, picture header and slice header, in stream order."""
    with tempfile.TemporaryDirectory(prefix="vcm_trace_") as tmp:
        src = Path(tmp) / "in.266"
        src.write_bytes(bitstream)
        cmd = [ffmpeg, "-hide_banner", "-nostdin", "-f", "vvc", "-i", str(src), "-c", "copy",
               "-bsf:v", "trace_headers", "-f", "null", "-"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise CodecError(f"trace_headers could not read the VVC stream: {tail}")
    return proc.stderr


class _PocCounter:
    """PicOrderCntVal from ``ph_pic_order_cnt_lsb`` (H.266 8.3.1).

    prevTid0Pic is the previous picture with TemporalId 0 that is not RADL, RASL or a non-reference
    picture (``ph_non_ref_pic_flag``); an IDR picture, and the first picture of the stream, reset the MSB.
    """

    def __init__(self) -> None:
        self.prev_lsb = self.prev_msb = 0
        self.first = True

    def poc(self, lsb: int, max_lsb: int, nal_type: int, temporal_id: int, non_ref: bool) -> int:
        if self.first or nal_type in (7, 8):  # NoOutputBeforeRecoveryFlag = 1: PicOrderCntMsb = 0
            msb = 0
        elif lsb < self.prev_lsb and self.prev_lsb - lsb >= max_lsb // 2:
            msb = self.prev_msb + max_lsb
        elif lsb > self.prev_lsb and lsb - self.prev_lsb > max_lsb // 2:
            msb = self.prev_msb - max_lsb
        else:
            msb = self.prev_msb
        self.first = False
        if temporal_id == 0 and nal_type not in LEADING_TYPES and not non_ref:
            self.prev_lsb, self.prev_msb = lsb, msb
        return msb + lsb


def stream_structure(bitstream: bytes, ffmpeg: str) -> StreamStructure:
    """The coded pictures of a raw VVC stream: POC, NAL type, TemporalId, slice types and SliceQpY.

    Read from FFmpeg's ``trace_headers`` log (nothing is parsed from the bits by hand). A picture starts
    at each picture header (a PH NAL unit, or a slice header that carries one); each VCL NAL unit after
    it is one of its slices. Slice type: ``sh_slice_type``, or I when the picture header allows intra
    slices only (the type is then not coded). SliceQpY as in ``slice_qps``.

    Raises:
        CodecError: FFmpeg cannot read the stream, or it holds no picture.
    """
    return _Structure().read(trace_headers(bitstream, ffmpeg))


class _Structure:
    """The state of one pass over a ``trace_headers`` log (see ``stream_structure``)."""

    def __init__(self) -> None:
        self.lsb_bits: dict[int, int] = {}  # SPS id -> log2(MaxPicOrderCntLsb)
        self.pps_sps: dict[int, int] = {}
        self.init_qp: dict[int, int] = {}  # PPS id -> pps_init_qp_minus26
        self.sps_id = self.pps_id = self.nal_type = self.temporal_id = 0
        self.counter = _PocCounter()
        self.pic: dict[str, Any] | None = None  # the picture header being read
        self.slice: dict[str, Any] | None = None  # the slice header being read
        self.pictures: list[CodedPicture] = []

    def read(self, log: str) -> StreamStructure:
        for line in log.splitlines():
            found = _ANY_ELEMENT.search(line)
            if found:
                self.element(found.group(1), int(found.group(2)))
        self.end_slice()
        self.end_picture()
        if not self.pictures:
            raise CodecError("no coded picture found in the VVC stream (no picture header traced)")
        return StreamStructure(tuple(self.pictures))

    def element(self, name: str, v: int) -> None:
        if name == "nal_unit_type":  # a new NAL unit: the previous slice (if any) is complete
            self.end_slice()
            self.nal_type = v
            if v <= 11:  # a VCL NAL unit: a slice (its picture header may follow, inside the slice header)
                self.slice = {"type": None, "qp_delta": None}
        elif name == "nuh_temporal_id_plus1":
            self.temporal_id = v - 1
        elif name == "sps_seq_parameter_set_id":
            self.sps_id = v
        elif name == "sps_log2_max_pic_order_cnt_lsb_minus4":
            self.lsb_bits[self.sps_id] = v + 4
        elif name == "pps_pic_parameter_set_id":
            self.pps_id = v
        elif name == "pps_seq_parameter_set_id":
            self.pps_sps[self.pps_id] = v
        elif name == "pps_init_qp_minus26":
            self.init_qp[self.pps_id] = v
        elif name == "ph_gdr_or_irap_pic_flag":  # the first element of every picture header
            self.end_picture()
            self.pic = {"inter": True, "non_ref": False, "pps": 0, "lsb": 0, "qp_delta": 0, "slices": []}
        elif self.pic is not None and name in _PH_FIELDS:
            self.pic[_PH_FIELDS[name]] = v
        elif self.slice is not None and name == "sh_slice_type":
            self.slice["type"] = v
        elif self.slice is not None and name == "sh_qp_delta":
            self.slice["qp_delta"] = v

    def end_slice(self) -> None:
        if self.slice is None or self.pic is None:
            return
        pic, sl = self.pic, self.slice
        if not pic["slices"]:  # the first slice fixes the picture's NAL type, TemporalId and POC
            pic["nal_type"], pic["temporal_id"] = self.nal_type, self.temporal_id
            max_lsb = 1 << self.lsb_bits.get(self.pps_sps.get(pic["pps"], 0), 8)
            pic["poc"] = self.counter.poc(pic["lsb"], max_lsb, self.nal_type, self.temporal_id, bool(pic["non_ref"]))
        kind = sl["type"] if pic["inter"] and sl["type"] is not None else 2
        delta = sl["qp_delta"] if sl["qp_delta"] is not None else pic["qp_delta"]
        pic["slices"].append((SLICE_TYPES.get(kind, "?"), 26 + self.init_qp.get(pic["pps"], 0) + delta))
        self.slice = None

    def end_picture(self) -> None:
        pic, self.pic = self.pic, None
        if pic is None or not pic["slices"]:
            return
        types, qps = zip(*pic["slices"])
        index = len(self.pictures)
        self.pictures.append(CodedPicture(index, pic["poc"], pic["nal_type"], pic["temporal_id"], types, qps))


_PH_FIELDS = {  # picture-header element -> the key ``_Structure`` keeps it under
    "ph_non_ref_pic_flag": "non_ref",
    "ph_inter_slice_allowed_flag": "inter",
    "ph_pic_parameter_set_id": "pps",
    "ph_pic_order_cnt_lsb": "lsb",
    "ph_qp_delta": "qp_delta",
}
