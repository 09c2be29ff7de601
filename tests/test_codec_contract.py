"""The codec contract (``vcm_eval.codecs.base``), checked the same way on every codec a config can name.

Every ``conf/pipeline/*.yaml`` whose composed ``pipeline._target_`` builds a codec is here, built by
``build_codec`` from the config ``python -m vcm_eval pipeline=<name>`` composes; the two pipelines
for a researcher's own codec (``image_codec``, ``feature_codec``) run the examples of
``examples/my_codecs.py``. A new pipeline file is picked up without editing this test. For each:

* the round trip: the right type, the original's sizes and shapes, a quality bound;
* identical bytes when the same input is encoded twice (the run key and kept bitstreams rely on it);
* ``version()`` is the same for two instances built from one config (it is part of the run key);
* truncated streams (empty, one byte, half, all but the last byte), a stream with 64 garbage bytes
  appended, and one whose first 64 bytes are garbage raise ``CodecError``.

tests/test_fuzz.py mutates these same streams many more ways. Inputs are small: the synthetic val
image (512 x 256) and the default task model's features of it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg
from hydra import initialize_config_dir

from vcm_eval.codecs.base import FeatureCodec, ImageCodec
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.errors import CheckpointError, CodecError
from vcm_eval.pipelines.build import build_codec
from vcm_eval.resources import CONF_DIR
from vcm_eval.vision.base import FeatureSet
from vcm_eval.vision.registry import build_task_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))  # Hydra instantiates my_codecs.* as it would from PYTHONPATH

# Per pipeline: what makes it quick here (VVenC's faster preset), or which example codec stands for a
# researcher's own one.
SETTINGS = {
    "image_anchor": ["vvc.preset=faster"],
    "feature_anchor": ["vvc.preset=faster"],
    "image_codec": ["+pipeline.codec._target_=my_codecs.JpegCodec", "+pipeline.codec.quality=30"],
    "feature_codec": ["+pipeline.codec._target_=my_codecs.UniformZlibCodec", "+pipeline.codec.bits=6"],
}
MIN_PSNR = 25.0  # dB on the val image (measured: image anchor at QP 32 28.2, JPEG at quality 30 30.9)
MAX_NMSE = 0.25  # a level's MSE over its variance (measured: 0.11 at most, the 2-bit quantizer's and the anchor's)


def overrides(pipeline: str) -> list[str]:
    return [f"pipeline={pipeline}", *SETTINGS.get(pipeline, [])]


def registered_pipelines() -> list[str]:
    """Every pipeline config that builds a codec (all but ``uncompressed``), in file-name order."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        names = [p.stem for p in sorted(Path(CONF_DIR, "pipeline").glob("*.yaml"))]
        return [n for n in names if compose_cfg(overrides(n)).pipeline.get("_target_")]


PIPELINES = registered_pipelines()


def build(pipeline: str) -> ImageCodec | FeatureCodec:
    """The codec ``python -m vcm_eval pipeline=<pipeline>`` (+ ``SETTINGS``) would run.

    A codec whose trained weights are not in the repository yet (a new family in progress) is
    skipped, with the reason; it is checked from the day its checkpoint is there.
    """
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        try:
            codec = build_codec(compose_cfg(overrides(pipeline)))
        except CheckpointError as exc:
            pytest.skip(f"pipeline={pipeline} cannot be built here: {exc}")
    assert isinstance(codec, (ImageCodec, FeatureCodec)), pipeline
    return codec


