"""Content keys: the same pixels give the same key wherever they come from (caches, shipped bitstreams)."""

from __future__ import annotations

import hashlib

import numpy as np


def image_digest(image: np.ndarray) -> str:
    """sha256 of a uint8 image's shape and pixels (the image part of a cache key)."""
    h = hashlib.sha256(repr((image.shape, str(image.dtype))).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()
