"""DAMO-YOLO training configs: top-level settings and the places that carry them.

A shipped config is complete as written: ``Runner.from_cfg(Config.fromfile(path))`` trains it, every value
in its dicts is where mmengine reads it. The frequently changed values are also named once at the top
(``input_size``, ``max_epochs``, ...), and each of their copies in the dicts (a pipeline's ``Resize.scale``,
a scheduler's ``end``) is a *place* of that setting, listed in :data:`PLACES`.

mmengine evaluates a config file by file, so a child config or ``--cfg-options`` that changes a setting
leaves its base's copies behind. :func:`load_config` (what ``damo-train`` and ``damo-test`` use) therefore
moves every place that still holds what its parent config had to the new setting, and refuses, naming both,
a place the config itself sets against its setting: a value is never silently ignored.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from ..fileio import missing_file

PIPELINE = "train_dataloader.dataset.pipeline"
LAST_PIPELINE = "custom_hooks.PipelineSwitchHook.switch_pipeline"  # the last, "no augmentation" epochs
_DATASETS = ("train_dataloader.dataset", "val_dataloader.dataset", "test_dataloader.dataset")
_MISSING = object()


class ConfigError(ValueError):
    """A config that cannot be used as written (the message names the setting)."""


@dataclass(frozen=True)
class Place:
    """Where a setting (or a value derived from several) is read. A path part after a list names the
    element by its ``type`` (``custom_hooks.PipelineSwitchHook.switch_epoch``)."""

    path: str
    settings: tuple[str, ...]
    value: Callable[..., Any] = lambda v: v
    may_be_none: bool = False  # None there switches the feature off and is accepted


def _augmented_epochs(max_epochs: int, no_aug_epochs: int) -> int:
    return max_epochs - no_aug_epochs


def _places() -> list[Place]:
    places = [Place(PIPELINE, ("train_pipeline",)),  # first: the places inside the pipelines follow
              Place(LAST_PIPELINE, ("last_stage_pipeline",)),
              Place("model.variant", ("variant",)),
              Place("model.finetune", ("finetune",)),
              Place("model.teacher", ("teacher_config", "teacher_checkpoint"),
                    lambda c, k: dict(config=c, checkpoint=k) if c or k else None),
              Place("train_dataloader.batch_size", ("batch_size",)),
              Place("train_dataloader.num_workers", ("num_workers",)),
              Place("train_cfg.max_epochs", ("max_epochs",)),
              Place("train_cfg.val_interval", ("val_interval",)),
              Place("train_cfg.dynamic_intervals", ("max_epochs", "no_aug_epochs"),  # validate every epoch
                    lambda m, n: [(_augmented_epochs(m, n), 1)], may_be_none=True),  # once augmentation is off
              Place("optim_wrapper.optimizer.lr", ("base_lr",)),
              Place("param_scheduler.QuadraticWarmupFromZeroLR.end", ("warmup_epochs",)),
              Place("param_scheduler.CosineToMinLR.begin", ("warmup_epochs",)),
              Place("param_scheduler.CosineToMinLR.end", ("max_epochs", "no_aug_epochs"), _augmented_epochs),
              Place("param_scheduler.CosineToMinLR.min_ratio", ("min_lr_ratio",)),
              Place("param_scheduler.FlatTailLR.begin", ("max_epochs", "no_aug_epochs"), _augmented_epochs),
              Place("param_scheduler.FlatTailLR.end", ("max_epochs",)),
              Place("param_scheduler.FlatTailLR.factor", ("min_lr_ratio",)),
              Place("custom_hooks.PipelineSwitchHook.switch_epoch", ("max_epochs", "no_aug_epochs"),
                    _augmented_epochs),
              Place(f"{PIPELINE}.Mosaic.img_scale", ("mosaic_size", "input_size"), lambda m, i: m or i),
              Place(f"{PIPELINE}.RandomAffine.img_scale", ("mosaic_size", "input_size"), lambda m, i: m or i),
              Place(f"{PIPELINE}.RandomAffine.scaling_ratio_range", ("affine_scale",)),
              Place(f"{PIPELINE}.RandomAffine.max_shear_degree", ("shear",)),
              Place(f"{PIPELINE}.MixUp.prob", ("mixup_prob",)),
              Place(f"{PIPELINE}.ScaleAwareBoxAugment.ramp_epochs", ("max_epochs", "no_aug_epochs"),
                    _augmented_epochs),
              Place(f"{PIPELINE}.Resize.scale", ("input_size",)),
              Place(f"{LAST_PIPELINE}.Resize.scale", ("input_size",))]
    places += [Place(f"{d}.data_root", ("data_root",)) for d in _DATASETS]
    places += [Place(f"{e}.data_root", ("data_root",)) for e in ("val_evaluator", "test_evaluator")]
    places += [Place(f"{d}.input_size", ("input_size",)) for d in _DATASETS[1:]]
    return places


PLACES: list[Place] = _places()
SETTINGS: tuple[str, ...] = tuple(dict.fromkeys(s for p in PLACES for s in p.settings))


def _node(cfg: Any, path: str, create: bool = False) -> tuple[Optional[Any], str]:
    """The container holding the last part of ``path`` (None when the path does not exist), and that key."""
    *parents, key = path.split(".")
    node = cfg
    for name in parents:
        if isinstance(node, (list, tuple)):
            node = next((item for item in node if hasattr(item, "get") and item.get("type") == name), None)
        else:
            node = node.get(name) if hasattr(node, "get") else None
        if node is None:
            return None, key
    return (node, key) if hasattr(node, "get") else (None, key)


def value_at(cfg: Any, path: str) -> Any:
    holder, key = _node(cfg, path)
    return _MISSING if holder is None else holder.get(key, _MISSING)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)


def _pair(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(f"{name} must be (height, width) in pixels, e.g. {name}=\"(640,640)\"; got {value!r}")


def check_settings(cfg: Any, whole: bool = True) -> None:
    """Refuse, in one line, a setting of the wrong kind, and (``whole``: the config as it will run, every file
    and option merged) phases that do not fit the run or half a teacher. A file on its way to the whole config
    may leave those to a child or an option (``--cfg-options max_epochs=2 warmup_epochs=1 no_aug_epochs=0``)."""
    if "input_size" in cfg:
        _pair("input_size", cfg["input_size"])
    if "mosaic_size" in cfg:
        _pair("mosaic_size", cfg["mosaic_size"], allow_none=True)
    for name, low in (("batch_size", 1), ("max_epochs", 1), ("num_workers", 0), ("val_interval", 1),
                      ("no_aug_epochs", 0)):
        value = cfg.get(name, low)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{name} must be a whole number of at least {low}; got {value!r}")
    for name in ("base_lr", "warmup_epochs", "min_lr_ratio", "mixup_prob", "shear"):
        value = cfg.get(name, 0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{name} must be a number of at least 0; got {value!r}")
    if not whole:
        return
    if bool(cfg.get("teacher_config")) != bool(cfg.get("teacher_checkpoint")):
        raise ConfigError("teacher_config and teacher_checkpoint go together (distillation needs both)")
    if {"max_epochs", "no_aug_epochs", "warmup_epochs"} <= set(cfg.keys()):
        epochs = cfg["max_epochs"]
        if cfg["warmup_epochs"] + cfg["no_aug_epochs"] >= epochs:
            raise ConfigError(
                f"warmup_epochs ({cfg['warmup_epochs']}) and no_aug_epochs ({cfg['no_aug_epochs']}) leave no epoch "
                f"of the cosine phase in max_epochs={epochs}: shorten them, e.g. --cfg-options max_epochs={epochs} "
                f"warmup_epochs={max(1, epochs // 10) if epochs > 1 else 0} no_aug_epochs={epochs // 10}")


def _places_of(cfg: Any) -> Iterator[tuple[Place, Any, str, Any, Any]]:
    """(place, its container, key, current value or _MISSING, the value its settings give) for each place
    whose container exists and whose settings ``cfg`` defines; computed one place at a time, so a place
    sees what the places before it were set to."""
    for place in PLACES:
        if not all(s in cfg for s in place.settings):
            continue
        holder, key = _node(cfg, place.path)
        if holder is not None:
            yield place, holder, key, holder.get(key, _MISSING), place.value(*(cfg[s] for s in place.settings))


def resolve_settings(cfg: Any, parent: Optional[Any] = None, whole: bool = True) -> Any:
    """Bring every place of ``cfg`` to its setting (in place; returns ``cfg``): a missing place is filled, a
    place that holds what ``parent`` (the base config as mmengine parsed it) held there is inherited and
    follows the setting, and a place the config itself sets against its setting is refused. ``whole``: see
    :func:`check_settings`."""
    check_settings(cfg, whole)
    conflicts = []
    for place, holder, key, current, expected in _places_of(cfg):
        if place.may_be_none and current is None:
            continue  # switched off on purpose
        if current is _MISSING or (parent is not None and _same(current, value_at(parent, place.path))):
            holder[key] = copy.deepcopy(expected)
        elif not _same(current, expected):
            named = ", ".join(f"{s}={cfg[s]!r}" for s in place.settings)
            conflicts.append(f"{place.path}={current!r} disagrees with {named}")
    for setting, path in (("train_pipeline", PIPELINE), ("last_stage_pipeline", LAST_PIPELINE)):
        resolved = value_at(cfg, path)  # the pipeline settings as their places now hold them
        if setting in cfg and resolved is not _MISSING:
            cfg[setting] = copy.deepcopy(resolved)
    optim_wrapper = cfg.get("optim_wrapper")
    if cfg.get("teacher_config") and optim_wrapper is not None and not optim_wrapper.get("clip_grad"):
        optim_wrapper["clip_grad"] = dict(max_norm=30.0)  # the reference clips gradients when distilling
    if conflicts:
        raise ConfigError("settings given in two places: " + "; ".join(conflicts) +
                          " (set the top-level setting: it reaches its places by itself)")
    return cfg


def _load_resolved(path: Path) -> Any:
    """``path`` parsed by mmengine with every place at its setting; its ancestors are checked the same way
    (a conflict anywhere up the chain is refused). A place is compared with the parent as mmengine parsed
    it, since that is what the file inherited. The settings' relations are left to :func:`load_config`."""
    from mmengine.config import Config
    bases = [path.parent / b for b in Config._get_base_files(str(path))]
    for base in bases:
        _load_resolved(base)
    if not bases:
        parent = None
    elif len(bases) == 1:
        parent = Config.fromfile(str(bases[0]))
    else:  # several bases: their merge, as mmengine makes it
        with tempfile.NamedTemporaryFile("w", suffix=".py", dir=path.parent) as merged:
            merged.write(f"_base_ = {[str(b.resolve()) for b in bases]!r}\n")
            merged.flush()
            parent = Config.fromfile(merged.name)
    return resolve_settings(Config.fromfile(str(path)), parent, whole=False)


def load_config(path: Union[str, Path], options: Optional[dict] = None):
    """The config at ``path`` with ``options`` (``--cfg-options``) merged and every place at its setting."""
    path = Path(path)
    problem = missing_file(path, "config")
    if problem:
        raise ConfigError(problem)
    cfg = _load_resolved(path)
    if options:
        before = copy.deepcopy(cfg)
        cfg.merge_from_dict(options)
        resolve_settings(cfg, before)
    else:
        check_settings(cfg)
    return cfg


def disagreements(cfg: Any) -> list[str]:
    """The places of ``cfg`` that do not hold their setting (a shipped config has none)."""
    return [f"{place.path}={current!r} (setting: {expected!r})" for place, _, _, current, expected in _places_of(cfg)
            if current is not _MISSING and not _same(current, expected) and not (place.may_be_none and current is None)]


def data_files(cfg: Any, splits: Iterable[str] = ("train_dataloader", "val_dataloader")) -> list[Path]:
    """The annotation files and image folders the config's data sets read."""
    files = []
    for split in splits:
        dataset = (cfg.get(split) or {}).get("dataset") or {}
        root = Path(dataset.get("data_root") or "")
        files += [root / dataset[k] for k in ("ann_file", "img_dir") if dataset.get(k)]
    return files
