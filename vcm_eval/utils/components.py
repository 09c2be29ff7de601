"""One way to build a component (codec, dataset, task model) from its config.

Every component's config node names what builds it in ``_target_`` (its schema sets the default;
a researcher's codec or dataset sets it on the command line), and ``build`` does the rest:

* a class with a ``from_config(cfg, runtime)`` classmethod (every built-in codec and task model,
  after detectron2's ``@configurable``) gets a *view* of the config: the node's own group plus the
  groups the class declares in ``reads`` (``VvcImageCodec.reads = ("vvc",)``), nothing else, with
  interpolations into other groups resolved. The declaration is therefore complete by construction,
  and the run key hashes exactly those groups;
* a plain function is called the same way (every dataset builder, ``synthetic_dataset``; and
  ``user_image_codec``, which builds a researcher's codec with Hydra's ``instantiate`` from
  ``pipeline.codec``: its own ``_target_`` and keyword arguments).

Evaluators are not built here: each builds itself from the dataset it scores
(``vcm_eval.metrics.evaluator``).

``Runtime`` carries what decides *where and how fast* a component runs but never its results
(threads, progress bar, folders): it is passed beside the view and never hashed. Schema fields
that do not change a result either (a binary's path, an encoder's thread count) say so with
``field(metadata=NOT_IN_KEY)``; ``key_view`` leaves them out of the run key.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vcm_eval.errors import ConfigError

NOT_IN_KEY = {"in_key": False}  # field metadata: the value never changes a result (left out of the run key)
NOT_A_PARAM = {"param": False}  # field metadata: in the key, but not a parameter shown in folder names and tables


@dataclass(frozen=True)
class Runtime:
    """How a run executes, never what it computes (not in any key).

    Attributes:
        threads: torch / compiled-loop threads.
        device: the resolved torch device (``cpu``, ``cuda:0``).
        data_dir: where generated datasets are written (``paths.data``).
        progress: show progress bars.
    """

    threads: int = 1
    device: str = "cpu"
    data_dir: Path = Path("data")
    progress: bool = False


def locate(target: str, setting: str) -> Any:
    """The object a dotted path names (``module.Class`` or ``module.Class.attribute``).

    Raises:
        ConfigError: naming ``setting`` and the path when it cannot be imported.
    """
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{setting} must name a class as module.Class, got {target!r}")
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if exc.name is not None and not ".".join(parts[:cut]).startswith(exc.name):
                raise ConfigError(f"cannot import {target} ({setting}): {exc}") from exc
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ConfigError(
        f"{setting}={target!r} names nothing importable; check the module is on PYTHONPATH and the spelling"
    )


def select(cfg: DictConfig, groups: tuple[str, ...]) -> DictConfig:
    """A read-only config holding only ``groups`` of ``cfg`` (what a component declared it reads).

    Raises:
        ConfigError: a declared group is absent from the config.
    """
    missing = [g for g in groups if g not in cfg]
    if missing:
        raise ConfigError(f"config lacks the groups {missing} a component reads; compose it with them")
    return OmegaConf.create({g: resolved(cfg[g], g) for g in groups}, flags={"readonly": True})


def resolved(node: Any, group: str) -> DictConfig:
    """A copy of the config node of ``group`` with its interpolations resolved against the config it
    belongs to (so ``dataset.root=${paths.data}/x`` still means what it says in a view that holds no
    ``paths``), its schema kept. A dataclass instance becomes its structured config.

    Raises:
        ConfigError: an interpolation names nothing in the config.
    """
    copied = copy.deepcopy(node) if isinstance(node, DictConfig) else OmegaConf.structured(node)
    try:  # a deep copy keeps its parent, so interpolations still see the whole config
        OmegaConf.resolve(copied)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{group}: cannot resolve an interpolation ({exc}); fix the ${{...}} it names") from exc
    return copied


def reads_of(target: Any) -> tuple[str, ...]:
    """The config groups a component class declares it reads besides its own (``reads``)."""
    return tuple(getattr(target, "reads", ()))


def build(cfg: DictConfig, group: str, runtime: Runtime) -> Any:
    """The component of ``cfg[group]``: ``_target_``'s ``from_config`` (or the function itself) called
    with the view of its declared groups and the runtime (see the module docstring).

    Raises:
        ConfigError: ``_target_`` names nothing importable.
    """
    target = locate(cfg[group].get("_target_", ""), f"{group}._target_")
    factory = getattr(target, "from_config", target)
    return factory(select(cfg, (group, *reads_of(target))), runtime)


def _schema_fields(node: DictConfig) -> dict[str, dataclasses.Field[Any]]:
    schema = OmegaConf.get_type(node)
    return {f.name: f for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else {}


def key_view(node: DictConfig) -> dict[str, Any]:
    """The node's values that can change a result: every field but those marked ``NOT_IN_KEY``."""
    fields = _schema_fields(node)
    data = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    if not isinstance(data, dict):
        raise ConfigError(f"config node {node} is not a group of settings")
    return {
        str(k): v for k, v in data.items() if fields.get(str(k)) is None or fields[str(k)].metadata.get("in_key", True)
    }


def params_view(node: DictConfig) -> dict[str, Any]:
    """The parameters a run is filed and tabled under: the key's values minus ``name``, ``_target_``
    and fields marked ``NOT_A_PARAM``."""
    fields = _schema_fields(node)
    return {
        k: v
        for k, v in key_view(node).items()
        if k not in ("name", "_target_") and (fields.get(k) is None or fields[k].metadata.get("param", True))
    }
