"""SADA (damo_yolo.data.sada) against the official DAMO-YOLO code, plus properties that hold without it.

The official modules (torch code) are taken with ``git show`` from a bare mirror of tinyvision/DAMO-YOLO
(``DAMO_YOLO_MIRROR``, default /work/.mirror/tinyvision+DAMO-YOLO/repo) into a temp dir and imported; the
comparisons skip when it is absent. Their only torchvision use is F.affine (+ to_pil_image / to_tensor) on
the rotate/shear crops: without torchvision a stub satisfies the import, and the rotate/shear comparisons
skip (the end-to-end comparison then maps rotate/shear sub-policies to hflip/translate).
Their ``random`` module is replaced by a shim over a numpy Generator drawing in the same order as ours, so
whole samples compare too.
"""
from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from damo_yolo.data import sada
from damo_yolo.data.sada import (
    COLOR_OPS,
    GEOMETRIC_OPS,
    SADA_POLICY,
    ScaleAwareBoxAugment,
    apply_color_op,
    apply_geometric_op,
    box_sample_probs,
    decode_policy,
    sa_aug_progress,
)

MIRROR = Path(os.environ.get("DAMO_YOLO_MIRROR", "/work/.mirror/tinyvision+DAMO-YOLO/repo"))
OFFICIAL_FILES = ("damo/augmentations/__init__.py", "damo/augmentations/scale_aware_aug.py",
                  "damo/augmentations/box_level_augs/__init__.py",
                  "damo/augmentations/box_level_augs/box_level_augs.py",
                  "damo/augmentations/box_level_augs/color_augs.py",
                  "damo/augmentations/box_level_augs/geometric_augs.py",
                  "damo/augmentations/box_level_augs/gaussian_maps.py")
AFFINE_OPS = ("rotate", "shearX", "shearY")
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")  # inside the official code
FLOAT_TOL = 1e-3  # grey levels, float against float: float32 rounding only (measured 3e-5)


# ---------------------------------------------------------------- the official code

def _git_show(path: str) -> bytes:
    return subprocess.run(["git", "-C", str(MIRROR), "show", f"HEAD:{path}"], capture_output=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    torch = pytest.importorskip("torch", reason="the official SADA is torch code")
    if not MIRROR.is_dir() or shutil.which("git") is None:
        pytest.skip(f"no DAMO-YOLO mirror at {MIRROR} (set DAMO_YOLO_MIRROR) or no git")
    if any(name == "damo" or name.startswith("damo.") for name in sys.modules):
        pytest.skip("a 'damo' package is already imported")
    root = tmp_path_factory.mktemp("damo_official")
    for path in OFFICIAL_FILES:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(_git_show(path))
    config: dict = {}
    exec(_git_show("damo/config/augmentations.py"), config)  # a module of plain dicts

    stubbed = []
    try:
        import torchvision.transforms.functional  # noqa: F401
        has_affine = True
    except Exception:  # absent (or unusable): stub the import only; calling into it fails loudly
        has_affine = False
        tv, tvt = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
        tv.transforms = tvt
        for name, module in (("torchvision", tv), ("torchvision.transforms", tvt)):
            if name not in sys.modules:
                sys.modules[name] = module
                stubbed.append(name)
    sys.path.insert(0, str(root))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: threads only add contention on a busy 2-core machine
    try:
        ns = types.SimpleNamespace(
            torch=torch, has_affine=has_affine, sada_config=config["SADA"],
            scale_aware_aug=importlib.import_module("damo.augmentations.scale_aware_aug"),
            box_level_augs=importlib.import_module("damo.augmentations.box_level_augs.box_level_augs"),
            color_augs=importlib.import_module("damo.augmentations.box_level_augs.color_augs"),
            geometric_augs=importlib.import_module("damo.augmentations.box_level_augs.geometric_augs"))
        yield ns
    finally:
        torch.set_num_threads(threads)
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == "damo" or n.startswith("damo.")] + stubbed:
            del sys.modules[name]


class _Target:
    """The two BoxList members the official code touches."""

    def __init__(self, torch, boxes, labels):
        self.bbox = torch.tensor(np.asarray(boxes, np.float32)).reshape(-1, 4)
        self.extra_fields = {"labels": torch.tensor(np.asarray(labels, np.int64))}

    def as_array(self):
        return np.c_[self.bbox.numpy(), self.extra_fields["labels"].numpy()].astype(np.float32)


