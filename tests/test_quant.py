"""Method A (normalization + n-symbol quantization): the paper's sizes, the symbol rule, real bitstreams."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import compose_cfg
from hydra import compose

from vcm_eval.codecs.quant.entropy import bits_per_symbol, channel_groups, encode_symbols, varint_len
from vcm_eval.codecs.quant.nsymbol import NormalizedQuantizer, assign_symbols, thresholds
from vcm_eval.codecs.quant.sizes import (
    data_size_rows,
    image_bits,
    kbytes,
    num_values,
    representation_bits,
    truncate2,
)
from vcm_eval.codecs.quant.uniform8 import Uniform8bitQuantizer
from vcm_eval.data.synthetic import SyntheticSpec, scene_for
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.pipelines.base import FeatureCodingPipeline
from vcm_eval.pipelines.build import build_pipeline
from vcm_eval.report.quant_table import PAPER_TABLE3, quant_table, write_quant_table
from vcm_eval.vision.base import LEVELS, FeatureSet
from vcm_eval.vision.levels import fpn_shapes, parse_levels
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, TorchvisionRcnn

ANCHORS = Path(__file__).resolve().parent.parent / "anchors"
CITYSCAPES = (1024, 2048)  # height, width


@pytest.fixture(scope="module")
def model() -> TorchvisionRcnn:
    torch.manual_seed(0)
    return TorchvisionRcnn(RcnnConfig(weights=None))


@pytest.fixture(scope="module")
def feats(model: TorchvisionRcnn) -> FeatureSet:
    """Real P2..P6 of a synthetic 256x512 scene from the task network, first 64 channels (0.7 M values)."""
    full = model.features(scene_for(SyntheticSpec(), "val", 1).image)
    return full.replace({k: v[:64].contiguous() for k, v in full.items()})


def tiny(seed: int = 0, shapes: dict[str, tuple[int, int, int]] | None = None, smooth: bool = True) -> FeatureSet:
    """Small FeatureSet: spatially smooth (cumulative sums) or i.i.d. Gaussian values."""
    gen = torch.Generator().manual_seed(seed)
    shapes = shapes or {"p2": (8, 24, 40), "p3": (8, 12, 20), "p4": (8, 6, 10), "p5": (8, 3, 5), "p6": (8, 2, 3)}
    levels = {}
    for k, s in shapes.items():
        x = torch.randn(s, generator=gen)
        levels[k] = (x.cumsum(1).cumsum(2) / 4 if smooth else x) * 3 + 1
    return FeatureSet(levels=levels, image_size=(96, 160), input_size=(96, 160))


# --- the paper's data sizes (Table 2) ---------------------------------------------------------


def test_cityscapes_sizes_match_the_paper() -> None:
    shapes = fpn_shapes(*CITYSCAPES)
    assert shapes == {
        "p2": (256, 256, 512),
        "p3": (256, 128, 256),
        "p4": (256, 64, 128),
        "p5": (256, 32, 64),
        "p6": (256, 16, 32),
    }
    n = num_values(shapes)
    assert n == 44_695_552
    img = image_bits(*CITYSCAPES)
    assert kbytes(img) == 6144
    assert (
        kbytes(representation_bits(shapes, 32)) == 174_592 and truncate2(representation_bits(shapes, 32) / img) == 28.41
    )
    assert (
        kbytes(Uniform8bitQuantizer().raw_bits(shapes)) == 43_648
        and truncate2(Uniform8bitQuantizer().raw_bits(shapes) / img) == 7.10
    )
    two_bit = NormalizedQuantizer(4, 1.5).raw_bits(shapes)
    assert kbytes(two_bit) == 10_912 and truncate2(two_bit / img) == 1.77
    assert NormalizedQuantizer(3, 1.0).raw_bits(shapes) == two_bit  # ceil(log2 3) = 2 bits
    assert NormalizedQuantizer(4, 1.0, levels="p2-p5").raw_bits(shapes) == 2 * (n - 256 * 16 * 32)


def test_anchor_table2_is_what_the_formula_gives() -> None:
    anchor = pd.read_csv(ANCHORS / "quant_table2_sizes.csv")
    assert anchor["source"].str.contains("Method A paper").all() and (anchor["table"] == "Table 2").all()
    ours = {r["representation"]: r for r in data_size_rows(*CITYSCAPES)}
    assert set(anchor["representation"]) == set(ours)
    for a in anchor.itertuples():
        o = ours[a.representation]
        assert (a.kbytes_min, a.kbytes_max) == (o["kbytes_min"], o["kbytes_max"])
        if not math.isnan(a.ratio_min):
            assert (a.ratio_min, a.ratio_max) == (o["ratio_min"], o["ratio_max"])
            assert a.values == o["values"] == 44_695_552


def test_anchor_table3_rows_and_ratios() -> None:
    t3 = pd.read_csv(PAPER_TABLE3)
    assert t3["source"].str.contains("Method A paper").all() and (t3["table"] == "Table 3").all()
    sym = t3[t3["kind"] == "symbols"]
    assert sorted(zip(sym["n_symbols"], sym["z"])) == [(n, z) for n in (3, 4) for z in (0.5, 1.0, 1.5, 2.0)]
    ratios = {r["representation"]: (r.get("ratio_min"), r.get("ratio_max")) for r in data_size_rows(*CITYSCAPES)}
    expect = {"float32": ratios["float32 features"], "8bit": ratios["8-bit features"]}
    for row in t3.itertuples():
        key = row.kind if row.kind != "symbols" else None
        want = expect[key] if key else ratios["4 symbols (2 bit)" if row.n_symbols == 4 else "3 symbols (1-2 bit)"]
        assert (row.ratio_min, row.ratio_max) == want
    four = sym[sym["n_symbols"] == 4]
    assert four.loc[four["mAP"].idxmax(), "z"] == 1.5  # the paper's bold best threshold


# --- the symbol rule --------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.5, 1.0, 1.5, 2.0])
def test_four_symbol_boundaries(t: float) -> None:
    below, above = np.nextafter(-t, -np.inf), np.nextafter(-t, np.inf)
    values = np.array(
        [
            -1e9,
            below,
            -t,
            above,
            np.nextafter(0.0, -1.0),
            -0.0,
            0.0,
            np.nextafter(t, 0),
            t,
            np.nextafter(t, np.inf),
            1e9,
        ]
    )
    paper = np.array([1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4])  # the paper's symbols 1..4
    np.testing.assert_array_equal(assign_symbols(values, thresholds(4, t)), paper - 1)


@pytest.mark.parametrize("t", [0.5, 1.0, 1.5, 2.0])
def test_three_symbol_boundaries(t: float) -> None:
    values = np.array([-1e9, np.nextafter(-t, -np.inf), -t, 0.0, t, np.nextafter(t, np.inf), 1e9])
    np.testing.assert_array_equal(assign_symbols(values, thresholds(3, t)), [0, 0, 1, 1, 1, 2, 2])


def test_other_n_are_symmetric() -> None:
    np.testing.assert_array_equal(thresholds(2, 1.0), [0.0])
    np.testing.assert_allclose(thresholds(5, 1.5), [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_allclose(thresholds(6, 1.0), [-1.0, -0.5, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(assign_symbols(np.array([-0.5, 0.0, 0.5]), thresholds(2, 1.0)), [0, 1, 1])


# --- reconstruction and bitstream -------------------------------------------------------------


@pytest.mark.parametrize("side_dtype, tol", [("float32", 1e-5), ("float16", 2e-3)])
def test_reconstruction_keeps_every_channel_mean(feats: FeatureSet, side_dtype: str, tol: float) -> None:
    q = NormalizedQuantizer(4, 1.5, side_dtype=side_dtype)
    out = q.decode(q.encode(feats))
    for k in LEVELS:
        x, y = feats[k].double(), out[k].double()
        mean_x, mean_y, std_x = x.mean((1, 2)), y.mean((1, 2)), x.std((1, 2), unbiased=False)
        assert torch.all((mean_y - mean_x).abs() <= tol * std_x + 1e-6), k
        assert not torch.equal(x.float(), y.float())  # it is a real quantization


@pytest.mark.parametrize(
    "n, z, kwargs",
    [
        (4, 1.5, {}),
        (3, 1.0, {"entropy_model": "static"}),
        (4, 0.5, {"entropy_model": "raw"}),
        (5, 1.0, {"centroids": "level", "side_dtype": "float32"}),
    ],
)
def test_bitstream_gives_back_identical_symbols_and_features(feats: FeatureSet, n: int, z: float, kwargs: dict) -> None:
    q = NormalizedQuantizer(n, z, **kwargs)
    data = q.encode(feats)
    sent, got = q.symbols(feats), q.decode_symbols(data)
    assert list(got) == list(LEVELS)
    for k in LEVELS:
        np.testing.assert_array_equal(got[k], sent[k])
    decoded, expected = q.decode(data), q.reconstruct(feats)
    assert decoded.image_size == feats.image_size and decoded.input_size == feats.input_size
    for k in LEVELS:
        assert decoded[k].dtype == torch.float32 and torch.equal(decoded[k], expected[k]), k


def test_many_small_rans_chunks_round_trip() -> None:
    f = tiny(1, {"p2": (40, 24, 40), "p3": (40, 12, 20), "p4": (8, 6, 10), "p5": (8, 3, 5), "p6": (8, 2, 3)})
    q = NormalizedQuantizer(4, 1.0, chunk_log2=10)  # P2: 960 symbols per channel -> groups of 16, 16 and 8 channels
    assert [b - a for a, b in channel_groups(f["p2"].shape, 10)] == [16, 16, 8]
    data = q.encode(f)
    stats = q.stream_stats(data)
    assert stats.modes.split(",")[0] == "causal"
    for k, v in q.decode_symbols(data).items():
        np.testing.assert_array_equal(v, q.symbols(f)[k])


def test_coded_size_is_bounded_by_raw_plus_side_info(feats: FeatureSet) -> None:
    for n, z in [(4, 0.5), (4, 2.0), (3, 1.0)]:
        q = NormalizedQuantizer(n, z)
        data = q.encode(feats)
        stats = q.stream_stats(data)
        assert 8 * len(data) == stats.symbol_bits + stats.side_bits
        framing = sum(
            8 * (1 + varint_len(math.ceil(math.prod(s) * bits_per_symbol(n) / 8))) for s in feats.shapes().values()
        )
        assert stats.symbol_bits <= stats.raw_bits + framing
        side_bound = 8 * (
            64 + sum(2 * s[0] * 2 + s[0] * n * 2 for s in feats.shapes().values())
        )  # header, mu, sigma, centroids
        assert stats.side_bits <= side_bound
        assert stats.symbol_bits < 0.75 * stats.raw_bits  # the context model does compress these features


def test_incompressible_symbols_fall_back_to_the_fixed_length_code() -> None:
    f = tiny(2, smooth=False)  # i.i.d. Gaussian: at z = 0.6745 the 4 symbols are i.i.d. and equiprobable
    q = NormalizedQuantizer(4, 0.6745)
    data = q.encode(f)
    stats = q.stream_stats(data)
    assert stats.modes == "raw,raw,raw,raw,raw"
    framing = sum(8 * (1 + varint_len(math.ceil(math.prod(s) * 2 / 8))) for s in f.shapes().values())
    assert stats.symbol_bits == sum(8 * math.ceil(math.prod(s) * 2 / 8) for s in f.shapes().values()) + framing
    for k, v in q.decode_symbols(data).items():
        np.testing.assert_array_equal(v, q.symbols(f)[k])


@pytest.mark.parametrize("n", [4, 3])
def test_coded_size_shrinks_as_z_grows(feats: FeatureSet, n: int) -> None:
    sizes = [len(NormalizedQuantizer(n, z).encode(feats)) for z in (0.5, 1.0, 1.5, 2.0)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4, sizes
    raw = NormalizedQuantizer(n, 1.0).raw_bits(feats.shapes())
    assert all(8 * s < raw for s in sizes)


def test_report_records_the_paper_bits_beside_the_real_ones(feats: FeatureSet) -> None:
    q = NormalizedQuantizer(4, 1.5)
    data = q.encode(feats)
    rep = q.report(feats, data)
    assert rep["raw_bits"] == 2 * feats.num_values() and rep["values"] == feats.num_values()
    assert rep["symbol_bits"] + rep["side_bits"] == 8 * len(data)


# --- level sets and the 8-bit comparison point ------------------------------------------------


def test_level_subsets_pass_through_or_drop_p6() -> None:
    f = tiny(3)
    q = NormalizedQuantizer(4, 1.0, levels="p2+p4")
    out = q.decode(q.encode(f))
    assert list(out) == ["p2", "p3", "p4", "p5"]  # p3, p5 pass through as float32; p6 is rebuilt by the model
    assert torch.equal(out["p3"], f["p3"]) and torch.equal(out["p5"], f["p5"])
    assert not torch.equal(out["p2"], f["p2"])
    assert parse_levels("p2-p5") == ("p2", "p3", "p4", "p5") and parse_levels("p6+p2") == ("p2", "p6")


def test_uniform_8bit_error_is_half_a_step_and_one_byte_per_value() -> None:
    f = tiny(4)
    q = Uniform8bitQuantizer()
    data = q.encode(f)
    out = q.decode(data)
    assert len(data) - f.num_values() < 120  # header + min/max + blob lengths
    for k in LEVELS:
        step = (f[k].max() - f[k].min()) / 255
        assert (out[k] - f[k]).abs().max() <= step / 2 + 1e-5
    with pytest.raises(CodecError, match="method 'uniform8', not 'nsymbol'"):
        NormalizedQuantizer(4, 1.0).decode(data)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, z, kwargs, match",
    [
        (1, 1.0, {}, "n_symbols=1"),
        (0, 1.0, {}, "n_symbols=0"),
        (17, 1.0, {}, "n_symbols=17"),
        (4, 0.0, {}, "z=0.0"),
        (4, -1.0, {}, "z=-1.0"),
        (4, float("nan"), {}, "z=nan"),
        (4, 1.0, {"side_dtype": "float64"}, "side_dtype='float64'"),
        (4, 1.0, {"entropy_model": "huffman"}, "entropy_model='huffman'"),
        (4, 1.0, {"levels": "p1-p3"}, "levels='p1-p3'"),
    ],
)
def test_bad_parameters_are_config_errors(n: int, z: float, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        NormalizedQuantizer(n, z, **kwargs)


@pytest.mark.parametrize(
    "n, z, centroids", [(4, 1.5, "channel"), (3, 0.5, "level"), (2, 1.0, "channel"), (6, 2.0, "channel")]
)
def test_quantized_level_equals_the_methods_formulas_in_numpy(n: int, z: float, centroids: str) -> None:
    # channels far from 0 with a small spread (the one-sweep variance must not cancel) and a constant one
    gen = np.random.default_rng(n)
    x = (
        gen.standard_normal((6, 17, 23)) * np.array([1.0, 0.01, 3.0, 1e-3, 1.0, 0.0])[:, None, None]
        + np.array([0.0, 5.0, -2.0, 300.0, 1.0, 7.0])[:, None, None]
    )
    x[1, 0, 0] = 50.0  # the shift of the one-sweep variance is the first value: here an outlier
    x = x.astype(np.float32)
    q = NormalizedQuantizer(n, z, side_dtype="float32", centroids=centroids).quantize_level("p2", torch.from_numpy(x))
    values = x.astype(np.float64)
    mu, sigma = values.mean(axis=(1, 2)), values.std(axis=(1, 2))
    np.testing.assert_allclose(q.mu, mu.astype(np.float32), rtol=1e-6, atol=0)
    np.testing.assert_allclose(q.sigma, sigma.astype(np.float32), rtol=1e-5, atol=0)
    normalized = np.where(
        q.sigma[:, None, None] > 0,
        (values - q.mu[:, None, None]) / np.where(q.sigma > 0, q.sigma, 1)[:, None, None],
        0.0,
    )
    symbols = assign_symbols(normalized, thresholds(n, z))
    np.testing.assert_array_equal(q.symbols, symbols)
    rows = np.arange(6)[:, None, None] if centroids == "channel" else np.zeros((6, 1, 1), dtype=int)
    cells = (np.broadcast_to(rows, x.shape) * n + symbols).ravel()
    counts = np.bincount(cells, minlength=q.counts.size).reshape(q.counts.shape)
    sums = np.bincount(cells, weights=normalized.ravel(), minlength=q.counts.size).reshape(q.counts.shape)
    np.testing.assert_array_equal(q.counts, counts)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    np.testing.assert_allclose(q.centroids, means.astype(np.float32), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n, middle", [(4, 2), (3, 1)])
def test_zero_variance_channels_come_back_exactly(n: int, middle: int) -> None:
    f = tiny(5)
    f.levels["p3"][2] = 3.25  # one constant channel
    f.levels["p6"][:] = -0.5  # a whole constant level
    q = NormalizedQuantizer(n, 1.0)
    out = q.decode(q.encode(f))
    assert torch.all(out["p3"][2] == 3.25) and torch.all(out["p6"] == -0.5)
    assert np.all(q.symbols(f)["p3"][2] == middle)  # z = 0 by definition -> the interval holding 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_raise_naming_the_level(bad: float) -> None:
    f = tiny(6)
    f.levels["p4"][1, 2, 3] = bad
    with pytest.raises(CodecError, match="level p4 has 1 NaN/inf"):
        NormalizedQuantizer(4, 1.0).encode(f)
    with pytest.raises(CodecError, match="level p4 has 1 NaN/inf"):
        Uniform8bitQuantizer().encode(f)


def test_float16_overflow_asks_for_float32_side_info() -> None:
    f = tiny(7)
    f.levels["p2"] = f.levels["p2"] * 1e6
    with pytest.raises(CodecError, match="side_dtype=float32"):
        NormalizedQuantizer(4, 1.0).encode(f)
    q = NormalizedQuantizer(4, 1.0, side_dtype="float32")
    assert torch.equal(q.decode(q.encode(f))["p2"], q.reconstruct(f)["p2"])


def test_missing_levels_are_codec_errors() -> None:
    # truncated streams and bytes left over: tests/test_codec_contract.py and tests/test_fuzz.py
    f = tiny(8)
    partial = FeatureSet(levels={"p2": f["p2"]}, image_size=f.image_size, input_size=f.input_size)
    with pytest.raises(CodecError, match=r"lack levels \['p3'"):
        NormalizedQuantizer(4, 1.0).encode(partial)


# --- config, pipeline, table ------------------------------------------------------------------


def test_pipeline_quant_is_built_from_the_cli_config(hydra_conf: None, model: TorchvisionRcnn) -> None:
    cfg = compose_cfg(["pipeline=quant", "pipeline.n_symbols=3", "pipeline.z=1.0", "pipeline.levels=p2-p5"])
    pipe = build_pipeline(cfg, model)
    assert isinstance(pipe, FeatureCodingPipeline) and isinstance(pipe.codec, NormalizedQuantizer)
    assert (pipe.codec.n_symbols, pipe.codec.z, pipe.codec.levels) == (3, 1.0, ("p2", "p3", "p4", "p5"))
    assert pipe.params["n_symbols"] == 3 and pipe.params["z"] == 1.0
    eight = build_pipeline(compose_cfg(["pipeline=quant8"]), model)
    assert isinstance(eight, FeatureCodingPipeline) and isinstance(eight.codec, Uniform8bitQuantizer)
    with pytest.raises(Exception, match="n_symbol"):
        compose_cfg(["pipeline=quant", "pipeline.n_symbol=3"])  # a typo fails at composition
    with pytest.raises(ConfigError, match="n_symbols=1"):
        build_pipeline(compose_cfg(["pipeline=quant", "pipeline.n_symbols=1"]), model)


def _fake_run(tmp_path: Path, name: str, row: dict, records: list[dict]) -> dict:
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return {**row, "run_dir": str(run_dir)}


def test_quant_table_has_the_paper_layout(tmp_path: Path) -> None:
    px, values = 1000, 2000
    rows = [
        _fake_run(
            tmp_path,
            "q4",
            {"pipeline": "quant", "n_symbols": 4, "z": 1.5, "segm_AP": 30.0, "bpp": 3.0},
            [{"pixels": px, "raw_bits": 2 * values, "values": values}],
        ),
        _fake_run(
            tmp_path,
            "q3",
            {"pipeline": "quant", "n_symbols": 3, "z": 0.5, "segm_AP": 20.0, "bpp": 2.4},
            [{"pixels": px, "raw_bits": 2 * values, "values": values}],
        ),
        _fake_run(
            tmp_path,
            "q8",
            {"pipeline": "quant8", "segm_AP": 39.0, "bpp": 16.1},
            [{"pixels": px, "raw_bits": 8 * values, "values": values}],
        ),
        {"pipeline": "uncompressed", "segm_AP": 40.0, "bpp": float("nan")},
        {"pipeline": "image_anchor", "qp": 32, "segm_AP": 35.0, "bpp": 0.5},
    ]
    table = quant_table(rows, metric="segm_AP")
    assert list(table["features"]) == ["float32 features", "8-bit features", "4 symbols (2 bit)", "3 symbols (1-2 bit)"]
    np.testing.assert_allclose(table["data_ratio"], [32 * 2 / 24, 8 * 2 / 24, 2 * 2 / 24, 2 * 2 / 24])
    np.testing.assert_allclose(table["coded_ratio"].iloc[1:], [16.1 / 24, 3.0 / 24, 2.4 / 24])
    assert list(table["mAP"]) == [40.0, 39.0, 30.0, 20.0]
    assert list(table["paper_mAP"]) == [36.4809, 36.4617, 35.4592, 22.8162]
    paths = write_quant_table(rows, tmp_path, metric="segm_AP")
    assert [p.name for p in paths] == ["quant_table.csv", "quant_table.md"]
    assert "| 4 symbols (2 bit) | 4 | 1.5 | 30.00 |" in paths[1].read_text()


@pytest.mark.slow
def test_cli_sweep_end_to_end(tmp_path: Path, hydra_conf: None) -> None:
    """uncompressed, quant8 and two quant runs on 2 synthetic images, then the table (real network)."""
    from vcm_eval.engine.run import run_single

    base = [
        "model.weights=null",
        "dataset.size=2",
        f"paths.results={tmp_path}/res",
        f"paths.data={tmp_path}/data",
        "progress=false",
        "workers=1",
    ]
    rows = [
        run_single(compose_cfg(base + extra))
        for extra in (
            ["pipeline=uncompressed"],
            ["pipeline=quant8"],
            ["pipeline=quant", "pipeline.z=0.5"],
            ["pipeline=quant", "pipeline.z=2.0"],
        )
    ]
    table = quant_table(rows)
    assert len(table) == 4
    q = table[table["n_symbols"] == 4]
    assert (q["data_ratio"] == 2 * 2_793_472 / (256 * 512 * 24)).all()
    assert q["bpp"].iloc[0] > q["bpp"].iloc[1]  # z = 0.5 costs more than z = 2.0
    # the report command writes the same table beside its others (no second CLI)
    from vcm_eval.report.report import run_report

    report_overrides = [
        f"report.runs={tmp_path}/res",
        f"report.output={tmp_path}/report",
        "report.plot=false",
        "report.anchor=quant8",
    ]
    result = run_report(compose(config_name="report", overrides=report_overrides))
    written = pd.read_csv(tmp_path / "report" / "quant_table.csv")
    assert tmp_path / "report" / "quant_table.md" in result.files
    expected = pd.read_csv(
        io.StringIO(quant_table(rows, metric="segm_AP").to_csv(index=False))
    )  # through CSV like the file
    pd.testing.assert_frame_equal(written, expected)


def test_identical_streams_in_flight_both_keep_their_byte_split(feats: FeatureSet) -> None:
    """workers=2 can encode two images with identical bytes before either is reported: both records keep every field."""
    from concurrent.futures import ThreadPoolExecutor

    codec = NormalizedQuantizer(4, 1.5)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(codec.encode, [feats, feats])
    assert first == second
    reports = [codec.report(feats, first), codec.report(feats, second)]
    assert reports[0] == reports[1] and {"symbol_bits", "side_bits", "modes", "raw_bits"} <= set(reports[1])
    assert reports[0]["symbol_bits"] + reports[0]["side_bits"] == 8 * len(first)


@pytest.mark.parametrize("centroids", ["channel", "level"])
def test_decoded_values_equal_the_reconstruction_with_and_without_empty_cells(centroids: str) -> None:
    # p2 fills every (channel, symbol) cell: the decoder writes values while decoding the symbols;
    # p3 has a constant channel (one cell used): symbols first, cells counted and checked, then looked up
    f = tiny(3, {"p2": (20, 24, 40), "p3": (20, 12, 20), "p4": (8, 6, 10), "p5": (8, 3, 5), "p6": (8, 2, 3)})
    levels = dict(f.levels)
    levels["p3"] = levels["p3"].clone()
    levels["p3"][5] = 2.5
    f = f.replace(levels)
    q = NormalizedQuantizer(4, 1.0, centroids=centroids, chunk_log2=10)
    assert (q.quantize_level("p2", f["p2"]).counts > 0).all()
    assert not (q.quantize_level("p3", f["p3"]).counts > 0).all() or centroids == "level"
    data = q.encode(f)
    decoded, expected = q.decode(data), q.reconstruct(f)
    for k in LEVELS:
        assert torch.equal(decoded[k], expected[k]), k
    for k, v in q.decode_symbols(data).items():
        np.testing.assert_array_equal(v, q.symbols(f)[k])


def test_static_model_from_the_quantizers_own_counts_is_the_counted_one(feats: FeatureSet) -> None:
    q = NormalizedQuantizer(4, 1.5, entropy_model="static")
    for k in LEVELS:
        level = q.quantize_level(k, feats[k])
        counted = encode_symbols(level.symbols, 4, model="static", chunk_log2=q.chunk_log2)
        given = encode_symbols(
            level.symbols, 4, model="static", chunk_log2=q.chunk_log2, histogram=level.counts.sum(axis=0)
        )
        assert given.payload == counted.payload and counted.mode == "static"
