"""Backbones: the DRNs (registered with timm on import), timm's models, and their weights."""

from attire.models.backbone import BackboneInfo, WeightsSource, create_backbone, list_backbones
from attire.models.drn import DRN
from attire.models.pretrained import WeightsError

__all__ = [
    "DRN",
    "BackboneInfo",
    "WeightsError",
    "WeightsSource",
    "create_backbone",
    "list_backbones",
]
