"""Model backend name -> TaskModel: the one place a task network is built from config."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from vcm_eval.errors import ConfigError
from vcm_eval.vision.base import TaskModel
from vcm_eval.vision.torchvision_rcnn import RcnnConfig, TorchvisionRcnn

BACKENDS = ("torchvision", "detectron2")


def build_task_model(model_cfg: DictConfig, *, device: str = "cpu") -> TaskModel:
    """Build the configured task network with its weights loaded, in eval mode, on ``device``."""
    backend = model_cfg.backend
    if backend == "torchvision":
        cfg: RcnnConfig = OmegaConf.to_object(model_cfg)  # type: ignore[assignment]
        return TorchvisionRcnn(cfg, device=device)
    if backend == "detectron2":
        try:
            from vcm_eval.vision.detectron2_rcnn import Detectron2Rcnn
        except ImportError as exc:
            raise ConfigError(
                f"model.backend=detectron2 needs detectron2 ({exc}); install it from source "
                "(pip install 'git+https://github.com/facebookresearch/detectron2.git'), or use model.backend=torchvision, "
                "which loads the same detectron2 weights"
            ) from exc
        return Detectron2Rcnn(OmegaConf.to_object(model_cfg))  # type: ignore[arg-type]
    raise ConfigError(f"model.backend={backend!r} is unknown; valid: {list(BACKENDS)}")
