"""Shared test fixtures: the ../shared folder beside the checkout, and weights that make outputs non-trivial."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DAMO_SHARED_DIR", ROOT.parent / "shared")).resolve()


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
def trained_synthetic(tmp_path_factory, shared_dir) -> dict:
    """The synthetic Ns config trained once per session on CPU (400 / 100 images of 256 px, 8 epochs): the
    training test checks how it learned; export and serving tests use its checkpoint."""
    from training_utils import SMALL_TRAINING, make_synthetic, run_train, write_config
    cache = os.environ.get("DAMO_TEST_CACHE")  # developers: keep the trained model between pytest runs
    if cache and (Path(cache) / "train_small" / "run" / "best.pth").is_file():
        work, data = Path(cache) / "train_small", Path(cache) / "synthetic_small"
        return {"data": data, "config": work / "small.py", "work_dir": work / "run",
                "checkpoint": work / "run" / "best.pth"}
    root = Path(cache) if cache else None
    data = make_synthetic(root / "synthetic_small" if root else tmp_path_factory.mktemp("synthetic_small"), 400, 100,
                          256, shared_dir / "data" / "images")
    work = root / "train_small" if root else tmp_path_factory.mktemp("train_small")
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(work / "small.py", data, **SMALL_TRAINING)
    run = run_train(config, work / "run")
    if run.returncode != 0:
        pytest.fail(f"training the synthetic model failed:\n{run.stderr[-4000:]}")
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
