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
from typing import Optional

import click

from damo_yolo.cli import CONTEXT, run

GOP = 10  # frames between key frames: how soon a receiver can start decoding


def send(clip: Path, url: str, fps: Optional[float] = None, loop: bool = False, gop: int = GOP,
         seconds: Optional[float] = None) -> int:
    """Play ``clip`` to ``url`` (MPEG-TS) in real time; the frames sent."""
    import av
    with av.open(str(clip)) as source:
        stream = source.streams.video[0]
        rate = fps or float(stream.average_rate or 25)
        frames = [f.to_ndarray(format="yuv420p") for f in source.decode(stream)]
    height, width = frames[0].shape[0] * 2 // 3, frames[0].shape[1]
    output = av.open(url, "w", format="mpegts")
    video = output.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001),
                              options={"preset": "ultrafast", "tune": "zerolatency", "g": str(gop),
                                       "keyint_min": str(gop), "bf": "0"})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    start, sent = time.monotonic(), 0
    try:
        while True:
            for array in frames:
                due = start + sent / rate
                if seconds is not None and due - start >= seconds:
                    return sent
                time.sleep(max(0.0, due - time.monotonic()))
                frame = av.VideoFrame.from_ndarray(array, format="yuv420p")
                frame.pts = sent
                for packet in video.encode(frame):
                    output.mux(packet)
                sent += 1
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
