"""Batches of aligned random crops of a feature pyramid (P2..P5), for training a feature codec.

Where the features come from (``train.features``):

* ``online``: computed per batch by the frozen task network from the split's images
  (``OnlineFeatures``); nothing is written and memory holds one batch's pyramids, whatever the
  split's size. What real-data training uses: a cache of Cityscapes' train split would take ~250 GB.
* ``cache``: the pyramids of a bounded number of images, extracted once into
  ``<paths.cache>/train_features/<model fingerprint>/<images>/`` as fp16 (``FeatureCache``; one flat
  file per level, crops read through memory maps), refused beyond ``train.cache_max_gb``. Shared by
  every rate point and rank; what the CPU default uses (400 synthetic images, 2.2 GB).

Both hand the codec fp16-rounded features and draw the same crops, so the two give the same
batches (tested). ``CropStream.plan`` makes iteration ``it``'s global batch a pure function of
``(seed, it)``: image indices (``crops_per_image`` crops per image), optional horizontal flips
(of the image, before the network: only online), then P2 offsets, multiples of 8 so that the P3,
P4, P5 windows (offset / 2, / 4, / 8) are exactly aligned; a P2 crop of c x c covers a 4c x 4c
image crop (L-MSFC's 256 x 256 image crops are ``crop=64``). Rank ``r`` of ``W`` takes crops
``r*B/W .. (r+1)*B/W - 1``; online, the ranks exchange their images' sizes before drawing offsets.
``crop=0`` takes whole pyramids (one image per rank), padded by edge replication to the codec's
block multiple, with the valid size passed on for the loss.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from tqdm import tqdm

from vcm_eval.data.train_images import TrainImages
from vcm_eval.errors import ConfigError, DataError, VcmEvalError
from vcm_eval.utils.distributed import Dist, broadcast_object, gather_objects

Extract = Callable[[np.ndarray], Mapping[str, torch.Tensor]]  # image uint8 [H, W, 3] -> level -> float [C, H, W]
ALIGN = 8  # P2 offsets are multiples of 8: P5 is P2 / 8
CACHE_VERSION = 2


class FeatureSource:
    """The fp16 pyramid [C, H, W] per level of training image ``index`` (mirrored when ``flip``)."""

    def levels(self, index: int, flip: bool) -> list[np.ndarray]:
        raise NotImplementedError

    def p2_size(self, index: int) -> tuple[int, int] | None:
        """P2's (H, W) when known without computing the pyramid (a cache's index), else None."""
        return None


class OnlineFeatures(FeatureSource):
    """Pyramids computed on demand by ``extract`` (the frozen task network); nothing is kept."""

    def __init__(self, images: TrainImages, extract: Extract, names: Sequence[str]) -> None:
        self.images, self.extract, self.names = images, extract, list(names)

    def levels(self, index: int, flip: bool) -> list[np.ndarray]:
        image = self.images.image(index)
        if flip:
            image = np.ascontiguousarray(image[:, ::-1])
        feats = self.extract(image)
        return [feats[n].detach().to("cpu", torch.float16).numpy() for n in self.names]


class FeatureCache(FeatureSource):
    """Pyramids of images ``0..len(images)-1`` in fp16 on disk, read through memory maps.

    ``build`` writes them once (a temporary folder renamed when complete, under a file lock so
    parallel jobs extract once); the folder holds ``<level>.f16`` (every image's level, flat) and
    ``index.json`` (each image's shapes and offsets).
    """

    def __init__(self, folder: Path, names: Sequence[str]) -> None:
        index = json.loads((folder / "index.json").read_text())
        self.names, self.shapes = list(names), index["shapes"]
        self.offsets = index["offsets"]
        self.flat = {n: np.memmap(folder / f"{n}.f16", dtype=np.float16, mode="r") for n in self.names}

    def __len__(self) -> int:
        return len(self.shapes)

    def levels(self, index: int, flip: bool) -> list[np.ndarray]:
        if flip:
            raise ConfigError(
                "train.hflip mirrors the image before the task network: use train.features=online with it"
            )
        out = []
        for k, n in enumerate(self.names):
            shape, start = self.shapes[index][k], self.offsets[index][k]
            out.append(self.flat[n][start : start + int(np.prod(shape))].reshape(shape))
        return out

    def p2_size(self, index: int) -> tuple[int, int]:
        _, h, w = self.shapes[index][0]
        return int(h), int(w)

    @staticmethod
    def build(
        folder: Path, images: TrainImages, extract: Extract, names: Sequence[str], *, max_bytes: int, progress: bool
    ) -> None:
        """Extract every image's pyramid into ``folder`` unless it is complete already.

        Raises:
            DataError: the cache would exceed ``max_bytes`` (checked from the first image, then as
                it grows), naming the fix.
        """
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder.parent / f".{folder.name}.lock")):
            if (folder / "complete").is_file():
                return
            with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".tmp-", ignore_cleanup_errors=True) as tmp:
                shapes: list[list[list[int]]] = []
                offsets: list[list[int]] = []
                pos = dict.fromkeys(names, 0)
                written = 0
                with ExitStack() as stack:
                    files = {n: stack.enter_context(open(Path(tmp) / f"{n}.f16", "wb")) for n in names}
                    for i in tqdm(range(len(images)), desc="extract train features", disable=not progress, unit="img"):
                        feats = extract(images.image(i))
                        arrays = [feats[n].detach().to("cpu", torch.float16).numpy() for n in names]
                        size = sum(a.nbytes for a in arrays)
                        if i == 0 and size * len(images) > max_bytes:
                            raise DataError(_too_big(size * len(images), max_bytes, len(images)))
                        written += size
                        if written > max_bytes:
                            raise DataError(_too_big(written, max_bytes, len(images)))
                        shapes.append([list(a.shape) for a in arrays])
                        offsets.append([pos[n] for n in names])
                        for n, a in zip(names, arrays):
                            files[n].write(np.ascontiguousarray(a).tobytes())
                            pos[n] += a.size
                index = {"version": CACHE_VERSION, "levels": list(names), "shapes": shapes, "offsets": offsets}
                Path(tmp, "index.json").write_text(json.dumps(index))
                Path(tmp, "complete").write_text(f"{len(images)} images, {written} bytes\n")
                if folder.exists():
                    shutil.rmtree(folder)
                os.replace(tmp, folder)


def _too_big(size: int, max_bytes: int, count: int) -> str:
    return (
        f"the feature cache of {count} images would take {size / 2**30:.1f} GiB, "
        f"over train.cache_max_gb={max_bytes / 2**30:g}; "
        "use train.features=online (nothing on disk), fewer images (train.train_images) or a larger train.cache_max_gb"
    )


def cache_folder(root: Path, fingerprint: str, images: TrainImages) -> Path:
    """Where the cache of ``images`` under a task model (by its fingerprint) lives."""
    return root / "train_features" / fingerprint / f"v{CACHE_VERSION}-{images.cache_key()}"


def feature_source(
    kind: str,
    images: TrainImages,
    extract: Extract,
    fingerprint: str,
    names: Sequence[str],
    *,
    cache_root: Path,
    cache_max_gb: float,
    progress: bool,
    ctx: Dist,
) -> FeatureSource:
    """A trainer's pyramids (``train.features``): ``online`` from the task network, or the bounded fp16 cache.

    Rank 0 builds the cache while the other ranks wait; a failure (a cache over ``cache_max_gb``) reaches
    every rank as the same ``DataError``, so no rank waits for a cache that will never come.
    """
    if kind == "online":
        return OnlineFeatures(images, extract, names)
    folder = cache_folder(cache_root, fingerprint, images)
    error = None
    if ctx.main:
        try:
            FeatureCache.build(folder, images, extract, names, max_bytes=int(cache_max_gb * 2**30), progress=progress)
        except VcmEvalError as exc:
            error = str(exc)
    error = broadcast_object(error, ctx)  # also the barrier: the others open the cache rank 0 finished
    if error:
        raise DataError(error)
    return FeatureCache(folder, names)


@dataclass
class CropBatch:
    """One rank's share of a batch: P2..P5 float32 [b, C, h, w], and the valid P2 size for ``crop=0``."""

    levels: list[torch.Tensor]
    valid: tuple[int, int] | None = None

    def to(self, device: torch.device) -> CropBatch:
        return CropBatch([lv.to(device, non_blocking=True) for lv in self.levels], self.valid)


@dataclass(frozen=True)
class Crop:
    """One crop of a plan: image index, mirrored or not, P2 offset (y, x)."""

    image: int
    flip: bool
    y: int = 0
    x: int = 0


def _window(level: np.ndarray, y: int, x: int, h: int, w: int) -> np.ndarray:
    """``level[:, y:y+h, x:x+w]``, edge-replicated where the window passes the border."""
    part = np.asarray(level[:, y : y + h, x : x + w])
    pad_h, pad_w = h - part.shape[1], w - part.shape[2]
    return np.pad(part, ((0, 0), (0, pad_h), (0, pad_w)), mode="edge") if pad_h or pad_w else part


class CropStream:
    """Iteration -> this rank's crops (see the module docstring).

    Args:
        source: the training pyramids (``OnlineFeatures`` or ``FeatureCache``) of images ``0..n-1``.
        n: number of training images.
        seed: with the iteration, fixes every draw.
        batch: global batch (crops per iteration over all ranks); a multiple of the world size.
        crop: P2 crop side (a multiple of ``pad_multiple``), or 0 for whole pyramids.
        crops_per_image: crops taken from each drawn image (a divisor of ``batch``).
        hflip: mirror half of the images (online only).
        pad_multiple: the codec's block size in P2 pixels (whole pyramids are padded to it).
        ctx: this rank's place (its share; sizes are exchanged online).
    """

    def __init__(
        self,
        source: FeatureSource,
        *,
        n: int,
        seed: int,
        batch: int,
        crop: int,
        crops_per_image: int,
        hflip: bool,
        pad_multiple: int,
        ctx: Dist,
    ) -> None:
        if n <= 0:
            raise ConfigError("no training images; check the dataset and train.train_images / train.val_images")
        if batch <= 0 or batch % ctx.world_size:
            raise ConfigError(
                f"train.batch_size={batch} (the global batch) must be a positive multiple "
                f"of the {ctx.world_size} processes"
            )
        if crops_per_image <= 0 or batch % crops_per_image:
            raise ConfigError(f"train.crops_per_image={crops_per_image} must divide train.batch_size={batch}")
        if crop < 0 or crop % pad_multiple:
            raise ConfigError(
                f"train.crop={crop} must be 0 (whole pyramids) or a multiple of the codec's block "
                f"of {pad_multiple} P2 pixels"
            )
        if crop == 0 and batch != ctx.world_size:
            raise ConfigError(
                f"train.crop=0 trains on whole images, one per process: set train.batch_size={ctx.world_size}"
            )
        self.source, self.n, self.seed, self.batch, self.crop = source, n, seed, batch, crop
        self.per_image, self.hflip, self.pad_multiple, self.ctx = crops_per_image, hflip, pad_multiple, ctx
        self.share = batch // ctx.world_size

    def plan(self, it: int, sizes: Callable[[list[int], list[bool]], list[tuple[int, int]]]) -> list[Crop]:
        """The global batch of iteration ``it``; ``sizes`` gives the P2 (H, W) of the drawn images."""
        rng = np.random.default_rng([self.seed, it])
        draws = self.batch // self.per_image
        idx = np.repeat(rng.integers(0, self.n, size=draws), self.per_image)
        flips = (
            np.repeat(rng.integers(0, 2, size=draws), self.per_image).astype(bool)
            if self.hflip
            else np.zeros(self.batch, bool)
        )
        if self.crop == 0:
            return [Crop(int(i), bool(f)) for i, f in zip(idx, flips)]
        hw = np.asarray(sizes([int(i) for i in idx], [bool(f) for f in flips]))
        ys = rng.integers(0, np.maximum((hw[:, 0] - self.crop) // ALIGN + 1, 1)) * ALIGN
        xs = rng.integers(0, np.maximum((hw[:, 1] - self.crop) // ALIGN + 1, 1)) * ALIGN
        return [Crop(int(i), bool(f), int(y), int(x)) for i, f, y, x in zip(idx, flips, ys, xs)]

    def batch_at(self, it: int) -> CropBatch:
        """This rank's crops of iteration ``it`` (float32 on the CPU)."""
        lo = self.ctx.rank * self.share
        pyramids: dict[tuple[int, bool], list[np.ndarray]] = {}

        def sizes(idx: list[int], flips: list[bool]) -> list[tuple[int, int]]:
            known = [self.source.p2_size(i) for i in idx]
            if all(k is not None for k in known):
                return known  # type: ignore[return-value]
            mine = []
            for i, f in zip(idx[lo : lo + self.share], flips[lo : lo + self.share]):
                if (i, f) not in pyramids:
                    pyramids[(i, f)] = self.source.levels(i, f)
                mine.append(tuple(pyramids[(i, f)][0].shape[1:]))
            return [s for part in gather_objects(mine, self.ctx) for s in part]

        crops = self.plan(it, sizes)[lo : lo + self.share]
        for c in crops:
            if (c.image, c.flip) not in pyramids:
                pyramids[(c.image, c.flip)] = self.source.levels(c.image, c.flip)
        if self.crop == 0:
            return self._whole(pyramids[(crops[0].image, crops[0].flip)])
        out = []
        for k in range(len(pyramids[(crops[0].image, crops[0].flip)])):
            s, c = 2**k, self.crop // 2**k
            stack = np.stack([_window(pyramids[(cr.image, cr.flip)][k], cr.y // s, cr.x // s, c, c) for cr in crops])
            out.append(torch.from_numpy(stack.astype(np.float32)))
        return CropBatch(out)

    def _whole(self, levels: list[np.ndarray]) -> CropBatch:
        h2, w2 = levels[0].shape[1:]
        m = self.pad_multiple
        ph, pw = -(-h2 // m) * m, -(-w2 // m) * m
        out = [
            torch.from_numpy(_window(lv, 0, 0, ph // 2**k, pw // 2**k).astype(np.float32))[None]
            for k, lv in enumerate(levels)
        ]
        return CropBatch(out, valid=(int(h2), int(w2)))

    def __call__(self, start: int, device: torch.device) -> Iterator[CropBatch]:
        """Batches of iterations ``start``, ``start + 1``, ... on ``device``."""
        it = start
        while True:
            yield self.batch_at(it).to(device)
            it += 1


def held_out(
    source: FeatureSource, indices: Sequence[int], pad_multiple: int, ctx: Dist, device: torch.device
) -> Iterator[CropBatch]:
    """Whole pyramids of the held-out images this rank validates on (``indices[rank::world]``)."""
    for i in indices[ctx.rank :: ctx.world_size]:
        levels = source.levels(i, False)
        h2, w2 = levels[0].shape[1:]
        ph, pw = -(-h2 // pad_multiple) * pad_multiple, -(-w2 // pad_multiple) * pad_multiple
        padded = [
            torch.from_numpy(_window(lv, 0, 0, ph // 2**k, pw // 2**k).astype(np.float32))[None]
            for k, lv in enumerate(levels)
        ]
        yield CropBatch(padded, valid=(int(h2), int(w2))).to(device)
