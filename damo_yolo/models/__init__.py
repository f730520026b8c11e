"""DAMO-YOLO models: ``build_model(name, num_classes=80)`` for T, S, M, L, Ns, Nm, Nl (and the older N)."""
from __future__ import annotations

from .checkpoint import (CheckpointError, default_meta, load_checkpoint, load_state_dict_strict, read_checkpoint,
                         save_checkpoint)
from .detector import DAMOYOLO
from .layers import RepConv, reparameterize_model
from .zoo import COCO_CLASSES, MODEL_CFGS, ModelCfg, get_model_cfg, list_models


def build_model(name: str, num_classes: int = 80, deploy: bool = False) -> DAMOYOLO:
    """Build a DAMO-YOLO variant with freshly initialised weights.

    Args:
        name: variant name, case-insensitive: one of ``list_models()`` (T, S, M, L, Ns, Nm, Nl, N).
        num_classes: number of object classes of the head.
        deploy: fuse the RepConv branches right away (inference form).

    Example:
        >>> model = build_model("ns").eval()
        >>> scores, boxes = model(torch.zeros(1, 3, 416, 416))
        >>> scores.shape, boxes.shape
        (torch.Size([1, 3549, 80]), torch.Size([1, 3549, 4]))
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    model = DAMOYOLO(get_model_cfg(name), int(num_classes))
    return model.switch_to_deploy() if deploy else model


__all__ = [
    "COCO_CLASSES", "CheckpointError", "DAMOYOLO", "MODEL_CFGS", "ModelCfg", "RepConv", "build_model",
    "default_meta", "get_model_cfg", "list_models", "load_checkpoint", "load_state_dict_strict",
    "read_checkpoint", "reparameterize_model", "save_checkpoint",
]
