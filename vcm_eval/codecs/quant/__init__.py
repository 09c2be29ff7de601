"""Method A, the "2-bit features": per-channel normalization + n-symbol quantization, and the 8-bit point.

``NormalizedQuantizer`` (``nsymbol``) codes the symbols with a context-adaptive rANS coder
(``entropy``, ``rans``, compiled loops in ``kernels``); ``Uniform8bitQuantizer`` (``uniform8``)
is the paper's 8-bit comparison point; both write one stream format (``stream``). ``sizes``
reproduces the paper's data-size table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vcm_eval.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from vcm_eval.codecs.quant.nsymbol import NormalizedQuantizer
    from vcm_eval.codecs.quant.uniform8 import Uniform8bitQuantizer

__all__ = ["NormalizedQuantizer", "Uniform8bitQuantizer"]
__getattr__ = lazy_exports(
    __name__,
    {"NormalizedQuantizer": "vcm_eval.codecs.quant.nsymbol", "Uniform8bitQuantizer": "vcm_eval.codecs.quant.uniform8"},
)
