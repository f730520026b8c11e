"""Reading encoded images: a JPEG ends at the end-of-image marker of its last scan, not at the end of the
file; one cut short is refused, whatever marker-like bytes it holds elsewhere."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from bad_inputs import CORPUS

from damo_yolo.data.preprocess import ImageDecodeError, check_encoded, decode_image


@pytest.fixture(scope="module")
def photo_jpeg(sample_images) -> bytes:
    return sample_images[0].read_bytes()


def _with_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """``jpeg`` with an APP1 (EXIF-style) segment holding a whole second JPEG, as cameras store thumbnails."""
    payload = b"Exif\x00\x00" + thumbnail
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_data_after_the_end_of_image_is_not_the_image(photo_jpeg):
    want = decode_image(photo_jpeg)
    motion = (CORPUS / "motion_photo.jpg").read_bytes()
    buf, kind = check_encoded(motion)
    assert kind == "JPEG" and buf[-2:].tobytes() == b"\xff\xd9" and len(buf) < len(motion) - 4000
    assert decode_image(motion).shape == (120, 160, 3)
    np.testing.assert_array_equal(decode_image(photo_jpeg + motion[len(buf):]), want)


def test_progressive_and_restart_marker_jpegs_are_whole(photo_jpeg):
    image = decode_image(photo_jpeg)
    for params in ([cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 4]):
        data = cv2.imencode(".jpg", image, params)[1].tobytes()
        assert check_encoded(data)[0].size == len(data)


def test_a_cut_jpeg_is_refused_even_with_an_end_marker_inside(photo_jpeg):
    thumbnail = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes()
    whole = _with_thumbnail(photo_jpeg, thumbnail)
    assert decode_image(whole).shape == decode_image(photo_jpeg).shape
    for cut in (len(whole) - 2, len(whole) // 2, len(thumbnail) + 40):
        with pytest.raises(ImageDecodeError, match="truncated JPEG"):
            check_encoded(whole[:cut])
    with pytest.raises(ImageDecodeError, match="truncated JPEG"):  # cut, then padded with marker-like bytes
        check_encoded(photo_jpeg[: len(photo_jpeg) // 2] + b"\x00" * 100 + b"\xff\x00" * 10)
