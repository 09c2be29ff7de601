"""Bjontegaard delta rate and delta accuracy between two rate-accuracy curves.

BD-rate (G. Bjontegaard, "Calculation of average PSNR differences between RD-curves", VCEG-M33,
2001) is the mean horizontal distance of two curves in log-rate, taken over the accuracy interval
they share, as a percentage: ``-20.0`` means the test needs 20 % fewer bits for the same mAP.
BD-quality is the mean vertical distance over the log-rate interval they share, in the quality's
own unit (mAP points here). The interpolation and integration come from the ``bjontegaard``
package (FAU-LMS): ``pchip`` is the piecewise cubic Hermite interpolation of the JCT-VC / JVET
common-test-condition Excel sheets (JCTVC-E137, JVET-T2010) and the default; ``cubic`` is the
single cubic polynomial of VCEG-M33; ``akima`` is offered for comparison.

What this module adds is the policy for curves a detector produces (docs/reporting.md):

* **Non-monotone accuracy.** A BD integral needs rate as a function of accuracy, i.e. accuracy
  strictly rising with rate. Measured mAP is often not (noise, saturation). ``non_monotone=
  "pareto"`` (default) keeps the Pareto front: sorted by rate, a point is kept only when its
  accuracy is strictly above every point of lower rate; the dropped (dominated) points are never
  the operating point anyone would choose, and they are returned so reports can list them.
  ``non_monotone="error"`` raises ``BdRateError`` naming the offending points instead.
* **Overlap.** The overlap of the two curves' ranges (accuracy for BD-rate, log-rate for
  BD-quality) is measured as intersection over union, as the ``bjontegaard`` package does. Below
  ``min_overlap`` (default 0.5) the value would describe only a sliver of the curves, so it is an
  error; no overlap at all is always an error.
* **Points.** At least 2 points per curve after the policy (4 for ``cubic``, whose cubic fit is
  under-determined with fewer); rates must be finite and > 0, accuracies finite.

The three settings travel as one ``BdSettings`` (validated when built) into ``bd_values``, the
one comparison a report makes; ``bd_rate``, ``bd_quality`` and ``bd_compare`` keep their
keyword arguments for scripts and build the same object.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import bjontegaard
import numpy as np

from vcm_eval.errors import ConfigError, VcmEvalError

METHODS = ("pchip", "cubic", "akima")
POLICIES = ("pareto", "error")
MIN_POINTS = {"pchip": 2, "akima": 2, "cubic": 4}
DEFAULT_MIN_OVERLAP = 0.5


class BdRateError(VcmEvalError):
    """Two curves cannot be compared: too few points, no or too little overlap, non-monotone."""


class BdSettingsError(BdRateError, ConfigError):
    """A BD setting is unknown or out of range: the configuration is wrong, not the data.

    Also a ``BdRateError``, so code that caught bad settings as ``BdRateError`` still does.
    """


@dataclass(frozen=True)
class BdSettings:
    """How two curves are compared; one object from the report command down to the integral.

    Validated once, when built, so a report with a bad setting stops before its first table
    instead of filling every cell with the same refusal.

    Attributes:
        method: ``pchip`` (JVET CTC sheets, default), ``cubic`` (VCEG-M33) or ``akima``.
        non_monotone: ``pareto`` drops dominated points, ``error`` refuses the curve.
        min_overlap: smallest accepted intersection over union of the two curves' ranges, 0..1.

    Raises:
        BdSettingsError: a value is unknown or out of range (the message lists the valid ones).
    """

    method: str = "pchip"
    non_monotone: str = "pareto"
    min_overlap: float = DEFAULT_MIN_OVERLAP

    def __post_init__(self) -> None:
        # plain values: a config's choice (a str Enum) or an int overlap must not reach bjontegaard or a CSV as such
        object.__setattr__(self, "method", str(getattr(self.method, "value", self.method)))
        object.__setattr__(self, "non_monotone", str(getattr(self.non_monotone, "value", self.non_monotone)))
        object.__setattr__(self, "min_overlap", float(self.min_overlap))
        if self.method not in METHODS:
            raise BdSettingsError(
                f"method={self.method!r} is unknown; use pchip (JVET CTC sheets), cubic (VCEG-M33) or akima"
            )
        if self.non_monotone not in POLICIES:
            raise BdSettingsError(f"non_monotone={self.non_monotone!r} is unknown; use one of {list(POLICIES)}")
        if not 0.0 <= self.min_overlap <= 1.0:
            raise BdSettingsError(
                f"min_overlap={self.min_overlap} must lie in [0, 1] (fraction of the union of the two ranges)"
            )


DEFAULT_SETTINGS = BdSettings()  # pchip, Pareto front, min_overlap 0.5


@dataclass(frozen=True)
class Curve:
    """Rate-accuracy points sorted by rate, after the non-monotone policy.

    Attributes:
        rate: rates, ascending (bpp or any positive unit, the same for both curves).
        quality: accuracies, strictly ascending (mAP %, or any unit).
        dropped: the (rate, quality) points the Pareto policy removed, in input order.
    """

    rate: np.ndarray
    quality: np.ndarray
    dropped: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class BdResult:
    """BD-rate and BD-quality of one test curve against one anchor, with what they rest on.

    Attributes:
        bd_rate: percent rate change at equal quality (negative = fewer bits), NaN when refused.
        bd_quality: quality change at equal rate (mAP points), NaN when refused.
        rate_overlap: the overlap BD-rate rests on: intersection over union of the *quality*
            ranges, 0..1 (named for the value it serves; reports write it as ``map_overlap``).
        quality_overlap: the overlap BD-quality rests on: intersection over union of the
            *log-rate* ranges, 0..1 (reports write it as ``rate_overlap``).
        dropped_anchor, dropped_test: points removed by the Pareto policy (both values rest on
            the reduced curves).
        notes: why a value is NaN, each reason once (empty when both are numbers).
        bd_rate_note, bd_quality_note: why that value is NaN ("" when it is a number), so a
            table can attach each reason to its own cell.
    """

    bd_rate: float
    bd_quality: float
    rate_overlap: float
    quality_overlap: float
    dropped_anchor: tuple[tuple[float, float], ...] = ()
    dropped_test: tuple[tuple[float, float], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    bd_rate_note: str = ""
    bd_quality_note: str = ""


def _fmt(point: tuple[float, float]) -> str:
    return f"({point[0]:.6g}, {point[1]:.6g})"


def monotone_curve(
    rate: Sequence[float] | np.ndarray,
    quality: Sequence[float] | np.ndarray,
    *,
    policy: str = "pareto",
    name: str = "curve",
) -> Curve:
    """Validate one curve and make accuracy strictly increasing with rate.

    Args:
        rate: N rates (> 0, finite), any order.
        quality: N accuracies (finite), matching ``rate``.
        policy: ``pareto`` drops dominated points; ``error`` raises on them.
        name: how error messages call this curve (``anchor``, ``test``, a pipeline label).

    Returns:
        The curve sorted by rate with strictly increasing quality.

    Raises:
        BdRateError: lengths differ, a value is not finite, a rate is <= 0, or (``error``) the
            accuracy does not rise strictly with rate.
    """
    if policy not in POLICIES:
        raise BdRateError(f"non_monotone={policy!r} is unknown; use one of {list(POLICIES)}")
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.size != q.size:
        raise BdRateError(f"{name}: {r.size} rates but {q.size} quality values; give one quality per rate")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise BdRateError(
            f"{name}: rates {r.tolist()} / qualities {q.tolist()} contain NaN or inf; "
            "drop runs without a rate (e.g. uncompressed)"
        )
    if np.any(r <= 0):
        raise BdRateError(f"{name}: rates must be > 0 for a log-rate integral, got {r.tolist()}")
    order = np.lexsort((-q, r))  # by rate, the best quality first among equal rates
    kept: list[int] = []
    offending: list[str] = []
    for i in order:
        if kept and q[i] <= q[kept[-1]]:
            offending.append(f"{_fmt((r[i], q[i]))} is not above {_fmt((r[kept[-1]], q[kept[-1]]))}")
            continue
        kept.append(int(i))
    if offending and policy == "error":
        raise BdRateError(
            f"{name}: accuracy does not rise strictly with rate: {'; '.join(offending)} (rate, quality); "
            "use non_monotone=pareto to drop dominated points, or add rate points"
        )
    dropped_idx = sorted(set(range(r.size)) - set(kept))
    return Curve(r[kept], q[kept], tuple((float(r[i]), float(q[i])) for i in dropped_idx))


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of the ranges [min a, max a] and [min b, max b] (0..1)."""
    union = max(a.max(), b.max()) - min(a.min(), b.min())
    inter = min(a.max(), b.max()) - max(a.min(), b.min())
    if union <= 0:
        return 1.0 if inter >= 0 else 0.0
    return float(max(inter, 0.0) / union)


