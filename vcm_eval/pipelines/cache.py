"""Reuse across runs: FPN features shared by every point of a sweep, and each run's bitstreams.

``FeatureCache``: a sweep over QP, z or lambda codes the *same* features at every point, so the
backbone runs once per image. Entries live under ``<paths.cache>/features/<model fingerprint>/``
``eval-<t<threads>-<oneDNN ISA> | cuda<N>>-torch<version>/<image sha256>.npz``:

* the key is the task model's fingerprint (architecture + weights hash), the image's pixels
  (sha256 of the uint8 array and its shape: a renamed or re-encoded file with the same pixels
  hits, an edited one misses), torch's version and its intra-op thread count (CPU convolutions
  give last-bit differences between 1 and 2 threads, so a cache shared across thread counts
  would not be bit-identical to a fresh run), and oneDNN's instruction set (``vcm_eval.determinism``);
* float32 tensors are stored exactly (``np.savez``, no compression, no pickle), so a hit gives
  the same bits as extracting again;
* writes are atomic (temp file + fsync + rename) and a per-entry ``filelock`` makes parallel
  runs (Hydra launchers, cluster jobs) wait for one extraction instead of repeating it; an entry
  that does not load is treated as a miss and rewritten;
* when the folder holds ``max_gb`` or more, new entries are not written (existing ones stay):
  a sequential sweep then still hits on the first images of every later run, where LRU eviction
  would evict exactly the entries the next run needs.

``BitstreamStore``: ``<run_dir>/bitstreams/<image_id>.bin`` (the codec's bytes, exactly what the
rate counts) + ``<image_id>.json`` (sha256, encode and feature seconds, the codec's per-image
report), written atomically *before* the image's record. A resumed run decodes a stored
bitstream instead of encoding again, and its record is the one an uninterrupted run writes.
A stored file that fails its checksum raises ``CodecError`` naming it: never decoded silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout

from vcm_eval.errors import CodecError, VcmEvalError
from vcm_eval.utils.atomic import remove_stale_temps, write_atomic
from vcm_eval.utils.digest import image_digest
from vcm_eval.vision.base import FeatureSet, TaskModel

_LOCK_TIMEOUT_S = 3600.0  # a peer extracting the same image's features for longer than this is stuck


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(e.stat().st_size for e in os.scandir(folder) if e.name.endswith(".npz"))
    except FileNotFoundError:
        return 0


def _write_npz(file: Any, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez`` writes (an uncompressed zip of .npy members, read by ``np.load``), with
    the zip closed even when a write fails: ``np.savez`` leaves it open on a full disk, and its
    finalizer then prints a traceback at exit."""
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


