"""Live streams through the server: RTSP, HTTP(S)/HLS, UDP/MPEG-TS and webcams (``/dev/video*``), several at once
from one process, each decoded by PyAV (FFmpeg) in its own thread.

- **Latest frame.** A stream's reader keeps only its newest decoded frame; the sender takes it when an in-flight
  slot is free. A frame replaced before it was taken is dropped and counted, never queued: when the server is
  behind, the answers skip frames instead of falling further behind, and memory stays bounded.
- **Fair share.** The streams share ``in_flight`` requests; a free slot goes to the stream with a fresh frame and
  the fewest requests outstanding (then the one that waited longest), so a fast stream cannot starve a slow one.
- **Reconnect.** A stream that fails or goes silent (``read_timeout``) is reported lost and opened again with
  exponential backoff and jitter (tenacity), for ever or ``reconnect_attempts`` times; the other streams go on.
- Answers come back in each stream's frame order; ``--track`` IDs per stream; outputs as for video files
  (damo_client.video.VideoOutputs), the annotated video timed by the wall clock.

    from damo_client.stream import detect_streams
    summaries = detect_streams(["rtsp://cam1/live", "udp://0.0.0.0:5000"], url="localhost:8001", seconds=60)
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union

import numpy as np

from damo_client.errors import DamoClientError, ServerUnavailable
from damo_client.video import Frame, FrameResult, VideoOutputs, encode_jpeg

if TYPE_CHECKING:
    from damo_client.client import AsyncDamoClient

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "rtp://", "srt://", "tcp://")
OPEN_TIMEOUT = 10.0  # seconds to open a stream (connect, probe)
READ_TIMEOUT = 5.0  # seconds without a packet: the stream is lost
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 10.0  # seconds between attempts to reopen: doubling, with jitter, up to this
IN_FLIGHT = 8


def is_stream(source: Union[str, Path]) -> bool:
    """A live source: a network URL or a capture device (/dev/video*)."""
    text = str(source)
    return text.lower().startswith(STREAM_SCHEMES) or re.fullmatch(r"/dev/video\d+", text) is not None


def stream_name(source: str) -> str:
    """A file name for a source's outputs: ``udp://127.0.0.1:5000`` → ``udp_127.0.0.1_5000``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("_") or "stream"


def open_options(source: str) -> tuple[Optional[str], dict]:
    """(the demuxer PyAV should use, FFmpeg options) for a source."""
    if source.startswith("/dev/video"):
        return "v4l2", {}
    if source.lower().startswith(("rtsp://", "rtsps://")):
        return None, {"rtsp_transport": "tcp"}  # no packet loss on a lossy path
    if source.lower().startswith("udp://"):
        return "mpegts", {"overrun_nonfatal": "1", "fifo_size": "50000", "probesize": "500000",
                          "analyzeduration": "1000000"}
    return None, {}


class LatestFrame:
    """One slot, written by a reader thread and taken by the sender: the newest frame only."""

    def __init__(self, notify: Callable[[], None]):
        self._lock = threading.Lock()
        self._frame: Optional[Frame] = None
        self._notify = notify
        self.dropped = 0  # frames replaced before they were taken

    def put(self, frame: Frame) -> None:
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
        self._notify()

    def take(self) -> Optional[Frame]:
        with self._lock:
            frame, self._frame = self._frame, None
        return frame

    @property
    def fresh(self) -> bool:
        return self._frame is not None


@dataclass
class StreamSummary:
    source: str
    frames: int = 0  # answered
    dropped: int = 0  # decoded but never sent (a newer frame came first)
    reconnects: int = 0
    failed: int = 0  # frames the server refused
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list)
    events: list = field(default_factory=list)  # (seconds from start, what happened)
    outputs: list = field(default_factory=list)
    error: Optional[str] = None  # why it was given up

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        p50, p99 = (np.percentile(self.latencies_ms, [50, 99]) if self.latencies_ms else (0.0, 0.0))
        return (f"{self.frames} frames, {self.dropped} dropped, " + (f"{self.failed} refused, " if self.failed else "")
                + f"{self.reconnects} reconnect(s), {self.fps:.1f} "
                f"frames/s, latency p50 {p50:.1f} ms, p99 {p99:.1f} ms" + (f"; gave up: {self.error}"
                                                                          if self.error else ""))


