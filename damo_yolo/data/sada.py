"""SADA: DAMO-YOLO's scale-aware, box-level AutoAugment (from SA-AutoAug), in numpy/OpenCV.

Reference (tinyvision/DAMO-YOLO):
  damo/config/augmentations.py                        the SADA policy constants
  damo/augmentations/scale_aware_aug.py               SA_Aug: policy decoding, the iteration counter
  damo/augmentations/box_level_augs/box_level_augs.py Box_augs: probability ramp, per-box probabilities
  damo/augmentations/box_level_augs/color_augs.py     colour ops, blended in through gaussian maps
  damo/augmentations/box_level_augs/geometric_augs.py per-box hflip / rotate / shear / translate
  damo/augmentations/box_level_augs/gaussian_maps.py  the gaussian weight maps
  damo/dataset/transforms/build.py                    SA_Aug is the last train transform

Where the reference applies it: after Resize (cv2, to 640×640 uint8 RGB, then CHW float32), the random
horizontal flip, ToTensor and Normalize (mean 0, std 1: a no-op), i.e. on a CHW float32 RGB tensor holding
0-255 values, with BoxList boxes in xyxy pixels, on every training sample (mosaic or not). Each op divides
by 255, works on [0, 1] floats and multiplies back; the result is not rounded. This module works on H×W×3
uint8 RGB, keeps the reference's float32 arithmetic in between and rounds to uint8 once at the end.

Per image (``ScaleAwareBoxAugment.__call__``), in the reference's draw order:
  1. a sub-policy is drawn uniformly (always, even when nothing is applied afterwards);
  2. if progress > 1 nothing else happens; otherwise the colour op and then the geometric op each fire
     with probability ``policy_prob * progress``;
  3. a fired op draws one uniform per box (all boxes, in order) against that box's probability
     ``box_prob * ratio[area bucket]`` (ratios normalised to sum 1; 'area' ratios for colour ops, 'prob'
     ratios for geometric ops; zero-area boxes never fire);
  4. colour ops transform the whole image, and are blended in with the clamped sum of one gaussian per
     selected box (its spread set by the box's scale bucket);
  5. geometric ops draw one more uniform (< 0.5 negates angle, shear and translation), then transform
     each selected box's crop and paste it back through a gaussian centred on the crop. hflip, rotate and
     shear leave the boxes unchanged; translate pastes a *copy* of the object at the shifted place and
     *appends* the shifted box, keeping the original box and object.

Boxes are [n, 4+k] float32: xyxy pixels in the first four columns; further columns (e.g. the class id)
are carried along and copied onto the boxes that translate appends.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import cv2
import numpy as np

SADA_POLICY = {
    "box_prob": 0.3,
    "num_subpolicies": 5,
    "scale_splits": (2048, 10240, 51200),
    "autoaug_params": (6, 9, 5, 3, 3, 4, 2, 4, 4, 4, 5, 2, 4, 1, 4, 2, 6, 4, 2, 2, 2, 6, 2, 2, 2,
                       0, 5, 1, 3, 0, 8, 5, 2, 8, 7, 5, 1, 3, 3, 3),
}

# Op names in the order of the reference's dicts: the policy indexes them modulo their count.
COLOR_OPS = ("AutoContrast", "Equalize", "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness")
GEOMETRIC_OPS = ("hflip", "rotate", "shearX", "shearY", "translateX", "translateY")
MAX_LEVEL = 10.0
GAUSSIAN_AREA_RATIOS = (0.2, 0.4, 0.6, 0.8, 1.0, 2, 4, 6, 8, 10)  # indexed by the policy's 'area' ratios
REFERENCE_SIDE = 800  # scale_splits are areas for an 800 px short side, scaled linearly by min(h, w) / 800
ROTATE_FILL = (102, 115, 122)  # int() of the Caffe BGR pixel mean, given as is to the RGB crop


class BoxOp(NamedTuple):
    name: str
    img_prob: float  # policy value * 0.1: the reference's slot [1], used as the image-level probability
    level: int  # the reference's slot [2], used as the magnitude (0-10)


class SubPolicy(NamedTuple):
    color: BoxOp
    geometric: BoxOp


def decode_policy(autoaug_params: Sequence[int] = SADA_POLICY["autoaug_params"],
                  num_subpolicies: int = 5) -> tuple[list[SubPolicy], dict]:
    """SA_Aug.__init__: skip 4 values, then 6 per sub-policy (colour op, prob*10, level, geometric op,
    prob*10, level), then 3 'area' and 3 'prob' scale ratios. Equal (as tuples) to the reference's lists."""
    params = list(autoaug_params)[4:]
    policies = []
    for i in range(num_subpolicies):
        p = params[6 * i:6 * i + 6]
        policies.append(SubPolicy(BoxOp(COLOR_OPS[p[0] % len(COLOR_OPS)], p[1] * 0.1, p[2]),
                                  BoxOp(GEOMETRIC_OPS[p[3] % len(GEOMETRIC_OPS)], p[4] * 0.1, p[5])))
    s = 6 * num_subpolicies
    return policies, {"area": params[s:s + 3], "prob": params[s + 3:s + 6]}