class _FixedRandom:
    """random.random() always returning ``value``: every box draw passes a probability of 1.0, and the
    sign draw negates iff value < 0.5."""

    def __init__(self, value):
        self.value = value

    def random(self):
        return self.value


class _GeneratorRandom:
    """Python's random.random / random.choice drawn from a numpy Generator, as ScaleAwareBoxAugment draws."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def random(self):
        return float(self.rng.random())

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]


def _official_sa_aug(official, params, box_prob=0.3, **counter):
    cfg = types.SimpleNamespace(**{**SADA_POLICY, "autoaug_params": params, "box_prob": box_prob})
    args = dict(iters_per_epoch=100, start_epoch=0, total_epochs=10, no_aug_epochs=0, batch_size=1, num_gpus=1,
                num_workers=1)
    return official.scale_aware_aug.SA_Aug(**{**args, **counter}, sada_cfg=cfg)


def _to_tensor(official, img):  # the representation SA_Aug receives: CHW float32 0-255 RGB
    return official.torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32))


def _from_tensor(t):
    return t.numpy().transpose(1, 2, 0)


# ---------------------------------------------------------------- test data

@pytest.fixture(scope="module")
def photos(sample_images):
    by_name = {p.name: p for p in sample_images}
    paths = [by_name.get(n) for n in ("dog.jpg", "zidane.jpg", "bus.jpg")]
    paths = [p for p in paths if p] or list(sample_images[:3])
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


SIZE = 320  # the official torch code is slow on CPU (a full-image meshgrid per box): keep images small


@pytest.fixture(scope="module")
def photo(photos):
    return cv2.resize(photos[0], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)


# Inside, at and beyond the borders, sub-pixel, tiny, huge, and one zero-width box.
BOXES = np.array([[50.3, 60.7, 150.2, 200.9], [5, 10, 30, 25], [200, 190, 319.5, 320], [0, 0, 12.5, 15],
                  [125, 25, 210, 100], [300, 300, 320, 320], [-5, -8, 15, 20], [310.2, 5, 350, 45],
                  [50, 50, 50, 70], [3, 3, 317, 317]], np.float32)
LABELS = np.arange(1, len(BOXES) + 1)
SPLITS = [s * SIZE / 800 for s in SADA_POLICY["scale_splits"]]


def _without_affine(params):
    """The same policy with rotate/shearX/shearY replaced by hflip/translateX/translateY."""
    params = list(params)
    for i in range(SADA_POLICY["num_subpolicies"]):
        j = 4 + 6 * i + 3
        params[j] = {1: 0, 2: 4, 3: 5}.get(params[j] % 6, params[j] % 6)
    return tuple(params)


def _dense(params):
    """Every image-level probability 1.0 (slot value 10)."""
    params = list(params)
    for i in range(SADA_POLICY["num_subpolicies"]):
        params[4 + 6 * i + 1] = params[4 + 6 * i + 4] = 10
    return tuple(params)


# ---------------------------------------------------------------- policy, probabilities, progress

def test_policy_constants_equal_official_config(official):
    cfg = official.sada_config
    assert SADA_POLICY["box_prob"] == cfg["box_prob"]
    assert SADA_POLICY["num_subpolicies"] == cfg["num_subpolicies"]
    assert list(SADA_POLICY["scale_splits"]) == list(cfg["scale_splits"])
    assert tuple(SADA_POLICY["autoaug_params"]) == tuple(cfg["autoaug_params"])


def test_policy_decoding_equals_official(official):
    for params in (SADA_POLICY["autoaug_params"], tuple(range(40)), _dense(SADA_POLICY["autoaug_params"])):
        ref = _official_sa_aug(official, params).box_augs
        policies, ratios = decode_policy(params, SADA_POLICY["num_subpolicies"])
        assert [[tuple(op) for op in p] for p in policies] == [[tuple(op) for op in p] for p in ref.policies]
        assert ratios == ref.scale_ratios


def test_decoded_policy_is_well_formed():
    policies, ratios = decode_policy()
    assert len(policies) == SADA_POLICY["num_subpolicies"] and set(ratios) == {"area", "prob"}
    for p in policies:
        assert p.color.name in COLOR_OPS and p.geometric.name in GEOMETRIC_OPS
        assert 0 <= p.color.img_prob <= 1 and 0 <= p.geometric.img_prob <= 1


def test_box_sample_probs_equal_official(official):
    rng = np.random.default_rng(0)
    boxes = np.c_[rng.uniform(0, 500, (200, 2)), np.zeros((200, 2))].astype(np.float32)
    boxes[:, 2:] = boxes[:, :2] + rng.choice([0, 5, 30, 80, 150, 300], (200, 2))  # every bucket, some empty
    _, ratios = decode_policy()
    for tag in ("area", "prob"):
        ref = [official.box_level_augs._box_sample_prob(official.torch.tensor(b), [ratios[tag], SPLITS], 0.3)
               for b in boxes]
        assert np.allclose(box_sample_probs(boxes, ratios[tag], SPLITS, 0.3), np.asarray(ref, np.float64))


@pytest.mark.parametrize("start_epoch,num_workers,num_gpus", [(0, 4, 1), (0, 0, 2), (3, 2, 1)])
def test_progress_equals_official_counter(official, start_epoch, num_workers, num_gpus):
    """SA_Aug's per-worker counter (including its resume quirk) gives sa_aug_progress * max_iters."""
    counter = dict(iters_per_epoch=50, start_epoch=start_epoch, total_epochs=20, no_aug_epochs=4, batch_size=16,
                   num_gpus=num_gpus, num_workers=num_workers)
    sa = _official_sa_aug(official, SADA_POLICY["autoaug_params"], **counter)
    seen = []
    sa.box_augs = lambda img, target, iteration: (seen.append(iteration), (img, target))[1]
    for _ in range(100):
        sa(official.torch.zeros(3, 4, 4), None)
    mine = [sa_aug_progress(k, **counter) * sa.max_iters for k in range(100)]
    assert np.allclose(mine, seen)


