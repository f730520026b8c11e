"""`damo-train` as a user meets it: refusals at once and in one line, settings that cannot make a run refused
before the Runner is built (with values that do), a quiet console ending with the run's summary, everything
with --verbose, and a progress bar on a terminal only."""
from __future__ import annotations

import os
import pty
import re
import select
import statistics
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
    # a fine-tuning run resumed: every weight comes with the resumed state, the fine-tuning checkpoint is not read
    fresh = build_config(parse_args([str(SYNTHETIC_CONFIG), "--finetune", "official.pth"]))
    resumed = build_config(parse_args([str(SYNTHETIC_CONFIG), "--finetune", "official.pth", "--resume"]))
    assert fresh.model.finetune == "official.pth" and resumed.model.finetune is None


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
    code, output = train_reporting_epochs(config, work, 2, reports.append, "--cfg-options", *suggested)
    assert code == 0, output[-3000:]
    lines = _lines(output)
    say(pytestconfig, f"a 2-epoch run of 16 images: {len(lines)} console lines; the log file "
                      f"{len(_lines(next(work.glob('*/*.log')).read_text()))}")
    assert not [line for line in lines if any(noise in line for noise in NOISE)], output
    assert [m[1] for m in map(EPOCH_DONE.search, lines) if m and m[2] == m[3]] == ["1", "2"]  # the fixture's cue
    assert len([line for line in lines if "Epoch(val) [" in line and "coco/mAP:" in line]) == 2
    assert len(lines) <= 12, output

    done, best, latest, log, curves = lines[-5:]
    assert re.fullmatch(r"done: epoch 2 of 2 in (\d+ min )?\d+ s", done), done
    meta = torch.load(work / "best.pth", weights_only=True)["meta"]
    assert best == f"best:   coco/mAP {meta['metrics']['coco/mAP']:.4f} at epoch {meta['epoch']}  {work / 'best.pth'}"
    assert latest == f"latest: epoch 2  {work / 'latest.pth'}"
    assert torch.load(work / "latest.pth", weights_only=True)["meta"]["epoch"] == 2
    assert log.startswith("log:    ") and "paramwise_options" in Path(log.split()[-1]).read_text()  # all of it
    png = Path(log.split()[-1]).parent / "curves.png"  # beside the log
    assert curves == f"curves: {png}" and _png_size(png)[0] > 500
    assert re.fullmatch(r"training: epoch 1/2, \d+ s", reports[0]) and re.fullmatch(r"training: epoch 2/2, \d+ s",
                                                                                      reports[2]), reports
    assert reports[1].startswith("training: epoch 1/2 validated, mAP ") and len(reports) == 4, reports