class StreamReader(threading.Thread):
    """Decodes one live source into a LatestFrame, reopening it when lost."""

    def __init__(self, source: str, slot: LatestFrame, summary: StreamSummary, started: float,
                 open_timeout: float = OPEN_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 reconnect_attempts: Optional[int] = None, on_event: Callable[[str, str], None] = lambda s, e: None):
        super().__init__(name=f"stream {source}", daemon=True)
        self.source, self.slot, self.summary, self.started = source, slot, summary, started
        self.timeouts = (open_timeout, read_timeout)
        self.reconnect_attempts = reconnect_attempts
        self.on_event = on_event
        self.stopping = threading.Event()
        self.given_up = threading.Event()
        self.fps: Optional[float] = None
        self._index = 0

    def _event(self, what: str) -> None:
        self.summary.events.append((round(time.monotonic() - self.started, 2), what))
        self.on_event(self.source, what)

    def _open(self) -> Any:
        import av
        if self.stopping.is_set():
            raise ValueError("stopping")  # ends the attempts (their stop condition is the same event)
        demuxer, options = open_options(self.source)
        container = av.open(self.source, format=demuxer, options=options, timeout=self.timeouts)
        if not container.streams.video:
            container.close()
            raise ValueError("it holds no video stream")
        return container

    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)  # a stop interrupts the wait

    def _open_with_backoff(self) -> Optional[Any]:
        """The opened container, or None when stopping or out of attempts (then ``given_up`` is set)."""
        import av
        import tenacity
        attempts = (tenacity.stop_after_attempt(self.reconnect_attempts + 1) if self.reconnect_attempts is not None
                    else tenacity.stop_never)
        retrying = tenacity.Retrying(
            stop=attempts | tenacity.stop_when_event_set(self.stopping),
            wait=tenacity.wait_exponential_jitter(initial=BACKOFF_INITIAL, max=BACKOFF_MAX),
            retry=tenacity.retry_if_exception_type((av.FFmpegError, OSError, ValueError)),
            sleep=self._sleep,
            before_sleep=lambda state: self._event(
                f"cannot open ({_reason(state.outcome.exception() if state.outcome else None)}); "
                f"retrying in {state.upcoming_sleep:.1f} s"),
            reraise=True)
        try:
            return retrying(self._open)
        except (av.FFmpegError, OSError, ValueError) as exc:
            if not self.stopping.is_set():
                self.summary.error = _reason(exc)
                self._event(f"given up: {self.summary.error}")
            self.given_up.set()
            return None

    def run(self) -> None:
        import av
        first = True
        while not self.stopping.is_set():
            container = self._open_with_backoff()
            if container is None:
                return
            if not first:
                self.summary.reconnects += 1
            self._event("opened" if first else "reconnected")
            first = False
            try:
                stream = container.streams.video[0]
                self.fps = self.fps or float(stream.average_rate or stream.guessed_rate or 25)
                for decoded in container.decode(stream):
                    if self.stopping.is_set():
                        return
                    self.slot.put(Frame(self._index, time.monotonic() - self.started,
                                        decoded.to_ndarray(format="bgr24")))
                    self._index += 1
                reason = "the stream ended"
            except (av.FFmpegError, OSError) as exc:
                reason = _reason(exc)
            finally:
                container.close()
            if not self.stopping.is_set():
                self._event(f"lost ({reason})")


def _reason(exc: Optional[BaseException]) -> str:
    import av
    if isinstance(exc, av.ExitError):
        return "no data within the timeout"
    text = str(exc).splitlines()[0] if exc is not None and str(exc) else type(exc).__name__
    return re.sub(r"^\[Errno -?\d+\] ", "", text)


@dataclass
class _Stream:
    source: str
    slot: LatestFrame
    summary: StreamSummary
    reader: StreamReader
    pending: deque = field(default_factory=deque)  # (Frame, task) in send order
    last_sent: float = 0.0
    tracker: Any = None
    outputs: Optional[VideoOutputs] = None


