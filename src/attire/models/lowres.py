"""ResNet-18 for low-resolution input (64 px thumbnails), as a timm model.

An ImageNet ResNet shrinks its input 4x in the stem (a 7x7 stride-2 conv, then a stride-2
max-pool): at 64 px the first residual stage sees 16x16, and a 2-px stripe, a dot or the tip of a
V neck is averaged away before any block looks at it. As CIFAR ResNets do, ``resnet18_lowres``
swaps the stem conv for a 3x3 stride-1 conv and keeps the max-pool: network stride 16 instead of
32, the same blocks and weights (8k fewer), about 3.8x the FLOPs at a given size (1.12 vs 0.30
GFLOPs at 64 px, a multiply-add counted as 2). Importing this module registers it with timm.
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, ResNet, _cfg
from torch import nn

__all__ = ["resnet18_lowres"]

# timm's ResNet defaults, at the input size this network is for.
default_cfgs = generate_default_cfgs(
    {"resnet18_lowres": _cfg(input_size=(3, 64, 64), pool_size=(4, 4), crop_pct=1.0)}
)


def _stride1_stem(model: ResNet) -> ResNet:
    """Replace the 7x7 stride-2 stem conv by a 3x3 stride-1 one; every reduction halves."""
    old = model.conv1
    model.conv1 = nn.Conv2d(
        old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False
    )
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.feature_info = [
        {**info, "reduction": info["reduction"] // 2} for info in model.feature_info
    ]
    return model


@register_model
def resnet18_lowres(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 with a stride-1 3x3 stem conv: stride 16, for 32-96 px input. No weights."""
    if pretrained:
        raise ValueError("resnet18_lowres has no published weights: train it or load a file")
    if kwargs.get("features_only"):
        raise ValueError("resnet18_lowres: features_only is not supported (attire pools features)")
    model = build_model_with_cfg(
        ResNet, "resnet18_lowres", False, block=BasicBlock, layers=(2, 2, 2, 2), **kwargs
    )
    return _stride1_stem(model)
