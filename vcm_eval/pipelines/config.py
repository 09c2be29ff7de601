"""Schemas every pipeline config starts from; each codec family's own lives beside its code.

A pipeline config's ``_target_`` names the codec class that builds itself from it
(``vcm_eval.utils.components.build``); ``name`` is what its runs are filed and plotted under.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class PipelineConfig:
    """Common base: the pipeline's name and the codec class it builds ("" = no codec)."""

    name: str = MISSING
    _target_: str = ""


@dataclass
class DecodeLimits:
    """``decode.*``: what one decode of an untrusted stream may ask for (docs/architecture.md, threat model).

    ``max_pixels``: the largest image or input size a stream's header may name (64 M pixels, 8192 x 8192:
    16x the largest test-condition picture); ``max_memory``: the most bytes a decoder may allocate by its
    own estimate from the validated header (4 GiB). A pipeline passes each to a codec's ``decode`` when it
    takes it (every built-in codec takes both). Not in the run key: a stream within the limits decodes the
    same whatever they are; one beyond them is a recorded decode failure.
    """

    max_pixels: int = 64 * 2**20
    max_memory: int = 4 * 2**30


@dataclass
class UncompressedConfig(PipelineConfig):
    """The full task network on the original images: the reference accuracy (no codec, no rate)."""

    name: str = "uncompressed"


@dataclass
class UserCodecConfig(PipelineConfig):
    """``pipeline=image_codec`` / ``feature_codec``: a researcher's codec, built by Hydra from ``codec``.

    ``codec``: ``_target_`` (``module.Class``, a ``vcm_eval.codecs`` ImageCodec or FeatureCodec)
    and its keyword arguments, e.g. ``+pipeline.codec._target_=my_codecs.JpegCodec
    +pipeline.codec.quality=30``. The keyword arguments are the run's parameters. docs/your_codec.md.
    """

    name: str = MISSING
    codec: dict[str, Any] = field(default_factory=dict)


def register(cs: ConfigStore) -> None:
    cs.store(group="pipeline", name="base_uncompressed", node=UncompressedConfig)
    cs.store(group="pipeline", name="base_user_codec", node=UserCodecConfig)
