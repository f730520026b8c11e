"""Helpers of the tests that train: synthetic data sets, configs inheriting the synthetic Ns config, runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC_CONFIG = ROOT / "train" / "configs" / "damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py"


def make_synthetic(out: Path, train: int, val: int, size: int, backgrounds: Path) -> Path:
    subprocess.run([sys.executable, "-m", "damo_yolo.data.synthetic", "--out", str(out), "--train", str(train),
                    "--val", str(val), "--size", str(size), "--seed", "0", "--backgrounds", str(backgrounds)],
                   check=True, capture_output=True)
    return out


def write_config(path: Path, data_root: Path, **overrides: str) -> Path:
    """A config inheriting the synthetic Ns config with ``data_root`` (in a base file of its own, so that
    ``overrides`` of the same dicts merge with it instead of replacing it) and top-level overrides."""
    base = path.with_name(path.stem + "_data.py")
    base.write_text("\n".join([
        f"_base_ = [{str(SYNTHETIC_CONFIG)!r}]",
        f"data_root = {str(data_root) + '/'!r}",
        "train_dataloader = dict(dataset=dict(ann_file=data_root + 'annotations/instances_train.json', "
        "img_dir=data_root + 'train/'))",
        "val_dataloader = dict(dataset=dict(ann_file=data_root + 'annotations/instances_val.json', "
        "img_dir=data_root + 'val/'))",
        "test_dataloader = val_dataloader",
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')",
        "test_evaluator = val_evaluator"]) + "\n")
    lines = [f"_base_ = [{str(base)!r}]"] + [f"{key} = {value}" for key, value in overrides.items()]
    if "val_dataloader" in overrides:
        lines.append("test_dataloader = val_dataloader")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_train(config: Path, work_dir: Path, *extra: str, wait: bool = True):
    cmd = [sys.executable, "-m", "damo_yolo.tools.train", str(config), "--work-dir", str(work_dir), *extra]
    env = dict(os.environ, PYTHONHASHSEED="0")
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)


EPOCHS = 8
SMALL_TRAINING = dict(
    input_size="(256, 256)",
    train_dataloader="dict(batch_size=16, num_workers=2, dataset=dict(input_size=input_size, "
                     "mosaic_size=input_size))",
    val_dataloader="dict(batch_size=16, num_workers=2, dataset=dict(input_size=input_size))",
    train_cfg=f"dict(max_epochs={EPOCHS}, val_interval=4, dynamic_intervals=None)",
    default_hooks="dict(logger=dict(interval=5))",
    custom_hooks="[dict(type='DAMOScheduleHook', warmup_epochs=1, no_aug_epochs=2), "
                 "dict(type='EMAHook', ema_type='DAMOModelEMA', update_buffers=True, priority=49, ramp=100.0), "
                 "dict(type='ExportCheckpointHook')]",
)


