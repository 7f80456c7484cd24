"""Per-task classifier heads: one or more FC layers on the shared pooled embedding."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class HeadConfig(BaseModel):
    """Shape of one task's head: hidden FC sizes (empty = a single linear layer) and dropout."""

    model_config = ConfigDict(extra="forbid")
    hidden: list[int] = Field(default_factory=list)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class TaskHead(nn.Module):
    """Dropout -> [Linear -> LayerNorm -> ReLU]* -> Linear.

    The input of the last linear layer is the task's own embedding, which embedding-space losses
    (Range loss) and classifier re-training (cRT, tau-normalisation) work on. LayerNorm, not
    BatchNorm: a head must work on a last batch of one image and on one task's labelled subset.
    """

    def __init__(self, in_features: int, num_classes: int, cfg: HeadConfig | None = None):
        super().__init__()
        cfg = cfg or HeadConfig()
        layers: list[nn.Module] = [nn.Dropout(cfg.dropout)] if cfg.dropout > 0 else []
        width = in_features
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU(inplace=True)]
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.embedding_dim = width
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits, task embedding)."""
        emb = self.body(x)
        return self.fc(emb), emb
