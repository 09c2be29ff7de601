"""Video datasets of MPEG's FCM video test conditions: SFU-HW-Objects-v1, MOT-layout tracking sets, and
the embedded default's synthetic video (docs/video.md).

``VideoDataset`` holds ``VideoSequence`` objects that stream their frames from disk; each kind's
builder (``sfu_dataset``, ``mot_dataset``, ``synthetic_video_dataset``) makes one from its config
(``vcm_eval.data.video.config``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vcm_eval.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from vcm_eval.data.video.base import FrameObject, MotTruth, VideoDataset, VideoFrame, VideoSequence
    from vcm_eval.data.video.mot import mot_dataset
    from vcm_eval.data.video.sfu import sfu_dataset
    from vcm_eval.data.video.synthetic import synthetic_video_dataset

__all__ = [
    "FrameObject",
    "MotTruth",
    "VideoDataset",
    "VideoFrame",
    "VideoSequence",
    "mot_dataset",
    "sfu_dataset",
    "synthetic_video_dataset",
]
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ("FrameObject", "MotTruth", "VideoDataset", "VideoFrame", "VideoSequence"), "vcm_eval.data.video.base"
        ),
        "mot_dataset": "vcm_eval.data.video.mot",
        "sfu_dataset": "vcm_eval.data.video.sfu",
        "synthetic_video_dataset": "vcm_eval.data.video.synthetic",
    },
)