def sa_aug_progress(images_seen: int, iters_per_epoch: int, total_epochs: int, no_aug_epochs: int,
                    batch_size: int, num_gpus: int = 1, num_workers: int = 4, start_epoch: int = 0) -> float:
    """The reference's progress, exactly: SA_Aug lives in each dataloader worker and counts the images
    that worker transformed; ``iteration = count // (batch_size / num_gpus) * max(num_workers, 1)`` with
    ``count = start_epoch * iters_per_epoch + images_seen``, over ``(total - no_aug epochs) * iters``.
    From scratch this is the global iteration, lagging by up to num_workers - 1 (each worker sees every
    num_workers-th batch). On resume it is wrong in the reference (start_epoch * iters_per_epoch is added
    as images, not iterations). A single-process pipeline should pass ``iteration / aug_iters`` instead."""
    count = start_epoch * iters_per_epoch + images_seen
    iteration = count // (batch_size / num_gpus) * max(num_workers, 1)
    return float(iteration) / ((total_epochs - no_aug_epochs) * iters_per_epoch)


# ---------------------------------------------------------------- per-box probabilities and gaussians

def box_sample_probs(boxes: np.ndarray, ratios: Sequence[float], splits: Sequence[float],
                     box_prob: float) -> np.ndarray:
    """_box_sample_prob: box_prob times the normalised ratio of the box's area bucket (< splits[0],
    < splits[1], else); 0 for zero-area boxes."""
    r = np.asarray(ratios, np.float64)
    r = r / r.sum()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    bucket = np.where(area < np.float32(splits[0]), 0, np.where(area < np.float32(splits[1]), 1, 2))
    return np.where(area == 0, 0.0, box_prob * r[bucket])


def _gaussian(size: int, mean: float, sigma: float) -> np.ndarray:
    return np.exp(-(np.arange(size) - mean) ** 2 / (2.0 * sigma ** 2))


