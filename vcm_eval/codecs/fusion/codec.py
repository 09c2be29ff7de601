"""The fusion codec as a FeatureCodec: FeatureSet -> bytes -> FeatureSet (P2..P5; P6 rebuilt).

Bitstream (vcm_eval container, codec id ``fusion``)::

    tag byte | image H, W | input==image flag [| input H, W] | P2 H, W | z string (length-prefixed)
    | y string (to the end)

All varints; at the synthetic default this header is 9 bytes. Level k+1 is exactly half of level k
(the FPN of a padded input), so P2's size gives all four; the levels are padded (edge replication)
up to a multiple of the model's ``pad_multiple_p2`` P2 pixels (64 or 32) for the latent and hyper-latent strides, and cropped back after
decoding. The strings are CompressAI's range-coded y and z.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from vcm_eval.codecs.base import FeatureCodec
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.codecs.fusion import zoo
from vcm_eval.codecs.fusion.model import CODED_LEVELS, HYPER_STRIDE, FusionCodecModel
from vcm_eval.device import resolve_device
from vcm_eval.errors import CodecError
from vcm_eval.utils.components import Runtime
from vcm_eval.vision.base import FeatureSet


def padded_size(h2: int, w2: int, multiple: int) -> tuple[int, int]:
    return math.ceil(h2 / multiple) * multiple, math.ceil(w2 / multiple) * multiple


def padded_levels(features: FeatureSet, pad_multiple_p2: int) -> tuple[list[torch.Tensor], tuple[int, int]]:
    """[1, C, H, W] tensors of P2..P5 padded to a multiple of ``pad_multiple_p2`` P2 pixels, and P2's unpadded (H, W)."""
    missing = [lv for lv in CODED_LEVELS if lv not in features]
    if missing:
        raise CodecError(f"the fusion codec needs levels {CODED_LEVELS}; features lack {missing}")
    h2, w2 = features["p2"].shape[-2:]
    ph, pw = padded_size(h2, w2, pad_multiple_p2)
    out = []
    for k, name in enumerate(CODED_LEVELS):
        x = features[name].float()
        want = (math.ceil(h2 / 2**k), math.ceil(w2 / 2**k))
        if tuple(x.shape[-2:]) != want:
            raise CodecError(f"{name} is {tuple(x.shape[-2:])}, expected {want} (half of the level above); the fusion codec needs an FPN pyramid")
        if not torch.isfinite(x).all():
            raise CodecError(f"{name} holds NaN or inf values; the fusion codec needs finite features")
        x = x[None]
        pad = (0, pw // 2**k - x.shape[-1], 0, ph // 2**k - x.shape[-2])
        out.append(F.pad(x, pad, mode="replicate") if any(pad) else x)
    return out, (int(h2), int(w2))


class FusionFeatureCodec(FeatureCodec):
    """Encode/decode a FeatureSet with a trained ``FusionCodecModel`` (CompressAI range coding).

    Args:
        model: a trained model; ``update()`` (CDF tables) is called here, once.
        device: where the analysis and synthesis transforms run. The entropy model (hyperprior,
            the scales and means that index the CDF tables, range coding) always runs on the CPU,
            so a bitstream written on one device decodes to the same latent on any other.
        checkpoint: the file the weights came from (its hash is the codec's version).
    """

    codec_name = "fusion"  # the container tag
    name = "fusion_codec"
    rate_params = ("quality",)
    reads = ("model",)  # the task model's name picks its zoo checkpoints

    def __init__(self, *, model: FusionCodecModel, device: str = "cpu", checkpoint: Path | None = None) -> None:
        self.checkpoint = checkpoint
        self.model = model.eval()
        self.model.update(force=True)
        self.device = resolve_device(device)
        self.model.g_a.to(self.device)
        self.model.g_s.to(self.device)

    @classmethod
    def from_config(cls, cfg: DictConfig, runtime: Runtime) -> FusionFeatureCodec:
        """The rate point ``pipeline.quality`` (or ``pipeline.checkpoint``) trained for ``model.name``."""
        path = zoo.resolve(cfg.pipeline.checkpoint, task_model=cfg.model.name, quality=cfg.pipeline.quality)
        fusion, _ = zoo.load(path)  # the architecture the checkpoint names
        return cls(model=fusion, device=runtime.device, checkpoint=path)

    def version(self) -> str:
        """The checkpoint's name and content hash (part of the run key: retrained weights never reuse records)."""
        if self.checkpoint is None:
            return "fusion model in memory (no checkpoint file)"
        return f"fusion checkpoint {self.checkpoint.name} sha256:{hashlib.sha256(self.checkpoint.read_bytes()).hexdigest()[:16]}"

    def encode(self, features: FeatureSet) -> bytes:
        levels, (h2, w2) = padded_levels(features, self.model.pad_multiple_p2)
        with torch.inference_mode():
            y = self.model.g_a([lv.to(self.device) for lv in levels]).cpu()
            out = self.model.latent_codec.compress(y)
        y_strings, z_strings = out["strings"]
        w = BitstreamWriter(self.codec_name)
        (ih, iw), (nh, nw) = features.image_size, features.input_size
        w.uint(ih)
        w.uint(iw)
        same = (ih, iw) == (nh, nw)
        w.uint(int(same))
        if not same:
            w.uint(nh)
            w.uint(nw)
        w.uint(h2)
        w.uint(w2)
        w.blob(z_strings[0])
        w.raw(y_strings[0])
        return w.getvalue()

    def decode(self, data: bytes) -> FeatureSet:
        r = BitstreamReader(data, self.codec_name)
        image_size = (r.uint(), r.uint())
        input_size = image_size if r.uint() else (r.uint(), r.uint())
        h2, w2 = r.uint(), r.uint()
        if not (0 < h2 < 2**15 and 0 < w2 < 2**15):
            raise CodecError(f"corrupt fusion bitstream: P2 size {h2}x{w2}")
        z_string = r.blob()
        y_string = r.rest()
        ph, pw = padded_size(h2, w2, self.model.pad_multiple_p2)
        y_shape = (ph // self.model.latent_stride_in_p2, pw // self.model.latent_stride_in_p2)
        shape = {"y": y_shape, "hyper": (y_shape[0] // HYPER_STRIDE, y_shape[1] // HYPER_STRIDE)}
        try:
            with torch.inference_mode():
                y_hat = self.model.latent_codec.decompress([[y_string], [z_string]], shape)["y_hat"]
                levels = [lv.cpu() for lv in self.model.g_s(y_hat.to(self.device))]
        except (RuntimeError, ValueError, IndexError) as exc:
            raise CodecError(f"corrupt fusion bitstream: range decoding failed ({exc})") from exc
        cropped = {name: lv[0, :, : math.ceil(h2 / 2**k), : math.ceil(w2 / 2**k)] for k, (name, lv) in enumerate(zip(CODED_LEVELS, levels))}
        return FeatureSet(levels=cropped, image_size=image_size, input_size=input_size)