def default_features(image: np.ndarray) -> FeatureSet:
    """The default task model's P2..P6 of ``image``."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        model = build_task_model(compose_cfg([]).model)
    return model.features(image)


def corrupted(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The contract's broken streams: four truncations, 64 garbage bytes appended or over the start."""
    garbage = np.random.default_rng(30).bytes(64)
    yield from (("empty", b""), ("one byte", data[:1]), ("half", data[: len(data) // 2]))
    yield "all but one byte", data[:-1]
    yield "garbage appended", data + garbage
    yield "garbage first 64 bytes", garbage + data[64:]


@pytest.fixture(scope="module")
def features(val_image: np.ndarray) -> FeatureSet:
    return default_features(val_image)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_every_pipeline_but_uncompressed_is_checked() -> None:
    built_in = {"image_anchor", "feature_anchor", "quant", "quant8", "fusion_codec"}
    assert set(PIPELINES) >= built_in | {"image_codec", "feature_codec"}  # and any added since
    assert "uncompressed" not in PIPELINES


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_codec_contract(pipeline: str, val_image: np.ndarray, features: FeatureSet) -> None:
    codec = build(pipeline)
    data = codec.encode(val_image) if isinstance(codec, ImageCodec) else codec.encode(features)
    again = codec.encode(val_image) if isinstance(codec, ImageCodec) else codec.encode(features)
    assert isinstance(data, bytes) and len(data) > 0
    assert again == data, "encoding the same input twice gave other bytes"
    assert build(pipeline).version() == codec.version()

    decoded = codec.decode(data)
    if isinstance(codec, ImageCodec):
        assert isinstance(decoded, np.ndarray) and decoded.dtype == np.uint8 and decoded.shape == val_image.shape
        assert psnr(decoded, val_image) > MIN_PSNR
    else:
        assert isinstance(decoded, FeatureSet)
        assert (decoded.image_size, decoded.input_size) == (features.image_size, features.input_size)
        assert {"p2", "p3", "p4", "p5"} <= set(decoded) <= set(features)  # P6 may be left to the task model
        for name, level in decoded.items():
            assert level.dtype == torch.float32 and level.shape == features[name].shape, name
            nmse = float(((level - features[name]) ** 2).mean() / features[name].var())
            assert nmse < MAX_NMSE, f"{name}: {nmse:.3f}"

    for what, bad in corrupted(data):
        with pytest.raises(CodecError):
            codec.decode(bad)
            pytest.fail(f"{pipeline}: a stream with {what} decoded")
    if pipeline != "image_codec":  # every vcm_eval container (the JPEG example writes a plain JPEG file)
        other_format = bytes([data[0] ^ 0x0F]) + data[1:]  # the tag byte's low nibble: the format version
        with pytest.raises(CodecError, match="format|version"):
            codec.decode(other_format)
            pytest.fail(f"{pipeline}: a stream of another format version decoded")


def test_the_container_checks_every_length_and_names_the_codec() -> None:
    """What a researcher's codec gets from ``vcm_eval.codecs.bitstream``: every read bounded, the end checked."""
    w = BitstreamWriter("user", version=2)
    w.uint(300)
    w.uints(np.array([0, 127, 128, 2**40]))
    w.floats(np.array([1.5, -2.0]), "float16")
    w.blob(b"payload")
    w.raw(b"xyz")  # a length the reader knows (3)
    data = w.getvalue()
    with BitstreamReader(data, "user", name="my_codec", version=2) as r:
        assert r.uint() == 300 and r.uints(4).tolist() == [0, 127, 128, 2**40]
        assert r.floats(2, "float16").tolist() == [1.5, -2.0] and r.blob() == b"payload" and r.raw(3) == b"xyz"
    leftover = pytest.raises(CodecError, match=r"^corrupt my_codec bitstream: 1 unexpected trailing bytes after offset")
    with leftover, BitstreamReader(data + b"\0", "user", name="my_codec") as r:
        r.uint(), r.uints(4), r.floats(2, "float16"), r.blob(), r.raw(3)
    truncated = pytest.raises(CodecError, match=r"^my_codec bitstream truncated: needed 7 bytes at offset")
    with truncated, BitstreamReader(data[:-5], "user", name="my_codec") as r:
        r.uint(), r.uints(4), r.floats(2, "float16"), r.blob()
    short = BitstreamReader(data[:5], "user", name="my_codec")
    short.uint()
    with pytest.raises(CodecError, match=r"^my_codec bitstream truncated: needed 4 varints at offset 3 of 5"):
        short.uints(4)
    with pytest.raises(CodecError, match="my_codec bitstream of format version 2; this decoder reads version 3"):
        BitstreamReader(data, "user", name="my_codec", version=3)
    with pytest.raises(CodecError, match=r"written by codec 'user', not 'quant' \(quant8\)"):
        BitstreamReader(data, "quant", name="quant8")
    with pytest.raises(CodecError, match="empty bitstream given to the my_codec decoder"):
        BitstreamReader(b"", "user", name="my_codec")
    with pytest.raises(KeyError), BitstreamReader(data, "user"):  # an error inside the block wins over the unread bytes
        raise KeyError("decoder bug")
    r = BitstreamReader(data, "user")
    r.uint(), r.uints(4), r.floats(2, "float16"), r.blob()
    with pytest.warns(DeprecationWarning, match="cannot detect a truncated stream"):
        assert r.rest() == b"xyz"