def test_probability_ramp():
    """Colour op forced to fire per box (one big box, its bucket weight 1, box_prob 1): an image changes
    exactly when the image-level draw passes, i.e. with probability policy_prob * progress (here 1.0 *
    progress), and never past progress 1."""
    params = [0] * 4 + [5, 10, 9, 0, 0, 0] * 5 + [0, 0, 1, 1, 1, 1]  # Brightness p=1.0; hflip p=0
    sada_aug = ScaleAwareBoxAugment(box_prob=1.0, autoaug_params=params)
    img = np.full((64, 64, 3), 100, np.uint8)
    boxes = np.array([[0, 0, 64, 64]], np.float32)
    rate = {p: np.mean([(sada_aug(img, boxes, np.random.default_rng(s), p)[0] != img).any() for s in range(400)])
            for p in (0.0, 0.5, 1.0, 1.5)}
    assert rate[0.0] == 0 and rate[1.0] == 1 and rate[1.5] == 0
    assert abs(rate[0.5] - 0.5) < 0.08


# ---------------------------------------------------------------- single ops against the official ones

@pytest.mark.parametrize("op", COLOR_OPS)
def test_color_op_matches_official(official, photo, op):
    img = (photo * 0.7 + 30).astype(np.uint8)  # not full-range, so AutoContrast / Equalize do something
    _, ratios = decode_policy()
    selected = box_sample_probs(BOXES, ratios["area"], SPLITS, 1.0) > 0  # all but the empty box
    for level in (0, 3, 8, 10):
        target = _Target(official.torch, BOXES, LABELS)
        ref = official.color_augs.color_aug_func[op](_to_tensor(official, img) / 255.0, level, target,
                                                     [ratios["area"], SPLITS], selected.astype(float))
        ref = _from_tensor(ref * 255)
        mine = apply_color_op(img.astype(np.float32), BOXES, op, level, selected, SPLITS, ratios["area"])
        assert np.abs(mine - ref).max() < FLOAT_TOL
        assert level == 0 or np.abs(mine - img).max() > 10  # the op did something


@pytest.mark.parametrize("op", GEOMETRIC_OPS)
def test_geometric_op_matches_official(official, photo, op, monkeypatch):
    if op in AFFINE_OPS and not official.has_affine:
        pytest.skip("torchvision is not installed: the official rotate/shear crops go through its F.affine")
    boxes = np.c_[BOXES, LABELS].astype(np.float32)
    for level in (3, 8, 10):
        for negate in (False, True):
            monkeypatch.setattr(official.geometric_augs, "random", _FixedRandom(0.0 if negate else 0.9))
            target = _Target(official.torch, BOXES, LABELS)
            ref, target = official.geometric_augs.geometric_aug_func[op](
                _to_tensor(official, photo) / 255.0, level, target, [1.0] * len(BOXES))
            mine, mine_boxes = apply_geometric_op(photo.astype(np.float32), boxes, op, level,
                                                  np.ones(len(boxes), bool), negate)
            assert np.abs(mine - _from_tensor(ref * 255)).max() < FLOAT_TOL
            assert np.array_equal(mine_boxes, target.as_array())  # appended boxes and their labels too
            assert np.abs(mine - photo).max() > 10


