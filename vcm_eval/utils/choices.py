"""Config choices: a field with a fixed set of valid values, checked when the config is composed.

A schema field typed with a ``Choice`` subclass makes OmegaConf refuse any other value at
composition, listing the valid ones (``Invalid value 'nope', expected one of [mpeg,
bt709_limited]``), so a typo never reaches a run. Members are ``str`` and compare equal to their
value (``Colour.mpeg == "mpeg"``), so the code that reads them stays plain. Values that are not
Python names (``p2-p5``, ``400``) use Enum's functional form (``choices``); an integer typed on
the command line (``400``) is accepted for its text.

Python callers (tests, a researcher's script) pass plain strings to the codecs; ``choice``
converts them with the same valid set and the same message, so there is one check per choice,
declared once.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from typing import Any, TypeVar

from vcm_eval.errors import ConfigError

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """Base of every config choice (see the module docstring)."""

    @classmethod
    def _missing_(cls, value: object) -> Choice | None:
        text = str(value)
        return next((m for m in cls if m.value == text), None)

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def values(cls) -> list[str]:
        return [str(m.value) for m in cls]


def choices(name: str, values: tuple[str, ...], *, module: str) -> Any:
    """A ``Choice`` whose member names are the values themselves (for values that are not Python names).

    Typed ``Any`` for mypy, which cannot follow Enum's functional form.
    """
    return Choice(name, [(v, v) for v in values], module=module)  # type: ignore[call-overload]


def choice(kind: type[C], value: Any, setting: str) -> C:
    """``value`` as a member of ``kind``; ``ConfigError`` naming ``setting`` and the valid values otherwise."""
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{setting}={value!r} is unknown; use one of {kind.values()}") from None


def check_choices(obj: Any, prefix: str) -> None:
    """Check every ``Choice``-typed field of a dataclass (and of nested dataclasses) holds a valid value.

    OmegaConf checks them when a config is composed; this does the same for a schema object built
    in Python (``RcnnConfig(resize="bad")``), with the same message.
    """
    for f in dataclasses.fields(obj):
        value, kind = getattr(obj, f.name), typing.get_type_hints(type(obj)).get(f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_choices(value, f"{prefix}.{f.name}")
        elif isinstance(kind, type) and issubclass(kind, Choice):
            choice(kind, value, f"{prefix}.{f.name}")


def plain(value: Any) -> Any:
    """``value`` with every ``Choice`` replaced by its text, through dicts and lists: what files store
    (a checkpoint loaded with ``weights_only`` accepts builtin types only)."""
    if isinstance(value, Choice):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value
