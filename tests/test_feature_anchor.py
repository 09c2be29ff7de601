"""The feature anchor end to end on real libvvenc / FFmpeg-vvc bitstreams: header, rate, quality, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg
from hydra.errors import ConfigCompositionException

from vcm_eval.codecs.bitstream import BitstreamReader
from vcm_eval.codecs.feature_anchor.codec import FeatureVvcCodec
from vcm_eval.codecs.feature_anchor.tiling import plan_layout
from vcm_eval.codecs.vvc.encoder import VvcEncoder
from vcm_eval.data.config import SyntheticSpec
from vcm_eval.data.sample import Sample
from vcm_eval.data.synthetic import scene_for
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.pipelines.base import FeatureCodingPipeline
from vcm_eval.pipelines.build import build_pipeline
from vcm_eval.vision.base import LEVELS, FeatureSet
from vcm_eval.vision.registry import build_task_model
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, resolve_weights

ZOO = resolve_weights(RcnnConfig().weights or "")


def smooth_pyramid(
    channels: int = 16, height: int = 16, width: int = 24, *, image_size: tuple[int, int] = (64, 96)
) -> FeatureSet:
    """Small FPN-like levels p2..p6 (halving, rounding up): smooth maps plus a little noise."""
    g = torch.Generator().manual_seed(1)
    levels, h, w = {}, height, width
    for name in LEVELS:
        yy, xx = torch.meshgrid(torch.linspace(0, 3, h), torch.linspace(0, 3, w), indexing="ij")
        phase = torch.rand(channels, 1, 1, generator=g) * 6
        levels[name] = torch.sin(xx + phase) * torch.cos(yy - phase) * 2 + 0.05 * torch.randn(
            channels, h, w, generator=g
        )
        h, w = -(-h // 2), -(-w // 2)
    return FeatureSet(levels=levels, image_size=image_size, input_size=(4 * height, 4 * width))


def test_header_round_trips_and_is_in_the_rate(vvc: VvcEncoder) -> None:
    feats = smooth_pyramid(image_size=(61, 95))
    codec = FeatureVvcCodec(vvc=vvc, qp=27, levels="p2-p5", minmax="level", chroma="400")
    data = codec.encode(feats)
    r = BitstreamReader(data, "feature_vvc")
    assert r.version == 1
    assert (r.uint(), r.uint(), r.uint(), r.uint()) == (61, 95, 64, 96)
    assert r.uint() == 0b11  # minmax=level, chroma=400
    assert r.uint() == 4
    shapes = {LEVELS[r.uint()]: (r.uint(), r.uint(), r.uint()) for _ in range(4)}
    assert shapes == {k: v for k, v in feats.shapes().items() if k != "p6"}
    lohi = r.floats(8).reshape(4, 2)
    for (lo, hi), name in zip(lohi, shapes):
        assert (lo, hi) == (np.float32(feats[name].min()), np.float32(feats[name].max()))
    header_len = len(data) - len(r.blob())  # the VVC payload runs to the very end ...
    r.done()
    payload = data[header_len:]
    assert payload[:4] == b"\x00\x00\x00\x01" or payload[:3] == b"\x00\x00\x01"  # ... and is raw Annex-B VVC
    report = codec.report(feats, data)
    assert report["header_bytes"] == header_len < 80
    layout = plan_layout(shapes, image_size=(61, 95), input_size=(64, 96))
    assert (report["frame_height"], report["frame_width"]) == (layout.height, layout.width)
    # the header costs bytes in the rate: a tensor-wide range needs 3 pairs (24 bytes) less
    tensor = FeatureVvcCodec(vvc=vvc, qp=27, levels="p2-p5", minmax="tensor", chroma="400")
    assert tensor.report(feats, tensor.encode(feats))["header_bytes"] == header_len - 24


@pytest.mark.parametrize(("levels", "chroma"), [("p2-p5", "400"), ("p2-p6", "420")])
def test_round_trip_at_low_qp_is_close(vvc: VvcEncoder, levels: str, chroma: str) -> None:
    feats = smooth_pyramid()
    codec = FeatureVvcCodec(vvc=vvc, qp=4, levels=levels, minmax="tensor", chroma=chroma)
    out = codec.decode(codec.encode(feats))
    assert list(out) == (["p2", "p3", "p4", "p5"] if levels == "p2-p5" else list(LEVELS))
    assert out.image_size == feats.image_size and out.input_size == feats.input_size
    lo, hi = min(float(t.min()) for t in feats.values()), max(float(t.max()) for t in feats.values())
    step = (hi - lo) / 1023
    for name in out:
        assert out[name].dtype == torch.float32 and out[name].shape == feats[name].shape
        err = (out[name] - feats[name]).abs()
        assert float(err.mean()) < 1.5 * step  # QP 4 keeps features within about one 10-bit step
        assert float(err.max()) < 12 * step


def test_rate_falls_and_error_grows_with_qp(vvc: VvcEncoder) -> None:
    feats = smooth_pyramid(32, 24, 40)
    sizes, errors = [], []
    for qp in (12, 32, 47):
        codec = FeatureVvcCodec(vvc=vvc, qp=qp, levels="p2-p5")
        data = codec.encode(feats)
        out = codec.decode(data)
        sizes.append(len(data))
        errors.append(float(torch.cat([(out[k] - feats[k]).flatten() for k in out]).pow(2).mean()))
    assert sizes[0] > 2 * sizes[1] > 4 * sizes[2]
    assert errors[0] < errors[1] < errors[2]


def test_monochrome_and_420_streams_both_decode(vvc: VvcEncoder) -> None:
    feats = smooth_pyramid()
    outs = {}
    for chroma in ("400", "420"):
        codec = FeatureVvcCodec(vvc=vvc, qp=22, chroma=chroma)
        data = codec.encode(feats)
        outs[chroma] = codec.decode(data)
        payload = data[codec.report(feats, data)["header_bytes"] :]
        # the decoder reads the format from the header; decoding the 4:0:0 stream as luma-only frames must fit exactly
        layout = plan_layout(
            {k: feats.shapes()[k] for k in ("p2", "p3", "p4", "p5")}, image_size=(64, 96), input_size=(64, 96)
        )
        picture = vvc.decode(payload, layout.height, layout.width, chroma=chroma)
        assert picture.y.shape == (layout.height, layout.width)
    for name in outs["400"]:
        assert float((outs["400"][name] - outs["420"][name]).abs().mean()) < 0.05


def test_odd_sizes_and_constant_level(vvc: VvcEncoder) -> None:
    levels = {
        "p2": torch.linspace(-3, 5, 7 * 9 * 11).reshape(7, 9, 11),  # 7 channels (3 x 3 grid), odd H and W
        "p3": torch.full((7, 5, 6), -1.25),  # max == min
        "p4": torch.linspace(0, 1, 7 * 3 * 3).reshape(7, 3, 3),
        "p5": torch.linspace(1, 2, 7 * 2 * 2).reshape(7, 2, 2),
    }
    feats = FeatureSet(levels=levels, image_size=(35, 43), input_size=(36, 44))
    codec = FeatureVvcCodec(vvc=vvc, qp=10, minmax="level")
    out = codec.decode(codec.encode(feats))
    assert out.shapes() == feats.shapes() and out.image_size == (35, 43)
    assert torch.equal(out["p3"], levels["p3"])  # documented: a constant level is restored exactly
    assert float((out["p2"] - levels["p2"]).abs().max()) < 0.2


def test_bad_input_raises(vvc: VvcEncoder) -> None:
    feats = smooth_pyramid()
    codec = FeatureVvcCodec(vvc=vvc, qp=32)
    broken = feats.replace({k: v.clone() for k, v in feats.items()})
    broken.levels["p3"][0, 1, 2] = float("nan")
    with pytest.raises(CodecError, match="level p3 has 1 NaN/inf"):
        codec.encode(broken)
    with pytest.raises(CodecError, match=r"lack levels \['p6'\]"):
        FeatureVvcCodec(vvc=vvc, qp=32, levels="p2-p6").encode(
            feats.replace({k: v for k, v in feats.items() if k != "p6"})
        )
    # truncated or foreign streams: tests/test_codec_contract.py and tests/test_fuzz.py
    with pytest.raises(ConfigError, match="levels='p3-p5' is unknown; use one of \\['p2-p5', 'p2-p6'\\]"):
        FeatureVvcCodec(vvc=vvc, qp=32, levels="p3-p5")
    with pytest.raises(ConfigError, match="minmax='channel' is unknown"):
        FeatureVvcCodec(vvc=vvc, qp=32, minmax="channel")
    with pytest.raises(ConfigError, match="outside 0..63"):
        FeatureVvcCodec(vvc=vvc, qp=64)


def test_pipeline_from_config_counts_every_byte(hydra_conf: None) -> None:
    # the network sees the image at 64 x 128 (P2 16 x 32), which keeps the VVC frame small (384 x 512)
    small = ["model.weights=null", "model.min_size=64", "model.max_size=128"]
    cfg = compose_cfg(["pipeline=feature_anchor", "pipeline.qp=37", "pipeline.levels=p2-p5", *small])
    torch.manual_seed(0)
    model = build_task_model(cfg.model)
    pipeline = build_pipeline(cfg, model)
    assert isinstance(pipeline, FeatureCodingPipeline) and isinstance(pipeline.codec, FeatureVvcCodec)
    assert pipeline.params == {"qp": 37, "levels": "p2-p5", "minmax": "tensor", "chroma": "400"}
    image = scene_for(SyntheticSpec(), "val", 0).image
    result = pipeline.process(Sample(image_id=1, image=image, path=Path("x.png")))
    data = pipeline.codec.encode(model.features(image))  # libvvenc with one thread is deterministic
    assert result.bits == 8 * len(data)
    assert result.pixels == 256 * 512
    assert result.extra["header_bytes"] == pipeline.codec.report(model.features(image), data)["header_bytes"]
    assert (result.extra["frame_height"], result.extra["frame_width"]) == (384, 512)
    assert result.instances.masks is not None and result.instances.masks.shape[1:] == (256, 512)


def test_bad_pipeline_config_fails_before_running(hydra_conf: None) -> None:
    with pytest.raises(ConfigCompositionException) as failed:
        compose_cfg(["pipeline=feature_anchor", "pipeline.levels=p2-p4"])  # a typo fails when composed
    assert "Invalid value 'p2-p4', expected one of [p2-p5, p2-p6]" in str(failed.value.__cause__)
    with pytest.raises(Exception, match="quality"):
        compose_cfg(["pipeline=feature_anchor", "pipeline.quality=3"])


@pytest.mark.slow
@pytest.mark.skipif(not ZOO.is_file(), reason=f"needs the trained task model {ZOO}")
def test_low_qp_map_within_one_point_of_uncompressed(hydra_conf: None, tmp_path: Path) -> None:
    """24 synthetic val images, VVenC ``faster`` (the main job's; ``medium`` takes 45 s a frame here): slice QP 9
    keeps box and mask AP within 1 point.

    Measured when written (12 images, "QP 12" under the old convention, VVenC's IntraQPOffset -3 left on: slice
    QP 9): uncompressed bbox/segm AP 67.58/62.00, coded 67.95/62.08 (43.9 bpp). Since the QP is the coded slice
    QP (docs/anchors.md), that point is ``pipeline.qp=9``; QP 12 now costs 1.26 mask AP on these 24 images.
    On only 6 images AP moves by more than a point between near-identical predictions.
    """
    from vcm_eval.engine.run import run_single

    common = [
        f"dataset.root={tmp_path / 'synthetic'}",
        "dataset.size=24",
        f"paths.results={tmp_path / 'results'}",
        "progress=false",
    ]
    ref = run_single(compose_cfg(["pipeline=uncompressed", *common]))
    coded = run_single(
        compose_cfg(["pipeline=feature_anchor", "pipeline.qp=9", "pipeline.levels=p2-p5", "vvc.preset=faster", *common])
    )
    assert ref["segm_AP"] > 10.0  # the trained model detects something, so the comparison means something
    assert abs(coded["segm_AP"] - ref["segm_AP"]) <= 1.0
    assert abs(coded["bbox_AP"] - ref["bbox_AP"]) <= 1.0
    assert coded["bpp"] > 0
