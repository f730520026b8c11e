"""mmengine hooks and helpers of the DAMO-YOLO recipe.

- ``DetectorCheckpointFormat``: ``load_from`` accepts the project's and official checkpoints.
- ``TrainProgressHook``: the data set's epoch and the model's training progress.
- ``PipelineSwitchHook``: the last epochs' pipeline (the learning rate is ``param_scheduler``'s:
  :mod:`damo_yolo.training.schedulers`).
- ``DAMOModelEMA``: EMA with decay 0.9998·(1 − exp(−updates/2000)) over parameters and buffers.
- ``ExportCheckpointHook``: after each validation, ``latest.pth`` (and ``best.pth`` on a new best) in the
  project's checkpoint contract — official keys, EMA weights, metadata — written atomically; it knows the
  epoch each holds (for the end-of-run summary).
- ``atomic_local`` storage backend: mmengine's own checkpoints (used by ``--resume``) written atomically.

What a run shows on the console (``damo-train``):

- ``QuietConsole`` / ``QuietRunner``: mmengine's Runner whose console shows the metrics lines (``Epoch(train)``,
  ``Epoch(val)``), warnings, resume/load lines and the project's own messages; the environment dump, the
  config, the hook table, the optimiser's per-parameter lines, mmengine's deprecation notices and the COCO
  tables stay in the work dir's log file, which keeps everything (``damo-train --verbose`` shows it too).
- ``ProgressBarHook``: a live bar of the run and of the current epoch (or validation) with their ETAs, on an
  interactive terminal only (rich.progress); piped output (a CI log, a file) stays plain text.
- ``run_summary``: the run in a few lines, printed last: best checkpoint, its metric and epoch, latest.pth,
  the time taken and the full log.
"""
from __future__ import annotations

import bisect
import datetime
import logging
import math
import re
import statistics
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

import torch
from mmengine.dataset import Compose
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import EMAHook, Hook
from mmengine.model import ExponentialMovingAverage, is_model_wrapper
from mmengine.registry import HOOKS, MODELS
from mmengine.runner import Runner

from .. import __version__
from ..fileio import atomic_write_bytes
from ..models import CheckpointError, CheckpointMeta, detector_weights, read_checkpoint, save_checkpoint
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


HISTORY = "damo_history_buffer"  # marks a log-smoothing history stored as tensors
KEPT_HISTORY = 1000  # values of each logged scalar a checkpoint keeps (LogProcessor's window: 50)


