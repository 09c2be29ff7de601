"""BD-rate / BD-quality: published worked examples, exact shifts, and the non-monotone policy."""

from __future__ import annotations

import numpy as np
import pytest

from vcm_eval.errors import ConfigError
from vcm_eval.metrics.bdrate import (
    BdRateError,
    BdSettings,
    BdSettingsError,
    bd_compare,
    bd_quality,
    bd_rate,
    bd_values,
    monotone_curve,
)

# JCTVC-E137 (JCT-VC, Geneva, March 2011): the Excel BD-rate sheet with piece-wise cubic
# interpolation that the JVET CTC sheets (JVET-T2010) inherit. Its two example curve pairs and
# results, as recorded by Netflix VMAF's validated implementation (vmaf
# python/test/bd_rate_calculator_test.py, BDrateCalculatorJCTVCTest): -0.00465215 and -0.01877982
# as fractions, checked there to 4 decimals of the fraction (0.005 percentage points).
JCTVC_E137 = [
    (
        [108048.8736, 61279.976, 33905.6656, 18883.6928],
        [43.6471, 40.3953, 37.247, 34.2911],
        [108061.2784, 61299.9936, 33928.7472, 18910.912],
        [43.6768, 40.4232, 37.2761, 34.3147],
        -0.465215420752807,
    ),
    (
        [40433.8848, 7622.7456, 2394.488, 1017.6184],
        [37.5761, 35.3756, 33.8977, 32.0603],
        [40370.12, 7587.0024, 2390.0944, 1017.0984],
        [37.5982, 35.4025, 33.9194, 32.0822],
        -1.8779823450567612,
    ),
]

# The worked example of the bjontegaard package's documentation (README "Usage": libx265 presets
# measured with ffmpeg, rate in kbps, PSNR in dB).
README_ANCHOR = ([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851])
README_TEST = ([9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987])


def vceg_m33_bd_rate(r1: list[float], q1: list[float], r2: list[float], q2: list[float]) -> float:
    """VCEG-M33 as the paper states it: fit ln(rate) as a cubic in quality, integrate both fits
    over the shared quality interval, exponentiate the mean difference (written here from the
    paper, independently of the code under test)."""
    p1, p2 = np.polyfit(q1, np.log(r1), 3), np.polyfit(q2, np.log(r2), 3)
    lo, hi = max(min(q1), min(q2)), min(max(q1), max(q2))
    i1, i2 = np.polyint(p1), np.polyint(p2)
    diff = (np.polyval(i2, hi) - np.polyval(i2, lo) - np.polyval(i1, hi) + np.polyval(i1, lo)) / (hi - lo)
    return float((np.exp(diff) - 1) * 100)


@pytest.mark.parametrize("ra, qa, rt, qt, expected", JCTVC_E137)
def test_pchip_matches_the_jctvc_e137_sheet(ra, qa, rt, qt, expected) -> None:
    assert bd_rate(ra, qa, rt, qt) == pytest.approx(expected, abs=0.005)
    assert bd_rate(ra, qa, rt, qt, method="pchip") == bd_rate(ra, qa, rt, qt)  # pchip is the default


def test_cubic_is_vceg_m33_on_the_package_readme_example() -> None:
    expected = vceg_m33_bd_rate(*README_ANCHOR, *README_TEST)
    assert bd_rate(*README_ANCHOR, *README_TEST, method="cubic") == pytest.approx(expected, abs=1e-9)
    # the readme's curves: the test saves bits (x265 preset comparison); pchip and cubic differ
    pchip = bd_rate(*README_ANCHOR, *README_TEST)
    assert -5.0 < pchip < -4.0 and pchip != pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("method", ["pchip", "cubic", "akima"])
