"""VVC (H.266) as MPEG's anchors run it: VVenC through FFmpeg or its apps, VTM, the colour path.

``VvcEncoder`` codes one picture (``encoder``); ``Vtm`` runs the reference software as MPEG's
scripts do (``vtm``); ``colour`` converts RGB to 4:2:0 the way the anchor scripts do;
``shipped`` reads the VTM bitstreams shipped in anchors/; ``headers`` reads the coded slice QP back.
"""

from vcm_eval.codecs.vvc.encoder import VvcEncoder

__all__ = ["VvcEncoder"]
