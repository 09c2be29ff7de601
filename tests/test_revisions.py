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

from vcm_eval.revisions import CODE, revision
from vcm_eval.vision.config import RcnnConfig

PACKAGE = Path(__file__).resolve().parent.parent / "vcm_eval"

# area -> (revision, hash of its code at that revision)
RECORDED = {
    "features": (1, "5175cfe89430b603"),
    "evaluators": (1, "2a86b2afe3b5ab2f"),
    "image_anchor": (3, "504e8218d0adbc4c"),  # 3d8efa84cfb505a0 before the BT.709 command helper (same commands)
    "feature_anchor": (4, "c0ee9bfcb9e6be5f"),
    "quant": (2, "5ae93d8b8501c48f"),
    "fusion": (3, "0151be64ecbb8eaa"),
    "msfc": (2, "1dff7a3bbe403ca5"),
    "video": (9, "c47b224a251415b7"),
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


def code_hash(modules: tuple[str, ...]) -> str:
    """sha256 of the modules' syntax trees (comments and docstrings do not count), 16 hex digits."""
    h = hashlib.sha256()
    for module in modules:
        tree = _without_docstrings(ast.parse((PACKAGE / module).read_text()))
        h.update(module.encode() + ast.dump(tree).encode())
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
    assert ast.dump(_without_docstrings(a)) == ast.dump(_without_docstrings(b))
    assert ast.dump(_without_docstrings(a)) != ast.dump(_without_docstrings(ast.parse("def f(x):\n    return x + 2\n")))


def test_a_new_feature_revision_makes_old_cache_entries_and_runs_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    from vcm_eval.vision.torchvision_rcnn import TorchvisionRcnn

    model = TorchvisionRcnn(RcnnConfig(weights=None, min_size=64, max_size=128))
    before = model.fingerprint  # the feature cache's folder and the run key's model identity
    monkeypatch.setitem(CODE, "features", (revision("features") + 1, CODE["features"][1]))
    assert model.fingerprint != before
