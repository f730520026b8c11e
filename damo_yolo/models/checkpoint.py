"""Checkpoints in the official DAMO-YOLO layout, plus the project's metadata.

A checkpoint is a torch file holding ``model`` (a state dict with the official keys: ``backbone.``,
``neck.``, ``head.``; EMA weights when training used EMA) and, for the project's own files, ``meta``
(variant, classes, input size, resize policy, ...). Official checkpoints (``model`` only, or a bare state
dict, possibly with a ``module.`` prefix or the legacy 81-class head) load too.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from ..fileio import atomic_write
from .zoo import COCO_CLASSES, ModelCfg

PathLike = Union[str, os.PathLike]


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or does not fit the model."""


def default_meta(cfg: ModelCfg, num_classes: int = 80, class_names: Optional[list[str]] = None) -> dict:
    """The metadata an official checkpoint implies: the variant's reference preprocessing and thresholds."""
    if class_names is None:
        class_names = list(COCO_CLASSES) if num_classes == len(COCO_CLASSES) else [
            f"class_{i}" for i in range(num_classes)]
    return {
        "variant": cfg.name,
        "num_classes": num_classes,
        "class_names": list(class_names),
        "input_size": list(cfg.input_size),  # (H, W)
        "resize": "stretch",  # the reference stretches (keep_ratio=False); "letterbox" pads bottom/right
        "pad_value": 0.0,
        "color": "RGB",
        "pixel_range": [0, 255],  # no mean/std normalisation
        "score_threshold": cfg.score_threshold,
        "iou_threshold": cfg.iou_threshold,
        "max_detections": 500,
    }


def save_checkpoint(path: PathLike, model_or_state: Union[nn.Module, Mapping[str, torch.Tensor]],
                    meta: Optional[Mapping[str, Any]] = None, **extra: Any) -> Path:
    """Write ``{"model": state_dict, "meta": meta, **extra}`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    payload = {"model": {k: v.detach().cpu() for k, v in state.items()}, **extra}
    if meta is not None:
        payload["meta"] = dict(meta)
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def read_checkpoint(path: PathLike, trusted: bool = False) -> dict:
    """Load a checkpoint file into a dict with at least ``model``; clear errors for bad files.

    Files are read with ``weights_only=True`` (tensors and plain containers only) unless ``trusted``.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as exc:  # torch raises RuntimeError/EOFError/UnpicklingError/zip errors
        text = str(exc)
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if unsupported and not trusted:
            raise CheckpointError(
                f"checkpoint {path} holds a Python object ({unsupported.group(1)}) beyond tensors and plain "
                f"containers; if you trust its source, load it with trusted=True") from exc
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text) or re.search(r"(\S.*)", text)
        reason = detail.group(1).strip() if detail else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or corrupt ({reason})") from exc
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        out = dict(data)
    elif isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        out = dict(data, model=data["state_dict"])
    elif isinstance(data, Mapping) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        out = {"model": dict(data)}
    else:
        raise CheckpointError(f"{path} is not a DAMO-YOLO checkpoint: expected a dict with a 'model' state dict "
                              f"or a bare state dict, found {type(data).__name__}"
                              + (f" with keys {sorted(data)[:8]}" if isinstance(data, Mapping) else ""))
    return out


def _normalise_state(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    # Legacy (pre-v0.3) heads predict one extra dummy class after the real ones; keep the real ones.
    target = model.state_dict()
    for key, value in list(state.items()):
        if key.startswith("head.gfl_cls.") and key in target:
            want = target[key].shape[0]
            if value.shape[0] == want + 1:
                state[key] = value[:want]
    return state


def _describe_mismatch(missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str:
    def show(keys: list[str]) -> str:
        head = ", ".join(keys[:8])
        return head + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")

    parts = []
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    if wrong_shape:
        parts.append(f"shape mismatches: {show(wrong_shape)}")
    return "; ".join(parts)


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """Load ``state`` into ``model`` requiring the same keys and shapes; the error names every difference."""
    state = _normalise_state(state, model)
    fused_ckpt = any(k.endswith("rbr_reparam.weight") for k in state)
    unfused_ckpt = any(".rbr_dense." in k for k in state)
    if fused_ckpt and not unfused_ckpt and hasattr(model, "switch_to_deploy"):
        model.switch_to_deploy()  # a deploy-form checkpoint loads into the fused model
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong_shape = [f"{k} (checkpoint {tuple(state[k].shape)} vs model {tuple(target[k].shape)})"
                   for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong_shape:
        hint = ""
        if unfused_ckpt and any(k.endswith("rbr_reparam.weight") for k in target):
            hint = " (the model is already fused: load training-form checkpoints before switch_to_deploy())"
        variant = getattr(getattr(model, "cfg", None), "name", "?")
        raise CheckpointError(f"{source} does not fit DAMO-YOLO-{variant}: "
                              f"{_describe_mismatch(missing, unexpected, wrong_shape)}{hint}")
    model.load_state_dict(state, strict=True)


def load_checkpoint(model: nn.Module, path: PathLike, trusted: bool = False) -> dict:
    """Load an official or project checkpoint into ``model`` strictly; return the checkpoint's metadata.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, or its keys/shapes differ from the model
            (the message names the missing, unexpected and mis-shaped keys).
    """
    ckpt = read_checkpoint(path, trusted=trusted)
    load_state_dict_strict(model, ckpt["model"], source=f"checkpoint {path}")
    meta = ckpt.get("meta")
    if not isinstance(meta, Mapping):
        cfg = getattr(model, "cfg", None)
        meta = default_meta(cfg, getattr(model, "num_classes", 80)) if cfg is not None else {}
    return dict(meta)
