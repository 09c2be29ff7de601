"""kMAC/pixel per stage: exact counts on layers counted by hand, the default task model, the codec hook."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pytest
import torch
from torch import nn

from vcm_eval.data.config import SyntheticSpec
from vcm_eval.data.synthetic import scene_for
from vcm_eval.errors import ConfigError
from vcm_eval.vision.base import FeatureSet
from vcm_eval.vision.complexity import STAGES, StageComplexity, count_macs, measure_complexity, pooled_kmac_per_pixel
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, TorchvisionRcnn


@pytest.fixture(scope="module")
def model() -> TorchvisionRcnn:
    return TorchvisionRcnn(RcnnConfig())  # the shipped synthetic Mask R-CNN (vcm_eval/vision/zoo)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    img = scene_for(SyntheticSpec(), "val", 1).image
    assert img.shape == (256, 512, 3)
    return img


def test_conv_macs_are_counted_by_hand() -> None:
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    assert count_macs(conv, torch.zeros(1, 3, 16, 20)) == 8 * 16 * 20 * 3 * 3 * 3  # Cout*H*W*Cin*k*k, bias free
    grouped = nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1, groups=2)
    assert count_macs(grouped, torch.zeros(1, 8, 16, 20)) == 16 * 8 * 10 * (8 // 2) * 3 * 3


def test_linear_macs_are_counted_by_hand() -> None:
    assert count_macs(nn.Linear(64, 10), torch.zeros(5, 64)) == 5 * 64 * 10
    assert count_macs(nn.Linear(64, 10, bias=False), torch.zeros(2, 7, 64)) == 2 * 7 * 64 * 10


def test_elementwise_ops_count_nothing() -> None:
    x = torch.randn(1, 4, 8, 8)
    assert count_macs(lambda t: nn.functional.max_pool2d(torch.relu(t), 2) + 1, x) == 0


def test_default_task_model_stages(model: TorchvisionRcnn, image: np.ndarray) -> None:
    a = measure_complexity(model, image)
    b = measure_complexity(model, image)
    assert list(a.macs) == list(STAGES)
    assert a == b  # same image, same counts
    assert a.image_size == (256, 512) and a.input_size == (256, 512) and a.pixels == 256 * 512
    part1, part2 = a.macs["nn_part_1"], a.macs["nn_part_2"]
    assert part1 is not None and part1 > 0 and part2 is not None and part2 > 0
    assert a.macs["encoder"] is None and a.macs["decoder"] is None  # no codec: nothing to count
    kmac = a.kmac_per_pixel()
    assert kmac["nn_part_1"] == part1 / 1000 / (256 * 512)
    assert kmac["encoder"] is None


def test_backbone_macs_scale_with_image_area(model: TorchvisionRcnn, image: np.ndarray) -> None:
    big_model = TorchvisionRcnn(RcnnConfig(min_size=512, max_size=1024))  # same weights, no resize at 1024x512
    big = np.ascontiguousarray(image.repeat(2, axis=0).repeat(2, axis=1))
    small_macs = count_macs(model.features, image)
    big_macs = count_macs(big_model.features, big)
    assert big_macs == 4 * small_macs


class _FakeNetworkCodec:
    """A feature codec whose encoder is one linear layer and whose decoder is no network."""

    def __init__(self, stages: Mapping[str, object] | None = None) -> None:
        self.layer = nn.Linear(256, 8, bias=False)
        self._stages = stages

    def complexity_stages(self, features: FeatureSet) -> Mapping[str, Callable[[], object]]:
        if self._stages is not None:
            return self._stages  # type: ignore[return-value]
        p5 = features["p5"]  # [256, H, W]
        return {"encoder": lambda: self.layer(p5.flatten(1).T)}


def test_codec_hook_counts_its_networks(model: TorchvisionRcnn, image: np.ndarray) -> None:
    got = measure_complexity(model, image, codec=_FakeNetworkCodec())
    assert got.macs["encoder"] == (8 * 16) * 256 * 8  # P5 of 256x512 is 8x16
    assert got.macs["decoder"] is None
    assert measure_complexity(model, image, codec=object()).macs["encoder"] is None  # VVC, quantizers: no hook


def test_codec_hook_with_a_wrong_stage_is_refused(model: TorchvisionRcnn, image: np.ndarray) -> None:
    with pytest.raises(ConfigError, match=r"stages \['entropy'\].*valid stage names are \['encoder', 'decoder'\]"):
        measure_complexity(model, image, codec=_FakeNetworkCodec({"entropy": lambda: None}))
    with pytest.raises(ConfigError, match=r"non-callables for \['decoder'\]"):
        measure_complexity(model, image, codec=_FakeNetworkCodec({"decoder": 3}))


def test_fusion_codec_hook_as_proposed(model: TorchvisionRcnn, image: np.ndarray) -> None:
    """The hook proposed for FusionFeatureCodec: g_a + h_a encode, h_s + g_s decode."""
    from vcm_eval.codecs.fusion.codec import FusionFeatureCodec, padded_levels
    from vcm_eval.codecs.fusion.model import FusionCodecModel

    class ProbedFusion(FusionFeatureCodec):
        def complexity_stages(self, features: FeatureSet) -> Mapping[str, Callable[[], object]]:
            levels, _ = padded_levels(features, self.model.pad_multiple_p2)
            levels = [lv.to(self.device) for lv in levels]
            hyper = self.model.latent_codec.latent_codec["hyper"]
            with torch.no_grad():  # not inference_mode: see count_macs
                y_hat = torch.round(self.model.g_a(levels))  # the decoder's input has the latent's shape
                z_hat = torch.round(hyper.h_a(y_hat))
            return {
                "encoder": lambda: hyper.h_a(self.model.g_a(levels)),
                "decoder": lambda: (hyper.h_s(z_hat), self.model.g_s(y_hat)),
            }

    torch.manual_seed(0)
    codec = ProbedFusion(model=FusionCodecModel())
    got = measure_complexity(model, image, codec=codec)
    enc, dec = got.macs["encoder"], got.macs["decoder"]
    assert enc is not None and enc > 0 and dec is not None and dec > 0


def test_pooled_kmac_per_pixel_weighs_by_pixels() -> None:
    a = StageComplexity(macs={"nn_part_1": 3_000_000, "encoder": None}, image_size=(10, 100), input_size=(10, 100))
    b = StageComplexity(macs={"nn_part_1": 1_000_000, "encoder": None}, image_size=(10, 300), input_size=(10, 300))
    assert pooled_kmac_per_pixel([a, b]) == {"nn_part_1": 4_000_000 / 1000 / 4000, "encoder": None}
    c = StageComplexity(macs={"nn_part_1": 1, "encoder": 5}, image_size=(1, 1), input_size=(1, 1))
    with pytest.raises(ConfigError, match="'encoder' was counted on some images and is None on others"):
        pooled_kmac_per_pixel([a, c])
    with pytest.raises(ConfigError, match="no per-image complexities"):
        pooled_kmac_per_pixel([])