def _require_overlap(value: float, what: str, min_overlap: float, a: np.ndarray, b: np.ndarray) -> None:
    ranges = f"anchor [{a.min():.6g}, {a.max():.6g}], test [{b.min():.6g}, {b.max():.6g}]"
    if value <= 0.0:
        raise BdRateError(f"the curves do not overlap in {what} ({ranges}); add rate points so they share a range")
    if value < min_overlap:
        raise BdRateError(
            f"the curves overlap in only {100 * value:.1f}% of their {what} range ({ranges}), "
            f"below min_overlap={min_overlap}; add rate points or lower min_overlap"
        )


def _delta(base_a: np.ndarray, val_a: np.ndarray, base_t: np.ndarray, val_t: np.ndarray, method: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap is checked above, with our own threshold
        return float(
            bjontegaard.bd_linear(base_a, val_a, base_t, val_t, method, require_matching_points=False, min_overlap=0.0)
        )


def _curves(
    anchor_rate: Sequence[float] | np.ndarray,
    anchor_quality: Sequence[float] | np.ndarray,
    test_rate: Sequence[float] | np.ndarray,
    test_quality: Sequence[float] | np.ndarray,
    settings: BdSettings,
) -> tuple[Curve, Curve]:
    """Both curves after the non-monotone policy: the one opening every BD value shares."""
    a = monotone_curve(anchor_rate, anchor_quality, policy=settings.non_monotone, name="anchor")
    t = monotone_curve(test_rate, test_quality, policy=settings.non_monotone, name="test")
    return a, t


def _require_points(anchor: Curve, test: Curve, method: str) -> None:
    need = MIN_POINTS[method]
    for name, c in (("anchor", anchor), ("test", test)):
        if c.rate.size < need:
            extra = f" after dropping dominated points {', '.join(_fmt(p) for p in c.dropped)}" if c.dropped else ""
            raise BdRateError(f"{name} has {c.rate.size} usable point(s){extra}; method={method} needs at least {need}")


def _bd_rate_of(a: Curve, t: Curve, settings: BdSettings) -> float:
    """BD-rate (%) of two policy-checked curves; integrates over their shared quality range."""
    _require_points(a, t, settings.method)
    _require_overlap(overlap(a.quality, t.quality), "quality", settings.min_overlap, a.quality, t.quality)
    log_delta = _delta(a.quality, np.log10(a.rate), t.quality, np.log10(t.rate), settings.method)
    return float((10.0**log_delta - 1.0) * 100.0)


def _bd_quality_of(a: Curve, t: Curve, settings: BdSettings) -> float:
    """BD-quality of two policy-checked curves; integrates over their shared log-rate range."""
    _require_points(a, t, settings.method)
    la, lt = np.log10(a.rate), np.log10(t.rate)
    _require_overlap(overlap(la, lt), "log-rate", settings.min_overlap, a.rate, t.rate)
    return _delta(la, a.quality, lt, t.quality, settings.method)


def bd_rate(
    anchor_rate: Sequence[float] | np.ndarray,
    anchor_quality: Sequence[float] | np.ndarray,
    test_rate: Sequence[float] | np.ndarray,
    test_quality: Sequence[float] | np.ndarray,
    method: str = "pchip",
    *,
    non_monotone: str = "pareto",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> float:
    """Bjontegaard delta rate of ``test`` against ``anchor`` in percent (negative = fewer bits).

    The stable interface for scripts; reports pass one ``BdSettings`` to ``bd_values`` instead.

    Args:
        anchor_rate, anchor_quality: the anchor's points (rate > 0, e.g. bpp; quality e.g. mAP %).
        test_rate, test_quality: the test's points, same units; the point counts may differ.
        method: ``pchip`` (JVET CTC sheets, default), ``cubic`` (VCEG-M33) or ``akima``.
        non_monotone: ``pareto`` (drop dominated points) or ``error``.
        min_overlap: smallest accepted intersection over union of the two quality ranges.

    Raises:
        BdRateError: see the module docstring.
    """
    settings = BdSettings(method, non_monotone, min_overlap)
    return _bd_rate_of(*_curves(anchor_rate, anchor_quality, test_rate, test_quality, settings), settings)


def bd_quality(
    anchor_rate: Sequence[float] | np.ndarray,
    anchor_quality: Sequence[float] | np.ndarray,
    test_rate: Sequence[float] | np.ndarray,
    test_quality: Sequence[float] | np.ndarray,
    method: str = "pchip",
    *,
    non_monotone: str = "pareto",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> float:
    """Bjontegaard delta quality (BD-mAP): mean quality gained at equal rate, in quality units.

    Same arguments as ``bd_rate``; the overlap is measured on log10(rate). Positive = the test
    is more accurate at the same rate (mAP points when quality is mAP %).
    """
    settings = BdSettings(method, non_monotone, min_overlap)
    return _bd_quality_of(*_curves(anchor_rate, anchor_quality, test_rate, test_quality, settings), settings)


def bd_values(
    anchor_rate: Sequence[float] | np.ndarray,
    anchor_quality: Sequence[float] | np.ndarray,
    test_rate: Sequence[float] | np.ndarray,
    test_quality: Sequence[float] | np.ndarray,
    settings: BdSettings = DEFAULT_SETTINGS,
) -> BdResult:
    """Both BD values and what they rest on; a refused value is NaN with its own reason.

    For reports: one comparison that cannot be made must not stop a table, so data problems
    become notes. Bad settings were refused when ``settings`` was built.
    """
    try:
        a, t = _curves(anchor_rate, anchor_quality, test_rate, test_quality, settings)
    except BdRateError as exc:
        nan = float("nan")
        return BdResult(nan, nan, nan, nan, notes=(str(exc),), bd_rate_note=str(exc), bd_quality_note=str(exc))
    values: list[float] = []
    reasons: list[str] = []
    for fn in (_bd_rate_of, _bd_quality_of):
        try:
            values.append(fn(a, t, settings))
            reasons.append("")
        except BdRateError as exc:
            values.append(float("nan"))
            reasons.append(str(exc))
    return BdResult(
        bd_rate=values[0],
        bd_quality=values[1],
        rate_overlap=overlap(a.quality, t.quality),
        quality_overlap=overlap(np.log10(a.rate), np.log10(t.rate)),
        dropped_anchor=a.dropped,
        dropped_test=t.dropped,
        notes=tuple(dict.fromkeys(r for r in reasons if r)),
        bd_rate_note=reasons[0],
        bd_quality_note=reasons[1],
    )


def bd_compare(
    anchor_rate: Sequence[float] | np.ndarray,
    anchor_quality: Sequence[float] | np.ndarray,
    test_rate: Sequence[float] | np.ndarray,
    test_quality: Sequence[float] | np.ndarray,
    method: str = "pchip",
    *,
    non_monotone: str = "pareto",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
) -> BdResult:
    """``bd_values`` with the settings as keyword arguments (the interface of ``bd_rate``).

    Raises:
        BdSettingsError: a bad ``method``, ``non_monotone`` or ``min_overlap`` (a configuration
            error, unlike data that cannot be compared, which becomes a note).
    """
    return bd_values(
        anchor_rate, anchor_quality, test_rate, test_quality, BdSettings(method, non_monotone, min_overlap)
    )
