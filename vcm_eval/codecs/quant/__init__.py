"""Method A, the "2-bit features": per-channel normalization + n-symbol quantization, and the 8-bit point.

``NormalizedQuantizer`` (``nsymbol``) codes the symbols with a context-adaptive rANS coder
(``entropy``, ``rans``, compiled loops in ``kernels``); ``Uniform8bitQuantizer`` (``uniform8``)
is the paper's 8-bit comparison point; both write one stream format (``stream``). ``sizes``
reproduces the paper's data-size table.
"""

from vcm_eval.codecs.quant.nsymbol import NormalizedQuantizer
from vcm_eval.codecs.quant.uniform8 import Uniform8bitQuantizer

__all__ = ["NormalizedQuantizer", "Uniform8bitQuantizer"]
