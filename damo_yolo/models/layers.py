"""Shared building blocks of DAMO-YOLO (TinyNAS backbones, RepGFPN neck).

Module and attribute names follow the official tinyvision/DAMO-YOLO code (Apache-2.0), so that the
official checkpoints load with ``strict=True``: ``conv``/``bn`` for ConvBNAct, ``conv1``/``bn1`` for
the backbone's ConvKXBN, ``rbr_dense``/``rbr_1x1``/``rbr_reparam`` for RepConv.
"""
from __future__ import annotations

from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import nn

# BatchNorm settings of the whole detector (the reference sets them on every BN after building).
BN_EPS = 1e-3
BN_MOMENTUM = 0.03

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "silu": nn.SiLU,
    "identity": nn.Identity,
}

ActLike = Union[str, None, nn.Module]


def get_activation(name: ActLike) -> nn.Module:
    """Return a fresh activation module for ``name`` ('relu', 'silu', 'identity'/None)."""
    if isinstance(name, nn.Module):
        return name
    key = "identity" if name is None else str(name).lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(_ACTIVATIONS))}")
    return _ACTIVATIONS[key]()


def batch_norm(channels: int, affine: bool = True) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM, affine=affine)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNAct(nn.Module):
    """Conv(k, s, same padding, no bias) → BN → act. Used by the neck, Focus and SPP."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: ActLike = "silu"):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = batch_norm(out_ch)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ConvKXBN(nn.Module):
    """Conv(k, s, no bias) → BN, with the backbone's ``conv1``/``bn1`` names."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn1 = batch_norm(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv1(x))


class ConvKXBNRELU(nn.Module):
    """ConvKXBN stored as ``conv``, then an activation (ReLU unless told otherwise)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, act: ActLike = "relu"):
        super().__init__()
        self.conv = ConvKXBN(in_ch, out_ch, kernel, stride)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _ConvBN(nn.Sequential):
    """One RepConv branch: ``conv`` → ``bn``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int):
        super().__init__()
        self.add_module("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False))
        self.add_module("bn", batch_norm(out_ch))


def _fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an inference-mode BN into the preceding bias-free conv: returns (weight, bias)."""
    std = (bn.running_var.double() + bn.eps).sqrt()
    gamma = bn.weight.double() if bn.affine else torch.ones_like(std)
    beta = bn.bias.double() if bn.affine else torch.zeros_like(std)
    return kernel.double() * (gamma / std).reshape(-1, 1, 1, 1), beta - bn.running_mean.double() * gamma / std


class RepConv(nn.Module):
    """RepVGG-style 3x3 conv: act(BN(conv3x3) + BN(conv1x1)); no identity branch.

    ``switch_to_deploy()`` fuses both branches into one biased 3x3 conv ``rbr_reparam``; ``deploy=True``
    builds the fused form directly so fused state dicts load.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, act: ActLike = "relu",
                 deploy: bool = False):
        super().__init__()
        if kernel != 3:
            raise ValueError(f"RepConv supports kernel 3 only, got {kernel}")
        self.in_channels, self.out_channels, self.stride = in_ch, out_ch, stride
        self.act = get_activation(act)
        if deploy:
            self.rbr_reparam = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=True)
        else:
            self.rbr_dense = _ConvBN(in_ch, out_ch, 3, stride)
            self.rbr_1x1 = _ConvBN(in_ch, out_ch, 1, stride)

    @property
    def deploy(self) -> bool:
        return hasattr(self, "rbr_reparam")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.act(self.rbr_reparam(x))
        return self.act(self.rbr_dense(x) + self.rbr_1x1(x))

    @torch.no_grad()
    def fused_kernel_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single 3x3 kernel and bias equal to both branches, computed in float64."""
        w3, b3 = _fold_bn(self.rbr_dense.conv.weight, self.rbr_dense.bn)
        w1, b1 = _fold_bn(self.rbr_1x1.conv.weight, self.rbr_1x1.bn)
        return w3 + F.pad(w1, [1, 1, 1, 1]), b3 + b1

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if self.deploy:
            return
        weight, bias = self.fused_kernel_and_bias()
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, self.stride, 1, bias=True)
        dense = self.rbr_dense.conv.weight
        conv = conv.to(device=dense.device, dtype=dense.dtype)
        conv.weight.copy_(weight.to(dense.dtype))
        conv.bias.copy_(bias.to(dense.dtype))
        del self.rbr_dense, self.rbr_1x1
        self.rbr_reparam = conv


def reparameterize_model(model: nn.Module) -> nn.Module:
    """Fuse every RepConv of ``model`` in place (deploy form) and return it."""
    for module in model.modules():
        if isinstance(module, RepConv):
            module.switch_to_deploy()
    return model


class Focus(nn.Module):
    """Space-to-depth (×2) followed by ConvBNAct(4·in → out)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, act: ActLike = "silu"):
        super().__init__()
        self.conv = ConvBNAct(in_ch * 4, out_ch, kernel, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channel order of the reference: (even, even), (odd, even), (even, odd), (odd, odd) over (H, W)
        x = torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], dim=1)
        return self.conv(x)


class SPPBottleneck(nn.Module):
    """1x1 reduce → [x, maxpool5, maxpool9, maxpool13] → 1x1. SiLU unless told otherwise."""

    def __init__(self, in_ch: int, out_ch: int, pool_sizes: tuple[int, ...] = (5, 9, 13), act: ActLike = "silu"):
        super().__init__()
        hidden = in_ch // 2
        self.conv1 = ConvBNAct(in_ch, hidden, 1, act=act)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in pool_sizes)
        self.conv2 = ConvBNAct(hidden * (len(pool_sizes) + 1), out_ch, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.pools], dim=1))


class DepthwiseConv(nn.Module):
    """Depthwise k×k (stride s) → BN → act → pointwise 1x1 → BN → act; the Nano neck's downsampler."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, act: ActLike = "silu"):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, kernel, stride, (kernel - 1) // 2, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, 1, 0, bias=False)
        self.dwnorm = batch_norm(in_ch)
        self.pwnorm = batch_norm(out_ch)
        self.dwact = get_activation(act)
        self.pwact = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dwact(self.dwnorm(self.depthwise(x)))
        return self.pwact(self.pwnorm(self.pointwise(x)))


class InvertedResidual(nn.Module):
    """MobileNetV3-style block: 1x1 expand → BN → act → dw 5x5 → BN → [SE] → act → 1x1 → BN (+x).

    ``with_se_slot`` keeps the backbone's Sequential layout (an Identity at index 5 where SE would sit,
    so the projection is at index 7); the neck's block has no slot (projection at index 6).
    """

    def __init__(self, in_ch: int, out_ch: int, hidden: int, stride: int = 1, act: ActLike = "silu",
                 with_se_slot: bool = True):
        super().__init__()
        layers = [
            nn.Conv2d(in_ch, hidden, 1, 1, 0, bias=False), batch_norm(hidden), get_activation(act),
            nn.Conv2d(hidden, hidden, 5, stride, 2, groups=hidden, bias=False), batch_norm(hidden),
        ]
        if with_se_slot:
            layers.append(nn.Identity())
        layers += [get_activation(act), nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False), batch_norm(out_ch)]
        self.conv = nn.Sequential(*layers)
        self.use_shortcut = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_shortcut else y


class ResConvBlock(nn.Module):
    """TinyNAS residual block: ConvKXBN (1x1 for K1KX, k×k for KXKX) → act → RepConv(stride) → (+x) → act.

    A stride-2 block has no shortcut; a stride-1 block with in ≠ out projects the input with a 1x1 ConvKXBN.
    """

    def __init__(self, in_ch: int, out_ch: int, bottleneck: int, kernel: int = 3, stride: int = 1,
                 act: ActLike = "relu", first_kernel: int = 1, reparam: bool = True):
        super().__init__()
        self.stride = stride
        self.conv1 = ConvKXBN(in_ch, bottleneck, first_kernel, 1)
        if reparam:
            self.conv2 = RepConv(bottleneck, out_ch, kernel, stride, act="identity")
        else:
            self.conv2 = ConvKXBN(bottleneck, out_ch, kernel, stride)
        self.act1 = get_activation(act)
        self.act2 = get_activation(act)
        if stride != 2 and in_ch != out_ch:
            self.residual_proj = ConvKXBN(in_ch, out_ch, 1, 1)
        else:
            self.residual_proj = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act1(self.conv1(x)))
        if self.stride != 2:
            y = y + (x if self.residual_proj is None else self.residual_proj(x))
        return self.act2(y)


def init_batch_norms(model: nn.Module) -> None:
    """Set eps/momentum of every BatchNorm to the reference's values (eps is not in a state dict)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eps, module.momentum = BN_EPS, BN_MOMENTUM


__all__ = [
    "BN_EPS", "BN_MOMENTUM", "ConvBNAct", "ConvKXBN", "ConvKXBNRELU", "DepthwiseConv", "Focus",
    "InvertedResidual", "RepConv", "ResConvBlock", "SPPBottleneck", "batch_norm", "get_activation",
    "init_batch_norms", "make_divisible", "reparameterize_model",
]
