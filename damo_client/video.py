"""Video files through the server: frames decoded with PyAV, sent as JPEG with ``in_flight`` requests outstanding
(the server batches them), answers put back in frame order, track IDs added in that order (damo_client.tracking),
and what people keep of a run: the annotated video at the source's frame rate, JSON Lines per frame, MOTChallenge
text, and a summary (frames, frames/s, latency p50/p99).

    from damo_client.video import detect_video
    summary = detect_video("clip.mp4", url="localhost:8001", protocol="grpc", track=True, save_dir="out")
    print(summary.line())   # frames, frames/s, latency p50/p99; out/clip.mp4, clip.jsonl, clip.mot.txt
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncGenerator, Callable, Iterator, Optional, Union

import numpy as np

from damo_client.results import Detection

if TYPE_CHECKING:
    from damo_client.client import AsyncDamoClient

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".ts")
# how frames travel: decoded pixels (the CPU target's PIXELS input: no JPEG encode in the client nor decode in the
# server, ten times the bytes) or JPEG; auto: pixels to a server on this host that takes them, JPEG otherwise
FRAME_FORMATS = ("auto", "raw", "jpeg")
IN_FLIGHT = 8  # requests outstanding: the server's max batch, so its dynamic batcher can fill a batch
JPEG_QUALITY = 95  # frames sent as JPEG: a tenth of PNG's bytes, below the detector's sensitivity at this quality


def is_video(path: Union[str, Path]) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class Frame:
    index: int  # from 0, in decoding order
    timestamp: float  # seconds from the stream's start
    image: np.ndarray  # BGR uint8


@dataclass
class FrameResult:
    frame: Frame
    detections: list  # Detection, or TrackedDetection with --track
    latency_ms: float  # request sent → answer received


class VideoError(ValueError):
    """A video that cannot be opened or decoded (the file named)."""


def read_frames(path: Union[str, Path]) -> tuple[float, Iterator[Frame]]:
    """(frames per second, the frames in order) of a video file, decoded by PyAV (FFmpeg). Timestamps count
    from the first frame (a transport stream's clock starts anywhere)."""
    import av
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: not a video FFmpeg can open ({exc})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: holds no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # FFmpeg's frame threads
    fps = float(stream.average_rate or stream.guessed_rate or 25)

    def frames() -> Iterator[Frame]:
        start = None
        try:
            for index, decoded in enumerate(container.decode(stream)):
                if decoded.time is None:
                    timestamp = index / fps
                else:
                    start = decoded.time if start is None else start
                    timestamp = float(decoded.time - start)
                yield Frame(index, timestamp, decoded.to_ndarray(format="bgr24"))
        except av.FFmpegError as exc:
            raise VideoError(f"{path}: decoding stopped ({exc})") from None
        finally:
            container.close()

    return fps, frames()


def frame_count(path: Union[str, Path]) -> Optional[int]:
    """The frames a video's header announces (None when it does not say)."""
    import av
    try:
        with av.open(str(path)) as container:
            return int(container.streams.video[0].frames) or None
    except (av.FFmpegError, IndexError):
        return None


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    import cv2
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise VideoError(f"OpenCV could not encode a frame of shape {image.shape} as JPEG")
    return buffer.tobytes()


def is_local(url: str) -> bool:
    """Whether a server address is on this host (a loopback name or address)."""
    import ipaddress
    host = url.split("://", 1)[-1].rsplit("@", 1)[-1]
    host = host[1:host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def frame_encoder(client: "AsyncDamoClient", frame_format: str = "auto") -> tuple[str, Callable[[np.ndarray], Any]]:
    """(the format chosen, what turns a BGR frame into what is sent) for a connected client: ``raw`` sends the
    array (PIXELS), ``jpeg`` JPEG bytes; ``auto`` is raw to a server on this host that takes PIXELS (measured
    faster there: perf/results/video.md), JPEG otherwise (a tenth of the bytes on a network)."""
    if frame_format not in FRAME_FORMATS:
        raise ValueError(f"unknown frame format {frame_format!r}: choose {', '.join(FRAME_FORMATS)}")
    if frame_format == "raw" and not client.takes_pixels:
        raise VideoError(f"model {client.model!r} takes no decoded pixels (PIXELS: the CPU target's input): send "
                         f"frames as jpeg")
    if frame_format == "raw" or (frame_format == "auto" and client.takes_pixels and is_local(client.url)):
        return "raw", _as_is
    return "jpeg", encode_jpeg


async def _in_order(client: "AsyncDamoClient", frames: Iterator[Frame], in_flight: int,
                    score_threshold: Optional[float], iou_threshold: Optional[float],
                    encode: Callable[[np.ndarray], Any] = encode_jpeg) -> AsyncGenerator[FrameResult, None]:
    """FrameResults in frame order, with ``in_flight`` requests outstanding whenever frames remain: an answer
    that comes back before an earlier frame's frees its slot at once and waits for that frame (at most
    ``4 * in_flight`` answers held). Each frame is sent as ``encode`` makes it. While every slot is taken the next
    frames (up to ``in_flight``) are decoded and encoded ahead, so that slots freed together by a batch's answers
    are refilled at once and the server's batcher sees full batches (measured: the server spends 1-2 ms less per
    frame). Decoding and encoding stay on the event loop's thread: moving them to threads was measured to cost
    more CPU per frame (4-6 ms against 2.5-3.4) on a host whose cores the server keeps busy."""
    pending: dict[int, asyncio.Task] = {}  # sent and not yet given out, answered or not
    ready: deque = deque()  # (frame, payload) decoded and encoded ahead, waiting for a free slot
    frames = iter(frames)
    exhausted, next_index, running = False, 0, 0
    answered = asyncio.Event()

    def finished(task: asyncio.Task) -> None:
        nonlocal running
        running -= 1
        answered.set()

    def decode_next() -> Optional[tuple[Frame, Any]]:
        """The source's next frame and its payload; None once the source is exhausted."""
        nonlocal exhausted
        frame = None if exhausted else next(frames, None)
        if frame is None:
            exhausted = True
            return None
        return frame, encode(frame.image)

    def take() -> Optional[tuple[Frame, Any]]:
        return ready.popleft() if ready else decode_next()

    async def one(frame: Frame, payload: Any) -> FrameResult:
        start = time.perf_counter()
        detections = await client.detect(payload, score_threshold, iou_threshold)
        return FrameResult(frame, detections, (time.perf_counter() - start) * 1e3)

    try:
        while True:
            while running < in_flight and len(pending) < 4 * in_flight:
                item = take()
                if item is None:
                    break
                task = asyncio.ensure_future(one(*item))
                task.add_done_callback(finished)
                pending[item[0].index] = task
                running += 1
            head = pending.get(next_index)
            if head is None:
                return
            if head.done():
                yield pending.pop(next_index).result()
                next_index += 1
                continue
            answered.clear()  # (callbacks run only while this coroutine waits: none is missed)
            while not answered.is_set() and not exhausted and len(ready) < in_flight:
                item = decode_next()  # the next frames decoded while the server works: sent at once
                if item is not None:
                    ready.append(item)
                await asyncio.sleep(0)
            await answered.wait()
    finally:
        for task in pending.values():
            task.cancel()


def _as_is(image: np.ndarray) -> np.ndarray:
    return image


@dataclass
class Summary:
    frames: int = 0
    dropped: int = 0
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    frame_format: str = "jpeg"  # how the frames were sent (FRAME_FORMATS)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        p50, p99 = (np.percentile(self.latencies_ms, [50, 99]) if self.latencies_ms else (0.0, 0.0))
        return (f"{self.frames} frames, {self.dropped} dropped, {self.fps:.1f} frames/s, latency p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms, frames sent as {self.frame_format}")


def detection_record(d: Detection) -> dict:
    record = {"box": [round(float(v), 2) for v in d.box], "score": round(float(d.score), 5), "class_id": d.class_id,
              "class_name": d.class_name}
    if hasattr(d, "track_id"):
        record["track_id"] = d.track_id
    return record


class VideoOutputs:
    """What a run writes for one video into ``save_dir``: NAME.annotated.mp4 (the source's frame rate), NAME.jsonl
    (a line per frame) and NAME.mot.txt (MOTChallenge results: frame from 1, track id or -1, x, y, w, h, score, -1,
    -1, -1). Each file is written under a ``.partial`` name and renamed when complete; a run that fails removes
    its partial files."""

    def __init__(self, save_dir: Union[str, Path], name: str, fps: float, annotate: bool = True,
                 wall_clock: bool = False):
        self.dir = Path(save_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.paths = {"video": self.dir / f"{name}.annotated.mp4", "jsonl": self.dir / f"{name}.jsonl",
                      "mot": self.dir / f"{name}.mot.txt"}
        if not annotate:
            del self.paths["video"]
        self._partial = {k: p.with_name(p.name + ".partial") for k, p in self.paths.items()}
        self._jsonl = self._partial["jsonl"].open("w")
        self._mot = self._partial["mot"].open("w")
        self.fps = fps
        self.wall_clock = wall_clock  # a live stream's frames are shown at their timestamps (drops skip time)
        self._last_pts = -1
        self._t0: Optional[float] = None
        self._video: Any = None
        self._container: Any = None

    def _open_video(self, height: int, width: int) -> None:
        from fractions import Fraction

        import av
        # a live run's video is fragmented: no index held in memory for hours, and what is written stays readable
        options = {"movflags": "frag_keyframe+empty_moov"} if self.wall_clock else {}
        self._container = av.open(str(self._partial["video"]), "w", format="mp4", options=options)
        rate = Fraction(self.fps).limit_denominator(1001)
        self._video = self._container.add_stream("libx264", rate=rate, options={"crf": "20", "preset": "veryfast"})
        self._video.width, self._video.height, self._video.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        if self.wall_clock:
            self._video.codec_context.time_base = Fraction(1, 1000)  # pts in milliseconds

    def write(self, result: FrameResult) -> None:
        frame = result.frame
        self._jsonl.write(json.dumps({"frame": frame.index, "timestamp": round(frame.timestamp, 4),
                                      "detections": [detection_record(d) for d in result.detections]}) + "\n")
        for d in result.detections:
            x1, y1, x2, y2 = d.box
            self._mot.write(f"{frame.index + 1},{getattr(d, 'track_id', -1)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},"
                            f"{y2 - y1:.2f},{d.score:.5f},-1,-1,-1\n")
        if "video" in self.paths:
            import av

            from damo_client.draw import annotate
            if self._video is None:
                self._open_video(*frame.image.shape[:2])
            image = annotate(frame.image, result.detections)[:self._video.height, :self._video.width]
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            if self.wall_clock:  # shown at the frames' own times, from the first
                self._t0 = frame.timestamp if self._t0 is None else self._t0
                self._last_pts = max(self._last_pts + 1, int(round((frame.timestamp - self._t0) * 1000)))
                video_frame.pts = self._last_pts
            for packet in self._video.encode(video_frame):
                self._container.mux(packet)

    def close(self, complete: bool = True) -> list[Path]:
        """Finish the files: renamed to their names when ``complete``, removed otherwise."""
        self._jsonl.close()
        self._mot.close()
        try:
            if self._video is not None:
                for packet in self._video.encode():
                    self._container.mux(packet)
        finally:
            if self._container is not None:
                self._container.close()
        written = []
        for key, path in self.paths.items():
            partial = self._partial[key]
            if complete and partial.exists():
                partial.replace(path)
                written.append(path)
            else:
                partial.unlink(missing_ok=True)
        return written


async def detect_video_async(client: "AsyncDamoClient", path: Union[str, Path], score_threshold: Optional[float] = None,
                             iou_threshold: Optional[float] = None, track: bool = False,
                             save_dir: Union[str, Path, None] = None, in_flight: int = IN_FLIGHT,
                             on_frame: Callable[[FrameResult], None] = lambda result: None,
                             annotate: bool = True, frame_format: str = "auto") -> Summary:
    """Every frame of the video ``path`` through ``client`` (an AsyncDamoClient), in frame order, sent as
    ``frame_format`` (FRAME_FORMATS) says; with ``save_dir``, the outputs VideoOutputs writes. ``on_frame`` sees
    each result (a progress bar)."""
    await client.connect()
    chosen, encode = frame_encoder(client, frame_format)
    fps, frames = read_frames(path)
    tracker = None
    if track:
        from damo_client.tracking import Tracker
        tracker = Tracker()
    summary, start, outputs = Summary(frame_format=chosen), time.perf_counter(), None
    import concurrent.futures
    loop = asyncio.get_running_loop()
    writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="damo-write")  # in order, off the loop
    writes: deque = deque()
    try:
        if save_dir is not None:
            outputs = VideoOutputs(save_dir, Path(path).stem, fps, annotate)
        ordered_results = _in_order(client, frames, in_flight, score_threshold, iou_threshold, encode)
        async with contextlib.aclosing(ordered_results) as ordered:
            async for result in ordered:
                if tracker is not None:
                    result.detections = tracker.update(result.detections)
                if outputs is not None:
                    writes.append(loop.run_in_executor(writer, outputs.write, result))
                    while writes and (writes[0].done() or len(writes) > 2 * in_flight):
                        await writes.popleft()  # a write's error surfaces here
                summary.frames += 1
                summary.latencies_ms.append(result.latency_ms)
                on_frame(result)
        while writes:
            await writes.popleft()
    except BaseException:
        await asyncio.gather(*writes, return_exceptions=True)  # the writer is idle before the files are removed
        if outputs is not None:
            with contextlib.suppress(Exception):  # the run's own error is the one to report
                outputs.close(complete=False)
        raise
    finally:
        writer.shutdown(wait=False)
    summary.seconds = time.perf_counter() - start
    if outputs is not None:
        summary.outputs = await asyncio.to_thread(outputs.close, True)
    return summary


def detect_video(path: Union[str, Path], url: Optional[str] = None, protocol: str = "grpc",
                 model: str = "damo_yolo", **options: Any) -> Summary:
    """``detect_video_async`` with its own AsyncDamoClient (``url``, ``protocol``, ``model``)."""
    from damo_client.client import AsyncDamoClient

    async def run() -> Summary:
        async with AsyncDamoClient(url, protocol, model) as client:
            return await detect_video_async(client, path, **options)

    return asyncio.run(run())
