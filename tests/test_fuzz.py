"""Fuzzing every decoder with mutations of its own real streams (docs/architecture.md, "Threat model").

The streams are those of tests/test_codec_contract.py (every registered codec and the two example
codecs, on the synthetic val image and its features). Mutations, drawn by Hypothesis with a fixed
derivation (``derandomize=True``: the same examples on every run):

* truncation at any byte (``data[:n]``, n < len): must raise ``CodecError``, for every codec;
* one bit flipped anywhere, or in the first 64 bytes (the headers);
* 64 garbage bytes appended (must raise: every codec checks its end), or written over the stream
  at any offset.

Every mutation either decodes to the right type or raises ``CodecError`` (any other exception fails),
within ``TIME_LIMIT_S`` and within twice the memory of decoding the good stream. Time is CPU time,
this process's and its children's (FFmpeg): the two cores are shared, and wall time on a loaded
machine says little about the decoder (Hypothesis' wall-clock deadline, ``HANG_LIMIT_S``, still
catches a decoder that waits forever). Memory is the
process's resident set (``VmHWM``, reset before each decode through ``/proc/self/clear_refs``): it
counts torch's and numba's native allocations, which ``tracemalloc`` does not see, and it is what
the OOM killer acts on; FFmpeg's own memory (a child process, the VVC codecs) is not in it. The
bound is on the process peak (``MEMORY_FACTOR`` x the good decode's), and, stricter, on the
decode's own increment (``MEMORY_FACTOR`` x the good decode's, at least ``MEMORY_FLOOR_MB``:
allocator arenas move that much on their own).

The default run draws a few examples of each kind (well under a minute in all); ``-m slow`` (``make
test-slow``) draws ``SLOW_EXAMPLES`` of each and decodes every truncation of the streams up to 32 KB
(every 1 in ``len / 2000`` beyond). ``VCM_FUZZ_REPORT=<file.md>`` writes the table of outcomes
(decoded / CodecError per codec and kind, the slowest decode, the largest memory) when the module
ends: docs/architecture.md quotes the slow run's.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec_contract import PIPELINES, build, default_features

from vcm_eval.codecs.base import MAX_PIXELS, FeatureCodec, ImageCodec
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.codecs.fusion.codec import FORMAT_VERSION
from vcm_eval.errors import CodecError
from vcm_eval.vision.base import FeatureSet

TIME_LIMIT_S = 10.0  # CPU seconds a decode may take
HANG_LIMIT_S = 120.0  # wall seconds (Hypothesis' deadline)
MEMORY_FACTOR = 2.0
MEMORY_FLOOR_MB = 32.0
EXAMPLES = 4  # per codec and mutation kind in the default run
SLOW_EXAMPLES = 150
EVERY_TRUNCATION_UP_TO = 32 * 1024  # bytes: longer streams are cut at 2000 evenly spread points (-m slow)
USER_CODECS = ("image_codec", "feature_codec")  # the examples: a researcher's codecs
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(field_name: str) -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field_name} in {STATUS}")


def _can_reset_peak() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        return STATUS.is_file()
    except OSError:
        return False


MEASURE_MEMORY = _can_reset_peak()  # Linux >= 4.0


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (FFmpeg, waited for by the decoder)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Decoded:
    """One decode: its result or CodecError, CPU seconds (with FFmpeg's), the process's peak resident MiB and the
    decode's own increment."""

    value: object | None
    error: CodecError | None
    seconds: float
    peak_mb: float
    extra_mb: float


def decode_measured(codec: ImageCodec | FeatureCodec, data: bytes) -> Decoded:
    """``codec.decode(data)`` timed, its peak memory measured; any exception but CodecError propagates."""
    if MEASURE_MEMORY:
        CLEAR_REFS.write_text("5")  # VmHWM := VmRSS
    before = _status_mb("VmRSS") if MEASURE_MEMORY else 0.0
    start = _cpu_seconds()
    try:
        value, error = codec.decode(data), None
    except CodecError as exc:
        value, error = None, exc
    seconds = _cpu_seconds() - start
    peak = _status_mb("VmHWM") if MEASURE_MEMORY else 0.0
    return Decoded(value, error, seconds, peak, max(0.0, peak - before))


@dataclass
class Tally:
    decoded: int = 0
    errors: int = 0
    max_s: float = 0.0
    max_extra_mb: float = 0.0

    def add(self, d: Decoded) -> None:
        self.decoded += d.error is None
        self.errors += d.error is not None
        self.max_s, self.max_extra_mb = max(self.max_s, d.seconds), max(self.max_extra_mb, d.extra_mb)


@dataclass
class Target:
    """A codec, its good stream, and what decoding that stream costs."""

    pipeline: str
    codec: ImageCodec | FeatureCodec
    data: bytes
    good: Decoded
    tallies: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))

    def __repr__(self) -> str:  # Hypothesis prints the arguments of a failing example: not the stream
        return f"Target({self.pipeline}, {len(self.data)} bytes)"

    def check(self, kind: str, data: bytes, *, must_fail: bool = False) -> Decoded:
        """Decode a mutation: the right type or CodecError, in time, in memory; tallied under ``kind``."""
        d = decode_measured(self.codec, data)
        self.tallies[kind].add(d)
        where = f"{self.pipeline}, {kind} ({len(data)} of {len(self.data)} bytes)"
        if d.error is None:
            assert not must_fail, f"{where}: decoded instead of raising CodecError"
            assert isinstance(d.value, np.ndarray if isinstance(self.codec, ImageCodec) else FeatureSet), where
        assert d.seconds <= TIME_LIMIT_S, f"{where}: {d.seconds:.1f} CPU s"
        if MEASURE_MEMORY:
            good = self.good
            assert d.peak_mb <= MEMORY_FACTOR * good.peak_mb, f"{where}: {d.peak_mb:.0f} MiB, good {good.peak_mb:.0f}"
            allowed = MEMORY_FACTOR * max(good.extra_mb, MEMORY_FLOOR_MB)
            assert d.extra_mb <= allowed, f"{where}: the decode took {d.extra_mb:.0f} MiB, a good {good.extra_mb:.0f}"
        return d


