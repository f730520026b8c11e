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
from damo_client.video import Frame, FrameResult, VideoOutputs, frame_encoder

if TYPE_CHECKING:
    from damo_client.client import AsyncDamoClient

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "rtp://", "srt://", "tcp://")
OPEN_TIMEOUT = 10.0  # seconds to open a stream (connect, probe)
READ_TIMEOUT = 5.0  # seconds without a packet: the stream is lost
BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_JITTER = 0.5, 10.0, 0.5  # seconds between attempts: doubling, up to the max
HEALTHY_SECONDS = 5.0  # a connection that gave frames this long was a success: a loss after it starts afresh
LATENCY_WINDOW = 100_000  # latencies kept for a stream's p50/p99 (the last ones): memory bounded on a long run
EVENTS_KEPT = 1_000
IN_FLIGHT = 8


def is_stream(source: Union[str, Path]) -> bool:
    """A live source: a network URL or a capture device (/dev/video*)."""
    text = str(source)
    return text.lower().startswith(STREAM_SCHEMES) or re.fullmatch(r"/dev/video\d+", text) is not None


def display_name(source: str) -> str:
    """A source as it is shown and logged: a password in the URL is not (``rtsp://admin:***@cam/live``)."""
    from urllib.parse import urlsplit
    parts = urlsplit(source)
    if "@" not in parts.netloc:
        return source
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{parts.netloc.rsplit('@', 1)[1]}").geturl()


def stream_name(source: str) -> str:
    """A file name for a source's outputs, without its credentials: ``udp://127.0.0.1:5000`` →
    ``udp_127.0.0.1_5000``."""
    from urllib.parse import urlsplit
    parts = urlsplit(source)
    if "@" in parts.netloc:
        source = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
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


@dataclass(frozen=True)
class Decoded:
    """A decoded frame as the reader leaves it: converted to BGR only if it is sent (a dropped one never is)."""
    index: int
    timestamp: float  # seconds from the run's start
    frame: Any  # av.VideoFrame


class LatestFrame:
    """One slot, written by a reader thread and taken by the sender: the newest frame only."""

    def __init__(self, notify: Callable[[], None]):
        self._lock = threading.Lock()
        self._frame: Optional[Decoded] = None
        self._notify = notify
        self.dropped = 0  # frames replaced before they were taken

    def put(self, frame: Decoded) -> None:
        with self._lock:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
        self._notify()

    def take(self) -> Optional[Decoded]:
        with self._lock:
            frame, self._frame = self._frame, None
        return frame

    @property
    def fresh(self) -> bool:
        return self._frame is not None


@dataclass
class StreamSummary:
    source: str  # as shown (display_name)
    frames: int = 0  # answered
    dropped: int = 0  # decoded but never sent (a newer frame came first)
    reconnects: int = 0
    failed: int = 0  # frames the server refused
    seconds: float = 0.0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))  # the last ones
    events: deque = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))  # (seconds from start, what)
    outputs: list = field(default_factory=list)
    error: Optional[str] = None  # why it was given up

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        p50, p99 = (np.percentile(self.latencies_ms, [50, 99]) if self.latencies_ms else (0.0, 0.0))
        return (f"{self.frames} frames, {self.dropped} dropped, " + (f"{self.failed} refused, " if self.failed else "")
                + f"{self.reconnects} reconnect(s), {self.fps:.1f} frames/s, latency p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms" + (f"; gave up: {self.error}" if self.error else ""))


class StreamLost(Exception):
    """A connection that ended: ``healthy`` when it had given frames for HEALTHY_SECONDS (the next attempt starts
    a fresh backoff), ``final`` when trying again cannot help (a recording that reached its end)."""

    def __init__(self, message: str, healthy: bool = False, final: bool = False):
        super().__init__(message)
        self.healthy, self.final = healthy, final


