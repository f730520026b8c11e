"""A training run killed mid-way and resumed ends in exactly the state of an uninterrupted run."""
from __future__ import annotations

import json
import re
import signal
import time

import pytest
import torch
from training_utils import run_train, write_config

TINY = dict(
    input_size="(128, 128)",
    batch_size="4",
    num_workers="0",
    max_epochs="3",
    val_interval="1",
    warmup_epochs="1",
    no_aug_epochs="1",
    model="dict(channels_last=False)",
    val_dataloader="dict(batch_size=8, num_workers=0)",
    train_cfg="dict(dynamic_intervals=None)",
    custom_hooks="[dict(type='TrainProgressHook'), "
                 "dict(type='PipelineSwitchHook', switch_pipeline=_base_.last_stage_pipeline), "
                 "dict(type='EMAHook', ema_type='DAMOModelEMA', update_buffers=True, priority=49, ramp=5.0), "
                 "dict(type='ExportCheckpointHook')]",
)


def _logged_losses(work) -> dict[int, float]:
    """iteration → the smoothed loss the runs in ``work`` logged (mmengine's scalars.json), the last run's
    figure where two logged one iteration."""
    losses = {}
    for scalars in sorted(work.glob("*/vis_data/scalars.json")):  # timestamped run folders, in run order
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                losses[int(record["step"])] = float(record["loss"])
    return losses


def _state(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)  # written by this test's own runs
    return ckpt


def test_killed_run_resumes_to_the_identical_state(tmp_path, tiny_synthetic):
    config = write_config(tmp_path / "tiny.py", tiny_synthetic, **TINY)
    straight = tmp_path / "straight"
    done = run_train(config, straight)
    assert done.returncode == 0, done.stderr[-3000:]

    interrupted = tmp_path / "interrupted"
    proc = run_train(config, interrupted, wait=False)
    deadline = time.time() + 300
    while not (interrupted / "epoch_2.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: as a crash or a pre-empted machine
    proc.wait()
    assert not (interrupted / "epoch_3.pth").exists()
    assert not list(interrupted.glob(".*.tmp")), "a half-written checkpoint was left behind"

    # the last checkpoint the killed run recorded (epoch 2, or epoch 1 when the kill fell between writing
    # epoch_2.pth and recording it): the resumed run must start from there, not from scratch
    recorded = int(re.search(r"epoch_(\d+)\.pth", (interrupted / "last_checkpoint").read_text()).group(1))
    resumed = run_train(config, interrupted, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logs = "".join(p.read_text() for p in interrupted.glob("*/*.log"))
    assert recorded >= 1 and f"resumed epoch: {recorded}," in logs, "the run did not resume from its last checkpoint"
    # the console says once what was resumed; mmengine's message hub has nothing to complain of
    said = [line for line in resumed.stdout.splitlines() if "resumed after epoch" in line]
    assert len(said) == 1 and f"resumed after epoch {recorded} of 3 (iteration {4 * recorded}); best coco/mAP " \
        in said[0], resumed.stdout
    assert "message_hub" not in resumed.stdout + resumed.stderr + logs
    # losses logged over the same window as the uninterrupted run's: the same figures at the same iterations
    straight_losses, resumed_losses = (_logged_losses(d) for d in (straight, interrupted))
    after = {i: v for i, v in resumed_losses.items() if i > 4 * recorded}
    assert after and all(v == pytest.approx(straight_losses[i], rel=1e-4) for i, v in after.items()), \
        (after, straight_losses)
    done, best = resumed.stdout.strip().splitlines()[-5:-3]  # the summary names the best's epoch, also when the
    best_meta = torch.load(interrupted / "best.pth", weights_only=True)["meta"]  # best came before the interruption
    assert done.startswith("done: epoch 3 of 3 in ")
    assert best.endswith(f" at epoch {best_meta['epoch']}  {interrupted / 'best.pth'}"), best

    a, b = _state(straight / "epoch_3.pth"), _state(interrupted / "epoch_3.pth")
    assert a["meta"]["epoch"] == b["meta"]["epoch"] == 3 and a["meta"]["iter"] == b["meta"]["iter"]
    for key in ("state_dict", "ema_state_dict"):
        assert a[key].keys() == b[key].keys()
        different = [k for k in a[key] if not torch.equal(a[key][k], b[key][k])]
        assert different == [], f"{key} differs after resume: {different[:5]}"
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert opt_a.keys() == opt_b.keys()
    assert all(torch.equal(opt_a[i][k], opt_b[i][k]) for i in opt_a for k in opt_a[i] if torch.is_tensor(opt_a[i][k]))
    # the exported contract checkpoints agree too
    assert torch.equal(*(torch.load(d / "latest.pth", weights_only=True)["model"]["head.gfl_cls.0.weight"]
                         for d in (straight, interrupted)))


def test_resumed_run_keeps_the_validation_of_its_last_epoch(tmp_path, tiny_synthetic):
    """mmengine writes epoch_N.pth before validating epoch N: the run resumed from it still knows that best."""
    one_epoch = dict(TINY, max_epochs="1", warmup_epochs="0", no_aug_epochs="0")
    config = write_config(tmp_path / "tiny.py", tiny_synthetic, **one_epoch)
    work = tmp_path / "work"
    first = run_train(config, work)
    assert first.returncode == 0, first.stderr[-3000:]
    validated = torch.load(work / "best.pth", weights_only=True)["meta"]
    assert validated["epoch"] == 1
    assert torch.load(work / "epoch_1.pth", weights_only=False)["meta"]["export_best"] is None  # written before

    resumed = run_train(config, work, "--resume", "--cfg-options", "max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = [line for line in resumed.stdout.splitlines() if "resumed after epoch" in line]
    assert len(said) == 1 and said[0].endswith(
        f"resumed after epoch 1 of 2 (iteration 4); best coco/mAP {validated['metrics']['coco/mAP']:.4f} at epoch 1"), \
        resumed.stdout
    # epoch 2 replaces best.pth only on a higher mAP, as in a run that was never stopped
    now = torch.load(work / "best.pth", weights_only=True)["meta"]
    assert now["epoch"] == 1 or now["metrics"]["coco/mAP"] > validated["metrics"]["coco/mAP"]
