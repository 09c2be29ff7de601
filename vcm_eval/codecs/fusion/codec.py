"""The fusion codec as a FeatureCodec: FeatureSet -> bytes -> FeatureSet (P2..P5; P6 rebuilt).

Bitstream (vcm_eval container, codec id ``fusion``, format ``FORMAT_VERSION`` = 2)::

    tag byte | image H, W | form [| input H, W] | z string (varint length + bytes) | y string (varint length + bytes)

    form = (input == image) | (P2 H - ceil(input H / 4)) << 1 | (P2 W - ceil(input W / 4)) << 4

All varints; at the synthetic default the header is 8 bytes (format 1 spent 9 on the sizes and the z
length, and ran the y string to the end with no length: a truncated stream decoded silently). The
task network pads its input to a multiple of 32, so P2 is ``ceil(input / 4)`` plus 0..7 (3 bits a
side in ``form``): P2 always agrees with the input size. Level k+1 is exactly half of level k, so
P2's size gives all four; the levels are padded (edge replication) up to a multiple of the model's
``pad_multiple_p2`` P2 pixels for the latent and hyper-latent strides, and cropped back after
decoding. The strings are CompressAI's range-coded y and z.

The decoder treats the bytes as untrusted (docs/architecture.md, "Threat model"): it validates the
sizes (``max_pixels``, the resize, P2), estimates its memory from them before allocating
(``max_memory``), pads the strings it hands CompressAI's rANS decoder (which reads past the end of a
string without noticing), refuses a latent outside the coded range, and accepts a z or y string
only if it is exactly what the encoder writes for the symbols it decodes to (a re-encoding check:
a truncated, extended or altered string is refused before the synthesis transform runs).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from compressai import ans
from omegaconf import DictConfig

from vcm_eval.codecs.base import MAX_DECODE_BYTES, MAX_PIXELS, FeatureCodec, check_feature_header, check_memory
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.codecs.fusion import zoo
from vcm_eval.codecs.fusion.model import CODED_LEVELS, HYPER_STRIDE, FusionCodecModel, GaussianMixtureLatentCodec
from vcm_eval.codecs.pyramid_header import read_pyramid_sizes, write_pyramid_sizes
from vcm_eval.device import resolve_device
from vcm_eval.errors import CodecError
from vcm_eval.utils.components import Runtime
from vcm_eval.vision.base import FeatureSet

FORMAT_VERSION = 2  # 1: P2 H, W as varints and the y string up to the end (no length)
# |y| the format codes: the encoder clips the latent to it (the trained rate points stay within 12), so
# the decoder's work is bounded: CompressAI's mixture decoder builds a CDF of 2 |y|max + 3 entries per
# latent value (a garbage 16-bit |y|max asked for 24 GB and minutes).
LATENT_LIMIT = 255
# |z| the decoder re-encodes: float32 holds every integer up to 2**24 (so a symbol survives the trip
# through z_hat exactly), and CompressAI's coder overflows its int32 escape code far beyond it (its
# encoder then loops forever: a corrupt z string decoded into such a value did). Trained z stay within 7.
EXACT_SYMBOL_LIMIT = 2**23
# Zero bytes appended to a string before CompressAI's rANS decoder reads it, per byte and per symbol:
# the decoder does not check the end of its input, and a corrupt string makes it read on (at most a
# 32-bit word per symbol, plus the bypass code's 4-bit groups, fewer than 16 per byte of the string).
# With the padding it reads zeros, deterministically, and the re-encoding check then refuses the string.
PAD_PER_BYTE, PAD_PER_SYMBOL = 16, 16
# Bytes the decoder allocates per byte of its float32 output (the synthesis transform's activations at
# P2..P5 resolution and the padded outputs): measured peak 2.0-2.1x (512 x 256 to 2048 x 1024 inputs).
SYNTHESIS_BYTES_PER_OUTPUT_BYTE = 4
# The mixture's y is decoded (and re-encoded for the check) in chunks of latent values whose CDFs hold
# at most this many entries together: CompressAI builds one CDF of 2 |y|max + 3 entries per value, and
# its pmf/cdf tensors and the Python lists it hands the C++ coder take 30-60 bytes an entry (measured),
# so a chunk takes 16-32 MiB, whatever |y|max a stream names.
MIXTURE_CHUNK_ENTRIES = 2**19
MIXTURE_BYTES_PER_CDF_ENTRY = 64
MIXTURE_BYTES_PER_VALUE = 128  # the decoded symbols as Python ints and tensors, the bitmap, the indexes


def padded_size(h2: int, w2: int, multiple: int) -> tuple[int, int]:
    return math.ceil(h2 / multiple) * multiple, math.ceil(w2 / multiple) * multiple


def padded_levels(features: FeatureSet, pad_multiple_p2: int) -> tuple[list[torch.Tensor], tuple[int, int]]:
    """[1, C, H, W] tensors of P2..P5 padded to a multiple of ``pad_multiple_p2`` P2 pixels; P2's unpadded (H, W)."""
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
            raise CodecError(
                f"{name} is {tuple(x.shape[-2:])}, expected {want} (half of the level above); "
                "the fusion codec needs an FPN pyramid"
            )
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
    revision_area = "fusion"  # its code's revision is in the run key (vcm_eval.revisions)
    rate_params = ("quality",)
    reads = ("model",)  # the task model's name picks its zoo checkpoints

    def __init__(self, *, model: FusionCodecModel, device: str = "cpu", checkpoint: Path | None = None) -> None:
        self.checkpoint = checkpoint
        self.model = model.eval()
        self.model.update(force=True)
        self.device = resolve_device(device)
        self.model.g_a.to(self.device)
        self.model.g_s.to(self.device)
        # what the model fixes, and the decoder checks against the header instead of reading it
        self.channels = int(self.model.g_s.heads[0].out_channels)  # of every decoded level
        y_codec = self.model.latent_codec.latent_codec["y"]
        self.mixture = isinstance(y_codec, GaussianMixtureLatentCodec)
        self.latent_channels = int(self.model.g_a.out[-1].out_channels)  # M of y
        self.hyper_channels = int(self.model.latent_codec.latent_codec["hyper"].entropy_bottleneck.channels)  # of z

    @classmethod
    def from_config(cls, cfg: DictConfig, runtime: Runtime) -> FusionFeatureCodec:
        """The rate point ``pipeline.quality`` (or ``pipeline.checkpoint``) trained for ``model.name``."""
        path = zoo.resolve(cfg.pipeline.checkpoint, task_model=cfg.model.name, quality=cfg.pipeline.quality)
        fusion, _ = zoo.load(path)  # the architecture the checkpoint names
        return cls(model=fusion, device=runtime.device, checkpoint=path)

    def version(self) -> str:
        """The checkpoint's name and content hash, and the stream format (part of the run key: retrained
        weights or a new format never reuse records or kept bitstreams)."""
        if self.checkpoint is None:
            return f"fusion model in memory (no checkpoint file), format {FORMAT_VERSION}"
        digest = hashlib.sha256(self.checkpoint.read_bytes()).hexdigest()[:16]
        return f"fusion checkpoint {self.checkpoint.name} sha256:{digest} format {FORMAT_VERSION}"

    def complexity_stages(self, features: FeatureSet) -> dict[str, Callable[[], object]]:
        """The encoder's and the decoder's networks, for the kMAC count (``vcm_eval.vision.complexity``).

        Encoder: analysis transform + hyper analysis; decoder: hyper synthesis + synthesis transform.
        Range coding is not a network and not counted. Under ``no_grad``, not ``inference_mode``
        (torch's counter cannot follow CompressAI's GDN layers there).
        """
        levels, _ = padded_levels(features, self.model.pad_multiple_p2)
        levels = [lv.to(self.device) for lv in levels]
        hyper = self.model.latent_codec.latent_codec["hyper"]
        with torch.no_grad():
            y_hat = torch.round(self.model.g_a(levels))  # what the decoder's transforms run on
            z_hat = torch.round(hyper.h_a(y_hat))
        return {
            "encoder": lambda: hyper.h_a(self.model.g_a(levels)),
            "decoder": lambda: (hyper.h_s(z_hat), self.model.g_s(y_hat)),
        }

    def curve_version(self) -> str:
        """The checkpoint family (the files that differ only in ``_q<quality>``), its content and the format.

        The family's content hash covers every member: a retrained rate point (or one added) makes
        another curve, so the report never joins points of two trainings into one.
        """
        if self.checkpoint is None:
            return self.version()
        family = re.sub(r"_q\d+(?=\.pt$)", "_q*", self.checkpoint.name)
        pattern = re.compile(re.escape(family).replace(r"_q\*", r"_q\d+"))
        members = sorted(p for p in self.checkpoint.parent.iterdir() if pattern.fullmatch(p.name))
        h = hashlib.sha256()
        for member in members:
            h.update(member.name.encode() + hashlib.sha256(member.read_bytes()).digest())
        return (
            f"fusion checkpoints {self.checkpoint.parent.name}/{family} ({len(members)} files, "
            f"sha256:{h.hexdigest()[:16]}) format {FORMAT_VERSION}"
        )

    def encode(self, features: FeatureSet) -> bytes:
        """FeatureSet (P2..P5 of ``channels`` channels, sizes that agree) -> bytes (layout: the module docstring)."""
        sizes = (features.image_size, features.input_size)
        check_feature_header(self.name, *sizes, features.shapes(), channels=self.channels)
        levels, (h2, w2) = padded_levels(features, self.model.pad_multiple_p2)
        with torch.inference_mode():
            y = self.model.g_a([lv.to(self.device) for lv in levels]).cpu().clamp_(-LATENT_LIMIT, LATENT_LIMIT)
            out = self.model.latent_codec.compress(y)
        y_strings, z_strings = out["strings"]
        w = BitstreamWriter(self.codec_name, version=FORMAT_VERSION)
        write_pyramid_sizes(w, self.name, features.image_size, features.input_size, (h2, w2))
        w.blob(z_strings[0])
        w.blob(y_strings[0])
        return w.getvalue()

    def decode(self, data: bytes, *, max_pixels: int = MAX_PIXELS, max_memory: int = MAX_DECODE_BYTES) -> FeatureSet:
        """Bytes from ``encode`` -> FeatureSet of P2..P5 (float32 [channels, H, W]) and the sizes.

        Args:
            data: the bitstream (untrusted).
            max_pixels: the largest image or input size the header may name.
            max_memory: the most this decode may allocate, estimated from the header before allocating.

        Raises:
            CodecError: the stream is truncated, has bytes left over, names sizes that disagree or
                exceed the limits, or its strings are not what the encoder writes.
        """
        with BitstreamReader(data, self.codec_name, name=self.name, version=FORMAT_VERSION) as r:
            image_size, input_size, (h2, w2) = read_pyramid_sizes(r, self.name, max_pixels=max_pixels)
            z_string, y_string = r.blob(), r.blob()
        ph, pw = padded_size(h2, w2, self.model.pad_multiple_p2)
        y_shape = (ph // self.model.latent_stride_in_p2, pw // self.model.latent_stride_in_p2)
        z_shape = (y_shape[0] // HYPER_STRIDE, y_shape[1] // HYPER_STRIDE)
        check_memory(self.name, self._decode_bytes(y_string, ph * pw, y_shape), max_memory, what=f"P2 {h2}x{w2}")
        try:
            with torch.inference_mode():
                y_hat = self._decode_latent(z_string, y_string, y_shape, z_shape)
                levels = [lv.cpu() for lv in self.model.g_s(y_hat.to(self.device))]
        except (RuntimeError, ValueError, IndexError) as exc:
            raise CodecError(f"corrupt {self.name} bitstream: range decoding failed ({exc})") from exc
        if not all(bool(torch.isfinite(lv).all()) for lv in levels):
            raise CodecError(f"corrupt {self.name} bitstream: the decoded levels hold NaN or inf")
        sizes = [(math.ceil(h2 / 2**k), math.ceil(w2 / 2**k)) for k in range(len(CODED_LEVELS))]
        cropped = {name: lv[0, :, :h, :w] for name, lv, (h, w) in zip(CODED_LEVELS, levels, sizes)}
        return FeatureSet(levels=cropped, image_size=image_size, input_size=input_size)

    def _decode_bytes(self, y_string: bytes, p2_area: int, y_shape: tuple[int, int]) -> int:
        """Bytes a decode allocates, estimated from the validated header: synthesis, padding, the mixture's CDFs."""
        output = 4 * self.channels * sum(p2_area // 4**k for k in range(len(CODED_LEVELS)))
        values = self.latent_channels * y_shape[0] * y_shape[1]
        need = SYNTHESIS_BYTES_PER_OUTPUT_BYTE * output + PAD_PER_SYMBOL * values + PAD_PER_BYTE * len(y_string)
        if self.mixture:
            need += MIXTURE_BYTES_PER_CDF_ENTRY * MIXTURE_CHUNK_ENTRIES + MIXTURE_BYTES_PER_VALUE * values
        return need

    def _decode_latent(
        self, z_string: bytes, y_string: bytes, y_shape: tuple[int, int], z_shape: tuple[int, int]
    ) -> torch.Tensor:
        """z, then the y latent [1, M, H, W], each checked: in range, and re-encoding to exactly its string."""
        codecs = self.model.latent_codec.latent_codec
        hyper, y_codec = codecs["hyper"], codecs["y"]
        bottleneck = hyper.entropy_bottleneck
        z_hat = bottleneck.decompress([_padded(z_string, self.hyper_channels * z_shape[0] * z_shape[1])], z_shape)
        peak = float(z_hat.abs().max())
        if not peak <= EXACT_SYMBOL_LIMIT:  # NaN too
            raise CodecError(f"corrupt {self.name} bitstream: decoded hyper-latent magnitude {peak:g}")
        if bottleneck.compress(z_hat) != [z_string]:
            raise self._not_canonical("z")
        params = hyper.h_s(z_hat)
        if self.mixture:
            mixture = _Mixture(y_codec, params, y_string, self.name)
            y_hat = mixture.decode()
            if mixture.encode(y_hat) != y_string:
                raise self._not_canonical("y")
            return y_hat
        values = self.latent_channels * y_shape[0] * y_shape[1]
        y_hat = y_codec.decompress([[_padded(y_string, values)]], y_shape, params)["y_hat"]
        peak = float(y_hat.abs().max())
        if not peak <= LATENT_LIMIT + 0.5:
            raise CodecError(
                f"corrupt {self.name} bitstream: decoded latent magnitude {peak:g} outside the format's {LATENT_LIMIT}"
            )
        if y_codec.compress(y_hat, params)["strings"][0][0] != y_string:
            raise self._not_canonical("y")
        return y_hat

    def _not_canonical(self, which: str) -> CodecError:
        return CodecError(
            f"corrupt {self.name} bitstream: the {which} string is not the coding of what it decodes to "
            "(truncated or altered)"
        )


def _padded(string: bytes, symbols: int) -> bytes:
    """``string`` and the zeros CompressAI's rANS decoder may read past its end (see ``PAD_PER_BYTE``)."""
    return string + bytes(PAD_PER_BYTE * len(string) + PAD_PER_SYMBOL * symbols + 64)


class _Mixture:
    """The mixture latent's string (``model.GaussianMixtureLatentCodec``) decoded and encoded in bounded chunks.

    The string: ``abs_max`` (2 bytes, little-endian), a bitmap of the channels that hold a nonzero
    value (bit c of byte c // 8), then CompressAI's rANS code of ``y + abs_max`` for those channels,
    one CDF of ``2 abs_max + 1`` values per latent value (``GaussianMixtureConditional``). The same
    steps as CompressAI's ``decompress``/``compress``, but the CDFs are built ``MIXTURE_CHUNK_ENTRIES``
    at a time (rows are independent) and fed to its streaming coder, so memory does not grow with the
    ``abs_max`` a stream names; ``abs_max`` itself is bounded by the format (``LATENT_LIMIT``).
    """

    def __init__(self, y_codec: GaussianMixtureLatentCodec, params: torch.Tensor, string: bytes, name: str) -> None:
        self.conditional, self.params, self.string, self.name = y_codec.gaussian_conditional, params, string, name
        self.channels, self.components = y_codec.M, y_codec.K
        self.bitmap_bytes = (self.channels + 7) // 8
        if len(string) < 2:
            raise CodecError(f"corrupt {name} bitstream: y string of {len(string)} bytes (2 at least)")
        self.abs_max = int.from_bytes(string[:2], "little")
        if self.abs_max > LATENT_LIMIT + 1:
            raise CodecError(
                f"corrupt {name} bitstream: latent range {self.abs_max} above the format's {LATENT_LIMIT + 1}"
            )
        self.scales, self.means, self.weights = y_codec._params(params)

    def _cdfs(self, nonzero: list[int]) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(first, last) latent values of each chunk and their CDFs [values, entries], built one chunk at a time."""
        s, m, w = self.conditional.reshape_entropy_parameters(self.scales, self.means, self.weights, nonzero)
        count, entries = s.size(1), 2 * self.abs_max + 3
        step = max(1, MIXTURE_CHUNK_ENTRIES // entries)
        for a in range(0, count, step):
            b = min(a + step, count)  # _build_cdf clamps the scales and shifts the means in place: copies
            yield a, b, self.conditional._build_cdf(s[:, a:b].clone(), m[:, a:b].clone(), w[:, a:b], self.abs_max)

    def decode(self) -> torch.Tensor:
        """y_hat [1, M, H, W]; zeros for the all-zero string."""
        b, _, h, w = self.scales.shape
        y_hat = torch.zeros(b, self.channels, h, w)
        if self.abs_max == 0:
            return y_hat
        if len(self.string) < 2 + self.bitmap_bytes:
            raise CodecError(
                f"corrupt {self.name} bitstream: y string of {len(self.string)} bytes has no channel bitmap"
            )
        bitmap = self.string[2 : 2 + self.bitmap_bytes]
        nonzero = [c for c in range(self.channels) if bitmap[c // 8] >> (c % 8) & 1]
        if not nonzero:
            return y_hat
        code = self.string[2 + self.bitmap_bytes :]
        decoder = ans.RansDecoder()
        decoder.set_stream(_padded(code, len(nonzero) * h * w))
        values: list[int] = []
        for a, b_, cdf in self._cdfs(nonzero):
            n = b_ - a
            values.extend(decoder.decode_stream(list(range(n)), cdf.tolist(), [cdf.size(1)] * n, [0] * n))
        symbols = torch.tensor(values, dtype=torch.int64) - self.abs_max
        if symbols.numel() and int(symbols.abs().max()) > LATENT_LIMIT:
            raise CodecError(
                f"corrupt {self.name} bitstream: a decoded latent value beyond the format's {LATENT_LIMIT}"
            )
        y_hat[:, nonzero] = symbols.reshape(b, len(nonzero), h, w).float()
        return y_hat

    def encode(self, y_hat: torch.Tensor) -> bytes:
        """The string the encoder writes for ``y_hat`` with this ``abs_max`` (the re-encoding check)."""
        if not y_hat.any():
            return b"\x00\x00"  # GaussianMixtureLatentCodec.compress's all-zero latent
        if self.abs_max - int(y_hat.abs().max()) not in (0, 1):
            return b""  # the encoder writes trunc(max |y|) + 1 of the unrounded latent: max |y_hat| or one more
        nonzero = [c for c in range(self.channels) if y_hat[:, c].any()]
        bitmap = bytearray(self.bitmap_bytes)
        for c in nonzero:
            bitmap[c // 8] |= 1 << (c % 8)
        symbols = (y_hat[:, nonzero] + self.abs_max).reshape(-1).to(torch.int64).tolist()
        encoder = ans.BufferedRansEncoder()
        for a, b, cdf in self._cdfs(nonzero):
            n = b - a
            encoder.encode_with_indexes(symbols[a:b], list(range(n)), cdf.tolist(), [cdf.size(1)] * n, [0] * n)
        return self.abs_max.to_bytes(2, "little") + bytes(bitmap) + encoder.flush()
