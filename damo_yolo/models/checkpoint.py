"""Checkpoints in the official DAMO-YOLO layout, plus the project's metadata; the one place they are read.

A checkpoint is a torch file holding ``model`` (a state dict with the official keys: ``backbone.``,
``neck.``, ``head.``; EMA weights when training used EMA) and, for the project's own files, ``meta``
(:class:`CheckpointMeta`: variant, classes, input size, resize policy, thresholds, ...). Official
checkpoints (``model`` only, or a bare state dict, possibly with a ``module.`` prefix or the legacy
81-class head) load too; their variant is recognised from the weights.

    model, meta = load_model("best.pth")            # any checkpoint → (DAMOYOLO, CheckpointMeta)
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from ..contract import MAX_DETECTIONS
from ..fileio import atomic_write, checkpoint_file_problem
from .builder import build_model
from .zoo import COCO_CLASSES, MODEL_CFGS, get_model_cfg

PathLike = Union[str, os.PathLike]
DETECTOR_PARTS = ("backbone", "neck", "head")  # the top-level modules whose weights a checkpoint holds


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or does not fit the model (``details``: the full key lists)."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about its model: enough to rebuild it, feed it and post-process its output."""

    variant: str
    num_classes: int
    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W) of the model input
    score_threshold: float  # evaluation thresholds (the reference's, or the training config's)
    iou_threshold: float
    max_detections: int = MAX_DETECTIONS
    resize: str = "stretch"  # the reference stretches; "letterbox" keeps the aspect and pads bottom/right
    pad_value: float = 0.0
    metrics: dict = field(default_factory=dict)  # validation metrics when the checkpoint was written
    epoch: Optional[int] = None
    damo_yolo_version: str = ""
    train_config: str = field(default="", repr=False)  # the resolved training config, as text

    @classmethod
    def for_variant(cls, variant: str, num_classes: int = 80, class_names=None) -> "CheckpointMeta":
        """What an official checkpoint implies: the variant's reference preprocessing and thresholds."""
        cfg = get_model_cfg(variant)
        if class_names is None:
            class_names = (COCO_CLASSES if num_classes == len(COCO_CLASSES)
                           else [f"class_{i}" for i in range(num_classes)])
        return cls(cfg.name, int(num_classes), tuple(class_names), tuple(cfg.input_size), cfg.score_threshold,
                   cfg.iou_threshold)

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any]) -> "CheckpointMeta":
        """From a checkpoint's ``meta`` (fields this version does not know are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in meta.items() if k in known}
        values.update(class_names=tuple(meta["class_names"]), input_size=tuple(meta["input_size"]))
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain types only (lists, not tuples), so ``torch.load(weights_only=True)`` reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> "CheckpointMeta":
        return dataclasses.replace(self, **changes)


def detector_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The detector's own weights of a state dict (no distillation adapters, EMA buffers or others)."""
    return {k: v for k, v in state.items() if k.split(".", 1)[0] in DETECTOR_PARTS}


def save_checkpoint(path: PathLike, model_or_state: Union[nn.Module, Mapping[str, torch.Tensor]],
                    meta: Optional[CheckpointMeta] = None, **extra: Any) -> Path:
    """Write ``{"model": state_dict, "meta": meta, **extra}`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    payload = {"model": {k: v.detach().cpu() for k, v in state.items()}, **extra}
    if meta is not None:
        payload["meta"] = meta.to_dict()
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def _not_torch_file(path: Path) -> str:
    """What a file torch could not load is, when it is plainly no torch file ("" when it may be one, damaged):
    torch.save writes a zip archive (or, in the legacy format, a pickle)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK") or head.startswith(b"\x80"):
        return ""
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return "a text file"
        except UnicodeDecodeError as exc:
            if len(head) == 4096 and exc.start > len(head) - 4:  # a character cut at the end of the window
                return "a text file"
    known = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"\x1f\x8b": "a gzip archive"}
    kind = next((name for magic, name in known.items() if head.startswith(magic)), "")
    return kind or f"neither a zip archive nor a pickle (it starts {head[:8]!r})"


