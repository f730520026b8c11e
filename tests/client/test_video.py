"""Video through the real tritonserver: `damo-client detect clip.mp4 --track --save-dir out/` sends every frame of
a synthetic tracking clip to the served demo model, several requests at once, and writes the annotated video (the
source's frame count and rate), a JSON line per frame and MOTChallenge text; py-motmetrics scores the tracks
against the clip's ground truth (the tracking gate: IDF1 >= 0.8, MOTA >= 0.7, printed in CI's log)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mot import mot_scores
from serving import running_server

ROOT = Path(__file__).resolve().parents[2]
SHARED_IMAGES = ROOT.parent / "shared" / "data" / "images"
CLIPS, FRAMES, FPS = 2, 100, 25
MIN_IDF1, MIN_MOTA = 0.8, 0.7


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    from damo_yolo.data.synthetic import load_backgrounds
    from damo_yolo.data.synthetic_video import generate_clip
    out, photos = tmp_path_factory.mktemp("tracking"), load_backgrounds(SHARED_IMAGES)
    return [generate_clip(out, f"clip{i:02d}", FRAMES, (320, 320), FPS, seed=100 + i, photos=photos, objects=6)
            for i in range(CLIPS)]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    with running_server(ROOT / "triton_models", tmp_path_factory.mktemp("demo") / "server.log") as server:
        yield server


def _truth(clip: Path) -> np.ndarray:
    return np.loadtxt(clip.parent / clip.stem / "gt" / "gt.txt", delimiter=",", ndmin=2)


def test_a_tracked_video_run_writes_what_people_keep_and_meets_the_tracking_gate(clips, demo_server, tmp_path,
                                                                                  capsys):
    import av

    from damo_client.cli import cli
    out = tmp_path / "out"
    run = CliRunner().invoke(cli, ["detect", *map(str, clips), "--track", "--save-dir", str(out), "-q",
                                   "--protocol", "grpc", "--url", demo_server.grpc_url])
    assert run.exit_code == 0, run.output
    scores = {}
    for clip in clips:
        assert f"{clip}: {FRAMES} frames, 0 dropped, " in run.output, run.output
        with av.open(str(out / f"{clip.stem}.annotated.mp4")) as container:
            stream = container.streams.video[0]
            assert sum(1 for _ in container.decode(stream)) == FRAMES and float(stream.average_rate) == FPS
        lines = [json.loads(line) for line in (out / f"{clip.stem}.jsonl").read_text().splitlines()]
        assert [line["frame"] for line in lines] == list(range(FRAMES))
        assert lines[10]["timestamp"] == pytest.approx(10 / FPS, abs=1e-3)
        assert all("track_id" in d and d["class_name"] for line in lines for d in line["detections"])
        tracks = np.loadtxt(out / f"{clip.stem}.mot.txt", delimiter=",", ndmin=2)
        assert not list(out.glob("*.partial"))
        scores[clip.stem] = mot_scores(_truth(clip), tracks)
    with capsys.disabled():  # the gate's figures belong in CI's log
        for name, s in scores.items():
            print(f"\n[tracking gate] demo model, {name} ({FRAMES} frames): MOTA {s['mota']:.3f}, "
                  f"IDF1 {s['idf1']:.3f}, {s['num_switches']:.0f} ID switches (limits: MOTA {MIN_MOTA}, "
                  f"IDF1 {MIN_IDF1})")
    for name, s in scores.items():
        assert s["idf1"] >= MIN_IDF1 and s["mota"] >= MIN_MOTA, (name, s)


def test_bad_videos_fail_in_one_line_each_and_the_images_are_still_answered(demo_server, tmp_path):
    from damo_client.cli import cli
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    image = sorted(SHARED_IMAGES.glob("*.jpg"))[0]
    run = CliRunner().invoke(cli, ["detect", str(bad), str(tmp_path / "missing.mkv"), str(image), "-q",
                                   "--save-dir", str(tmp_path / "out"), "--url", demo_server.grpc_url,
                                   "--protocol", "grpc"])
    assert run.exit_code == 1, run.output
    assert f"{bad}: not a video FFmpeg can open" in run.output and "missing.mkv: no such file" in run.output
    assert (tmp_path / "out" / f"{image.stem}.jpg").is_file()  # the image was answered after the videos failed
    assert "2 of 2 video(s) failed" in run.output, run.output
    assert not list((tmp_path / "out").glob("*.partial")) and not list((tmp_path / "out").glob("broken*"))


def test_two_videos_of_one_name_are_refused_before_any_work(tmp_path):
    from damo_client.cli import cli
    run = CliRunner().invoke(cli, ["detect", str(tmp_path / "a" / "x.mp4"), str(tmp_path / "b" / "x.mkv"),
                                   "--save-dir", str(tmp_path)])
    assert run.exit_code == 2 and "two videos share a name" in run.output, run.output


def test_track_needs_a_video(tmp_path):
    from damo_client.cli import cli
    image = sorted(SHARED_IMAGES.glob("*.jpg"))[0]
    run = CliRunner().invoke(cli, ["detect", str(image), "--track"])
    assert run.exit_code == 2 and "--track follows objects across a video's frames" in run.output, run.output
