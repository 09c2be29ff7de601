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

from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianMixtureConditional
from compressai.latent_codecs import GaussianConditionalLatentCodec, HyperLatentCodec, HyperpriorLatentCodec, LatentCodec
from compressai.layers import AttentionBlock, ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride, conv3x3, subpel_conv3x3
from compressai.models import CompressionModel
from torch import Tensor, nn

from vcm_eval.errors import CodecError, ConfigError

CODED_LEVELS = ("p2", "p3", "p4", "p5")
LATENT_STRIDE_IN_P2 = 16  # y is at stride 64 of the image = 16 P2 pixels; z at 4x that
PAD_MULTIPLE_P2 = LATENT_STRIDE_IN_P2 * 4
ENTROPY_MODELS = ("meanscale", "gmm")


class Fuse(nn.Module):
    """Fuse the running latent with an FPN level of the same scale: concat, 3x3 mix, residual."""

    def __init__(self, channels: int, level_channels: int) -> None:
        super().__init__()
        self.mix = nn.Sequential(conv3x3(channels + level_channels, channels), nn.LeakyReLU(inplace=True), ResidualBlock(channels, channels))

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        return self.mix(torch.cat([x, level], dim=1))


class FusionEncoder(nn.Module):
    """P2..P5 -> y at stride 64 (``latent_channels`` channels)."""

    def __init__(self, *, in_channels: int, channels: int, latent_channels: int, attention: bool) -> None:
        super().__init__()
        self.down = nn.ModuleList(
            [ResidualBlockWithStride(in_channels, channels, 2)] + [ResidualBlockWithStride(channels, channels, 2) for _ in range(2)]
        )
        self.fuse = nn.ModuleList([Fuse(channels, in_channels) for _ in range(3)])
        self.out = nn.Sequential(AttentionBlock(channels) if attention else nn.Identity(), conv3x3(channels, latent_channels, stride=2))

    def forward(self, levels: list[Tensor]) -> Tensor:
        x = levels[0]
        for down, fuse, level in zip(self.down, self.fuse, levels[1:]):
            x = fuse(down(x), level)
        return self.out(x)


class FusionDecoder(nn.Module):
    """y_hat -> P5', P4', P3', P2' (returned finest first)."""

    def __init__(self, *, out_channels: int, channels: int, latent_channels: int, attention: bool) -> None:
        super().__init__()
        self.inp = AttentionBlock(latent_channels) if attention else nn.Identity()
        self.up = nn.ModuleList([ResidualBlockUpsample(latent_channels, channels, 2)] + [ResidualBlockUpsample(channels, channels, 2) for _ in range(3)])
        self.mix = nn.ModuleList([ResidualBlock(channels, channels) for _ in range(4)])
        self.heads = nn.ModuleList([conv3x3(channels, out_channels) for _ in range(4)])

    def forward(self, y_hat: Tensor) -> list[Tensor]:
        x, outs = self.inp(y_hat), []
        for up, mix, head in zip(self.up, self.mix, self.heads):
            x = mix(up(x))
            outs.append(head(x))
        return outs[::-1]


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
            raise CodecError(f"latent magnitude {abs_max} does not fit the mixture coder's 16-bit range; the checkpoint does not fit this input")
        bitmap = bytes(torch.as_tensor(zero_bitmap).reshape(-1).to(torch.uint8).tolist())
        header = abs_max.to_bytes(2, "little") + _pack_bits(bitmap)
        return {"strings": [[header + rv]], "shape": y.shape[2:4], "y_hat": y_hat}

    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], ctx_params: Tensor, **kwargs: Any) -> dict[str, Any]:
        data = strings[0][0]
        n_bytes = (self.M + 7) // 8
        abs_max = int.from_bytes(data[:2], "little")
        if abs_max == 0:
            b, _, h, w = ctx_params.shape
            return {"y_hat": torch.zeros(b, self.M, h, w)}
        zero_bitmap = torch.tensor(_unpack_bits(data[2 : 2 + n_bytes], self.M), dtype=torch.int64)
        y_hat = self.gaussian_conditional.decompress(data[2 + n_bytes :], abs_max, zero_bitmap, *self._params(ctx_params))
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
    ) -> None:
        super().__init__()
        if entropy_model not in ENTROPY_MODELS:
            raise ConfigError(f"fusion entropy_model={entropy_model!r} is unknown; use one of {ENTROPY_MODELS}")
        if min(in_channels, channels, latent_channels, hyper_channels) <= 0:
            raise ConfigError("fusion codec channel widths must all be positive")
        M, H = latent_channels, hyper_channels
        self.g_a = FusionEncoder(in_channels=in_channels, channels=channels, latent_channels=M, attention=attention)
        self.g_s = FusionDecoder(out_channels=in_channels, channels=channels, latent_channels=M, attention=attention)
        n_params = 2 if entropy_model == "meanscale" else 9  # (scale, mean) or 3 x (scale, mean, weight)
        h_a = nn.Sequential(conv3x3(M, H), nn.LeakyReLU(inplace=True), conv3x3(H, H, stride=2), nn.LeakyReLU(inplace=True), conv3x3(H, H, stride=2))
        h_s = nn.Sequential(
            subpel_conv3x3(H, H, 2), nn.LeakyReLU(inplace=True), subpel_conv3x3(H, M * 3 // 2, 2), nn.LeakyReLU(inplace=True), conv3x3(M * 3 // 2, M * n_params)
        )
        y_codec: LatentCodec
        if entropy_model == "meanscale":
            y_codec = GaussianConditionalLatentCodec(quantizer="ste", chunks=("scales", "means"))
        else:
            y_codec = GaussianMixtureLatentCodec(latent_channels=M)
        self.latent_codec = HyperpriorLatentCodec(
            latent_codec={"y": y_codec, "hyper": HyperLatentCodec(entropy_bottleneck=EntropyBottleneck(H), h_a=h_a, h_s=h_s, quantizer="ste")}
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
