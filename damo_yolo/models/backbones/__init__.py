"""TinyNAS backbones: residual (T/S), CSP (M/L) and mobile (Nano)."""
from torch import nn

from ..zoo import BackboneCfg
from .tinynas_csp import TinyNASCSP
from .tinynas_mob import TinyNASMobile
from .tinynas_res import TinyNASRes

_BACKBONES = {"res": TinyNASRes, "csp": TinyNASCSP, "mob": TinyNASMobile}


def build_backbone(cfg: BackboneCfg) -> nn.Module:
    if cfg.kind not in _BACKBONES:
        raise ValueError(f"unknown backbone kind {cfg.kind!r}; known: {', '.join(_BACKBONES)}")
    return _BACKBONES[cfg.kind](cfg)


__all__ = ["TinyNASCSP", "TinyNASMobile", "TinyNASRes", "build_backbone"]
