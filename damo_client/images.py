"""Turning what a caller has into what the served model takes. Files and bytes are sent as they are (never
decoded and re-encoded); a numpy BGR array is sent as it is where the model takes decoded pixels (the CPU
target's PIXELS input), and encoded losslessly as PNG where it does not."""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterable, Union

import numpy as np

from damo_client.errors import ImageError

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, BinaryIO]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def to_bytes(image: ImageInput) -> bytes:
    """A path, encoded bytes, an H×W×3 (or H×W) uint8 BGR array, or a binary file object → encoded bytes."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{path}: cannot read it ({exc.strerror})") from exc
    elif isinstance(image, np.ndarray):
        data = encode_array(image)
    elif hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError("the file object must be opened in binary mode ('rb')")
        data = bytes(data)
    else:
        raise ImageError(f"cannot send a {type(image).__name__}: give a path, bytes, a numpy BGR array or a "
                         f"binary file object")
    if not data:
        named = f"{image}: " if isinstance(image, (str, os.PathLike)) else ""
        raise ImageError(f"{named}the image is empty (0 bytes)")
    return data


def is_bgr(image: object) -> bool:
    """A decoded colour image as OpenCV holds it: uint8 [H, W, 3], at least 1x1 (sent as PIXELS where taken)."""
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            and image.shape[0] > 0 and image.shape[1] > 0)


def encode_array(array: np.ndarray) -> bytes:
    import cv2
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageError(f"expected an HxWx3 uint8 BGR array, got {array.dtype} of shape {array.shape}")
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ImageError(f"OpenCV could not encode the array of shape {array.shape}")
    return buf.tobytes()


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, folders expanded to their JPEG/PNG files (sorted), globs (``**`` descending) to the
    JPEG/PNG files they match (sorted; one that matches none stays as given, to be reported missing)."""
    import glob
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        elif not p.exists() and any(c in str(p) for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            out.extend([m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_SUFFIXES] or [p])
        else:
            out.append(p)
    return out
