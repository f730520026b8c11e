"""The official model's outputs on fixed random weights (../shared/fixtures/official) are reproduced."""
from __future__ import annotations

import pytest
import torch

from damo_yolo.models import build_model, load_checkpoint

# (scores, boxes px): unfused as loaded, fused after switch_to_deploy (the official converter's form)
TOLERANCES = {"unfused": (1e-4, 0.02), "fused": (1e-3, 0.2)}


@pytest.mark.parametrize("variant", ["Ns", "T"])
def test_outputs_match_official(shared_dir, variant):
    fixtures = shared_dir / "fixtures" / "official"
    model = build_model(variant).eval()
    load_checkpoint(model, fixtures / f"{variant}_weights.pth")
    # trusted file of the shared fixtures (holds a small dict of tensors and strings)
    reference = torch.load(fixtures / f"{variant}_outputs.pt", weights_only=False)
    for stage in ("unfused", "fused"):
        if stage == "fused":
            model.switch_to_deploy()
        score_tol, box_tol = TOLERANCES[stage]
        for name, x in reference["inputs"].items():
            with torch.inference_mode():
                scores, boxes = model(x)
            want = reference["outputs"][stage][name]
            assert scores.shape == want["scores"].shape and boxes.shape == want["boxes"].shape
            score_err = (scores - want["scores"]).abs().max().item()
            box_err = (boxes - want["boxes"]).abs().max().item()
            assert score_err <= score_tol, f"{variant} {stage} {name}: scores differ by {score_err}"
            assert box_err <= box_tol, f"{variant} {stage} {name}: boxes differ by {box_err} px"