class FeatureCache:
    """Disk cache of ``TaskModel.features(image)`` for one model and thread count.

    Args:
        root: the cache root (``paths.cache``); entries go under ``root/features/...``.
        model: the task model whose features are cached (its ``fingerprint`` is the key).
        max_gb: no new entry is written while the entry folder holds this many GB or more.
    """

    def __init__(self, *, root: Path, model: TaskModel, max_gb: float) -> None:
        if not max_gb > 0:
            raise VcmEvalError(
                f"cache.max_gb={max_gb} must be > 0 (set cache.features=false to turn the feature cache off)"
            )
        self.model = model
        version = torch.__version__.split("+")[0]
        device = getattr(model, "device", torch.device("cpu"))
        isa = os.environ.get("DNNL_MAX_CPU_ISA", "native").lower()  # oneDNN's instruction set moves CPU features
        place = f"t{torch.get_num_threads()}-{isa}" if device.type == "cpu" else str(device).replace(":", "")
        self.folder = Path(root).expanduser() / "features" / model.fingerprint / f"eval-{place}-torch{version}"
        self.max_bytes = int(max_gb * 1e9)
        self._bytes = _folder_bytes(self.folder)
        self.hits = self.misses = 0

    def path_for(self, image: np.ndarray) -> Path:
        return self.folder / f"{image_digest(image)}.npz"

    def features(self, image: np.ndarray) -> FeatureSet:
        """The image's features: from disk if cached, else extracted (and stored if room is left)."""
        path = self.path_for(image)
        found = self._read(path)
        if found is not None:
            self.hits += 1
            return found
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(path) + ".lock", timeout=_LOCK_TIMEOUT_S)
            lock.acquire()
        except (OSError, Timeout) as exc:
            raise VcmEvalError(
                f"feature cache {self.folder} is not usable ({exc}); fix paths.cache or set cache.features=false"
            ) from exc
        try:
            found = self._read(path)  # a peer may have written it while we waited
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
            remove_stale_temps(self.folder, f".{path.name}.*.tmp")  # a killed writer of this key
            feats = self.model.features(image)
            if self._bytes < self.max_bytes:
                self._write(path, feats)
            return feats
        finally:
            lock.release()

    def _write(self, path: Path, feats: FeatureSet) -> None:
        arrays = {f"level_{k}": v.detach().cpu().numpy() for k, v in feats.levels.items()}
        if any(a.dtype != np.float32 for a in arrays.values()):
            return  # only float32 is stored (exactly); anything else is recomputed
        arrays["sizes"] = np.array([*feats.image_size, *feats.input_size], dtype=np.int64)
        write_atomic(path, lambda f: _write_npz(f, arrays))
        self._bytes += path.stat().st_size

    @staticmethod
    def _read(path: Path) -> FeatureSet | None:
        """The entry, or None when absent or unreadable (a damaged entry is then rewritten)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                sizes = [int(v) for v in z["sizes"]]
                levels = {
                    name[len("level_") :]: torch.from_numpy(np.array(z[name]))
                    for name in z.files
                    if name.startswith("level_")
                }
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent, truncated or foreign: recompute
            return None
        if len(sizes) != 4 or not levels or any(t.dtype != torch.float32 or t.ndim != 3 for t in levels.values()):
            return None
        return FeatureSet(levels=levels, image_size=(sizes[0], sizes[1]), input_size=(sizes[2], sizes[3]))


@dataclass
class StoredBitstream:
    """One image's bitstream and what its record needs besides decoding it.

    Attributes:
        data: the codec's bytes (8 * len = the image's bits).
        encode_s: seconds the encode took when it was made.
        features_s: seconds of feature extraction before it (0 for image codecs).
        extra: the codec's per-image ``report`` (vcm_eval.codecs.base).
    """

    data: bytes
    encode_s: float
    features_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class BitstreamStore:
    """``<run_dir>/bitstreams``: one ``<image_id>.bin`` + ``<image_id>.json`` per coded image.

    Only the process holding the run's lock (``report.store.run_lock``) may create one; it
    deletes the temp files a killed predecessor left.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder  # created by the first put
        remove_stale_temps(folder)
        self.reused = 0

    def get(self, image_id: int) -> StoredBitstream | None:
        """The stored bitstream of ``image_id``, None if none was written.

        Raises:
            CodecError: the files exist but the bytes do not match their recorded checksum.
        """
        bin_path, meta_path = self.folder / f"{image_id}.bin", self.folder / f"{image_id}.json"
        if not bin_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            data = bin_path.read_bytes()
        except (OSError, ValueError) as exc:
            raise CodecError(
                f"stored bitstream {bin_path} has no readable {meta_path.name} ({exc}); delete both files to re-encode"
            ) from exc
        if meta.get("bytes") != len(data) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
            raise CodecError(
                f"stored bitstream {bin_path} is corrupt ({len(data)} bytes, checksum mismatch); "
                f"delete it and {meta_path.name} to re-encode"
            )
        self.reused += 1
        return StoredBitstream(
            data, float(meta["encode_s"]), float(meta.get("features_s", 0.0)), dict(meta.get("extra", {}))
        )

    def put(self, image_id: int, stored: StoredBitstream) -> None:
        """Write the metadata, then the bytes (the ``.bin`` appears last: its presence means both are whole)."""
        meta = {
            "bytes": len(stored.data),
            "sha256": hashlib.sha256(stored.data).hexdigest(),
            "encode_s": stored.encode_s,
            "features_s": stored.features_s,
            "extra": stored.extra,
            "written": time.time(),
        }
        write_atomic(self.folder / f"{image_id}.json", lambda f: f.write(json.dumps(meta).encode()))
        write_atomic(self.folder / f"{image_id}.bin", lambda f: f.write(stored.data))