class StreamReader(threading.Thread):
    """Decodes one live source into a LatestFrame, reopening it when lost: attempts in a row back off
    exponentially with jitter (tenacity) and count towards ``reconnect_attempts``; a connection that was healthy
    starts them afresh. ``finished`` is set when the reader ends, for whatever reason."""

    def __init__(self, source: str, slot: LatestFrame, summary: StreamSummary, started: float,
                 open_timeout: float = OPEN_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 reconnect_attempts: Optional[int] = None, on_event: Callable[[str, str], None] = lambda s, e: None):
        super().__init__(name=f"stream {summary.source}", daemon=True)
        self.source, self.slot, self.summary, self.started = source, slot, summary, started
        self.timeouts = (open_timeout, read_timeout)
        self.reconnect_attempts = reconnect_attempts
        self.on_event = on_event
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.fps: Optional[float] = None
        self._index = 0
        self._connections = 0

    def report(self, what: str) -> None:
        """Record an event of this stream (opened, lost, a refused frame) and pass it to ``on_event``."""
        self.summary.events.append((round(time.monotonic() - self.started, 2), what))
        self.on_event(self.summary.source, what)

    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)  # a stop interrupts the wait

    def _session(self) -> None:
        """One connection: open the source and decode it into the slot until it is lost (StreamLost) or the
        reader is stopped (returns)."""
        import av
        if self.stopping.is_set():
            return
        demuxer, options = open_options(self.source)
        try:
            container = av.open(self.source, format=demuxer, options=options, timeout=self.timeouts)
        except (av.FFmpegError, OSError) as exc:
            raise StreamLost(f"cannot open ({_reason(exc)})") from None
        first_frame = None
        try:
            if self.stopping.is_set():
                return
            if not container.streams.video:
                raise StreamLost("it holds no video stream", final=True)
            self._connections += 1
            if self._connections > 1:
                self.summary.reconnects += 1
            self.report("opened" if self._connections == 1 else "reconnected")
            stream = container.streams.video[0]
            self.fps = self.fps or float(stream.average_rate or stream.guessed_rate or 25)
            recording = container.duration is not None  # a file served over the network, not a live feed
            for decoded in container.decode(stream):
                if self.stopping.is_set():
                    return
                now = time.monotonic()
                first_frame = first_frame or now
                self.slot.put(Decoded(self._index, now - self.started, decoded))
                self._index += 1
            reason = "the recording ended (give it as a video file to read every frame)" if recording \
                else "the stream ended"
            final = recording
        except (av.FFmpegError, OSError) as exc:
            reason, final = _reason(exc), False
        finally:
            container.close()
        healthy = first_frame is not None and time.monotonic() - first_frame >= HEALTHY_SECONDS
        raise StreamLost(f"lost ({reason})", healthy=healthy and not final, final=final)

    def run(self) -> None:
        import tenacity
        try:
            while not self.stopping.is_set():
                attempts = (tenacity.stop_after_attempt(self.reconnect_attempts + 1)
                            if self.reconnect_attempts is not None else tenacity.stop_never)
                retrying = tenacity.Retrying(
                    stop=attempts | tenacity.stop_when_event_set(self.stopping),
                    wait=tenacity.wait_exponential_jitter(multiplier=BACKOFF_INITIAL, max=BACKOFF_MAX,
                                                          jitter=BACKOFF_JITTER),
                    retry=tenacity.retry_if_exception(
                        lambda exc: isinstance(exc, StreamLost) and not exc.healthy and not exc.final),
                    sleep=self._sleep,
                    before_sleep=lambda state: self.report(
                        f"{state.outcome.exception() if state.outcome else '?'}; retrying in "
                        f"{state.upcoming_sleep:.1f} s"),
                    reraise=True)
                try:
                    retrying(self._session)
                    return  # stopped
                except StreamLost as lost:
                    if self.stopping.is_set():
                        return
                    if lost.healthy:  # after a good run: straight back, the backoff afresh
                        self.report(str(lost))
                        continue
                    self.summary.error = str(lost)
                    self.report(f"given up: {lost}")
                    return
        except Exception as exc:  # the reader itself failed: reported, and the run goes on without it
            self.summary.error = f"the reader failed: {exc!r}"
            self.report(f"given up: {self.summary.error}")
        finally:
            self.finished.set()
            self.on_event(self.summary.source, "")  # wakes the run, which may now end


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
    pending: deque = field(default_factory=deque)  # (index, timestamp, task) in send order
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
                               annotate: bool = True, frame_format: str = "auto",
                               stop: Optional[asyncio.Event] = None) -> list[StreamSummary]:
    """Detect in every live source at once until ``seconds`` pass, ``stop`` is set (the CLI sets it at Ctrl-C)
    or every source is given up; the outputs hold what was answered. ``on_frame`` sees each answer in its
    stream's frame order, with the stream's summary so far; ``on_event`` each stream's opened / lost /
    reconnected / given up / frame refused. Frames are sent as ``frame_format`` says (video.FRAME_FORMATS)."""
    await client.connect()
    _, encode = frame_encoder(client, frame_format)
    sources = list(dict.fromkeys(sources))
    names = [stream_name(s) for s in sources]
    if save_dir is not None and len(set(names)) < len(names):
        raise ValueError("two sources would write the same outputs (" + ", ".join(
            sorted({display_name(s) for s, n in zip(sources, names) if names.count(n) > 1})) + ")")
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    stop = stop or asyncio.Event()

    def notify() -> None:
        with contextlib.suppress(RuntimeError):  # a reader that outlived the run
            loop.call_soon_threadsafe(wake.set)

    def event(source: str, what: str) -> None:
        if what:
            on_event(source, what)
        notify()  # a stream given up may end the run

    started = time.monotonic()
    streams: list[_Stream] = []
    for source in sources:
        summary = StreamSummary(display_name(source))
        slot = LatestFrame(notify)
        reader = StreamReader(source, slot, summary, started, open_timeout, read_timeout, reconnect_attempts, event)
        streams.append(_Stream(source, slot, summary, reader))
        if track:
            from damo_client.tracking import Tracker
            streams[-1].tracker = Tracker()
    for stream in streams:
        stream.reader.start()

    def prepare(decoded: Decoded) -> tuple[Frame, Any]:
        """BGR and what is sent (off the event loop: both release the GIL)."""
        image = decoded.frame.to_ndarray(format="bgr24")
        return Frame(decoded.index, decoded.timestamp, image), encode(image)

    async def one(decoded: Decoded) -> tuple[Frame, list, float]:
        frame, payload = await asyncio.to_thread(prepare, decoded)
        start = time.perf_counter()
        detections = await client.detect(payload, score_threshold, iou_threshold)
        return frame, detections, (time.perf_counter() - start) * 1e3

    async def deliver(stream: _Stream) -> None:
        """The stream's answers that are back, in its frame order. A frame the server refused is counted and
        reported; the server out of reach ends the run (ServerUnavailable)."""
        while stream.pending and stream.pending[0][2].done():
            index, _, task = stream.pending.popleft()
            if task.cancelled():
                continue
            exc = task.exception()
            if isinstance(exc, ServerUnavailable) or (exc is not None and not isinstance(exc, DamoClientError)):
                raise exc
            if exc is not None:
                stream.summary.failed += 1
                stream.reader.report(f"frame {index} refused: {str(exc).splitlines()[0]}")
                continue
            frame, detections, latency = task.result()
            if stream.tracker is not None:
                detections = stream.tracker.update(detections)
            result = FrameResult(frame, detections, latency)
            if save_dir is not None:
                if stream.outputs is None:
                    stream.outputs = VideoOutputs(save_dir, stream_name(stream.source), stream.reader.fps or 25.0,
                                                  annotate, wall_clock=True)
                await asyncio.to_thread(stream.outputs.write, result)
            stream.summary.frames += 1
            stream.summary.dropped = stream.slot.dropped
            stream.summary.latencies_ms.append(latency)
            on_frame(stream.summary, result)

    deadline = None if seconds is None else started + seconds
    failed = False
    try:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            if all(s.reader.finished.is_set() and not s.pending for s in streams):
                break
            wake.clear()
            outstanding = sum(len(s.pending) for s in streams)
            while outstanding < in_flight:  # fill the budget, the neediest stream first
                ready = [s for s in streams if s.slot.fresh]
                if not ready:
                    break
                stream = min(ready, key=lambda s: (len(s.pending), s.last_sent))
                decoded = stream.slot.take()
                if decoded is None:
                    continue
                stream.pending.append((decoded.index, decoded.timestamp, asyncio.ensure_future(one(decoded))))
                stream.last_sent = time.monotonic()
                outstanding += 1
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
            timeout = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
            await asyncio.wait([*(t for s in streams for _, _, t in s.pending), *waiters], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            for stream in streams:
                await deliver(stream)
    except BaseException:
        failed = True
        raise
    finally:
        for stream in streams:
            stream.reader.stopping.set()
        pending = [t for s in streams for _, _, t in s.pending]
        if not failed and pending:  # what is in flight is answered and written
            await asyncio.wait(pending, timeout=10)
        for stream in streams:
            if not failed:
                with contextlib.suppress(Exception):
                    await deliver(stream)
            for _, _, task in stream.pending:
                task.cancel()
            stream.summary.dropped = stream.slot.dropped + (1 if stream.slot.fresh else 0)
            stream.summary.seconds = time.monotonic() - started
            if stream.outputs is not None:  # a live run's outputs hold what was answered, whatever ended it
                stream.summary.outputs = await asyncio.to_thread(stream.outputs.close, True)
        finish_by = time.monotonic() + max(open_timeout, read_timeout) + 1
        for stream in streams:  # daemon threads: one left blocked in FFmpeg does not keep the process
            await asyncio.to_thread(stream.reader.join, max(0.0, finish_by - time.monotonic()))
    return [s.summary for s in streams]


def detect_streams(sources: Iterable[str], url: Optional[str] = None, protocol: str = "grpc",
                   model: str = "damo_yolo", **options: Any) -> list[StreamSummary]:
    """``detect_streams_async`` with its own AsyncDamoClient (``url``, ``protocol``, ``model``)."""
    from damo_client.client import AsyncDamoClient

    async def run() -> list[StreamSummary]:
        async with AsyncDamoClient(url, protocol, model) as client:
            return await detect_streams_async(client, sources, **options)

    return asyncio.run(run())
