"""The MSFC comparator (``pipeline=msfc``): its modules' shapes, real VVC round trips, the container, a run.

The codec tests use the shipped checkpoint (vcm_eval/codecs/msfc/zoo) on the default task model's
features of the synthetic val image 0 (512 x 256: P2 64 x 128, the code 64 x 8 x 16), with VVenC at
the ``faster`` preset (the bytes differ from the default ``medium``, the format does not).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import compose_cfg
from omegaconf import OmegaConf

from vcm_eval.codecs.bitstream import CODEC_IDS, BitstreamReader, BitstreamWriter
from vcm_eval.codecs.msfc import zoo
from vcm_eval.codecs.msfc.codec import FORMAT_VERSION, MsfcFeatureCodec, float16_range
from vcm_eval.codecs.msfc.model import MsfcModel, level_sizes
from vcm_eval.codecs.msfc.train import MsfcObjective
from vcm_eval.codecs.vvc.encoder import VvcEncoder
from vcm_eval.codecs.vvc.headers import slice_qps
from vcm_eval.data.train_stream import CropBatch
from vcm_eval.engine.run import run_single
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.pipelines.build import build_codec
from vcm_eval.vision.base import FeatureSet
from vcm_eval.vision.config import RcnnConfig
from vcm_eval.vision.registry import build_task_model

DEFAULT = zoo.zoo_path("synthetic_maskrcnn_slim")


def pyramid(p2: tuple[int, int], *, batch: int = 1, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 256, h, w, generator=g) for h, w in level_sizes(p2)]


@pytest.fixture(scope="module")
def features(val_image: np.ndarray) -> FeatureSet:
    """The default task model's P2..P6 of the synthetic val image 0."""
    return build_task_model(OmegaConf.structured(RcnnConfig())).features(val_image)


@pytest.fixture(scope="module")
def fast_vvc() -> VvcEncoder:
    return VvcEncoder(preset="faster")


@pytest.fixture(scope="module")
def shipped() -> MsfcModel:
    model, _ = zoo.load(DEFAULT)
    return model


@pytest.mark.parametrize(
    ("scale", "msff"), [("p5", "bottom_up"), ("p4", "bottom_up"), ("p5", "direct"), ("p4", "direct")]
)
@pytest.mark.parametrize("p2", [(32, 48), (17, 23)])
def test_modules_rebuild_p2_to_p5_of_the_input_sizes(scale: str, msff: str, p2: tuple[int, int]) -> None:
    model = MsfcModel(channels=16, code_channels=8, scale=scale, msff=msff).eval()
    levels = pyramid(p2, batch=2)
    with torch.no_grad():
        code = model.fuse(levels)
        out = model.reconstruct(code, p2)
    target = 3 if scale == "p5" else 2
    assert tuple(code.shape) == (2, 8, *level_sizes(p2)[target]) == (2, 8, *model.code_size(p2))
    assert float(code.abs().max()) <= 1.0  # SSFC's tanh: the min-max range never exceeds [-1, 1]
    assert [tuple(x.shape) for x in out] == [tuple(x.shape) for x in levels]


def test_the_shipped_modules_round_trip_the_default_pyramid(shipped: MsfcModel, features: FeatureSet) -> None:
    levels = [features[k][None] for k in ("p2", "p3", "p4", "p5")]
    with torch.no_grad():
        code = shipped.fuse(levels)
        out = shipped.reconstruct(code, (64, 128))
    assert tuple(code.shape) == (1, 64, 8, 16)  # 8 192 values for the 2.8 M of P2..P5
    for name, x, y in zip(("p2", "p3", "p4", "p5"), levels, out):
        assert y.shape == x.shape
        nmse = float(((y - x) ** 2).mean() / x.var())
        assert nmse < 0.25, name  # without VVC: the modules alone


def test_the_shipped_checkpoint_fits_the_budget_and_has_its_loss_log() -> None:
    assert DEFAULT.stat().st_size <= 10 * 10**6
    _, meta = zoo.load(DEFAULT)
    assert meta["task_model"] == "synthetic_maskrcnn_slim" and meta["iterations_done"] == meta["train"]["iterations"]
    with open(zoo.log_path(DEFAULT), newline="") as f:
        rows = list(csv.DictReader(f))
    assert int(rows[-1]["iteration"]) == meta["train"]["iterations"]
    first, last = (float(np.mean([float(r["loss"]) for r in part])) for part in (rows[:5], rows[-5:]))
    assert last < 0.5 * first


