"""MPEG's CTTC CSV: the per-dataset file MPEG's CTTC Excel template reads, as CompressAI-Vision writes it.

Source of the format: CompressAI-Vision (the MPEG FCM evaluation software),
github.com/InterDigitalInc/CompressAI-Vision, ``scripts/metrics/gen_mpeg_cttc_csv.py`` (read at commit
31165da, April 2026). That script concatenates the ``summary.csv`` of every rate point of a run
(written by ``compressai_vision/run/eval_split_inference.py``), sorts the rows, drops the video-only
``fps`` / ``num_of_coded_frame`` columns and writes ``final_<DATASET>.csv`` with pandas'
``DataFrame.to_csv(path, sep=",", encoding="utf-8")``. This module writes the same bytes from a
list of rate points, without pandas::

    ,Dataset,qp,avg_bpp,end_accuracy
    0,mpeg-oiv6-detection,22,0.9301,78.125
    1,mpeg-oiv6-detection,27,0.4712,77.5

* First column: pandas' row index (``to_csv`` writes it by default): an empty header, then 0..n-1
  (the script's frame keeps each row's label from before sorting, i.e. file-discovery order; the
  template does not read it).
* ``Dataset``: the dataset or sequence name, as the template lists it.
* ``qp``: the rate parameter of the point (VTM's QP, or a learned codec's quality index).
* The rate: ``avg_bpp`` (bits per pixel, image datasets such as OpenImages) or ``bitrate (kbps)``
  (video sequences at their frame rate), the two names ``eval_split_inference.py`` uses.
* ``end_accuracy``: in percent (the script multiplies fractions by 100 "for MPEG template").
* Optional times in seconds, when the points carry them: ``nn_part_1``, ``encode``, ``decode``,
  ``nn_part_2`` (the elapsed times ``summary.csv`` holds after the accuracy).
* Numbers as pandas writes float64 / int64 columns: floats in Python's shortest round-trip form
  (``0.1``, ``74.0``, ``1e-05``), the qp column as integers when every qp is one; ``\\n`` line ends,
  UTF-8, fields quoted only where they contain a comma, quote or line break.
* Rows: dataset by dataset (in the order given by ``datasets``, else alphabetical, as the script's
  ``sort_values(by=["Dataset", "qp"])``), qp ascending within a dataset.
* Rate points per dataset / sequence: 4 for FCM (the script's ``--nb_operation_points`` default),
  6 for the VCM image sets (VCM-RS's OpenImages QPs 22/27/32/37/42/47, docs/methods.md).

``y_psnr``: until commit ea0aca2 (March 2025, "remove the empty column y_psnr in csv generation to
align with FCM cttc") the script inserted an empty ``y_psnr`` column after ``end_accuracy``; the
current FCM template has none. ``y_psnr=True`` writes that older layout for an older template.

Class-wise rows (the script appends them for SFU / TVD / HiEVE / PandaSet): passed as rate points of their
own dataset (``CLASS-AB``...); ``vcm_eval.report.video`` writes video runs' files with them as the script
does: the class's name, the point index 0..n-1 as ``qp``, the length-weighted rate and the accuracy pooled
over the class's frames (docs/video.md). The report writes no times: vcm_eval measures per-image seconds of
its own stages, not the script's elapsed ``nn_part_1`` / ``nn_part_2`` split.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcm_eval.errors import ConfigError
from vcm_eval.utils.atomic import atomic_write

SOURCE = "github.com/InterDigitalInc/CompressAI-Vision scripts/metrics/gen_mpeg_cttc_csv.py"
RATE_COLUMNS = {"bpp": "avg_bpp", "kbps": "bitrate (kbps)"}
TIME_COLUMNS = ("nn_part_1", "encode", "decode", "nn_part_2")
POINTS_PER_DATASET = {"fcm": 4, "vcm": 6}


@dataclass(frozen=True)
class RatePoint:
    """One rate point of one dataset or sequence.

    Attributes:
        dataset: the dataset / sequence name the template expects (``mpeg-oiv6-detection``,
            ``Traffic_2560x1600_30``).
        qp: the rate parameter (QP, or a learned codec's quality index).
        rate: bits per pixel for images, kbps for video (``rate_unit`` of ``mpeg_cttc_rows``).
        accuracy: end accuracy in percent, at most 100 (mAP x 100, MOTA x 100: not a fraction; MOTA may be
            negative).
        times: seconds per stage, keys ``TIME_COLUMNS``; either every point has them or none.
    """

    dataset: str
    qp: int | float
    rate: float
    accuracy: float
    times: Mapping[str, float] | None = None


def _number(value: float) -> str:
    """A float as pandas writes a float64 cell: Python's shortest round-trip repr."""
    return repr(float(value))


def _expected_count(mode: str, points_per_dataset: int | None) -> int:
    """Rate points per dataset: ``points_per_dataset`` if given, else the mode's."""
    if mode not in POINTS_PER_DATASET:
        raise ConfigError(f"mode={mode!r} is unknown; valid: {list(POINTS_PER_DATASET)}")
    if points_per_dataset is None:
        return POINTS_PER_DATASET[mode]
    if isinstance(points_per_dataset, bool) or not isinstance(points_per_dataset, int) or points_per_dataset < 1:
        raise ConfigError(f"points_per_dataset={points_per_dataset!r} must be a positive integer (FCM: 4, VCM: 6)")
    return points_per_dataset


def _check_point(p: RatePoint) -> None:
    if not p.dataset:
        raise ConfigError(f"a rate point has an empty dataset name ({p}); name its dataset or sequence")
    if isinstance(p.qp, bool) or not isinstance(p.qp, int | float) or not math.isfinite(p.qp):
        raise ConfigError(f"{p.dataset}: qp={p.qp!r} is not a finite number; give the point's rate parameter")
    if not (math.isfinite(p.rate) and p.rate >= 0):
        raise ConfigError(f"{p.dataset} qp {p.qp}: rate={p.rate!r} must be a finite number >= 0 (bpp or kbps)")
    if not (math.isfinite(p.accuracy) and p.accuracy <= 100):  # MOTA (percent too) may be negative
        raise ConfigError(
            f"{p.dataset} qp {p.qp}: accuracy={p.accuracy!r} must be in percent, 0-100 (multiply a fraction by 100; "
            "MOTA may also be negative)"
        )


def _check_times(points: Sequence[RatePoint]) -> bool:
    """Whether the points carry times (all of them, with exactly ``TIME_COLUMNS``)."""
    with_times = [p for p in points if p.times is not None]
    if not with_times:
        return False
    if len(with_times) != len(points):
        bare = sorted({f"{p.dataset} qp {p.qp}" for p in points if p.times is None})
        raise ConfigError(f"rate points {bare} have no times while others have; give times to every point or to none")
    for p in with_times:
        times = p.times or {}
        if set(times) != set(TIME_COLUMNS):
            raise ConfigError(
                f"{p.dataset} qp {p.qp}: times keys {sorted(times)} must be exactly {list(TIME_COLUMNS)} (seconds)"
            )
        bad = [k for k, v in times.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ConfigError(f"{p.dataset} qp {p.qp}: times {bad} must be finite and >= 0 seconds")
    return True


def _check_coverage(
    by_dataset: Mapping[str, list[RatePoint]],
    *,
    expected: int,
    datasets: Sequence[str] | None,
    qps: Sequence[float] | Mapping[str, Sequence[float]] | None,
) -> None:
    """Refuse a dataset with missing, extra or repeated rate points, naming them."""
    problems: list[str] = []
    if datasets is not None:
        missing_sets = [d for d in datasets if d not in by_dataset]
        extra_sets = sorted(d for d in by_dataset if d not in datasets)
        if missing_sets:
            problems.append(f"datasets without rate points: {missing_sets}")
        if extra_sets:
            problems.append(f"rate points of datasets not in `datasets`: {extra_sets}")
    for name, pts in by_dataset.items():
        have = [p.qp for p in pts]
        repeated = sorted({q for q in have if have.count(q) > 1})
        if repeated:
            problems.append(f"{name}: qp {repeated} given more than once (extra rate points)")
        want = qps.get(name) if isinstance(qps, Mapping) else qps
        if want is not None:
            if len(want) != expected:
                raise ConfigError(
                    f"qps for {name} lists {len(want)} values but {expected} rate points are expected; fix qps"
                )
            missing = [q for q in want if q not in have]
            extra = sorted({q for q in have if q not in want})
            if missing:
                problems.append(f"{name}: missing qp {missing}")
            if extra:
                problems.append(f"{name}: extra qp {extra} (expected {list(want)})")
        elif len(pts) != expected:
            word = "missing" if len(pts) < expected else "extra"
            count = abs(expected - len(pts))
            problems.append(f"{name}: {len(pts)} rate points (qp {sorted(have)}), {expected} expected ({word} {count})")
    if problems:
        raise ConfigError(
            "the CTTC CSV needs every rate point of every dataset, and no other: "
            + "; ".join(problems)
            + ". Add the missing runs, drop the extra ones, or set points_per_dataset / qps"
        )


def mpeg_cttc_rows(
    points: Iterable[RatePoint],
    *,
    rate_unit: str,
    mode: str = "fcm",
    points_per_dataset: int | None = None,
    datasets: Sequence[str] | None = None,
    qps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    y_psnr: bool = False,
) -> list[list[str]]:
    """The CTTC CSV's header and rows as strings, in the file's order (see the module docstring).

    Args:
        points: every rate point of every dataset / sequence of the file.
        rate_unit: ``bpp`` (images: column ``avg_bpp``) or ``kbps`` (video: ``bitrate (kbps)``).
        mode: ``fcm`` (4 rate points per dataset) or ``vcm`` (6).
        points_per_dataset: overrides the count of ``mode``.
        datasets: the datasets the file must hold, in the order of its rows; default: those of
            ``points``, alphabetical.
        qps: the rate parameters each dataset must have (one list for all, or per dataset name);
            when given, missing and extra points are named by their qp.
        y_psnr: add the empty ``y_psnr`` column of the script's layout before March 2025.

    Returns:
        ``[header, row, ...]``; the first cell of every row is the pandas index (empty in the header).

    Raises:
        ConfigError: an unknown rate unit or mode; a dataset with missing, extra or repeated rate
            points; a bad number (accuracy outside 0-100, negative rate); times on some points only.
    """
    if rate_unit not in RATE_COLUMNS:
        raise ConfigError(
            f"rate_unit={rate_unit!r} is unknown; valid: {list(RATE_COLUMNS)} (bpp for images, kbps for video)"
        )
    expected = _expected_count(mode, points_per_dataset)
    pts = list(points)
    if not pts:
        raise ConfigError("no rate points to write; a CTTC CSV needs the rate points of at least one dataset")
    for p in pts:
        _check_point(p)
    with_times = _check_times(pts)
    by_dataset: dict[str, list[RatePoint]] = {}
    for p in pts:
        by_dataset.setdefault(p.dataset, []).append(p)
    _check_coverage(by_dataset, expected=expected, datasets=datasets, qps=qps)

    order = list(datasets) if datasets is not None else sorted(by_dataset)
    ordered = [p for name in order for p in sorted(by_dataset[name], key=lambda p: p.qp)]
    int_qps = all(isinstance(p.qp, int) for p in ordered)
    header = ["", "Dataset", "qp", RATE_COLUMNS[rate_unit], "end_accuracy"]
    header += ["y_psnr"] if y_psnr else []
    header += list(TIME_COLUMNS) if with_times else []
    rows = [header]
    for index, p in enumerate(ordered):
        row = [str(index), p.dataset, str(p.qp) if int_qps else _number(p.qp), _number(p.rate), _number(p.accuracy)]
        row += [""] if y_psnr else []
        row += [_number(p.times[k]) for k in TIME_COLUMNS] if p.times is not None else []
        rows.append(row)
    return rows


def write_mpeg_cttc(
    path: Path,
    points: Iterable[RatePoint],
    *,
    rate_unit: str,
    mode: str = "fcm",
    points_per_dataset: int | None = None,
    datasets: Sequence[str] | None = None,
    qps: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    y_psnr: bool = False,
) -> Path:
    """Write the CTTC CSV of ``points`` to ``path`` atomically (arguments as ``mpeg_cttc_rows``).

    Everything is checked before anything is written, so a refused call leaves an existing file
    untouched. CompressAI-Vision names the file ``final_<DATASET>.csv`` (``final_OIV6.csv``).

    Returns:
        ``path``.

    Raises:
        ConfigError: see ``mpeg_cttc_rows``.
        VcmEvalError: the folder cannot be written.
    """
    rows = mpeg_cttc_rows(
        points,
        rate_unit=rate_unit,
        mode=mode,
        points_per_dataset=points_per_dataset,
        datasets=datasets,
        qps=qps,
        y_psnr=y_psnr,
    )
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)  # QUOTE_MINIMAL, as pandas
    atomic_write(path, buf.getvalue())
    return path


def write_cttc_files(runs: Any, out_dir: Path, *, metric: str, dataset: str = "", mode: str = "vcm") -> list[Path]:
    """``mpeg_cttc_<curve>.csv`` for every coding curve of a report's runs table (``report.format=mpeg_cttc``).

    Args:
        runs: the report's runs table (pandas; columns ``curve``, ``dataset``, ``rate_param``, ``bpp``
            and ``metric``).
        out_dir: the report's folder.
        metric: the accuracy column, in percent (``oic_AP50`` for MPEG's OpenImages condition).
        dataset: the name written in the Dataset column ("" = each run's dataset name).
        mode: ``vcm`` (6 rate points per dataset) or ``fcm`` (4).

    Raises:
        ConfigError: ``metric`` is not a column of the runs, or a curve has a missing or extra rate
            point (nothing is written for it, nor for the curves after it).
    """
    if not metric or metric not in runs:
        raise ConfigError(f"report.cttc_metric={metric!r} is not a metric of these runs; choose one of report.metrics")
    coded = runs[runs["rate_param"].astype(str) != ""]
    out = []
    for curve, group in coded.groupby("curve", sort=True):
        points = [
            RatePoint(dataset or str(r["dataset"]), r[r["rate_param"]], float(r["bpp"]), float(r[metric]))
            for r in group.to_dict("records")
        ]
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(curve))
        out.append(write_mpeg_cttc(out_dir / f"mpeg_cttc_{name}.csv", points, rate_unit="bpp", mode=mode))
    return out
