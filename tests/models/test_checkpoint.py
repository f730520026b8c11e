"""Checkpoint files: round trip, official layouts, and clear errors for files that do not fit."""
from __future__ import annotations

import pytest
import torch
from helpers import random_images, randomize_model

from damo_yolo.models import (
    CheckpointError,
    CheckpointMeta,
    build_model,
    infer_variant,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

X = random_images((1, 3, 320, 416), seed=0)


def _outputs(model):
    with torch.inference_mode():
        return model.eval()(X)


@pytest.fixture(scope="module")
def trained_like():
    return randomize_model(build_model("Ns"), seed=3)


def test_round_trip_is_exact(tmp_path, trained_like):
    meta = CheckpointMeta.for_variant("Ns")
    meta = meta.replace(class_names=("pedestrian",) + meta.class_names[1:], metrics={"coco/mAP": 0.5}, epoch=7)
    path = save_checkpoint(tmp_path / "ckpt.pth", trained_like, meta=meta, epoch=7)
    fresh = build_model("Ns")
    loaded_meta = load_checkpoint(fresh, path)
    assert loaded_meta == meta
    for got, want in zip(_outputs(fresh), _outputs(trained_like)):
        assert torch.equal(got, want)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"], "temporary files left behind"


def test_official_layouts_load(tmp_path, trained_like):
    state = trained_like.state_dict()
    want = _outputs(trained_like)
    layouts = {
        "bare.pth": state,
        "official.pth": {"epoch": 300, "model": state, "optimizer": {"state": {}}, "feature_loss": None},
        "ddp.pth": {"model": {f"module.{k}": v for k, v in state.items()}},
    }
    for name, payload in layouts.items():
        torch.save(payload, tmp_path / name)
        fresh = build_model("Ns")
        meta = load_checkpoint(fresh, tmp_path / name)
        assert meta.variant == "Ns" and meta.resize == "stretch" and len(meta.class_names) == 80
        for got, ref in zip(_outputs(fresh), want):
            assert torch.equal(got, ref), name
        model, meta = load_model(tmp_path / name)  # the variant recognised from the weights alone
        assert meta == CheckpointMeta.for_variant("Ns") and not model.training
        for got, ref in zip(_outputs(model), want):
            assert torch.equal(got, ref), name


def test_legacy_81_class_head_keeps_the_real_classes(tmp_path, trained_like):
    state = dict(trained_like.state_dict())
    for i in range(3):
        for kind in ("weight", "bias"):
            key = f"head.gfl_cls.{i}.{kind}"
            state[key] = torch.cat([state[key], torch.zeros_like(state[key][:1])])
    torch.save({"model": state}, tmp_path / "legacy.pth")
    fresh = build_model("Ns")
    load_checkpoint(fresh, tmp_path / "legacy.pth")
    assert torch.equal(fresh.head.gfl_cls[0].weight, trained_like.head.gfl_cls[0].weight)


def test_fused_checkpoint_loads_into_a_new_model(tmp_path):
    source = randomize_model(build_model("T"), seed=4).switch_to_deploy()
    save_checkpoint(tmp_path / "fused.pth", source)
    fresh = build_model("T")
    load_checkpoint(fresh, tmp_path / "fused.pth")
    assert fresh.is_deployed
    for got, want in zip(_outputs(fresh), _outputs(source)):
        assert torch.equal(got, want)


def test_unfused_checkpoint_into_fused_model_explains(tmp_path, trained_like):
    save_checkpoint(tmp_path / "t.pth", build_model("T"))
    with pytest.raises(CheckpointError, match="before switch_to_deploy"):
        load_checkpoint(build_model("T", deploy=True), tmp_path / "t.pth")


def test_wrong_key_is_named(tmp_path, trained_like):
    state = dict(trained_like.state_dict())
    state["neck.merge_3.conv1.conv.weigth"] = state.pop("neck.merge_3.conv1.conv.weight")
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_model("Ns"), tmp_path / "bad.pth")
    text = str(err.value)
    assert "missing keys: neck.merge_3.conv1.conv.weight" in text
    assert "unexpected keys: neck.merge_3.conv1.conv.weigth" in text


def test_wrong_shape_is_named(tmp_path, trained_like):
    state = dict(trained_like.state_dict())
    state["head.gfl_reg.1.weight"] = torch.zeros(32, 81, 1, 1)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatches: head\.gfl_reg\.1\.weight \(checkpoint "
                                              r"\(32, 81, 1, 1\) vs model \(32, 80, 1, 1\)\)"):
        load_checkpoint(build_model("Ns"), tmp_path / "bad.pth")


def test_other_variant_is_refused(tmp_path, trained_like):
    save_checkpoint(tmp_path / "ns.pth", trained_like)
    with pytest.raises(CheckpointError, match="does not fit DAMO-YOLO-Nm: .*shape mismatches"):
        load_checkpoint(build_model("Nm"), tmp_path / "ns.pth")


@pytest.mark.parametrize("damage,message", [
    ("truncated", "the file is truncated or corrupt"), ("empty", r"is empty \(0 bytes\)"),
    ("text", "not a PyTorch checkpoint: .* is a text file"),
    ("image", "not a PyTorch checkpoint: .* is a JPEG image"),
])
def test_damaged_files_fail_clearly(tmp_path, trained_like, damage, message):
    path = save_checkpoint(tmp_path / "ckpt.pth", trained_like)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "text": b"not a checkpoint\n" * 9,
                      "image": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"}[damage])
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(build_model("Ns"), path)


def test_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a DAMO-YOLO checkpoint"):
        load_checkpoint(build_model("Ns"), tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(build_model("Ns"), tmp_path / "missing.pth")


def test_failed_save_keeps_the_previous_file(tmp_path, trained_like):
    path = save_checkpoint(tmp_path / "ckpt.pth", trained_like)
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(path, trained_like, unpicklable=lambda: None)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_pickled_objects_need_trust(tmp_path, trained_like):
    import argparse
    torch.save({"model": trained_like.state_dict(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "obj.pth")
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace.*trusted=True"):
        load_checkpoint(build_model("Ns"), tmp_path / "obj.pth")
    load_checkpoint(build_model("Ns"), tmp_path / "obj.pth", trusted=True)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoint_gets_the_umask_mode(tmp_path, trained_like, umask):
    """As any file the user writes (0644 under the usual umask), not the temporary file's 0600."""
    import os
    import stat
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "ckpt.pth", trained_like)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("variant", ["T", "S", "Ns", "Nm", "Nl"])
def test_variant_is_recognised_from_the_weights(variant):
    assert infer_variant(build_model(variant, num_classes=7).state_dict()) == variant
    assert infer_variant(build_model(variant, deploy=True).state_dict()) == variant  # fused files too


def test_load_model_reads_the_projects_metadata_and_checks_a_named_variant(tmp_path, trained_like):
    meta = CheckpointMeta.for_variant("Ns").replace(input_size=(320, 320), resize="letterbox")
    path = save_checkpoint(tmp_path / "ckpt.pth", trained_like, meta)
    model, loaded = load_model(path)
    assert loaded == meta and model.cfg.name == "Ns"
    with pytest.raises(CheckpointError, match="holds DAMO-YOLO-Ns .* not T"):
        load_model(path, variant="T")


def test_another_variants_checkpoint_is_named_briefly(tmp_path):
    save_checkpoint(tmp_path / "t.pth", build_model("T"))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_model("S"), tmp_path / "t.pth")
    text = str(err.value)
    assert len(text) < 1000 and "in all" in text and "the weights are DAMO-YOLO-T's (variant T)" in text
    assert len(err.value.details) > 10 * len(text)  # every key, on request
