"""Schema of the ``vvc`` config group: how VVC is run (``VvcEncoder``, ``Vtm``; docs/anchors.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from vcm_eval.utils.choices import Choice
from vcm_eval.utils.components import NOT_IN_KEY

SHIPPED_SEQUENCES = "anchors/vtm_video_anchor"  # the shipped VTM video streams (resolved against the package)


class Backend(Choice):
    """``ffmpeg``: VVenC in FFmpeg (+ its vvc decoder); ``vvenc_apps``: vvencapp/vvdecapp; ``vtm``: VTM."""

    ffmpeg = "ffmpeg"
    vvenc_apps = "vvenc_apps"
    vtm = "vtm"


class Preset(Choice):
    """VVenC's presets, fastest first (docs/anchors.md measures each against VTM)."""

    faster = "faster"
    fast = "fast"
    medium = "medium"
    slow = "slow"
    slower = "slower"


class Colour(Choice):
    """The image anchor's RGB -> YUV path: MPEG's anchor scripts, or BT.709 limited range."""

    mpeg = "mpeg"
    bt709_limited = "bt709_limited"


@dataclass
class VvcConfig:
    """How VVC is run (``vcm_eval.codecs.vvc``; docs/anchors.md).

    ``backend``: ``ffmpeg`` (VVenC in FFmpeg; ``ffmpeg`` empty = imageio-ffmpeg's binary),
    ``vvenc_apps`` (vvencapp/vvdecapp) or ``vtm`` (VTM as MPEG's anchor scripts run it).
    ``colour``: the image anchor's colour path; ``colour_ffmpeg`` the FFmpeg that converts it
    ("" = FFmpeg 4.2.2 for ``mpeg``, as MPEG ran it). ``qpa`` (perceptual QP adaptation) is off:
    the task network, not a human, looks at the result. ``shipped``: the folder of shipped VTM
    image-anchor bitstreams that the ``vtm`` backend decodes instead of encoding (relative paths
    also resolve against the project root). ``threads``: VVenC's threads; with VTM (one core per run), the
    intra periods of a sequence coded at once (``VvcSequenceCodec.vtm_segment_streams``). Paths of binaries
    and the thread count are not in the run key: the codec's version (encoder build, VTM setting) is.
    """

    backend: Backend = Backend.ffmpeg
    ffmpeg: str = ""
    vvencapp: str = field(default="vvencapp", metadata=NOT_IN_KEY)
    vvdecapp: str = field(default="vvdecapp", metadata=NOT_IN_KEY)
    preset: Preset = Preset.medium  # docs/anchors.md: the encoder gap against VTM, and why medium
    threads: int = field(default=1, metadata=NOT_IN_KEY)
    qpa: bool = False
    extra_params: str = ""
    colour: Colour = Colour.mpeg
    colour_ffmpeg: str = field(default="", metadata=NOT_IN_KEY)
    vtm_encoder: str = field(default="", metadata=NOT_IN_KEY)
    vtm_decoder: str = field(default="", metadata=NOT_IN_KEY)
    vtm_cfg: str = field(default="", metadata=NOT_IN_KEY)
    shipped: str = field(default="anchors/vtm_image_anchor", metadata=NOT_IN_KEY)


class Structure(Choice):
    """MPEG's video coding structures: random access (hierarchical B, CRA) or low delay (no reordering)."""

    random_access = "random_access"
    low_delay = "low_delay"


@dataclass
class VvcSequenceConfig:
    """Schema of a VVC sequence preset (conf/vvc_sequence/): how a sequence is coded; the ``vvc`` group is the encoder.

    ``structure``: ``random_access`` or ``low_delay``. ``intra_period``: pictures between intra pictures
    (0 = the sequence's test-condition period, ``VideoSequence.intra_period``; -1 = only the first
    picture). ``vtm_cfg``: VTM's ``encoder_randomaccess_vtm.cfg`` / ``encoder_lowdelay_vtm.cfg`` when
    ``vvc.backend=vtm`` (its name and md5 are in the codec's version, hence the run key). ``vtm_parcat``: VTM's
    ``parcatStatic``; with it, VTM codes periodic intra pictures as MPEG's FCM scripts do (one VTM run per
    intra period, joined by parcat), since one low-delay run with a CRA every period writes undecodable streams.
    ``rate_point``: 0 codes every sequence at ``pipeline.qp``; k >= 1 codes each sequence at the k-th QP of its
    test-condition list (``VideoSequence.qps``, MPEG's ``-q``), so one image-anchor run is one rate point of MPEG's
    per-class QP tables. It is then the run's rate parameter, kept in the key's pipeline part
    (``engine.video.video_key_parts``), so the runs of a sweep over it are one curve. ``shipped``: the folder of
    shipped VTM sequence streams that ``vvc=vtm`` uses where one fits (the same frames, QP, structure, intra
    period and VTM setting) instead of encoding; empty: always encode.
    """

    structure: Structure = Structure.random_access
    intra_period: int = 0
    rate_point: int = field(default=0, metadata=NOT_IN_KEY)
    vtm_cfg: str = field(default="", metadata=NOT_IN_KEY)
    vtm_parcat: str = field(default="", metadata=NOT_IN_KEY)
    shipped: str = field(default=SHIPPED_SEQUENCES, metadata=NOT_IN_KEY)


def register(cs: ConfigStore) -> None:
    cs.store(group="vvc", name="base_vvc", node=VvcConfig)
    cs.store(group="vvc_sequence", name="base_vvc_sequence", node=VvcSequenceConfig)
