"""The anchors as MPEG makes them: coded QP, MPEG's colour path, VTM, shipped bitstreams.

The colour tests run MPEG's anchor-script command lines (with FFmpeg 4.2.2, as ``make`` installs
it) on real PNG files and compare with the codec sample for sample. VTM tests run where
``VCM_EVAL_VTM_ENCODER`` and ``VCM_EVAL_VTM_CFG`` (and optionally ``VCM_EVAL_VTM_DECODER``) point at
a VTM build (docs/anchors.md); elsewhere they skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcm_eval.codecs.bitstream import BitstreamReader
from vcm_eval.codecs.feature_anchor.codec import FeatureVvcCodec
from vcm_eval.codecs.image_anchor import VvcImageCodec
from vcm_eval.codecs.vvc.colour import MPEG_FFMPEG, pad_to_even, rgb_to_yuv420
from vcm_eval.codecs.vvc.encoder import VvcEncoder
from vcm_eval.codecs.vvc.headers import slice_qps
from vcm_eval.codecs.vvc.shipped import ShippedBitstreams, resolve_folder
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.errors import CodecError, ConfigError
from vcm_eval.utils.digest import image_digest
from vcm_eval.vision.base import FeatureSet

VTM_ENCODER, VTM_CFG, VTM_DECODER = (os.environ.get(f"VCM_EVAL_VTM_{k}", "") for k in ("ENCODER", "CFG", "DECODER"))
needs_vtm = pytest.mark.skipif(
    not (VTM_ENCODER and VTM_CFG), reason="no VTM configured (set VCM_EVAL_VTM_ENCODER and VCM_EVAL_VTM_CFG)"
)
LEGACY = str(MPEG_FFMPEG)


@pytest.fixture(scope="module")
def image(val_image: np.ndarray) -> np.ndarray:
    return val_image


def payload(data: bytes) -> bytes:
    """The raw VVC stream inside the image codec's container."""
    r = BitstreamReader(data, "image_vvc")
    r.uint(), r.uint()
    return r.blob()


def mpeg_script_yuv(png: Path, tmp: Path) -> bytes:
    """MPEG's anchor script: pad filter to even sizes, then RGB -> 8-bit 4:2:0 (their exact arguments)."""
    padded, yuv = tmp / "pad.png", tmp / "in.yuv"
    subprocess.run(
        [LEGACY, "-y", "-loglevel", "error", "-i", str(png), "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", str(padded)],
        check=True,
    )
    subprocess.run(
        [
            LEGACY,
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(padded),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-dst_range",
            "1",
            str(yuv),
        ],
        check=True,
    )
    return yuv.read_bytes()


def test_mpeg_ffmpeg_is_installed() -> None:
    assert MPEG_FFMPEG.is_file(), "make venv installs FFmpeg 4.2.2 for the mpeg colour path"


@pytest.mark.parametrize("size", [(256, 512), (101, 147), (64, 33)])
def test_mpeg_yuv_is_byte_identical_to_the_script(image: np.ndarray, size: tuple[int, int], tmp_path: Path) -> None:
    crop = image[: size[0], : size[1]]
    Image.fromarray(crop).save(tmp_path / "in.png")
    ours = rgb_to_yuv420(pad_to_even(crop, "mpeg"), LEGACY, "mpeg")
    assert ours.bit_depth == 8 and ours.size == (size[0] + size[0] % 2, size[1] + size[1] % 2)
    assert ours.tobytes() == mpeg_script_yuv(tmp_path / "in.png", tmp_path)


def test_encoder_input_is_the_8bit_samples_times_4(image: np.ndarray) -> None:
    frame = rgb_to_yuv420(image, LEGACY, "mpeg")
    ten = frame.to_10bit()
    for a, b in zip((frame.y, frame.u, frame.v), (ten.y, ten.u, ten.v), strict=True):
        assert b.dtype == np.uint16 and np.array_equal(b, a.astype(np.uint16) * 4)
    assert ten.y.max() <= 1020


def test_full_range_needs_the_old_ffmpeg(vvc: VvcEncoder) -> None:
    """FFmpeg 9 ignores ``-dst_range 1`` (white -> Y 235, limited range); FFmpeg 4.2.2 writes 255 as MPEG's
    anchors have it."""
    white = np.full((8, 8, 3), 255, np.uint8)
    assert rgb_to_yuv420(white, LEGACY, "mpeg").y.min() == 255
    assert rgb_to_yuv420(white, vvc.ffmpeg, "mpeg").y.max() == 235


def test_decoded_rgb_equals_the_script_conversion(vvc: VvcEncoder, image: np.ndarray, tmp_path: Path) -> None:
    odd = image[:101, :147]
    codec = VvcImageCodec(vvc=vvc, qp=37)
    data = codec.encode(odd)
    recon = vvc.decode(payload(data), 102, 148)
    (tmp_path / "rec.yuv").write_bytes(recon.tobytes())
    subprocess.run([LEGACY, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", "148x102",
                    "-src_range", "1", "-i", str(tmp_path / "rec.yuv"), "-frames", "1", "-pix_fmt", "rgb24",
                    str(tmp_path / "rec.png")], check=True)  # fmt: skip
    script = np.asarray(Image.open(tmp_path / "rec.png").convert("RGB"))[:101, :147]
    assert np.array_equal(codec.decode(data), script)


@pytest.mark.parametrize("qp", [22, 37, 47])
def test_image_anchor_codes_the_configured_qp(vvc: VvcEncoder, image: np.ndarray, qp: int) -> None:
    assert slice_qps(payload(VvcImageCodec(vvc=vvc, qp=qp).encode(image)), vvc.ffmpeg) == [qp]


