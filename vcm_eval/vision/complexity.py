"""Complexity of each stage of a split pipeline in kMAC per pixel, as MPEG's FCM test conditions ask.

The FCM common test conditions report, next to rate and accuracy, how much computation each stage
of a pipeline costs, in thousands of multiply-accumulates (MACs) per pixel of the input image::

    image --nn_part_1--> features --encoder--> bytes --decoder--> features' --nn_part_2--> instances
          backbone + FPN            (the codec's networks only)                RPN + ROI heads
          TaskModel.features                                                   TaskModel.predict_from_features

Counting is torch's own ``torch.utils.flop_counter.FlopCounterMode`` (fvcore and ptflops are not
dependencies of vcm_eval; torch's counter is kept with torch and sees every aten call, so it needs
no per-module table). It counts 2 FLOPs per multiply-accumulate for the ops it knows: convolution
(grouped and transposed too), linear/addmm, mm, bmm, baddbmm and scaled-dot-product attention, so
MACs = FLOPs / 2 exactly. It counts nothing else, so these numbers leave out: activations, batch
norm / FrozenBN and every other element-wise op, pooling (the FPN's P6 max-pool included),
interpolation (the input resize, the FPN's top-down upsampling), pixel shuffle, softmax, ROIAlign
(a torchvision custom op), NMS, anchor generation, box decoding, mask pasting and entropy coding.
Convolution biases are not counted either.

Differences from CompressAI-Vision (the MPEG FCM software: ``compressai_vision/utils/measure_complexity.py``
and ``compressai_vision/pipelines/base.py``): it counts with ptflops (``ptflops>=0.7.3``), whose
legacy module-hook backend also counts element-wise layers (BN, activations, pooling, upsampling)
while its aten backend counts convolutions and matrix products only, as here; which one runs
depends on the installed ptflops version's default. It divides by the C x H x W values of the
resized, padded network input tensor. Here the denominator is H x W of the original image, the same
pixels the rate (bpp) is counted over; ``StageComplexity.input_size`` keeps the network input size
for a conversion (with 3 channels, no resize and no padding, CompressAI-Vision's number is a third of this one).

``nn_part_2`` depends on the image: the box head runs on every RPN proposal (up to
``rpn_post_nms_top_n_test``) and the mask head on every detection (up to ``detections_per_img``).
Report a dataset's value with ``pooled_kmac_per_pixel`` (total MACs / total pixels, as
CompressAI-Vision accumulates them), not one image's.

Codec hook (duck-typed, proposed for codecs with networks, e.g. the fusion codec): a method
``complexity_stages(features: FeatureSet) -> Mapping[str, Callable[[], object]]`` returning, for
``"encoder"`` and/or ``"decoder"``, a zero-argument callable that runs only that side's networks on
``features`` (for the fusion codec: ``g_a`` + the hyper analysis ``h_a``; the hyper synthesis
``h_s`` + ``g_s``), without range coding and without entering ``torch.inference_mode`` (see
``count_macs``). A codec without the method (VVC, the quantizers) is not a network: its stages
are reported as None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from vcm_eval.errors import ConfigError
from vcm_eval.vision.base import FeatureSet, TaskModel

STAGES = ("nn_part_1", "encoder", "decoder", "nn_part_2")
CODEC_STAGES = ("encoder", "decoder")
# CompressAI-Vision's column names in summary_complexity.csv, for whoever writes that file
MPEG_STAGE_NAMES = {
    "nn_part_1": "nn_part1",
    "encoder": "feature reduction",
    "decoder": "feature restoration",
    "nn_part_2": "nn_part2",
}

T = TypeVar("T")


@runtime_checkable
class ComplexityProbe(Protocol):
    """A codec whose encoder and/or decoder are networks (see the module docstring)."""

    def complexity_stages(self, features: FeatureSet) -> Mapping[str, Callable[[], object]]:
        """``"encoder"`` / ``"decoder"`` -> a zero-argument call of that side's networks on ``features``."""
        ...


