"""What the quant family's two codecs share: the stream header, pass-through levels, side information.

``NormalizedQuantizer`` (method 0, n symbols) and ``Uniform8bitQuantizer`` (method 1, 8 bit) write
one stream format (``FORMAT_VERSION``; the layout is in ``vcm_eval.codecs.quant.nsymbol``): the
same header of sizes and level masks, the same float32 pass-through levels, the same side
information dtypes. Kept here so neither codec imports the other.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vcm_eval.codecs.base import MAX_DECODE_BYTES, MAX_PIXELS, check_feature_header, check_memory
from vcm_eval.codecs.bitstream import BitstreamReader, BitstreamWriter
from vcm_eval.codecs.quant.config import SideDtype
from vcm_eval.errors import CodecError
from vcm_eval.vision.base import LEVELS, FeatureSet

SIDE_DTYPES = tuple(SideDtype.values())  # float16, float32: the stream's ids
# Channel groups of at most 1 Mi values (and whole multiples of the coder's 16 lanes): the unit of
# parallel work and of a rANS stream (stored in the stream). A Cityscapes-size level gets 16 (P2),
# 8, 2, 1 and 1 groups.
DEFAULT_CHUNK_LOG2 = 20
# 3: 16-lane rANS with 16-bit words and a chosen neighbour set (2: byte-wise rANS, left + up;
# 1: anti-diagonal CompressAI rANS)
FORMAT_VERSION = 3
# The encoder's arithmetic, in the run key beside the format (a change that keeps the format but
# moves the means, stds or centroids in their last bits bumps it). 1: channel stats in one sweep,
# z = (x - mu) * (1 / sigma).
ENCODER_REVISION = 1
METHODS = {"nsymbol": 0, "uniform8": 1}
_NAMES = {"nsymbol": "quant", "uniform8": "quant8"}  # the codecs' names, in errors


def level_array(name: str, x: torch.Tensor) -> np.ndarray:
    """The level as a C-contiguous float32 [C, H, W] array (a view when it already is one: no copy)."""
    if x.ndim != 3 or x.numel() == 0:
        raise CodecError(f"level {name} has shape {tuple(x.shape)}; the quantizer needs a non-empty [C, H, W] tensor")
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)


def round_side(values: np.ndarray, dtype: str, what: str) -> np.ndarray:
    """Values as the decoder will read them (rounded to the side-information dtype), as float64."""
    with np.errstate(over="ignore"):  # an overflow becomes inf and is reported just below
        out = values.astype(dtype).astype(np.float64)
    if not np.isfinite(out).all():
        raise CodecError(f"{what} overflows {dtype} (max |value| {np.abs(values).max():.3g}); set side_dtype=float32")
    return out


def stream_format_version() -> str:
    """The quant streams' version (in the run key): the stream format, the encoder's arithmetic, its loops' compiler."""
    from importlib.metadata import version

    return f"vcm_eval.quant/{FORMAT_VERSION}.{ENCODER_REVISION} numba {version('numba')}"


def _mask(names: list[str]) -> int:
    return sum(1 << LEVELS.index(k) for k in names)


def _unmask(mask: int, name: str) -> list[str]:
    if mask >= 1 << len(LEVELS):
        raise CodecError(f"corrupt {name} bitstream: level mask {mask}")
    return [k for i, k in enumerate(LEVELS) if mask >> i & 1]


def write_header(method: str, features: FeatureSet, coded: list[str], passthrough: list[str]) -> BitstreamWriter:
    """The container tag, method, sizes, level masks and shapes (any shapes: the decoder checks they agree)."""
    w = BitstreamWriter("quant", version=FORMAT_VERSION)
    w.uint(METHODS[method])
    for v in (*features.image_size, *features.input_size, _mask(coded), _mask(passthrough)):
        w.uint(int(v))
    for name in coded + passthrough:
        for v in features[name].shape:
            w.uint(int(v))
    return w


def read_header(
    data: bytes, method: str, *, max_pixels: int = MAX_PIXELS
) -> tuple[BitstreamReader, tuple[int, int], tuple[int, int], list[str], list[str], dict[str, tuple[int, int, int]]]:
    """The reader (after the header), image and input sizes, coded and pass-through levels, their shapes.

    Validated before anything is allocated from them (``vcm_eval.codecs.base.check_feature_header``):
    the sizes within ``max_pixels``, the input a resize of the image, every level the size a task
    network gives for that input.
    """
    name = _NAMES[method]
    r = BitstreamReader(data, "quant", name=name)
    if r.version != FORMAT_VERSION:
        raise CodecError(
            f"{name} stream of format {r.version}, this vcm_eval reads format {FORMAT_VERSION}; "
            "re-encode it (the run key changed with the format)"
        )
    found = r.uint()
    if found != METHODS[method]:
        names = {v: k for k, v in METHODS.items()}
        raise CodecError(
            f"quant stream holds method {names.get(found, found)!r}, not {method!r}; "
            "decode it with the matching quantizer"
        )
    image_size, input_size = (r.uint(), r.uint()), (r.uint(), r.uint())
    check_feature_header(name, image_size, input_size, max_pixels=max_pixels)
    coded_mask, passthrough_mask = r.uint(), r.uint()
    coded, passthrough = _unmask(coded_mask, name), _unmask(passthrough_mask, name)
    if not coded or coded_mask & passthrough_mask:
        raise CodecError(f"corrupt {name} bitstream: coded levels {coded}, pass-through levels {passthrough}")
    shapes = {level: (r.uint(), r.uint(), r.uint()) for level in coded + passthrough}
    check_feature_header(name, image_size, input_size, shapes, max_pixels=max_pixels)
    return r, image_size, input_size, coded, passthrough, shapes


def check_decode_memory(
    name: str,
    shapes: dict[str, tuple[int, int, int]],
    passthrough: list[str],
    coded_bytes: int,
    max_memory: int = MAX_DECODE_BYTES,
) -> None:
    """Refuse before allocating: ``coded_bytes`` per coded value, 4 per pass-through value (float32)."""
    per_value = {level: 4 if level in passthrough else coded_bytes for level in shapes}
    need = sum(per_value[level] * math.prod(shape) for level, shape in shapes.items())
    values = sum(math.prod(shape) for shape in shapes.values())
    check_memory(name, need, max_memory, what=f"{values} values")


def write_passthrough(w: BitstreamWriter, features: FeatureSet, names: list[str]) -> None:
    for name in names:
        w.floats(features[name].detach().cpu().numpy().reshape(-1), "float32")


def read_passthrough(
    r: BitstreamReader, names: list[str], shapes: dict[str, tuple[int, int, int]]
) -> dict[str, torch.Tensor]:
    """The float32 levels sent as they are (``r.floats`` returns a new array: no second copy)."""
    return {level: torch.from_numpy(r.floats(math.prod(shapes[level])).reshape(shapes[level])) for level in names}


def pick_option(options: tuple[str, ...], index: int, name: str = "quant") -> str:
    if index >= len(options):
        raise CodecError(f"corrupt {name} bitstream: option {index} of {list(options)}")
    return options[index]
