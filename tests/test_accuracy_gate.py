"""The CI accuracy gate: the session's synthetic training → PyTorch mAP with pycocotools → the exported
repository served by the real tritonserver → every val image through damo_client → served mAP. Fails when
the served mAP is under the gate or differs from PyTorch's post-processed as the server does (thresholds:
tests/accuracy_gate.py); the PyTorch mAP by the reference's protocol must clear the gate too. A second
test serves a deliberately broken postprocess and shows the gate catches it."""
from __future__ import annotations

import shutil

import pytest
from accuracy_gate import MIN_MAP, gate_failures, gate_report
from serving import running_server

pytestmark = pytest.mark.slow


def _val(trained_synthetic):
    data = trained_synthetic["data"]
    return data / "annotations" / "instances_val.json", data / "val"


def _pytorch(trained_synthetic, served_postprocess: bool) -> dict:
    import damo_yolo.training  # noqa: F401  (registers the mmengine modules)
    from damo_yolo.tools.test import evaluate
    from damo_yolo.training.config import load_config
    return evaluate(load_config(trained_synthetic["config"]), str(trained_synthetic["checkpoint"]),
                    num_workers=0, served_postprocess=served_postprocess)


@pytest.fixture(scope="module")
def pytorch_metrics(trained_synthetic):
    """PyTorch post-processed as the server does (its candidate cap and clipping): what serving must equal."""
    return _pytorch(trained_synthetic, served_postprocess=True)


@pytest.fixture(scope="module")
def served_metrics(served_synthetic, trained_synthetic):
    """The gate's served figures: every val image through damo_client, scored as training scores."""
    from damo_yolo.evaluation import evaluate_served
    return evaluate_served(served_synthetic.http_url, *_val(trained_synthetic))


def test_accuracy_gate(pytorch_metrics, served_metrics, trained_synthetic, capsys):
    served = served_metrics
    official = _pytorch(trained_synthetic, served_postprocess=False)  # the reference's evaluation protocol
    with capsys.disabled():
        print("\n" + gate_report(pytorch_metrics, served) + f"\nPyTorch mAP by the reference's protocol (no "
              f"candidate cap, boxes unclipped): {official['mAP']:.4f}")
    assert not gate_failures(pytorch_metrics["mAP"], served["mAP"]), gate_report(pytorch_metrics, served)
    assert official["mAP"] >= MIN_MAP


BROKEN_POSTPROCESS = '''"""A deliberately broken postprocess for the gate's own test: boxes come back 3 px off."""
import damo_yolo.serving.cpu_pipeline as pipeline

_real = pipeline.postprocess


def _shifted(*args, **kwargs):
    boxes, scores, classes = _real(*args, **kwargs)
    return boxes + 3.0, scores, classes


pipeline.postprocess = _shifted
from damo_yolo.serving.triton.pipeline import TritonPythonModel  # noqa: E402,F401
'''


def test_gate_fails_a_broken_postprocess(pytorch_metrics, served_synthetic, trained_synthetic, tmp_path):
    from damo_yolo.evaluation import evaluate_served
    repo = tmp_path / "triton_models"
    shutil.copytree(served_synthetic.repo, repo)
    (repo / "damo_yolo" / "1" / "model.py").write_text(BROKEN_POSTPROCESS)
    ann, images = _val(trained_synthetic)
    with running_server(repo, tmp_path / "server.log") as server:
        served = evaluate_served(server.http_url, ann, images)
    failures = gate_failures(pytorch_metrics["mAP"], served["mAP"])
    assert failures and any("differs from PyTorch" in f for f in failures), gate_report(pytorch_metrics, served)
    assert served["mAP"] < pytorch_metrics["mAP"] - 0.02


def _damo_client(*args: str, stderr: bool = False):
    """The CLI's stdout (and stderr) after a run that must succeed."""
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "damo_client.cli", *args], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return (run.stdout, run.stderr) if stderr else run.stdout


def test_damo_client_evaluate_reports_the_gates_served_map(served_metrics, served_synthetic, trained_synthetic,
                                                           tmp_path):
    import json
    ann, images = _val(trained_synthetic)
    out = _damo_client("evaluate", str(ann), str(images), "--url", served_synthetic.grpc_url, "--protocol", "grpc",
                       "--json", str(tmp_path / "metrics.json"), "--results", str(tmp_path / "results.json"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["images"] == len(json.loads(ann.read_text())["images"])
    assert metrics["stats"]["AP"] == pytest.approx(served_metrics["mAP"], abs=1e-4), out
    assert f"AP         {served_metrics['mAP']:.4f}" in out
    for name, ap in served_metrics["per_class"].items():
        assert metrics["per_class"][name] == pytest.approx(ap, abs=1e-4)
    assert len(metrics["stats"]) == 12
    # the served repository records the checkpoint's evaluation thresholds (and serves with them here)
    evaluation = _damo_client("evaluate", str(ann), str(images), "--url", served_synthetic.grpc_url, "-p", "grpc",
                              "--thresholds", "evaluation")
    assert "thresholds evaluation" in evaluation and f"AP         {served_metrics['mAP']:.4f}" in evaluation


def test_detect_json_with_annotations_loads_in_pycocotools_as_it_is(served_metrics, served_synthetic,
                                                                   trained_synthetic, tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    ann, images = _val(trained_synthetic)
    detections = tmp_path / "detections.json"
    stray = tmp_path / "stray.jpg"  # an image the annotations do not list: detected, named, left out of the JSON
    shutil.copy(next(images.glob("*.jpg")), stray)
    out, err = _damo_client("detect", str(images), str(stray), "--url", served_synthetic.http_url, "-q", "--json",
                            str(detections), "--annotations", str(ann), stderr=True)
    assert f"{stray}: not an image of {ann} (no file_name matches); left out of --json" in err, err
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        evaluator = COCOeval(gt, gt.loadRes(str(detections)), "bbox")  # the file as written
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(served_metrics["mAP"], abs=1e-4)
