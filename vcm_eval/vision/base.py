"""The task network seam every pipeline uses: image -> FPN features -> instances.

A feature codec sits between ``TaskModel.features`` and ``TaskModel.predict_from_features``; the
image anchor and the uncompressed reference call ``TaskModel.predict``, which is exactly those two
chained (tests check it against the backend's own unsplit forward pass).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vcm_eval.errors import ConfigError
from vcm_eval.revisions import revision
from vcm_eval.vision.levels import LEVELS

__all__ = ["LEVELS", "FeatureSet", "Instances", "TaskModel"]


@dataclass
class FeatureSet(Mapping[str, torch.Tensor]):
    """The FPN pyramid of one image: ordered level name -> float32 tensor [C, H, W].

    Attributes:
        levels: ``p2``..``p6`` (strides 4..64) in that order; a codec may carry a subset.
        image_size: (height, width) of the original image in pixels (the rate's denominator).
        input_size: (height, width) of the network input after resizing, before padding; the
            detector needs it to clip boxes and map them back to the original image.
    """

    levels: dict[str, torch.Tensor]
    image_size: tuple[int, int]
    input_size: tuple[int, int]

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.levels[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.levels)

    def __len__(self) -> int:
        return len(self.levels)

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """Level name -> (C, H, W)."""
        return {k: tuple(v.shape) for k, v in self.levels.items()}  # type: ignore[misc]

    def num_values(self) -> int:
        return sum(int(v.numel()) for v in self.levels.values())

    def replace(self, levels: dict[str, torch.Tensor]) -> FeatureSet:
        """Same image metadata, new tensors (what a decoder returns)."""
        return FeatureSet(levels=levels, image_size=self.image_size, input_size=self.input_size)


@dataclass
class Instances:
    """Detections of one image in original-image pixel coordinates.

    Attributes:
        boxes: float32 [N, 4] (x0, y0, x1, y1).
        scores: float32 [N] in 0..1.
        labels: int64 [N], model class index 1..K (0 is background).
        masks: bool [N, H, W] at the original image size, or None for a box-only model.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class TaskModel(ABC):
    """A detector split at its FPN.

    ``class_names[k - 1]`` names model label ``k``; evaluators map names to dataset categories.
    """

    class_names: tuple[str, ...]
    name: str

    @classmethod
    def from_config(cls, cfg: Any, runtime: Any) -> TaskModel:
        """The network ``cfg.model`` describes, weights loaded, on ``runtime.device`` (each backend's own).

        Called by ``vcm_eval.utils.components.build`` as every component is: ``cfg`` is the read-only
        view of the ``model`` group, ``runtime`` how the run executes (``Runtime``).
        """
        raise NotImplementedError(f"{cls.__name__} cannot be built from a config; give it a from_config")

    @abstractmethod
    def features(self, image: np.ndarray) -> FeatureSet:
        """Backbone + FPN of one uint8 RGB image [H, W, 3]."""

    @abstractmethod
    def predict_from_features(self, features: FeatureSet) -> Instances:
        """RPN + ROI heads on (possibly decoded) features; P6 is used if present, else rebuilt."""

    @abstractmethod
    def rebuild_p6(self, p5: torch.Tensor) -> torch.Tensor:
        """P6 from P5 with the FPN's own top block (the decoder side of a p2-p5 split)."""

    def all_levels(self, features: FeatureSet) -> dict[str, torch.Tensor]:
        """P2..P6 of ``features``, P6 rebuilt from P5 when a p2-p5 split did not code it.

        Raises:
            ConfigError: a level other than P6 is missing (the decoder cannot invent it).
        """
        levels = dict(features.levels)
        if "p6" not in levels and "p5" in levels:
            levels["p6"] = self.rebuild_p6(levels["p5"])
        missing = [lv for lv in LEVELS if lv not in levels]
        if missing:
            raise ConfigError(f"features lack levels {missing}; the detector needs p2..p5 (p6 is rebuilt)")
        return levels

    def predict(self, image: np.ndarray) -> Instances:
        """The full network: ``predict_from_features(features(image))``."""
        return self.predict_from_features(self.features(image))

    _fingerprint_src: str = ""  # what identifies the network: its architecture config + weights' hash

    @property
    def fingerprint(self) -> str:
        """A short hash of architecture, weights and the feature code's revision: the key of feature caches and
        records."""
        return hashlib.sha256(f"features:{revision('features')}:{self._fingerprint_src}".encode()).hexdigest()[:16]
