"""The console scripts as one family of click commands: `main(argv)` returns the exit code, every option is
described and shows its default once, options that take several values still do, damo-export reports its
steps (and --quiet silences them), the tritonserver launcher leaves --help to the server, and damo-demo tells
the user what a model of synthetic shapes will make of their photos."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = ROOT / "train" / "configs" / "damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py"
# console script → its module (each has `cli`, the click command, and `main(argv) -> int`)
SCRIPTS = {
    "damo-zoo": "damo_yolo.tools.zoo",
    "damo-synthetic": "damo_yolo.data.synthetic",
    "damo-test": "damo_yolo.tools.test",
    "damo-browse-dataset": "damo_yolo.tools.browse_dataset",
    "damo-export": "damo_yolo.tools.export",
    "damo-demo": "damo_yolo.tools.demo",
}


def _module(name: str):
    import importlib
    return importlib.import_module(SCRIPTS[name])


def _script(name: str, *args, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def test_every_script_is_a_click_command_behind_its_entry_point():
    from importlib import metadata
    entry_points = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")
                    if ep.value.startswith(("damo_yolo.", "damo_client."))}
    for script, module in SCRIPTS.items():
        assert entry_points[script] == f"{module}:main"
        assert isinstance(_module(script).cli, click.Command)
    assert entry_points["tritonserver"] == "damo_yolo.serving.tritonserver:main"


@pytest.mark.parametrize("script,bad_option,missing_file", [
    ("damo-zoo", ["--variant", "Q"], ["--image", "missing.jpg"]),
    ("damo-synthetic", ["--size", "32"], None),
    ("damo-test", [str(CONFIG), "x.pth", "--workers", "-1"], ["missing.py", "x.pth"]),
    ("damo-browse-dataset", [str(CONFIG), "--count", "0"], ["missing.py"]),
    ("damo-export", ["x.pth", "--out", "repo", "--target", "tpu"], ["missing.pth", "--out", "repo"]),
    ("damo-demo", ["--count", "0"], ["--repo", "missing"]),
])
def test_main_returns_the_exit_code(script, bad_option, missing_file, tmp_path, monkeypatch, capsys):
    """What tests and other modules rely on: main(argv) from Python answers 0 / 1 / 2 instead of exiting."""
    monkeypatch.chdir(tmp_path)
    main = _module(script).main
    assert main(["--help"]) == 0 and f"Usage: {script} " in capsys.readouterr().out
    assert main(bad_option) == 2 and "Error: Invalid value" in capsys.readouterr().err
    if missing_file is not None:
        assert main(missing_file) == 1 and "not found" in capsys.readouterr().err


def _option_blocks(help_text: str) -> dict[str, str]:
    """--help's options section: option name → its whole entry (name, metavar, description, brackets)."""
    section = help_text.split("\nOptions:\n", 1)[1]
    blocks: dict[str, str] = {}
    name = ""
    for line in section.splitlines():
        match = re.match(r"  (?:-\w, )?(--[\w-]+)", line)
        if match:
            name = match.group(1)
            blocks[name] = line
        elif name:
            blocks[name] += " " + line.strip()
    return blocks


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_describes_every_option_and_shows_each_default_once(script):
    run = _script(script, "-h")
    assert run.returncode == 0 and run.stdout.startswith(f"Usage: {script} [OPTIONS]")
    blocks = _option_blocks(run.stdout)
    command = _module(script).cli
    params = [p for p in command.params if isinstance(p, click.Option)]
    long_names = [next(o for o in p.opts if o.startswith("--")) for p in params]
    assert set(long_names) <= set(blocks)
    for param, name in zip(params, long_names):
        block = " ".join(blocks[name].split())
        assert param.help, f"{script} {param.opts} has no help"
        assert block.count("default:") <= 1, f"{script}: {block}"
        if param.to_info_dict()["default"] not in (None, ()) and not param.is_flag:  # a value, not a sentence
            assert "[default: " in block, f"{script}: {block} hides its default"
        assert "None" not in block and "(default:" not in block, f"{script}: {block}"


def test_exports_help_names_each_default_once():
    """The defaults that are not values (recognised, the target's, the checkpoint's) are said in words, once."""
    text = " ".join(_script("damo-export", "--help").stdout.split())
    assert text.count("[default: recognised from its weights]") == 1
    assert "[default: fp32 on cpu, fp16 on gpu]" in text and "[default: the checkpoint's]" in text
    assert "[default: cpu]" in text and "[default: 8; x>=1]" in text and "[required]" in text


