"""Writes the bad-input corpus beside this file (run once; the files are committed):

    python tests/data/bad_inputs/make_corpus.py ../shared/data/images/dog.jpg

Each file's expected outcome is in manifest.json: "error" (a clear per-request error), "answer"
(detections, boxes inside the image) or "either" (undecodable by some decoders, repaired by others).
Small on purpose: the photo is shrunk to 160 px first.
"""
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def motion_photo_video() -> bytes:
    """What a phone appends to a motion photo's JPEG: an MP4 (here its ftyp box and 4 KB of seeded bytes,
    which hold 0xFF 0xD8 and 0xFF 0xD9 pairs like real video data)."""
    body = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\xff\xd8\xff\xd9" + body


def main(photo_path: str) -> None:
    photo = cv2.imread(photo_path, cv2.IMREAD_COLOR)
    small = cv2.resize(photo, (160, int(160 * photo.shape[0] / photo.shape[1])), interpolation=cv2.INTER_AREA)
    jpeg = cv2.imencode(".jpg", small)[1].tobytes()
    png = cv2.imencode(".png", small)[1].tobytes()
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)

    def pil(image, fmt, **kw):
        buf = io.BytesIO()
        image.save(buf, format=fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    bad_crc = bytearray(png)
    bad_crc[29:33] = b"\x00\x00\x00\x00"  # the IHDR chunk's CRC
    files = {
        "text.txt": (b"this is plain text, not a picture\n", "error", "text"),
        "zero_bytes.jpg": (b"", "error", "an empty file"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "error", "a JPEG cut in half (no end-of-image marker)"),
        "corrupt_body.jpg": (jpeg[:200] + bytes(range(256)) * 8 + b"\xff\xd9", "either",
                             "a JPEG header followed by garbage and an end marker"),
        "header_only.jpg": (jpeg[:20] + b"\xff\xd9", "error", "JPEG markers and nothing between them"),
        "gif.gif": (pil(Image.fromarray(rgb), "GIF"), "error", "a GIF (only JPEG and PNG are accepted)"),
        "bitmap.bmp": (cv2.imencode(".bmp", small)[1].tobytes(), "error", "a BMP"),
        "webp.webp": (cv2.imencode(".webp", small)[1].tobytes(), "error", "a WebP"),
        "truncated.png": (png[: len(png) // 2], "error", "a PNG cut in half"),
        "bad_crc.png": (bytes(bad_crc), "either", "a PNG whose header checksum is wrong"),
        "alpha.png": (cv2.imencode(".png", np.dstack([small, np.full(small.shape[:2], 128, np.uint8)]))[1].tobytes(),
                      "answer", "PNG with an alpha channel"),
        "16bit.png": (cv2.imencode(".png", small.astype(np.uint16) * 257)[1].tobytes(), "answer", "16-bit PNG"),
        "palette.png": (pil(Image.fromarray(rgb).convert("P"), "PNG"), "answer", "indexed-colour PNG"),
        "grayscale.jpg": (cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))[1].tobytes(), "answer",
                          "grayscale JPEG"),
        "grayscale.png": (cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))[1].tobytes(), "answer",
                          "grayscale PNG"),
        "cmyk.jpg": (pil(Image.fromarray(rgb).convert("CMYK"), "JPEG"), "answer", "CMYK JPEG"),
        "exif_rotated.jpg": (pil(Image.fromarray(rgb), "JPEG", exif=exif.tobytes()), "answer",
                             "JPEG with EXIF orientation 6 (served upright: width and height swap)"),
        "progressive.jpg": (pil(Image.fromarray(rgb), "JPEG", progressive=True), "answer", "progressive JPEG"),
        "one_pixel.png": (cv2.imencode(".png", np.full((1, 1, 3), 200, np.uint8))[1].tobytes(), "answer", "1x1"),
        "sliver.jpg": (cv2.imencode(".jpg", np.full((3, 2000, 3), 90, np.uint8))[1].tobytes(), "answer",
                       "a 2000x3 sliver"),
        "motion_photo.jpg": (jpeg + motion_photo_video(), "answer",
                             "a phone's motion photo: a JPEG with a video appended after its end-of-image marker"),
    }
    manifest = {}
    for name, (data, expect, what) in files.items():
        (HERE / name).write_bytes(data)
        manifest[name] = {"expect": expect, "what": what}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
