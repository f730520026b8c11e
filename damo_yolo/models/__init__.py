"""DAMO-YOLO models: ``build_model(name, num_classes=80)`` for T, S, M, L, Ns, Nm, Nl (and the older N)."""
from __future__ import annotations

from .builder import build_model
from .checkpoint import (
    CheckpointError,
    CheckpointMeta,
    detector_weights,
    infer_variant,
    load_checkpoint,
    load_model,
    load_state_dict_strict,
    read_checkpoint,
    save_checkpoint,
)
from .detector import DAMOYOLO
from .layers import RepConv, reparameterize_model
from .zoo import COCO_CLASSES, MODEL_CFGS, ModelCfg, get_model_cfg, list_models

__all__ = [
    "COCO_CLASSES", "CheckpointError", "CheckpointMeta", "DAMOYOLO", "MODEL_CFGS", "ModelCfg", "RepConv",
    "build_model", "detector_weights", "get_model_cfg", "infer_variant", "list_models", "load_checkpoint",
    "load_model", "load_state_dict_strict", "read_checkpoint", "reparameterize_model", "save_checkpoint",
]
