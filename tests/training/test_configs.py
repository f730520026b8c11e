"""Every shipped config parses and builds its model, data set types and hooks as mmengine will."""
from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS

import damo_yolo.training  # noqa: F401  registration

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "train" / "configs").glob("*.py"))
EXPECTED = {"T": ((640, 640), "SGD"), "S": ((640, 640), "SGD"), "M": ((640, 640), "SGD"),
            "L": ((640, 640), "SGD"), "Ns": ((416, 416), "AdamW"), "Nm": ((416, 416), "AdamW"),
            "Nl": ((416, 416), "AdamW")}


def test_every_variant_has_a_coco_config():
    coco = {Config.fromfile(str(p)).model["variant"] for p in CONFIGS if p.name.endswith("_coco.py")}
    assert coco == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model)
    assert model.model_cfg.name == cfg.model["variant"]
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert DATASETS.get(cfg[key]["dataset"]["type"]) is not None
    assert METRICS.get(cfg.val_evaluator["type"]) is not None
    for hook in cfg.custom_hooks:
        assert HOOKS.get(hook["type"]) is not None or MODELS.get(hook.get("ema_type", "")) is not None
    if path.name.endswith("_coco.py"):
        size, optimizer = EXPECTED[cfg.model["variant"]]
        assert tuple(cfg.train_dataloader.dataset.input_size) == size == tuple(cfg.val_dataloader.dataset.input_size)
        assert cfg.optim_wrapper.optimizer.type == optimizer
        assert cfg.train_dataloader.batch_size * 8 == 256 and cfg.train_cfg.max_epochs == 300
        assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.0, bias_decay_mult=0.0)
