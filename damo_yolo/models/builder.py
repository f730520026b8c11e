"""``build_model``: a DAMO-YOLO variant by name, freshly initialised."""
from __future__ import annotations

from .detector import DAMOYOLO
from .zoo import get_model_cfg


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
