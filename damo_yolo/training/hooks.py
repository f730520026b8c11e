"""mmengine hooks and helpers of the DAMO-YOLO recipe.

- ``DetectorCheckpointFormat``: ``load_from`` accepts the project's and official checkpoints.
- ``TrainProgressHook``: the data set's epoch and the model's training progress.
- ``PipelineSwitchHook``: the last epochs' pipeline (the learning rate is ``param_scheduler``'s:
  :mod:`damo_yolo.training.schedulers`).
- ``DAMOModelEMA``: EMA with decay 0.9998·(1 − exp(−updates/2000)) over parameters and buffers.
- ``ExportCheckpointHook``: after each validation, ``latest.pth`` (and ``best.pth`` on a new best) in the
  project's checkpoint contract — official keys, EMA weights, metadata — written atomically.
- ``atomic_local`` storage backend: mmengine's own checkpoints (used by ``--resume``) written atomically.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from mmengine.dataset import Compose
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import EMAHook, Hook
from mmengine.model import ExponentialMovingAverage, is_model_wrapper
from mmengine.registry import HOOKS, MODELS

from .. import __version__
from ..fileio import atomic_write_bytes
from ..models import CheckpointMeta, detector_weights, save_checkpoint
from ..models.checkpoint import normalise_state, strip_module_prefix
from .pipeline import describe


def _model(runner):
    """The runner's model without its (Distributed)DataParallel wrapper."""
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def _restart_persistent_workers(runner) -> None:
    """Persistent dataloader workers hold a copy of the data set: make the next epoch start fresh ones."""
    if getattr(runner.train_dataloader, "persistent_workers", False):
        runner.train_loop.dataloader._iterator = None


class AtomicLocalBackend(LocalBackend):
    """LocalBackend whose writes go through a temporary file and a rename."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
        atomic_write_bytes(filepath, obj.encode(encoding))


register_backend("atomic_local", AtomicLocalBackend, force=True)


def _plain(value):
    """numpy scalars → Python numbers, recursively (a numpy scalar needs an unsafe global to unpickle)."""
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


@HOOKS.register_module()
class SafeCheckpointContents(Hook):
    """Keep mmengine's checkpoints loadable with ``torch.load(weights_only=True)`` — the default since torch
    2.6, which ``--resume`` uses — so no pickled code ever has to be trusted: numpy scalars (the ETA) become
    Python numbers, and the log-smoothing history (numpy arrays in HistoryBuffers, which need an unsafe
    global) is not stored; a resumed run restarts its log smoothing windows, nothing else."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        hub = checkpoint.get("message_hub")
        if isinstance(hub, dict):
            hub["runtime_info"] = _plain(hub.get("runtime_info", {}))
            hub["log_scalars"] = {}
        if "meta" in checkpoint:
            checkpoint["meta"] = _plain(checkpoint["meta"])


@HOOKS.register_module()
class DetectorCheckpointFormat(Hook):
    """Let mmengine's ``load_from`` read the project's checkpoints (``{"model", "meta"}``) and official ones
    (``{"model"}`` or a bare state dict): their weights are handed over as the ``state_dict`` mmengine and
    its ``EMAHook`` expect. Keys and shapes that do not fit (another class count) are reported by mmengine
    and left as initialised; fine-tuning on other classes is ``finetune`` (backbone and neck only)."""

    priority = "VERY_HIGH"  # before EMAHook reads checkpoint["state_dict"]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if "state_dict" in checkpoint:
            return
        state = checkpoint.get("model")
        if not hasattr(state, "items"):
            if not (checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values())):
                return
            state = dict(checkpoint)
        model = None if runner is None else _model(runner)
        # the legacy head's extra class trimmed too, when the model is at hand
        checkpoint["state_dict"] = strip_module_prefix(state) if model is None else normalise_state(state, model)


