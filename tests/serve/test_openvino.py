"""The CPU target's detector on Intel's OpenVINO (`damo-export --cpu-runtime openvino`): the repository records the
runtime, the real tritonserver serves it through the same python-backend model, the server's log names the runtime
and the inference precision OpenVINO chose on this CPU (bfloat16 where it has AVX-512 BF16 or AMX), and the COCO mAP
on the synthetic val set stays within half a point of onnxruntime's FP32, for the FP32 graph at OpenVINO's default
precision and for the CPU INT8 graph."""
from __future__ import annotations

import numpy as np
import pytest
from serving import running_server

MAX_MAP_DROP = 0.005  # against onnxruntime FP32, mAP@[.5:.95] absolute
MODELS = {"fp32": "fp32", "int8": "int8"}  # model name → precision, both on OpenVINO


@pytest.fixture(scope="module")
def openvino_repository(trained_synthetic, tmp_path_factory):
    from damo_yolo.tools.export import export_repository
    repo = tmp_path_factory.mktemp("openvino") / "triton_models"
    for name, precision in MODELS.items():
        export_repository(trained_synthetic["checkpoint"], repo, name=name, thresholds="evaluation",
                          precision=precision, cpu_runtime="openvino",
                          calibration_images=trained_synthetic["data"] / "train" if precision == "int8" else None)
    return repo


def test_the_repository_records_the_runtime(openvino_repository):
    from damo_yolo.serving.repository import repository_serving
    assert {repository_serving(openvino_repository, name).runtime for name in MODELS} == {"openvino"}


def test_an_int8_export_serves_the_runtime_it_measured_faster(trained_synthetic, tmp_path):
    """``--cpu-runtime auto``, INT8's default: the export times the Q/DQ detector on onnxruntime and on OpenVINO on
    its host, beside the FP32 graph, serves the faster, and records the timings with the CPU; where INT8 gains
    nothing (slower than 0.95 of FP32's time on both) it serves the FP32 graph and says so. ``damo-client models``
    shows the choice. Asked for, the weights keep to 7 bits (reduce_range, for serving CPUs without VNNI), also in
    the record."""
    import onnx
    from click.testing import CliRunner
    from onnx import numpy_helper

    from damo_yolo.serving.quantize import is_quantized
    from damo_yolo.serving.repository import repository_serving, repository_summary
    from damo_yolo.tools.export import NO_GAIN, export_repository
    said: list[str] = []
    repo = export_repository(trained_synthetic["checkpoint"], tmp_path / "triton_models", precision="int8",
                             calibration_images=trained_synthetic["data"] / "train", reduce_range=True,
                             progress=said.append)
    record, serving = repository_summary(repo), repository_serving(repo)
    choice = record["runtime_choice"]
    print(f"\n[auto] {choice}")
    assert set(choice["median_ms"]) == {"onnxruntime", "openvino"} and choice["runs"] >= 10, choice
    assert choice["chosen"] == min(choice["median_ms"], key=choice["median_ms"].get) and "avx" in choice["cpu"]
    gains_nothing = choice["median_ms"][choice["chosen"]] > NO_GAIN * choice["fp32_onnxruntime_ms"]
    onnx_path = repo / "damo_yolo" / "1" / "model.onnx"
    assert record["quantization"]["reduce_range"] is True  # measured either way
    if gains_nothing:
        assert choice["served"] == "fp32" and record["quantization"]["served"] is False, record
        assert (serving.precision, serving.runtime, serving.reduce_range) == ("fp32", "onnxruntime", False)
        assert not is_quantized(onnx_path)
        assert any(line.startswith("note: INT8 gains nothing here") and "serving FP32 on onnxruntime" in line
                   for line in said), said
    else:
        assert choice["served"] == "int8" and (serving.precision, serving.runtime) == ("int8", choice["chosen"])
        assert serving.reduce_range and any(line.startswith(f"serving on {choice['chosen']}: ") for line in said)
        graph = onnx.load(str(onnx_path)).graph
        weights = [numpy_helper.to_array(t) for t in graph.initializer
                   if t.data_type == onnx.TensorProto.INT8 and t.dims]
        assert weights and max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    with running_server(repo, tmp_path / "server.log") as server:
        from damo_client.cli import cli
        shown = CliRunner().invoke(cli, ["models", "--url", server.http_url.replace("http://", "")])
    assert shown.exit_code == 0, shown.output
    if gains_nothing:
        assert "FP32 served: INT8 gained nothing on " in shown.output and "INT8: cpu layout" not in shown.output
    else:
        assert f"runtime chosen at export: {choice['chosen']}, the faster on " in shown.output, shown.output
        assert "7-bit weights (reduce_range)" in shown.output, shown.output


