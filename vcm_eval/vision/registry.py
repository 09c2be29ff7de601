"""Build the task network a ``model`` config names: its ``_target_`` class, built by its ``from_config``.

``model._target_`` is ``vcm_eval.vision.torchvision_rcnn.TorchvisionRcnn`` (the default) or
``vcm_eval.vision.detectron2_rcnn.Detectron2Rcnn`` (detectron2's own code, where it is installed):
the same ``RcnnConfig`` describes both.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from vcm_eval.errors import ConfigError
from vcm_eval.utils.components import Runtime, build, locate
from vcm_eval.vision.base import TaskModel

DETECTRON2 = "vcm_eval.vision.detectron2_rcnn.Detectron2Rcnn"
BACKENDS = {
    "torchvision": "vcm_eval.vision.torchvision_rcnn.TorchvisionRcnn",
    "detectron2": DETECTRON2,
}  # model._target_ of each


def build_task_model(model_cfg: DictConfig, *, device: str = "cpu") -> TaskModel:
    """The configured task network with its weights loaded, in eval mode, on ``device``: ``_target_``'s
    ``from_config`` called by ``vcm_eval.utils.components.build``, as every component is built."""
    try:
        target = locate(model_cfg._target_, "model._target_")
    except ConfigError as exc:
        if model_cfg._target_ == DETECTRON2:
            raise ConfigError(
                f"model._target_={DETECTRON2} needs detectron2 ({exc}); install it from source "
                "(pip install 'git+https://github.com/facebookresearch/detectron2.git'), or leave model._target_ at "
                "its default, which loads the same detectron2 weights"
            ) from exc
        raise
    if not (isinstance(target, type) and issubclass(target, TaskModel)):
        raise ConfigError(f"model._target_={model_cfg._target_} is not a vcm_eval.vision.base.TaskModel")
    model: TaskModel = build(OmegaConf.create({"model": model_cfg}), "model", Runtime(device=device))
    return model
