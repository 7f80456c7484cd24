"""Range loss (Zhang et al., "Range Loss for Deep Face Recognition with Long-tailed Training
Data", ICCV 2017): an embedding-space term that tightens every class and separates the closest
pair of classes within a batch, so that rare classes, which get few softmax gradients, still
shape the embedding.

    L_intra = sum over classes c in the batch of  k' / sum_{j=1..k'} 1 / D_j(c)
    L_inter = max(margin - D_center, 0)
    L_R     = alpha * L_intra + beta * L_inter

D_j(c) are the k largest distances between distinct pairs of samples of class c, each unordered
pair counted once; k' = min(k, number of pairs), i.e. a class with fewer than k pairs takes the
harmonic mean of all its pairs (a class with 2 samples: its single distance), and a class with one
sample has no pairs and adds 0. D_center is the distance between the two closest class centres
(means of the batch's samples of each class); with fewer than two classes L_inter = 0.
Distances are Euclidean; `squared=True` uses squared Euclidean distances, as the paper's
equations write them (the margin is then in squared units). `normalize=True` measures on
L2-normalised embeddings: unnormalised, L_intra falls by shrinking every embedding towards 0,
which with a pretrained backbone (large feature norms) collapsed training to one class on
clothing-dataset (docs/BENCHMARKS.md); on the unit sphere it can only fall by tightening.
A public implementation that is widely copied computes k / sum(D) instead of the harmonic mean,
counts every pair twice and swaps alpha and beta; this one is checked against a brute-force
reference in the tests.

The model trains on softmax loss + lambda * L_R; `MultiTaskLoss` adds lambda * L_R to a task's
loss when the task's config has a `range:` section.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attire.losses.masked import LossError

_MIN_DISTANCE = 1e-8
"""Distances are clamped here before 1/D: two identical samples of a class then add about 0 to
L_intra and no gradient, instead of inf and NaN."""


class RangeLoss(nn.Module):
    """L_R of a batch: `forward(embeddings [B, D], target [B]) -> scalar`.

    `target` holds class indices with -1 = missing; missing rows are left out (they count in no
    class and no centre) and get exactly zero gradient. A batch without labelled rows gives 0.
    Soft labels are not used: a class needs hard members.
    """

    def __init__(
        self,
        k: int = 2,
        margin: float = 1.0,
        alpha: float = 1.0,
        beta: float = 1.0,
        squared: bool = False,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise LossError(f"range loss: k must be an integer >= 1, got {k!r}")
        for name, value in (("margin", margin), ("alpha", alpha), ("beta", beta)):
            if not (isinstance(value, int | float) and 0 <= value < float("inf")):
                raise LossError(f"range loss: {name} must be a number >= 0, got {value!r}")
        self.k = k
        self.margin, self.alpha, self.beta = float(margin), float(alpha), float(beta)
        self.squared = bool(squared)
        self.normalize = bool(normalize)

    def forward(self, embeddings: Tensor, target: Tensor) -> Tensor:
        intra, inter = self.terms(embeddings, target)
        return self.alpha * intra + self.beta * inter

    def terms(self, embeddings: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """(L_intra, L_inter), before alpha and beta."""
        if embeddings.dim() != 2:
            raise LossError(
                f"range loss: embeddings must be [batch, dim], got {list(embeddings.shape)}"
            )
        if target.dim() != 1 or target.is_floating_point():
            raise LossError(
                "range loss needs a multiclass task's class indices [batch], got "
                f"{target.dtype} of shape {list(target.shape)}"
            )
        if target.shape[0] != embeddings.shape[0]:
            raise LossError(
                f"range loss: {target.shape[0]} targets for {embeddings.shape[0]} embeddings"
            )
        if embeddings.dtype in (torch.float16, torch.bfloat16):
            embeddings = embeddings.float()
        keep = target >= 0
        x, y = embeddings[keep], target[keep]
        if self.normalize:
            x = nn.functional.normalize(x, dim=1)
        zero = x[:0].sum()  # exactly 0, and part of the graph so backward() always works
        sizes = torch.unique(y, return_counts=True)[1].tolist()  # ascending class order
        groups = x[torch.argsort(y, stable=True)].split(sizes) if sizes else ()
        intra = zero
        for members in groups:
            d = self._distances(members)
            if d.numel():
                largest = d.topk(min(self.k, d.numel())).values.clamp_min(_MIN_DISTANCE)
                intra = intra + largest.numel() / largest.reciprocal().sum()
        inter = zero
        if len(groups) >= 2:
            centres = torch.stack([members.mean(dim=0) for members in groups])
            inter = torch.relu(self.margin - self._distances(centres).min())
        return intra, inter

    def _distances(self, points: Tensor) -> Tensor:
        """Distance of every unordered pair of rows, each pair once."""
        d = torch.pdist(points)
        return d.square() if self.squared else d