@pytest.mark.parametrize("factor, percent", [(0.8, -20.0), (1.25, 25.0), (0.5, -50.0)])
def test_rate_factor_gives_exactly_that_percentage(method: str, factor: float, percent: float) -> None:
    rate, quality = README_ANCHOR
    assert bd_rate(rate, quality, np.array(rate) * factor, quality, method=method) == pytest.approx(percent, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic", "akima"])
def test_quality_offset_gives_exactly_that_bd_quality(method: str) -> None:
    rate, quality = README_ANCHOR
    assert bd_quality(rate, quality, rate, np.array(quality) + 1.5, method=method) == pytest.approx(1.5, abs=1e-9)
    assert bd_rate(rate, quality, rate, quality, method=method) == pytest.approx(0.0, abs=1e-9)


def test_bd_quality_on_a_log_linear_curve_is_slope_times_log_factor() -> None:
    rate = np.array([0.02, 0.04, 0.08, 0.16, 0.32])
    quality = 10.0 + 20.0 * np.log10(rate / 0.01)  # pchip reproduces a line exactly
    result = bd_compare(rate, quality, rate / 2, quality)
    assert result.bd_rate == pytest.approx(-50.0, abs=1e-9)
    assert result.bd_quality == pytest.approx(20.0 * np.log10(2.0), abs=1e-9)
    assert result.quality_overlap == pytest.approx(3 / 5) and result.rate_overlap == 1.0
    assert result.notes == ()


def test_point_counts_may_differ() -> None:
    rate, quality = np.array(README_ANCHOR[0]), np.array(README_ANCHOR[1])
    sub = bd_rate(rate, quality, rate[:3] * 0.8, quality[:3])  # test covers 3 of 4 anchor points
    assert sub == pytest.approx(-20.0, abs=2.0) and sub < 0


def test_pareto_policy_drops_dominated_points_and_reports_them() -> None:
    rate = [0.4, 0.1, 0.3, 0.2, 0.5]
    quality = [36.0, 30.0, 34.0, 35.0, 36.0]  # 0.3 is below 0.2's accuracy; 0.5 only ties 0.4
    curve = monotone_curve(rate, quality)
    assert curve.rate.tolist() == [0.1, 0.2, 0.4] and curve.quality.tolist() == [30.0, 35.0, 36.0]
    assert curve.dropped == ((0.3, 34.0), (0.5, 36.0))
    test_rate, test_quality = [0.08, 0.15, 0.3], [30.0, 34.0, 36.0]
    full = bd_compare(rate, quality, test_rate, test_quality)
    assert full.dropped_anchor == curve.dropped and full.dropped_test == ()
    assert full.bd_rate == pytest.approx(
        bd_rate([0.1, 0.2, 0.4], [30.0, 35.0, 36.0], test_rate, test_quality), abs=1e-12
    )


def test_error_policy_names_the_offending_points() -> None:
    with pytest.raises(BdRateError, match=r"anchor: accuracy does not rise.*\(0\.3, 34\) is not above \(0\.2, 35\)"):
        bd_rate([0.1, 0.2, 0.3, 0.4], [30, 35, 34, 36], [0.1, 0.2, 0.4], [31, 36, 37], non_monotone="error")
    result = bd_compare([0.1, 0.2, 0.3, 0.4], [30, 35, 34, 36], [0.1, 0.2, 0.4], [31, 36, 37], non_monotone="error")
    assert np.isnan(result.bd_rate) and "(0.3, 34)" in result.notes[0]


def test_overlap_threshold() -> None:
    ra, qa = [0.1, 0.2, 0.4, 0.8], [20.0, 25.0, 30.0, 35.0]
    rt, qt = [0.1, 0.2, 0.4], [32.0, 36.0, 38.0]  # quality overlap [32, 35] of [20, 38] = 1/6
    with pytest.raises(BdRateError, match=r"overlap in only 16\.7% of their quality range"):
        bd_rate(ra, qa, rt, qt)
    assert bd_rate(ra, qa, rt, qt, min_overlap=0.1) < -50  # accepted when the user allows it
    with pytest.raises(BdRateError, match="do not overlap in quality"):
        bd_rate(ra, qa, rt, [40.0, 41.0, 42.0], min_overlap=0.0)
    result = bd_compare(ra, qa, rt, qt)
    assert np.isnan(result.bd_rate) and result.rate_overlap == pytest.approx(1 / 6)
    assert not np.isnan(result.bd_quality)  # log-rate ranges overlap by 2/3


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (
            ([0.1, 0.2], [1.0, 2.0], [0.1, 0.2, 0.3], [1.0, 2.0, 3.0]),
            {"method": "cubic"},
            "anchor has 2 usable point.*needs at least 4",
        ),
        (([0.1, 0.2], [1.0, 2.0], [0.1, 0.2], [1.0]), {}, "test: 2 rates but 1 quality"),
        (([0.0, 0.2], [1.0, 2.0], [0.1, 0.2], [1.0, 2.0]), {}, r"rates must be > 0"),
        (([float("nan"), 0.2], [1.0, 2.0], [0.1, 0.2], [1.0, 2.0]), {}, "NaN or inf"),
        (([0.1, 0.2], [1.0, 2.0], [0.1, 0.2], [1.0, 2.0]), {"method": "spline"}, "method='spline' is unknown"),
        (([0.1, 0.2], [1.0, 2.0], [0.1, 0.2], [1.0, 2.0]), {"non_monotone": "fit"}, "non_monotone='fit' is unknown"),
        (([0.1, 0.2], [1.0, 2.0], [0.1, 0.2], [1.0, 2.0]), {"min_overlap": 1.5}, r"min_overlap=1\.5 must lie"),
    ],
)
def test_bad_input_is_a_clear_error(args, kwargs, message) -> None:
    with pytest.raises(BdRateError, match=message):
        bd_rate(*args, **kwargs)


