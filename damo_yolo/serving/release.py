"""Which damo_yolo release exported a model repository, and whether this one may serve it."""
from __future__ import annotations

import damo_yolo

VERSION_PARAMETER = "damo_yolo_version"  # written by export into every python-backend model's config


def release(version: str) -> tuple:
    """(major, minor): versions that agree on it read the same repositories (the patch number never matters)."""
    return tuple(int(part) for part in version.split(".")[:2])


def check_version(exported: str, installed: str = damo_yolo.__version__) -> None:
    """Refuse to serve a repository whose models were exported for another damo_yolo release."""
    if exported and release(exported) != release(installed):
        raise RuntimeError(f"this model repository was exported by damo_yolo {exported}, but damo_yolo {installed} "
                           f"is installed, whose models may read it differently: re-export the checkpoint with "
                           f"this damo_yolo (damo-export CHECKPOINT --out REPO --force), or install "
                           f"damo-yolo=={'.'.join(map(str, release(exported)))}.*")
