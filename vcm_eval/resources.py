"""Where the configs and anchors are: inside an installed package, or at the top of a checkout.

A wheel carries ``conf/`` and ``anchors/`` as ``vcm_eval/conf`` and ``vcm_eval/anchors`` (setup.py);
a source checkout (editable install) has them beside the package. Everything that reads them asks
here, so ``vcm-eval`` runs the same from any folder.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """``vcm_eval/<name>`` in an installed package, else ``<checkout>/<name>``."""
    inside = PACKAGE / name
    return inside if inside.is_dir() else PACKAGE.parent / name


CONF_DIR = str(resource_dir("conf"))
ANCHORS_DIR = resource_dir("anchors")