def read_checkpoint(path: PathLike, trusted: bool = False) -> dict:
    """Load a checkpoint file into a dict with at least ``model``; clear errors for bad files.

    Files are read with ``weights_only=True`` (tensors and plain containers only) unless ``trusted``.
    """
    path = Path(path)
    problem = checkpoint_file_problem(path)
    if problem:
        raise CheckpointError(problem)
    try:
        data = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as exc:  # torch raises RuntimeError/EOFError/UnpicklingError/zip errors
        text = str(exc)
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if unsupported and not trusted:
            raise CheckpointError(
                f"checkpoint {path} holds a Python object ({unsupported.group(1)}) beyond tensors and plain "
                f"containers; if you trust its source, load it with trusted=True") from exc
        kind = _not_torch_file(path)
        if kind:
            raise CheckpointError(f"not a PyTorch checkpoint: {path} is {kind}") from exc
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


def strip_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the ``module.`` prefix a (Distributed)DataParallel-wrapped model saves."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def trim_legacy_head(state: Mapping[str, torch.Tensor], num_classes: int) -> dict[str, torch.Tensor]:
    """Legacy (pre-v0.3) heads predict one extra dummy class after the real ones: keep the ``num_classes``."""
    return {k: v[:num_classes] if k.startswith("head.gfl_cls.") and v.shape[0] == num_classes + 1 else v
            for k, v in state.items()}


def normalise_state(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``module.`` prefixes stripped, and a legacy head's extra class dropped where ``model`` has one less."""
    num_classes = getattr(model, "num_classes", None)
    state = strip_module_prefix(state)
    return state if num_classes is None else trim_legacy_head(state, int(num_classes))


def _describe_mismatch(missing: list[str], unexpected: list[str], wrong_shape: list[str], shown: int = 3) -> str:
    def show(keys: list[str]) -> str:
        return ", ".join(keys[:shown]) + (f", ... ({len(keys)} in all)" if len(keys) > shown else "")

    parts = [f"{what}: {show(keys)}" for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                                          ("shape mismatches", wrong_shape)) if keys]
    return "; ".join(parts)


def _head_classes(state: Mapping[str, torch.Tensor]) -> Optional[int]:
    """The number of classes the head's class convs predict (legacy 81-class heads: 80)."""
    for key, value in state.items():
        if key.endswith("head.gfl_cls.0.weight"):
            return 80 if value.shape[0] == 81 else int(value.shape[0])
    return None


def _fits(state: Mapping[str, torch.Tensor], variant: str, num_classes: int) -> bool:
    fused = any(k.endswith("rbr_reparam.weight") for k in state)
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        target = build_model(variant, num_classes, deploy=fused).state_dict()
    return target.keys() == state.keys() and all(tuple(target[k].shape) == tuple(state[k].shape) for k in target)


