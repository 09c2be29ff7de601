"""The container every vcm_eval codec writes: a one-byte codec tag, then compact fields.

Layout (all a decoder needs, nothing else):

    byte 0       codec id (high nibble) | format version (low nibble)
    fields       unsigned LEB128 varints, float32/float16 arrays, length-prefixed blobs,
                 in the order the codec writes them

There is no magic string or padding: at the learned codec's rates (tens of bytes per image) every
header byte shows in the bpp, and every byte is counted (rate = 8 * len(bytes)). A truncated or
foreign stream raises ``CodecError`` instead of decoding garbage.
"""

from __future__ import annotations

import io

import numpy as np

from vcm_eval.errors import CodecError

CODEC_IDS = {"image_vvc": 1, "feature_vvc": 2, "quant": 3, "fusion": 4, "float": 5}
VERSION = 1


def varint_bytes(values: np.ndarray) -> np.ndarray:
    """Bytes of each value's unsigned LEB128 varint (values >= 0, int64)."""
    v = np.asarray(values, dtype=np.int64)
    return np.asarray(1 + sum((v >> 7 * i > 0).astype(np.int64) for i in range(1, 10)), dtype=np.int64)


class BitstreamWriter:
    """Append fields; ``getvalue()`` returns the finished bytes."""

    def __init__(self, codec: str, *, version: int = VERSION) -> None:
        if codec not in CODEC_IDS or not 0 <= version < 16:
            raise CodecError(f"unknown codec {codec!r} or version {version}; known: {sorted(CODEC_IDS)}")
        self._buf = io.BytesIO()
        self._buf.write(bytes([(CODEC_IDS[codec] << 4) | version]))

    def uint(self, value: int) -> None:
        """Unsigned LEB128 varint (1 byte below 128)."""
        if value < 0:
            raise CodecError(f"cannot write negative value {value} as an unsigned varint")
        while True:
            byte = value & 0x7F
            value >>= 7
            self._buf.write(bytes([byte | (0x80 if value else 0)]))
            if not value:
                return

    def uints(self, values: np.ndarray) -> None:
        """Many varints at once (the bytes of ``uint`` for each value, in order), without a Python loop per value."""
        signed = np.asarray(values, dtype=np.int64).reshape(-1)
        if signed.size and int(signed.min()) < 0:
            raise CodecError(f"cannot write negative value {int(signed.min())} as an unsigned varint")
        v = signed.astype(np.uint64)
        lengths = varint_bytes(signed)
        ends = np.cumsum(lengths)
        out = np.empty(int(ends[-1]) if v.size else 0, dtype=np.uint8)
        for i in range(int(lengths.max()) if v.size else 0):
            sel = lengths > i
            more = np.where(lengths[sel] > i + 1, 0x80, 0).astype(np.uint64)
            out[(ends - lengths)[sel] + i] = ((v[sel] >> np.uint64(7 * i)) & np.uint64(0x7F)) | more
        self._buf.write(out.tobytes())

    def floats(self, values: np.ndarray, dtype: str = "float32") -> None:
        """A fixed-length float array (length known to the decoder from earlier fields)."""
        self._buf.write(np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes())

    def blob(self, data: bytes) -> None:
        """Length-prefixed bytes."""
        self.uint(len(data))
        self._buf.write(data)

    def raw(self, data: bytes) -> None:
        """Bytes whose length the decoder knows (e.g. the last payload: up to the end)."""
        self._buf.write(data)

    def getvalue(self) -> bytes:
        return self._buf.getvalue()


class BitstreamReader:
    """Read fields in the order they were written; checks the codec tag first."""

    def __init__(self, data: bytes, codec: str) -> None:
        if not data:
            raise CodecError(f"empty bitstream given to the {codec} decoder")
        tag, version = data[0] >> 4, data[0] & 0x0F
        if tag != CODEC_IDS[codec]:
            names = {v: k for k, v in CODEC_IDS.items()}
            raise CodecError(f"bitstream was written by codec {names.get(tag, tag)!r}, not {codec!r}; decode it with its own codec")
        self.version = version
        self._data = memoryview(data)
        self._pos = 1

    @property
    def position(self) -> int:
        """Bytes read so far (the tag byte included)."""
        return self._pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or self._pos + n > len(self._data):
            raise CodecError(f"bitstream truncated: needed {n} bytes at offset {self._pos} of {len(self._data)}")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def uint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise CodecError("corrupt bitstream: varint longer than 64 bits")

    def uints(self, count: int) -> np.ndarray:
        """``count`` varints at once (as ``BitstreamWriter.uints`` writes them) -> int64 array."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        window = np.frombuffer(self._data[self._pos : self._pos + 9 * count], dtype=np.uint8)
        ends = np.flatnonzero(window < 0x80)[:count]
        if ends.size < count:
            raise CodecError(f"bitstream truncated: needed {count} varints at offset {self._pos} of {len(self._data)}")
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts + 1
        if int(lengths.max()) > 9:
            raise CodecError("corrupt bitstream: varint longer than 63 bits")
        size = int(ends[-1]) + 1
        shift = (7 * (np.arange(size) - np.repeat(starts, lengths))).astype(np.uint64)
        values = np.add.reduceat((window[:size].astype(np.uint64) & np.uint64(0x7F)) << shift, starts)  # the 7-bit groups do not overlap
        self._pos += size
        return values.astype(np.int64)

    def floats(self, count: int, dtype: str = "float32") -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        return np.frombuffer(self._take(count * dt.itemsize), dtype=dt).astype(np.float32)

    def blob(self) -> bytes:
        return bytes(self._take(self.uint()))

    def rest(self) -> bytes:
        return bytes(self._take(len(self._data) - self._pos))

    def done(self) -> None:
        """Raise if bytes are left over (a sign of a corrupt or foreign stream)."""
        if self._pos != len(self._data):
            raise CodecError(f"corrupt bitstream: {len(self._data) - self._pos} unexpected trailing bytes")