# ---------------------------------------------------------------- whole samples against the official Box_augs

@pytest.mark.parametrize("variant", ["default", "dense"])
def test_samples_match_official(official, photos, variant, monkeypatch):
    """Same seed, same draws: the image (ours rounded to uint8, theirs float) within 0.5 grey level and the
    boxes identical, over progress 0 / 0.5 / 1 / 1.5, random boxes and 0-8 boxes per image."""
    params = SADA_POLICY["autoaug_params"] if variant == "default" else _dense(SADA_POLICY["autoaug_params"])
    params = params if official.has_affine else _without_affine(params)
    box_prob = 0.3 if variant == "default" else 0.9
    ref = _official_sa_aug(official, params, box_prob=box_prob).box_augs
    mine = ScaleAwareBoxAugment(box_prob=box_prob, autoaug_params=params)
    imgs = [cv2.resize(p, (256, 224)) for p in photos]
    sampler = np.random.default_rng(1)
    changed = appended = off_by_more = values = 0
    for seed in range(300 if variant == "default" else 100):
        img, n = imgs[seed % len(imgs)], int(sampler.integers(0, 9))
        xy = sampler.uniform(0, 220, (n, 2))
        boxes = np.c_[xy, np.minimum(xy + sampler.uniform(2, 160, (n, 2)), [256, 224])].astype(np.float32)
        progress = [0.0, 0.5, 1.0, 1.0, 1.5][seed % 5] if variant == "default" else 1.0
        shim = _GeneratorRandom(seed)
        for module in (official.box_level_augs, official.color_augs, official.geometric_augs):
            monkeypatch.setattr(module, "random", shim)
        target = _Target(official.torch, boxes, np.arange(n))
        ref_img, target = ref(_to_tensor(official, img), target, iteration=progress * ref.max_iters)
        out, out_boxes = mine(img, np.c_[boxes, np.arange(n)], np.random.default_rng(seed), progress)
        diff = np.abs(out - _from_tensor(ref_img))
        assert np.array_equal(out_boxes, target.as_array())
        assert diff.max() <= 1.5
        off_by_more, values = off_by_more + (diff > 0.5 + FLOAT_TOL).sum(), values + diff.size
        changed += (out != img).any()
        appended += len(out_boxes) > n
    # Beyond rounding (0.5), only where rotate/shear follow a colour op: to_pil_image truncates x * 255, and
    # colour-blended values within ~1e-5 of an integer truncate either way with float32 noise (measured at
    # 640 px, dense policy: 749 of 74M values, at most 1.4 levels).
    assert off_by_more <= 1e-4 * values
    assert changed >= 3 and (variant == "default" or appended >= 3)  # the comparison exercised something


# ---------------------------------------------------------------- properties from the official formulas

def _one_box(op, level, box, negate=False, img=None):
    img = np.random.default_rng(0).integers(0, 256, (200, 300, 3)).astype(np.float32) if img is None else img
    boxes = np.array([list(box) + [7]], np.float32)
    return img, *apply_geometric_op(img, boxes, op, level, np.array([True]), negate)


@pytest.mark.parametrize("op,axis", [("translateX", 0), ("translateY", 1)])
@pytest.mark.parametrize("negate", [False, True])
def test_translate_appends_a_copy_shifted_by_level_times_12_px(op, axis, negate):
    """translate = level / 10 * 120 px (absolute, whatever the box size), sign flipped by the draw; the
    original box stays, the copy keeps its label, and the crop's centre pixel lands unblended (gaussian 1)."""
    level, box = 4, (100.0, 60.0, 160.0, 120.0)
    img, out, boxes = _one_box(op, level, box, negate)
    shift = (-1 if negate else 1) * level / 10 * 120
    expected = np.array(box, np.float32)
    expected[[axis, axis + 2]] += shift
    assert boxes.shape == (2, 5) and boxes[0].tolist() == list(box) + [7]
    assert boxes[1, :4].tolist() == expected.tolist() and boxes[1, 4] == 7
    ox, oy = (int(shift), 0) if axis == 0 else (0, int(shift))
    assert np.array_equal(out[60 + oy + 30, 100 + ox + 30], img[90, 130])


