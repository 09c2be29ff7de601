"""The MSFC modules: multi-scale feature fusion (MSFF), single-stream feature compression (SSFC), and
multi-scale feature reconstruction (MSFR), after Zhang et al., "MSFC: Deep Feature Compression in
Multi-Task Network", ICME 2021, and MPEG VCM's "enhanced MSFC with bottom-up MSFF".

Data flow (N = ``channels``, C = ``code_channels``; t = the fused scale, P5 or P4)::

    P2..P5 (256 ch) -1x1-> N ch -top-down (FPN-style adds)-> T2..T5
        -bottom-up: T2 -conv s2-> concat T3 -3x3-> ... -> Tt  -SE-> fused (N ch, scale t)     MSFF
        -3x3 conv to C, tanh-> code (C ch, scale t)                                             SSFC encoder
    code  ==[ 10-bit min-max, tiled into one monochrome frame, VVC intra ]==>  code'            (codec.py)
    code' -3x3 conv to N, residual block-> R_t                                                  SSFC decoder
        -upsample + residual block per finer level, strided conv per coarser level-> R2..R5
        -1x1 head per level-> P2'..P5' (256 ch)                                                 MSFR
                                               P6' = maxpool(P5') by the task model's FPN

``msff=direct`` replaces the top-down/bottom-up aggregation by the first MSFC layout: each level
resized to scale t (average pooling or nearest upsampling), concatenated, re-weighted by a
squeeze-and-excitation block (Hu et al., CVPR 2018) and mixed by a 3x3 convolution. The layers
inside each module are this implementation's (docs/msfc.md says which parts the papers fix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from compressai.layers import ResidualBlock, conv1x1, conv3x3
from torch import Tensor, nn

from vcm_eval.codecs.msfc.config import FusedScale, MsffLayout
from vcm_eval.errors import ConfigError
from vcm_eval.utils.choices import choice
from vcm_eval.vision.levels import parse_levels

CODED_LEVELS = parse_levels("p2-p5")  # what the modules take and rebuild; P6 is max-pooled from P5' by the task model
P2_STRIDE = 4


def level_sizes(p2: tuple[int, int], count: int = len(CODED_LEVELS)) -> list[tuple[int, int]]:
    """(H, W) of P2, P3, ...: each level half the one below, rounded up (the FPN's stride-2 stages)."""
    return [(math.ceil(p2[0] / 2**k), math.ceil(p2[1] / 2**k)) for k in range(count)]


def _act() -> nn.Module:
    return nn.LeakyReLU(inplace=True)


def _resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest 2x-style upsampling to ``size`` (the finer level), cropped where the coarser level was rounded up."""
    h, w = size
    grow = x.shape[-2] < h or x.shape[-1] < w
    up = F.interpolate(x, size=(2 * x.shape[-2], 2 * x.shape[-1]), mode="nearest") if grow else x
    return up[..., :h, :w]


class SqueezeExcite(nn.Module):
    """Channel re-weighting (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018): global mean, two 1x1, sigmoid."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.fc = nn.Sequential(
            conv1x1(channels, hidden), nn.ReLU(inplace=True), conv1x1(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc(x.mean(dim=(-2, -1), keepdim=True))


class BottomUpMsff(nn.Module):
    """P2..P5 -> one N-channel feature at level ``target`` (index into P2..P5): top-down, then bottom-up.

    The top-down pass (each level plus its coarser neighbour upsampled, as in an FPN) brings P5's
    context into the finer levels, so a fused feature at P4's scale still sees P5; the bottom-up
    pass (PANet-style: strided convolution of the finer result, concatenated with the next level,
    mixed by a 3x3 convolution) carries P2's detail up to the fused scale.
    """

    def __init__(self, *, in_channels: int, channels: int, target: int) -> None:
        super().__init__()
        self.target = target
        self.lateral = nn.ModuleList([conv1x1(in_channels, channels) for _ in CODED_LEVELS])
        self.down = nn.ModuleList([nn.Sequential(conv3x3(channels, channels, stride=2), _act()) for _ in range(target)])
        self.mix = nn.ModuleList([nn.Sequential(conv3x3(2 * channels, channels), _act()) for _ in range(target)])
        self.se = SqueezeExcite(channels)

    def forward(self, levels: list[Tensor]) -> Tensor:
        lat = [f(x) for f, x in zip(self.lateral, levels)]
        td = [lat[-1]]
        for x in reversed(lat[:-1]):
            td.insert(0, x + _resize_to(td[0], x.shape[-2:]))
        out = td[0]
        for k in range(self.target):
            out = self.mix[k](torch.cat([self.down[k](out), td[k + 1]], dim=1))
        return self.se(out)


class DirectMsff(nn.Module):
    """P2..P5 -> one N-channel feature at level ``target``: each level resized there, concatenated, SE, 3x3 conv."""

    def __init__(self, *, in_channels: int, channels: int, target: int) -> None:
        super().__init__()
        self.target = target
        self.lateral = nn.ModuleList([conv1x1(in_channels, channels) for _ in CODED_LEVELS])
        self.se = SqueezeExcite(len(CODED_LEVELS) * channels)
        self.mix = nn.Sequential(conv3x3(len(CODED_LEVELS) * channels, channels), _act())

    def forward(self, levels: list[Tensor]) -> Tensor:
        size = levels[self.target].shape[-2:]
        parts = []
        for k, (f, x) in enumerate(zip(self.lateral, levels)):
            y = f(x)
            if k < self.target:  # finer: average over each 2^d x 2^d cell (a partial cell at a rounded-up edge)
                y = F.avg_pool2d(y, 2 ** (self.target - k), ceil_mode=True)
            elif k > self.target:
                y = _resize_to(y, size)
            parts.append(y)
        return self.mix(self.se(torch.cat(parts, dim=1)))


class UpLevel(nn.Module):
    """One MSFR step to the next finer level: nearest 2x upsampling (cropped to its size), residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.refine = ResidualBlock(channels, channels)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return self.refine(_resize_to(x, size))


class Msfr(nn.Module):
    """The reconstructed code -> P2'..P5': SSFC's channel expansion, then one level at a time from the fused scale."""

    def __init__(self, *, out_channels: int, channels: int, code_channels: int, target: int) -> None:
        super().__init__()
        self.target = target
        self.expand = nn.Sequential(
            conv3x3(code_channels, channels), _act(), ResidualBlock(channels, channels)
        )  # SSFC decoder
        self.finer = nn.ModuleList([UpLevel(channels) for _ in range(target)])
        coarser = len(CODED_LEVELS) - 1 - target
        self.coarser = nn.ModuleList(
            [nn.Sequential(conv3x3(channels, channels, stride=2), _act()) for _ in range(coarser)]
        )
        self.heads = nn.ModuleList([conv1x1(channels, out_channels) for _ in CODED_LEVELS])

    def forward(self, code: Tensor, sizes: list[tuple[int, int]]) -> list[Tensor]:
        x = self.expand(code)
        out: list[Tensor] = [x]
        for k in range(self.target - 1, -1, -1):
            out.insert(0, self.finer[k](out[0], sizes[k]))
        for down in self.coarser:
            out.append(down(out[-1]))
        return [head(r) for head, r in zip(self.heads, out)]


class MsfcModel(nn.Module):
    """MSFF + SSFC encoder (``fuse``) and SSFC decoder + MSFR (``reconstruct``); VVC codes what lies between.

    Args:
        in_channels: channels of every FPN level (256).
        channels: width N of the fusion and reconstruction modules.
        code_channels: channels C of the code VVC carries (SSFC's channel reduction).
        scale: ``p5`` or ``p4``: the level whose size the fused feature has.
        msff: ``bottom_up`` (top-down then bottom-up aggregation) or ``direct`` (resize and concatenate).
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        channels: int = 64,
        code_channels: int = 64,
        scale: str = "p5",
        msff: str = "bottom_up",
    ) -> None:
        super().__init__()
        scale = str(choice(FusedScale, scale, "arch.scale"))
        msff = str(choice(MsffLayout, msff, "arch.msff"))
        if min(in_channels, channels, code_channels) <= 0:
            raise ConfigError(
                f"MSFC widths must be positive, got in {in_channels}, channels {channels}, code {code_channels}"
            )
        self.target = CODED_LEVELS.index(scale)
        self.in_channels, self.code_channels = in_channels, code_channels
        self.arch = {
            "in_channels": in_channels,
            "channels": channels,
            "code_channels": code_channels,
            "scale": scale,
            "msff": msff,
        }
        fusion = BottomUpMsff if msff == "bottom_up" else DirectMsff
        self.msff = fusion(in_channels=in_channels, channels=channels, target=self.target)
        self.compress = nn.Sequential(conv3x3(channels, code_channels), nn.Tanh())  # SSFC encoder: bounded for min-max
        self.msfr = Msfr(out_channels=in_channels, channels=channels, code_channels=code_channels, target=self.target)

    def code_size(self, p2: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the code for a P2 of size ``p2``."""
        return level_sizes(p2)[self.target]

    def fuse(self, levels: list[Tensor]) -> Tensor:
        """[B, 256, H_k, W_k] for P2..P5 -> the code [B, C, H_t, W_t] in [-1, 1]."""
        return self.compress(self.msff(levels))

    def reconstruct(self, code: Tensor, p2: tuple[int, int]) -> list[Tensor]:
        """The (decoded) code -> [B, 256, H_k, W_k] for P2..P5, for a P2 of size ``p2``."""
        return self.msfr(code, level_sizes(p2))

    def forward(self, levels: list[Tensor], noise: float = 0.0) -> dict[str, Tensor | list[Tensor]]:
        """Training pass: fuse, optionally perturb the code by uniform noise of ``noise`` x its 10-bit step, rebuild."""
        code = self.fuse(levels)
        if noise > 0:
            lo, hi = code.detach().amin(dim=(1, 2, 3), keepdim=True), code.detach().amax(dim=(1, 2, 3), keepdim=True)
            step = (hi - lo) / 1023
            code = code + (torch.rand_like(code) - 0.5) * noise * step
        return {"code": code, "levels": self.reconstruct(code, tuple(levels[0].shape[-2:]))}  # type: ignore[arg-type]