def test_every_export_option_is_a_damo_export_option():
    """damo-export builds ExportOptions by keyword from its options: a field without an option is unreachable."""
    from dataclasses import fields

    from damo_yolo.tools.export import ExportOptions, cli
    names = {p.name for p in cli.params}
    assert {f.name for f in fields(ExportOptions)} - {"dynamic_batching"} <= names
    assert "no_dynamic_batching" in names


def test_several_values_after_one_option_as_before(tmp_path, tiny_synthetic):
    """--size H W and --cfg-options A=1 B=2 take their values as argparse's nargs="+" did."""
    run = _script("damo-synthetic", "--out", tmp_path / "s", "--train", "1", "--val", "0", "--size", "96", "128",
                  "--seed", "3")
    assert run.returncode == 0, run.stderr
    (image,) = json.loads((tmp_path / "s" / "annotations" / "instances_train.json").read_text())["images"]
    assert (image["height"], image["width"]) == (96, 128)
    run = _script("damo-browse-dataset", CONFIG, "--out", tmp_path / "b", "--count", "1",
                  "--cfg-options", f"data_root={tiny_synthetic}/", "input_size=(96,96)", cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    import cv2
    (drawn,) = (tmp_path / "b").glob("*.jpg")
    assert cv2.imread(str(drawn)).shape == (96, 96, 3)  # the second setting after one --cfg-options was applied


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    from damo_yolo.models import CheckpointMeta, build_model, save_checkpoint
    meta = CheckpointMeta.for_variant("Ns", 2, ["a", "b"]).replace(input_size=(128, 128))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "ns.pth", build_model("Ns", num_classes=2), meta)


def test_export_reports_each_step_with_its_time_and_quiet_silences_them(tmp_path, small_checkpoint):
    run = _script("damo-export", small_checkpoint, "--out", tmp_path / "repo")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    stamps = [re.match(r"\[\s*(\d+\.\d) s\] (.+)$", line) for line in lines]
    assert all(stamps), lines
    times, steps = [float(m.group(1)) for m in stamps if m], [m.group(2) for m in stamps if m]
    assert steps == [f"loading the checkpoint {small_checkpoint}",
                     "exporting ONNX: DAMO-YOLO-Ns, 2 classes, 128x128",
                     f"writing the repository {tmp_path / 'repo'} and validating it as Triton will load it",
                     "done"]
    assert times == sorted(times) and times[-1] > 0
    assert run.stdout.startswith(f"model repository written to {tmp_path / 'repo'}")

    quiet = _script("damo-export", small_checkpoint, "--out", tmp_path / "repo", "--force", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-2000:]
    assert quiet.stdout == run.stdout


def test_tritonserver_leaves_help_and_every_argument_to_the_server():
    """The launcher has no options of its own: --help and -h are Triton's (its usage, its exit code 1)."""
    from damo_yolo.serving.tritonserver import cli
    assert cli.get_help_option(click.Context(cli)) is None
    for flag in ("--help", "-h"):
        run = _script("tritonserver", flag, timeout=60)
        assert run.returncode == 1 and "Usage: tritonserver [options]" in run.stderr, run.stderr[-2000:]
        assert "--model-repository <string>" in run.stderr and "Show this message and exit" not in run.stderr
        assert "no NVIDIA GPU on this host" not in run.stderr  # the CPU-host note is not printed for help


def test_the_demo_says_what_its_model_knows_before_it_runs_on_photos():
    from damo_yolo.models import COCO_CLASSES
    from damo_yolo.serving.repository import repository_serving
    from damo_yolo.tools.demo import classes_note
    shapes = classes_note(repository_serving(ROOT / "triton_models").class_names)
    assert shapes.startswith("note: this model knows only the 8 synthetic shapes it was trained on (disc, ")
    assert "a bus" in shapes and "expected nonsense" in shapes
    coco = classes_note(COCO_CLASSES)
    assert coco.startswith("note: this model knows only its 80 classes (person, bicycle, ") and ", ...)" in coco


@pytest.mark.slow
def test_the_demo_on_the_users_photos(tmp_path, sample_images):
    photos = tmp_path / "photos"
    photos.mkdir()
    bus = next((p for p in sample_images if p.name == "bus.jpg"), sample_images[0])
    (photos / bus.name).write_bytes(bus.read_bytes())
    run = _script("damo-demo", "--images", photos, "--out", tmp_path / "out", cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("note: this model knows only the 8 synthetic shapes") and "a bus" in lines[0]
    assert lines[1].startswith("starting tritonserver")  # said up front, before any box
    assert (tmp_path / "out" / "annotated" / bus.name).is_file()
