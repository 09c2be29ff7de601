"""ResNet bodies for the FPN: torchvision's ResNets, or a slim ResNet for the embedded default.

The slim ResNet is torchvision's BasicBlock stacked with smaller widths: a ResNet-18 keeps 8.4 M
of its 11 M parameters in the last stage, which a 3-class synthetic task does not need, and CPU
training time scales with width. Strides are those of a ResNet (C2..C5 at 4, 8, 16, 32), so the
FPN levels P2..P6 have the same geometry as the R50-FPN of MPEG VCM.

The torchvision ResNets can also take the layout of detectron2's MSRA ResNet (``stride_in_1x1``:
the stride-2 of each stage sits in the first 1x1 convolution, not the 3x3 one) and frozen batch
norm (``norm="frozen_bn"``, a fixed affine map), so detectron2 model-zoo weights compute the same
function (``vcm_eval.vision.d2_weights``).

Bottleneck ResNets also take ResNeXt's grouped 3x3 convolution (``groups`` x ``width_per_group``;
Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017): detectron2's
X101-FPN (MPEG VCM's test-condition network) is ``resnet101`` with 32 x 8 and the stride in the 3x3,
which is torchvision's own layout, so only the group count and width change.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from vcm_eval.errors import ConfigError

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
BOTTLENECK_RESNETS = ("resnet50", "resnet101")
NORMS = ("bn", "frozen_bn")


def move_stride_to_1x1(body: nn.Module) -> None:
    """MSRA ResNet layout: put each stage's stride in its first 1x1 conv instead of the 3x3 one.

    torchvision's Bottleneck (ResNet v1.5) strides in ``conv2`` (3x3); detectron2's
    ``BottleneckBlock`` with ``STRIDE_IN_1X1=True`` (the MSRA/Caffe2 weights) strides in ``conv1``.
    The parameters are the same; only where the spatial sub-sampling happens differs.
    """
    for name in ("layer2", "layer3", "layer4"):
        block = getattr(body, name)[0]
        if not isinstance(block, resnet.Bottleneck):
            raise ConfigError("model.backbone.stride_in_1x1=true needs a bottleneck ResNet (resnet50 or resnet101)")
        stride = block.conv2.stride
        block.conv1.stride, block.conv2.stride = stride, (1, 1)


class SlimResNet(nn.Module):
    """A ResNet with configurable widths built from torchvision's BasicBlock.

    Args:
        widths: output channels of layer1..layer4 (C2..C5).
        blocks: BasicBlocks per layer.
        stem_width: channels of the 7x7 stride-2 stem convolution.
    """

    def __init__(self, *, widths: Sequence[int], blocks: Sequence[int], stem_width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = stem_width
        for idx, (width, n_blocks) in enumerate(zip(widths, blocks)):
            stride = 1 if idx == 0 else 2
            layers: list[nn.Module] = []
            for b in range(n_blocks):
                down = None
                if b == 0 and (stride != 1 or in_ch != width):
                    down = nn.Sequential(nn.Conv2d(in_ch, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width))
                layers.append(resnet.BasicBlock(in_ch, width, stride if b == 0 else 1, down))
                in_ch = width
            setattr(self, f"layer{idx + 1}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - IntermediateLayerGetter walks children
        raise NotImplementedError("SlimResNet is used through IntermediateLayerGetter")


def build_fpn_backbone(
    *,
    arch: str,
    fpn_channels: int,
    widths: Sequence[int],
    blocks: Sequence[int],
    stem_width: int,
    stride_in_1x1: bool = False,
    norm: str = "bn",
    groups: int = 1,
    width_per_group: int = 64,
) -> BackboneWithFPN:
    """ResNet body + FPN giving P2..P5 and P6 = max-pool(P5, kernel 1, stride 2).

    Args:
        arch: ``slim`` or one of ``TORCHVISION_RESNETS``.
        fpn_channels: channels of every FPN level (256 in MPEG VCM).
        widths, blocks, stem_width: the slim ResNet's shape (ignored for torchvision ResNets).
        stride_in_1x1: MSRA layout (see ``move_stride_to_1x1``); torchvision bottleneck ResNets only.
        norm: ``bn`` (BatchNorm2d) or ``frozen_bn`` (detectron2's and torchvision's detection
            backbones: a fixed affine map, no ``num_batches_tracked``); torchvision ResNets only.
        groups, width_per_group: ResNeXt's grouped 3x3 convolution (bottleneck ResNets only; 1 x 64
            is a plain ResNet). The block outputs, and so the FPN inputs, do not depend on them.
    """
    if norm not in NORMS:
        raise ConfigError(f"model.backbone.norm={norm!r} is unknown; use one of {NORMS}")
    if arch == "slim":
        if stride_in_1x1 or norm != "bn" or (groups, width_per_group) != (1, 64):
            needs = "model.backbone.stride_in_1x1, norm=frozen_bn and groups/width_per_group need a torchvision ResNet"
            raise ConfigError(f"{needs} arch, not 'slim'")
        body: nn.Module = SlimResNet(widths=widths, blocks=blocks, stem_width=stem_width)
        in_channels = list(widths)
    elif arch in TORCHVISION_RESNETS:
        grouped = (groups, width_per_group) != (1, 64)
        if groups < 1 or width_per_group < 1 or (grouped and arch not in BOTTLENECK_RESNETS):
            raise ConfigError(
                f"model.backbone.groups={groups} / width_per_group={width_per_group} must be >= 1, and other "
                f"than 1 / 64 only for a bottleneck ResNet {BOTTLENECK_RESNETS} (arch is {arch!r})"
            )
        norm_layer = FrozenBatchNorm2d if norm == "frozen_bn" else None
        kwargs = {"groups": groups, "width_per_group": width_per_group} if grouped else {}
        body = getattr(resnet, arch)(weights=None, norm_layer=norm_layer, **kwargs)
        if stride_in_1x1:
            move_stride_to_1x1(body)
        expansion = 4 if arch in BOTTLENECK_RESNETS else 1
        in_channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
    else:
        raise ConfigError(f"model.backbone.arch={arch!r} is unknown; use 'slim' or one of {TORCHVISION_RESNETS}")
    return BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=in_channels,
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )
