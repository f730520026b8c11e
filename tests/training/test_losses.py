"""QFL / DFL / GIoU and the head criterion against hand-computed values."""
from __future__ import annotations

import math

import torch

from damo_yolo.models import build_model
from damo_yolo.training.losses import DAMOYOLOLoss, distribution_focal_loss, giou_loss, quality_focal_loss


def test_qfl_positive_and_negative_classes():
    scores = torch.tensor([[0.3, 0.6]])
    loss = quality_focal_loss(scores, torch.tensor([1]), torch.tensor([0.8]))
    negative = -math.log(0.7) * 0.3 ** 2  # class 0: BCE(0.3, 0) · 0.3²
    positive = -(0.8 * math.log(0.6) + 0.2 * math.log(0.4)) * 0.2 ** 2  # class 1: BCE(0.6, 0.8) · |0.8 − 0.6|²
    assert math.isclose(loss.item(), negative + positive, rel_tol=1e-5)


def test_qfl_background_only():
    scores = torch.tensor([[0.1, 0.5], [0.2, 0.0]])
    loss = quality_focal_loss(scores, torch.tensor([2, 2]), torch.zeros(2))  # label C = background
    want = [-math.log(0.9) * 0.01 - math.log(0.5) * 0.25, -math.log(0.8) * 0.04]
    assert torch.allclose(loss, torch.tensor(want), rtol=1e-5)


def test_dfl_uniform_distribution_and_exact_bins():
    uniform = distribution_focal_loss(torch.zeros(1, 8), torch.tensor([2.3]))
    assert math.isclose(uniform.item(), math.log(8), rel_tol=1e-6)  # CE = ln 8 for both bins, weights sum to 1
    logits = torch.full((1, 8), -1e4)
    logits[0, 3] = 0
    # target exactly on bin 3: all weight on bin 3, whose probability is 1 → zero loss
    assert distribution_focal_loss(logits, torch.tensor([3.0])).item() < 1e-6


def test_giou_identical_and_disjoint():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    # disjoint: IoU 0, enclosing area 3, union 2 → GIoU = −1/3 → loss 4/3
    assert torch.allclose(giou_loss(a, b), torch.tensor([0.0, 4.0 / 3.0]), atol=1e-6)


def _head_outputs(model, images):
    feats = model.extract_features(images)
    scores, reg_logits, priors = model.head.forward_raw(feats)
    return scores, reg_logits, model.head.decode(reg_logits, priors), priors


def test_images_without_boxes_give_finite_losses_and_gradients():
    model = build_model("Ns", num_classes=4).train()
    criterion = DAMOYOLOLoss(4, model.cfg.reg_max)
    scores, reg_logits, boxes, priors = _head_outputs(model, torch.rand(2, 3, 128, 128) * 255)
    losses = criterion(scores, reg_logits, boxes, priors, [torch.zeros(0, 4)] * 2, [torch.zeros(0)] * 2)
    assert losses["loss_giou"].item() == 0 and losses["loss_dfl"].item() == 0
    total = sum(losses.values())
    assert torch.isfinite(total) and total.item() > 0
    total.backward()
    assert model.head.gfl_cls[0].weight.grad is not None


def test_loss_falls_when_fitting_one_image():
    torch.manual_seed(0)
    model = build_model("Ns", num_classes=2).train()
    criterion = DAMOYOLOLoss(2, model.cfg.reg_max)
    images = torch.rand(1, 3, 128, 128) * 255
    gt_boxes = [torch.tensor([[20.0, 30.0, 70.0, 90.0], [80.0, 10.0, 120.0, 50.0]])]
    gt_labels = [torch.tensor([0, 1])]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(60):
        losses = criterion(*_head_outputs(model, images), gt_boxes, gt_labels)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append({k: v.item() for k, v in losses.items()})
    assert history[0]["loss_giou"] > 0 and history[0]["loss_dfl"] > 0
    first, last = sum(history[0].values()), sum(history[-1].values())
    assert last < 0.4 * first, (first, last)
