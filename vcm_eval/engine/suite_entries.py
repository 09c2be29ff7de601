"""A suite's entries: each ``suite.runs`` line expanded into the override lists its runs are composed from.

Shared by the image suite (``vcm_eval.engine.suite``) and the video suite (``vcm_eval.engine.video_suite``),
which both import it, so neither imports the other.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig

from vcm_eval.errors import ConfigError
from vcm_eval.resources import ANCHORS_DIR
from vcm_eval.utils.cli import modernize


def expand_entry(entry: str) -> list[list[str]]:
    """``"a=1 b=2,3"`` -> ``[["a=1", "b=2"], ["a=1", "b=3"]]`` (cartesian product of comma lists)."""
    choices = []
    for token in shlex.split(entry):
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"suite entry {entry!r}: {token!r} is not key=value; write overrides as on the command line"
            )
        if value.startswith(("[", "{")):
            choices.append([token])
        else:
            choices.append([f"{key}={v}" for v in value.split(",")])
    return [list(combo) for combo in itertools.product(*choices)]


def published_file(name: str) -> Path:
    """``suite.published``: a path, or a file name in the shipped anchors/ folder."""
    path = Path(name)
    return path if path.is_file() or path.is_absolute() else ANCHORS_DIR / name


def is_suite_override(override: str) -> bool:
    """Overrides of the suite itself (``suite=...``, ``suite.runs=...``), not passed to its entries."""
    key = override.lstrip("+~").split("=", 1)[0]
    return key in ("suite", "pipeline") or key.startswith(("suite.", "pipeline."))


def composed_entries(cfg: DictConfig, base_overrides: list[str]) -> Iterator[tuple[str, list[str], list[str]]]:
    """(entry, its expanded overrides, the overrides to compose) for every run of ``cfg.suite.runs``, in order.

    The overrides to compose are ``suite.overrides``, then the job's own (not the suite's), then the entry's in
    today's spellings (a note is printed for each old one): a run composed from them is the run its own command
    line would make.

    Raises:
        ConfigError: ``suite.runs`` is empty, or an entry is not ``key=value`` overrides.
    """
    if not cfg.suite.runs:
        raise ConfigError("suite.runs is empty; list override strings such as 'pipeline=image_anchor pipeline.qp=32'")
    base = list(cfg.suite.overrides) + [o for o in base_overrides if not is_suite_override(o)]
    for entry in cfg.suite.runs:
        for overrides in expand_entry(entry):
            modern, notes = modernize(overrides)
            for note in notes:
                print(f"warning: suite entry {entry!r}: {note}")
            yield entry, overrides, base + modern
