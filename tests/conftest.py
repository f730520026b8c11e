"""Shared test fixtures: the ../shared folder beside the checkout, and weights that make outputs non-trivial."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DAMO_SHARED_DIR", ROOT.parent / "shared")).resolve()
EPOCH_DONE = re.compile(r"Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]")  # damo-train's console: an epoch's last line
VALIDATED = re.compile(r"Epoch\(val\)\s*\[(\d+)\]\[\d+/\d+\]\s+coco/mAP: ([\d.]+)")


def say(config: pytest.Config, message: str) -> None:
    """``message`` on the terminal now, even while pytest captures the output (as its live logging does): a long
    fixture shows what it is doing in a CI log instead of minutes of silence."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        if reporter is not None:
            reporter.write_line(message)
            reporter.flush()
        else:
            print(message, flush=True)


def train_reporting_epochs(config: Path, work_dir: Path, epochs: int, report: Callable[[str], None], *extra: str,
                           what: str = "training") -> tuple[int, str]:
    """damo-train ``config`` into ``work_dir`` (as training_utils.run_train), calling ``report`` at the end of each
    epoch ("<what>: epoch 3/8, 41 s") and validation; returns the exit code and the output (stdout and stderr)."""
    cmd = [sys.executable, "-m", "damo_yolo.tools.train", str(config), "--work-dir", str(work_dir), *extra]
    started, lines = time.monotonic(), []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONHASHSEED="0")) as run:
        assert run.stdout is not None
        for line in run.stdout:
            lines.append(line)
            done, validated = EPOCH_DONE.search(line), VALIDATED.search(line)
            if done and done[2] == done[3]:
                report(f"{what}: epoch {done[1]}/{epochs}, {time.monotonic() - started:.0f} s")
            elif validated:
                report(f"{what}: epoch {validated[1]}/{epochs} validated, mAP {float(validated[2]):.3f}")
    return run.returncode, "".join(lines)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared folder is not at {SHARED} (set DAMO_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def sample_images(shared_dir: Path) -> list[Path]:
    images = sorted((shared_dir / "data" / "images").glob("*.jpg"))
    if not images:
        pytest.skip(f"no photographs under {shared_dir / 'data' / 'images'}")
    return images


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory, shared_dir) -> Path:
    """16 training and 8 validation images of 128 px: for runs that only need to run."""
    from training_utils import make_synthetic
    return make_synthetic(tmp_path_factory.mktemp("tiny_synthetic"), 16, 8, 128, shared_dir / "data" / "images")


@pytest.fixture(scope="session")
def trained_synthetic(tmp_path_factory, shared_dir, pytestconfig) -> dict:
    """The synthetic Ns config trained once per session on CPU (400 / 100 images of 256 px, 8 epochs): the
    training test checks how it learned; export and serving tests use its checkpoint. It reports its progress
    on the terminal (several minutes on 2 cores), output capture or not."""
    from training_utils import EPOCHS, SMALL_TRAINING, make_synthetic, write_config
    cache = os.environ.get("DAMO_TEST_CACHE")  # developers: keep the trained model between pytest runs
    if cache and (Path(cache) / "train_small" / "run" / "best.pth").is_file():
        work, data = Path(cache) / "train_small", Path(cache) / "synthetic_small"
        say(pytestconfig, f"[fixture] the gate model: trained already, {work / 'run' / 'best.pth'} (DAMO_TEST_CACHE)")
        return {"data": data, "config": work / "small.py", "work_dir": work / "run",
                "checkpoint": work / "run" / "best.pth"}
    root = Path(cache) if cache else None
    started = time.monotonic()
    say(pytestconfig, "[fixture] the gate model: making its synthetic data set (400 / 100 images of 256 px)")
    data = make_synthetic(root / "synthetic_small" if root else tmp_path_factory.mktemp("synthetic_small"), 400, 100,
                          256, shared_dir / "data" / "images")
    work = root / "train_small" if root else tmp_path_factory.mktemp("train_small")
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(work / "small.py", data, **SMALL_TRAINING)
    say(pytestconfig, f"[fixture] training the gate model: {EPOCHS} epochs (minutes on 2 cores) into {work / 'run'}")
    code, output = train_reporting_epochs(config, work / "run", EPOCHS, what="training the gate model",
                                          report=lambda line: say(pytestconfig, f"[fixture] {line}"))
    if code != 0:
        pytest.fail(f"training the synthetic model failed:\n{output[-4000:]}")
    say(pytestconfig, f"[fixture] the gate model is trained: {time.monotonic() - started:.0f} s in all")
    return {"data": data, "config": config, "work_dir": work / "run", "checkpoint": work / "run" / "best.pth"}


@pytest.fixture(scope="session")
def served_synthetic(trained_synthetic, tmp_path_factory):
    """The trained synthetic model exported (CPU target) with the checkpoint's evaluation thresholds, so served
    answers compare with the PyTorch model's evaluation, and served by the real tritonserver on free ports."""
    from serving import running_server

    from damo_yolo.tools.export import export_repository
    repo = export_repository(trained_synthetic["checkpoint"], tmp_path_factory.mktemp("served") / "triton_models",
                             thresholds="evaluation")
    with running_server(repo, repo.parent / "server.log") as server:
        yield server
