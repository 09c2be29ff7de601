"""MSFC as a FeatureCodec: P2..P5 -> fused code -> 10-bit min-max -> one monochrome VVC picture -> P2'..P5'.

encode: the trained fusion modules (``MsfcModel.fuse``: MSFF + SSFC encoder) turn P2..P5 into one
C-channel code at P5's (or P4's) scale; its min-max range (``vcm_eval.codecs.minmax``) maps it to
10-bit codes, tiled channel by channel into one frame (the feature anchor's layout and kernels,
``feature_anchor.tiling``; fill 512), coded as one 4:0:0 VVC intra picture at the configured QP
(``VvcEncoder``: the coded slice QP is that QP). decode: the reverse, then the trained
reconstruction (``MsfcModel.reconstruct``: SSFC decoder + MSFR) rebuilds P2'..P5'; the task model
rebuilds P6' from P5'.

Container (``vcm_eval.codecs.bitstream``, codec id ``msfc``, format ``FORMAT_VERSION`` = 1); every
byte is in the rate and the decoder needs nothing else (the checkpoint fixes the modules)::

    varint   image height, image width
    varint   form = (input == image) | (P2 H - ceil(input H / 4)) << 1 | (P2 W - ceil(input W / 4)) << 4
    varint   input height, input width               only when form bit 0 is clear
    varint   code C, H, W                            checked against the checkpoint and P2's size
    float16  lo, hi                                  the min-max range, rounded outwards to float16
    blob     varint length + the raw Annex-B VVC stream (parameter sets + one intra slice)

The task network pads its input to a multiple of 32, so P2 is ``ceil(input / 4)`` plus 0..7 (3 bits
a side in ``form``, as the fusion codec writes it); the other levels and the code's size follow from
P2's. The frame layout is not sent: ``tiling.plan_layout`` rebuilds it from the code's shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from vcm_eval.codecs.base import MAX_DECODE_BYTES, MAX_PIXELS, FeatureCodec, check_feature_header, check_memory
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.codecs.feature_anchor.tiling import Layout, codes_frame, frame_values, plan_layout
from vcm_eval.codecs.minmax import level_range
from vcm_eval.codecs.msfc import zoo
from vcm_eval.codecs.msfc.model import CODED_LEVELS, MsfcModel, level_sizes
from vcm_eval.codecs.pyramid_header import check_p2, read_pyramid_sizes, write_pyramid_sizes
from vcm_eval.codecs.vvc.encoder import VvcEncoder, check_qp
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.device import resolve_device
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.utils.components import Runtime
from vcm_eval.vision.base import FeatureSet

FORMAT_VERSION = 1
BITS = 10
FILL = 512  # frame samples outside the channel grid: mid grey, the cheapest flat block to code
CODE = "code"  # the code's name in the FeatureSet the tiling functions take
# Bytes a decode allocates per frame sample (FFmpeg's 10-bit 4:2:0 output held twice, the float32 code)
# and per output value (the float32 levels and the reconstruction's activations at their resolution).
FRAME_BYTES_PER_SAMPLE, BYTES_PER_OUTPUT_VALUE = 10, 12


@dataclass(frozen=True)
class _Header:
    image_size: tuple[int, int]
    input_size: tuple[int, int]
    p2: tuple[int, int]
    code_shape: tuple[int, int, int]
    lo: float
    hi: float

    def layout(self) -> Layout:
        return plan_layout({CODE: self.code_shape}, image_size=self.image_size, input_size=self.input_size)


def float16_range(lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi) rounded outwards to float16, so the sent range still holds every value.

    Raises:
        CodecError: the range does not fit float16 (the code is tanh-bounded, so only a broken model gets here).
    """
    largest = float(np.finfo(np.float16).max)
    if not -largest < lo <= hi < largest:  # outwards rounding needs room beyond each end
        raise CodecError(
            f"the MSFC code's range [{lo}, {hi}] does not fit float16; the checkpoint is broken, retrain it"
        )
    lo16, hi16 = np.float16(lo), np.float16(hi)
    if lo16 > lo:
        lo16 = np.nextafter(lo16, np.float16(-np.inf))
    if hi16 < hi:
        hi16 = np.nextafter(hi16, np.float16(np.inf))
    return float(lo16), float(hi16)


