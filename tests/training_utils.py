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
    """A config inheriting the synthetic Ns config with ``data_root`` and top-level ``overrides``."""
    lines = [f"_base_ = [{str(SYNTHETIC_CONFIG)!r}]", f"data_root = {str(data_root) + '/'!r}"]
    path.write_text("\n".join(lines + [f"{key} = {value}" for key, value in overrides.items()]) + "\n")
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
    max_epochs=str(EPOCHS),
    val_interval="4",
    warmup_epochs="1",
    no_aug_epochs="2",
    train_cfg="dict(dynamic_intervals=None)",
    default_hooks="dict(logger=dict(interval=5))",
    custom_hooks="[dict(type='TrainProgressHook'), "
                 "dict(type='PipelineSwitchHook', switch_pipeline=_base_.last_stage_pipeline), "
                 "dict(type='EMAHook', ema_type='DAMOModelEMA', update_buffers=True, priority=49, ramp=100.0), "
                 "dict(type='ExportCheckpointHook')]",
)
