"""The DAMO-YOLO model zoo as data: TinyNAS structures and per-variant settings.

Figures come from the official configs (configs/damoyolo_tinynasL*.py) and the TinyNAS structure files
(damo/base_models/backbones/nas_backbones/*.txt) of tinyvision/DAMO-YOLO (Apache-2.0).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StageCfg:
    """One TinyNAS stage: ``depth`` blocks, the first one ``in_ch → out_ch`` with ``stride``."""

    in_ch: int
    out_ch: int
    bottleneck: int  # btn: inner width of a residual block (ignored by the mobile backbone)
    stride: int
    depth: int  # L
    kernel: int = 3
    kxkx: bool = False  # SuperResConvKXKX (k×k then k×k) instead of K1KX (1x1 then k×k)


@dataclass(frozen=True)
class BackboneCfg:
    kind: str  # "res" | "csp" | "mob"
    stem_out: int
    stages: tuple[StageCfg, ...]
    act: str
    use_focus: bool
    out_channels: tuple[int, int, int]  # strides 8, 16, 32
    reparam: bool = True  # RepConv as the second conv of residual blocks
    with_spp: bool = True


@dataclass(frozen=True)
class ModelCfg:
    """One variant: its structure and the reference's settings around it (no reported figures)."""

    name: str
    official_config: str  # the reference config this variant reproduces
    input_size: tuple[int, int]  # (H, W) of the test transform
    backbone: BackboneCfg
    neck_depth: float  # blocks per CSP stage = round(3 * depth) (Python rounding)
    neck_hidden_ratio: float
    neck_out_channels: tuple[int, int, int]
    neck_act: str
    neck_depthwise: bool
    reg_max: int
    head_kernel: int
    score_threshold: float  # post-processing defaults of the reference
    iou_threshold: float
    strides: tuple[int, int, int] = (8, 16, 32)
    num_classes: int = 80
    tags: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ZooResult:
    """What the reference's model zoo reports for a variant."""

    params_m: float  # fused parameter count, millions
    coco_map: float  # COCO val2017 mAP@[.5:.95]


def _stages(*rows: tuple, kxkx: bool = False) -> tuple[StageCfg, ...]:
    """Rows are (in, out, btn, stride, L) as in the structure files (k = 3 everywhere)."""
    return tuple(StageCfg(i, o, b, s, n, 3, kxkx) for i, o, b, s, n in rows)


#                 in   out  btn  s  L
_T = _stages((24, 64, 24, 2, 2), (64, 96, 64, 2, 2), (96, 192, 96, 2, 2), (192, 192, 152, 1, 2),
             (192, 384, 192, 2, 1))
_S = _stages((32, 128, 24, 2, 1), (128, 128, 88, 2, 5), (128, 256, 128, 2, 3), (256, 256, 120, 1, 2),
             (256, 512, 144, 2, 1))
_M = _stages((32, 128, 64, 2, 2), (128, 128, 64, 2, 4), (128, 256, 256, 2, 4), (256, 256, 256, 1, 4),
             (256, 512, 256, 2, 3), kxkx=True)
_L = _stages((32, 128, 96, 2, 3), (128, 128, 96, 2, 5), (128, 256, 384, 2, 5), (256, 256, 384, 1, 5),
             (256, 512, 384, 2, 4), kxkx=True)
_NS = _stages((16, 24, 24, 2, 1), (24, 40, 64, 2, 2), (40, 64, 40, 2, 2), (64, 80, 152, 1, 2),
              (80, 160, 192, 2, 2))
_NM = _stages((16, 40, 24, 2, 2), (40, 64, 64, 2, 2), (64, 112, 40, 2, 2), (112, 128, 152, 1, 2),
              (128, 256, 192, 2, 1))
_NL = _stages((24, 48, 24, 2, 1), (48, 80, 64, 2, 2), (80, 160, 40, 2, 2), (160, 160, 152, 1, 3),
              (160, 320, 192, 2, 2))
_N = _stages((16, 40, 24, 2, 2), (40, 80, 64, 2, 2), (80, 112, 40, 2, 2), (112, 112, 152, 1, 2),
             (112, 160, 192, 2, 1))


def _res(stem: int, stages, out) -> BackboneCfg:
    return BackboneCfg("res", stem, stages, act="relu", use_focus=True, out_channels=out)


def _csp(stem: int, stages) -> BackboneCfg:
    return BackboneCfg("csp", stem, stages, act="silu", use_focus=True, out_channels=(128, 256, 512))


