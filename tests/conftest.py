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
