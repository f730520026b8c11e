"""Random but realistic weights: random BN affine parameters, then BN running statistics calibrated on
an input in eval mode (and slightly perturbed), in the spirit of the official fixtures. Activations keep a
trained network's scale, so fused-vs-unfused and round-trip checks compare non-trivial, well-conditioned outputs."""
from __future__ import annotations

import torch
from torch import nn


def random_images(shape=(2, 3, 320, 416), seed: int = 0) -> torch.Tensor:
    """Photograph-like test inputs in 0–255: smooth random colour fields with fine noise on top."""
    gen = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    coarse = torch.rand(b, c, max(1, h // 32), max(1, w // 32), generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (0.85 * smooth + 0.15 * torch.rand(shape, generator=gen)) * 255


@torch.no_grad()
def randomize_model(model: nn.Module, shape=(2, 3, 320, 416), seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=gen))
        bn.bias.copy_(0.1 * torch.randn(bn.bias.shape, generator=gen))

    def calibrate(bn: nn.BatchNorm2d, inputs: tuple) -> None:
        # eval-mode statistics of this BN's actual input; layers run in order, so upstream is calibrated
        x = inputs[0].transpose(0, 1).flatten(1)
        bn.running_mean.copy_(x.mean(1))
        bn.running_var.copy_(x.var(1) * (0.9 + 0.2 * torch.rand(x.shape[0], generator=gen)))

    handles = [bn.register_forward_pre_hook(calibrate) for bn in bns]
    model.eval()
    model(random_images(shape, seed=seed + 1000))
    for handle in handles:
        handle.remove()
    head = getattr(model, "head", None)
    if head is not None:  # prediction convs spread like a trained head's (scores well inside (0, 1))
        for convs, bias_mean in ((head.gfl_cls, -1.0), (head.gfl_reg, 0.0)):
            for conv in convs:
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / fan_in ** 0.5)
                conv.bias.copy_(bias_mean + 0.5 * torch.randn(conv.bias.shape, generator=gen))
        for scale in head.scales:
            scale.scale.fill_(0.5 + torch.rand((), generator=gen).item())
    return model.eval()
