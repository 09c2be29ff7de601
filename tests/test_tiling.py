"""FeatureSet <-> frame tiling is an exact, documented layout; 10-bit min-max is within half a step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import dequantize, quantize

from vcm_eval.codecs.feature_anchor.tiling import (
    channel_grid,
    codes_frame,
    frame_values,
    minmax_ranges,
    plan_layout,
    tile,
    untile,
)
from vcm_eval.errors import CodecError
from vcm_eval.vision.base import FeatureSet


def pyramid(
    channels: int, height: int, width: int, n_levels: int, *, dtype: torch.dtype = torch.float32, seed: int = 0
) -> FeatureSet:
    """``n_levels`` levels of ``channels`` channels, halving (rounding up) like an FPN."""
    g = torch.Generator().manual_seed(seed)
    levels, h, w = {}, height, width
    for i in range(n_levels):
        levels[f"p{i + 2}"] = (torch.randn(channels, h, w, generator=g) * (i + 1)).to(dtype)
        h, w = -(-h // 2), -(-w // 2)
    return FeatureSet(levels=levels, image_size=(4 * height - 1, 4 * width + 3), input_size=(4 * height, 4 * width))


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        (256, (16, 16)),
        (1, (1, 1)),
        (2, (1, 2)),
        (7, (3, 3)),
        (12, (3, 4)),
        (17, (4, 5)),
        (128, (11, 12)),
        (512, (23, 23)),
    ],
)
def test_channel_grid_is_near_square(channels: int, expected: tuple[int, int]) -> None:
    rows, cols = channel_grid(channels)
    assert (rows, cols) == expected
    assert rows * cols >= channels > (rows - 1) * cols  # no empty grid row
    assert cols - rows in (0, 1, 2)


@pytest.mark.parametrize(
    ("channels", "height", "width", "n_levels"),
    [(256, 16, 32, 5), (256, 64, 128, 4), (12, 7, 9, 5), (7, 5, 3, 3), (1, 4, 4, 1), (130, 3, 5, 2), (3, 1, 1, 2)],
)
def test_tile_untile_round_trip_is_exact(channels: int, height: int, width: int, n_levels: int) -> None:
    feats = pyramid(channels, height, width, n_levels)
    frame, layout = tile(feats, fill=-7.5)
    assert frame.dtype == np.float32 and frame.shape == (layout.height, layout.width)
    assert layout.height % 2 == 0 and layout.width % 2 == 0
    back = untile(frame, layout)
    assert list(back) == list(feats)
    assert back.image_size == feats.image_size and back.input_size == feats.input_size
    for name in feats:
        assert back[name].dtype == torch.float32
        assert torch.equal(back[name], feats[name])
    # every feature value appears once; everything else is fill
    assert int((frame != -7.5).sum()) == feats.num_values()


def test_round_trip_keeps_integer_codes() -> None:
    feats = pyramid(12, 6, 10, 3, dtype=torch.int16)
    frame, layout = tile(feats, fill=512)
    assert frame.dtype == np.int16
    back = untile(frame, layout)
    assert all(torch.equal(back[k], feats[k]) for k in feats)


def test_fpn_layout_matches_the_documented_picture() -> None:
    # the synthetic default's pyramid: P2 256 x 64 x 128 ... P6 256 x 4 x 8
    shapes = {"p2": (256, 64, 128), "p3": (256, 32, 64), "p4": (256, 16, 32), "p5": (256, 8, 16), "p6": (256, 4, 8)}
    layout = plan_layout(shapes, image_size=(256, 512), input_size=(256, 512))
    pos = {t.name: (t.top, t.left, t.rows, t.cols) for t in layout.levels}
    assert pos == {
        "p2": (0, 0, 16, 16),
        "p3": (1024, 0, 16, 16),
        "p4": (1024, 1024, 16, 16),
        "p5": (1024, 1536, 16, 16),
        "p6": (1024, 1792, 16, 16),
    }
    assert (layout.height, layout.width) == (1536, 2048)  # 24 H2 x 16 W2
    assert layout.content_fraction() == pytest.approx((1 + 1 / 4 + 1 / 16 + 1 / 64 + 1 / 256) / 1.5)


def test_channel_c_sits_at_its_grid_cell() -> None:
    feats = pyramid(12, 5, 7, 1)  # grid 3 x 4
    frame, layout = tile(feats)
    t = layout.levels[0]
    for c in (0, 3, 4, 11):
        r, k = divmod(c, t.cols)
        np.testing.assert_array_equal(frame[r * 5 : (r + 1) * 5, k * 7 : (k + 1) * 7], feats["p2"][c].numpy())


def test_wider_later_level_opens_a_wider_frame() -> None:
    shapes = {"p2": (4, 8, 8), "p3": (64, 2, 30)}  # p3's block (16 x 240) is wider than p2's (16 x 16)
    layout = plan_layout(shapes, image_size=(32, 32), input_size=(32, 32))
    assert layout.width == 240
    assert [(t.top, t.left) for t in layout.levels] == [(0, 0), (16, 0)]


def test_empty_and_bad_shapes_raise() -> None:
    with pytest.raises(CodecError, match="empty FeatureSet"):
        plan_layout({}, image_size=(1, 1), input_size=(1, 1))
    with pytest.raises(CodecError, match="p3 has shape"):
        plan_layout({"p3": (4, 0, 3)}, image_size=(1, 1), input_size=(1, 1))
    feats = pyramid(4, 4, 4, 2)
    frame, layout = tile(feats)
    with pytest.raises(CodecError, match="layout needs"):
        untile(frame[:-2], layout)


@pytest.mark.parametrize("mode", ["tensor", "level"])
def test_10bit_error_is_at_most_half_a_step(mode: str) -> None:
    feats = pyramid(16, 12, 20, 4)
    feats.levels["p3"][0, 0, 0] = 40.0  # an outlier widens the range
    ranges = minmax_ranges(feats, mode)
    codes = quantize(feats, ranges, bits=10)
    back = dequantize(codes, ranges, bits=10)
    for name in feats:
        lo, hi = ranges[name]
        q = codes[name]
        assert q.dtype == torch.int16 and int(q.min()) >= 0 and int(q.max()) <= 1023
        err = float((back[name] - feats[name]).abs().max())
        bound = (hi - lo) / 2046
        ulps = 4 * float(np.finfo(np.float32).eps) * max(abs(lo), abs(hi))  # float32 rounding of the values
        assert err <= bound + ulps  # never more than half a 10-bit step
        assert err > 0.5 * bound  # and the bound is tight: it is the 10-bit step, not a loose one
    if mode == "tensor":
        assert len(set(ranges.values())) == 1
        lo, hi = ranges["p2"]
        assert lo == min(float(t.min()) for t in feats.values()) and hi == max(float(t.max()) for t in feats.values())
    else:
        assert ranges["p3"] == (float(feats["p3"].min()), 40.0)


def test_constant_tensor_is_restored_exactly() -> None:
    feats = FeatureSet(
        levels={"p2": torch.full((4, 3, 5), 2.75), "p3": torch.linspace(-1, 1, 24).reshape(2, 3, 4)},
        image_size=(12, 20),
        input_size=(12, 20),
    )
    ranges = minmax_ranges(feats, "level")
    assert ranges["p2"] == (2.75, 2.75)
    codes = quantize(feats, ranges)
    assert int(codes["p2"].abs().max()) == 0
    back = dequantize(codes, ranges)
    assert torch.equal(back["p2"], feats["p2"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_features_raise_naming_the_level(bad: float) -> None:
    feats = pyramid(4, 4, 4, 3)
    feats.levels["p4"][1, 0, 0] = bad
    with pytest.raises(CodecError, match=r"level p4 has 1 NaN/inf"):
        minmax_ranges(feats, "tensor")


def test_unknown_mode_and_bits_raise() -> None:
    feats = pyramid(4, 4, 4, 1)
    with pytest.raises(CodecError, match="minmax='channel' is unknown"):
        minmax_ranges(feats, "channel")
    with pytest.raises(CodecError, match="bits=16"):
        codes_frame(feats, minmax_ranges(feats, "tensor"), bits=16)


@pytest.mark.parametrize(
    ("channels", "height", "width", "mode"), [(256, 20, 36, "tensor"), (7, 9, 13, "level"), (12, 5, 7, "level")]
)
def test_fused_passes_equal_the_reference_compositions_bit_for_bit(
    channels: int, height: int, width: int, mode: str
) -> None:
    feats = pyramid(channels, height, width, 4, seed=channels)
    feats.levels["p4"][0] = 1.5  # a constant channel
    ranges = minmax_ranges(feats, mode)
    frame, layout = codes_frame(feats, ranges, bits=10, fill=512)
    ref_frame, ref_layout = tile(quantize(feats, ranges, bits=10), fill=512)
    assert layout == ref_layout and frame.dtype == np.uint16
    np.testing.assert_array_equal(frame, ref_frame.astype(np.uint16))
    back, ref = frame_values(frame, layout, ranges, bits=10), dequantize(untile(ref_frame, layout), ranges, bits=10)
    assert back.image_size == ref.image_size and list(back) == list(ref)
    for name in ref:
        assert back[name].dtype == torch.float32 and torch.equal(back[name], ref[name]), name
