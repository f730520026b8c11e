"""Loading a DAMO-YOLO training config: the top-level settings reach every place that uses them.

An mmengine config is evaluated file by file, so ``ann_file=data_root + "..."`` in a base file keeps the
base's ``data_root`` even when a child config or ``--cfg-options data_root=...`` changes it. The configs
therefore name each frequently changed value once, at the top level, and leave its places unset; they
are filled here, after the config files and the command-line options are merged. A place that is set
anyway must agree with its setting, otherwise loading fails and names both: a value is never silently
ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Union

_DATASETS = ("train_dataloader.dataset", "val_dataloader.dataset", "test_dataloader.dataset")

# setting -> the places it takes effect ("custom_hooks.<type>" is the custom hook of that type)
SETTINGS: dict[str, tuple[str, ...]] = {
    "variant": ("model.variant",),
    "data_root": tuple(f"{d}.data_root" for d in _DATASETS) + ("val_evaluator.data_root", "test_evaluator.data_root"),
    "input_size": tuple(f"{d}.input_size" for d in _DATASETS),
    "batch_size": ("train_dataloader.batch_size",),
    "num_workers": ("train_dataloader.num_workers",),
    "max_epochs": ("train_cfg.max_epochs",),
    "base_lr": ("optim_wrapper.optimizer.lr",),
    "val_interval": ("train_cfg.val_interval",),
    "mosaic_size": ("train_dataloader.dataset.mosaic_size",),
    "mixup_prob": ("train_dataloader.dataset.mixup_prob",),
    "affine_scale": ("train_dataloader.dataset.scale",),
    "shear": ("train_dataloader.dataset.shear",),
    "warmup_epochs": ("custom_hooks.DAMOScheduleHook.warmup_epochs",),
    "no_aug_epochs": ("custom_hooks.DAMOScheduleHook.no_aug_epochs",),
    "min_lr_ratio": ("custom_hooks.DAMOScheduleHook.min_lr_ratio",),
}


class ConfigError(ValueError):
    """A config that cannot be used as written (the message names the setting)."""


def _container(cfg: Any, path: str) -> tuple[Optional[Any], str]:
    """The dict holding the last key of ``path`` (None when the path does not exist), and that key."""
    *parents, key = path.split(".")
    node = cfg
    i = 0
    while i < len(parents):
        name = parents[i]
        if name == "custom_hooks":  # a list: the next part names the hook type
            hooks = node.get("custom_hooks") if hasattr(node, "get") else None
            node = next((h for h in hooks or [] if h.get("type") == parents[i + 1]), None)
            i += 2
        else:
            node = node.get(name) if hasattr(node, "get") else None
            i += 1
        if node is None:
            return None, key
    return node, key


def _same(a: Any, b: Any) -> bool:
    as_plain = lambda v: list(as_plain(x) for x in v) if isinstance(v, (list, tuple)) else v
    return as_plain(a) == as_plain(b)


def resolve_settings(cfg: Any) -> Any:
    """Fill the places of every top-level setting the config defines (in place; returns ``cfg``)."""
    conflicts = []
    for setting, places in SETTINGS.items():
        if setting not in cfg:
            continue
        value = cfg[setting]
        for place in places:
            holder, key = _container(cfg, place)
            if holder is None:
                continue
            if key not in holder:
                holder[key] = value
            elif not _same(holder[key], value):
                conflicts.append(f"{place}={holder[key]!r} disagrees with {setting}={value!r}")
    if conflicts:
        raise ConfigError("settings given in two places: " + "; ".join(conflicts) +
                          f" (set the top-level setting; it reaches {len(conflicts)} place(s) by itself)")
    train_cfg = cfg.get("train_cfg")
    if train_cfg is not None and "dynamic_intervals" not in train_cfg and "no_aug_epochs" in cfg:
        # validate every epoch once mosaic/mixup are off (the reference's final phase)
        train_cfg["dynamic_intervals"] = [(cfg["max_epochs"] - cfg["no_aug_epochs"], 1)]
    return cfg


def load_config(path: Union[str, Path], options: Optional[dict] = None):
    """``Config.fromfile(path)``, ``options`` (``--cfg-options``) merged, settings resolved."""
    from mmengine.config import Config
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    cfg = Config.fromfile(str(path))
    if options:
        cfg.merge_from_dict(options)
    return resolve_settings(cfg)


def data_files(cfg: Any, splits: Iterable[str] = ("train_dataloader", "val_dataloader")) -> list[Path]:
    """The annotation files and image folders the config's data sets read."""
    files = []
    for split in splits:
        dataset = (cfg.get(split) or {}).get("dataset") or {}
        root = Path(dataset.get("data_root") or "")
        files += [root / dataset[k] for k in ("ann_file", "img_dir") if dataset.get(k)]
    return files
