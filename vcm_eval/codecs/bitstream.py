"""The container every vcm_eval codec writes: a one-byte codec tag, then compact fields.

Layout (all a decoder needs, nothing else):

    byte 0       codec id (high nibble) | format version (low nibble)
    fields       unsigned LEB128 varints, float32/float16 arrays, length-prefixed blobs,
                 in the order the codec writes them

There is no magic string or padding: at the learned codec's rates (a few hundred bytes per image) every
header byte shows in the bpp, and every byte is counted (rate = 8 * len(bytes)).

A bitstream is untrusted input (docs/architecture.md, "Threat model"). Every variable-length part
carries its length or count (``blob``, or a count written earlier), so a stream that ends early or
has bytes left over raises ``CodecError`` naming the codec instead of decoding garbage: read inside
``with BitstreamReader(...) as r:`` and leaving the block checks that every byte was read. The
reader never allocates more than the stream's own length (every read is a bounds-checked view);
what a decoder allocates from the sizes it reads is the decoder's to bound
(``vcm_eval.codecs.base.check_memory``).
"""

from __future__ import annotations

import io
import warnings
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from vcm_eval.errors import CodecError

if TYPE_CHECKING:
    from typing_extensions import Self

# "user": any codec written outside vcm_eval (docs/your_codec.md); its format version is its own.
CODEC_IDS = {"image_vvc": 1, "feature_vvc": 2, "quant": 3, "fusion": 4, "float": 5, "msfc": 6,
             "feature_vvc_video": 7, "user": 15}  # fmt: skip
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
        """Bytes whose length the decoder knows from earlier fields (read back with ``BitstreamReader.raw(n)``).

        Never for a part whose length only "the end of the stream" tells: a truncated stream would
        decode silently. Use ``blob`` for those.
        """
        self._buf.write(data)

    def getvalue(self) -> bytes:
        return self._buf.getvalue()


class BitstreamReader:
    """Read fields in the order they were written; checks the codec tag (and format version) first.

    Read inside a ``with`` block: leaving it without an exception calls ``done()``, so bytes left
    over are refused without a line a decoder could forget::

        with BitstreamReader(data, "user", name="my_codec", version=2) as r:
            height, width = r.uint(), r.uint()
            payload = r.blob()

    Every error names the codec (``name``, default the container tag) and what was short.

    Args:
        data: the whole bitstream.
        codec: the container tag the stream must carry (a key of ``CODEC_IDS``).
        name: the codec named in errors (``quant8``, ``fusion_codec``).
        version: the format version (the tag byte's low nibble) this decoder reads; None: any
            (the caller checks ``self.version``).
    """

    def __init__(self, data: bytes, codec: str, *, name: str = "", version: int | None = None) -> None:
        self.name = name or codec
        if codec not in CODEC_IDS:
            raise CodecError(f"unknown container tag {codec!r} for the {self.name} decoder; known: {sorted(CODEC_IDS)}")
        if not data:
            raise CodecError(f"empty bitstream given to the {self.name} decoder")
        tag, found = data[0] >> 4, data[0] & 0x0F
        if tag != CODEC_IDS[codec]:
            names = {v: k for k, v in CODEC_IDS.items()}
            raise CodecError(
                f"bitstream was written by codec {names.get(tag, tag)!r}, not {codec!r} ({self.name}); "
                "decode it with its own codec"
            )
        if version is not None and found != version:
            raise CodecError(
                f"{self.name} bitstream of format version {found}; this decoder reads version {version}: re-encode it"
            )
        self.version = found
        self._data = memoryview(data)
        self._pos = 1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.done()

    def _corrupt(self, what: str) -> CodecError:
        return CodecError(f"corrupt {self.name} bitstream: {what}")

    def _truncated(self, what: str) -> CodecError:
        return CodecError(f"{self.name} bitstream truncated: needed {what} at offset {self._pos} of {len(self._data)}")

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return len(self._data) - self._pos

    @property
    def position(self) -> int:
        """Bytes read so far (the tag byte included)."""
        return self._pos

    def _take(self, n: int) -> memoryview:
        if n < 0:
            raise self._corrupt(f"negative length {n} at offset {self._pos}")
        if self._pos + n > len(self._data):
            raise self._truncated(f"{n} bytes")
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
                raise self._corrupt(f"varint longer than 64 bits at offset {self._pos}")

    def uints(self, count: int) -> np.ndarray:
        """``count`` varints at once (as ``BitstreamWriter.uints`` writes them) -> int64 array."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if count < 0 or count > self.remaining:  # every varint takes a byte at least
            raise self._truncated(f"{count} varints")
        window = np.frombuffer(self._data[self._pos : self._pos + 9 * count], dtype=np.uint8)
        ends = np.flatnonzero(window < 0x80)[:count]
        if ends.size < count:
            raise self._truncated(f"{count} varints")
        starts = np.concatenate(([0], ends[:-1] + 1))
        lengths = ends - starts + 1
        if int(lengths.max()) > 9:
            raise self._corrupt(f"varint longer than 63 bits at offset {self._pos}")
        size = int(ends[-1]) + 1
        shift = (7 * (np.arange(size) - np.repeat(starts, lengths))).astype(np.uint64)
        # the 7-bit groups do not overlap: adding them is or-ing them
        values = np.add.reduceat((window[:size].astype(np.uint64) & np.uint64(0x7F)) << shift, starts)
        self._pos += size
        return values.astype(np.int64)

    def floats(self, count: int, dtype: str = "float32") -> np.ndarray:
        """``count`` little-endian floats of ``dtype`` -> a new float32 array."""
        dt = np.dtype(dtype).newbyteorder("<")
        with np.errstate(invalid="ignore"):  # a signalling NaN of a corrupt stream: the decoder's to refuse
            return np.frombuffer(self._take(count * dt.itemsize), dtype=dt).astype(np.float32)

    def blob(self) -> bytes:
        """Length-prefixed bytes (as ``BitstreamWriter.blob`` writes them)."""
        return bytes(self._take(self.uint()))

    def raw(self, count: int) -> bytes:
        """Exactly ``count`` bytes whose length an earlier field gave (``BitstreamWriter.raw``)."""
        return bytes(self._take(count))

    def rest(self) -> bytes:
        """Deprecated: every byte up to the end, a length nothing checks (a truncated stream decodes silently).

        Write the last part with ``BitstreamWriter.blob`` and read it with ``blob()`` instead.
        """
        warnings.warn(
            f"BitstreamReader.rest() ({self.name}) cannot detect a truncated stream; "
            "write the part with blob() and read it with blob()",
            DeprecationWarning,
            stacklevel=2,
        )
        return bytes(self._take(self.remaining))

    def done(self) -> None:
        """Raise if bytes are left over (a sign of a corrupt or foreign stream); ``with`` calls it for you."""
        if self._pos != len(self._data):
            raise self._corrupt(f"{self.remaining} unexpected trailing bytes after offset {self._pos}")
