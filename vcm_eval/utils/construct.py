"""Build an object from the config entries named like its constructor's parameters.

Configs (Hydra groups, dataclass schemas) and the classes they configure share field names on
purpose, so one helper maps one onto the other instead of every builder listing each field:
a field added to both is wired without touching the builder. The match is checked, not hoped
for: a constructor parameter the config lacks is an error (a renamed field must not fall back to
a default in silence), unless the caller passes it or names it in ``optional``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def from_config(factory: Callable[..., T], cfg: Any, *, optional: tuple[str, ...] = (), **given: Any) -> T:
    """``factory(**{p: cfg.p for each parameter p}, **given)``; ``given`` wins over ``cfg``.

    Raises:
        TypeError: ``cfg`` lacks a parameter of ``factory`` that is neither given nor ``optional``
            (a programming error: the schema and the class disagree).
    """
    names = [
        name
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in given
    ]
    missing = [n for n in names if not _has(cfg, n) and n not in optional]
    if missing:
        raise TypeError(
            f"{getattr(factory, '__name__', factory)} takes {missing}, which its config {type(cfg).__name__} lacks"
        )
    kwargs = {name: getattr(cfg, name) for name in names if _has(cfg, name)}
    return factory(**kwargs, **given)


def _has(cfg: Any, name: str) -> bool:
    try:
        return name in cfg  # DictConfig / Mapping
    except TypeError:
        return hasattr(cfg, name)  # dataclass