class MsfcFeatureCodec(FeatureCodec):
    """Encode/decode a FeatureSet with trained MSFC modules around one VVC picture at a fixed QP.

    Args:
        model: the trained fusion and reconstruction modules (``zoo.load``).
        vvc: the VVC encoder/decoder (VVenC through FFmpeg, or VTM).
        qp: the VVC QP, 0..63 (the coded slice QP).
        device: where the modules run (the VVC picture is the same on any device only up to the
            modules' floating point: a stream decodes on any device).
        checkpoint: the file the weights came from (its name and hash are in ``version()``).
    """

    codec_name = "msfc"  # the container tag
    name = "msfc"
    revision_area = "msfc"  # its code's revision is in the run key (vcm_eval.revisions)
    rate_params = ("qp",)
    reads = ("vvc", "model")  # the VVC encoder; the task model's name picks the zoo checkpoint

    def __init__(
        self, *, model: MsfcModel, vvc: VvcEncoder, qp: int, device: str = "cpu", checkpoint: Path | None = None
    ) -> None:
        self.model, self.vvc, self.qp, self.checkpoint = model.eval(), vvc, check_qp(qp), checkpoint
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.channels, self.code_channels = model.in_channels, model.code_channels

    @classmethod
    def from_config(cls, cfg: DictConfig, runtime: Runtime) -> MsfcFeatureCodec:
        """``pipeline.qp`` (and ``checkpoint``) with the ``vvc`` group's encoder and ``model.name``'s modules."""
        vvc = VvcEncoder.from_settings(cfg.vvc)
        if not vvc.can_encode:
            raise ConfigError(
                "pipeline=msfc with vvc.backend=vtm needs vvc.vtm_encoder and vvc.vtm_cfg "
                "(no MSFC bitstreams are shipped)"
            )
        path = zoo.resolve(cfg.pipeline.checkpoint, task_model=cfg.model.name)
        model, _ = zoo.load(path)
        return cls(model=model, vvc=vvc, qp=cfg.pipeline.qp, device=runtime.device, checkpoint=path)

    def version(self) -> str:
        """Stream format, checkpoint name and content hash, and the VVC encoder (part of the run key)."""
        if self.checkpoint is None:
            weights = "model in memory (no checkpoint file)"
        else:
            digest = hashlib.sha256(self.checkpoint.read_bytes()).hexdigest()[:16]
            weights = f"checkpoint {self.checkpoint.name} sha256:{digest}"
        return f"msfc format {FORMAT_VERSION}, {weights}, {self.vvc.version()}"

    def curve_version(self) -> str:
        """One curve per checkpoint and encoder: the QP moves along it."""
        return self.version()

    def tool_versions(self) -> dict[str, str]:
        return self.vvc.tool_versions()

    def _levels(self, features: FeatureSet) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """P2..P5 as [1, C, H, W] on the device, checked (sizes, finite values); P2's (H, W)."""
        check_feature_header(self.name, features.image_size, features.input_size, max_pixels=MAX_PIXELS)
        missing = [lv for lv in CODED_LEVELS if lv not in features]
        if missing:
            raise CodecError(f"MSFC codes {list(CODED_LEVELS)}; the features lack {missing}")
        check_feature_header(
            self.name,
            features.image_size,
            features.input_size,
            {k: features.shapes()[k] for k in CODED_LEVELS},
            channels=self.channels,
        )
        p2 = tuple(features["p2"].shape[-2:])
        check_p2(self.name, (int(p2[0]), int(p2[1])), features.input_size)
        levels = []
        for name in CODED_LEVELS:
            x = features[name].float()
            if not torch.isfinite(x).all():
                raise CodecError(f"feature level {name} holds NaN or inf values; MSFC needs finite features")
            levels.append(x[None].to(self.device))
        return levels, (int(p2[0]), int(p2[1]))

    def code(self, features: FeatureSet) -> torch.Tensor:
        """The fused code [C, H, W] (float32, CPU) the encoder quantizes: MSFF + SSFC encoder."""
        levels, _ = self._levels(features)
        with torch.inference_mode():
            return self.model.fuse(levels)[0].float().cpu()

    def encode(self, features: FeatureSet) -> bytes:
        """FeatureSet (P2..P5 of 256 channels, sizes that agree) -> bytes (layout: the module docstring).

        Raises:
            CodecError: a level is missing, has another size or channel count, or holds NaN/inf.
        """
        levels, (h2, w2) = self._levels(features)
        with torch.inference_mode():
            code = self.model.fuse(levels)[0].float().cpu()
        lo, hi = float16_range(*level_range("the MSFC code", np.ascontiguousarray(code.numpy())))
        coded = FeatureSet(levels={CODE: code}, image_size=features.image_size, input_size=features.input_size)
        frame, _ = codes_frame(coded, {CODE: (lo, hi)}, bits=BITS, fill=FILL)
        payload = self.vvc.encode(Yuv420.from_luma(frame), self.qp, chroma="400")
        w = BitstreamWriter(self.codec_name, version=FORMAT_VERSION)
        write_pyramid_sizes(w, self.name, features.image_size, features.input_size, (h2, w2))
        for v in code.shape:
            w.uint(int(v))
        w.floats(np.asarray([lo, hi]), dtype="float16")
        w.blob(payload)
        return w.getvalue()

    def _parse(self, data: bytes, *, max_pixels: int, max_memory: int) -> tuple[_Header, bytes]:
        """The header, validated (sizes, the code's shape, the range, a decode's memory), and the VVC payload."""
        with BitstreamReader(data, self.codec_name, name=self.name, version=FORMAT_VERSION) as r:
            image_size, input_size, p2 = read_pyramid_sizes(r, self.name, max_pixels=max_pixels)
            code_shape = (r.uint(), r.uint(), r.uint())
            lo, hi = (float(v) for v in r.floats(2, dtype="float16"))
            payload = r.blob()
        want = (self.code_channels, *self.model.code_size(p2))
        if code_shape != want:
            raise CodecError(
                f"corrupt {self.name} bitstream: a code of {code_shape}; "
                f"this checkpoint makes {want} for P2 {p2[0]}x{p2[1]}"
            )
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise CodecError(f"corrupt {self.name} bitstream: min-max range [{lo}, {hi}]")
        header = _Header(image_size, input_size, p2, code_shape, lo, hi)
        layout = header.layout()
        outputs = self.channels * sum(h * w for h, w in level_sizes(p2))
        need = FRAME_BYTES_PER_SAMPLE * layout.height * layout.width + BYTES_PER_OUTPUT_VALUE * outputs
        check_memory(self.name, need, max_memory, what=f"P2 {p2[0]}x{p2[1]}, a {layout.width}x{layout.height} frame")
        return header, payload

    def decode(self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES) -> FeatureSet:
        """Bytes from ``encode`` (untrusted) -> FeatureSet of P2..P5 (float32 [256, H, W]) and the sizes.

        Args:
            data: the bitstream.
            max_pixels: the largest image or input size the header may name.
            max_memory: the most this decode may allocate, estimated from the validated header.

        Raises:
            CodecError: the stream is truncated, has bytes left over, its header is inconsistent or
                beyond the limits, FFmpeg cannot decode the VVC payload into the frame the header
                names, or the reconstruction is not finite. (A payload altered into another valid
                picture decodes: VVC has no checksum here.)
        """
        header, payload = self._parse(data, max_pixels=max_pixels, max_memory=max_memory)
        layout = header.layout()
        frame = self.vvc.decode(payload, layout.height, layout.width, chroma="400").y
        code = frame_values(frame, layout, {CODE: (header.lo, header.hi)}, bits=BITS)[CODE]
        with torch.inference_mode():
            levels = [lv[0].float().cpu() for lv in self.model.reconstruct(code[None].to(self.device), header.p2)]
        if not all(bool(torch.isfinite(lv).all()) for lv in levels):
            raise CodecError(f"corrupt {self.name} bitstream: the reconstructed levels hold NaN or inf")
        return FeatureSet(
            levels=dict(zip(CODED_LEVELS, levels)), image_size=header.image_size, input_size=header.input_size
        )

    def report(self, features: FeatureSet, data: bytes) -> dict[str, Any]:
        """Per-image numbers beside the rate (all of these bytes are in it): container and VVC bytes, frame size."""
        header, payload = self._parse(data, max_pixels=MAX_PIXELS, max_memory=MAX_DECODE_BYTES)
        layout = header.layout()
        return {
            "container_bytes": len(data) - len(payload),
            "vvc_bytes": len(payload),
            "frame_height": layout.height,
            "frame_width": layout.width,
        }

    def complexity_stages(self, features: FeatureSet) -> dict[str, Callable[[], object]]:
        """The encoder's and the decoder's networks, for the kMAC count (``vcm_eval.vision.complexity``).

        VVC is not a network and is not counted (as the feature anchor's is not).
        """
        levels, p2 = self._levels(features)
        with torch.no_grad():
            code = self.model.fuse(levels)
        return {"encoder": lambda: self.model.fuse(levels), "decoder": lambda: self.model.reconstruct(code, p2)}
