"""Feature cache and kept bitstreams: the same bits as a fresh run, shared across a sweep and
across processes, robust to damaged entries; stored bitstreams are decoded on a rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg

from vcm_eval.codecs.quant.nsymbol import NormalizedQuantizer
from vcm_eval.data.sample import Sample
from vcm_eval.data.synthetic import SyntheticSpec, scene_for
from vcm_eval.engine.run import run_single
from vcm_eval.errors import CodecError, VcmEvalError
from vcm_eval.pipelines.base import FeatureCodingPipeline, UncompressedPipeline
from vcm_eval.pipelines.cache import BitstreamStore, FeatureCache, StoredBitstream, image_digest
from vcm_eval.vision.base import FeatureSet, Instances
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, TorchvisionRcnn

# A real (random-init, deterministic) Mask R-CNN on 64 x 128 images: fast on two cores.
TINY = {
    "weights": None,
    "min_size": 64,
    "max_size": 128,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 50,
    "detections_per_img": 10,
}
SMALL_RUN = [
    "model.weights=null", "model.min_size=64", "model.max_size=128", "model.rpn_pre_nms_top_n_test=100",
    "model.rpn_post_nms_top_n_test=50", "model.detections_per_img=10", "dataset.size=2", "dataset.height=64",
    "dataset.width=128", "threads=1", "workers=1", "progress=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def model() -> TorchvisionRcnn:
    torch.set_num_threads(1)
    return TorchvisionRcnn(RcnnConfig(**TINY))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return scene_for(SyntheticSpec(height=64, width=128), "val", 3).image


def same_features(a: FeatureSet, b: FeatureSet) -> bool:
    return (
        list(a) == list(b)
        and all(torch.equal(a[k], b[k]) for k in a)
        and (a.image_size, a.input_size) == (b.image_size, b.input_size)
    )


def same_instances(a: Instances, b: Instances) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("boxes", "scores", "labels", "masks"))


def test_cached_features_are_bit_identical_and_extracted_once(
    tmp_path: Path, model: TorchvisionRcnn, image: np.ndarray
) -> None:
    fresh = model.features(image)
    cache = FeatureCache(root=tmp_path, model=model, max_gb=1)
    cold, warm = cache.features(image), cache.features(image)
    assert (cache.misses, cache.hits) == (1, 1)
    assert same_features(cold, fresh) and same_features(warm, fresh)
    assert all(t.dtype == torch.float32 for t in warm.levels.values())
    entry = cache.path_for(image)
    isa = os.environ["DNNL_MAX_CPU_ISA"].lower()  # pinned by conftest as by every command: it moves the features
    torch_version = torch.__version__.split("+")[0]
    assert entry.parent == tmp_path / "features" / model.fingerprint / f"eval-t1-{isa}-torch{torch_version}"
    assert entry.name == f"{image_digest(image)}.npz"
    # a second cache object (another run of the sweep) reads the same entry
    again = FeatureCache(root=tmp_path, model=model, max_gb=1)
    assert same_features(again.features(image), fresh) and (again.hits, again.misses) == (1, 0)
    # the detections from cached features are those of the unsplit network
    assert same_instances(model.predict_from_features(warm), model.predict(image))


def test_key_changes_with_pixels_and_thread_count(tmp_path: Path, model: TorchvisionRcnn, image: np.ndarray) -> None:
    cache = FeatureCache(root=tmp_path, model=model, max_gb=1)
    edited = image.copy()
    edited[0, 0, 0] ^= 1
    assert cache.path_for(edited) != cache.path_for(image)
    assert cache.path_for(image.copy()) == cache.path_for(image)
    torch.set_num_threads(2)
    try:
        two = FeatureCache(root=tmp_path, model=model, max_gb=1)
    finally:
        torch.set_num_threads(1)
    assert two.folder.name.startswith("eval-t2-") and two.folder != cache.folder


def test_damaged_entry_is_recomputed_and_rewritten(tmp_path: Path, model: TorchvisionRcnn, image: np.ndarray) -> None:
    cache = FeatureCache(root=tmp_path, model=model, max_gb=1)
    fresh = cache.features(image)
    entry = cache.path_for(image)
    whole = entry.read_bytes()
    entry.write_bytes(whole[: len(whole) // 2])  # truncated, as a disk error would leave it
    (entry.parent / f".{entry.name}.abc.tmp").write_bytes(b"left by a killed writer")
    again = FeatureCache(root=tmp_path, model=model, max_gb=1)
    assert same_features(again.features(image), fresh) and again.misses == 1
    assert entry.read_bytes() == whole
    assert not list(entry.parent.glob("*.tmp"))


def test_full_cache_stops_writing_but_still_serves(tmp_path: Path, model: TorchvisionRcnn, image: np.ndarray) -> None:
    cache = FeatureCache(root=tmp_path, model=model, max_gb=1e-12)  # "full" after one byte
    first = cache.features(image)
    assert not cache.path_for(image).exists()  # the limit rounds to 0 bytes: nothing is written
    assert same_features(cache.features(image), first) and cache.misses == 2
    with pytest.raises(VcmEvalError, match="cache.max_gb=0"):
        FeatureCache(root=tmp_path, model=model, max_gb=0)


PARALLEL = """
import sys, torch
from pathlib import Path
from vcm_eval.pipelines.cache import FeatureCache
from vcm_eval.data.synthetic import SyntheticSpec, scene_for
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, TorchvisionRcnn
torch.set_num_threads(1)
model = TorchvisionRcnn(RcnnConfig(**{tiny!r}))
cache = FeatureCache(root=Path(sys.argv[1]), model=model, max_gb=1)
print("ready", flush=True)
sys.stdin.readline()  # start together
feats = cache.features(scene_for(SyntheticSpec(height=64, width=128), "val", 3).image)
print(cache.misses, cache.hits, float(feats["p2"].double().sum()), flush=True)
"""


def test_parallel_processes_extract_once(tmp_path: Path) -> None:
    code = PARALLEL.format(tiny=TINY)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=300)[0].split() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert sorted(int(o[0]) for o in outs) == [0, 1]  # one extraction; the other process waited and read it
    assert len({o[2] for o in outs}) == 1
    assert len(list(tmp_path.rglob("*.npz"))) == 1 and not list(tmp_path.rglob("*.tmp"))


def test_bitstream_store_round_trip_and_corruption(tmp_path: Path) -> None:
    store = BitstreamStore(tmp_path / "bitstreams")
    assert store.get(7) is None and not (tmp_path / "bitstreams").exists()
    store.put(7, StoredBitstream(b"\x31abc", 0.25, 0.5, {"raw_bits": 12}))
    got = store.get(7)
    assert got is not None and (got.data, got.encode_s, got.features_s, got.extra) == (
        b"\x31abc",
        0.25,
        0.5,
        {"raw_bits": 12},
    )
    assert (tmp_path / "bitstreams" / "7.bin").read_bytes() == b"\x31abc"
    (tmp_path / "bitstreams" / "7.bin").write_bytes(b"\x31ab")  # truncated
    with pytest.raises(CodecError, match=r"7\.bin is corrupt .*delete it"):
        store.get(7)
    (tmp_path / "bitstreams" / "7.json").unlink()
    with pytest.raises(CodecError, match="no readable 7.json"):
        store.get(7)
    (tmp_path / "bitstreams" / ".7.bin.x.tmp").write_bytes(b"torn")
    BitstreamStore(tmp_path / "bitstreams")  # a new run (holding the lock) clears a killed writer's temp files
    assert not list((tmp_path / "bitstreams").glob("*.tmp"))


def test_pipelines_with_cache_and_store_match_fresh_ones(
    tmp_path: Path, model: TorchvisionRcnn, image: np.ndarray
) -> None:
    sample = Sample(image_id=5, image=image, path=Path("x.png"))
    codec = NormalizedQuantizer(4, 1.0)
    plain = FeatureCodingPipeline(model=model, codec=codec, name="quant", params={})
    cached = FeatureCodingPipeline(
        model=model, codec=codec, name="quant", params={}, cache=FeatureCache(root=tmp_path, model=model, max_gb=1)
    )
    store = BitstreamStore(tmp_path / "b")
    ref = plain.process(sample)
    first = cached.process(sample, bitstreams=store)  # cache miss, encodes, stores
    second = cached.process(sample, bitstreams=store)  # decodes the stored bitstream
    assert store.reused == 1
    for r in (first, second):
        assert (r.bits, r.pixels, r.extra) == (ref.bits, ref.pixels, ref.extra) and same_instances(
            r.instances, ref.instances
        )
    assert second.encode_s == first.encode_s and second.features_s == first.features_s
    assert ref.extra["symbol_bits"] > 0  # the codec's own report survives the round trip through the store
    unc = UncompressedPipeline(model=model, cache=FeatureCache(root=tmp_path, model=model, max_gb=1))
    assert same_instances(unc.process(sample).instances, model.predict(image))


def records(run_dir: Path) -> dict[int, dict]:
    out = {}
    for line in (run_dir / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["image_id"]] = {k: v for k, v in rec.items() if not k.endswith("_s")}
    return out


def test_sweep_shares_features_and_a_rerun_decodes_kept_bitstreams(tmp_path: Path, hydra_conf: None) -> None:
    common = [*SMALL_RUN, "pipeline=quant", f"paths.data={tmp_path / 'data'}", f"paths.cache={tmp_path / 'cache'}"]
    rows = {
        z: run_single(compose_cfg([*common, f"pipeline.z={z}", f"paths.results={tmp_path / 'on'}"])) for z in (1.0, 2.0)
    }
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 2  # two images, features shared by both z
    off = run_single(
        compose_cfg(
            [
                *common,
                "pipeline.z=2.0",
                f"paths.results={tmp_path / 'off'}",
                "cache.features=false",
                "cache.bitstreams=false",
            ]
        )
    )
    on_dir, off_dir = Path(rows[2.0]["run_dir"]), Path(off["run_dir"])
    assert records(on_dir) == records(off_dir) and not (off_dir / "bitstreams").exists()
    assert {k: v for k, v in rows[2.0].items() if k not in ("run_dir", "encode_s", "decode_s", "task_s")} == {
        k: v for k, v in off.items() if k not in ("run_dir", "encode_s", "decode_s", "task_s")
    }

    # Rerun z=2.0 with its records gone: the kept bitstreams are decoded, not re-encoded. To prove
    # it, image 0's stored bitstream is swapped for the z=1.0 one (checksum updated): the rerun's
    # record must carry the swapped stream's rate.
    z1 = Path(rows[1.0]["run_dir"]) / "bitstreams"
    bits = on_dir / "bitstreams"
    for suffix in (".bin", ".json"):
        (bits / f"0{suffix}").write_bytes((z1 / f"0{suffix}").read_bytes())
    (on_dir / "records.jsonl").unlink()
    (on_dir / "metrics.json").unlink()
    run_single(compose_cfg([*common, "pipeline.z=2.0", f"paths.results={tmp_path / 'on'}"]))
    again = records(on_dir)
    assert again[0]["bits"] == 8 * len((z1 / "0.bin").read_bytes()) == records(z1.parent)[0]["bits"]
    assert again[1] == records(off_dir)[1]
