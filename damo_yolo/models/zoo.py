"""The DAMO-YOLO model zoo as data: TinyNAS structures and per-variant settings.

Figures come from the official configs (configs/damoyolo_tinynasL*.py) and the TinyNAS structure files
(damo/base_models/backbones/nas_backbones/*.txt) of tinyvision/DAMO-YOLO (Apache-2.0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


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
    zoo_params_m: Optional[float] = None  # fused parameter count of the README model zoo (millions)
    zoo_map: Optional[float] = None  # COCO val2017 mAP reported for the variant
    strides: tuple[int, int, int] = (8, 16, 32)
    num_classes: int = 80
    tags: tuple[str, ...] = field(default=())


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


MODEL_CFGS: dict[str, ModelCfg] = {cfg.name: cfg for cfg in [
    ModelCfg("T", "damoyolo_tinynasL20_T", (640, 640), _res(24, _T, (96, 192, 384)),
             1.0, 1.0, (64, 128, 256), "relu", False, 16, 3, 0.05, 0.7, 8.5, 42.0),
    ModelCfg("S", "damoyolo_tinynasL25_S", (640, 640), _res(32, _S, (128, 256, 512)),
             1.0, 0.75, (128, 256, 512), "relu", False, 16, 3, 0.05, 0.7, 16.3, 46.0),
    ModelCfg("M", "damoyolo_tinynasL35_M", (640, 640), _csp(32, _M),
             1.5, 1.0, (128, 256, 512), "silu", False, 16, 3, 0.05, 0.7, 28.2, 49.2),
    ModelCfg("L", "damoyolo_tinynasL45_L", (640, 640), _csp(32, _L),
             2.0, 1.0, (128, 256, 512), "silu", False, 16, 3, 0.05, 0.7, 42.1, 50.8),
    ModelCfg("Ns", "damoyolo_tinynasL18_Ns", (416, 416), _mob(16, _NS, (40, 80, 160)),
             0.5, 0.5, (40, 80, 160), "silu", True, 7, 1, 0.03, 0.65, 1.41, 32.3),
    ModelCfg("Nm", "damoyolo_tinynasL18_Nm", (416, 416), _mob(16, _NM, (64, 128, 256)),
             0.5, 0.5, (64, 128, 256), "silu", True, 7, 1, 0.03, 0.65, 2.71, 38.2),
    ModelCfg("Nl", "damoyolo_tinynasL20_Nl", (416, 416), _mob(24, _NL, (80, 160, 320)),
             0.5, 0.5, (80, 160, 320), "silu", True, 7, 1, 0.03, 0.65, 5.69, 40.5),
    # The first (pre-v0.3.0) nano release; not in the current model-zoo table.
    ModelCfg("N", "damoyolo_tinynasL20_N", (416, 416), _mob(16, _N, (80, 112, 160), use_focus=True),
             0.5, 0.5, (64, 128, 256), "silu", True, 7, 3, 0.03, 0.65, tags=("legacy",)),
]}

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
