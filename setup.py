"""Build hook: the top-level conf/ and anchors/ ship inside the wheel as vcm_eval/conf and vcm_eval/anchors.

The repository keeps conf/ (Hydra's config groups) and anchors/ (published numbers, shipped VTM
bitstreams) at the top, where users and reviewers look for them; an installed package finds them
under its own folder (``vcm_eval.resources``). Editable installs read the top-level folders directly.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = {"conf": "vcm_eval/conf", "anchors": "vcm_eval/anchors"}


class BuildWithResources(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for src, dst in SHIPPED.items():
            target = Path(self.build_lib) / dst
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(Path(__file__).parent / src, target)


setup(cmdclass={"build_py": BuildWithResources})
