"""The GPU target end to end, on a GPU host inside the serving container (bash scripts/gpu_smoke.sh [--decode
auto|cuda|cpu] [CHECKPOINT [IMAGES]]): plans of the checkpoint (default: the clone's demo checkpoint; FP16, and INT8
from its Q/DQ ONNX) and of DAMO-YOLO-T (the official layout, weights drawn here from a fixed seed; FP16) exported
with NMS inside, served by the container's tritonserver, and perf_analyzer latency and throughput at concurrency
1 and 8. Nothing beside the clone is needed.

What is compared (damo_yolo/serving/agreement.py): the checkpoint's repositories as they are served — their own
score threshold, NMS IoU and top-K — against onnxruntime (CPU) on the same graph at those settings: the FP32
ONNX for the FP16 plan, the Q/DQ ONNX for the INT8 plan. On IMAGES (default: synthetic shapes on procedural
backgrounds, `damo-synthetic --train 64 --val 200 --size 320 --seed 0` given a backgrounds folder without
photographs, on which the demo checkpoint detects; the INT8 plan is calibrated on its train images; for a COCO
checkpoint give a folder of photographs). Each result names the decoder that served, as the served repository
states it: DALI and where it decoded JPEGs (DAMO_GPU_DECODE, damo-export --dali-decode). The drawn T detects
nothing: it is served for latency and checked to answer within the contract.

Under the smoke command (DAMO_GPU_SMOKE=1) a missing checkpoint, TensorRT or GPU fails the test; elsewhere it is
skipped with the command to run. The command's own checks (each missing piece named in one line) run here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from damo_yolo import contract as C
from damo_yolo.serving import agreement

COMMAND = "bash scripts/gpu_smoke.sh [--decode auto|cuda|cpu] [CHECKPOINT [IMAGES]]"
SMOKE = os.environ.get("DAMO_GPU_SMOKE") == "1"
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_smoke.sh"
DEMO_CHECKPOINT = ROOT / "demo" / "model" / "damoyolo_tinynasL18_Ns_synthetic.pth"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# the default images (damo-synthetic's arguments; enough detections on them: test_the_default_images_...)
SYNTHETIC = ("--train", "64", "--val", "200", "--size", "320", "--seed", "0")
T_SEED = 0


def _missing(what: str):
    """Under the smoke command nothing may be missing; elsewhere the test does not apply."""
    if SMOKE:
        pytest.fail(f"gpu smoke: {what}")
    pytest.skip(f"{what}: run `{COMMAND}` on a GPU host")


def _gpu():
    from damo_yolo.serving.tensorrt_builder import TensorRTUnavailable, gpu_info, import_tensorrt
    try:
        import_tensorrt()
        return gpu_info()
    except TensorRTUnavailable as exc:
        _missing(f"needs an NVIDIA GPU with TensorRT ({str(exc).splitlines()[0][:160]})")


def _images(tmp_path: Path) -> tuple[list[Path], Path]:
    """The images compared on and the folder the INT8 plan is calibrated on."""
    folder = os.environ.get("DAMO_GPU_IMAGES")
    if not folder:  # synthetic shapes on procedural backgrounds: made from the clone alone
        no_photographs = tmp_path / "no-photographs"
        no_photographs.mkdir()
        subprocess.run([sys.executable, "-m", "damo_yolo.data.synthetic", "--out", str(tmp_path / "synthetic"),
                        *SYNTHETIC, "--backgrounds", str(no_photographs)], check=True)
        folder = str(tmp_path / "synthetic" / "val")
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        _missing(f"no images in {folder}")
    train = images[0].parent.parent / "train"
    return images, Path(os.environ.get("DAMO_GPU_CALIBRATION", train if train.is_dir() else images[0].parent))


def drawn_t(path: Path) -> Path:
    """DAMO-YOLO-T with weights drawn from a fixed seed, saved in the official layout (no metadata: the exporter
    recognises the variant from the weights)."""
    import torch

    from damo_yolo.models import build_model, save_checkpoint
    torch.manual_seed(T_SEED)
    return save_checkpoint(path, build_model("T"))


@pytest.mark.gpu
def test_plans_serve_what_the_model_detects(tmp_path):
    gpu = _gpu()
    checkpoint = os.environ.get("DAMO_GPU_CHECKPOINT") or str(DEMO_CHECKPOINT)
    if not Path(checkpoint).is_file():
        _missing(f"set DAMO_GPU_CHECKPOINT to a checkpoint file (got {checkpoint!r})")
    decode = os.environ.get("DAMO_GPU_DECODE") or "auto"
    if decode not in C.DALI_DECODE_PATHS:
        _missing(f"DAMO_GPU_DECODE={decode}: choose {' or '.join(C.DALI_DECODE_PATHS)}")

    from damo_client.perf import format_rows, run_perf_analyzer
    from damo_yolo.models import load_model
    from damo_yolo.serving.onnx_export import export_onnx
    from damo_yolo.serving.quantize import quantize_onnx
    from damo_yolo.serving.tritonserver import LocalServer
    from damo_yolo.tools.export import ExportOptions, export_repository
    images, calibration = _images(tmp_path)
    datas = [p.read_bytes() for p in images]
    model, meta = load_model(checkpoint)
    size = tuple(meta.input_size)
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", input_size=size)
    qdq = quantize_onnx(fp32, tmp_path / "int8.onnx", calibration, size, meta.resize, meta.pad_value)

    repo = tmp_path / "triton_models"
    gpu_options = ExportOptions(target="gpu", dali_decode=decode)
    export_repository(Path(checkpoint), repo, gpu_options, name="damo_yolo", precision="fp16")
    export_repository(Path(checkpoint), repo, gpu_options, name="damo_yolo_int8", precision="int8",
                      calibration_images=calibration)
    export_repository(drawn_t(tmp_path / "T_drawn.pth"), repo, gpu_options, name="damo_yolo_t", precision="fp16")
    decoding = gpu_options.serving_config(meta).decoding  # what the repositories state, e.g. "dali (JPEG: cuda)"
    failures = []
    with LocalServer(repo, tmp_path / "server.log", ready_timeout=600) as server:
        for name, onnx_path, tol in (("damo_yolo", fp32, agreement.FP16), ("damo_yolo_int8", qdq, agreement.INT8)):
            result = agreement.check_served(server.http_url, name, onnx_path, datas, tol)
            problems = result.failures(tol) + ([] if result.decoding == decoding else
                                               [f"served with {result.decoding}, exported with {decoding}"])
            print(f"\n{name} on {gpu.name} (compute {gpu.compute_capability}), {len(datas)} images: {result} — "
                  f"{'PASS' if not problems else 'FAIL: ' + '; '.join(problems)}")
            failures += [f"{name}: {p}" for p in problems]
        served_t, settings_t = agreement.served_detections(server.http_url, "damo_yolo_t", datas[:8])
        print(f"\ndamo_yolo_t (drawn weights) answered {sum(len(b) for b, _, _ in served_t)} detections on 8 "
              f"images, decoded by {settings_t.decoding}")
        if any(len(boxes) > settings_t.max_detections for boxes, _, _ in served_t):
            failures.append("damo_yolo_t: more detections than its top-K")
        for name in ("damo_yolo", "damo_yolo_int8", "damo_yolo_t"):
            rows = run_perf_analyzer(datas[:16], server.http_url, model=name, concurrency="1:8:7",
                                     measurement_interval_ms=3000)
            print(f"\n{name} perf_analyzer ({decoding})\n{format_rows(rows)}")
    assert not failures, f"plans differ from the model beyond the tolerances: {failures}"


@pytest.mark.slow
def test_the_default_images_give_the_comparison_enough_detections(tmp_path, monkeypatch, capsys):
    """The smoke command's default images, made here as it makes them (no photographs): the demo checkpoint (its
    exported graph in triton_models/, onnxruntime, at the served defaults) gives the comparison several times
    the detections it needs away from the threshold, so a plan that loses a few still has enough."""
    from damo_yolo.serving.repository import repository_serving
    monkeypatch.delenv("DAMO_GPU_IMAGES", raising=False)
    monkeypatch.delenv("DAMO_GPU_CALIBRATION", raising=False)
    images, calibration = _images(tmp_path)
    assert len(images) == 200 and len(list(calibration.glob("*.jpg"))) == 64
    serving = repository_serving(ROOT / "triton_models")  # the served defaults damo-export gives the checkpoint
    reference = agreement.reference_detections(ROOT / "triton_models" / "damo_yolo" / "1" / C.MODEL_FILE,
                                               [p.read_bytes() for p in images], serving)
    floor = serving.score_threshold + agreement.FP16.margin
    compared = sum(int((scores >= floor).sum()) for _, scores, _ in reference)
    with capsys.disabled():
        print(f"\nsmoke default images: the demo checkpoint gives {compared} detections to compare on {len(images)} "
              f"images (at least {agreement.FP16.min_compared} needed)")
    assert compared >= 4 * agreement.FP16.min_compared


# --- the command's own checks, on a stand-in host: a PATH of the tools it uses and fakes of the host's pieces ---
TOOLS = ("sed", "dirname", "realpath", "find", "head", "grep", "tr")  # what the script runs besides bash
GPU_LIST = "GPU 0: NVIDIA L4 (UUID: GPU-00000000-0000-0000-0000-000000000000)"
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
             "NVIDIA driver is installed and running.")


def _fake(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _host(tmp_path: Path, driver: str = "list", docker: str = "nvidia", toolkit: bool = False) -> dict:
    """The environment of a stand-in host. driver: "list" (nvidia-smi lists a GPU), "fails" or "none"; docker:
    "nvidia" (a daemon with the nvidia runtime), "runc" (a daemon without it), "down" (no daemon) or "none";
    toolkit: nvidia-container-cli installed. ``docker run`` writes its arguments to docker-run.txt."""
    bin_dir = tmp_path / "bin"
    shutil.rmtree(bin_dir, ignore_errors=True)
    bin_dir.mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool), bin_dir / tool)
    if driver == "list":
        _fake(bin_dir, "nvidia-smi", f'echo "{GPU_LIST}"')
    elif driver == "fails":
        _fake(bin_dir, "nvidia-smi", f'echo "{NO_DRIVER}"; exit 9')
    if docker != "none":
        runtimes = {"nvidia": '{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}',
                    "runc": '{"runc":{"path":"runc"}}', "down": ""}[docker]
        info = (f"echo '{runtimes}'" if runtimes else
                'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1')
        _fake(bin_dir, "docker", f'case "$1" in\n  info) {info} ;;\n'
                                 f'  run) printf "%s\\n" "$@" > "{tmp_path}/docker-run.txt" ;;\nesac')
    if toolkit:
        _fake(bin_dir, "nvidia-container-cli", "exit 0")
    return {"PATH": str(bin_dir), "LANG": "C.UTF-8"}


def _smoke(env: dict, *args, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(script), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=env.get("CWD", ROOT), timeout=60)


def _refused(run: subprocess.CompletedProcess, code: int = 1) -> str:
    """The one line on stderr of a run that stopped with ``code``."""
    lines = run.stderr.splitlines()
    assert run.returncode == code and len(lines) == 1, (run.returncode, run.stdout, run.stderr)
    return lines[0]


@pytest.mark.parametrize("args,reason", [
    (["--decode", "hardware"], "(--decode hardware: choose auto, cuda or cpu)"),
    (["--decode"], "(--decode needs a value)"),
    (["--verbose"], "(unknown option --verbose)"),
    (["a.pth", "images", "more"], "(at most CHECKPOINT and IMAGES)")],
    ids=["bad-decode", "decode-without-value", "unknown-option", "three-arguments"])
def test_usage_errors_exit_2_in_one_line(tmp_path, args, reason):
    line = _refused(_smoke(_host(tmp_path), *args), code=2)
    assert line == f"usage: {COMMAND} {reason}"


def test_a_copy_outside_a_clone_says_so(tmp_path):
    (tmp_path / "elsewhere" / "scripts").mkdir(parents=True)
    copy = Path(shutil.copy(SCRIPT, tmp_path / "elsewhere" / "scripts" / "gpu_smoke.sh"))
    line = _refused(_smoke(_host(tmp_path), script=copy))
    assert line == f"gpu_smoke: {tmp_path / 'elsewhere'} is not a damo-yolo clone (no setup.py or " \
                   f"damo_yolo/serving/platform.py): run the clone's script"


def test_files_are_checked_before_the_host(tmp_path):
    """A wrong CHECKPOINT or IMAGES is named first, on a host that has neither a driver nor docker."""
    bare = _host(tmp_path, driver="none", docker="none")
    (tmp_path / "folder.pth").mkdir()
    (tmp_path / "no_images").mkdir()
    (tmp_path / "no_images" / "notes.txt").write_text("not an image")
    assert _refused(_smoke(bare, tmp_path / "none.pth")) == f"gpu_smoke: checkpoint {tmp_path}/none.pth is not a file"
    assert _refused(_smoke(bare, tmp_path / "folder.pth")) == \
        f"gpu_smoke: checkpoint {tmp_path}/folder.pth is not a file"
    assert _refused(_smoke(bare, DEMO_CHECKPOINT, tmp_path / "nowhere")) == \
        f"gpu_smoke: IMAGES {tmp_path}/nowhere is not a folder"
    assert _refused(_smoke(bare, DEMO_CHECKPOINT, tmp_path / "no_images")) == \
        f"gpu_smoke: IMAGES {tmp_path}/no_images holds no .jpg, .jpeg or .png image"
    # with its files right, the same host is refused for its first missing piece
    assert "no NVIDIA driver" in _refused(_smoke(bare))


@pytest.mark.parametrize("host,line", [
    (dict(driver="none"), "gpu_smoke: no NVIDIA driver: nvidia-smi is not installed (install the GPU's driver)"),
    (dict(driver="fails"), f"gpu_smoke: nvidia-smi finds no GPU: {NO_DRIVER}"),
    (dict(docker="none"), "gpu_smoke: docker is not installed (install Docker Engine)"),
    (dict(docker="down"), "gpu_smoke: docker cannot reach its daemon: start it, or run as a user allowed to use it "
                          "(docker info failed)"),
    (dict(docker="runc"), "gpu_smoke: the NVIDIA Container Toolkit is not installed (docker info lists no nvidia "
                          "runtime and there is no nvidia-container-cli): docker run --gpus needs it")],
    ids=["no-driver", "no-gpu", "no-docker", "no-daemon", "no-toolkit"])
def test_each_missing_piece_of_the_host_is_named_in_one_line(tmp_path, host, line):
    assert _refused(_smoke(_host(tmp_path, **host))) == line
    assert not (tmp_path / "docker-run.txt").exists()


@pytest.mark.parametrize("host", [dict(docker="nvidia"), dict(docker="runc", toolkit=True)],
                         ids=["nvidia-runtime", "toolkit-cli"])
def test_a_complete_host_runs_the_pinned_container_on_the_clone_alone(tmp_path, host):
    """The toolkit found through the daemon's nvidia runtime, or through its CLI (``--gpus`` needs no runtime
    entry): the pinned container runs with the GPUs, the clone, the demo checkpoint by default and the decode
    switch, and no ../shared."""
    from damo_yolo.serving import platform
    run = _smoke(_host(tmp_path, **host), "--decode", "cuda")
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert run.stdout.startswith(f"[gpu_smoke] {platform.CONTAINER} on {GPU_LIST}; checkpoint {DEMO_CHECKPOINT};")
    argv = (tmp_path / "docker-run.txt").read_text().splitlines()
    assert argv[:5] == ["run", "--rm", "--gpus", "all", "--shm-size"]
    assert argv[-4:] == [platform.CONTAINER, "bash", "/src/scripts/gpu_smoke.sh", "--in-container"]
    assert f"{ROOT}:/src:ro" in argv and f"{DEMO_CHECKPOINT}:/checkpoint.pth:ro" in argv
    assert "DAMO_GPU_DECODE=cuda" in argv and "DAMO_GPU_SMOKE=1" in argv and "DAMO_GPU_IMAGES=" in argv
    assert not any("shared" in a for a in argv), argv
    images = tmp_path / "photos"
    images.mkdir()
    (images / "a.JPG").write_bytes(b"\xff\xd8\xff")
    assert _smoke(dict(_host(tmp_path, **host), DAMO_GPU_DECODE="cpu"), DEMO_CHECKPOINT, images).returncode == 0
    argv = (tmp_path / "docker-run.txt").read_text().splitlines()
    assert f"{images}:/images:ro" in argv and "DAMO_GPU_IMAGES=/images" in argv and "DAMO_GPU_DECODE=cpu" in argv


def test_inside_the_container_python3_must_be_the_python_backends(tmp_path):
    """The stub links libpython of the Python it embeds: another python3 is refused before anything installs."""
    env = _host(tmp_path)
    os.symlink(sys.executable, Path(env["PATH"]) / "python3")
    stub = tmp_path / "triton_python_backend_stub"
    env["DAMO_PYTHON_STUB"] = str(stub)
    assert _refused(_smoke(env, "--in-container")) == \
        f"gpu_smoke: {stub} is not here: --in-container runs inside the serving container"
    stub.write_bytes(b"\x7fELF")
    _fake(Path(env["PATH"]), "ldd", 'echo "\tlibpython3.99.so.1.0 => /usr/lib/libpython3.99.so.1.0 (0x00007f)"')
    have = "%d.%d" % sys.version_info[:2]
    assert _refused(_smoke(env, "--in-container")) == \
        f"gpu_smoke: the container's python3 is Python {have}, but its python backend stub links libpython3.99: " \
        f"the project would be installed for another Python than the one serving it"
    _fake(Path(env["PATH"]), "ldd", 'echo "\tlibc.so.6 => /lib/libc.so.6 (0x00007f)"')
    assert _refused(_smoke(env, "--in-container")) == \
        f"gpu_smoke: ldd {stub} names no libpython: cannot tell which Python the python backend runs"


def test_the_container_steps_pin_what_a_bare_container_lacks():
    """Inside the container: python3 only; the pinned setuptools installed beside Ubuntu's; torch as the CPU build
    before the project; perf_analyzer's libb64 from Ubuntu and, in a container of another CUDA major, its
    libcudart.so.12 from NVIDIA's wheel; nothing from ../shared."""
    from damo_yolo.serving import platform
    script = SCRIPT.read_text()
    image = subprocess.run(["sed", "-n", 's/^CONTAINER = "\\(.*\\)"/\\1/p',
                            str(ROOT / "damo_yolo/serving/platform.py")], capture_output=True, text=True).stdout.strip()
    assert image == platform.CONTAINER
    assert "DAMO_TRITONSERVER=/opt/tritonserver/bin/tritonserver" in script and "DAMO_GPU_SMOKE=1" in script
    commands = [line.split()[0] for line in script.splitlines() if line.strip().startswith(("python", "pip"))]
    assert commands and all(c == "python3" for c in commands), commands
    steps = [line.strip() for line in script.splitlines() if line.strip().startswith("python3 -m pip install")]
    assert steps[0] == 'python3 -m pip install -q --ignore-installed "setuptools>=77.0.3,<81"'
    assert steps[1] == "python3 -m pip install -q --index-url https://download.pytorch.org/whl/cpu torch==2.13.0"
    assert '".[export,gpu,test]"' in steps[2] and steps[3] == 'python3 -m pip install -q "$CUDART12"'
    assert 'CUDART12="nvidia-cuda-runtime-cu12==' in script and "libb64-0d" in script
    assert "shared" not in script


def test_the_smoke_test_fails_instead_of_skipping_under_the_smoke_command(tmp_path):
    """No GPU here: under DAMO_GPU_SMOKE=1 the GPU test must fail, naming what is missing."""
    env = dict(os.environ, DAMO_GPU_SMOKE="1", DAMO_GPU_CHECKPOINT=str(tmp_path / "none.pth"))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", __file__],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout[-2000:]
    assert "gpu smoke: needs an NVIDIA GPU with TensorRT" in run.stdout
