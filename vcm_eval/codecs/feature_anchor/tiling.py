"""FPN features <-> one 2-D frame, and 10-bit min-max quantization: the feature anchor's packing.

Layout (``plan_layout``; a pure function of the level shapes, so the decoder rebuilds it from
the shapes in the header and no offsets are sent):

* **Channel grid.** The C channels of a level [C, H, W] are laid out row-major in a grid of
  ``cols = ceil(sqrt(C))`` columns and ``rows = ceil(C / cols)`` rows: channel ``c`` sits at grid
  cell (c // cols, c % cols), i.e. frame rows ``[r*H, (r+1)*H)`` and columns ``[k*W, (k+1)*W)`` of
  the level's block. 256 channels -> 16 x 16; 12 -> 3 x 4; 7 -> 3 x 3 with 2 empty cells.
* **Level stacking (shelf packing in level order).** The frame is as wide as the widest level
  block. Each block goes to the right of the previous one on the current shelf when it fits,
  else it opens a new shelf below. For an FPN whose levels halve in size this gives::

        +-----------------------------------+
        |                P2                 |   16 H2 x 16 W2
        +-----------------+--------+---+--+-+
        |       P3        |   P4   |P5 |P6| |   16 H3 = 8 H2 high
        |                 +--------+---+--+ |
        +-----------------+-----------------+

  i.e. a frame of 24 H2 x 16 W2 samples (1.5 x the P2 block), of which 1.33 x is features.
* **Fill.** Samples outside every block (empty grid cells, the right/bottom of shelves, and the
  row/column added to make both frame sizes even for 4:2:0) hold ``fill``.

``tile`` and ``untile`` are exact inverses (any dtype, any shapes). Quantization (``minmax_ranges``
then the codes) maps each value to ``round((x - lo) / (hi - lo) * 1023)`` for 10 bits, so the
reconstruction error is at most ``(hi - lo) / 2046`` (half a step; float32 rounding aside).

The feature anchor runs the fused forms: ``codes_frame`` (= ``tile`` of the codes) and
``frame_values`` (the values of ``untile``), one compiled pass each with no pyramid-sized
temporaries (``feature_anchor.kernels``); the tests check they equal the readable torch
composition (tests/reference.py) bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vcm_eval.codecs.feature_anchor import kernels
from vcm_eval.codecs.feature_anchor.config import MinMax
from vcm_eval.codecs.minmax import level_range
from vcm_eval.errors import CodecError
from vcm_eval.vision.base import FeatureSet

MINMAX_MODES = tuple(MinMax.values())  # the stream flag's order


@dataclass(frozen=True)
class LevelTile:
    """Where one level's channel grid sits in the frame (sizes in samples).

    Attributes:
        name: level name (``p2``..``p6``).
        channels, height, width: the level's tensor shape [C, H, W].
        rows, cols: channel grid (``rows * cols >= channels``).
        top, left: the block's upper-left corner in the frame.
    """

    name: str
    channels: int
    height: int
    width: int
    rows: int
    cols: int
    top: int
    left: int

    @property
    def block_height(self) -> int:
        return self.rows * self.height

    @property
    def block_width(self) -> int:
        return self.cols * self.width


@dataclass(frozen=True)
class Layout:
    """The whole frame: every level's block, the frame size, and the image metadata.

    Attributes:
        levels: one ``LevelTile`` per level, in the FeatureSet's order.
        height, width: frame size in samples, both even.
        image_size, input_size: copied from the FeatureSet (``untile`` returns them).
    """

    levels: tuple[LevelTile, ...]
    height: int
    width: int
    image_size: tuple[int, int]
    input_size: tuple[int, int]

    def content_fraction(self) -> float:
        """Share of frame samples that hold feature values (the rest is fill)."""
        used = sum(t.channels * t.height * t.width for t in self.levels)
        return used / float(self.height * self.width)


def channel_grid(channels: int) -> tuple[int, int]:
    """(rows, cols) of the near-square grid for ``channels`` channels: cols = ceil(sqrt(C))."""
    if channels < 1:
        raise CodecError(f"a feature level needs at least one channel, got {channels}")
    cols = math.isqrt(channels - 1) + 1  # ceil(sqrt(C)) without float error
    return -(-channels // cols), cols


def plan_layout(
    shapes: dict[str, tuple[int, int, int]], *, image_size: tuple[int, int], input_size: tuple[int, int]
) -> Layout:
    """The frame layout for levels of these [C, H, W] shapes (see the module docstring).

    Raises:
        CodecError: when there are no levels or a size is not positive.
    """
    if not shapes:
        raise CodecError("cannot tile an empty FeatureSet; give at least one level")
    grids = {}
    for name, (c, h, w) in shapes.items():
        if min(c, h, w) < 1:
            raise CodecError(f"feature level {name} has shape {(c, h, w)}; every size must be >= 1")
        grids[name] = channel_grid(c)
    frame_w = max(rows_cols[1] * shapes[n][2] for n, rows_cols in grids.items())
    tiles, x, shelf_top, shelf_h = [], 0, 0, 0
    for name, (c, h, w) in shapes.items():
        rows, cols = grids[name]
        bh, bw = rows * h, cols * w
        if x + bw > frame_w:  # open a new shelf below the current one
            shelf_top, x, shelf_h = shelf_top + shelf_h, 0, 0
        tiles.append(LevelTile(name, c, h, w, rows, cols, shelf_top, x))
        x += bw
        shelf_h = max(shelf_h, bh)
    height = shelf_top + shelf_h
    return Layout(
        tuple(tiles),
        height + height % 2,
        frame_w + frame_w % 2,
        tuple(image_size),  # type: ignore[arg-type]
        tuple(input_size),  # type: ignore[arg-type]
    )


def _block(frame: np.ndarray, t: LevelTile) -> np.ndarray:
    """View [rows, cols, H, W] of the level's block inside ``frame`` (writes go to the frame)."""
    block = frame[t.top : t.top + t.block_height, t.left : t.left + t.block_width]
    return block.reshape(t.rows, t.height, t.cols, t.width).transpose(0, 2, 1, 3)


