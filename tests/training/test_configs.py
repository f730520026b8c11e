"""Every shipped config parses and builds its model, data set types and hooks as mmengine will, and every
top-level setting takes effect wherever a user sets it: in the config, a child config or --cfg-options."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS

import damo_yolo.training  # noqa: F401  registration
from damo_yolo.training.config import SETTINGS, ConfigError, _container, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "train" / "configs").glob("*.py"))
SYNTHETIC = ROOT / "train" / "configs" / "damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py"
EXPECTED = {"T": ((640, 640), "SGD"), "S": ((640, 640), "SGD"), "M": ((640, 640), "SGD"),
            "L": ((640, 640), "SGD"), "Ns": ((416, 416), "AdamW"), "Nm": ((416, 416), "AdamW"),
            "Nl": ((416, 416), "AdamW")}
# a value for every setting that no shipped config uses
NEW_VALUES = {"variant": "Nm", "data_root": "/elsewhere/data/", "input_size": (320, 352), "batch_size": 3,
              "num_workers": 1, "max_epochs": 7, "base_lr": 0.123, "val_interval": 3, "mosaic_size": (480, 480),
              "mixup_prob": 0.33, "affine_scale": (0.4, 1.6), "shear": 1.25, "warmup_epochs": 0.5,
              "no_aug_epochs": 4, "min_lr_ratio": 0.11}


def _values_at(cfg, places) -> list:
    values = []
    for place in places:
        holder, key = _container(cfg, place)
        assert holder is not None, f"{place} does not exist"
        value = holder.get(key)
        values.append(tuple(value) if isinstance(value, list) else value)
    return values


def test_every_variant_has_a_coco_config():
    coco = {load_config(p).model["variant"] for p in CONFIGS if p.name.endswith("_coco.py")}
    assert coco == set(EXPECTED)
    assert set(NEW_VALUES) == set(SETTINGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
    cfg = load_config(path)
    model = MODELS.build(cfg.model)
    assert model.model_cfg.name == cfg.model["variant"] == cfg.variant
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert DATASETS.get(cfg[key]["dataset"]["type"]) is not None
        assert tuple(cfg[key].dataset.input_size) == tuple(cfg.input_size)
    assert METRICS.get(cfg.val_evaluator["type"]) is not None
    for hook in cfg.custom_hooks:
        assert HOOKS.get(hook["type"]) is not None, hook
        if "ema_type" in hook:
            assert MODELS.get(hook["ema_type"]) is not None, hook
    assert cfg.train_cfg.max_epochs == cfg.max_epochs and cfg.optim_wrapper.optimizer.lr == cfg.base_lr
    if path.name.endswith("_coco.py"):
        size, optimizer = EXPECTED[cfg.model["variant"]]
        assert tuple(cfg.input_size) == size, "the config reports another input size than it trains at"
        assert tuple(cfg.train_dataloader.dataset.input_size) == size == tuple(cfg.val_dataloader.dataset.input_size)
        assert cfg.optim_wrapper.optimizer.type == optimizer
        assert cfg.train_dataloader.batch_size * 8 == 256 and cfg.train_cfg.max_epochs == 300
        assert cfg.train_cfg.dynamic_intervals == [(300 - 16, 1)]
        assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.0, bias_decay_mult=0.0)


@pytest.mark.parametrize("path", [SYNTHETIC, ROOT / "train/configs/damoyolo_tinynasL25_S_8xb32-300e_coco.py",
                                  ROOT / "train/configs/damoyolo_tinynasL18_Ns_8xb32-300e_coco.py"],
                         ids=lambda p: p.stem)
@pytest.mark.parametrize("where", ["child config", "cfg-options"])
def test_every_setting_takes_effect_where_it_is_set(tmp_path, path, where):
    if where == "child config":
        child = tmp_path / "child.py"
        child.write_text(f"_base_ = [{str(path)!r}]\n" + "".join(f"{k} = {v!r}\n" for k, v in NEW_VALUES.items()))
        cfg = load_config(child)
    else:
        cfg = load_config(path, dict(NEW_VALUES))
    for setting, places in SETTINGS.items():
        assert _values_at(cfg, places) == [NEW_VALUES[setting]] * len(places), setting
    assert cfg.train_cfg.dynamic_intervals == [(7 - 4, 1)]  # derived from max_epochs and no_aug_epochs


def test_a_place_set_against_its_setting_is_refused(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\ntrain_dataloader = dict(batch_size=8)\n")
    with pytest.raises(ConfigError, match=r"train_dataloader.batch_size=8 disagrees with batch_size=16"):
        load_config(child)
    same = tmp_path / "same.py"  # the same value in both places is fine (mmengine's own config dumps do that)
    same.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\ntrain_dataloader = dict(batch_size=16)\n")
    assert load_config(same).train_dataloader.batch_size == 16


def test_data_root_option_moves_every_data_set_and_the_metric(tiny_synthetic):
    cfg = load_config(SYNTHETIC, {"data_root": f"{tiny_synthetic}/"})
    for split in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset = DATASETS.build(cfg[split].dataset)
        assert dataset.coco.ann_file.parent.parent == tiny_synthetic
        assert dataset.coco.img_dir.parent == tiny_synthetic
    metric = METRICS.build(cfg.val_evaluator)
    assert Path(metric.ann_file) == tiny_synthetic / "annotations" / "instances_val.json"


def test_damo_train_data_root_option_and_missing_data_in_one_line(tmp_path):
    missing = tmp_path / "no_such_data"
    run = subprocess.run([sys.executable, "-m", "damo_yolo.tools.train", str(SYNTHETIC), "--work-dir",
                          str(tmp_path / "run"), "--cfg-options", f"data_root={missing}/"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 1
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert len(lines) == 1, lines[:20]
    assert str(missing / "annotations" / "instances_train.json") in lines[0] and "damo-synthetic" in lines[0]
    assert not (tmp_path / "run").exists()


def test_damo_train_unknown_config_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "damo_yolo.tools.train", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 1 and run.stderr.strip() == f"damo-train: config not found: {tmp_path} (it is a directory)"