def infer_variant(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The variant whose layout (keys and shapes) the weights have, or None when none or several fit."""
    num_classes = _head_classes(state)
    if num_classes is None:
        return None
    state = trim_legacy_head(strip_module_prefix(state), num_classes)
    fitting = [name for name in MODEL_CFGS if _fits(state, name, num_classes)]
    return fitting[0] if len(fitting) == 1 else None


def load_state_dict_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """Load ``state`` into ``model`` requiring the same keys and shapes. The error summarises the differences
    (and names the variant the weights fit, when it is another); ``error.details`` lists every key."""
    state = normalise_state(state, model)
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
        fits = infer_variant(state)
        other = f"the weights are DAMO-YOLO-{fits}'s (variant {fits}); " if fits and fits != variant else ""
        every = _describe_mismatch(missing, unexpected, wrong_shape, shown=len(target) + len(state))
        raise CheckpointError(f"{source} does not fit DAMO-YOLO-{variant}: {other}"
                              f"{_describe_mismatch(missing, unexpected, wrong_shape)}{hint}", details=every)
    model.load_state_dict(state, strict=True)


def checkpoint_meta(ckpt: Mapping[str, Any], variant: Optional[str] = None, source: str = "checkpoint"
                    ) -> CheckpointMeta:
    """The metadata of a read checkpoint: its own, or — for an official file — its variant's defaults (the
    variant named, or recognised from the weights)."""
    meta = ckpt.get("meta")
    if isinstance(meta, Mapping) and "variant" in meta:
        meta = CheckpointMeta.from_dict(meta)
        if variant and get_model_cfg(variant).name != meta.variant:
            raise CheckpointError(f"{source} holds DAMO-YOLO-{meta.variant} (its metadata says so), not {variant}")
        return meta
    state = detector_weights(ckpt["model"]) or ckpt["model"]
    num_classes = _head_classes(state) or 80
    if variant is None:
        variant = infer_variant(state)
        if variant is None:
            raise CheckpointError(f"{source} carries no metadata and its weights fit no single DAMO-YOLO variant: "
                                  f"name its variant ({', '.join(MODEL_CFGS)})")
    return CheckpointMeta.for_variant(variant, num_classes)


def load_model(path: PathLike, variant: Optional[str] = None, trusted: bool = False):
    """Any DAMO-YOLO checkpoint → ``(model, meta)``: the detector (training form, or fused when the file
    is) with the weights loaded strictly, in eval mode, and its :class:`CheckpointMeta`.

    ``variant`` is only needed for an official checkpoint whose weights fit several variants; given for
    one of the project's checkpoints, it must agree with the file's metadata.
    """
    ckpt = read_checkpoint(path, trusted=trusted)
    meta = checkpoint_meta(ckpt, variant, f"checkpoint {path}")
    model = build_model(meta.variant, meta.num_classes)
    load_state_dict_strict(model, detector_weights(ckpt["model"]) or ckpt["model"], source=f"checkpoint {path}")
    return model.eval(), meta


def load_checkpoint(model: nn.Module, path: PathLike, trusted: bool = False) -> CheckpointMeta:
    """Load an official or project checkpoint into ``model`` strictly; return the checkpoint's metadata.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, or its keys/shapes differ from the model
            (the message names the missing, unexpected and mis-shaped keys).
    """
    ckpt = read_checkpoint(path, trusted=trusted)
    load_state_dict_strict(model, detector_weights(ckpt["model"]) or ckpt["model"], source=f"checkpoint {path}")
    return checkpoint_meta(ckpt, model.cfg.name, f"checkpoint {path}")


@dataclass(frozen=True)
class FinetuneReport:
    """What :func:`load_backbone_and_neck` took from a checkpoint and what it left as initialised."""

    source: str
    loaded: int  # backbone and neck tensors taken
    skipped: tuple[str, ...]  # the checkpoint's head tensors (and any other part), not taken
    checkpoint_classes: Optional[int]
    model_classes: int

    def __str__(self) -> str:
        classes = (f"{self.checkpoint_classes} classes in the checkpoint, {self.model_classes} here"
                   if self.checkpoint_classes is not None else f"{self.model_classes} classes")
        return (f"fine-tuning from {self.source}: backbone and neck loaded ({self.loaded} tensors), head kept "
                f"fresh ({len(self.skipped)} checkpoint tensors skipped; {classes})")


def load_backbone_and_neck(model: nn.Module, path: PathLike, trusted: bool = False) -> FinetuneReport:
    """Fine-tuning's start, as the reference's ``load_pretrain_detector``: every backbone and neck weight of
    ``model`` from an official or project checkpoint (same keys and shapes required), the head left as
    initialised so it can learn another set of classes."""
    ckpt = read_checkpoint(path, trusted=trusted)
    state = strip_module_prefix(ckpt["model"])
    if any(k.endswith("rbr_reparam.weight") for k in state) and not any(".rbr_dense." in k for k in state):
        raise CheckpointError(f"checkpoint {path} is re-parameterised for deployment; fine-tune from the "
                              "training-form checkpoint (the one damo-export read)")
    target = {k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] in ("backbone", "neck")}
    missing = [k for k in target if k not in state]
    wrong_shape = [f"{k} (checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)})"
                   for k, v in target.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or wrong_shape:
        variant = getattr(getattr(model, "cfg", None), "name", None) or getattr(model, "model_cfg").name
        fits = infer_variant(detector_weights(state) or state)
        hint = f"; the weights are DAMO-YOLO-{fits}'s: fine-tune variant {fits}" if fits and fits != variant else ""
        raise CheckpointError(f"checkpoint {path} does not fit DAMO-YOLO-{variant}'s backbone and neck: "
                              f"{_describe_mismatch(missing, [], wrong_shape)}{hint}")
    model.load_state_dict({k: state[k] for k in target}, strict=False)
    return FinetuneReport(str(path), len(target), tuple(sorted(k for k in state if k not in target)),
                          _head_classes(state), int(getattr(model, "num_classes", 0)))