def _mob(stem: int, stages, out, use_focus: bool = False) -> BackboneCfg:
    return BackboneCfg("mob", stem, stages, act="silu", use_focus=use_focus, out_channels=out, reparam=False)


_LARGE = dict(input_size=(640, 640), neck_depthwise=False, reg_max=16, head_kernel=3, score_threshold=0.05,
              iou_threshold=0.7)  # the T, S, M, L recipe
_NANO = dict(input_size=(416, 416), neck_depth=0.5, neck_hidden_ratio=0.5, neck_act="silu", neck_depthwise=True,
             reg_max=7, score_threshold=0.03, iou_threshold=0.65)  # the Nano recipe

MODEL_CFGS: dict[str, ModelCfg] = {cfg.name: cfg for cfg in [
    ModelCfg(name="T", official_config="damoyolo_tinynasL20_T", backbone=_res(24, _T, (96, 192, 384)),
             neck_depth=1.0, neck_hidden_ratio=1.0, neck_out_channels=(64, 128, 256), neck_act="relu", **_LARGE),
    ModelCfg(name="S", official_config="damoyolo_tinynasL25_S", backbone=_res(32, _S, (128, 256, 512)),
             neck_depth=1.0, neck_hidden_ratio=0.75, neck_out_channels=(128, 256, 512), neck_act="relu", **_LARGE),
    ModelCfg(name="M", official_config="damoyolo_tinynasL35_M", backbone=_csp(32, _M),
             neck_depth=1.5, neck_hidden_ratio=1.0, neck_out_channels=(128, 256, 512), neck_act="silu", **_LARGE),
    ModelCfg(name="L", official_config="damoyolo_tinynasL45_L", backbone=_csp(32, _L),
             neck_depth=2.0, neck_hidden_ratio=1.0, neck_out_channels=(128, 256, 512), neck_act="silu", **_LARGE),
    ModelCfg(name="Ns", official_config="damoyolo_tinynasL18_Ns", backbone=_mob(16, _NS, (40, 80, 160)),
             neck_out_channels=(40, 80, 160), head_kernel=1, **_NANO),
    ModelCfg(name="Nm", official_config="damoyolo_tinynasL18_Nm", backbone=_mob(16, _NM, (64, 128, 256)),
             neck_out_channels=(64, 128, 256), head_kernel=1, **_NANO),
    ModelCfg(name="Nl", official_config="damoyolo_tinynasL20_Nl", backbone=_mob(24, _NL, (80, 160, 320)),
             neck_out_channels=(80, 160, 320), head_kernel=1, **_NANO),
    # The first (pre-v0.3.0) nano release; not in the current model-zoo table.
    ModelCfg(name="N", official_config="damoyolo_tinynasL20_N",
             backbone=_mob(16, _N, (80, 112, 160), use_focus=True), neck_out_channels=(64, 128, 256),
             head_kernel=3, tags=("legacy",), **_NANO),
]}

# The reference's model-zoo table (README of tinyvision/DAMO-YOLO), kept apart from the structures.
ZOO_RESULTS: dict[str, ZooResult] = {
    "T": ZooResult(params_m=8.5, coco_map=42.0), "S": ZooResult(params_m=16.3, coco_map=46.0),
    "M": ZooResult(params_m=28.2, coco_map=49.2), "L": ZooResult(params_m=42.1, coco_map=50.8),
    "Ns": ZooResult(params_m=1.41, coco_map=32.3), "Nm": ZooResult(params_m=2.71, coco_map=38.2),
    "Nl": ZooResult(params_m=5.69, coco_map=40.5),
}

# COCO class names in the contiguous order every reference config uses.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, in zoo order."""
    return list(MODEL_CFGS)


def get_model_cfg(name: str) -> ModelCfg:
    """Look a variant up by name, case-insensitively (``"ns"``, ``"damoyolo_ns"`` and ``"Ns"`` all work)."""
    full = str(name).strip().lower()
    key = full
    for prefix in ("damo-yolo-", "damoyolo_", "damo_yolo_", "damoyolo-"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    for cfg_name, cfg in MODEL_CFGS.items():
        if key == cfg_name.lower() or full == cfg.official_config.lower():
            return cfg
    raise ValueError(f"unknown DAMO-YOLO variant {name!r}; known: {', '.join(MODEL_CFGS)}")
