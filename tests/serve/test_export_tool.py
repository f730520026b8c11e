"""`damo-export` as a user meets it: --out is required, a repository's models are replaced only with --force,
and a wrong checkpoint path says what is wrong."""
from __future__ import annotations

import subprocess
import sys

import pytest

from damo_yolo.models import CheckpointMeta, build_model, save_checkpoint


def _export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "damo_yolo.tools.export", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    meta = CheckpointMeta.for_variant("Ns", 2, ["a", "b"]).replace(input_size=(128, 128))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "ns.pth", build_model("Ns", num_classes=2), meta)


def test_out_is_required_and_help_shows_defaults():
    run = _export("model.pth")
    assert run.returncode == 2 and "--out" in run.stderr
    text = " ".join(_export("--help").stdout.split())
    assert "[default: 8; x>=1]" in text and "[default: cpu]" in text and "--force" in text
    assert text.count("[default: recognised from its weights]") == 1 and "None" not in text


def test_existing_models_are_replaced_only_with_force(tmp_path, small_checkpoint):
    repo = tmp_path / "triton_models"
    (repo / "damo_yolo" / "1").mkdir(parents=True)
    keep = repo / "damo_yolo" / "1" / "model.onnx"
    keep.write_bytes(b"the model being served")
    (repo / "damo_yolo_detector").mkdir()  # a former three-step export of the same name
    (repo / "other_model").mkdir()
    run = _export(small_checkpoint, "--out", repo)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "already holds damo_yolo, damo_yolo_detector" in run.stderr and "--force" in run.stderr
    assert keep.read_bytes() == b"the model being served"

    run = _export(small_checkpoint, "--out", repo, "--force")
    assert run.returncode == 0, run.stderr[-2000:]
    assert keep.read_bytes().startswith(b"\x08")  # an ONNX protobuf now
    assert not (repo / "damo_yolo_detector").exists(), "the former layout's models are replaced"
    assert (repo / "other_model").is_dir(), "models of other exports are left alone"


def test_checkpoint_paths_that_are_not_files(tmp_path):
    run = _export(tmp_path, "--out", tmp_path / "repo")
    assert run.returncode == 1 and f"checkpoint {tmp_path} is a directory" in run.stderr
    run = _export(tmp_path / "nothing.pth", "--out", tmp_path / "repo")
    assert run.returncode == 1 and "checkpoint not found" in run.stderr
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("args,message", [
    (["--precision", "fp16"], "--precision fp16 is not served by the cpu target: choose fp32 or int8"),
    (["--precision", "int8"], "--precision int8 needs --calibration-images DIR"),
    (["--precision", "int8", "--calibration-images", "nowhere"], "--calibration-images nowhere is not a folder"),
    (["--dali-decode", "cuda"], "--dali-decode cuda is for --target gpu (Triton's DALI backend): the cpu target "
                                "decodes on the CPU"),
    (["--dali-decode", "auto", "--preprocess", "dali"], "--dali-decode auto is for --target gpu"),
])
def test_precisions_the_target_cannot_serve_are_refused(tmp_path, small_checkpoint, args, message):
    run = _export(small_checkpoint, "--out", tmp_path / "repo", *args)
    assert run.returncode == 1 and message in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert not (tmp_path / "repo").exists()


def test_the_dali_decode_path_goes_into_the_gpu_repositorys_configuration():
    """--dali-decode (GPU target only) is what the served configuration states; the default is DALI's own choice."""
    from damo_yolo.tools.export import ExportOptions
    meta = CheckpointMeta.for_variant("Ns", 2, ["a", "b"])
    assert ExportOptions(target="gpu").serving_config(meta).dali_decode == "auto"
    for path in ("auto", "cuda", "cpu"):
        serving = ExportOptions(target="gpu", dali_decode=path).serving_config(meta)
        assert serving.decoder == "dali" and serving.dali_decode == path
    assert ExportOptions().serving_config(meta).decoding == "opencv"
    assert ExportOptions(preprocess="dali").serving_config(meta).dali_decode == "auto"  # DALI's CPU operators
    with pytest.raises(ValueError, match="unknown --dali-decode 'hardware'"):
        ExportOptions(target="gpu", dali_decode="hardware")
    text = " ".join(_export("--help").stdout.split())
    assert "--dali-decode [auto|cuda|cpu]" in text