async def detect_streams_async(client: "AsyncDamoClient", sources: Iterable[str],
                               score_threshold: Optional[float] = None, iou_threshold: Optional[float] = None,
                               track: bool = False, save_dir: Union[str, Path, None] = None,
                               in_flight: int = IN_FLIGHT, seconds: Optional[float] = None,
                               open_timeout: float = OPEN_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                               reconnect_attempts: Optional[int] = None,
                               on_frame: Callable[[StreamSummary, FrameResult], None] = lambda summary, result: None,
                               on_event: Callable[[str, str], None] = lambda source, event: None,
                               annotate: bool = True) -> list[StreamSummary]:
    """Detect in every live source at once until ``seconds`` pass, every source is given up, or the task is
    cancelled (Ctrl-C): the outputs hold what was answered in every case. ``on_frame`` sees each answer in its
    stream's frame order, with the stream's summary so far; ``on_event`` each stream's opened / lost /
    reconnected / given up / frame refused."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def notify() -> None:
        loop.call_soon_threadsafe(wake.set)

    def event(source: str, what: str) -> None:
        on_event(source, what)
        notify()  # a stream given up may end the run

    started = time.monotonic()
    streams: list[_Stream] = []
    for source in dict.fromkeys(sources):
        summary = StreamSummary(source)
        slot = LatestFrame(notify)
        reader = StreamReader(source, slot, summary, started, open_timeout, read_timeout, reconnect_attempts, event)
        streams.append(_Stream(source, slot, summary, reader))
        if track:
            from damo_client.tracking import Tracker
            streams[-1].tracker = Tracker()
    for stream in streams:
        stream.reader.start()

    async def one(frame: Frame) -> tuple[list, float]:
        start = time.perf_counter()
        detections = await client.detect(encode_jpeg(frame.image), score_threshold, iou_threshold)
        return detections, (time.perf_counter() - start) * 1e3

    def deliver(stream: _Stream) -> None:
        """The stream's answers that are back, in its frame order. A frame the server refused is counted and
        reported; the server out of reach ends the run (ServerUnavailable)."""
        while stream.pending and stream.pending[0][1].done():
            frame, task = stream.pending.popleft()
            if task.cancelled():
                continue
            exc = task.exception()
            if isinstance(exc, ServerUnavailable) or (exc is not None and not isinstance(exc, DamoClientError)):
                raise exc
            if exc is not None:
                stream.summary.failed += 1
                stream.reader._event(f"frame {frame.index} refused: {str(exc).splitlines()[0]}")
                continue
            detections, latency = task.result()
            if stream.tracker is not None:
                detections = stream.tracker.update(detections)
            result = FrameResult(frame, detections, latency)
            if save_dir is not None:
                if stream.outputs is None:
                    stream.outputs = VideoOutputs(save_dir, stream_name(stream.source), stream.reader.fps or 25.0,
                                                  annotate, wall_clock=True)
                stream.outputs.write(result)
            stream.summary.frames += 1
            stream.summary.dropped = stream.slot.dropped
            stream.summary.latencies_ms.append(latency)
            on_frame(stream.summary, result)

    deadline = None if seconds is None else started + seconds
    failed = False
    try:
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if all(s.reader.given_up.is_set() and not s.pending for s in streams):
                break
            wake.clear()
            outstanding = sum(len(s.pending) for s in streams)
            while outstanding < in_flight:  # fill the budget, the neediest stream first
                ready = [s for s in streams if s.slot.fresh]
                if not ready:
                    break
                stream = min(ready, key=lambda s: (len(s.pending), s.last_sent))
                frame = stream.slot.take()
                if frame is None:
                    continue
                stream.pending.append((frame, asyncio.ensure_future(one(frame))))
                stream.last_sent = time.monotonic()
                outstanding += 1
            tasks = [task for s in streams for _, task in s.pending]
            waiter = asyncio.ensure_future(wake.wait())
            timeout = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
            await asyncio.wait([*tasks, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            for stream in streams:
                deliver(stream)
    except asyncio.CancelledError:  # Ctrl-C: a live run's normal end
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
    except BaseException:
        failed = True
        raise
    finally:
        for stream in streams:
            stream.reader.stopping.set()
        if not failed:  # what is in flight is answered and written
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*(t for s in streams for _, t in s.pending),
                                                      return_exceptions=True), 10)
        for stream in streams:
            if not failed:
                with contextlib.suppress(Exception):
                    deliver(stream)
            for _, task in stream.pending:
                task.cancel()
            stream.summary.dropped = stream.slot.dropped + (1 if stream.slot.fresh else 0)
            stream.summary.seconds = time.monotonic() - started
            if stream.outputs is not None:  # a live run's outputs hold what was answered, whatever ended it
                stream.summary.outputs = stream.outputs.close(complete=True)
        for stream in streams:
            stream.reader.join(timeout=read_timeout + 1)
    return [s.summary for s in streams]


def detect_streams(sources: Iterable[str], url: Optional[str] = None, protocol: str = "grpc",
                   model: str = "damo_yolo", **options: Any) -> list[StreamSummary]:
    """``detect_streams_async`` with its own AsyncDamoClient (``url``, ``protocol``, ``model``)."""
    from damo_client.client import AsyncDamoClient

    async def run() -> list[StreamSummary]:
        async with AsyncDamoClient(url, protocol, model) as client:
            return await detect_streams_async(client, sources, **options)

    return asyncio.run(run())
