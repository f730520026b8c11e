"""The official model's outputs on fixed random weights (../shared/fixtures/official) are reproduced:
exactly in float64 on any machine, and within float32 rounding in float32 (tolerances in tests/numerics.py)."""
from __future__ import annotations

import pytest
import torch
from numerics import FLOAT64_BOX_TOL, FLOAT64_SCORE_TOL, assert_float32_close, max_abs_diff

from damo_yolo.models import build_model, load_checkpoint

STAGES = ("unfused", "fused")  # as loaded, then after switch_to_deploy (the official converter's form)


def _load(fixtures, variant: str, name: str) -> dict:
    return torch.load(fixtures / f"{variant}_{name}.pt", weights_only=False)  # trusted shared fixture


def _outputs(fixtures, variant: str, inputs: dict, dtype: torch.dtype):
    """(stage, input name, scores, boxes) of the model on the fixture weights, unfused then fused."""
    model = build_model(variant).eval()
    load_checkpoint(model, fixtures / f"{variant}_weights.pth")
    model.to(dtype)
    for stage in STAGES:
        if stage == "fused":
            model.switch_to_deploy()
        for name, x in inputs.items():
            with torch.inference_mode():
                yield (stage, name, *model(x.to(dtype)))


@pytest.mark.parametrize("variant", ["Ns", "T"])
def test_float64_outputs_equal_official(shared_dir, variant):
    fixtures = shared_dir / "fixtures" / "official"
    reference = _load(fixtures, variant, "outputs64")
    assert reference["dtype"] == "float64"
    for stage, name, scores, boxes in _outputs(fixtures, variant, reference["inputs"], torch.float64):
        want = reference["outputs"][stage][name]
        score_err, box_err = max_abs_diff(scores, want["scores"]), max_abs_diff(boxes, want["boxes"])
        assert score_err <= FLOAT64_SCORE_TOL, f"{variant} {stage} {name}: scores differ by {score_err:.3g}"
        assert box_err <= FLOAT64_BOX_TOL, f"{variant} {stage} {name}: boxes differ by {box_err:.3g} px"


@pytest.mark.parametrize("variant", ["Ns", "T"])
def test_float32_outputs_within_rounding_of_official(shared_dir, variant):
    """float32 as served: within float32 rounding of the official float64 outputs, and of the official
    float32 fixture (made on another CPU)."""
    fixtures = shared_dir / "fixtures" / "official"
    reference64, reference32 = _load(fixtures, variant, "outputs64"), _load(fixtures, variant, "outputs")
    for stage, name, scores, boxes in _outputs(fixtures, variant, reference32["inputs"], torch.float32):
        assert scores.dtype == torch.float32
        for reference in (reference64, reference32):
            want = reference["outputs"][stage][name]
            assert_float32_close(scores, boxes, want["scores"], want["boxes"],
                                 f"{variant} {stage} {name} vs official {reference.get('dtype', 'float32')}")
