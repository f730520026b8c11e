"""Inputs a detection service meets in the wild: each with what the service must do with it —
"error" (a clear per-request error), "answer" (correct detections) or "either"."""
from __future__ import annotations

import io

import cv2
import numpy as np

from damo_yolo.data.preprocess import decode_image


def encode(image, ext=".jpg"):
    return cv2.imencode(ext, image)[1].tobytes()


def bad_inputs(photo: bytes):
    from PIL import Image
    rgb = cv2.cvtColor(decode_image(photo), cv2.COLOR_BGR2RGB)
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(rgb).save(rotated, format="JPEG", exif=exif.tobytes())
    alpha = np.dstack([decode_image(photo), np.full(decode_image(photo).shape[:2], 128, np.uint8)])
    return {
        "not an image": (b"this is plain text, not a picture", "error"),
        "truncated JPEG": (photo[: len(photo) // 2], "error"),
        "zero bytes": (b"", "error"),
        "corrupt JPEG body": (photo[:200] + bytes(range(256)) * 20 + b"\xff\xd9", "either"),
        "1x1": (encode(np.full((1, 1, 3), 200, np.uint8)), "answer"),
        "12000x12000": (encode(np.full((12000, 12000, 3), 90, np.uint8)), "answer"),
        "grayscale": (encode(cv2.cvtColor(decode_image(photo), cv2.COLOR_BGR2GRAY)), "answer"),
        "PNG with alpha": (encode(alpha, ".png"), "answer"),
        "16-bit PNG": (encode(decode_image(photo).astype(np.uint16) * 257, ".png"), "answer"),
        "CMYK JPEG": (cmyk.getvalue(), "answer"),
        "EXIF-rotated": (rotated.getvalue(), "answer"),
    }