def test_translate_is_clamped_at_the_border():
    """The copy moves only as far as the window's bottom-right corner can (offset = W - x2 here), and a box
    already at the border gets no copy."""
    img, out, boxes = _one_box("translateX", 3, (260.0, 50.0, 290.0, 90.0))  # +36 px, 10 px of room
    assert boxes[1, :4].tolist() == [270.0, 50.0, 300.0, 90.0]
    _, out, boxes = _one_box("translateX", 3, (270.0, 50.0, 300.0, 90.0))
    assert len(boxes) == 1


def test_hflip_mirrors_inside_the_box_and_keeps_it():
    img, out, boxes = _one_box("hflip", 5, (100.0, 60.0, 161.0, 121.0))
    assert boxes.tolist() == [[100.0, 60.0, 161.0, 121.0, 7.0]]
    assert np.array_equal(out[60 + 30, 100 + 30], img[90, 130])  # centre column of an odd-width crop
    assert np.allclose(out[60 + 30, 100 + 29], img[90, 131], atol=0.5)  # gaussian weight 0.9992 next to it
    outside = np.ones(img.shape[:2], bool)
    outside[60:121, 100:161] = False
    assert np.array_equal(out[outside], img[outside])


@pytest.mark.parametrize("op", AFFINE_OPS)
def test_affine_ops_stay_inside_their_box(op):
    img, out, boxes = _one_box(op, 8, (100.0, 60.0, 180.0, 140.0))
    outside = np.ones(img.shape[:2], bool)
    outside[60:140, 100:180] = False
    assert np.array_equal(out[outside], img[outside]) and not np.array_equal(out, img)
    assert len(boxes) == 1
    _, same, _ = _one_box(op, 0, (100.0, 60.0, 180.0, 140.0))  # level 0: identity through uint8
    assert np.abs(same - img).max() < FLOAT_TOL  # g * a + (1 - g) * a is a up to float32 rounding


def test_deterministic_for_a_seed(photo):
    aug = ScaleAwareBoxAugment(autoaug_params=_dense(SADA_POLICY["autoaug_params"]), box_prob=0.9)
    boxes = np.c_[BOXES, LABELS]
    runs = [[aug(photo, boxes, np.random.default_rng(s), 1.0) for s in (3, 3, 4)] for _ in range(2)]
    for (a_img, a_boxes), (b_img, b_boxes) in zip(*runs):
        assert np.array_equal(a_img, b_img) and np.array_equal(a_boxes, b_boxes)
    (s3, _), _, (s4, _) = runs[0]
    assert not np.array_equal(s3, s4)


def test_empty_and_border_boxes(photo):
    img = photo.astype(np.float32)
    for op in COLOR_OPS:
        out = apply_color_op(img, np.zeros((0, 4), np.float32), op, 5, np.zeros(0, bool), SPLITS, [7, 5, 1])
        assert np.array_equal(out, img)  # nothing selected: gaussian weight 0 everywhere
    for op in GEOMETRIC_OPS:
        out, boxes = apply_geometric_op(img, np.zeros((0, 5), np.float32), op, 5, np.zeros(0, bool), False)
        assert np.array_equal(out, img) and boxes.shape == (0, 5)
        out, boxes = apply_geometric_op(img, BOXES, op, 9, np.ones(len(BOXES), bool), True)
        assert out.shape == img.shape and np.isfinite(out).all()
        assert len(boxes) == len(BOXES) or op.startswith("translate")
    aug = ScaleAwareBoxAugment(autoaug_params=_dense(SADA_POLICY["autoaug_params"]), box_prob=1.0)
    for seed in range(10):
        for boxes in (np.zeros((0, 4), np.float32), np.zeros((0, 5), np.float32), BOXES):
            before = boxes.copy()
            out, out_boxes = aug(photo, boxes, np.random.default_rng(seed), 1.0)
            assert out.shape == photo.shape and out.dtype == np.uint8
            assert out_boxes.shape[1] == boxes.shape[1] and len(out_boxes) >= len(boxes)
            assert np.array_equal(boxes, before)  # input untouched


def test_module_is_free_of_global_rngs():
    source = Path(sada.__file__).read_text()
    assert not re.search(r"^\s*(import|from)\s+(random|torch)\b", source, re.M)
    assert set(re.findall(r"np\.random\.(\w+)", source)) <= {"Generator"}
