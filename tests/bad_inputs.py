"""The bad-input corpus (files in tests/data/bad_inputs, described in its manifest.json, made by its
make_corpus.py) plus a huge image made on the fly, each with what the service must do with it:
"error" (a clear per-request error), "answer" (correct detections) or "either"."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

CORPUS = Path(__file__).resolve().parent / "data" / "bad_inputs"


def encode(image, ext=".jpg"):
    return cv2.imencode(ext, image)[1].tobytes()


def corpus(huge: bool = True) -> dict[str, tuple[bytes, str]]:
    """name → (bytes, expected outcome)."""
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    items = {name: ((CORPUS / name).read_bytes(), entry["expect"]) for name, entry in manifest.items()}
    if huge:  # 144 megapixels: decoded and resized, not refused (kept out of git: made here in a second)
        items["huge_12000x12000.jpg"] = (encode(np.full((12000, 12000, 3), 90, np.uint8)), "answer")
    return items