def test_resume_refuses_a_work_dir_without_a_checkpoint(tmp_path, tiny_synthetic):
    config = write_config(tmp_path / "tiny.py", tiny_synthetic, **TINY)
    (tmp_path / "empty").mkdir()
    run = subprocess.run([str(DAMO_TRAIN), str(config), "--work-dir", str(tmp_path / "empty"), "--resume"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 1 and run.stdout == "", run.stderr[-2000:]
    assert run.stderr.strip().splitlines() == [
        f"Error: --resume: no checkpoint to resume in {tmp_path / 'empty'}: train without --resume to start, or "
        f"give the --work-dir of the run to continue"]
    assert list((tmp_path / "empty").iterdir()) == []  # nothing trained, nothing written


def test_ctrl_c_names_the_command_that_continues(tmp_path, tiny_synthetic):
    """SIGINT (Ctrl-C) after the first epoch's checkpoint: one line naming the work dir, its checkpoint and the
    --resume command, exit code 130; that command continues the run to its end."""
    import signal
    config = write_config(tmp_path / "tiny.py", tiny_synthetic, **TINY)
    work = tmp_path / "run"
    cmd = [str(DAMO_TRAIN), str(config), "--work-dir", str(work), "--cfg-options", "max_epochs=3"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) as run:
        deadline = time.time() + 300
        while not (work / "last_checkpoint").is_file() and run.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert run.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.5)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    held = (work / "last_checkpoint").read_text().strip().rsplit("/", 1)[-1]
    assert last == (f"interrupted: {work} holds {held}; continue with: damo-train {config} --work-dir {work} "
                    f"--resume --cfg-options max_epochs=3"), stderr[-2000:]
    assert "Aborted" not in stdout + stderr and "Traceback" not in stderr
    resumed = subprocess.run([str(DAMO_TRAIN), *last.split("continue with: damo-train ", 1)[1].split()],
                             capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert resumed.returncode == 0 and "done: epoch 3 of 3" in resumed.stdout, resumed.stderr[-2000:]


def test_the_eta_after_the_first_epoch_is_within_a_fifth_of_the_time_left(tmp_path, tiny_synthetic, pytestconfig):
    """One ETA, the run clock's (iterations, validations as the loop will run them, checkpoints), in mmengine's
    metrics lines on the console and in the log file alike; read after the first epoch and its validation, it
    is within 20 % of the time the run then takes."""
    config = write_config(tmp_path / "tiny.py", tiny_synthetic, **dict(TINY, max_epochs="10", batch_size="2"))
    cmd = [str(DAMO_TRAIN), str(config), "--work-dir", str(tmp_path / "run")]
    seen: list[tuple[float, str]] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT) as run:
        assert run.stdout is not None
        for line in run.stdout:
            seen.append((time.monotonic(), line))
    assert run.returncode == 0, "".join(line for _, line in seen)[-3000:]
    etas = [(t, int(m[1]), m[2]) for t, line in seen
            if (m := re.search(r"Epoch\(train\)\s*\[(\d+)\]\[\d+/\d+\].*?eta: (\S+)", line))]
    assert all(line.count("eta: ") <= 1 for _, line in seen)
    ended = next(t for t, line in seen if line.startswith("done: "))

    def seconds(text: str) -> int:
        h, m, s = map(int, text.split(":"))
        return 3600 * h + 60 * m + s

    # each ETA read after the first epoch and its validation, while 5 s or more were left (the ETA is in whole
    # seconds), against the time the run then took; the median error, as one epoch may run slow on a busy host
    # (less the second an ETA in whole seconds may be short by)
    errors = [max(0.0, abs(seconds(text) - (ended - t)) - 1) / (ended - t)
              for t, epoch, text in etas if epoch >= 2 and ended - t >= 5]
    t, _, text = next((t, e, text) for t, e, text in etas if e == 2)
    say(pytestconfig, f"ETA after epoch 1: {seconds(text)} s, the run then took {ended - t:.1f} s; errors of "
                      f"{len(errors)} ETAs from then: median {100 * statistics.median(errors):.0f} %, "
                      f"max {100 * max(errors):.0f} %")
    assert len(errors) >= 3 and statistics.median(errors) <= 0.2, errors
    log = next((tmp_path / "run").glob("*/*.log")).read_text()
    assert f"eta: {text}" in log  # the same figure in the log file


def test_readmes_short_recipe_validates_when_readme_says(tmp_path, tiny_synthetic):
    """README's "useful model in minutes" settings (its schedule, on the tiny set) validate after the epochs
    README names, and the run clock's count of validations agrees with mmengine's loop."""
    from damo_yolo.training.hooks import validates_after
    readme = (ROOT / "README.md").read_text()
    options = re.search(r"--work-dir work_dirs/quick \\\n\s+--cfg-options (.*)\n", readme)[1].split()
    options = [o for o in options if not o.startswith("data_root=")]
    said = re.search(r"validated after epochs ([\d, ]+) and (\d+)", readme)
    assert said, "README no longer says when the short recipe validates"
    settings = {k: v for k, v in TINY.items() if k != "train_cfg"}  # the config's own dynamic intervals
    config = write_config(tmp_path / "tiny.py", tiny_synthetic, **settings)
    work = tmp_path / "run"
    run = subprocess.run([str(DAMO_TRAIN), str(config), "--work-dir", str(work), "--cfg-options", *options],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    validated = [int(m[1]) for m in re.finditer(r"Epoch\(val\) \[(\d+)\]\[\d+/\d+\]\s+coco/mAP", run.stdout)]
    assert validated == [int(e) for e in said[1].split(", ")] + [int(said[2])], (validated, said[0])
    cfg = build_config(parse_args([str(config), "--work-dir", str(tmp_path / "x"), "--cfg-options", *options]))
    from mmengine.runner.utils import calc_dynamic_intervals

    class Loop:  # the attributes validates_after reads, as mmengine's EpochBasedTrainLoop sets them
        max_epochs, val_begin = cfg.train_cfg.max_epochs, cfg.train_cfg.get("val_begin", 1)
        dynamic_milestones, dynamic_intervals = calc_dynamic_intervals(cfg.train_cfg.val_interval,
                                                                       cfg.train_cfg.get("dynamic_intervals"))
        runner = type("Runner", (), {"val_loop": True})

    assert [e for e in range(1, Loop.max_epochs + 1) if validates_after(Loop, e)] == validated


def _png_size(path: Path) -> tuple[int, int]:
    import cv2
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a PNG OpenCV reads"
    return image.shape[1], image.shape[0]


def test_plot_draws_a_work_dirs_curves_on_demand(tmp_path, tiny_synthetic):
    """damo-train --plot WORK_DIR on a run that was resumed: one PNG beside the newest log, the curves of both
    runs; a folder with no run is refused in one line."""
    from damo_yolo.training.plot import read_scalars
    config = write_config(tmp_path / "tiny.py", tiny_synthetic, **dict(TINY, max_epochs="2", no_aug_epochs="0"))
    work = tmp_path / "run"
    first = subprocess.run([str(DAMO_TRAIN), str(config), "--work-dir", str(work), "--cfg-options", "max_epochs=1",
                            "warmup_epochs=0"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run([str(DAMO_TRAIN), str(config), "--work-dir", str(work), "--resume", "--cfg-options",
                             "max_epochs=2", "warmup_epochs=0"], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    train, val = read_scalars(work)
    assert [r["step"] for r in val] == [1, 2] and train[-1]["step"] == 8  # both runs' figures
    (tmp_path / "curves_elsewhere").mkdir()
    run = subprocess.run([str(DAMO_TRAIN), "--plot", str(work)], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    newest = sorted(work.glob("*/*.log"))[-1].parent / "curves.png"
    assert run.returncode == 0 and run.stdout.strip() == f"curves: {newest}", run.stderr[-2000:]
    assert _png_size(newest) == (960, 1080)
    refused = subprocess.run([str(DAMO_TRAIN), "--plot", str(tmp_path / "curves_elsewhere")], capture_output=True,
                             text=True, cwd=ROOT, timeout=300)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'curves_elsewhere'}: no scalars.json in its run folders (*/vis_data/): is it a "
        f"damo-train work dir with at least one logged iteration?"]


def test_curves_join_a_resumed_run_and_a_fresh_start_replaces_what_was_there(tmp_path):
    """scalars.json as mmengine's LocalVisBackend writes it, one per run folder: a resumed run takes over from
    its first step (what the stopped run logged after its checkpoint is redone), a run started afresh in the
    same work dir replaces everything."""
    import json

    from damo_yolo.training.plot import read_scalars

    def run(folder: str, train: list[tuple[int, int]], val: list[int]) -> None:
        path = tmp_path / folder / "vis_data" / "scalars.json"
        path.parent.mkdir(parents=True)
        lines = [{"loss": 1.0 / step, "lr": 0.01, "epoch": epoch, "iter": step, "step": step} for epoch, step in train]
        lines += [{"coco/mAP": epoch / 10, "coco/mAP_50": epoch / 5, "step": epoch} for epoch in val]
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    run("20261201_000000", [(1, 2), (1, 4), (2, 6), (2, 8), (3, 10)], [1, 2])  # stopped in epoch 3
    run("20261201_010000", [(3, 10), (3, 12), (4, 14), (4, 16)], [3, 4])  # resumed after epoch 2
    train, val = read_scalars(tmp_path)
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12, 14, 16] and [r["step"] for r in val] == [1, 2, 3, 4]
    run("20261202_000000", [(1, 2), (1, 4)], [])  # started afresh
    train, val = read_scalars(tmp_path)
    assert [r["step"] for r in train] == [2, 4] and val == []


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
    """On a terminal: bars for the run (with the run's ETA) and the epoch, the log lines printed above them, the
    summary after them; --verbose: mmengine's environment, config and parameter groups on the console too.
    (Piped, the quiet test above sees no bar.)"""
    config = write_config(tmp_path / "tiny.py", tiny_synthetic,
                          **dict(TINY, max_epochs="1", warmup_epochs="0", no_aug_epochs="0"))
    code, output = _run_on_a_terminal([str(DAMO_TRAIN), str(config), "--work-dir", str(tmp_path / "run"), "--verbose"])
    assert code == 0, output[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    assert re.search(r"epoch 1/1 +[━╸╺]+ +\d/4 +\d+:\d\d:\d\d", plain), plain[-3000:]  # the epoch's bar
    # the run's bar carries the one ETA
    assert re.search(r"training +[━╸╺]+ +\d/4 +\d+:\d\d:\d\d eta \d+:\d\d:\d\d", plain) and "validation" in plain
    assert not re.search(r"epoch 1/1 +[━╸╺]+ +\d/4 +\d+:\d\d:\d\d +eta", plain)
    assert re.search(r"Epoch\(train\) \[1\]\[4/4\] +base_lr", plain)  # a log line, whole, above the bars
    assert "System environment" in plain and "paramwise_options" in plain  # --verbose
    assert _lines(plain)[-5].startswith("done: epoch 1 of 1 in ") and _lines(plain)[-1].startswith("curves: ")