@HOOKS.register_module()
class SafeCheckpointContents(Hook):
    """Keep mmengine's checkpoints loadable with ``torch.load(weights_only=True)`` — the default since torch
    2.6, which ``--resume`` uses — so no pickled code ever has to be trusted: numpy scalars (the ETA) become
    Python numbers, and the log-smoothing histories (mmengine's HistoryBuffers of numpy arrays, which need an
    unsafe global) are stored as float64 tensors and made HistoryBuffers again on loading, so a resumed run
    logs its losses over the same window as the run it continues."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.logging import HistoryBuffer
        hub = checkpoint.get("message_hub")
        if isinstance(hub, dict):
            hub["runtime_info"] = _plain(hub.get("runtime_info", {}))
            hub["log_scalars"] = {  # the recent history only: smoothing windows are tens of iterations
                key: {HISTORY: True, "max_length": int(buffer.max_length),
                      "log": torch.as_tensor(buffer.data[0][-KEPT_HISTORY:], dtype=torch.float64),
                      "count": torch.as_tensor(buffer.data[1][-KEPT_HISTORY:], dtype=torch.float64)}
                for key, buffer in hub.get("log_scalars", {}).items() if isinstance(buffer, HistoryBuffer)}
        if "meta" in checkpoint:
            checkpoint["meta"] = _plain(checkpoint["meta"])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from mmengine.logging import HistoryBuffer
        scalars = checkpoint.get("message_hub", {}).get("log_scalars", {})
        for key, value in list(scalars.items()):
            if isinstance(value, dict) and value.get(HISTORY):
                scalars[key] = HistoryBuffer(value["log"].tolist(), value["count"].tolist(), value["max_length"])


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
        self.best_epoch: Optional[int] = None  # the epoch best.pth holds
        self.latest_epoch: Optional[int] = None  # the epoch latest.pth holds (written by this run)

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
        self.latest_epoch = runner.epoch
        value = (metrics or {}).get(self.metric)
        if value is not None and (self.best is None or value > self.best):
            self.best, self.best_epoch = float(value), runner.epoch
            save_checkpoint(out / "best.pth", weights, meta)
            runner.logger.info(f"best {self.metric} {value:.4f}: {out / 'best.pth'}")

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {}).update(export_best=self.best, export_best_epoch=self.best_epoch)

    def _adopt_validated_best(self, path: Path, resumed_epoch: Optional[int]) -> None:
        """mmengine writes ``epoch_N.pth`` before validating epoch N, so that checkpoint cannot know N's mAP;
        ``best.pth`` from that validation (or any earlier one) still holds for the run resumed from epoch N.
        A ``best.pth`` of a later epoch belongs to training the resumed run redoes, and is left to be replaced."""
        if resumed_epoch is None or not path.is_file():
            return
        try:
            recorded = read_checkpoint(path).get("meta") or {}
        except CheckpointError:
            return  # a damaged best.pth is replaced by the next best
        value, epoch = (recorded.get("metrics") or {}).get(self.metric), recorded.get("epoch")
        if value is not None and epoch is not None and epoch <= resumed_epoch \
                and (self.best is None or value > self.best):
            self.best, self.best_epoch = float(value), int(epoch)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner._resume:  # a resumed run keeps its best; load_from starts a new one
            meta = checkpoint.get("meta", {})
            self.best = meta.get("export_best", self.best)
            self.best_epoch = meta.get("export_best_epoch", self.best_epoch)
            self._adopt_validated_best(Path(runner.work_dir) / "best.pth", meta.get("epoch"))
            best = "no validation yet" if self.best is None else \
                f"best {self.metric} {self.best:.4f} at epoch {self.best_epoch}"
            runner.logger.info(f"resumed after epoch {meta.get('epoch')} of {runner.max_epochs} (iteration "
                               f"{meta.get('iter')}); {best}")


PACKAGE = str(Path(__file__).resolve().parents[1])  # damo_yolo/: a record logged from here is the project's own
SHOWN_PREFIXES = ("Epoch(", "Iter(", "Load checkpoint from")  # mmengine's lines worth seeing
NOISE = ("will be deprecated", "is the alias of", "`save_param_scheduler` is True")  # mmengine's warnings, not ours


class QuietConsole(logging.Filter):
    """Lets through warnings and errors (but mmengine's deprecation notices), mmengine's metrics, resume and
    load lines, and what the project's code logs (its records' ``pathname`` lies under ``damo_yolo/``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return not any(noise in message for noise in NOISE)
        return message.startswith(SHOWN_PREFIXES) or record.pathname.startswith(PACKAGE)


def _console_handlers(logger: logging.Logger) -> list[logging.StreamHandler]:
    """The logger's console handlers (a FileHandler is a StreamHandler too: left out)."""
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


class QuietRunner(Runner):
    """mmengine's Runner with the :class:`QuietConsole` filter on its console (the log file keeps everything).
    The filter is in place before the Runner logs its environment and config."""

    def build_logger(self, *args: Any, **kwargs: Any):
        logger = super().build_logger(*args, **kwargs)
        for handler in _console_handlers(logger):
            if not any(isinstance(f, QuietConsole) for f in handler.filters):
                handler.addFilter(QuietConsole())
        return logger


def validates_after(loop, epoch: int) -> bool:
    """Whether an epoch-based train loop validates after its ``epoch``-th epoch (1-based), as mmengine's
    EpochBasedTrainLoop decides: ``val_begin``, and the interval its dynamic intervals give at that point (a
    milestone M takes effect after epoch M − 1, as mmengine looks one epoch ahead)."""
    step = bisect.bisect(loop.dynamic_milestones, epoch + 1)
    interval = loop.dynamic_intervals[step - 1]
    return loop.runner.val_loop is not None and epoch >= loop.val_begin and \
        (epoch % interval == 0 or epoch == loop.max_epochs)


class RunClock:
    """The time a run has left, from what this process measured of it: the seconds an iteration takes (over
    the last epoch's worth), a validation, and what passes between an epoch's last iteration and the next
    phase (checkpoints); the iterations, validations (as the loop will run them) and epochs still to come."""

    def __init__(self) -> None:
        self.iterations: deque = deque()
        self.validations: deque = deque(maxlen=3)
        self.tails: deque = deque(maxlen=3)
        self._mark: Optional[float] = None  # the last iteration's end, or the epoch's start
        self._tail_from: Optional[float] = None  # the last epoch's last iteration ended: its tail is running
        self._val_start: Optional[float] = None

    def epoch_started(self, iterations_per_epoch: int) -> None:
        now = time.perf_counter()
        if self._tail_from is not None:  # no validation after the last epoch: its tail ran until now
            self.tails.append(now - self._tail_from)
            self._tail_from = None
        self.iterations = deque(self.iterations, maxlen=max(1, iterations_per_epoch))
        self._mark = now

    def iteration_done(self, last_of_epoch: bool) -> None:
        now = time.perf_counter()
        if self._mark is not None:
            self.iterations.append(now - self._mark)
        self._mark = now
        self._tail_from = now if last_of_epoch else None

    def validation_started(self) -> None:
        now = time.perf_counter()
        if self._tail_from is not None:
            self.tails.append(now - self._tail_from)
            self._tail_from = None
        self._val_start = now

    def validation_done(self) -> None:
        if self._val_start is not None:
            self.validations.append(time.perf_counter() - self._val_start)
            self._val_start = None

    def remaining(self, runner, iterations_done: int) -> Optional[float]:
        """Seconds left once ``iterations_done`` iterations are done (None before one was timed)."""
        if not self.iterations:
            return None
        loop = runner.train_loop
        per_epoch = max(1, runner.max_iters // max(1, loop.max_epochs))
        trained = iterations_done // per_epoch  # epochs whose iterations are all done
        # an epoch whose last iteration has just run still has its validation and checkpoints ahead
        first = trained if iterations_done % per_epoch == 0 and trained >= 1 else trained + 1
        ends = range(first, loop.max_epochs + 1)
        validations = sum(validates_after(loop, e) for e in ends)
        return ((runner.max_iters - iterations_done) * _mean(self.iterations)
                + validations * _median(self.validations) + len(ends) * _median(self.tails))


def _mean(values) -> float:
    return sum(values) / len(values) if values else 0.0


def _median(values) -> float:
    """Of the last few validations or checkpoint writes: one slow first one (caches, imports) weighs less."""
    return statistics.median(values) if values else 0.0


ETA_TEXT = re.compile(r"eta: (?:\d+ days?, )?\d+:\d{2}:\d{2}")


class RunClockEta(logging.Filter):
    """Puts the run clock's ETA in mmengine's metrics lines in place of mmengine's own (iteration time alone,
    without validations and checkpoints): one ETA, in the log file, on the console and on the progress bar."""

    def __init__(self, clock: RunClock, runner) -> None:
        super().__init__()
        self.clock, self.runner = clock, runner

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Epoch(train)") and "eta: " in message:
            left = self.clock.remaining(self.runner, self.runner.iter + 1)  # logged after the iteration
            if left is not None:
                record.msg, record.args = ETA_TEXT.sub(f"eta: {format_eta(left)}", message), ()
        return True


def format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """Bars for the run and the current epoch or validation, with elapsed time and ETA, while stdout is an
    interactive terminal (rich's test: not piped, ``TERM`` not dumb); otherwise nothing. The console log
    handlers write through the live display meanwhile, so their lines print above the bars. Rank 0 only.

    Args:
        enabled: show the bars (None: when stdout is an interactive terminal).
    """

    priority = "VERY_LOW"

    def __init__(self, enabled: Optional[bool] = None):
        self.enabled = enabled
        self.clock = RunClock()
        self._progress: Any = None
        self._streams: list[tuple[logging.StreamHandler, Any]] = []
        self._run: Any = None
        self._phase: Any = None
        self._eta_filter: Optional[RunClockEta] = None
        self._runner: Any = None

    def before_train(self, runner) -> None:
        if runner.rank != 0 or self._progress is not None:
            return
        self._runner = runner
        if self._eta_filter is None:
            self._eta_filter = RunClockEta(self.clock, runner)
            runner.logger.addFilter(self._eta_filter)
        from rich.console import Console
        from rich.file_proxy import FileProxy
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
        console = Console(file=sys.stdout)  # this stream, not whatever sys.stdout is redirected to later
        if not (console.is_interactive if self.enabled is None else self.enabled):
            return
        # sys.stdout/stderr stay as they are (forked data loader workers and redirect_stdout users keep theirs)
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), console=console,
                                  transient=True, redirect_stdout=False, redirect_stderr=False)
        self._progress.start()
        for handler in _console_handlers(runner.logger):
            self._streams.append((handler, handler.stream))
            handler.setStream(FileProxy(console, handler.stream))
        self._run = self._progress.add_task("training", total=runner.max_iters, completed=runner.iter,
                                            eta="eta …")

    def _start_phase(self, description: str, total: int) -> None:
        if self._progress is not None:
            self._phase = self._progress.add_task(description, total=total, eta="")

    def _advance(self, *tasks: Any) -> None:
        if self._progress is not None:
            for task in tasks:
                if task is not None:
                    self._progress.advance(task)

    def _end_phase(self) -> None:
        if self._progress is not None and self._phase is not None:
            self._progress.remove_task(self._phase)
            self._phase = None

    def before_train_epoch(self, runner) -> None:
        self.clock.epoch_started(len(runner.train_dataloader))
        self._start_phase(f"epoch {runner.epoch + 1}/{runner.max_epochs}", len(runner.train_dataloader))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.clock.iteration_done(batch_idx + 1 == len(runner.train_dataloader))
        self._advance(self._phase, self._run)
        self._show_eta(runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        self._end_phase()

    def before_val_epoch(self, runner) -> None:
        self.clock.validation_started()
        self._start_phase("validation", len(runner.val_dataloader))

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._advance(self._phase)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.clock.validation_done()
        self._end_phase()

    def _show_eta(self, iterations_done: int) -> None:
        if self._progress is not None and self._run is not None and self._runner is not None:
            left = self.clock.remaining(self._runner, iterations_done)
            self._progress.update(self._run, eta=f"eta {format_eta(left)}" if left is not None else "eta …")

    def after_train(self, runner) -> None:
        self.close()

    def close(self) -> None:
        """Stop the display and give the log handlers their stream back (also after a failed run)."""
        if self._eta_filter is not None and self._runner is not None:
            self._runner.logger.removeFilter(self._eta_filter)
            self._eta_filter = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = self._run = self._phase = None
        for handler, stream in self._streams:
            handler.setStream(stream)
        self._streams = []


def format_duration(seconds: float) -> str:
    """41 s, 4 min 23 s, 2 h 05 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def run_summary(runner, seconds: float) -> str:
    """The end of a run in four lines: epochs and time, the best checkpoint with its metric and epoch, the
    latest one, and the full log."""
    work = Path(runner.work_dir)
    export = next((h for h in runner.hooks if isinstance(h, ExportCheckpointHook)), None)
    lines = [f"done: epoch {runner.epoch} of {runner.max_epochs} in {format_duration(seconds)}"]
    if export is None:
        lines.append("best:   none (the config has no ExportCheckpointHook)")
    elif export.best is None:
        lines.append("best:   none (no validation gave a metric)")
    else:
        epoch = f" at epoch {export.best_epoch}" if export.best_epoch is not None else ""
        lines.append(f"best:   {export.metric} {export.best:.4f}{epoch}  {work / 'best.pth'}")
    latest = work / "latest.pth"
    if latest.is_file():
        epoch = f"epoch {export.latest_epoch}  " if export is not None and export.latest_epoch is not None else ""
        lines.append(f"latest: {epoch}{latest}")
    log_file = getattr(runner.logger, "log_file", None)
    if log_file:
        lines.append(f"log:    {log_file}")
    return "\n".join(lines)
