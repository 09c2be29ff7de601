"""Open Images ground truth as the Open Images Challenge metric needs it (one image at a time).

The Challenge metric (TensorFlow object_detection's ``OpenImagesChallengeEvaluator``) scores an
image only for the classes that carry a *verified image-level label* there: a positive label
says the class is present (its boxes are the ground truth), a negative label says it is absent
(every detection of it is a false positive); a class with no verified label is not scored on
that image at all. Boxes flagged ``IsGroupOf`` cover a group of objects: any number of
detections inside one of them count once. The readers (``vcm_eval.data.oiv6``) fill these
structures from the challenge CSVs or from CompressAI-Vision's converted JSON; the metric
(``vcm_eval.metrics.oid_challenge``) reads nothing else.

Labels are Open Images MIDs (``/m/01g317``); ``OidLabelMap`` names them and gives each a
1-based class id, as the challenge's ``oid_object_detection_challenge_500_label_map.pbtxt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class OidLabelMap:
    """The evaluated classes: class id (1..K) -> MID and display name.

    Attributes:
        mids: MIDs in class-id order (``mids[k - 1]`` is class ``k``).
        names: display names, same order (``Person``, ``Car``).
    """

    mids: tuple[str, ...]
    names: tuple[str, ...]

    def id_of(self, mid: str) -> int | None:
        """Class id of a MID, or None when the class is not evaluated."""
        try:
            return self.mids.index(mid) + 1
        except ValueError:
            return None


@dataclass
class OidImageTruth:
    """One image's Open Images annotations, in pixels of the original image.

    Attributes:
        boxes: float64 [N, 4] (x0, y0, x1, y1) in pixels.
        labels: N MIDs, one per box (already expanded up the hierarchy when the reader was asked to).
        group_of: bool [N], the ``IsGroupOf`` flag.
        masks: COCO RLE dicts, one per box, for instance segmentation; None when the image has no
            mask annotations (then its boxes are still the detection ground truth).
        verified: MID -> True (verified present) / False (verified absent), expanded likewise.
        height, width: the original image's size in pixels.
    """

    boxes: np.ndarray
    labels: list[str]
    group_of: np.ndarray
    verified: dict[str, bool]
    height: int
    width: int
    masks: list[dict] | None = field(default=None)


@dataclass
class OidTruthSet:
    """A dataset's Open Images ground truth: what ``dataset=oiv6`` / ``synthetic_oid`` attach to it.

    Attributes:
        label_map: the evaluated classes.
        images: image id -> that image's truth (images without annotations are absent).
        category_to_mid: dataset category id (what detections carry) -> MID; categories without
            an Open Images counterpart are absent, and their detections are dropped, as MPEG's
            evaluation drops COCO classes it cannot map.
        ancestors: MID -> its ancestors in the label hierarchy (the hierarchy JSON), used to
            expand detections as the annotations were expanded; None = no expansion.
    """

    label_map: OidLabelMap
    images: dict[int, OidImageTruth]
    category_to_mid: dict[int, str]
    ancestors: dict[str, tuple[str, ...]] | None = None
