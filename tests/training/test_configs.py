"""Every shipped config is complete as mmengine reads it, builds its model, data set, transforms, schedulers and
hooks, and every top-level setting takes effect wherever a user sets it: in the config, a child config or
--cfg-options."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS, PARAM_SCHEDULERS, TRANSFORMS

import damo_yolo.training  # noqa: F401  registration
from damo_yolo.training.config import PLACES, SETTINGS, ConfigError, disagreements, load_config, value_at

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "train" / "configs").glob("*.py"))
SYNTHETIC = ROOT / "train" / "configs" / "damoyolo_tinynasL18_Ns_1xb16-40e_synthetic.py"
EXPECTED = {"T": ((640, 640), "SGD"), "S": ((640, 640), "SGD"), "M": ((640, 640), "SGD"),
            "L": ((640, 640), "SGD"), "Ns": ((416, 416), "AdamW"), "Nm": ((416, 416), "AdamW"),
            "Nl": ((416, 416), "AdamW")}
# a value for every setting that no shipped config uses
NEW_VALUES = {"variant": "Nm", "data_root": "/elsewhere/data/", "input_size": (320, 352), "batch_size": 3,
              "num_workers": 1, "max_epochs": 7, "base_lr": 0.123, "val_interval": 3, "mosaic_size": (480, 480),
              "mixup_prob": 0.33, "affine_scale": (0.4, 1.6), "shear": 1.25, "warmup_epochs": 0.5,
              "no_aug_epochs": 4, "min_lr_ratio": 0.11, "finetune": "/models/coco.pth",
              "teacher_config": "t.py", "teacher_checkpoint": "t.pth",
              # the transforms' own settings are left out: the top-level settings above fill them
              "train_pipeline": [dict(type="Mosaic"), dict(type="RandomAffine"), dict(type="MixUp"),
                                 dict(type="Resize"), dict(type="RandomFlip", prob=0.25),
                                 dict(type="ScaleAwareBoxAugment"), dict(type="PackDetInputs")],
              "last_stage_pipeline": [dict(type="Resize"), dict(type="PackDetInputs")]}


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.to_dict() if hasattr(value, "to_dict") else value


def test_every_variant_has_a_coco_config():
    coco = {load_config(p).model["variant"] for p in CONFIGS if p.name.endswith("_coco.py")}
    assert coco == set(EXPECTED)
    assert set(NEW_VALUES) == set(SETTINGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
    cfg = load_config(path)
    model = MODELS.build(cfg.model)
    assert model.model_cfg.name == cfg.model["variant"] == cfg.variant
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert DATASETS.get(cfg[key]["dataset"]["type"]) is not None
    assert tuple(cfg.val_dataloader.dataset.input_size) == tuple(cfg.input_size)
    last = next(h for h in cfg.custom_hooks if h["type"] == "PipelineSwitchHook")["switch_pipeline"]
    for transform in cfg.train_dataloader.dataset.pipeline + last:
        assert TRANSFORMS.get(transform["type"]) is not None, transform
    assert [t["type"] for t in last] == ["Resize", "RandomFlip", "PackDetInputs"]
    for scheduler in cfg.param_scheduler:
        assert PARAM_SCHEDULERS.get(scheduler["type"]) is not None, scheduler
    assert METRICS.get(cfg.val_evaluator["type"]) is not None
    for hook in cfg.custom_hooks:
        assert HOOKS.get(hook["type"]) is not None, hook
        if "ema_type" in hook:
            assert MODELS.get(hook["ema_type"]) is not None, hook
    assert cfg.train_cfg.max_epochs == cfg.max_epochs and cfg.optim_wrapper.optimizer.lr == cfg.base_lr
    if path.name.endswith("_coco.py"):
        size, optimizer = EXPECTED[cfg.model["variant"]]
        assert tuple(cfg.input_size) == size, "the config reports another input size than it trains at"
        assert tuple(value_at(cfg, "train_dataloader.dataset.pipeline.Resize.scale")) == size
        assert [t["type"] for t in cfg.train_dataloader.dataset.pipeline] == [
            "Mosaic", "RandomAffine", "MixUp", "FilterBoxes", "Resize", "RandomFlip", "ScaleAwareBoxAugment",
            "PackDetInputs"]
        assert cfg.optim_wrapper.optimizer.type == optimizer
        assert cfg.train_dataloader.batch_size * 8 == 256 and cfg.train_cfg.max_epochs == 300
        assert cfg.train_cfg.dynamic_intervals == [(300 - 16, 1)]
        assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.0, bias_decay_mult=0.0)


@pytest.mark.parametrize("path", [SYNTHETIC, ROOT / "train/configs/damoyolo_tinynasL25_S_8xb32-300e_coco.py",
                                  ROOT / "train/configs/damoyolo_tinynasL18_Ns_8xb32-300e_coco.py"],
                         ids=lambda p: p.stem)
@pytest.mark.parametrize("where", ["child config", "cfg-options"])
def test_every_setting_takes_effect_where_it_is_set(tmp_path, path, where):
    if where == "child config":
        child = tmp_path / "child.py"
        child.write_text(f"_base_ = [{str(path)!r}]\n" + "".join(f"{k} = {v!r}\n" for k, v in NEW_VALUES.items()))
        cfg = load_config(child)
    else:
        cfg = load_config(path, dict(NEW_VALUES))
    reached = 0
    for place in PLACES:
        current = value_at(cfg, place.path)
        assert current is not None or place.may_be_none, place.path
        expected = place.value(*(NEW_VALUES[s] for s in place.settings))
        if place.settings[0].endswith("pipeline"):  # the transforms, their settings filled in
            assert [t["type"] for t in current] == [t["type"] for t in expected], place.path
        else:
            assert _plain(current) == _plain(expected), place.path
        reached += 1
    assert reached == len(PLACES)
    assert cfg.train_cfg.dynamic_intervals == [(7 - 4, 1)]  # derived from max_epochs and no_aug_epochs
    assert cfg.param_scheduler[1]["end"] == 3 and cfg.custom_hooks[1]["switch_epoch"] == 3


def test_a_place_set_against_its_setting_is_refused(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\ntrain_dataloader = dict(batch_size=8)\n")
    with pytest.raises(ConfigError, match=r"train_dataloader.batch_size=8 disagrees with batch_size=16"):
        load_config(child)
    same = tmp_path / "same.py"  # the same value in both places is fine (mmengine's own config dumps do that)
    same.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\ntrain_dataloader = dict(batch_size=16)\n")
    assert load_config(same).train_dataloader.batch_size == 16


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_are_complete_as_mmengine_reads_them(path):
    raw = Config.fromfile(str(path))
    assert disagreements(raw) == []
    assert raw.to_dict() == load_config(path).to_dict()  # damo-train reads it as mmengine does


def test_bad_setting_values_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"input_size must be \(height, width\).*got 128"):
        load_config(SYNTHETIC, {"input_size": 128})
    with pytest.raises(ConfigError,
                       match=r"no epoch of the cosine phase in max_epochs=2.*warmup_epochs=1 no_aug_epochs=0"):
        load_config(SYNTHETIC, {"max_epochs": 2})
    with pytest.raises(ConfigError, match=r"batch_size must be a whole number"):
        load_config(SYNTHETIC, {"batch_size": 0})


def test_settings_that_do_not_fit_in_a_file_are_mended_by_options(tmp_path):
    """The phases and the teacher are checked on the config as it will run: a child config whose phases do not
    fit is refused alone, and runs with the values the refusal suggests given as --cfg-options."""
    child = tmp_path / "child.py"
    child.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\nmax_epochs = 2\nteacher_config = 't.py'\n")
    with pytest.raises(ConfigError, match=r"teacher_config and teacher_checkpoint go together"):
        load_config(child)
    with pytest.raises(ConfigError, match=r"no epoch of the cosine phase in max_epochs=2.*"
                                          r"--cfg-options max_epochs=2 warmup_epochs=1 no_aug_epochs=0"):
        load_config(child, {"teacher_checkpoint": "t.pth"})
    cfg = load_config(child, {"teacher_checkpoint": "t.pth", "max_epochs": 2, "warmup_epochs": 1, "no_aug_epochs": 0})
    assert cfg.param_scheduler[1]["begin"] == 1 and cfg.param_scheduler[1]["end"] == 2
    assert cfg.model.teacher == dict(config="t.py", checkpoint="t.pth")


def test_data_root_option_moves_every_data_set_and_the_metric(tiny_synthetic):
    cfg = load_config(SYNTHETIC, {"data_root": f"{tiny_synthetic}/"})
    for split in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset = DATASETS.build(cfg[split].dataset)
        assert dataset.coco.ann_file.parent.parent == tiny_synthetic
        assert dataset.coco.img_dir.parent == tiny_synthetic
    metric = METRICS.build(cfg.val_evaluator)
    assert Path(metric.ann_file) == tiny_synthetic / "annotations" / "instances_val.json"


def test_damo_train_data_root_option_and_missing_data_in_one_line(tmp_path):
    missing = tmp_path / "no_such_data"
    run = subprocess.run([sys.executable, "-m", "damo_yolo.tools.train", str(SYNTHETIC), "--work-dir",
                          str(tmp_path / "run"), "--cfg-options", f"data_root={missing}/"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 1
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert len(lines) == 1, lines[:20]
    assert str(missing / "annotations" / "instances_train.json") in lines[0] and "damo-synthetic" in lines[0]
    assert not (tmp_path / "run").exists()


def test_damo_train_unknown_config_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "damo_yolo.tools.train", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 1 and run.stderr.strip() == f"Error: config not found: {tmp_path} (it is a directory)"


@pytest.fixture(scope="module")
def two_images(tmp_path_factory, shared_dir):
    from training_utils import make_synthetic
    return make_synthetic(tmp_path_factory.mktemp("two_images"), 2, 2, 128, shared_dir / "data" / "images")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_runner_from_cfg_trains_one_iteration_of_each_shipped_config(tmp_path, path, two_images):
    """mmengine's own entry point, on the file as it is; only the data (2 synthetic images: one batch) and
    the run length change."""
    tiny_synthetic = two_images
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(path))
    for split, part in (("train_dataloader", "train"), ("val_dataloader", "val"), ("test_dataloader", "val")):
        cfg[split].dataset.update(data_root=f"{tiny_synthetic}/", ann_file=f"annotations/instances_{part}.json",
                                  img_dir=f"{part}/", class_names=None)
    cfg.val_evaluator.update(data_root=f"{tiny_synthetic}/", ann_file="annotations/instances_val.json",
                             class_names=None)
    cfg.model.num_classes = 8
    cfg.train_dataloader.update(batch_size=2, num_workers=0)
    cfg.train_cfg.max_epochs = 1
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1 and (tmp_path / "epoch_1.pth").is_file()
    lr = runner.optim_wrapper.get_lr()["lr"][0]
    assert lr == pytest.approx(cfg.base_lr * (1 / (cfg.warmup_epochs * 1)) ** 2)  # the warm-up's second step


def test_settings_reach_their_places_through_several_levels_of_configs(tmp_path):
    mid = tmp_path / "mid.py"
    mid.write_text(f"_base_ = [{str(ROOT / 'train/configs/damoyolo_tinynasL25_S_8xb32-300e_coco.py')!r}]\n"
                   "max_epochs = 50\nwarmup_epochs = 2\nno_aug_epochs = 5\n"
                   "train_cfg = dict(dynamic_intervals=None)  # validate at val_interval only\n")
    child = tmp_path / "child.py"
    child.write_text(f"_base_ = [{str(mid)!r}]\nbatch_size = 8\n"
                     "train_pipeline = [dict(type='Resize', scale=(640, 640)), dict(type='PackDetInputs')]\n")
    cfg = load_config(child, {"input_size": (320, 320)})
    assert cfg.train_cfg.max_epochs == 50 and cfg.train_dataloader.batch_size == 8
    assert cfg.param_scheduler[1]["end"] == 45 and cfg.custom_hooks[1]["switch_epoch"] == 45
    assert cfg.train_cfg.dynamic_intervals is None  # switched off on purpose: kept
    assert [t["type"] for t in cfg.train_dataloader.dataset.pipeline] == ["Resize", "PackDetInputs"]
    assert tuple(cfg.train_dataloader.dataset.pipeline[0]["scale"]) == (320, 320)
    bad = tmp_path / "bad.py"
    bad.write_text(f"_base_ = [{str(mid)!r}]\ntrain_cfg = dict(max_epochs=60)\n")
    with pytest.raises(ConfigError, match=r"train_cfg.max_epochs=60 disagrees with max_epochs=50"):
        load_config(bad)


def test_an_option_on_top_of_a_child_keeps_the_childs_settings(tmp_path):
    child = tmp_path / "child.py"
    child.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\ninput_size = (128, 128)\n")
    cfg = load_config(child, {"finetune": "start.pth"})
    assert cfg.model.finetune == "start.pth"
    assert tuple(value_at(cfg, "train_dataloader.dataset.pipeline.Resize.scale")) == (128, 128)
    assert tuple(cfg.train_pipeline[0]["img_scale"]) == (128, 128)  # the top-level pipeline as placed