@HOOKS.register_module()
class TrainProgressHook(Hook):
    """Tell the data set the epoch (its samples are a function of it) and the model the fraction of
    training done (it drives the distillation weight)."""

    priority = "HIGH"

    def before_train_epoch(self, runner) -> None:
        dataset = runner.train_dataloader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(runner.epoch)
            _restart_persistent_workers(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = _model(runner)
        if hasattr(model, "train_progress"):
            model.train_progress = runner.iter / max(1, runner.max_iters)


@HOOKS.register_module()
class PipelineSwitchHook(Hook):
    """From ``switch_epoch`` (0-based) on, the training set uses ``switch_pipeline`` (the recipe's last,
    "no augmentation" epochs); a resumed run past that epoch switches at its first epoch."""

    priority = "NORMAL"

    def __init__(self, switch_epoch: int, switch_pipeline: list):
        self.switch_epoch, self.switch_pipeline = int(switch_epoch), switch_pipeline
        self.switched = False

    def before_train_epoch(self, runner) -> None:
        if self.switched or runner.epoch < self.switch_epoch:
            return
        runner.train_dataloader.dataset.pipeline = Compose(self.switch_pipeline)
        _restart_persistent_workers(runner)
        self.switched = True
        runner.logger.info(f"epoch {runner.epoch + 1}: training pipeline switched to {describe(self.switch_pipeline)}")


@MODELS.register_module()
class DAMOModelEMA(ExponentialMovingAverage):
    """EMA of the reference: decay(n) = 0.9998 · (1 − exp(−n / 2000)) at the n-th update."""

    def __init__(self, model, momentum: float = 0.0002, interval: int = 1, device=None,
                 update_buffers: bool = True, ramp: float = 2000.0):
        super().__init__(model, momentum, interval, device, update_buffers)
        self.ramp = ramp

    def avg_func(self, averaged_param: torch.Tensor, source_param: torch.Tensor, steps) -> None:
        decay = (1 - self.momentum) * (1 - math.exp(-float(steps) / self.ramp))
        averaged_param.lerp_(source_param, 1 - decay)


@HOOKS.register_module()
class ExportCheckpointHook(Hook):
    """Write ``latest.pth`` / ``best.pth`` in the project's checkpoint contract after each validation."""

    priority = "LOW"

    def __init__(self, metric: str = "coco/mAP"):
        self.metric = metric
        self.best: Optional[float] = None

    def _weights(self, runner) -> dict:
        for hook in runner.hooks:
            if isinstance(hook, EMAHook):
                module = hook.ema_model.module
                break
        else:
            module = _model(runner)
        return detector_weights(module.state_dict())

    def meta(self, runner, metrics: dict) -> CheckpointMeta:
        model = _model(runner)
        classes = list(getattr(runner.train_dataloader.dataset, "metainfo", {}).get("classes", []))
        val_set = runner.val_dataloader.dataset  # the preprocessing the metrics were measured with
        return CheckpointMeta.for_variant(model.model_cfg.name, model.num_classes, classes or None).replace(
            input_size=tuple(val_set.input_size), resize=val_set.mode, pad_value=float(val_set.pad_value),
            score_threshold=model.score_threshold, iou_threshold=model.iou_threshold,
            max_detections=model.max_detections, train_config=runner.cfg.pretty_text, damo_yolo_version=__version__,
            epoch=runner.epoch, metrics={k: float(v) for k, v in (metrics or {}).items()})

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        if runner.rank != 0 or not runner.train_loop or runner.iter == 0:
            return
        weights, meta = self._weights(runner), self.meta(runner, metrics or {})
        out = Path(runner.work_dir)
        save_checkpoint(out / "latest.pth", weights, meta)
        value = (metrics or {}).get(self.metric)
        if value is not None and (self.best is None or value > self.best):
            self.best = float(value)
            save_checkpoint(out / "best.pth", weights, meta)
            runner.logger.info(f"best {self.metric} {value:.4f}: {out / 'best.pth'}")

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})["export_best"] = self.best

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner._resume:  # a resumed run keeps its best; load_from starts a new one
            self.best = checkpoint.get("meta", {}).get("export_best", self.best)
