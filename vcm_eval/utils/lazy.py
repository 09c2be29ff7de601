"""Public names of a package loaded on first use (PEP 562).

A codec family's ``__init__`` names its public classes, but importing the family's config schema
(``vcm_eval.codecs.quant.config``) runs that ``__init__`` too: composing a config must not load
torch or compile loops, so the classes are imported only when first asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``homes[name]`` (a module path) when ``name`` is first used."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package} has no attribute {name!r}")
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