class Targets(dict[str, Target]):
    """The codecs by pipeline; one that cannot be built here (its checkpoint is not shipped yet) skips its tests."""

    unavailable: dict[str, str]

    def __repr__(self) -> str:
        return f"Targets({sorted(self)}, unavailable {sorted(self.unavailable)})"

    def __missing__(self, pipeline: str) -> Target:
        pytest.skip(self.unavailable.get(pipeline, f"no codec for pipeline={pipeline}"))


@pytest.fixture(scope="module")
def targets(val_image: np.ndarray) -> Iterator[Targets]:
    features = default_features(val_image)
    out = Targets()
    out.unavailable = {}
    for pipeline in PIPELINES:
        try:
            codec = build(pipeline)
        except pytest.skip.Exception as exc:
            out.unavailable[pipeline] = str(exc)
            continue
        data = codec.encode(val_image) if isinstance(codec, ImageCodec) else codec.encode(features)
        decode_measured(codec, data)  # once to warm up (lazy imports, compiled loops, FFmpeg's capabilities)
        runs = [decode_measured(codec, data) for _ in range(2)]
        good = max(runs, key=lambda d: d.extra_mb)
        assert good.error is None, f"{pipeline}: {good.error}"
        out[pipeline] = Target(pipeline, codec, data, good)
    yield out
    if os.environ.get("VCM_FUZZ_REPORT"):
        Path(os.environ["VCM_FUZZ_REPORT"]).write_text(report_table(out))


