"""Planar YUV 4:2:0 pictures as the VVC encoders read and the decoders write them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vcm_eval.errors import CodecError


@dataclass(frozen=True)
class Yuv420:
    """A 4:2:0 picture: Y [H, W], U and V [H/2, W/2].

    8-bit samples are uint8 (the MPEG anchor's colour conversion writes ``yuv420p``), 10-bit
    samples uint16 0..1023 (what the decoders return and the feature frames hold).
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return int(self.y.shape[0]), int(self.y.shape[1])

    @property
    def bit_depth(self) -> int:
        return 8 if self.y.dtype == np.uint8 else 10

    def tobytes(self) -> bytes:
        """Raw planar bytes: ``yuv420p`` for 8 bit, ``yuv420p10le`` (little-endian 16-bit) for 10."""
        dtype = np.dtype(np.uint8) if self.bit_depth == 8 else np.dtype("<u2")
        return b"".join(np.ascontiguousarray(p, dtype=dtype).tobytes() for p in (self.y, self.u, self.v))

    def to_10bit(self) -> Yuv420:
        """8-bit samples times 4 (what VTM does with ``InputBitDepth=8``, ``InternalBitDepth=10``)."""
        if self.bit_depth == 10:
            return self
        return Yuv420(*(p.astype(np.uint16) << 2 for p in (self.y, self.u, self.v)))

    @classmethod
    def from_luma(cls, y: np.ndarray) -> Yuv420:
        """10-bit luma [H, W] (H, W even) with neutral chroma 512 (read-only views: no chroma memory)."""
        neutral = np.broadcast_to(np.uint16(512), (y.shape[0] // 2, y.shape[1] // 2))
        return cls(y=y, u=neutral, v=neutral)

    @classmethod
    def frombytes(cls, data: bytes, height: int, width: int, *, bit_depth: int = 10) -> Yuv420:
        n_y, n_c = height * width, (height // 2) * (width // 2)
        dtype = np.dtype(np.uint8) if bit_depth == 8 else np.dtype("<u2")
        if len(data) != dtype.itemsize * (n_y + 2 * n_c):
            fmt = "yuv420p" if bit_depth == 8 else "yuv420p10le"
            raise CodecError(f"got {len(data)} bytes, expected a {width}x{height} {fmt} frame")
        arr = np.frombuffer(data, dtype=dtype)
        return cls(
            y=arr[:n_y].reshape(height, width),
            u=arr[n_y : n_y + n_c].reshape(height // 2, width // 2),
            v=arr[n_y + n_c :].reshape(height // 2, width // 2),
        )
