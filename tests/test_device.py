"""``device=auto|cpu|cuda[:N]``: same records on a CPU machine, one-line errors, device-free bitstreams."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import compose_cfg

from vcm_eval.device import resolve_device
from vcm_eval.engine.run import run_key, run_single
from vcm_eval.errors import ConfigError

SMALL = [
    "pipeline=uncompressed", "model.weights=null", "model.min_size=128", "model.max_size=256",
    "model.detections_per_img=20", "dataset.size=2", "dataset.height=128", "dataset.width=256", "workers=1",
    "threads=1", "progress=false",
]  # fmt: skip


def test_auto_resolves_to_the_cpu_here_and_reuses_its_run(
    hydra_conf: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: auto means cuda here (test_fusion_bitstream_decodes_on_either_device covers it)")
    paths = [f"paths.results={tmp_path / 'results'}", f"paths.data={tmp_path / 'data'}"]
    cpu = run_single(compose_cfg([*SMALL, "device=cpu", *paths]))
    auto = run_single(compose_cfg([*SMALL, "device=auto", *paths]))
    assert auto["run_dir"] == cpu["run_dir"]  # the resolved device is what the key holds: one run, not two
    assert "done already, skipped" in capsys.readouterr().out


def test_the_device_kind_is_in_the_run_key(hydra_conf: None) -> None:
    cfg = compose_cfg(SMALL)
    keys = {device: run_key(cfg, {"model": "m", "device": device}) for device in ("cpu", "cuda")}
    assert keys["cpu"] != keys["cuda"]  # GPU kernels differ in their last bits: never one another's records


@pytest.mark.parametrize(("spec", "message"), [("gpu", "device='gpu' is unknown"), ("cuda:x", "is unknown")])
def test_bad_device_is_a_one_line_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_device(spec)


def test_cuda_without_a_gpu_names_the_fix() -> None:
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
        return
    with pytest.raises(ConfigError, match="use device=cpu or device=auto"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="cross-device check needs a CUDA GPU (none here)")
def test_fusion_bitstream_decodes_on_either_device(hydra_conf: None) -> None:
    from vcm_eval.data.config import SyntheticSpec
    from vcm_eval.data.synthetic import scene_for
    from vcm_eval.pipelines.build import build_codec
    from vcm_eval.vision.registry import build_task_model

    cfg = compose_cfg(["pipeline=fusion_codec", "device=cpu"])
    feats = build_task_model(cfg.model).features(scene_for(SyntheticSpec(), "val", 0).image)
    codecs = {d: build_codec(compose_cfg(["pipeline=fusion_codec", f"device={d}"])) for d in ("cpu", "cuda")}
    for enc, dec in (("cpu", "cuda"), ("cuda", "cpu")):
        data = codecs[enc].encode(feats)
        a, b = codecs[dec].decode(data), codecs[enc].decode(data)
        for name in a.levels:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-4)
