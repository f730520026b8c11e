"""A live stream to test against: a video file played in real time as H.264 in MPEG-TS over UDP (or any output
FFmpeg writes), by FFmpeg's own libraries through PyAV — what an IP camera or an encoder box sends.

    python -m damo_yolo.data.stream_sender clip.mp4 udp://127.0.0.1:5000 --loop [--fps 25]

The clip's frames are encoded live (libx264, ``zerolatency``, a key frame every ``--gop`` frames so a receiver that
joins or comes back late starts within a fraction of a second) and sent at the clip's frame rate (or ``--fps``),
paced by the wall clock; with ``--loop`` it starts over at the end until stopped (SIGTERM or Ctrl-C).
"""
from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Optional

import click

from damo_yolo.cli import CONTEXT, run

GOP = 10  # frames between key frames: how soon a receiver can start decoding


def _frames(clip: Path) -> Iterator[Any]:
    """The clip's frames, decoded as they are sent (a long clip is never held in memory)."""
    import av
    with av.open(str(clip)) as source:
        yield from source.decode(video=0)


def send(clip: Path, url: str, fps: Optional[float] = None, loop: bool = False, gop: int = GOP,
         seconds: Optional[float] = None) -> int:
    """Play ``clip`` to ``url`` (MPEG-TS) in real time; the frames sent."""
    import av
    with av.open(str(clip)) as source:
        if not source.streams.video:
            raise click.ClickException(f"{clip} holds no video stream")
        stream = source.streams.video[0]
        rate = fps or float(stream.average_rate or 25)
        width, height = stream.codec_context.width, stream.codec_context.height
    if url.startswith("udp://") and "pkt_size" not in url:  # 7 TS packets a datagram, as FFmpeg's tools send
        url += ("&" if "?" in url else "?") + "pkt_size=1316"
    output = av.open(url, "w", format="mpegts")
    frame_rate = Fraction(rate).limit_denominator(1001)
    video = output.add_stream("libx264", rate=frame_rate,
                              options={"preset": "ultrafast", "tune": "zerolatency", "g": str(gop),
                                       "keyint_min": str(gop), "bf": "0"})
    video.width, video.height, video.pix_fmt = width - width % 2, height - height % 2, "yuv420p"  # 4:2:0: even
    start, sent = time.monotonic(), 0
    try:
        while True:
            played = 0
            for decoded in _frames(clip):
                due = start + sent / rate
                if seconds is not None and due - start >= seconds:
                    return sent
                time.sleep(max(0.0, due - time.monotonic()))
                frame = decoded.reformat(width=video.width, height=video.height, format="yuv420p")
                frame.pts, frame.time_base = sent, 1 / frame_rate  # the clock of the stream sent
                for packet in video.encode(frame):
                    output.mux(packet)
                sent, played = sent + 1, played + 1
            if not played:
                raise click.ClickException(f"{clip} holds no frames")
            if not loop:
                return sent
    finally:
        output.close()


@click.command(context_settings=CONTEXT)
@click.argument("clip", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("url")
@click.option("--fps", type=click.FloatRange(min=0.1, max=240), help="Frames per second [default: the clip's].")
@click.option("--loop", is_flag=True, help="Start over at the end, until stopped.")
@click.option("--gop", type=click.IntRange(min=1), default=GOP, show_default=True, help="Frames between key frames.")
@click.option("--seconds", type=click.FloatRange(min=0), help="Stop after this long.")
def cli(clip: Path, url: str, fps: Optional[float], loop: bool, gop: int, seconds: Optional[float]) -> None:
    """Send CLIP to URL (udp://HOST:PORT, ...) as a live MPEG-TS stream, in real time."""
    click.echo(f"sending {clip} to {url}", err=True)
    sent = send(clip, url, fps, loop, gop, seconds)
    click.echo(f"{sent} frames sent", err=True)


def main(argv: Optional[list[str]] = None) -> int:
    return run(cli, argv, "python -m damo_yolo.data.stream_sender")


if __name__ == "__main__":
    raise SystemExit(main())