def test_a_single_usable_point_is_refused_with_the_dropped_points() -> None:
    with pytest.raises(
        BdRateError, match=r"anchor has 1 usable point\(s\) after dropping dominated points \(0\.2, 30\)"
    ):
        bd_rate([0.1, 0.2], [30.0, 30.0], [0.1, 0.2], [30.0, 31.0])


def test_settings_travel_as_one_object_and_are_checked_when_built() -> None:
    rate, quality = README_ANCHOR
    test_rate = np.array(rate) * 0.8
    settings = BdSettings(method="cubic", non_monotone="error", min_overlap=0.2)
    got = bd_values(rate, quality, test_rate, quality, settings)
    assert got == bd_compare(rate, quality, test_rate, quality, "cubic", non_monotone="error", min_overlap=0.2)
    assert got.bd_rate == pytest.approx(-20.0, abs=1e-9) and got.bd_rate == bd_rate(
        rate, quality, test_rate, quality, method="cubic"
    )
    with pytest.raises(BdSettingsError, match="method='spline' is unknown") as info:
        BdSettings(method="spline")
    assert isinstance(info.value, ConfigError) and isinstance(
        info.value, BdRateError
    )  # a config error; old handlers still catch it
    with pytest.raises(BdSettingsError, match=r"min_overlap=2\.0 must lie"):
        BdSettings(min_overlap=2)


def test_each_refused_value_carries_its_own_reason() -> None:
    """Same accuracy range, rates 10x apart: BD-rate is exactly +900 %, the log-rate ranges do not meet."""
    rate, quality = [0.1, 0.2, 0.4, 0.8], [10.0, 18.0, 26.0, 34.0]
    result = bd_values(rate, quality, np.array(rate) * 10, quality)
    assert result.bd_rate == pytest.approx(900.0, abs=1e-9) and result.bd_rate_note == ""
    assert np.isnan(result.bd_quality) and result.bd_quality_note.startswith("the curves do not overlap in log-rate")
    assert result.notes == (result.bd_quality_note,)
