"""Revisions of vcm_eval's own code behind every result: part of the feature cache key and the run key.

A cached feature or a finished run is reused only while the code that produced it is unchanged.
Each area below names the modules whose code decides its results (``evaluators`` also holds the
ground truth's preparation and the rate's counting, which every run's key carries); ``tests/test_revisions.py``
holds a hash of each area's code (docstrings and comments left out) beside its revision, and
fails when the code changes and the revision does not: bump the number here, record the new
hash there, and old cache entries and run folders become misses instead of silently reused.

A built-in codec's area (``Codec.revision_area``) is in the run key beside its ``version()``
(stream format, encoder build, checkpoint hash). The container (codecs/bitstream.py) is in no area:
a change to it that moves bytes is a change of each codec's stream format version.
"""

from __future__ import annotations

# area -> (revision, modules relative to the package whose code it covers)
CODE = {
    "features": (1, ("vision/backbone.py", "vision/torchvision_rcnn.py", "vision/d2_compat.py", "vision/d2_weights.py",
                     "vision/detectron2_rcnn.py", "vision/base.py", "data/base.py")),
    "evaluators": (2, ("metrics/coco_eval.py", "metrics/cityscapes_eval.py", "metrics/oid_challenge.py",
                       "metrics/evaluate.py", "metrics/rate.py", "metrics/evaluator.py", "pipelines/base.py",
                       "data/cityscapes.py", "data/coco.py", "data/oid.py", "data/oid_csv.py", "data/oid_truth.py",
                       "data/oiv6.py", "data/synthetic.py", "data/scene.py", "data/synthetic_oid.py")),
    "image_anchor": (3, ("codecs/image_anchor/codec.py", "codecs/vvc/colour.py", "codecs/vvc/encoder.py",
                         "codecs/vvc/yuv.py", "codecs/vvc/vtm.py")),
    "feature_anchor": (4, ("codecs/feature_anchor/codec.py", "codecs/feature_anchor/tiling.py",
                           "codecs/feature_anchor/kernels.py", "codecs/minmax.py", "codecs/vvc/encoder.py",
                           "codecs/vvc/yuv.py")),
    "quant": (3, ("codecs/quant/nsymbol.py", "codecs/quant/uniform8.py", "codecs/quant/stream.py",
                  "codecs/quant/entropy.py", "codecs/quant/rans.py", "codecs/quant/kernels.py", "codecs/minmax.py",
                  "codecs/quant/sizes.py")),
    "fusion": (4, ("codecs/fusion/codec.py", "codecs/fusion/model.py", "codecs/fusion/zoo.py",
                   "codecs/pyramid_header.py")),
    "msfc": (3, ("codecs/msfc/codec.py", "codecs/msfc/model.py", "codecs/msfc/zoo.py", "codecs/pyramid_header.py",
                 "codecs/feature_anchor/tiling.py", "codecs/feature_anchor/kernels.py", "codecs/minmax.py",
                 "codecs/vvc/encoder.py", "codecs/vvc/yuv.py")),
    "video": (10, ("pipelines/video.py", "codecs/feature_anchor/sequence.py", "metrics/video.py",
                   "metrics/tracking.py", "engine/video.py", "data/video/sfu.py", "data/video/mot.py",
                   "data/video/synthetic.py")),
}  # fmt: skip


def revision(area: str) -> int:
    """The code revision of ``area`` (a key of ``CODE``)."""
    return CODE[area][0]
