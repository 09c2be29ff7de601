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
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import bjontegaard
import numpy as np

from vcm_eval.errors import VcmEvalError

METHODS = ("pchip", "cubic", "akima")
POLICIES = ("pareto", "error")
MIN_POINTS = {"pchip": 2, "akima": 2, "cubic": 4}
DEFAULT_MIN_OVERLAP = 0.5


class BdRateError(VcmEvalError):
    """Two curves cannot be compared: too few points, no or too little overlap, non-monotone."""


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
        rate_overlap: intersection over union of the quality ranges (BD-rate's interval), 0..1.
        quality_overlap: intersection over union of the log-rate ranges (BD-quality's), 0..1.
        dropped_anchor, dropped_test: points removed by the Pareto policy.
        notes: why a value is NaN (empty when both are numbers).
    """

    bd_rate: float
    bd_quality: float
    rate_overlap: float
    quality_overlap: float
    dropped_anchor: tuple[tuple[float, float], ...] = ()
    dropped_test: tuple[tuple[float, float], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def _fmt(point: tuple[float, float]) -> str:
    return f"({point[0]:.6g}, {point[1]:.6g})"


def monotone_curve(rate: Sequence[float] | np.ndarray, quality: Sequence[float] | np.ndarray, *, policy: str = "pareto", name: str = "curve") -> Curve:
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
        raise BdRateError(f"{name}: rates {r.tolist()} / qualities {q.tolist()} contain NaN or inf; drop runs without a rate (e.g. uncompressed)")
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


def _check_settings(method: str, policy: str, min_overlap: float) -> None:
    if method not in METHODS:
        raise BdRateError(f"method={method!r} is unknown; use pchip (JVET CTC sheets), cubic (VCEG-M33) or akima")
    if policy not in POLICIES:
        raise BdRateError(f"non_monotone={policy!r} is unknown; use one of {list(POLICIES)}")
    if not 0.0 <= min_overlap <= 1.0:
        raise BdRateError(f"min_overlap={min_overlap} must lie in [0, 1] (fraction of the union of the two ranges)")


def _check(anchor: Curve, test: Curve, method: str, min_overlap: float) -> None:
    _check_settings(method, POLICIES[0], min_overlap)
    need = MIN_POINTS[method]
    for name, c in (("anchor", anchor), ("test", test)):
        if c.rate.size < need:
            extra = f" after dropping dominated points {', '.join(_fmt(p) for p in c.dropped)}" if c.dropped else ""
            raise BdRateError(f"{name} has {c.rate.size} usable point(s){extra}; method={method} needs at least {need}")


def _require_overlap(value: float, what: str, min_overlap: float, a: np.ndarray, b: np.ndarray) -> None:
    ranges = f"anchor [{a.min():.6g}, {a.max():.6g}], test [{b.min():.6g}, {b.max():.6g}]"
    if value <= 0.0:
        raise BdRateError(f"the curves do not overlap in {what} ({ranges}); add rate points so they share a range")
    if value < min_overlap:
        raise BdRateError(f"the curves overlap in only {100 * value:.1f}% of their {what} range ({ranges}), below min_overlap={min_overlap}; add rate points or lower min_overlap")


def _delta(base_a: np.ndarray, val_a: np.ndarray, base_t: np.ndarray, val_t: np.ndarray, method: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overlap is checked above, with our own threshold
        return float(bjontegaard.bd_linear(base_a, val_a, base_t, val_t, method, require_matching_points=False, min_overlap=0.0))


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

    Args:
        anchor_rate, anchor_quality: the anchor's points (rate > 0, e.g. bpp; quality e.g. mAP %).
        test_rate, test_quality: the test's points, same units; the point counts may differ.
        method: ``pchip`` (JVET CTC sheets, default), ``cubic`` (VCEG-M33) or ``akima``.
        non_monotone: ``pareto`` (drop dominated points) or ``error``.
        min_overlap: smallest accepted intersection over union of the two quality ranges.

    Raises:
        BdRateError: see the module docstring.
    """
    a = monotone_curve(anchor_rate, anchor_quality, policy=non_monotone, name="anchor")
    t = monotone_curve(test_rate, test_quality, policy=non_monotone, name="test")
    _check(a, t, method, min_overlap)
    _require_overlap(overlap(a.quality, t.quality), "quality", min_overlap, a.quality, t.quality)
    log_delta = _delta(a.quality, np.log10(a.rate), t.quality, np.log10(t.rate), method)
    return float((10.0**log_delta - 1.0) * 100.0)


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
    a = monotone_curve(anchor_rate, anchor_quality, policy=non_monotone, name="anchor")
    t = monotone_curve(test_rate, test_quality, policy=non_monotone, name="test")
    _check(a, t, method, min_overlap)
    la, lt = np.log10(a.rate), np.log10(t.rate)
    _require_overlap(overlap(la, lt), "log-rate", min_overlap, a.rate, t.rate)
    return _delta(la, a.quality, lt, t.quality, method)


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
    """Both BD values and what they rest on; a refused value is NaN with its reason in ``notes``.

    For reports: one comparison that cannot be made must not stop a table. A bad ``method``,
    ``non_monotone`` or ``min_overlap`` is a configuration error and still raises.
    """
    if method not in METHODS or non_monotone not in POLICIES or not 0.0 <= min_overlap <= 1.0:
        _check_settings(method, non_monotone, min_overlap)
    try:
        a = monotone_curve(anchor_rate, anchor_quality, policy=non_monotone, name="anchor")
        t = monotone_curve(test_rate, test_quality, policy=non_monotone, name="test")
    except BdRateError as exc:
        nan = float("nan")
        return BdResult(nan, nan, nan, nan, notes=(str(exc),))
    notes: list[str] = []
    values: list[float] = []
    for fn in (bd_rate, bd_quality):
        try:
            values.append(fn(anchor_rate, anchor_quality, test_rate, test_quality, method, non_monotone=non_monotone, min_overlap=min_overlap))
        except BdRateError as exc:
            if str(exc) not in notes:
                notes.append(str(exc))
            values.append(float("nan"))
    return BdResult(
        bd_rate=values[0],
        bd_quality=values[1],
        rate_overlap=overlap(a.quality, t.quality),
        quality_overlap=overlap(np.log10(a.rate), np.log10(t.rate)),
        dropped_anchor=a.dropped,
        dropped_test=t.dropped,
        notes=tuple(notes),
    )