def tile(features: FeatureSet, *, fill: float = 0.0) -> tuple[np.ndarray, Layout]:
    """Lay every level of ``features`` into one 2-D frame.

    Args:
        features: levels [C, H, W] of any one dtype (float32 features or integer codes).
        fill: value of the samples that hold no feature.

    Returns:
        (frame [height, width] numpy array of the levels' dtype, layout).
    """
    layout = plan_layout(features.shapes(), image_size=features.image_size, input_size=features.input_size)
    arrays = {name: t.detach().cpu().numpy() for name, t in features.items()}
    dtypes = {a.dtype for a in arrays.values()}
    if len(dtypes) != 1:
        raise CodecError(f"all levels must share one dtype to be tiled, got {sorted(map(str, dtypes))}")
    frame = np.full((layout.height, layout.width), fill, dtype=dtypes.pop())
    for t in layout.levels:
        values, view = arrays[t.name], _block(frame, t)
        full = t.channels // t.cols
        view[:full] = values[: full * t.cols].reshape(full, t.cols, t.height, t.width)
        if t.channels % t.cols:
            view[full, : t.channels % t.cols] = values[full * t.cols :]
    return frame, layout


def untile(frame: np.ndarray, layout: Layout) -> FeatureSet:
    """The inverse of ``tile``: frame [height, width] -> FeatureSet with the frame's dtype."""
    if frame.shape != (layout.height, layout.width):
        raise CodecError(f"frame is {frame.shape[::-1]} (WxH) but the layout needs {layout.width}x{layout.height}")
    levels = {}
    for t in layout.levels:
        grid = _block(frame, t).reshape(t.rows * t.cols, t.height, t.width)[: t.channels]
        levels[t.name] = torch.from_numpy(grid.copy())  # C-contiguous, writable, independent of the frame
    return FeatureSet(levels=levels, image_size=layout.image_size, input_size=layout.input_size)


def minmax_ranges(features: FeatureSet, mode: str) -> dict[str, tuple[float, float]]:
    """Level -> (lo, hi) as float32 values: one shared pair (``tensor``) or one per level (``level``).

    Raises:
        CodecError: for NaN/inf values or an unknown mode.
    """
    if mode not in MINMAX_MODES:
        raise CodecError(f"minmax={mode!r} is unknown; use one of {list(MINMAX_MODES)}")
    per_level = {
        n: level_range(n, np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)) for n, t in features.items()
    }
    if mode == "level":
        return per_level
    lo, hi = min(r[0] for r in per_level.values()), max(r[1] for r in per_level.values())
    return {n: (lo, hi) for n in per_level}


def _check_bits(bits: int) -> float:
    if not 1 <= bits <= 15:
        raise CodecError(f"bits={bits} is outside 1..15; the feature anchor uses 10")
    return float(2**bits - 1)


def codes_frame(
    features: FeatureSet, ranges: dict[str, tuple[float, float]], *, bits: int = 10, fill: int = 0
) -> tuple[np.ndarray, Layout]:
    """``tile(quantize(features, ranges, bits=bits), fill=fill)`` in one compiled pass: a uint16 frame."""
    peak = _check_bits(bits)
    layout = plan_layout(features.shapes(), image_size=features.image_size, input_size=features.input_size)
    frame = np.full((layout.height, layout.width), fill, dtype=np.uint16)
    for t in layout.levels:
        x = np.ascontiguousarray(features[t.name].detach().cpu().numpy(), dtype=np.float32)
        lo, hi = ranges[t.name]
        ratio = np.float32(peak / (hi - lo)) if hi > lo else np.float32(0.0)
        kernels.codes_into_frame(x, 0, t.channels, np.float32(lo), ratio, int(peak), frame, t.top, t.left, t.cols)
    return frame, layout


def frame_values(
    frame: np.ndarray, layout: Layout, ranges: dict[str, tuple[float, float]], *, bits: int = 10
) -> FeatureSet:
    """``dequantize(untile(frame, layout), ranges, bits=bits)`` in one compiled pass per level: float32 levels."""
    peak = _check_bits(bits)
    if frame.shape != (layout.height, layout.width):
        raise CodecError(f"frame is {frame.shape[::-1]} (WxH) but the layout needs {layout.width}x{layout.height}")
    levels = {}
    for t in layout.levels:
        lo, hi = ranges[t.name]
        out = np.empty((t.channels, t.height, t.width), dtype=np.float32)
        step = np.float32((hi - lo) / peak) if hi > lo else np.float32(0.0)
        kernels.values_from_frame(frame, 0, t.channels, t.top, t.left, t.cols, step, np.float32(lo), out)
        levels[t.name] = torch.from_numpy(out)
    return FeatureSet(levels=levels, image_size=layout.image_size, input_size=layout.input_size)
