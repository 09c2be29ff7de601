"""Real FFmpeg/libvvenc bitstreams: they decode, the rate is their size, quality follows QP."""

from __future__ import annotations

import numpy as np
import pytest

from vcm_eval.codecs.bitstream import BitstreamReader
from vcm_eval.codecs.image_anchor import VvcImageCodec
from vcm_eval.codecs.vvc.colour import rgb_to_yuv420, yuv420_to_rgb
from vcm_eval.codecs.vvc.encoder import VvcEncoder
from vcm_eval.codecs.vvc.yuv import Yuv420
from vcm_eval.errors import CodecError, ConfigError


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(peak**2 / mse))


@pytest.fixture(scope="module")
def image(val_image: np.ndarray) -> np.ndarray:
    return val_image


def test_yuv_round_trip_low_qp_above_40db(vvc: VvcEncoder, image: np.ndarray) -> None:
    frame = rgb_to_yuv420(image, vvc.ffmpeg, "bt709_limited")
    data = vvc.encode(frame, qp=4)
    assert data[:4] in (b"\x00\x00\x00\x01", b"\x00\x00\x01\x00") or data[:3] == b"\x00\x00\x01"  # Annex-B start code
    out = vvc.decode(data, *frame.size)
    assert out.size == frame.size
    assert psnr(frame.y, out.y, 1023) > 40.0
    assert psnr(frame.u, out.u, 1023) > 40.0


def test_image_codec_rate_is_file_size_and_falls_with_qp(vvc: VvcEncoder, image: np.ndarray, tmp_path) -> None:
    sizes = []
    for qp in (22, 37):
        data = VvcImageCodec(vvc=vvc, qp=qp).encode(image)
        reader = BitstreamReader(data, "image_vvc")
        assert (reader.uint(), reader.uint()) == image.shape[:2]
        stream = reader.blob()
        reader.done()  # the container holds the header and the VVC stream, nothing else
        assert stream[:3] == b"\x00\x00\x01" or stream[:4] == b"\x00\x00\x00\x01"
        assert len(data) - len(stream) <= 9  # tag + varints: height, width (2 bytes each), stream length (3)
        sizes.append(len(data))
    assert sizes[0] > 2 * sizes[1]  # the round trip itself: tests/test_codec_contract.py


def test_smooth_image_rgb_psnr_above_40db_at_low_qp(vvc: VvcEncoder) -> None:
    yy, xx = np.mgrid[0:96, 0:160]
    smooth = np.stack([xx * 1.5, yy * 2.0, 128 + 40 * np.sin(xx / 15.0)], -1).clip(0, 255).astype(np.uint8)
    codec = VvcImageCodec(
        vvc=vvc, qp=8, colour="bt709_limited"
    )  # the mpeg path stretches contrast (tests/test_anchors.py)
    assert psnr(smooth, codec.decode(codec.encode(smooth)), 255) > 40.0


def test_odd_sizes_are_padded_and_cropped(vvc: VvcEncoder, image: np.ndarray) -> None:
    odd = image[:101, :147]
    codec = VvcImageCodec(vvc=vvc, qp=22)
    data = codec.encode(odd)
    reader = BitstreamReader(data, "image_vvc")
    assert (reader.uint(), reader.uint()) == (101, 147)  # the header is part of the bytes
    assert codec.decode(data).shape == (101, 147, 3)


def test_colour_conversion_alone_is_close(vvc: VvcEncoder) -> None:
    grey = np.full((32, 48, 3), 117, np.uint8)
    assert (
        np.abs(
            yuv420_to_rgb(rgb_to_yuv420(grey, vvc.ffmpeg, "bt709_limited"), vvc.ffmpeg, "bt709_limited").astype(int)
            - 117
        ).max()
        <= 1
    )


@pytest.mark.parametrize("qp", [-1, 64, 99])
def test_qp_out_of_range(vvc: VvcEncoder, qp: int) -> None:
    with pytest.raises(ConfigError, match="outside 0..63"):
        VvcImageCodec(vvc=vvc, qp=qp)


def test_missing_ffmpeg_and_odd_frames(vvc: VvcEncoder) -> None:
    # corrupt image-anchor streams: tests/test_codec_contract.py and tests/test_fuzz.py
    with pytest.raises(CodecError, match="not found"):
        VvcEncoder(ffmpeg="/nonexistent/ffmpeg")
    with pytest.raises(CodecError, match="lacks"):
        VvcEncoder(ffmpeg="/bin/true")  # runs, but lists no libvvenc encoder
    with pytest.raises(CodecError, match="even sizes"):
        vvc.encode(Yuv420(np.zeros((3, 4), np.uint16), np.zeros((1, 2), np.uint16), np.zeros((1, 2), np.uint16)), 32)
