"""Prediction from an exported checkpoint: the same preprocessing as training, per-task scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attire.data.cache import ImageCache, resize_square, to_rgb
from attire.data.dataset import PathsDataset, make_loader
from attire.data.transforms import AugmentPolicy, build_transforms
from attire.models.checkpoint import load_checkpoint
from attire.models.multitask import EMBEDDING


@dataclass
class Prediction:
    """One image's scores: task -> probabilities over the task's classes (sigmoid if multilabel)."""

    image: str
    probs: dict[str, np.ndarray]


class Predictor:
    """Loads a checkpoint folder once and scores images in batches."""

    def __init__(self, ckpt_dir: str | Path, device: str = "cpu"):
        self.model, self.meta = load_checkpoint(ckpt_dir)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.taxonomy = self.model.taxonomy
        pre = self.meta.preprocessing
        self.transform = build_transforms(
            AugmentPolicy(eval_crop=pre.eval_crop),
            self.taxonomy,
            pre.input_size,
            pre.mean,
            pre.std,
            train=False,
        )

    @torch.inference_mode()
    def scores(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """Normalised batch [B,3,H,W] -> task -> [B, C] probabilities."""
        out = self.model(batch.to(self.device))
        probs = {}
        for task in self.taxonomy.tasks:
            logits = out[task.name].float()
            p = torch.sigmoid(logits) if task.multilabel else torch.softmax(logits, dim=1)
            probs[task.name] = p.cpu().numpy()
        return probs

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> np.ndarray:
        return self.model(batch.to(self.device))[EMBEDDING].float().cpu().numpy()

    def predict_images(
        self, images: Sequence[Image.Image], names: Sequence[str]
    ) -> list[Prediction]:
        """Score in-memory images (the service's path)."""
        pre = self.meta.preprocessing
        arrays = [resize_square(to_rgb(im), pre.cache_size, pre.resize_mode) for im in images]
        batch = torch.stack([self.transform(torch.from_numpy(a).permute(2, 0, 1)) for a in arrays])
        probs = self.scores(batch)
        return [
            Prediction(str(n), {t: p[i] for t, p in probs.items()}) for i, n in enumerate(names)
        ]

    def predict_paths(
        self,
        paths: Sequence[str | Path],
        *,
        batch_size: int = 32,
        workers: int = 0,
        cache_dir: Path | None = None,
    ) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """Score image files; returns predictions and (path, reason) of undecodable files."""
        pre = self.meta.preprocessing
        cache = ImageCache.build(
            [Path(p) for p in paths],
            pre.cache_size,
            mode=pre.resize_mode,
            cache_dir=cache_dir,
            workers=max(1, workers),
            progress=len(paths) > 64,
        )
        ds = PathsDataset(cache, self.transform)
        results: list[Prediction] = []
        for batch in make_loader(ds, batch_size, workers=workers):
            probs = self.scores(batch["image"])
            for j, row in enumerate(batch["index"].tolist()):
                results.append(Prediction(cache.paths[row], {t: p[j] for t, p in probs.items()}))
        return results, ds.failed

    def top_k(self, pred: Prediction, k: int = 3) -> dict[str, list[dict]]:
        """task -> the k best classes as {class, name, prob}; multilabel adds `present`."""
        out = {}
        for task in self.taxonomy.tasks:
            p = pred.probs[task.name]
            order = np.argsort(-p)[: min(k, len(p))]
            rows = []
            for i in order:
                c = task.classes[int(i)]
                row = {"class": c.id, "name": c.name, "prob": round(float(p[i]), 4)}
                if task.multilabel:
                    row["present"] = bool(p[i] >= 0.5)
                rows.append(row)
            out[task.name] = rows
        return out
