"""AlignedOTA on hand-built cases (4x4 priors at stride 8: points 0, 8, 16, 24 on each axis)."""
from __future__ import annotations

import torch

from damo_yolo.models.heads import make_priors
from damo_yolo.training.assigner import AlignOTAAssigner

PRIORS = make_priors([(4, 4)], (8,))  # (x, y, stride), row-major
CENTRE = 5  # the prior at (8, 8)


def _far_boxes(n: int) -> torch.Tensor:
    return torch.tensor([[100.0, 100.0, 110.0, 110.0]]).repeat(n, 1)  # IoU 0 with every GT below


def test_no_ground_truth_gives_all_negatives():
    result = AlignOTAAssigner().assign(torch.rand(16, 3), PRIORS, _far_boxes(16), torch.zeros(0, 4),
                                       torch.zeros(0, dtype=torch.long))
    assert not result.pos_mask.any() and (result.labels == -1).all() and (result.max_overlaps == 0).all()


def test_the_only_prior_in_box_and_centre_is_matched():
    gt = torch.tensor([[0.0, 0.0, 16.0, 16.0]])  # strictly inside: only (8, 8); centre region: every prior
    boxes = _far_boxes(16)
    boxes[CENTRE] = gt[0]  # a perfect prediction: IoU 1 → dynamic k = ⌊1⌋ = 1
    result = AlignOTAAssigner().assign(torch.full((16, 3), 0.1), PRIORS, boxes, gt, torch.tensor([2]))
    assert result.pos_mask.nonzero().flatten().tolist() == [CENTRE]
    assert result.gt_inds[CENTRE] == 1 and result.labels[CENTRE] == 2
    assert torch.isclose(result.max_overlaps[CENTRE], torch.tensor(1.0), atol=1e-5)


def test_dynamic_k_takes_several_priors_for_well_predicted_boxes():
    gt = torch.tensor([[0.5, 0.5, 20.0, 20.0]])  # strictly inside: (8, 8), (16, 8), (8, 16), (16, 16)
    inside = [5, 6, 9, 10]
    boxes = _far_boxes(16)
    boxes[inside] = gt[0]  # four perfect predictions: k = ⌊4⌋ = 4
    result = AlignOTAAssigner().assign(torch.full((16, 1), 0.5), PRIORS, boxes, gt, torch.tensor([0]))
    assert sorted(result.pos_mask.nonzero().flatten().tolist()) == inside


def test_a_prior_claimed_twice_keeps_the_cheaper_gt():
    gts = torch.tensor([[0.0, 0.0, 16.0, 16.0], [2.0, 2.0, 14.0, 14.0]])  # both contain only (8, 8)
    boxes = _far_boxes(16)
    boxes[CENTRE] = torch.tensor([2.0, 2.0, 14.0, 14.0])  # IoU 1 with GT 2, 144/256 with GT 1
    result = AlignOTAAssigner().assign(torch.full((16, 2), 0.2), PRIORS, boxes, gts, torch.tensor([0, 1]))
    assert result.pos_mask.nonzero().flatten().tolist() == [CENTRE]
    assert result.gt_inds[CENTRE] == 2 and result.labels[CENTRE] == 1


def test_priors_outside_every_region_stay_negative():
    gt = torch.tensor([[0.0, 0.0, 4.0, 4.0]])  # centre (2, 2), radius 20 → x, y < 22: prior 24 is outside
    result = AlignOTAAssigner().assign(torch.rand(16, 1), PRIORS, _far_boxes(16), gt, torch.tensor([0]))
    valid, _ = AlignOTAAssigner()._candidates(PRIORS, gt)
    assert not valid[[3, 7, 11, 12, 13, 14, 15]].any() and valid[[0, 1, 2, 4, 5, 6, 8, 9, 10]].all()
    # no prior is strictly inside the 4x4 box: every candidate costs 1e8 extra, yet the GT still gets one
    assert result.pos_mask.sum() == 1
