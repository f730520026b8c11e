"""The recipe's schedule, EMA and atomic checkpoint writes."""
from __future__ import annotations

import math

import pytest
import torch
from mmengine.fileio import get_file_backend

from damo_yolo.training.hooks import DAMOModelEMA


def reference_lr(it: int, base: float, iters_per_epoch: int, max_epochs: int, warmup_epochs: float,
                 no_aug_epochs: int, min_lr_ratio: float) -> float:
    """The reference's cosine_scheduler.get_lr (damo/apis/detector_trainer.py), written as it is there."""
    warmup, total, no_aug = (warmup_epochs * iters_per_epoch, max_epochs * iters_per_epoch,
                             no_aug_epochs * iters_per_epoch)
    final = base * min_lr_ratio
    if it < warmup:
        return base * pow(it / float(warmup), 2)
    if it >= total - no_aug:
        return final
    return final + 0.5 * (base - final) * (1.0 + math.cos(math.pi * (it - warmup) / (total - warmup - no_aug)))


def _schedulers(optimizer, iters_per_epoch, max_epochs, warmup_epochs, no_aug_epochs, min_lr_ratio):
    from mmengine.registry import PARAM_SCHEDULERS

    import damo_yolo.training  # noqa: F401  registers the schedulers
    entries = [dict(type="QuadraticWarmupFromZeroLR", begin=0, end=warmup_epochs),
               dict(type="CosineToMinLR", begin=warmup_epochs, end=max_epochs - no_aug_epochs, min_ratio=min_lr_ratio),
               dict(type="FlatTailLR", begin=max_epochs - no_aug_epochs, end=max_epochs, factor=min_lr_ratio)]
    return [PARAM_SCHEDULERS.build(dict(e, optimizer=optimizer, convert_to_iter_based=True),
                                   default_args=dict(epoch_length=iters_per_epoch)) for e in entries]


@pytest.mark.parametrize("warmup_epochs,no_aug_epochs", [(2, 3), (0, 3), (2, 0), (1.5, 3)])
def test_lr_schedulers_set_the_reference_rate_at_every_iteration(warmup_epochs, no_aug_epochs):
    kw = dict(iters_per_epoch=10, max_epochs=20, warmup_epochs=warmup_epochs, no_aug_epochs=no_aug_epochs,
              min_lr_ratio=0.05)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.04)
    schedulers = _schedulers(optimizer, **kw)
    seen = []
    for it in range(200):  # as mmengine's loop: the rate in effect during iteration `it`, then step
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    expected = [reference_lr(it, 0.04, **kw) for it in range(200)]
    assert max(abs(a - b) for a, b in zip(seen, expected)) < 1e-17
    if warmup_epochs == 2:
        assert seen[0] == 0.0 and seen[10] == pytest.approx(0.04 * 0.25) and seen[20] == 0.04


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


def test_a_run_sets_the_reference_rate_and_ema_at_every_iteration(tmp_path, tiny_synthetic):
    """A real Runner on the synthetic config (16 images, batch 4: 4 iterations an epoch, 4 epochs): the rate
    in effect at each iteration is the reference's, and after each step the EMA is the closed-form
    decay(n) · previous + (1 − decay(n)) · weights, decay(n) = 0.9998 · (1 − exp(−n / ramp))."""
    from mmengine.hooks import EMAHook, Hook
    from mmengine.runner import Runner
    from training_utils import SYNTHETIC_CONFIG

    from damo_yolo.training.config import load_config

    cfg = load_config(SYNTHETIC_CONFIG, {"data_root": f"{tiny_synthetic}/", "input_size": (64, 64), "batch_size": 4,
                                         "num_workers": 0, "max_epochs": 4, "warmup_epochs": 1, "no_aug_epochs": 1,
                                         "val_interval": 10, "model.channels_last": False})
    cfg.train_cfg.dynamic_intervals = None
    cfg.work_dir = str(tmp_path)
    cfg.default_hooks.checkpoint.interval = 10
    runner = Runner.from_cfg(cfg)
    seen = {"lr": [], "ema": []}

    class Record(Hook):
        priority = "LOWEST"  # after the EMA update

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            seen["lr"].append(runner.optim_wrapper.get_lr()["lr"][0])

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            ema = next(h for h in runner.hooks if isinstance(h, EMAHook)).ema_model
            key = "neck.merge_3.conv1.conv.weight"
            seen["ema"].append((int(ema.steps), dict(ema.module.named_parameters())[key].detach().double().clone(),
                                dict(runner.model.named_parameters())[key].detach().double().clone()))

    runner.register_hook(Record())
    runner.train()
    expected = [reference_lr(it, cfg.base_lr, 4, 4, 1, 1, cfg.min_lr_ratio) for it in range(16)]
    assert len(seen["lr"]) == 16 and max(abs(a - b) for a, b in zip(seen["lr"], expected)) < 1e-17
    assert seen["lr"][0] == 0.0 and seen["lr"][2] == cfg.base_lr * (2 / 4) ** 2 and seen["lr"][4] == cfg.base_lr
    ramp = next(h for h in cfg.custom_hooks if h["type"] == "EMAHook")["ramp"]
    steps, first, weights = seen["ema"][0]
    assert steps == 1 and torch.equal(first, weights)  # the first update copies
    for (n, ema, w), (_, previous, _) in zip(seen["ema"][1:], seen["ema"]):
        decay = 0.9998 * (1 - math.exp(-(n - 1) / ramp))
        assert torch.allclose(ema, decay * previous + (1 - decay) * w, rtol=0, atol=1e-6), n


def test_a_param_scheduler_of_the_users_takes_effect(tmp_path, tiny_synthetic):
    """param_scheduler is plain mmengine: replacing it with any registered scheduler changes the rate."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner
    from training_utils import SYNTHETIC_CONFIG

    from damo_yolo.training.config import load_config

    cfg = load_config(SYNTHETIC_CONFIG, {"data_root": f"{tiny_synthetic}/", "input_size": (64, 64), "batch_size": 8,
                                         "num_workers": 0, "max_epochs": 2, "warmup_epochs": 0, "no_aug_epochs": 0})
    cfg.param_scheduler = [dict(type="MultiStepLR", milestones=[1], gamma=0.1, by_epoch=True)]  # mmengine's own
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    seen = []

    class Record(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            seen.append(runner.optim_wrapper.get_lr()["lr"][0])

    runner.register_hook(Record())
    runner.train()
    assert seen == pytest.approx([cfg.base_lr] * 2 + [cfg.base_lr * 0.1] * 2)
