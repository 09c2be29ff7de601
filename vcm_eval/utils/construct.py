"""Build an object from the config entries named like its constructor's parameters.

Configs (Hydra groups, dataclass schemas) and the classes they configure share field names on
purpose, so one helper maps one onto the other instead of every builder listing each field:
a field added to both is wired without touching the builder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def from_config(factory: Callable[..., T], cfg: Any, **given: Any) -> T:
    """``factory(**{p: cfg.p for each parameter p that cfg has}, **given)``.

    Parameters that ``cfg`` lacks keep their defaults; ``given`` wins over ``cfg``.
    """
    names = [
        name
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in given
    ]
    kwargs = {name: getattr(cfg, name) for name in names if _has(cfg, name)}
    return factory(**kwargs, **given)


def _has(cfg: Any, name: str) -> bool:
    try:
        return name in cfg  # DictConfig / Mapping
    except TypeError:
        return hasattr(cfg, name)  # dataclass
