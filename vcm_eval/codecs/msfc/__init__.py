"""MSFC, the fusion paper's comparator: learned multi-scale feature fusion and reconstruction around VVC.

``MsfcModel`` (``model``) holds the fusion (MSFF + SSFC encoder) and reconstruction (SSFC decoder +
MSFR) modules; ``MsfcFeatureCodec`` (``codec``) codes the fused feature as one 10-bit monochrome VVC
picture; ``zoo`` reads and writes checkpoints; ``train`` trains the modules (docs/msfc.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vcm_eval.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from vcm_eval.codecs.msfc.codec import MsfcFeatureCodec
    from vcm_eval.codecs.msfc.model import MsfcModel

__all__ = ["MsfcFeatureCodec", "MsfcModel"]
__getattr__ = lazy_exports(
    __name__, {"MsfcFeatureCodec": "vcm_eval.codecs.msfc.codec", "MsfcModel": "vcm_eval.codecs.msfc.model"}
)