def report_table(targets: dict[str, Target]) -> str:
    """Markdown: per codec and mutation kind, decoded vs CodecError, the slowest decode, the largest increment."""
    lines = [
        "| codec | stream bytes | good decode CPU s / MiB | mutation | decoded | CodecError | max CPU s | max MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in targets.values():
        for kind, tally in sorted(t.tallies.items()):
            good = f"{t.good.seconds:.2f} / {t.good.extra_mb:.0f}"
            lines.append(
                f"| {t.pipeline} | {len(t.data)} | {good} | {kind} | {tally.decoded} | {tally.errors} | "
                f"{tally.max_s:.2f} | {tally.max_extra_mb:.0f} |"
            )
    return "\n".join(lines) + "\n"


def fuzz(examples: int) -> settings:
    """Hypothesis settings: a fixed derivation of the examples, no example database, ``HANG_LIMIT_S`` each."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=timedelta(seconds=HANG_LIMIT_S),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def mutate(t: Target, data: st.DataObject, kind: str) -> None:
    """Draw one mutation of ``kind`` of the target's stream and check its decode."""
    n = len(t.data)
    if kind == "truncation":
        t.check(kind, t.data[: data.draw(st.integers(0, n - 1), label="cut at")], must_fail=True)
        return
    if kind in ("bit flip", "header bit flip"):
        pos = data.draw(st.integers(0, (min(n, 64) if kind == "header bit flip" else n) - 1), label="byte")
        flipped = bytearray(t.data)
        flipped[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        t.check(kind, bytes(flipped))
        return
    garbage = data.draw(st.binary(min_size=64, max_size=64), label="garbage")
    if kind == "64 garbage bytes appended":
        t.check(kind, t.data + garbage, must_fail=True)
        return
    pos = data.draw(st.integers(0, max(0, n - 64)), label="at")
    t.check(kind, t.data[:pos] + garbage + t.data[pos + 64 :])


KINDS = ("truncation", "bit flip", "header bit flip", "64 garbage bytes appended", "64 garbage bytes written over")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pipeline", PIPELINES)
@fuzz(EXAMPLES)
@given(data=st.data())
def test_mutated_streams_decode_or_raise_codec_error(
    pipeline: str, kind: str, targets: Targets, data: st.DataObject
) -> None:
    mutate(targets[pipeline], data, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pipeline", PIPELINES)
@fuzz(SLOW_EXAMPLES)
@given(data=st.data())
def test_many_mutated_streams_decode_or_raise_codec_error(
    pipeline: str, kind: str, targets: Targets, data: st.DataObject
) -> None:
    mutate(targets[pipeline], data, kind)


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_truncation_raises_codec_error(pipeline: str, targets: Targets) -> None:
    t = targets[pipeline]
    n = len(t.data)
    spread = np.linspace(0, n - 1, 2000).astype(int).tolist()
    cuts = range(n) if n <= EVERY_TRUNCATION_UP_TO else sorted({*range(256), *spread})
    for cut in cuts:
        t.check("every truncation", t.data[:cut], must_fail=True)


# --- the user's case (issue 30) and the limits ---------------------------------------------------


def test_the_fusion_codec_refuses_64_garbage_bytes_fast(targets: Targets) -> None:
    """Issue 30: a fusion stream with 64 garbage bytes ran 146 s and grew to 24 GB; now a fast CodecError.

    Format 1 read P2's size from the header without relating it to the input size and took the y
    string up to the end: garbage anywhere decoded (or asked for 256 x 32767 x 32767 floats). Every
    position of the garbage is refused, appended garbage too, and so are hand-made headers that name
    a huge picture or a huge latent range.
    """
    t = targets["fusion_codec"]
    garbage = np.random.default_rng(146).bytes(64)
    n = len(t.data)
    for pos in sorted({*range(10), *range(10, n - 63, 128), n - 64}):  # every header byte, then along the strings
        d = t.check("64 garbage bytes (issue 30)", t.data[:pos] + garbage + t.data[pos + 64 :], must_fail=True)
        assert d.seconds < 2.0
    assert t.check("64 garbage bytes (issue 30)", t.data + garbage, must_fail=True).seconds < 2.0

    def fusion_stream(image: tuple[int, int], z: bytes, y: bytes) -> bytes:
        w = BitstreamWriter("fusion", version=FORMAT_VERSION)
        w.uint(image[0])
        w.uint(image[1])
        w.uint(1)  # input == image, P2 = input / 4
        w.blob(z)
        w.blob(y)
        return w.getvalue()

    r = BitstreamReader(t.data, "fusion")
    size, _, z, y = (r.uint(), r.uint()), r.uint(), r.blob(), r.blob()
    crafted = {
        "above max_pixels": (fusion_stream((65536, 65536), z, y), "max_pixels"),
        "above max_memory": (fusion_stream((8000, 8000), z, y), "max_memory"),
        "a 16-bit latent range": (fusion_stream(size, z, b"\xff\xff" + y[2:]), "latent range 65535"),
        "format 1": (bytes([t.data[0] & 0xF0 | 1]) + t.data[1:], "format version 1"),
    }
    for what, (stream, message) in crafted.items():
        d = t.check(f"crafted: {what}", stream, must_fail=True)
        assert message in str(d.error) and d.seconds < 2.0, (what, d.error)


@pytest.mark.parametrize("pipeline", [p for p in PIPELINES if p not in USER_CODECS])
def test_limits_are_keyword_arguments_and_refuse_with_the_reason(pipeline: str, targets: Targets) -> None:
    """Every built-in decoder takes ``max_pixels`` and ``max_memory``; above either it refuses, naming the limit."""
    t = targets[pipeline]
    decode = t.codec.decode
    assert isinstance(decode(t.data, max_pixels=MAX_PIXELS), np.ndarray | FeatureSet)  # type: ignore[call-arg]
    with pytest.raises(CodecError, match=r"above max_pixels=1000; the stream is corrupt, or pass a larger max_pixels"):
        decode(t.data, max_pixels=1000)  # type: ignore[call-arg]
    with pytest.raises(CodecError, match=r"MiB .*above max_memory=1000000 bytes"):
        decode(t.data, max_memory=1_000_000)  # type: ignore[call-arg]


def test_the_feature_video_container_survives_its_mutations() -> None:
    """The video feature anchor's container (``FeatureSequenceCodec``, a sequence's kept stream): every truncation
    raises ``CodecError``, as does appended garbage; a flipped bit or overwritten bytes decode to every frame or
    raise ``CodecError``, never anything else. Seeded: the same mutations on every run."""
    import torch

    from vcm_eval.codecs.feature_anchor.sequence import FeatureSequenceCodec
    from vcm_eval.codecs.vvc.sequence import VvcSequenceCodec

    g = torch.Generator().manual_seed(0)
    frames = [FeatureSet(levels={f"p{i}": torch.randn(8, 32 >> (i - 2), 64 >> (i - 2), generator=g)
                                 for i in range(2, 6)}, image_size=(128, 256), input_size=(128, 256))
              for _ in range(3)]  # fmt: skip
    codec = FeatureSequenceCodec(vvc=VvcSequenceCodec(preset="faster"), qp=27, minmax="level")
    data = codec.encode(iter(frames), fps=25, intra_period=2).data
    assert len(list(codec.decode(data))) == 3
    rng = np.random.default_rng(0)

    def outcome(blob: bytes) -> str:
        try:
            decoded = list(codec.decode(blob))
        except CodecError:
            return "CodecError"
        assert len(decoded) == 3 and all(f.shapes() == frames[0].shapes() for f in decoded)
        return "decoded"

    for n in sorted({int(v) for v in np.linspace(0, len(data) - 1, 40)}):
        assert outcome(data[:n]) == "CodecError", f"a stream cut at byte {n} of {len(data)} decoded"
    assert outcome(data + bytes(rng.integers(0, 256, 64, dtype=np.uint8))) == "CodecError"
    seen = set()
    for _ in range(30):
        flipped = bytearray(data)
        flipped[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        seen.add(outcome(bytes(flipped)))
    for _ in range(10):
        at = int(rng.integers(len(data) - 64))
        seen.add(outcome(data[:at] + bytes(rng.integers(0, 256, 64, dtype=np.uint8)) + data[at + 64 :]))
    assert "CodecError" in seen  # the header and range checks catch some of them
