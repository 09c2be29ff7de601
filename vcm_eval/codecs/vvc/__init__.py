"""VVC (H.266) as MPEG's anchors run it: VVenC through FFmpeg or its apps, VTM, the colour path.

``VvcEncoder`` codes one picture (``encoder``); ``Vtm`` runs the reference software as MPEG's
scripts do (``vtm``); ``colour`` converts RGB to 4:2:0 the way the anchor scripts do;
``shipped`` reads the VTM bitstreams shipped in anchors/; ``headers`` reads the coded slice QP back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vcm_eval.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from vcm_eval.codecs.vvc.encoder import VvcEncoder

__all__ = ["VvcEncoder"]
__getattr__ = lazy_exports(__name__, {"VvcEncoder": "vcm_eval.codecs.vvc.encoder"})
