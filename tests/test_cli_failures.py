"""Every console script refuses a missing file or a bad option at once, in one line, before its heavy imports.

Each case runs the installed script (the venv's bin) as a user would and checks the exit code (1: a file or
value that cannot be used, the one line being the whole of stderr; 2: a usage error, click's "Error:" line
last), the message, and the time: measured at 0.06-0.55 s on 2 CPU cores busy with a training job (well
under 1 s on a quiet machine, where the 0.55 s is the tritonserver binary's own start); the 3 s bound is
generous so that a loaded CI host does not fail it, while the 2-16 s the scripts took when they imported
torch, mmengine and onnx first would. The measured times are printed after the module.
The refusals that have to read the checkpoint (torch) are timed and printed but not bounded.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = ROOT / "train" / "configs" / "damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py"
CHECKPOINT = ROOT / "demo" / "model" / "damoyolo_tinynasL18_Ns_synthetic.pth"
FAST = 3.0  # seconds; see the module docstring
VARIANTS = "T, S, M, L, Ns, Nm, Nl, N"


@pytest.fixture(scope="module")
def timings(request):
    measured: list[tuple[str, float]] = []
    yield measured
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not measured:
        return
    with capture.global_and_fixture_disabled():  # shown in every run, not only a failing one's output
        reporter.write_line("")
        reporter.write_line("console-script refusals (seconds, on this host now):")
        for command, seconds in measured:
            reporter.write_line(f"  {seconds:6.2f}  {command}")


def _run(timings, tmp_path: Path, script: str, *args) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    run = subprocess.run([str(BIN / script), *map(str, args)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    elapsed = time.perf_counter() - start
    timings.append((" ".join([script, *map(str, args)]).replace(str(ROOT) + "/", ""), elapsed))
    return run, elapsed


def _files(tmp_path: Path) -> None:
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    (tmp_path / "unreadable").mkdir()
    (tmp_path / "unreadable" / "a.jpg").write_text("not an image")
    (tmp_path / "unreadable" / "b.png").write_bytes(b"")


# (script, arguments, exit code, the message: stderr's last line)
REFUSALS = [
    ("damo-zoo", ["--image", "missing.jpg"], 1, "Error: image not found: missing.jpg"),
    ("damo-zoo", ["--variant", "Q"], 2,
     f"Error: Invalid value for '--variant': unknown DAMO-YOLO variant 'Q'; known: {VARIANTS}"),
    ("damo-synthetic", ["--size", "32"], 2,
     "Error: Invalid value for '--size': 32: one or two values (H W) of at least 64 px"),
    ("damo-synthetic", ["--size", "320", "256", "128"], 2,
     "Error: Invalid value for '--size': 320 256 128: one or two values (H W) of at least 64 px"),
    ("damo-synthetic", ["--train", "-1"], 2,
     "Error: Invalid value for '--train': -1 is not in the range x>=0."),
    ("damo-test", ["missing.py", CHECKPOINT], 1, "Error: config not found: missing.py"),
    ("damo-test", ["a_folder", CHECKPOINT], 1, "Error: config not found: a_folder (it is a directory)"),
    ("damo-test", [CONFIG, "missing.pth"], 1, "Error: checkpoint not found: missing.pth"),
    ("damo-test", [CONFIG, "empty.pth"], 1, "Error: checkpoint empty.pth is empty (0 bytes)"),
    ("damo-test", [CONFIG, CHECKPOINT, "--ann-file", "missing.json"], 1,
     "Error: annotation file not found: missing.json"),
    ("damo-test", [CONFIG, CHECKPOINT, "--batch-size", "0"], 2,
     "Error: Invalid value for '--batch-size': 0 is not in the range x>=1."),
    ("damo-browse-dataset", ["missing.py"], 1, "Error: config not found: missing.py"),
    ("damo-browse-dataset", [CONFIG, "--count", "0"], 2,
     "Error: Invalid value for '--count': 0 is not in the range x>=1."),
    ("damo-browse-dataset", [CONFIG, "--cfg-options", "max_epochs=4", "input_size"], 2,
     "Error: Invalid value for '--cfg-options': 'input_size': expected KEY=VALUE, e.g. max_epochs=10"),
    ("damo-browse-dataset", [CONFIG, "--phase", "first"], 2,
     "Error: Invalid value for '--phase': 'first' is not one of 'main', 'last'."),
    ("damo-export", ["missing.pth", "--out", "repo"], 1, "Error: checkpoint not found: missing.pth"),
    ("damo-export", ["a_folder", "--out", "repo"], 1, "Error: checkpoint a_folder is a directory, not a file"),
    ("damo-export", [CHECKPOINT], 2, "Error: Missing option '--out'."),
    ("damo-export", [CHECKPOINT, "--out", "repo", "--variant", "Q"], 2,
     f"Error: Invalid value for '--variant': unknown DAMO-YOLO variant 'Q'; known: {VARIANTS}"),
    ("damo-export", [CHECKPOINT, "--out", "repo", "--target", "tpu"], 2,
     "Error: Invalid value for '--target': 'tpu' is not one of 'cpu', 'gpu'."),
    ("damo-export", [CHECKPOINT, "--out", "repo", "--precision", "fp16"], 1,
     "Error: --precision fp16 is not served by the cpu target: choose fp32 or int8"),
    ("damo-export", [CHECKPOINT, "--out", "repo", "--precision", "int8", "--calibration-images", "nowhere"], 1,
     "Error: --calibration-images nowhere is not a folder"),
    ("damo-export", [CHECKPOINT, "--out", "repo", "--precision", "int8", "--calibration-images", "unreadable"], 1,
     "Error: --calibration-images: none of the 2 image files in unreadable can be decoded (a.jpg: not a JPEG or PNG "
     "image (starts with b'not an i', 12 bytes))"),
    ("damo-export", [CHECKPOINT, "--out", "repo", "--score-threshold", "1.5"], 2,
     "Error: Invalid value for '--score-threshold': 1.5 is not in the range 0.0<=x<1.0."),
    ("damo-demo", ["--repo", "missing"], 1,
     "Error: model repository not found: missing (make one with: damo-export CHECKPOINT --out missing)"),
    ("damo-demo", ["--images", "missing"], 1, "Error: --images not found: missing"),
    ("damo-demo", ["--images", "a_folder"], 1, "Error: no .jpg/.jpeg/.png images in a_folder"),
    ("damo-demo", ["--protocol", "smtp"], 2,
     "Error: Invalid value for '--protocol': 'smtp' is not one of 'http', 'grpc'."),
]


@pytest.mark.parametrize("script,args,code,message", REFUSALS,
                         ids=[f"{s} {' '.join(map(str, a)).replace(str(ROOT) + '/', '')}" for s, a, _, _ in REFUSALS])
def test_refused_at_once_in_one_line(timings, tmp_path, script, args, code, message):
    _files(tmp_path)
    run, elapsed = _run(timings, tmp_path, script, *args)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == code, run.stderr[-2000:]
    assert lines and lines[-1] == message, run.stderr[-2000:]
    if code == 1:  # a file or value that cannot be used: the line is all there is
        assert len(lines) == 1, run.stderr[-2000:]
    else:  # a usage error: click's usage and hint above it
        assert lines[0].startswith(f"Usage: {script} ") and lines[1] == f"Try '{script} --help' for help."
    assert not (tmp_path / "repo").exists()
    assert elapsed < FAST, f"{script} took {elapsed:.2f} s to refuse"


def test_tritonserver_passes_a_bad_option_to_the_server(timings, tmp_path):
    """The launcher does not parse the server's options: the server's own message and exit code come back."""
    run, elapsed = _run(timings, tmp_path, "tritonserver", "--no-such-option")
    assert run.returncode == 1 and "unrecognized option '--no-such-option'" in run.stderr
    assert elapsed < FAST, f"tritonserver took {elapsed:.2f} s to refuse"


def test_a_wrong_variant_says_which_it_is_and_what_to_do(timings, tmp_path, shared_dir):
    """The check needs the weights (torch), so it is not bounded; the answer comes first, the 800-character
    mismatch summary and every key only with --verbose."""
    weights = shared_dir / "fixtures" / "official" / "T_weights.pth"
    if not weights.is_file():
        pytest.skip(f"no official T checkpoint at {weights}")
    run, _ = _run(timings, tmp_path, "damo-export", weights, "--out", "repo", "--variant", "S")
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert lines[-1] == ("Error: the weights are DAMO-YOLO-T's, not S's: drop --variant or pass --variant T "
                         "(--verbose lists every key)")
    assert len(lines) == 2 and lines[0].startswith("[") and "loading the checkpoint" in lines[0]  # the step
    run, _ = _run(timings, tmp_path, "damo-export", weights, "--out", "repo", "--variant", "S", "--verbose")
    assert run.returncode == 1
    assert f"checkpoint {weights} does not fit DAMO-YOLO-S: the weights are DAMO-YOLO-T's (variant T)" in run.stderr
    assert "(414 in all)" in run.stderr  # the summary
    assert "head.gfl_reg.2.weight (checkpoint (68, 256, 3, 3) vs model (68, 512, 3, 3))" in run.stderr  # every key
    assert run.stderr.strip().splitlines()[-1] == "Error: the weights are DAMO-YOLO-T's, not S's: drop --variant or " \
                                                  "pass --variant T"
    assert not (tmp_path / "repo").exists()


def test_a_project_checkpoint_named_as_another_variant(timings, tmp_path):
    run, _ = _run(timings, tmp_path, "damo-export", CHECKPOINT, "--out", "repo", "--variant", "damoyolo_s")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == ("Error: the weights are DAMO-YOLO-Ns's, not S's: drop --variant "
                                                   "or pass --variant Ns")


@pytest.mark.parametrize("script", ["damo-export", "damo-test"])
def test_a_text_file_given_as_checkpoint_is_called_one(timings, tmp_path, script):
    _files(tmp_path)
    args = ["notes.txt", "--out", "repo"] if script == "damo-export" else [CONFIG, "notes.txt", "--workers", "0"]
    run, _ = _run(timings, tmp_path, script, *args)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == "Error: not a PyTorch checkpoint: notes.txt is a text file"


def test_the_early_checks_say_what_the_reader_says(tmp_path):
    """damo-export and damo-test check the checkpoint's path before importing torch; the reader's messages and
    theirs are the same."""
    from damo_yolo.fileio import checkpoint_file_problem
    from damo_yolo.models import CheckpointError, read_checkpoint
    _files(tmp_path)
    for name in ("missing.pth", "a_folder", "empty.pth"):
        early = checkpoint_file_problem(tmp_path / name)
        with pytest.raises(CheckpointError) as reader:
            read_checkpoint(tmp_path / name)
        assert early and early == str(reader.value)
    assert checkpoint_file_problem(CHECKPOINT) is None  # a real one passes
