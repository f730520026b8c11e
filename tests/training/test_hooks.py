"""The recipe's schedule, EMA and atomic checkpoint writes."""
from __future__ import annotations

import math

import pytest
import torch
from mmengine.fileio import get_file_backend

from damo_yolo.training.hooks import DAMOModelEMA, lr_factor


def test_lr_schedule_warmup_cosine_and_flat_tail():
    kw = dict(iters_per_epoch=10, max_epochs=20, warmup_epochs=2, no_aug_epochs=3, min_lr_ratio=0.05)
    assert lr_factor(0, **kw) == 0.0
    assert lr_factor(10, **kw) == pytest.approx((10 / 20) ** 2)  # quadratic warm-up over 20 iterations
    assert lr_factor(20, **kw) == pytest.approx(1.0)  # cosine starts at the base lr
    middle = 20 + (200 - 20 - 30) // 2
    assert lr_factor(middle, **kw) == pytest.approx(0.05 + 0.95 * 0.5)
    assert lr_factor(169, **kw) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 149 / 150)))
    assert all(lr_factor(i, **kw) == 0.05 for i in range(170, 200))  # the no-augmentation epochs
    values = [lr_factor(i, **kw) for i in range(20, 170)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_ema_decay_follows_the_reference_ramp():
    model = torch.nn.Linear(2, 1, bias=False)
    ema = DAMOModelEMA(model, ramp=2000.0)
    torch.nn.init.zeros_(model.weight)
    ema.update_parameters(model)  # the first update copies
    for step in range(1, 4):
        before = ema.module.weight.detach().clone()
        with torch.no_grad():
            model.weight.fill_(float(step))
        ema.update_parameters(model)
        decay = 0.9998 * (1 - math.exp(-step / 2000))
        assert torch.allclose(ema.module.weight, decay * before + (1 - decay) * step, atol=1e-6)


def test_ema_averages_batch_norm_statistics():
    model = torch.nn.BatchNorm2d(3)
    ema = DAMOModelEMA(model, ramp=1.0)
    ema.update_parameters(model)
    model.running_mean.fill_(10.0)
    ema.update_parameters(model)
    decay = 0.9998 * (1 - math.exp(-1))
    assert torch.allclose(ema.module.running_mean, torch.full((3,), (1 - decay) * 10.0))


def test_atomic_backend_never_leaves_half_files(tmp_path):
    import damo_yolo.training.hooks  # noqa: F401  registers the backend
    backend = get_file_backend(str(tmp_path), backend_args=dict(backend="atomic_local"))
    target = tmp_path / "ckpt.pth"
    backend.put(b"first", target)
    backend.put_text("second", tmp_path / "last_checkpoint")
    assert target.read_bytes() == b"first" and (tmp_path / "last_checkpoint").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "last_checkpoint"]
