"""`damo-train` as a user meets it: refusals at once and in one line, settings that cannot make a run refused
before the Runner is built (with values that do), a quiet console ending with the run's summary, everything
with --verbose, and a progress bar on a terminal only."""
from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import EPOCH_DONE, say, train_reporting_epochs
from test_resume import TINY
from training_utils import ROOT, SYNTHETIC_CONFIG, write_config

from damo_yolo.cli import spread_values
from damo_yolo.tools.train import build_config, parse_args
from damo_yolo.training.config import value_at

DAMO_TRAIN = Path(sys.executable).parent / "damo-train"  # the console script, as installed
FAST = 3.0  # seconds to refuse; measured 0.05-0.1 s on 2 busy cores (14.6 s when torch and mmengine came first)
NOISE = ("paramwise_options", "System environment", "Config:", "Hooks will be executed", "will be deprecated",
         "is the alias of", "save_param_scheduler", "AP@[.5:.95]")  # mmengine's chatter and the COCO tables


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# (arguments, exit code, stderr's last line); 1: a file or value that cannot be used, 2: a usage error
REFUSALS = [
    (["nope.py"], 1, "Error: config not found: nope.py"),
    (["a_folder"], 1, "Error: config not found: a_folder (it is a directory)"),
    ([SYNTHETIC_CONFIG, "--finetune", "nope.pth"], 1, "Error: finetune checkpoint not found: nope.pth"),
    ([SYNTHETIC_CONFIG, "--resume", "nope.pth"], 1, "Error: resume checkpoint not found: nope.pth"),
    ([SYNTHETIC_CONFIG, "--teacher-config", SYNTHETIC_CONFIG, "--teacher-checkpoint", "nope.pth"], 1,
     "Error: teacher checkpoint not found: nope.pth"),
    ([SYNTHETIC_CONFIG, "--work-dir", "notes.txt"], 1, "Error: --work-dir notes.txt is a file; name a folder"),
    ([SYNTHETIC_CONFIG, "--teacher-config", SYNTHETIC_CONFIG], 2,
     "Error: --teacher-config and --teacher-checkpoint go together (distillation needs both)"),
    ([SYNTHETIC_CONFIG, "--cfg-options", "max_epochs=4", "input_size"], 2,
     "Error: Invalid value for '--cfg-options': 'input_size': expected KEY=VALUE, e.g. max_epochs=10"),
    ([SYNTHETIC_CONFIG, "--launcher", "k8s"], 2,
     "Error: Invalid value for '--launcher': 'k8s' is not one of 'none', 'pytorch', 'slurm', 'mpi'."),
]


@pytest.mark.parametrize("args,code,message", REFUSALS,
                         ids=[" ".join(map(str, a)).replace(str(ROOT) + "/", "") for a, _, _ in REFUSALS])
