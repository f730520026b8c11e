"""Export a DAMO-YOLO model to ONNX: re-parameterised (RepConv fused), opset ≥ 17, dynamic batch.

Graph contract (the detector tensors of damo_yolo.contract, shared with the Triton configs):
  input  ``images``  float32 [B, 3, H, W], RGB 0–255, no normalisation
  output ``scores``  float32 [B, N, C], sigmoid class probabilities
  output ``boxes``   float32 [B, N, 4], x1, y1, x2, y2 in input pixels
with N = Σ_s (H/s)(W/s) over strides 8, 16, 32. H and W are fixed to the training input size unless
``dynamic_hw`` (then any multiples of 32 work).
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Optional, Union

import torch

from .. import contract as C
from ..models import DAMOYOLO

INPUT_NAME = C.MODEL_INPUT.name
OUTPUT_NAMES = (C.MODEL_SCORES.name, C.MODEL_BOXES.name)
DEFAULT_OPSET = 17

logger = logging.getLogger(__name__)


def deploy_copy(model: DAMOYOLO) -> DAMOYOLO:
    """An eval-mode, fused, contiguous-memory copy of ``model`` (the original is left as it is)."""
    # Module.to(memory_format=...) is documented and works; torch's type stubs omit the keyword
    model = copy.deepcopy(model).float().eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return model.switch_to_deploy()


def export_onnx(model: DAMOYOLO, path: Union[str, Path], input_size: Optional[tuple[int, int]] = None,
                dynamic_batch: bool = True, dynamic_hw: bool = False, opset: int = DEFAULT_OPSET,
                simplify: bool = True) -> Path:
    """Write the fused model as ONNX at ``path`` and check it with the ONNX checker; returns the path."""
    import onnx
    if opset < 17:
        raise ValueError(f"opset {opset} is too old: the exporter needs opset 17 or newer")
    height, width = input_size or model.cfg.input_size
    if height % 32 or width % 32:
        raise ValueError(f"input size {height}x{width} must be a multiple of 32 on both sides")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = deploy_copy(model)
    dummy = torch.zeros(1, 3, height, width)
    axes: dict[str, dict[int, str]] = {}
    if dynamic_batch or dynamic_hw:
        for name in (INPUT_NAME, *OUTPUT_NAMES):
            axes[name] = {0: "batch"} if dynamic_batch else {}
        if dynamic_hw:
            axes[INPUT_NAME].update({2: "height", 3: "width"})
            for name in OUTPUT_NAMES:
                axes[name][1] = "num_priors"
    with torch.no_grad():
        torch.onnx.export(net, (dummy,), str(path), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes=axes or None, opset_version=opset, do_constant_folding=True, dynamo=False)
    graph = onnx.load(str(path))
    if simplify:
        try:
            import onnxslim
            graph = onnxslim.slim(graph)
        except Exception as exc:  # a simplifier failure must not lose a valid export
            logger.warning("onnxslim could not simplify %s (%s); keeping the unsimplified graph", path, exc)
    graph.producer_name = "damo-yolo"
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))
    return path
