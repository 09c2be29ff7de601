"""Learned multi-scale feature codec with feature fusion (Method B of docs/methods.md).

Data flow (N = ``channels``, M = ``latent_channels``; strides relative to the input image)::

    P2 (s4) -RBs2-> . -fuse(P3)-> (s8) -RBs2-> . -fuse(P4)-> (s16) -RBs2-> . -fuse(P5)-> (s32)
        -attention, conv s2-> y (s64, M ch)  ==[ hyperprior entropy model, range coded ]==> y_hat
    y_hat -attention, RBup2-> (s32) --head--> P5'
                 -RBup2-> (s16) --head--> P4'   (each stage mixes the coarser stage's features)
                 -RBup2-> (s8)  --head--> P3'
                 -RBup2-> (s4)  --head--> P2'         P6' = maxpool(P5') by the task model's FPN

The encoder turns the largest map into a latent at the next scale and fuses it with that level
(concatenate, 3x3 mix, residual block), down to one small latent for the whole pyramid. The
entropy model is a hyperprior (Balle et al. 2018) with a mean-scale Gaussian or a K=3 Gaussian
mixture conditional and attention blocks, in the style of Cheng et al. 2020, "Learned image
compression with discretized Gaussian mixture likelihoods and attention modules". All building
blocks and the range coder are CompressAI's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianMixtureConditional
from compressai.latent_codecs import (
    GaussianConditionalLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
    LatentCodec,
)
from compressai.layers import (
    AttentionBlock,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv1x1,
    conv3x3,
    subpel_conv3x3,
)
from compressai.models import CompressionModel
from torch import Tensor, nn

from vcm_eval.codecs.fusion.config import DecoderLayout, FusionEntropy
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.utils.choices import choice
from vcm_eval.vision.levels import parse_levels

CODED_LEVELS = parse_levels("p2-p5")  # the levels this codec codes; P6 is max-pooled from P5' at the decoder
P2_STRIDE = 4  # P2 is at stride 4 of the input image
HYPER_STRIDE = 4  # z is 4x coarser than y (two stride-2 convolutions in h_a)
LATENT_STRIDES = (32, 64)


class Fuse(nn.Module):
    """Fuse the running latent with an FPN level of the same scale: concat, 3x3 mix, residual."""

    def __init__(self, channels: int, level_channels: int) -> None:
        super().__init__()
        self.mix = nn.Sequential(
            conv3x3(channels + level_channels, channels), nn.LeakyReLU(inplace=True), ResidualBlock(channels, channels)
        )

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        return self.mix(torch.cat([x, level], dim=1))


class FusionEncoder(nn.Module):
    """P2..P5 -> y at image stride ``latent_stride`` (64: one more stride-2 step after P5; 32: P5's scale)."""

    def __init__(
        self, *, in_channels: int, channels: int, latent_channels: int, attention: bool, latent_stride: int = 64
    ) -> None:
        super().__init__()
        self.down = nn.ModuleList(
            [ResidualBlockWithStride(in_channels, channels, 2)]
            + [ResidualBlockWithStride(channels, channels, 2) for _ in range(2)]
        )
        self.fuse = nn.ModuleList([Fuse(channels, in_channels) for _ in range(3)])
        last_stride = latent_stride // 32
        self.out = nn.Sequential(
            AttentionBlock(channels) if attention else nn.Identity(),
            conv3x3(channels, latent_channels, stride=last_stride),
        )

    def forward(self, levels: list[Tensor]) -> Tensor:
        x = levels[0]
        for down, fuse, level in zip(self.down, self.fuse, levels[1:]):
            x = fuse(down(x), level)
        return self.out(x)


class FusionDecoder(nn.Module):
    """``cascade``: y_hat -> P5', P4', P3', P2', each level upsampled from the coarser one (returned finest first).

    Cheap, but P2' is the end of a long chain that also has to serve P5'; the level-swap diagnostic
    (docs/fusion_codec.md) shows P2' is where the accuracy goes. ``ParallelFusionDecoder`` is the
    alternative that gives every level its own branch.
    """

    def __init__(
        self, *, out_channels: int, channels: int, latent_channels: int, attention: bool, latent_stride: int = 64
    ) -> None:
        super().__init__()
        self.inp = AttentionBlock(latent_channels) if attention else nn.Identity()
        first = (
            ResidualBlockUpsample(latent_channels, channels, 2)
            if latent_stride == 64
            else ResidualBlock(latent_channels, channels)
        )
        self.up = nn.ModuleList([first] + [ResidualBlockUpsample(channels, channels, 2) for _ in range(3)])
        self.mix = nn.ModuleList([ResidualBlock(channels, channels) for _ in range(4)])
        self.heads = nn.ModuleList([conv3x3(channels, out_channels) for _ in range(4)])

    def forward(self, y_hat: Tensor) -> list[Tensor]:
        x, outs = self.inp(y_hat), []
        for up, mix, head in zip(self.up, self.mix, self.heads):
            x = mix(up(x))
            outs.append(head(x))
        return outs[::-1]


class MixLevels(nn.Module):
    """Mix a decoded finer level into the next coarser one: strided 3x3 conv of the finer, concat, 3x3, residual.

    (L-MSFC's mixing block uses a 5x5 strided convolution; 3x3 saves 0.2 M parameters.)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.down = nn.Sequential(conv3x3(channels, channels, stride=2), nn.LeakyReLU(inplace=True))
        self.mix = nn.Sequential(conv3x3(2 * channels, channels), nn.LeakyReLU(inplace=True))

    def forward(self, finer: Tensor, level: Tensor) -> Tensor:
        return self.mix(torch.cat([self.down(finer), level], dim=1)) + level


def _branch(latent_channels: int, channels: int, ups: int, attention: bool) -> nn.Sequential:
    """One level's branch: ``ups`` 2x-upsampling residual stages from y_hat, attention after the second, a
    residual block.

    L-MSFC puts a residual block before every upsampling stage; one per branch keeps the whole
    model under the 10 MB a rate point may weigh.
    """
    layers: list[nn.Module] = []
    width = latent_channels
    for i in range(ups):
        layers.append(ResidualBlockUpsample(width, channels, 2))
        width = channels
        if attention and i == 1:
            layers.append(AttentionBlock(channels))
    layers.append(ResidualBlock(width, channels))
    return nn.Sequential(*layers)


class ParallelFusionDecoder(nn.Module):
    """y_hat -> P2'..P5' in parallel branches, each finer level mixed into the next coarser one.

    The structure of the public L-MSFC decoder: every level gets its own branch from the (attention
    filtered) latent, so P2' no longer shares its upsampling path with P5'; P2' is decoded first and
    fed into P3', P3' into P4', P4' into P5'. The number of upsampling stages per branch follows
    from ``latent_stride``. L-MSFC mixes the 256-channel outputs; here the mixing runs at the
    transform width before each level's 3x3 head, which keeps a rate point under 10 MB.
    """

    def __init__(
        self, *, out_channels: int, channels: int, latent_channels: int, attention: bool, latent_stride: int = 64
    ) -> None:
        super().__init__()
        self.inp = AttentionBlock(latent_channels) if attention else nn.Identity()
        ups = [int(math.log2(latent_stride // (P2_STRIDE * 2**k))) for k in range(len(CODED_LEVELS))]
        self.branches = nn.ModuleList([_branch(latent_channels, channels, u, attention) for u in ups])
        self.mixers = nn.ModuleList([MixLevels(channels) for _ in range(len(CODED_LEVELS) - 1)])
        self.heads = nn.ModuleList(
            [conv1x1(channels, out_channels) for _ in CODED_LEVELS]
        )  # after a residual block: 1x1 suffices

    def forward(self, y_hat: Tensor) -> list[Tensor]:
        y = self.inp(y_hat)
        mixed = [self.branches[0](y)]
        for branch, mixer in zip(self.branches[1:], self.mixers):
            mixed.append(mixer(mixed[-1], branch(y)))
        return [head(x) for head, x in zip(self.heads, mixed)]


class GaussianMixtureLatentCodec(LatentCodec):
    """y coded with CompressAI's K-component Gaussian mixture conditional (Cheng et al. 2020).

    The hyper decoder's parameters are split into K scales, K means and K weights per channel
    (weights softmax-normalised over K). CompressAI's mixture coder also returns ``abs_max`` and
    a bitmap of the all-zero channels; both are part of the strings this codec returns.
    """

    def __init__(self, *, latent_channels: int, components: int = 3) -> None:
        super().__init__()
        self.K, self.M = components, latent_channels
        self.gaussian_conditional = GaussianMixtureConditional(K=components)

    def _params(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        scales, means, logits = params.chunk(3, 1)
        b, _, h, w = logits.shape
        weights = torch.softmax(logits.reshape(b, self.K, self.M, h, w), dim=1).reshape(b, self.K * self.M, h, w)
        return scales, means, weights

    def forward(self, y: Tensor, params: Tensor) -> dict[str, Any]:
        y_hat, likelihoods = self.gaussian_conditional(y, *self._params(params))
        return {"likelihoods": {"y": likelihoods}, "y_hat": y_hat}

    def compress(self, y: Tensor, params: Tensor) -> dict[str, Any]:
        if not torch.round(y).any():  # CompressAI's mixture coder crashes on an all-zero latent
            return {"strings": [[b"\x00\x00"]], "shape": y.shape[2:4], "y_hat": torch.zeros_like(y)}
        (rv, abs_max, zero_bitmap), y_hat = self.gaussian_conditional.compress(y, *self._params(params))
        if abs_max >= 2**16:
            raise CodecError(
                f"latent magnitude {abs_max} does not fit the mixture coder's 16-bit range; "
                "the checkpoint does not fit this input"
            )
        bitmap = bytes(torch.as_tensor(zero_bitmap).reshape(-1).to(torch.uint8).tolist())
        header = abs_max.to_bytes(2, "little") + _pack_bits(bitmap)
        return {"strings": [[header + rv]], "shape": y.shape[2:4], "y_hat": y_hat}

    def decompress(
        self, strings: list[list[bytes]], shape: tuple[int, int], ctx_params: Tensor, **kwargs: Any
    ) -> dict[str, Any]:
        data = strings[0][0]
        n_bytes = (self.M + 7) // 8
        abs_max = int.from_bytes(data[:2], "little")
        if abs_max == 0:
            b, _, h, w = ctx_params.shape
            return {"y_hat": torch.zeros(b, self.M, h, w)}
        zero_bitmap = torch.tensor(_unpack_bits(data[2 : 2 + n_bytes], self.M), dtype=torch.int64)
        y_hat = self.gaussian_conditional.decompress(
            data[2 + n_bytes :], abs_max, zero_bitmap, *self._params(ctx_params)
        )
        return {"y_hat": y_hat}


def _pack_bits(bits: bytes) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _unpack_bits(data: bytes, count: int) -> list[int]:
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]


class FusionCodecModel(CompressionModel):
    """The whole codec: fusion encoder, hyperprior entropy model, multi-scale decoder.

    Args:
        in_channels: channels of every FPN level (256).
        channels: width N of the transforms.
        latent_channels: channels M of y.
        hyper_channels: channels of z.
        entropy_model: ``meanscale`` (Gaussian with mean and scale) or ``gmm`` (K=3 mixture).
        attention: use CompressAI's attention blocks around the latent.
        latent_stride: image stride of y, 64 or 32 (4x the latent values: capacity for P2).
        decoder: ``cascade`` (one upsampling chain) or ``parallel`` (L-MSFC's per-level branches).
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        channels: int = 96,
        latent_channels: int = 64,
        hyper_channels: int = 64,
        entropy_model: str = "meanscale",
        attention: bool = True,
        latent_stride: int = 64,
        decoder: str = "cascade",
    ) -> None:
        super().__init__()
        entropy_model = str(choice(FusionEntropy, entropy_model, "arch.entropy_model"))
        decoder = str(choice(DecoderLayout, decoder, "arch.decoder"))
        if latent_stride not in LATENT_STRIDES:
            raise ConfigError(f"fusion latent_stride={latent_stride} is not supported; use one of {LATENT_STRIDES}")
        if min(in_channels, channels, latent_channels, hyper_channels) <= 0:
            raise ConfigError("fusion codec channel widths must all be positive")
        M, H = latent_channels, hyper_channels
        self.latent_stride_in_p2 = latent_stride // P2_STRIDE
        self.pad_multiple_p2 = self.latent_stride_in_p2 * HYPER_STRIDE
        self.g_a = FusionEncoder(
            in_channels=in_channels,
            channels=channels,
            latent_channels=M,
            attention=attention,
            latent_stride=latent_stride,
        )
        decoder_cls = FusionDecoder if decoder == "cascade" else ParallelFusionDecoder
        self.g_s = decoder_cls(
            out_channels=in_channels,
            channels=channels,
            latent_channels=M,
            attention=attention,
            latent_stride=latent_stride,
        )
        n_params = 2 if entropy_model == "meanscale" else 9  # (scale, mean) or 3 x (scale, mean, weight)
        h_a = nn.Sequential(
            conv3x3(M, H),
            nn.LeakyReLU(inplace=True),
            conv3x3(H, H, stride=2),
            nn.LeakyReLU(inplace=True),
            conv3x3(H, H, stride=2),
        )
        # the mixture's 9 parameters per channel: a 1x1 last layer (a 3x3 one would weigh M x 13 x 9^2 weights)
        last = conv3x3(M * 3 // 2, M * n_params) if entropy_model == "meanscale" else conv1x1(M * 3 // 2, M * n_params)
        h_s = nn.Sequential(
            subpel_conv3x3(H, H, 2),
            nn.LeakyReLU(inplace=True),
            subpel_conv3x3(H, M * 3 // 2, 2),
            nn.LeakyReLU(inplace=True),
            last,
        )
        y_codec: LatentCodec
        if entropy_model == "meanscale":
            y_codec = GaussianConditionalLatentCodec(quantizer="ste", chunks=("scales", "means"))
        else:
            y_codec = GaussianMixtureLatentCodec(latent_channels=M)
        self.latent_codec = HyperpriorLatentCodec(
            latent_codec={
                "y": y_codec,
                "hyper": HyperLatentCodec(entropy_bottleneck=EntropyBottleneck(H), h_a=h_a, h_s=h_s, quantizer="ste"),
            }
        )

    def forward(self, levels: list[Tensor]) -> dict[str, Any]:
        """Training/eval pass on padded levels [P2..P5]: reconstructions and likelihoods."""
        y = self.g_a(levels)
        out = self.latent_codec(y)
        return {"levels": self.g_s(out["y_hat"]), "likelihoods": out["likelihoods"]}

    @torch.inference_mode()
    def compress(self, levels: list[Tensor]) -> dict[str, Any]:  # type: ignore[override]
        return self.latent_codec.compress(self.g_a(levels))

    @torch.inference_mode()
    def decompress(self, strings: list[list[bytes]], shape: dict[str, Any]) -> list[Tensor]:  # type: ignore[override]
        return self.g_s(self.latent_codec.decompress(strings, shape)["y_hat"])
