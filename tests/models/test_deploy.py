"""RepConv fusion (deploy mode) keeps the outputs of every variant."""
from __future__ import annotations

import copy

import pytest
import torch
from helpers import random_images, randomize_model
from numerics import max_abs_diff

from damo_yolo.models import RepConv, build_model

# float32 rounding of the random-weight models depends on the CPU: fused against unfused measured 4.7e-4 /
# 0.18 px for M on an AMD EPYC and 1.5e-3 / 0.29 px for L on an Intel CPU. So fusion is checked against the float64
# truth: the fused float32 model may be at most twice as far from it as the unfused float32 model (measured
# 0.8x-1.2x on every variant), plus a floor for variants whose rounding is nearly nil.
FUSED_NOISE_RATIO, SCORE_FLOOR, BOX_FLOOR = 2.0, 1e-5, 1e-3


def _max_diffs(a, b) -> tuple[float, float]:
    return max_abs_diff(a[0], b[0]), max_abs_diff(a[1], b[1])


@pytest.mark.parametrize("name", ["T", "S", "M", "L", "Ns", "Nm", "Nl"])
def test_fused_matches_unfused(name):
    model = randomize_model(build_model(name), seed=1)
    x = random_images((2, 3, 320, 416), seed=2)
    exact = copy.deepcopy(model).double()
    with torch.inference_mode():
        unfused = model(x)
        unfused64 = exact(x.double())
        model.switch_to_deploy()
        exact.switch_to_deploy()
        fused = model(x)
        fused64 = exact(x.double())
    assert model.is_deployed and exact.is_deployed
    assert all(not hasattr(m, "rbr_dense") for m in model.modules() if isinstance(m, RepConv))
    assert unfused[0].std() > 0.05, "degenerate random weights: nothing is compared"

    # The fusion is exact algebra: in float64 both forms agree to rounding.
    score64, box64 = _max_diffs(fused64, unfused64)
    assert score64 < 1e-9 and box64 < 1e-6, (score64, box64)

    # In float32 fusion adds no more than rounding: measured against the float64 truth, on any CPU.
    noise_score, noise_box = _max_diffs(unfused, unfused64)
    score_err, box_err = _max_diffs(fused, fused64)
    assert score_err <= FUSED_NOISE_RATIO * noise_score + SCORE_FLOOR, (score_err, noise_score)
    assert box_err <= FUSED_NOISE_RATIO * noise_box + BOX_FLOOR, (box_err, noise_box)


def test_repconv_fusion_is_exact_for_a_single_block():
    torch.manual_seed(0)
    block = RepConv(8, 16, 3, stride=2, act="relu")
    for bn in (block.rbr_dense.bn, block.rbr_1x1.bn):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_()
    block.eval()
    x = torch.randn(2, 8, 15, 17)
    with torch.no_grad():
        want = block(x)
        block.switch_to_deploy()
        got = block(x)
    assert set(block.state_dict()) == {"rbr_reparam.weight", "rbr_reparam.bias"}
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_build_deploy_form_directly():
    model = build_model("T", deploy=True)
    assert model.is_deployed
    assert not any(".rbr_dense." in k for k in model.state_dict())