def test_round_trip_with_a_real_vvc_stream(shipped: MsfcModel, features: FeatureSet, fast_vvc: VvcEncoder) -> None:
    codec = MsfcFeatureCodec(model=shipped, vvc=fast_vvc, qp=32, checkpoint=DEFAULT)
    data = codec.encode(features)
    with BitstreamReader(data, "msfc") as r:
        assert (r.version, CODEC_IDS["msfc"]) == (FORMAT_VERSION, data[0] >> 4)
        assert (r.uint(), r.uint()) == features.image_size
        assert r.uint() == 1  # input == image, P2 = input / 4 exactly
        assert (r.uint(), r.uint(), r.uint()) == (64, 8, 16)
        lo, hi = r.floats(2, dtype="float16")
        payload = r.blob()
    code = codec.code(features)
    assert lo <= float(code.min()) and float(code.max()) <= hi and hi - lo < 1.05 * float(code.max() - code.min())
    assert slice_qps(payload, fast_vvc.ffmpeg) == [32]  # the configured QP is the coded slice QP
    assert codec.report(features, data) == {
        "container_bytes": len(data) - len(payload), "vvc_bytes": len(payload), "frame_height": 64, "frame_width": 128,
    }  # fmt: skip
    assert len(data) - len(payload) == 15  # tag 1, sizes 2 + 2, form 1, code shape 3, float16 range 4, length 2
    decoded = codec.decode(data)
    assert list(decoded) == ["p2", "p3", "p4", "p5"]
    assert (decoded.image_size, decoded.input_size) == (features.image_size, features.input_size)
    with torch.no_grad():
        direct = shipped.reconstruct(code[None], (64, 128))
    for name, ref in zip(decoded, direct):
        assert decoded[name].shape == features[name].shape and decoded[name].dtype == torch.float32
        # VVC's error on the code moves the reconstruction a little; the modules do the rest
        assert float(((decoded[name] - ref[0]) ** 2).mean()) < 0.25 * float(((ref[0] - features[name]) ** 2).mean())
    assert "sha256:" in codec.version() and DEFAULT.name in codec.version()


@pytest.mark.slow
def test_rate_falls_and_error_grows_with_qp(shipped: MsfcModel, features: FeatureSet, fast_vvc: VvcEncoder) -> None:
    sizes, errors = [], []
    for qp in (22, 47):
        codec = MsfcFeatureCodec(model=shipped, vvc=fast_vvc, qp=qp)
        data = codec.encode(features)
        out = codec.decode(data)
        sizes.append(len(data))
        errors.append(float(((out["p2"] - features["p2"]) ** 2).mean()))
    assert sizes[0] > 4 * sizes[1]  # measured on 3 images: 0.265 and 0.049 bpp
    assert errors[0] < errors[1]


