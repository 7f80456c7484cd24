"""Augmentation and normalisation of cached uint8 CHW images (torchvision.transforms.v2).

The policy is label-aware: an augmentation that can change a label is switched off while a
task depends on what it changes. Hue/saturation shifts would turn a red shirt's label wrong,
so they are disabled whenever a colour task is trained; a horizontal flip would swap left and
right, so it is disabled when a task is declared left/right asymmetric; crops are kept
conservative (scale >= 0.7 by default) so garment length and sleeves stay decidable.
Channels-last is the trainer's business, not done here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor
from torchvision.transforms import v2

from attire.errors import AttireError
from attire.taxonomy import Taxonomy

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # (x - 127.5) / 127.5, as EfficientNet-Lite expects


class AugmentError(AttireError):
    """An augmentation policy that contradicts the tasks it trains."""


class AugmentPolicy(BaseModel):
    """Training augmentation; ``hflip``/``colour_jitter`` = None means: decide from the tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    scale: tuple[float, float] = Field(
        default=(0.7, 1.0), description="random resized crop area range (fraction of the image)"
    )
    ratio: tuple[float, float] = Field(default=(0.9, 1.1), description="crop aspect ratio range")
    rotate_deg: float = Field(default=8.0, ge=0, le=45, description="max rotation either way")
    translate: float = Field(default=0.05, ge=0, le=0.3, description="max shift, image fraction")
    zoom_out: float = Field(
        default=0.0,
        ge=0,
        lt=0.5,
        description="max shrink of the image inside its frame (padded): varies the scale "
        "without cutting anything off, for tightly framed shots whose edges carry labels",
    )
    brightness: float = Field(default=0.2, ge=0, lt=1)
    contrast: float = Field(default=0.2, ge=0, lt=1)
    saturation: float = Field(default=0.2, ge=0, lt=1, description="only without colour tasks")
    hue: float = Field(default=0.03, ge=0, le=0.5, description="only without colour tasks")
    hflip: bool | None = Field(default=None, description="None: on unless a task is asymmetric")
    colour_jitter: bool | None = Field(
        default=None, description="hue/saturation shifts; None: on unless a colour task exists"
    )
    colour_tasks: tuple[str, ...] = Field(
        default=(), description="colour tasks besides those named *colour*/*color*"
    )
    asymmetric_tasks: tuple[str, ...] = Field(
        default=(), description="tasks whose label a left/right flip would change"
    )
    eval_crop: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="centre fraction of the cached image kept at eval (0.875: 256 -> 224)",
    )

    @model_validator(mode="after")
    def _ranges(self) -> AugmentPolicy:
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale {self.scale} must satisfy 0 < low <= high <= 1")
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"ratio {self.ratio} must satisfy 0 < low <= high")
        return self

    def colour_task_names(self, taxonomy: Taxonomy) -> list[str]:
        """Tasks whose labels a hue/saturation shift would falsify."""
        return [
            t.name
            for t in taxonomy.tasks
            if "colour" in t.name or "color" in t.name or t.name in self.colour_tasks
        ]

    def use_colour_jitter(self, taxonomy: Taxonomy) -> bool:
        colour = self.colour_task_names(taxonomy)
        if self.colour_jitter and colour:
            raise AugmentError(
                f"augment.colour_jitter is true but {colour} are colour tasks: hue/saturation "
                "shifts would make their labels wrong; set it to null or false"
            )
        return not colour if self.colour_jitter is None else self.colour_jitter

    def use_hflip(self, taxonomy: Taxonomy) -> bool:
        asym = [t for t in taxonomy.task_names if t in self.asymmetric_tasks]
        if self.hflip and asym:
            raise AugmentError(
                f"augment.hflip is true but tasks {asym} are declared left/right asymmetric; "
                "set it to null or false"
            )
        return not asym if self.hflip is None else self.hflip


class CentreFraction(torch.nn.Module):
    """Centre crop keeping a fraction of the shorter side (size-agnostic, unlike CenterCrop)."""

    def __init__(self, fraction: float):
        super().__init__()
        self.fraction = fraction

    def forward(self, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        side = max(1, round(min(h, w) * self.fraction))
        return v2.functional.center_crop(img, [side, side])


def build_transforms(
    policy: AugmentPolicy,
    taxonomy: Taxonomy,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
) -> Callable[[Tensor], Tensor]:
    """uint8 [3, S, S] -> normalised float32 [3, input_size, input_size].

    Train: rotation/shift/zoom-out, conservative random resized crop, optional flip, brightness and
    contrast (plus hue/saturation only without colour tasks). Eval: optional centre crop
    (``policy.eval_crop``) and a resize, nothing random.
    """
    steps: list[Callable[[Tensor], Tensor]] = []
    if train:
        if policy.rotate_deg > 0 or policy.translate > 0 or policy.zoom_out > 0:
            t = policy.translate
            steps.append(
                v2.RandomAffine(
                    degrees=policy.rotate_deg,
                    translate=(t, t),
                    scale=(1 - policy.zoom_out, 1) if policy.zoom_out else None,
                )
            )
        steps.append(
            v2.RandomResizedCrop(input_size, scale=policy.scale, ratio=policy.ratio, antialias=True)
        )
        if policy.use_hflip(taxonomy):
            steps.append(v2.RandomHorizontalFlip())
        colour = policy.use_colour_jitter(taxonomy)
        jitter = {
            "brightness": policy.brightness,
            "contrast": policy.contrast,
            "saturation": policy.saturation if colour else 0.0,
            "hue": policy.hue if colour else 0.0,
        }
        if any(jitter.values()):
            steps.append(v2.ColorJitter(**jitter))
    else:
        if policy.eval_crop < 1:
            steps.append(CentreFraction(policy.eval_crop))
        steps.append(v2.Resize((input_size, input_size), antialias=True))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)
