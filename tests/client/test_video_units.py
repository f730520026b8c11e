"""The video and stream SDK's local pieces: answers put back in frame order whatever order they come in, with the
in-flight bound kept, a failed frame's error raised and the rest cancelled; the latest-frame slot; names, URLs and
the frame format chosen."""
from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from damo_client.errors import InferenceError
from damo_client.video import Frame


class ShuffledAnswers:
    """A client whose answers take random times (so they come back out of order), counting what is in flight:
    what the ordering is tested against, not a server."""

    def __init__(self, fail_at: int = -1):
        self.in_flight = self.most = 0
        self.fail_at = fail_at
        self.cancelled = 0

    async def detect(self, image, score_threshold=None, iou_threshold=None):
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(random.uniform(0, 0.01))
            if int(image[0, 0, 0]) == self.fail_at:
                raise InferenceError(f"frame {self.fail_at} refused")
            return [int(image[0, 0, 0])]
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1


def _frames(count: int):
    return (Frame(i, i / 25, np.full((2, 2, 3), i, np.uint8)) for i in range(count))


def _collect(client, count: int, in_flight: int) -> list:
    from damo_client.video import _as_is, _in_order

    async def run():
        return [r async for r in _in_order(client, _frames(count), in_flight, None, None, _as_is)]

    return asyncio.run(run())


def test_answers_come_back_in_frame_order_within_the_in_flight_bound():
    random.seed(0)
    client = ShuffledAnswers()
    results = _collect(client, 200, 8)
    assert [r.frame.index for r in results] == list(range(200))
    assert [r.detections for r in results] == [[i % 256] for i in range(200)]  # each frame its own answer
    assert client.most == 8 and all(r.latency_ms >= 0 for r in results)


def test_a_refused_frame_raises_its_error_and_cancels_the_rest():
    random.seed(1)
    client = ShuffledAnswers(fail_at=30)
    with pytest.raises(InferenceError, match="frame 30 refused"):
        _collect(client, 200, 8)
    assert client.in_flight == 0  # nothing left running


def test_the_latest_frame_slot_keeps_one_and_counts_the_rest():
    from damo_client.stream import Decoded, LatestFrame
    woken = []
    slot = LatestFrame(lambda: woken.append(1))
    assert slot.take() is None and not slot.fresh
    for i in range(5):
        slot.put(Decoded(i, i / 25, None))
    assert slot.fresh and slot.take().index == 4 and slot.dropped == 4 and len(woken) == 5
    assert slot.take() is None


def test_stream_names_and_what_is_shown_keep_passwords_out():
    from damo_client.stream import display_name, is_stream, stream_name
    assert is_stream("rtsp://cam/live") and is_stream("udp://0.0.0.0:5000") and is_stream("/dev/video0")
    assert not is_stream("clip.mp4") and not is_stream("/dev/sda")
    assert display_name("rtsp://admin:secret@cam1:554/live") == "rtsp://admin:***@cam1:554/live"
    assert stream_name("rtsp://admin:secret@cam1:554/live") == "rtsp_cam1_554_live"
    assert stream_name("udp://127.0.0.1:5000") == "udp_127.0.0.1_5000"


@pytest.mark.parametrize("url, local", [("localhost:8001", True), ("127.0.0.1:8000", True), ("[::1]:8001", True),
                                        ("http://127.0.0.2:8000", True), ("triton:8001", False),
                                        ("10.0.0.5:8001", False), ("dns:///damo-yolo-headless.ns.svc:8001", False)])
def test_frames_go_raw_only_to_a_server_on_this_host(url, local):
    from damo_client.video import frame_encoder, is_local

    class Connected:
        takes_pixels, model = True, "damo_yolo"

    Connected.url = url
    assert is_local(url) == local
    assert frame_encoder(Connected(), "auto")[0] == ("raw" if local else "jpeg")
    assert frame_encoder(Connected(), "jpeg")[0] == "jpeg"
    Connected.takes_pixels = False  # a GPU-target model
    assert frame_encoder(Connected(), "auto")[0] == "jpeg"
    with pytest.raises(ValueError, match="takes no decoded pixels"):
        frame_encoder(Connected(), "raw")