def _count(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[int, T]:
    """MACs of one call of ``fn`` and what it returned.

    ``no_grad``, not ``inference_mode``: the counter's module tracker hooks every module input that
    requires grad, which fails in inference mode when a module is called on a parameter (CompressAI's
    GDN calls its ``LowerBound`` on ``beta``), and torch's counter is documented with ``no_grad``.
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return counter.get_total_flops() // 2, out


def count_macs(fn: Callable[..., object], *args: Any, **kwargs: Any) -> int:
    """Multiply-accumulates of one call ``fn(*args, **kwargs)``, counted by torch's FlopCounterMode.

    Runs ``fn`` once under ``torch.no_grad()``. Only convolutions, linear layers, matrix products
    and attention are counted (see the module docstring for what is left out). ``fn`` may enter
    ``torch.inference_mode`` itself (the task models do) unless it calls a module on a parameter
    tensor, which torch's module tracker cannot follow in inference mode (an AttributeError from
    ``torch.autograd.graph``): run such networks, e.g. a codec's GDN layers, without it.

    Args:
        fn: any callable running torch ops (a module, a bound method, a lambda).
        *args: positional arguments of ``fn``.
        **kwargs: keyword arguments of ``fn``.

    Returns:
        The number of MACs (>= 0); a call with no counted op gives 0.
    """
    return _count(fn, *args, **kwargs)[0]


@dataclass(frozen=True)
class StageComplexity:
    """MACs of each stage for one image.

    Attributes:
        macs: stage name (``STAGES``) -> MACs for this image, None where the stage is not a network
            (an image or feature codec without networks, or no codec at all).
        image_size: (height, width) of the original image: the per-pixel denominator.
        input_size: (height, width) of the network input after resizing (before padding).
    """

    macs: Mapping[str, int | None]
    image_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def pixels(self) -> int:
        """Pixels of the original image (H x W, channels not counted)."""
        return self.image_size[0] * self.image_size[1]

    def kmac_per_pixel(self) -> dict[str, float | None]:
        """Stage -> thousands of MACs per original-image pixel (None where the stage is not a network)."""
        return {k: None if v is None else v / 1000.0 / self.pixels for k, v in self.macs.items()}


def _codec_stages(codec: object | None, features: FeatureSet) -> dict[str, Callable[[], object]]:
    """The codec's network calls by stage; empty for a codec without networks."""
    if codec is None or not isinstance(codec, ComplexityProbe):
        return {}
    stages = dict(codec.complexity_stages(features))
    unknown = sorted(set(stages) - set(CODEC_STAGES))
    if unknown:
        raise ConfigError(
            f"{type(codec).__name__}.complexity_stages returned stages {unknown}; "
            f"valid stage names are {list(CODEC_STAGES)} (leave a stage out when it is not a network)"
        )
    not_callable = sorted(k for k, fn in stages.items() if not callable(fn))
    if not_callable:
        raise ConfigError(
            f"{type(codec).__name__}.complexity_stages gave non-callables for {not_callable}; "
            "return a zero-argument function that runs that stage's networks"
        )
    return stages


def measure_complexity(
    model: TaskModel, image: np.ndarray, *, codec: object | None = None, decoded: FeatureSet | None = None
) -> StageComplexity:
    """Count the MACs of every stage of a split pipeline on one image.

    Args:
        model: the task network; ``features`` is nn_part_1, ``predict_from_features`` nn_part_2.
        image: uint8 RGB [H, W, 3], the original image (its H x W is the per-pixel denominator).
        codec: a feature codec; its networks are counted when it has ``complexity_stages`` (the
            hook of the module docstring), otherwise encoder and decoder are None. An image codec
            (VVC) has no networks: pass None.
        decoded: the features nn_part_2 runs on (a codec's output: the proposal count, hence the
            count of nn_part_2, can change with coding); by default the uncompressed features.

    Returns:
        The MACs of the four stages of ``STAGES`` for this image.

    Raises:
        ConfigError: the codec's hook returns an unknown stage name or something not callable.
    """
    part1, features = _count(model.features, image)
    macs: dict[str, int | None] = {"nn_part_1": part1, "encoder": None, "decoder": None}
    for stage, run in _codec_stages(codec, features).items():
        macs[stage] = count_macs(run)
    macs["nn_part_2"] = count_macs(model.predict_from_features, features if decoded is None else decoded)
    h, w = image.shape[:2]
    return StageComplexity(macs=macs, image_size=(int(h), int(w)), input_size=features.input_size)


def pooled_kmac_per_pixel(items: Iterable[StageComplexity]) -> dict[str, float | None]:
    """A dataset's kMAC/pixel per stage: the MACs of all images over all their pixels.

    Large images weigh more than small ones, as in CompressAI-Vision (which sums MACs and pixels
    over the images of a run before dividing).

    Raises:
        ConfigError: no images, or a stage is a network on some images and None on others (the
            items come from different pipelines).
    """
    images = list(items)
    if not images:
        raise ConfigError("no per-image complexities to pool; measure at least one image with measure_complexity")
    pixels = sum(it.pixels for it in images)
    out: dict[str, float | None] = {}
    for stage in images[0].macs:
        values = [it.macs.get(stage) for it in images]
        if all(v is None for v in values):
            out[stage] = None
        elif any(v is None for v in values):
            raise ConfigError(
                f"stage {stage!r} was counted on some images and is None on others; "
                "pool the images of one pipeline only"
            )
        else:
            out[stage] = sum(int(v) for v in values if v is not None) / 1000.0 / pixels
    return out
