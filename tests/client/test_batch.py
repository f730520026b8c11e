"""Folders and globs through the real tritonserver, resumable: `damo-client detect 'photos/**/*.jpg' --results-dir
out/` writes one JSON per image, each whole or not at all; a run killed with SIGKILL at several moments and started
again ends with every image answered exactly once, each result the server's answer for that image."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from serving import running_server

ROOT = Path(__file__).resolve().parents[2]
SHARED_IMAGES = ROOT.parent / "shared" / "data" / "images"
FOLDERS, PER_FOLDER = 3, 16


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """FOLDERS x PER_FOLDER distinct images of the synthetic shapes the demo model knows, on the shared photographs,
    in nested folders, and one text file that is not an image."""
    import cv2
    import numpy as np

    from damo_yolo.data.synthetic import load_backgrounds, render_image
    root, backgrounds = tmp_path_factory.mktemp("photos"), load_backgrounds(SHARED_IMAGES)
    for f in range(FOLDERS):
        folder = root / f"camera{f}" / "day1"
        folder.mkdir(parents=True)
        for i in range(PER_FOLDER):
            image, _ = render_image(np.random.default_rng([7, f, i]), 320, 384, backgrounds)
            cv2.imwrite(str(folder / f"img{i:03d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
    (root / "camera0" / "day1" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    with running_server(ROOT / "triton_models", tmp_path_factory.mktemp("demo") / "server.log") as server:
        yield server


def _results(out: Path) -> dict[str, dict]:
    return {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob("*.json"))}


def test_the_plan_names_each_result_by_the_image_path_under_its_folder_or_glob(photos, tmp_path):
    from damo_client.batch import plan
    from damo_client.errors import ImageError
    jobs = plan([str(photos / "**" / "*.jpg")], tmp_path / "out")
    assert len(jobs) == FOLDERS * PER_FOLDER
    assert jobs[0].result == tmp_path / "out" / "camera0" / "day1" / "img000.jpg.json"
    folder = photos / "camera1" / "day1"
    assert [j.result.name for j in plan([folder], tmp_path)][:2] == ["img000.jpg.json", "img001.jpg.json"]
    assert len(plan([folder, folder / "img000.jpg"], tmp_path)) == PER_FOLDER  # an image given twice: once
    with pytest.raises(ValueError, match="would both write"):
        plan([photos / "camera0" / "day1", photos / "camera1" / "day1"], tmp_path)  # same names, one folder
    with pytest.raises(ImageError, match="matches no .jpg"):
        plan([str(photos / "*.png")], tmp_path)
    with pytest.raises(ImageError, match="no such file or folder"):
        plan([photos / "missing"], tmp_path)
    with pytest.raises(ImageError, match="no .jpg/.jpeg/.png images in this folder"):
        plan([photos / "camera0"], tmp_path)  # only a subfolder there


def test_a_result_is_written_whole_or_not_at_all(tmp_path):
    from damo_client.batch import Job, ResultsError, has_result, remove_partials, results_lock, write_atomically
    job = Job(Path("x.jpg"), tmp_path / "a" / "x.jpg.json")
    write_atomically(job.result, json.dumps({"file": "x.jpg", "detections": []}))
    assert has_result(job) and not list(tmp_path.rglob("*.partial"))
    assert not has_result(Job(Path("other/x.jpg"), job.result))  # another image's result of that name
    (tmp_path / "a" / "y.jpg.json.1a2b.partial").write_text('{"file": "y.jp')  # what a killed run leaves
    damaged = Job(Path("z.jpg"), tmp_path / "a" / "z.jpg.json")
    damaged.result.write_text('{"file": "z.jpg", "detec')  # damaged since: not a result
    assert not has_result(damaged) and remove_partials(tmp_path) == 1
    with results_lock(tmp_path):  # one run at a time per results folder
        with pytest.raises(ResultsError, match="another run is writing results into"):
            with results_lock(tmp_path):
                pass


def test_a_folder_run_killed_with_sigkill_resumes_and_answers_every_image_once(photos, demo_server, tmp_path,
                                                                             capsys):
    from damo_client.client import DamoClient
    from damo_client.video import detection_record
    out = tmp_path / "results"
    command = [sys.executable, "-m", "damo_client.cli", "detect", str(photos / "**" / "*.jpg"), "--results-dir",
               str(out), "-q", "--protocol", "grpc", "--url", demo_server.grpc_url, "--in-flight", "4"]
    total, kills = FOLDERS * PER_FOLDER, []
    for kill_after in (4, 12, 20):  # SIGKILL once that many results are on disk (mid-run, requests in flight)
        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while run.poll() is None and len(list(out.rglob("*.json"))) < kill_after and time.monotonic() < deadline:
            time.sleep(0.005)
        run.send_signal(signal.SIGKILL)
        output = run.communicate()[0]
        assert run.returncode in (-signal.SIGKILL, 0), output
        kills.append(len(list(out.rglob("*.json"))))
    assert kills[-1] < total, f"the runs finished before they could be killed: {kills}"
    final = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    results = _results(out)
    assert len(results) == total and not list(out.rglob("*.partial")), sorted(out.rglob("*"))
    files = [r["file"] for r in results.values()]
    assert len(set(files)) == total and all(Path(f).suffix == ".jpg" for f in files)
    assert sum(len(r["detections"]) for r in results.values()) > total  # the shapes are found
    for name, record in results.items():  # each result is its own image's
        assert record["file"].endswith(name.removesuffix(".json")), (name, record["file"])
    done_before = kills[-1]
    assert f"{total} images: {total - done_before} answered, {done_before} already had results, 0 failed" \
        in final.stdout, final.stdout
    with DamoClient(demo_server.grpc_url, "grpc") as client:  # the answers are the server's for that image
        for name in list(results)[::5]:
            expected = [detection_record(d) for d in client.detect(results[name]["file"])]
            assert results[name]["detections"] == expected, name
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)  # nothing left to do
    assert again.returncode == 0 and f"0 answered, {total} already had results" in again.stdout, again.stdout
    with capsys.disabled():
        print(f"\n[batch] {total} images, SIGKILL with {kills} results written, then resumed: "
              f"{final.stdout.strip().splitlines()[-1]}")


def test_a_failed_image_is_named_and_retried_by_the_next_run(photos, demo_server, tmp_path):
    from damo_client.cli import cli
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = photos / "camera2" / "day1" / "img000.jpg"
    (folder / "good.jpg").write_bytes(good.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "results"
    args = ["detect", str(folder), "--results-dir", str(out), "-q", "--url", demo_server.grpc_url,
            "--protocol", "grpc"]
    run = CliRunner().invoke(cli, args)
    assert run.exit_code == 1, run.output
    assert f"{folder / 'broken.jpg'}: " in run.output and "1 image(s) failed (a rerun sends" in run.output
    assert [p.name for p in out.glob("*.json")] == ["good.jpg.json"]
    (folder / "broken.jpg").write_bytes(good.read_bytes())  # mended
    rerun = CliRunner().invoke(cli, args + ["--json", str(tmp_path / "all.json")])
    assert rerun.exit_code == 0 and "2 images: 1 answered, 1 already had results, 0 failed" in rerun.output
    rows = json.loads((tmp_path / "all.json").read_text())  # every result's detections, this run's and before
    assert len(rows) == sum(len(r["detections"]) for r in _results(out).values())
    assert {r["file_name"] for r in rows} <= {"good.jpg", "broken.jpg"}, rows
    redo = CliRunner().invoke(cli, args + ["--redo"])
    assert redo.exit_code == 0 and "2 images: 2 answered, 0 already had results" in redo.output, redo.output
