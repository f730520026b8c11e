"""Distributed training through torchrun (2 CPU processes, gloo) and distillation from the command line."""
from __future__ import annotations

import os
import subprocess
import sys

import torch
from test_resume import TINY
from training_utils import ROOT, run_train, write_config

from damo_yolo.serving.tritonserver import free_ports

ONE_EPOCH = dict(TINY, max_epochs="1", val_interval="1", warmup_epochs="0", no_aug_epochs="0")


def test_torchrun_two_processes(tmp_path, tiny_synthetic):
    config = write_config(tmp_path / "ddp.py", tiny_synthetic, **ONE_EPOCH)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_ports(1)[0]),
           "-m", "damo_yolo.tools.train", str(config), "--launcher", "pytorch", "--work-dir", str(tmp_path / "run")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    log = next((tmp_path / "run").glob("*/*.log")).read_text()
    assert "Distributed launcher: pytorch" in log and "Distributed training: True" in log
    assert "Epoch(train) [1][2/2]" in log  # 16 images, 4 per process, 2 processes: 2 iterations an epoch
    assert "coco/mAP:" in log
    state = torch.load(tmp_path / "run" / "latest.pth", weights_only=True)
    assert state["meta"]["variant"] == "Ns" and state["meta"]["epoch"] == 1


def test_distillation_from_the_command_line(tmp_path, tiny_synthetic):
    teacher_config = write_config(tmp_path / "teacher.py", tiny_synthetic, **dict(ONE_EPOCH, variant="'Nm'"))
    teacher = run_train(teacher_config, tmp_path / "teacher")
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    student_config = write_config(tmp_path / "student.py", tiny_synthetic, **ONE_EPOCH)
    student = run_train(student_config, tmp_path / "student", "--teacher-config", str(teacher_config),
                        "--teacher-checkpoint", str(tmp_path / "teacher" / "latest.pth"))
    assert student.returncode == 0, student.stderr[-3000:]
    log = next((tmp_path / "student").glob("*/*.log")).read_text()
    assert "loss_distill" in log and "max_norm" in log
    exported = torch.load(tmp_path / "student" / "latest.pth", weights_only=True)["model"]
    assert not any(k.startswith(("distiller", "_teacher")) for k in exported)  # the contract holds the detector only


def test_damo_test_refuses_a_truncated_checkpoint(tmp_path, tiny_synthetic):
    config = write_config(tmp_path / "cfg.py", tiny_synthetic, **ONE_EPOCH)
    from damo_yolo.models import build_model, save_checkpoint
    path = save_checkpoint(tmp_path / "model.pth", build_model("Ns", num_classes=8))
    path.write_bytes(path.read_bytes()[:1000])
    run = subprocess.run([sys.executable, "-m", "damo_yolo.tools.test", str(config), str(path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1 and "truncated or corrupt" in run.stderr and "Traceback" not in run.stderr