def test_truncated_extended_or_inconsistent_streams_raise(
    shipped: MsfcModel, features: FeatureSet, fast_vvc: VvcEncoder
) -> None:
    codec = MsfcFeatureCodec(model=shipped, vvc=fast_vvc, qp=37)
    data = codec.encode(features)
    for bad in (b"", data[:1], data[:10], data[: len(data) // 2], data[:-1], data + b"\x00"):
        with pytest.raises(CodecError):
            codec.decode(bad)
    r = BitstreamReader(data, "msfc")
    sizes = [r.uint() for _ in range(3)]
    _, lo_hi, payload = [r.uint() for _ in range(3)], r.floats(2, dtype="float16"), r.blob()

    def stream(code_shape: tuple[int, int, int], lohi: np.ndarray) -> bytes:
        w = BitstreamWriter("msfc", version=FORMAT_VERSION)
        for v in (*sizes, *code_shape):
            w.uint(v)
        w.floats(lohi, dtype="float16")
        w.blob(payload)
        return w.getvalue()

    assert (
        codec.decode(stream((64, 8, 16), lo_hi)).shapes() == codec.decode(data).shapes()
    )  # the rebuilt stream is valid
    with pytest.raises(CodecError, match=r"a code of \(64, 9, 16\); this checkpoint makes \(64, 8, 16\)"):
        codec.decode(stream((64, 9, 16), lo_hi))
    with pytest.raises(CodecError, match="min-max range"):
        codec.decode(stream((64, 8, 16), np.asarray([1.0, np.inf])))
    with pytest.raises(CodecError, match="written by codec 'fusion', not 'msfc'"):
        codec.decode(bytes([CODEC_IDS["fusion"] << 4 | 2]) + data[1:])


def test_encode_refuses_features_it_cannot_code(shipped: MsfcModel, features: FeatureSet, fast_vvc: VvcEncoder) -> None:
    codec = MsfcFeatureCodec(model=shipped, vvc=fast_vvc, qp=37)
    with pytest.raises(CodecError, match=r"lack \['p3'\]"):
        codec.encode(features.replace({k: v for k, v in features.items() if k != "p3"}))
    broken = dict(features.items())
    broken["p4"] = broken["p4"].clone()
    broken["p4"][0, 0, 0] = float("nan")
    with pytest.raises(CodecError, match="p4 holds NaN"):
        codec.encode(features.replace(broken))


def test_float16_range_holds_the_float32_range() -> None:
    lo, hi = float16_range(-0.7310001, 0.9990001)
    assert lo <= -0.7310001 and hi >= 0.9990001 and np.float16(lo) == lo and np.float16(hi) == hi
    assert float16_range(-1.0, 1.0) == (-1.0, 1.0)
    with pytest.raises(CodecError, match="does not fit float16"):
        float16_range(-1e6, 1.0)


def test_pipeline_config_builds_the_codec_with_the_vvc_group(hydra_conf: None) -> None:
    codec = build_codec(compose_cfg(["pipeline=msfc", "pipeline.qp=41", "vvc.preset=faster"]))
    assert isinstance(codec, MsfcFeatureCodec) and codec.qp == 41 and codec.vvc.preset == "faster"
    assert codec.checkpoint == DEFAULT and codec.rate_params == ("qp",) and MsfcFeatureCodec.reads == ("vvc", "model")
    with pytest.raises(ConfigError, match="QP 64"):
        build_codec(compose_cfg(["pipeline=msfc", "pipeline.qp=64"]))


def test_objective_weights_levels_and_counts_only_the_valid_region() -> None:
    model = MsfcModel(channels=8, code_channels=4)
    levels = pyramid((16, 16), batch=2)
    terms = MsfcObjective(model, level_weights=[1.0, 0.0, 0.0, 0.0])(CropBatch(levels))
    assert torch.allclose(terms["loss"], terms["mse_p2"]) and set(terms) == {
        "loss",
        "mse",
        "mse_p2",
        "mse_p3",
        "mse_p4",
        "mse_p5",
    }
    valid = MsfcObjective(model, level_weights=[1.0, 0.0, 0.0, 0.0])(CropBatch(levels, valid=(9, 16)))
    with torch.no_grad():
        out = model(levels)["levels"][0]
    assert torch.allclose(valid["mse_p2"], ((out - levels[0]) ** 2)[..., :9, :].mean())
    with pytest.raises(ConfigError, match="level_weights"):
        MsfcObjective(model, level_weights=[1.0, 1.0])


@pytest.mark.slow  # 15-40 s: dataset, task model, 2 images coded, evaluated, complexity counted
def test_a_run_of_two_images_gives_records_and_metrics(hydra_conf: None, tmp_path: Path) -> None:
    """``python -m vcm_eval pipeline=msfc pipeline.qp=37`` on 2 synthetic val images."""
    cfg = compose_cfg([
        "pipeline=msfc", "pipeline.qp=37", "vvc.preset=faster", "dataset.size=2", "workers=1", "progress=false",
        f"paths.results={tmp_path / 'results'}", f"paths.data={tmp_path / 'data'}",
    ])  # fmt: skip
    row = run_single(cfg)
    run_dir = Path(row["run_dir"])
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for rec in records:
        kept = (run_dir / "bitstreams" / f"{rec['image_id']}.bin").read_bytes()
        assert rec["bits"] == 8 * len(kept)  # every byte, the container's side information included
        assert rec["container_bytes"] + rec["vvc_bytes"] == len(kept)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == row and metrics["images"] == 2.0
    assert metrics["bpp"] == pytest.approx(sum(r["bits"] for r in records) / sum(r["pixels"] for r in records))
    assert 0 <= metrics["bbox_AP"] <= 100 and 0 <= metrics["segm_AP"] <= 100


def test_training_writes_a_loadable_checkpoint_and_resumes(
    hydra_conf: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The training command on 2 images, tiny modules: checkpoint, loss log beside it, a resumed run."""
    from hydra import compose

    from vcm_eval.codecs.msfc.train import train
    from vcm_eval.data.train_stream import CropStream

    def run(iterations: int, name: str = "work") -> Path:
        return train(compose(config_name="train_msfc", overrides=[
            "train.train_images=2", f"train.iterations={iterations}", "train.batch_size=2", "train.checkpoint_every=2",
            "train.log_every=1", "arch.channels=8", "arch.code_channels=4", "progress=false", "threads=1",
            f"train.workdir={tmp_path / name}", f"train.output={tmp_path / name / 'msfc.pt'}",
        ]))  # fmt: skip

    out = run(2)
    model, meta = zoo.load(out)
    assert (model.code_channels, meta["iterations_done"]) == (4, 2)
    out = run(3)  # resumes at iteration 2 of the work dir
    _, meta = zoo.load(out)
    with open(zoo.log_path(out), newline="") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [1, 2, 3]
    assert meta["iterations_done"] == 3
    run(3, "straight")  # never stopped; "killed" dies in iteration 3 after its checkpoint at 2, then resumes
    batch_at = CropStream.batch_at

    def dies_in_3(self: CropStream, it: int) -> Any:
        if it == 2:
            raise KeyboardInterrupt("killed")
        return batch_at(self, it)

    monkeypatch.setattr(CropStream, "batch_at", dies_in_3)
    with pytest.raises(KeyboardInterrupt):
        run(3, "killed")
    monkeypatch.setattr(CropStream, "batch_at", batch_at)
    run(3, "killed")
    a, b = (torch.load(tmp_path / d / "last.pt", weights_only=True) for d in ("straight", "killed"))
    assert a["iteration"] == b["iteration"] == 3 and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