def box_gaussian_map(h: int, w: int, boxes: np.ndarray, splits: Sequence[float],
                     area_ratios: Sequence[int]) -> np.ndarray:
    """_gaussian_map with scale ratios, summed over boxes and clamped to [0, 1]. Each box gets an axis
    -aligned gaussian at (top + floor(bh / 2), left + floor(bw / 2)) with sigma_y = bh / h * r,
    sigma_x = bw / w * r, r = sqrt(k * h * w / 2pi). k = ratio * S / box area, S being splits[0],
    mean(splits[:2]) or splits[2] for the box's bucket (here three splits, four buckets), and k = ratio
    past splits[2]; ratio is GAUSSIAN_AREA_RATIOS at the policy's 'area' index for that bucket.
    Boxes without a positive area are skipped (never selected when empty; NaN in the reference when
    inverted)."""
    g = np.zeros((h, w), np.float32)
    for x1, y1, x2, y2 in boxes[:, :4].astype(np.float32):
        bh, bw = y2 - y1, x2 - x1
        area = bh * bw
        if not area > 0:
            continue
        if area < np.float32(splits[0]):
            k = GAUSSIAN_AREA_RATIOS[area_ratios[0]] * splits[0] / area
        elif area < np.float32(splits[1]):
            k = GAUSSIAN_AREA_RATIOS[area_ratios[1]] * (splits[0] + splits[1]) / 2.0 / area
        elif area < np.float32(splits[2]):
            k = GAUSSIAN_AREA_RATIOS[area_ratios[2]] * splits[2] / area
        else:
            k = GAUSSIAN_AREA_RATIOS[area_ratios[2]]
        r = math.sqrt(k * h * w / (2 * math.pi))
        # exp(-(a + b)) = exp(-a) * exp(-b): separable, one outer product per box
        g += np.outer(_gaussian(h, y1 + bh // 2, bh / h * r).astype(np.float32),
                      _gaussian(w, x1 + bw // 2, bw / w * r).astype(np.float32))
    return np.clip(g, 0, 1, out=g)


def crop_gaussian(h: int, w: int) -> np.ndarray:
    """_gaussian_map of a pasted crop: centred at (h // 2, w // 2), sigma = sqrt(h * w / 2pi) on both
    axes, not clamped (it is 1 at the centre)."""
    sigma = float(np.float32(math.sqrt(h * w / (2 * math.pi))))
    return np.outer(_gaussian(h, h // 2, sigma), _gaussian(w, w // 2, sigma)).astype(np.float32)


# ---------------------------------------------------------------- colour ops, on H×W×3 float32 in [0, 1]

def _blend(degenerate: np.ndarray, img: np.ndarray, factor: float) -> np.ndarray:
    """PIL-style blend; clamped only when extrapolating (factor outside (0, 1))."""
    if factor == 0.0:
        return degenerate
    if factor == 1.0:
        return img
    out = degenerate + np.float32(factor) * (img - degenerate)
    return out if 0.0 < factor < 1.0 else np.clip(out, 0.0, 1.0)


def _gray(img: np.ndarray) -> np.ndarray:
    return (img[..., 0] * np.float32(0.2989) + img[..., 1] * np.float32(0.5870)
            + img[..., 2] * np.float32(0.1140))[..., None]


def autocontrast(img: np.ndarray, level: float) -> np.ndarray:
    """Each channel stretched from its [min, max] to [0, 1] (level unused)."""
    out = img.copy()
    for c in range(3):
        lo, hi = img[..., c].min(), img[..., c].max()
        if hi > lo:
            scale = np.float32(1.0) / (hi - lo)
            out[..., c] = np.clip(img[..., c] * scale + (-lo * scale), 0.0, 1.0)
    return out


def equalize(img: np.ndarray, level: float) -> np.ndarray:
    """Per-channel histogram equalisation as the TF AutoAugment recipe (torch.histc bins, level unused)."""
    img255 = img * np.float32(255)
    out = np.empty_like(img)
    for c in range(3):
        ch = img255[..., c]
        bins = np.clip((ch.astype(np.float64) * (256 / 255)).astype(np.int64), 0, 255)
        hist = np.bincount(bins.ravel(), minlength=256).astype(np.float64)
        nonzero = hist[hist != 0]
        step = (nonzero.sum() - nonzero[-1]) // 255
        if step == 0:
            out[..., c] = ch
            continue
        lut = np.clip(np.concatenate([[0.0], ((np.cumsum(hist) + step // 2) // step)[:-1]]), 0, 255)
        out[..., c] = lut[ch.astype(np.int64)]
    return out / np.float32(255)


def solarize_add(img: np.ndarray, level: float) -> np.ndarray:
    """Pixels <= 0.5 get + level/10 * 110/256, clamped; brighter ones are kept."""
    added = np.clip(img + np.float32(level / MAX_LEVEL * 0.4296875), 0.0, 1.0)
    return np.where(img <= 0.5, added, img)


def _factor(level: float) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1


def color(img: np.ndarray, level: float) -> np.ndarray:
    return _blend(np.repeat(_gray(img), 3, axis=2), img, _factor(level))


def contrast(img: np.ndarray, level: float) -> np.ndarray:
    mean = _gray(img).mean(dtype=np.float64).astype(np.float32).reshape(1, 1, 1)
    return _blend(mean, img, max(_factor(level), 1e-6))


def brightness(img: np.ndarray, level: float) -> np.ndarray:
    return _blend(np.zeros_like(img), img, _factor(level))


def sharpness(img: np.ndarray, level: float) -> np.ndarray:
    """Blend with the [[1,1,1],[1,5,1],[1,1,1]]/13 smoothed image; borders reflected (not PIL's copy)."""
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / np.float32(13)
    smooth = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return _blend(smooth, img, _factor(level))


COLOR_FUNCS = {"AutoContrast": autocontrast, "Equalize": equalize, "SolarizeAdd": solarize_add,
               "Color": color, "Contrast": contrast, "Brightness": brightness, "Sharpness": sharpness}


def apply_color_op(img: np.ndarray, boxes: np.ndarray, name: str, level: float, selected: np.ndarray,
                   splits: Sequence[float], area_ratios: Sequence[int]) -> np.ndarray:
    """One box-level colour op on a float32 0-255 image: the op on the whole image, blended in with the
    gaussian map of the selected boxes. Returns float32 0-255 (not rounded, as the reference)."""
    if not selected.any():  # a zero weight map leaves the image as it is: skip the op
        return img.astype(np.float32)
    x = img.astype(np.float32) / np.float32(255)
    g = box_gaussian_map(x.shape[0], x.shape[1], boxes[selected], splits, area_ratios)[..., None]
    out = x * (np.float32(1) - g) + COLOR_FUNCS[name](x, level) * g
    return out * np.float32(255)


# ---------------------------------------------------------------- geometric ops

def geometric_params(name: str, level: float) -> dict:
    """geometric_aug_func: magnitudes in degrees (rotate 30, shear 15) and pixels (translate 120) at
    level 10. Translations are absolute pixels, not relative to the box."""
    m = level / MAX_LEVEL
    return {"hflip": {"hflip": True}, "rotate": {"angle": m * 30}, "shearX": {"shear": (m * 15, 0)},
            "shearY": {"shear": (0, m * 15)}, "translateX": {"translate": (m * 120.0, 0)},
            "translateY": {"translate": (0, m * 120.0)}}[name]


def crop_window(box: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    """scale_area(ratio 1) then .long(): top-left clamped to >= 0, bottom-right = clamped top-left + the
    box size, clamped to the image (so a box sticking out left/top is shifted, not cut), in float32 and
    truncated. Returns (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = (np.float32(v) for v in box[:4])
    bw, bh = x2 - x1, y2 - y1
    y1 = max(y1 + bh / np.float32(2) - bh / np.float32(2), np.float32(0))
    x1 = max(x1 + bw / np.float32(2) - bw / np.float32(2), np.float32(0))
    y2, x2 = min(y1 + bh, np.float32(h)), min(x1 + bw, np.float32(w))
    return int(x1), int(y1), int(x2), int(y2)


def _shift(v: int, t: float, limit: int) -> int:
    """(long + float) in float32, clamped to [0, limit], truncated."""
    return int(np.clip(np.float32(v) + np.float32(t), 0, limit))


def affine_inverse_matrix(w: int, h: int, angle: float, shear: Sequence[float]) -> list[float]:
    """The output->input matrix torchvision's F.affine gives PIL for a w×h image: rotation `angle` and
    shear (sx, sy) degrees about the centre (w/2, h/2), no translation, scale 1."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]  # inverse of [[a, b], [c, d]] (det 1)
    cx, cy = w * 0.5, h * 0.5
    m[2] += m[0] * (-cx) + m[1] * (-cy)
    m[5] += m[3] * (-cx) + m[4] * (-cy)
    m[2] += cx
    m[5] += cy
    return m


def pil_affine_bilinear(img: np.ndarray, m: Sequence[float], fill: Sequence[int]) -> np.ndarray:
    """PIL Image.transform(AFFINE, BILINEAR, fillcolor) on uint8 H×W×3: output pixel (x, y) samples the
    input at m·(x+.5, y+.5) - .5 with edge-clamped bilinear weights, truncates to uint8, and is `fill`
    where the sample point m·(x+.5, y+.5) falls outside [0, w)×[0, h)."""
    h, w = img.shape[:2]
    xo, yo = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xi = m[0] * xo + m[1] * yo + m[2]
    yi = m[3] * xo + m[4] * yo + m[5]
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    xi, yi = xi - 0.5, yi - 0.5
    x0, y0 = np.floor(xi), np.floor(yi)
    dx, dy = (xi - x0)[..., None], (yi - y0)[..., None]
    xa, xb = np.clip(x0, 0, w - 1).astype(int), np.clip(x0 + 1, 0, w - 1).astype(int)
    ya, yb = np.clip(y0, 0, h - 1).astype(int), np.clip(y0 + 1, 0, h - 1).astype(int)
    src = img.astype(np.float64)
    top = src[ya, xa] + (src[ya, xb] - src[ya, xa]) * dx
    bottom = src[yb, xa] + (src[yb, xb] - src[yb, xa]) * dx
    out = np.where(inside[..., None], top + (bottom - top) * dy, np.asarray(fill, np.float64))
    return out.astype(np.uint8)


def _affine_crop(crop: np.ndarray, angle: float, shear: Sequence[float]) -> np.ndarray:
    """to_pil_image (x*255 truncated to uint8) -> F.affine (bilinear, ROTATE_FILL) -> to_tensor (/255)."""
    u8 = (crop * np.float32(255)).astype(np.uint8)
    m = affine_inverse_matrix(crop.shape[1], crop.shape[0], angle, shear)
    return pil_affine_bilinear(u8, m, ROTATE_FILL).astype(np.float32) / np.float32(255)


def apply_geometric_op(img: np.ndarray, boxes: np.ndarray, name: str, level: float, selected: np.ndarray,
                       negate: bool) -> tuple[np.ndarray, np.ndarray]:
    """One box-level geometric op on a float32 0-255 image (_geometric_aug_func + _transform).

    Each selected box's crop window (see crop_window) is transformed: hflip mirrors it; a non-zero
    translation keeps it as is; anything else (rotate, shear, or a zero translation) goes through the
    PIL affine. The result is pasted, in box order, at the window shifted by the translation (clamped to
    the image, anchored at the clamped top-left, so the crop's top-left part is what lands) through
    crop_gaussian, over the image as pasted so far. Translation also appends box + offset, offset being
    how far the window's bottom-right corner moved after clamping (no box if it did not move)."""
    p = geometric_params(name, level)
    angle, translate, shear = p.get("angle", 0), p.get("translate", (0, 0)), p.get("shear", (0, 0))
    if negate:
        angle, translate, shear = -angle, (-translate[0], -translate[1]), (-shear[0], -shear[1])
    hflip, moves = p.get("hflip", False), translate[0] + translate[1] != 0
    h, w = img.shape[:2]
    x = img.astype(np.float32) / np.float32(255)
    out, new_boxes = x.copy(), []
    for box in boxes[selected]:
        x1, y1, x2, y2 = crop_window(box, h, w)
        if x1 >= x2 or y1 >= y2:
            continue
        crop = x[y1:y2, x1:x2]
        if hflip:
            crop = crop[:, ::-1]
        elif moves:
            dx, dy = _shift(x2, translate[0], w) - x2, _shift(y2, translate[1], h) - y2
            if dx != 0 or dy != 0:
                moved = box.copy()
                moved[:4] += np.array([dx, dy, dx, dy], np.float32)
                new_boxes.append(moved)
        else:
            crop = _affine_crop(crop, angle, shear)
        px1, py1 = _shift(x1, translate[0], w), _shift(y1, translate[1], h)
        px2, py2 = _shift(x2, translate[0], w), _shift(y2, translate[1], h)
        if px2 <= px1 or py2 <= py1:
            continue
        crop = crop[:py2 - py1, :px2 - px1]
        g = crop_gaussian(*crop.shape[:2])[..., None]
        region = out[py1:py1 + crop.shape[0], px1:px1 + crop.shape[1]]
        region[...] = g * crop + (np.float32(1) - g) * region
    if new_boxes:
        boxes = np.concatenate([boxes, np.stack(new_boxes)]).astype(np.float32)
    return out * np.float32(255), boxes


# ---------------------------------------------------------------- the per-image augmentation

class ScaleAwareBoxAugment:
    """SADA for one image: ``img, boxes = sada(img, boxes, rng, progress)``.

    ``progress`` is iteration / max_iters of the reference's Box_augs, max_iters being the iterations
    before the no-aug epochs: ``global_iteration / ((total_epochs - no_aug_epochs) * iters_per_epoch)``
    (see sa_aug_progress for the reference's per-worker counter this stands for). The image-level
    probabilities ramp linearly from 0 at progress 0 to the policy's at 1; above 1 nothing is applied.
    Returns a new uint8 image (rounded once at the end; the reference hands floats on) and new boxes.
    """

    def __init__(self, box_prob: float = SADA_POLICY["box_prob"],
                 num_subpolicies: int = SADA_POLICY["num_subpolicies"],
                 scale_splits: Sequence[float] = SADA_POLICY["scale_splits"],
                 autoaug_params: Sequence[int] = SADA_POLICY["autoaug_params"]):
        self.box_prob = box_prob
        self.scale_splits = tuple(scale_splits)
        self.policies, self.scale_ratios = decode_policy(autoaug_params, num_subpolicies)

    def __call__(self, img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                 progress: float) -> tuple[np.ndarray, np.ndarray]:
        boxes = np.array(boxes, np.float32)  # a copy: the input is never modified
        boxes = boxes.reshape(-1, boxes.shape[-1] if boxes.ndim == 2 else 4)
        policy = self.policies[rng.integers(len(self.policies))]
        if progress > 1:
            return img.copy(), boxes
        h, w = img.shape[:2]
        splits = [s * (min(h, w) / REFERENCE_SIDE) for s in self.scale_splits]
        x, changed = img.astype(np.float32), False
        if rng.random() <= policy.color.img_prob * progress:
            probs = box_sample_probs(boxes, self.scale_ratios["area"], splits, self.box_prob)
            selected = rng.random(len(boxes)) < probs
            x = apply_color_op(x, boxes, policy.color.name, policy.color.level, selected, splits,
                               self.scale_ratios["area"])
            changed = True
        if rng.random() <= policy.geometric.img_prob * progress:
            probs = box_sample_probs(boxes, self.scale_ratios["prob"], splits, self.box_prob)
            selected = rng.random(len(boxes)) < probs
            negate = rng.random() < 0.5
            x, boxes = apply_geometric_op(x, boxes, policy.geometric.name, policy.geometric.level, selected,
                                          negate)
            changed = True
        if not changed:
            return img.copy(), boxes
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), boxes
