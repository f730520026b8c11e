"""Every variant builds with exactly the official state-dict layout and parameter counts."""
from __future__ import annotations

import json

import pytest
import torch

from damo_yolo.models import MODEL_CFGS, build_model, get_model_cfg, list_models

ZOO_VARIANTS = ["T", "S", "M", "L", "Ns", "Nm", "Nl"]


def _reference(shared_dir, name: str) -> dict:
    return json.loads((shared_dir / "specs" / "checkpoint-keys" / f"{name}.json").read_text())


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_zoo_lists_every_variant():
    assert set(ZOO_VARIANTS) <= set(list_models())


@pytest.mark.parametrize("name", list(MODEL_CFGS))
def test_state_dict_matches_official_layout(shared_dir, name):
    ref = _reference(shared_dir, name)
    model = build_model(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert len(ours) == ref["num_keys"]
    assert sorted(set(ref["state_dict"]) - set(ours)) == []
    assert sorted(set(ours) - set(ref["state_dict"])) == []
    assert {k: s for k, s in ours.items() if s != ref["state_dict"][k]} == {}
    assert list(ours) == list(ref["state_dict"]), "registration order differs from the official model"


@pytest.mark.parametrize("name", list(MODEL_CFGS))
def test_parameter_counts(shared_dir, name):
    ref = _reference(shared_dir, name)
    model = build_model(name)
    assert _params(model) == ref["params_unfused"]
    model.switch_to_deploy()
    assert _params(model) == ref["params_fused"]
    assert len(model.state_dict()) == ref["fused_state_dict_num_keys"]


@pytest.mark.parametrize("name,zoo_millions", [("T", 8.5), ("S", 16.3), ("M", 28.2), ("L", 42.1),
                                               ("Ns", 1.41), ("Nm", 2.71), ("Nl", 5.69)])
def test_fused_params_within_one_percent_of_model_zoo(name, zoo_millions):
    fused = _params(build_model(name, deploy=True))
    assert abs(fused / 1e6 - zoo_millions) / zoo_millions < 0.01, f"{name}: {fused:,} vs zoo {zoo_millions}M"


def test_bn_eps_and_momentum_everywhere():
    model = build_model("T")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(bn.eps == 1e-3 and bn.momentum == 0.03 for bn in bns)


@pytest.mark.parametrize("alias", ["ns", "NS", "Ns", "damoyolo_tinynasL18_Ns", "damoyolo_ns"])
def test_names_are_case_insensitive(alias):
    assert get_model_cfg(alias).name == "Ns"


def test_unknown_variant_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown DAMO-YOLO variant 'XL'.*T, S, M, L, Ns, Nm, Nl"):
        build_model("XL")


def test_custom_num_classes_changes_only_the_class_convs():
    model = build_model("Ns", num_classes=3)
    assert model.head.gfl_cls[0].out_channels == 3
    with pytest.raises(ValueError, match="num_classes"):
        build_model("Ns", num_classes=0)


@pytest.mark.parametrize("name", ZOO_VARIANTS)
def test_eval_forward_shapes_batch_1_and_3_non_square(name):
    model = build_model(name).eval()
    with torch.inference_mode():
        for batch in (1, 3):
            scores, boxes = model(torch.rand(batch, 3, 320, 416) * 255)
            n = sum((320 // s) * (416 // s) for s in (8, 16, 32))  # 2730
            assert scores.shape == (batch, n, 80) and boxes.shape == (batch, n, 4)
            assert torch.all((scores >= 0) & (scores <= 1))
            assert torch.all(boxes[..., 2] >= boxes[..., 0]) and torch.all(boxes[..., 3] >= boxes[..., 1])


def test_batch_items_are_independent():
    model = build_model("Ns").eval()
    x = torch.rand(3, 3, 320, 416) * 255
    with torch.inference_mode():
        batched = model(x)
        single = model(x[1:2])
    torch.testing.assert_close(batched[0][1:2], single[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batched[1][1:2], single[1], atol=1e-3, rtol=0)


def test_training_forward_backpropagates_to_every_parameter():
    model = build_model("Ns").train()
    scores, boxes = model(torch.rand(2, 3, 128, 160) * 255)
    (scores.sum() + boxes.sum() * 1e-3).backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert without_grad == []


@pytest.mark.parametrize("name", ZOO_VARIANTS)
def test_structures_have_the_parameter_counts_the_zoo_reports(name):
    from damo_yolo.models.zoo import ZOO_RESULTS
    with torch.device("meta"):
        fused = sum(p.numel() for p in build_model(name, deploy=True).parameters())
    assert round(fused / 1e6, 2 if fused < 6e6 else 1) == ZOO_RESULTS[name].params_m  # as the zoo rounds them