def test_refused_at_once_in_one_line(tmp_path, pytestconfig, args, code, message):
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a folder\n")
    start = time.perf_counter()
    run = subprocess.run([str(DAMO_TRAIN), *map(str, args)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    elapsed = time.perf_counter() - start
    say(pytestconfig, f"damo-train {' '.join(map(str, args)).replace(str(ROOT) + '/', '')}: refused in {elapsed:.2f} s")
    lines = run.stderr.strip().splitlines()
    assert run.returncode == code and lines[-1] == message, run.stderr[-2000:]
    if code == 1:
        assert len(lines) == 1 and run.stdout == "", run.stderr[-2000:]
    assert elapsed < FAST, f"damo-train took {elapsed:.2f} s to refuse"
    assert not (tmp_path / "work_dirs").exists()


def test_the_command_line_forms_reach_the_config(tmp_path):
    """argparse's forms still work: several items after one --cfg-options, --resume with or without a
    checkpoint, the launchers' --local_rank/--local-rank."""
    assert spread_values(["C", "--cfg-options", "a=1", "b=2", "--amp", "--", "x=1"], "--cfg-options") == [
        "C", "--cfg-options", "a=1", "--cfg-options", "b=2", "--amp", "--", "x=1"]
    args = parse_args([str(SYNTHETIC_CONFIG), "--cfg-options", "max_epochs=12", "input_size=(128,128)",
                       "data_root=/data/mine/", "--resume", "--local-rank=1", "--work-dir", str(tmp_path)])
    assert args.resume == "auto" and args.local_rank == 1 and not args.verbose
    cfg = build_config(args)
    assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[1]["end"] == 12 - cfg.no_aug_epochs
    assert tuple(value_at(cfg, "train_dataloader.dataset.pipeline.Resize.scale")) == (128, 128)  # moved along
    assert cfg.val_dataloader.dataset.data_root == "/data/mine/"
    assert cfg.resume is True and cfg.load_from is None and cfg.work_dir == str(tmp_path)

    args = parse_args([str(SYNTHETIC_CONFIG), "--resume", "run/epoch_7.pth", "--amp", "--auto-scale-lr",
                       "--local_rank", "3", "--cfg-options=max_epochs=9", "val_interval=3", "-v"])
    assert args.resume == "run/epoch_7.pth" and args.local_rank == 3 and args.verbose
    cfg = build_config(args)
    assert cfg.resume is True and cfg.load_from == "run/epoch_7.pth"
    assert cfg.train_cfg.max_epochs == 9 and cfg.train_cfg.val_interval == 3
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.auto_scale_lr.enable is True
    assert cfg.work_dir == str(Path("work_dirs") / SYNTHETIC_CONFIG.stem)


def test_phases_that_do_not_fit_are_refused_before_the_runner_and_the_suggestion_trains(tmp_path, tiny_synthetic,
                                                                                           pytestconfig):
    """max_epochs=2 with 1 warm-up and 1 last epoch leaves no cosine epoch: one line naming the settings and
    values that fit, before any work dir, log or model; then a run with those values, whose console is the
    metrics lines, the project's own lines and the summary (the log file keeps everything)."""
    config = write_config(tmp_path / "tiny.py", tiny_synthetic, **dict(TINY, max_epochs="2"))
    start = time.perf_counter()
    refused = subprocess.run([str(DAMO_TRAIN), str(config), "--work-dir", str(tmp_path / "refused")],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    elapsed = time.perf_counter() - start
    say(pytestconfig, f"damo-train with phases that do not fit: refused in {elapsed:.2f} s (config and torch loaded)")
    assert refused.returncode == 1 and refused.stdout == "", refused.stderr[-2000:]
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("Error: warmup_epochs (1) and no_aug_epochs (1) leave no epoch of the cosine phase in "
                           "max_epochs=2"), line
    assert not (tmp_path / "refused").exists()
    suggested = re.search(r"--cfg-options (.*)$", line)[1].split()
    assert suggested == ["max_epochs=2", "warmup_epochs=1", "no_aug_epochs=0"]

    work, reports = tmp_path / "run", []
    code, output = train_reporting_epochs(config, work, 2, reports.append, "--resume", "--cfg-options", *suggested)
    assert code == 0, output[-3000:]
    lines = _lines(output)
    say(pytestconfig, f"a 2-epoch run of 16 images: {len(lines)} console lines; the log file "
                      f"{len(_lines(next(work.glob('*/*.log')).read_text()))}")
    assert lines[0] == f"warning: --resume: no checkpoint to resume in {work}: training from the start"
    assert not [line for line in lines if any(noise in line for noise in NOISE)], output
    assert [m[1] for m in map(EPOCH_DONE.search, lines) if m and m[2] == m[3]] == ["1", "2"]  # the fixture's cue
    assert len([line for line in lines if "Epoch(val) [" in line and "coco/mAP:" in line]) == 2
    assert len(lines) <= 12, output

    done, best, latest, log = lines[-4:]
    assert re.fullmatch(r"done: epoch 2 of 2 in (\d+ min )?\d+ s", done), done
    meta = torch.load(work / "best.pth", weights_only=True)["meta"]
    assert best == f"best:   coco/mAP {meta['metrics']['coco/mAP']:.4f} at epoch {meta['epoch']}  {work / 'best.pth'}"
    assert latest == f"latest: epoch 2  {work / 'latest.pth'}"
    assert torch.load(work / "latest.pth", weights_only=True)["meta"]["epoch"] == 2
    assert log.startswith("log:    ") and "paramwise_options" in Path(log.split()[-1]).read_text()  # all of it
    assert re.fullmatch(r"training: epoch 1/2, \d+ s", reports[0]) and re.fullmatch(r"training: epoch 2/2, \d+ s",
                                                                                      reports[2]), reports
    assert reports[1].startswith("training: epoch 1/2 validated, mAP ") and len(reports) == 4, reports


def _run_on_a_terminal(cmd: list[str], timeout: float = 600) -> tuple[int, str]:
    """``cmd`` with a pseudo-terminal as stdin, stdout and stderr (as in an interactive shell); its output."""
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="160", PYTHONHASHSEED="0")
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.wait(), b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_a_progress_bar_and_with_verbose_everything(tmp_path, tiny_synthetic):
    """On a terminal: bars for the run and the epoch with their ETAs, the log lines printed above them, the
    summary after them; --verbose: mmengine's environment, config and parameter groups on the console too.
    (Piped, the quiet test above sees no bar.)"""
    config = write_config(tmp_path / "tiny.py", tiny_synthetic,
                          **dict(TINY, max_epochs="1", warmup_epochs="0", no_aug_epochs="0"))
    code, output = _run_on_a_terminal([str(DAMO_TRAIN), str(config), "--work-dir", str(tmp_path / "run"), "--verbose"])
    assert code == 0, output[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    assert re.search(r"epoch 1/1 +[━╸╺]+ +\d/4 +\d+:\d\d:\d\d eta", plain), plain[-3000:]  # the epoch's bar
    assert re.search(r"training +[━╸╺]+ +\d/4", plain) and "validation" in plain
    assert re.search(r"Epoch\(train\) \[1\]\[4/4\] +base_lr", plain)  # a log line, whole, above the bars
    assert "System environment" in plain and "paramwise_options" in plain  # --verbose
    assert _lines(plain)[-4].startswith("done: epoch 1 of 1 in ")
