"""Keys that know the code: a change to the code behind results needs a new revision (``vcm_eval.revisions``).

Each area's code is hashed without docstrings and comments (``ast`` of every module the area
names); the table below holds the hash each revision was made with. A change to that code and
not to its revision fails here: bump ``CODE[area]`` in vcm_eval/revisions.py and record the new
hash below, so old feature-cache entries and run folders become misses instead of being reused.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
from conftest import compose_cfg

from vcm_eval.engine.run import run_dir_for
from vcm_eval.pipelines.base import codec_identity
from vcm_eval.pipelines.build import build_codec
from vcm_eval.pipelines.cache import FeatureCache
from vcm_eval.revisions import CODE, revision
from vcm_eval.vision.config import RcnnConfig

PACKAGE = Path(__file__).resolve().parent.parent / "vcm_eval"

# area -> (revision, hash of its code at that revision)
RECORDED = {
    "features": (1, "b03013f226f4dba4"),
    "evaluators": (2, "5af20d8370af9bc4"),
    "image_anchor": (3, "e0ebc15c6158cd75"),
    "feature_anchor": (4, "ac6d79a660869164"),
    "quant": (3, "6757cdff911c0395"),
    "fusion": (4, "e85bfa5148e307ef"),
    "msfc": (3, "7968ccbfa84bebbb"),
    "video": (10, "faba61f50d0014db"),
}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return tree


def stable_dump(node: object) -> str:
    """A syntax tree as text that does not depend on the Python version.

    ``ast.dump`` does: 3.12 adds empty ``type_params`` fields, 3.13 leaves empty fields out. Here
    empty fields (None, []) are always left out, so one hash holds on every supported Python.
    """
    if isinstance(node, ast.AST):
        fields = ((name, getattr(node, name, None)) for name in node._fields)
        shown = [f"{name}={stable_dump(value)}" for name, value in fields if value is not None and value != []]
        return f"{type(node).__name__}({', '.join(shown)})"
    if isinstance(node, list):
        return "[" + ", ".join(stable_dump(item) for item in node) + "]"
    return repr(node)


def code_hash(modules: tuple[str, ...]) -> str:
    """sha256 of the modules' syntax trees (comments and docstrings do not count), 16 hex digits."""
    h = hashlib.sha256()
    for module in modules:
        tree = _without_docstrings(ast.parse((PACKAGE / module).read_text()))
        h.update(module.encode() + stable_dump(tree).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("area", sorted(CODE))
def test_code_changes_come_with_a_new_revision(area: str) -> None:
    modules = CODE[area][1]
    assert all((PACKAGE / m).is_file() for m in modules), f"{area} names a module that does not exist: {modules}"
    recorded_revision, recorded_hash = RECORDED[area]
    now = code_hash(modules)
    assert (revision(area), now) == (recorded_revision, recorded_hash), (
        f"the code of {area!r} changed: bump CODE[{area!r}] in vcm_eval/revisions.py (now {revision(area)}) "
        f"and record ({revision(area) + (now != recorded_hash)}, {now!r}) in tests/test_revisions.py"
    )


def test_comments_and_docstrings_do_not_count(tmp_path: Path) -> None:
    code = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    a, b = ast.parse(code), ast.parse('def f(x):\n    """Other doc."""\n    # a comment\n    return x + 1\n')
    assert stable_dump(_without_docstrings(a)) == stable_dump(_without_docstrings(b))
    assert stable_dump(_without_docstrings(a)) != stable_dump(
        _without_docstrings(ast.parse("def f(x):\n    return x + 2\n"))
    )


def test_the_hash_leaves_out_fields_that_python_versions_add() -> None:
    tree = ast.parse("def f(x):\n    return x\n")
    shown = stable_dump(tree)
    assert "decorator_list" not in shown and "returns" not in shown  # empty on every version: left out
    assert "FunctionDef(name='f'" in shown and "Return(value=Name(id='x'" in shown


def test_a_new_feature_revision_makes_old_cache_entries_and_runs_misses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from vcm_eval.vision.torchvision_rcnn import TorchvisionRcnn

    model = TorchvisionRcnn(RcnnConfig(weights=None, min_size=64, max_size=128))
    before = model.fingerprint  # the feature cache's folder and the run key's model identity
    cache_before = FeatureCache(root=tmp_path, model=model, max_gb=1.0).folder
    monkeypatch.setitem(CODE, "features", (revision("features") + 1, CODE["features"][1]))
    assert model.fingerprint != before
    assert FeatureCache(root=tmp_path, model=model, max_gb=1.0).folder != cache_before


def test_a_new_codec_or_evaluator_revision_makes_old_run_folders_misses(
    monkeypatch: pytest.MonkeyPatch, hydra_conf: None, tmp_path: Path
) -> None:
    cfg = compose_cfg(["pipeline=quant", f"paths.results={tmp_path}"])
    codec = build_codec(cfg)
    assert codec is not None and codec.revision_area == "quant"
    before = run_dir_for(cfg, codec_identity(codec))
    monkeypatch.setitem(CODE, "quant", (revision("quant") + 1, CODE["quant"][1]))
    after_codec = run_dir_for(cfg, codec_identity(codec))
    monkeypatch.setitem(CODE, "evaluators", (revision("evaluators") + 1, CODE["evaluators"][1]))
    after_evaluators = run_dir_for(cfg, codec_identity(codec))
    assert len({before, after_codec, after_evaluators}) == 3 and before.parent == after_evaluators.parent