def test_an_int8_export_that_gains_nothing_serves_fp32(trained_synthetic, tmp_path, monkeypatch):
    """The FP32 fallback of ``auto`` taken for certain: with the INT8 timed as slow as FP32 (NO_GAIN above 1), the
    repository serves the FP32 graph on onnxruntime, the INT8 measured beside it in the record."""
    from damo_yolo.serving.quantize import is_quantized
    from damo_yolo.serving.repository import repository_serving, repository_summary
    from damo_yolo.tools import export
    monkeypatch.setattr(export, "NO_GAIN", 0.0)  # any INT8 time is "no gain"
    repo = export.export_repository(trained_synthetic["checkpoint"], tmp_path / "triton_models", precision="int8",
                                    calibration_images=trained_synthetic["data"] / "train")
    serving, record = repository_serving(repo), repository_summary(repo)
    assert (serving.precision, serving.runtime) == ("fp32", "onnxruntime")
    assert record["runtime_choice"]["served"] == "fp32" and record["quantization"]["served"] is False
    assert not is_quantized(repo / "damo_yolo" / "1" / "model.onnx")


def test_an_int8_repository_warns_on_a_cpu_without_vnni():
    from damo_yolo.contract import ServingConfig
    from damo_yolo.serving.cpu_pipeline import int8_warning
    int8 = ServingConfig(input_size=(64, 64), class_names=("a",), precision="int8")
    assert "export with --reduce-range" in int8_warning(int8, {"avx2", "fma"})
    assert int8_warning(int8, {"avx2", "avx512_vnni"}) is None
    assert int8_warning(ServingConfig(input_size=(64, 64), class_names=("a",), precision="int8", reduce_range=True),
                        {"avx2"}) is None


def test_the_gpu_target_takes_no_cpu_runtime():
    from damo_yolo.tools.export import ExportOptions
    with pytest.raises(ValueError, match="--cpu-runtime openvino is for --target cpu"):
        ExportOptions(target="gpu", cpu_runtime="openvino")


@pytest.mark.slow
def test_openvino_served_keeps_the_onnxruntime_map(openvino_repository, served_synthetic, trained_synthetic,
                                                   capsys):
    import openvino as ov

    from damo_yolo.evaluation import evaluate_served
    data = trained_synthetic["data"]
    ann, images = data / "annotations" / "instances_val.json", data / "val"
    reference = evaluate_served(served_synthetic.http_url, ann, images)  # onnxruntime FP32
    log = openvino_repository.parent / "server.log"
    with running_server(openvino_repository, log, model="int8") as server:
        found = {name: evaluate_served(server.http_url, ann, images, model=name) for name in MODELS}
    expected = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()  # this CPU's default
    text = log.read_text()
    for name, precision in MODELS.items():
        assert (f"{name}_0_0: the detector runs on openvino {ov.__version__} ({precision} graph, inference "
                f"precision {expected})") in text, text[-3000:]
    with capsys.disabled():  # the measurement belongs in CI's log
        print(f"\nsynthetic val, served on the CPU: onnxruntime FP32 mAP {reference['mAP']:.4f}; OpenVINO "
              f"(default precision {expected} here) FP32 {found['fp32']['mAP']:.4f}, INT8 {found['int8']['mAP']:.4f}"
              f" (limit: {MAX_MAP_DROP} below)")
    for name in MODELS:
        assert reference["mAP"] - found[name]["mAP"] <= MAX_MAP_DROP, (name, found[name]["mAP"], reference["mAP"])
