"""What every dataset hands to a pipeline: one image and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One evaluation image.

    Attributes:
        image_id: the COCO image id (int), also the key of every record.
        image: uint8 array [H, W, 3], RGB.
        path: the image file on disk (evaluators use its name to find ground truth).
    """

    image_id: int
    image: np.ndarray
    path: Path

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
