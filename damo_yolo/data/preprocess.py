"""Inference preprocessing shared by evaluation, export parity checks and the CPU serving backend.

The reference test transform: decode to RGB, stretch to the model input (cv2 INTER_LINEAR, separate x/y
scales), float32 in 0–255, no mean/std. ``letterbox`` keeps the aspect ratio instead: the resized image sits
at the top-left, padded bottom/right with ``pad_value`` (the reference's keep_ratio=True inference mode).
numpy and OpenCV decode; Pillow reads an image's size from its header before anything is decoded.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np

from damo_yolo.contract import MAX_PIXELS  # noqa: F401 (the default limit, re-exported)

RESIZE_MODES = ("stretch", "letterbox")


class ImageDecodeError(ValueError):
    """Bytes that are not a usable JPEG or PNG image (the message says why)."""


def jpeg_length(buf: np.ndarray) -> int:
    """Bytes up to and including the end-of-image marker that ends a JPEG's last scan; ImageDecodeError when
    the data ends first (truncated). Data after that marker (the video of a phone's "motion photo", a
    camera's trailer) is not part of the image.

    Segments are skipped by their length fields, so marker-like bytes inside them (an EXIF thumbnail's own
    end marker) are never mistaken for the end; in entropy-coded data every 0xFF is a marker, a stuffed
    0xFF00 or a restart marker. One vectorised pass finds the candidates: O(bytes), whatever the content.
    """
    n = buf.size
    ff = np.flatnonzero(buf[:-1] == 0xFF)
    following = buf[ff + 1]
    markers = ff[(following != 0x00) & (following != 0xFF) & ((following < 0xD0) | (following > 0xD7))]
    i = 2  # after SOI
    while i + 1 < n:
        if buf[i] != 0xFF:
            raise ImageDecodeError(f"corrupt JPEG: no marker at byte {i} ({n} bytes)")
        marker = int(buf[i + 1])
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker == 0xD9:
            return i + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
            continue
        if i + 3 >= n:
            break
        i += 2 + (int(buf[i + 2]) << 8 | int(buf[i + 3]))
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            k = int(np.searchsorted(markers, i))
            if k == markers.size:
                break
            i = int(markers[k])
    raise ImageDecodeError(f"truncated JPEG: the data ends before the end-of-image marker ({n} bytes)")


def check_encoded(data: bytes) -> tuple[np.ndarray, str]:
    """The container checks every decoder here relies on: non-empty, JPEG or PNG, JPEG not truncated.

    Returns the image's bytes as a uint8 array (a JPEG without anything after its end-of-image marker)
    and the format name. A truncated JPEG is refused (decoders would return a partly grey image).
    """
    if data is None or len(data) == 0:
        raise ImageDecodeError("empty input (0 bytes): expected an encoded JPEG or PNG image")
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    is_jpeg = buf[:3].tobytes() == b"\xff\xd8\xff"
    is_png = buf[:8].tobytes() == b"\x89PNG\r\n\x1a\n"
    if not (is_jpeg or is_png):
        raise ImageDecodeError(f"not a JPEG or PNG image (starts with {buf[:8].tobytes()!r}, {buf.size} bytes)")
    if is_jpeg:
        buf = buf[:jpeg_length(buf)]
    return buf, "JPEG" if is_jpeg else "PNG"


def header_size(buf: np.ndarray) -> tuple[int, int]:
    """(height, width) of a JPEG/PNG from its header, without decoding a pixel (Pillow opens images lazily;
    its own decompression-bomb limit is left to ``check_pixels``)."""
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None  # the limit that applies is the caller's (check_pixels), not Pillow's 179 MP
    try:
        with Image.open(io.BytesIO(buf.tobytes())) as image:
            width, height = image.size
    except Exception as exc:  # a header Pillow cannot read: the decoder says why
        raise ImageDecodeError(f"cannot read the image header: {exc}") from exc
    return int(height), int(width)


def check_image(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str]:
    """``check_encoded``, and an image of more than ``max_pixels`` pixels refused from its header, before any
    decoder runs (0: no limit but the decoder's own, OpenCV's 2^30)."""
    buf, kind = check_encoded(data)
    if max_pixels:
        check_pixels(*header_size(buf), max_pixels)
    return buf, kind


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded JPEG/PNG bytes → an H×W×3 uint8 BGR image, as every stage of the project reads images.

    OpenCV's colour decoding: EXIF orientation applied, grayscale and CMYK converted, alpha dropped,
    16-bit channels scaled to 8 bits. Too large an image is refused before decoding (``check_image``).
    """
    buf, kind = check_image(data, max_pixels)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageDecodeError(f"cannot decode the {kind} image: {exc}") from exc
    if image is None:
        raise ImageDecodeError(f"cannot decode the {kind} image (corrupt or truncated, {buf.size} bytes)")
    return image


def check_pixels(height: int, width: int, max_pixels: int = MAX_PIXELS) -> None:
    if max_pixels and height * width > max_pixels:
        raise ImageDecodeError(f"image of {width}x{height} pixels ({height * width / 1e6:.0f} MP) exceeds the limit "
                               f"of {max_pixels / 1e6:g} MP")


@dataclass(frozen=True)
class ResizeInfo:
    """How an original image maps onto the network input: input = original · scale (+ no offset)."""

    orig_h: int
    orig_w: int
    scale_y: float
    scale_x: float

    def to_original(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """Boxes (x1, y1, x2, y2) in input pixels → original pixels, clipped to the image unless ``clip`` is
        False (the reference's evaluation leaves them as predicted)."""
        out = np.asarray(boxes, dtype=np.float32).copy()
        out[..., 0::2] /= self.scale_x
        out[..., 1::2] /= self.scale_y
        if clip:
            out[..., 0::2] = np.clip(out[..., 0::2], 0, self.orig_w)
            out[..., 1::2] = np.clip(out[..., 1::2], 0, self.orig_h)
        return out


def resize_image(rgb: np.ndarray, size: tuple[int, int], mode: str = "stretch",
                 pad_value: float = 0.0) -> tuple[np.ndarray, ResizeInfo]:
    """Resize an HxWx3 uint8 image to ``size`` = (H, W) as the model was trained; returns HWC uint8/float."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; known: {', '.join(RESIZE_MODES)}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    th, tw = size
    if mode == "stretch":
        out = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_LINEAR)
        return out, ResizeInfo(h, w, th / h, tw / w)
    r = min(th / h, tw / w)
    nh, nw = max(1, int(h * r)), max(1, int(w * r))
    canvas = np.full((th, tw, 3), pad_value, dtype=rgb.dtype)
    canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, ResizeInfo(h, w, nh / h, nw / w)


def preprocess(bgr: np.ndarray, size: tuple[int, int], mode: str = "stretch",
               pad_value: float = 0.0) -> tuple[np.ndarray, ResizeInfo]:
    """An OpenCV (BGR) image → a float32 CHW RGB tensor of the model input size, and the mapping back."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    resized, info = resize_image(rgb, size, mode, pad_value)
    return np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32), info
