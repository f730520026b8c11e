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


def test_accuracy_gate(pytorch_metrics, served_synthetic, trained_synthetic, capsys):
    from damo_yolo.evaluation import evaluate_served
    ann, images = _val(trained_synthetic)
    served = evaluate_served(served_synthetic.http_url, ann, images)
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
