"""MPEG's CTTC CSV: the exact bytes CompressAI-Vision's gen_mpeg_cttc_csv.py writes, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vcm_eval.errors import ConfigError
from vcm_eval.report.mpeg_cttc import RatePoint, mpeg_cttc_rows, write_mpeg_cttc

OIV6 = [  # out of order on purpose: the file sorts by dataset, then qp
    RatePoint("mpeg-oiv6-segmentation", 27, 0.4712, 61.5),
    RatePoint("mpeg-oiv6-detection", 32, 0.25, 74.3),
    RatePoint("mpeg-oiv6-detection", 22, 0.9301, 78.125),
    RatePoint("mpeg-oiv6-segmentation", 22, 0.9301, 63.0),
    RatePoint("mpeg-oiv6-detection", 27, 0.4712, 77.5),
    RatePoint("mpeg-oiv6-segmentation", 32, 0.25, 60.25),
]


def test_image_csv_bytes(tmp_path: Path) -> None:
    path = write_mpeg_cttc(tmp_path / "final_OIV6.csv", OIV6, rate_unit="bpp", points_per_dataset=3)
    assert path.read_bytes() == (
        b",Dataset,qp,avg_bpp,end_accuracy\n"
        b"0,mpeg-oiv6-detection,22,0.9301,78.125\n"
        b"1,mpeg-oiv6-detection,27,0.4712,77.5\n"
        b"2,mpeg-oiv6-detection,32,0.25,74.3\n"
        b"3,mpeg-oiv6-segmentation,22,0.9301,63.0\n"
        b"4,mpeg-oiv6-segmentation,27,0.4712,61.5\n"
        b"5,mpeg-oiv6-segmentation,32,0.25,60.25\n"
    )


def test_video_csv_bytes_with_times_and_the_old_y_psnr_column(tmp_path: Path) -> None:
    t = {"nn_part_1": 1.5, "encode": 20.0, "decode": 0.125, "nn_part_2": 3.0}
    points = [RatePoint("Traffic_2560x1600_30", q, 100.0 / (q - 20), 50.0 - q / 4, t) for q in (22, 27)]
    path = write_mpeg_cttc(tmp_path / "final_SFU.csv", points, rate_unit="kbps", points_per_dataset=2, y_psnr=True)
    assert path.read_bytes() == (
        b",Dataset,qp,bitrate (kbps),end_accuracy,y_psnr,nn_part_1,encode,decode,nn_part_2\n"
        b"0,Traffic_2560x1600_30,22,50.0,44.5,,1.5,20.0,0.125,3.0\n"
        b"1,Traffic_2560x1600_30,27,14.285714285714286,43.25,,1.5,20.0,0.125,3.0\n"
    )


def test_same_bytes_as_the_scripts_pandas_writer(tmp_path: Path) -> None:
    """gen_mpeg_cttc_csv.py: sort_values(by=["Dataset", "qp"]), then to_csv(path, sep=",", encoding="utf-8")."""
    points = [*OIV6, RatePoint("mpeg-oiv6-detection", 37, 0.1 + 0.2, 1e-5)]
    points += [RatePoint("mpeg-oiv6-segmentation", 37, 0.155, 74.3)]
    frame = pd.DataFrame(
        {
            "Dataset": [p.dataset for p in points],
            "qp": [p.qp for p in points],
            "avg_bpp": [p.rate for p in points],
            "end_accuracy": [p.accuracy for p in points],
        }
    )
    frame = frame.sort_values(by=["Dataset", "qp"]).reset_index(drop=True)  # the script keeps pre-sort labels
    frame.to_csv(tmp_path / "pandas.csv", sep=",", encoding="utf-8")
    ours = write_mpeg_cttc(tmp_path / "ours.csv", points, rate_unit="bpp")
    assert ours.read_bytes() == (tmp_path / "pandas.csv").read_bytes()


def test_vcm_mode_expects_six_points() -> None:
    six = [RatePoint("mpeg-oiv6-detection", q, 1.0 / q, 70.0) for q in (22, 27, 32, 37, 42, 47)]
    rows = mpeg_cttc_rows(six, rate_unit="bpp", mode="vcm")
    assert [r[2] for r in rows] == ["qp", "22", "27", "32", "37", "42", "47"]
    with pytest.raises(ConfigError, match=r"mpeg-oiv6-detection: 6 rate points .* 4 expected \(extra 2\)"):
        mpeg_cttc_rows(six, rate_unit="bpp", mode="fcm")


def test_missing_point_is_named() -> None:
    three = [RatePoint("BQTerrace_1920x1080_60", q, 10.0, 40.0) for q in (22, 27, 32)]
    missing_one = r"BQTerrace_1920x1080_60: 3 rate points \(qp \[22, 27, 32\]\), 4 expected \(missing 1\)"
    with pytest.raises(ConfigError, match=missing_one):
        mpeg_cttc_rows(three, rate_unit="kbps")
    with pytest.raises(ConfigError, match=r"BQTerrace_1920x1080_60: missing qp \[37\]"):
        mpeg_cttc_rows(three, rate_unit="kbps", qps=[22, 27, 32, 37])


def test_extra_and_repeated_points_are_named() -> None:
    pts = [RatePoint("Kimono_1920x1080_24", q, 10.0, 40.0) for q in (22, 27, 32, 37)]
    five = [*pts, RatePoint("Kimono_1920x1080_24", 42, 5.0, 30.0)]
    with pytest.raises(ConfigError, match=r"Kimono_1920x1080_24: extra qp \[42\] \(expected \[22, 27, 32, 37\]\)"):
        mpeg_cttc_rows(five, rate_unit="kbps", qps=[22, 27, 32, 37])
    with pytest.raises(ConfigError, match=r"Kimono_1920x1080_24: qp \[27\] given more than once"):
        mpeg_cttc_rows([*pts[:3], RatePoint("Kimono_1920x1080_24", 27, 5.0, 30.0)], rate_unit="kbps")


def test_datasets_fix_the_set_and_the_order() -> None:
    a = [RatePoint("B", q, 1.0, 50.0) for q in (1, 2)]
    b = [RatePoint("A", q, 1.0, 50.0) for q in (1, 2)]
    rows = mpeg_cttc_rows(a + b, rate_unit="bpp", points_per_dataset=2, datasets=["B", "A"])
    assert [r[1] for r in rows[1:]] == ["B", "B", "A", "A"]
    with pytest.raises(ConfigError, match=r"datasets without rate points: \['C'\]"):
        mpeg_cttc_rows(a + b, rate_unit="bpp", points_per_dataset=2, datasets=["B", "A", "C"])
    with pytest.raises(ConfigError, match=r"rate points of datasets not in `datasets`: \['A'\]"):
        mpeg_cttc_rows(a + b, rate_unit="bpp", points_per_dataset=2, datasets=["B"])


def test_bad_values_are_refused(tmp_path: Path) -> None:
    ok = [RatePoint("A", q, 1.0, 50.0) for q in (1, 2, 3, 4)]
    with pytest.raises(ConfigError, match=r"rate_unit='bits' is unknown; valid: \['bpp', 'kbps'\]"):
        mpeg_cttc_rows(ok, rate_unit="bits")
    with pytest.raises(ConfigError, match=r"mode='jvet' is unknown; valid: \['fcm', 'vcm'\]"):
        mpeg_cttc_rows(ok, rate_unit="bpp", mode="jvet")
    with pytest.raises(ConfigError, match=r"accuracy=150.0 must be in percent, 0-100"):
        mpeg_cttc_rows([*ok[:3], RatePoint("A", 4, 1.0, 150.0)], rate_unit="bpp")
    with pytest.raises(ConfigError, match=r"rate=-1.0 must be a finite number >= 0"):
        mpeg_cttc_rows([*ok[:3], RatePoint("A", 4, -1.0, 50.0)], rate_unit="bpp")
    t = {"nn_part_1": 1.0, "encode": 1.0, "decode": 1.0, "nn_part_2": 1.0}
    with pytest.raises(ConfigError, match=r"\['A qp 4'\] have no times"):
        mpeg_cttc_rows([RatePoint("A", q, 1.0, 50.0, t) for q in (1, 2, 3)] + [ok[3]], rate_unit="bpp")
    with pytest.raises(ConfigError, match="no rate points"):
        mpeg_cttc_rows([], rate_unit="bpp")
    target = tmp_path / "final_X.csv"
    target.write_text("old")
    with pytest.raises(ConfigError):
        write_mpeg_cttc(target, ok[:3], rate_unit="bpp")
    assert target.read_text() == "old"  # refused before anything is written


def test_the_default_cttc_metric_is_mpegs_where_the_runs_have_it() -> None:
    from vcm_eval.report.report import cttc_default_metric

    runs = pd.DataFrame({"bbox_AP": [50.0], "segm_AP": [45.0], "oic_AP50": [70.0], "oic_segm_AP50": [65.0]})
    metrics = ["bbox_AP", "segm_AP"]
    assert cttc_default_metric(runs, metrics, "mpeg-oiv6-detection") == "oic_AP50"
    assert cttc_default_metric(runs, metrics, "mpeg-oiv6-segmentation") == "oic_segm_AP50"
    assert cttc_default_metric(runs.drop(columns=["oic_AP50", "oic_segm_AP50"]), metrics, "") == "bbox_AP"