def test_vvenc_preset_offset_would_lower_the_qp(vvc: VvcEncoder, image: np.ndarray) -> None:
    """Without IntraQPOffset=0, VVenC's presets code an intra picture 3 QP lower (why vcm_eval sets it)."""
    frame = rgb_to_yuv420(image, LEGACY, "mpeg").to_10bit()
    raw = vvc._vvenc_encode(frame, 32, "420")
    assert slice_qps(raw, vvc.ffmpeg) == [32]
    biased = VvcEncoder(extra_params="IntraQPOffset=-3")._vvenc_encode(frame, 32, "420")
    assert slice_qps(biased, vvc.ffmpeg) == [29]


def test_feature_anchor_codes_the_configured_qp(vvc: VvcEncoder) -> None:
    rng = np.random.default_rng(0)
    levels = {
        f"p{i}": torch.from_numpy(rng.normal(size=(8, 32 >> (i - 2), 64 >> (i - 2))).astype(np.float32))
        for i in range(2, 6)
    }
    feats = FeatureSet(levels, image_size=(128, 256), input_size=(128, 256))
    data = FeatureVvcCodec(vvc=vvc, qp=32).encode(feats)
    r = BitstreamReader(data, "feature_vvc")
    for _ in range(5):
        r.uint()
    for _ in range(r.uint() * 4):
        r.uint()
    r.floats(2)
    assert slice_qps(r.blob(), vvc.ffmpeg) == [32]


def shipped_copy(tmp_path: Path) -> Path:
    src = resolve_folder("anchors/vtm_image_anchor")
    if not (src / "manifest.csv").is_file():
        pytest.fail(
            "anchors/vtm_image_anchor/manifest.csv is missing: the shipped VTM anchor is part of the repository"
        )
    dst = tmp_path / "shipped"
    shutil.copytree(src, dst)
    return dst


def test_shipped_vtm_stream_is_decoded_not_encoded(image: np.ndarray, tmp_path: Path) -> None:
    folder = shipped_copy(tmp_path)
    shipped = ShippedBitstreams(str(folder))
    vvc = VvcEncoder(backend="vtm")  # no encoder: only shipped streams can be used
    assert not vvc.can_encode
    codec = VvcImageCodec(vvc=vvc, qp=52, shipped=shipped)
    found = shipped.get(image_digest(image), 52, "mpeg", codec.encoder)
    assert found is not None and codec.encoder.startswith("VTM-")
    stream = payload(codec.encode(image))
    assert stream == found.path.read_bytes() and slice_qps(stream, vvc.ffmpeg) == [52]
    decoded = codec.decode(codec.encode(image))
    assert decoded.shape == image.shape and np.abs(decoded.astype(int) - image).mean() < 20
    with pytest.raises(ConfigError, match="vvc.vtm_encoder"):
        codec.encode(image[:, :-2])  # no stream shipped for other pixels
    found.path.write_bytes(found.path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CodecError, match="md5"):
        codec.encode(image)


def test_vtm_backend_settings_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vvc.vtm_encoder"):
        VvcEncoder(backend="vtm", vtm_encoder=str(tmp_path / "EncoderAppStatic"))
    with pytest.raises(ConfigError, match="vvc.vtm_cfg"):
        VvcEncoder(backend="vtm", vtm_encoder=shutil.which("true") or "/bin/true")
    with pytest.raises(ConfigError, match="shipped bitstreams"):
        VvcImageCodec(vvc=VvcEncoder(backend="vtm"), qp=37, shipped=ShippedBitstreams(str(tmp_path)))


@needs_vtm
@pytest.mark.slow
def test_vtm_backend_codes_the_qp_and_ffmpeg_decodes_it_bit_exactly(image: np.ndarray, tmp_path: Path) -> None:
    vtm = VvcEncoder(backend="vtm", vtm_encoder=VTM_ENCODER, vtm_cfg=VTM_CFG, vtm_decoder=VTM_DECODER)
    crop = image[:64, :96]
    frame = rgb_to_yuv420(crop, LEGACY, "mpeg")
    stream = vtm.encode(frame, 37)
    assert slice_qps(stream, vtm.ffmpeg) == [37]
    # VTM's own 8 -> 10 bit scaling equals our samples times 4: the same picture from either input
    # (VTM derives sps_min_qp_prime_ts from the input bit depth, so 3 header bytes differ)
    from_10bit = vtm.encode(frame.to_10bit(), 37)
    assert len(from_10bit) == len(stream)
    assert VvcEncoder().decode(from_10bit, 64, 96).tobytes() == VvcEncoder().decode(stream, 64, 96).tobytes()
    ffmpeg_recon = Yuv420.frombytes(VvcEncoder().decode(stream, 64, 96).tobytes(), 64, 96)
    if VTM_DECODER:
        assert vtm.decode(stream, 64, 96).tobytes() == ffmpeg_recon.tobytes()


@needs_vtm
@pytest.mark.slow
def test_shipped_stream_is_what_vtm_writes(image: np.ndarray) -> None:
    vtm = VvcEncoder(backend="vtm", vtm_encoder=VTM_ENCODER, vtm_cfg=VTM_CFG)
    shipped = ShippedBitstreams("anchors/vtm_image_anchor")
    codec = VvcImageCodec(vvc=vtm, qp=57)
    found = shipped.get(image_digest(image), 57, "mpeg", codec.encoder)
    assert found is not None, "the shipped set was made by another VTM setting than the configured one"
    assert vtm.encode(rgb_to_yuv420(image, LEGACY, "mpeg"), 57) == found.path.read_bytes()
