"""Does a backbone learn colour from scratch? DRN-C-26 with and without zero-init, and ResNet-18.

A toy task isolates what the learnability run showed (DRN-C-26 fit shapes and not colours): a
16 x 16 square of one of K random colours (plus a little noise) on a random plain background,
32 px, trained from scratch for a few steps with AdamW at the trainer's default learning rate;
accuracy on 256 fresh images. One thread, seeded, on this CPU:

    .venv/bin/python bench/drn_init.py                      # ~5 min: the three rows below
    .venv/bin/python bench/drn_init.py --steps 30 --models resnet18,drn_c_26

Rows: ``drn_c_26`` (zero-init of each residual block's last BN, attire's default, as timm's
ResNets), ``drn_c_26:reference-init`` (every BN weight 1, as the authors' code) and ``resnet18``.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from torch.nn import functional as F

import attire.models  # noqa: F401  (registers the DRNs)


def batch(colours: torch.Tensor, n: int, size: int, gen: torch.Generator) -> tuple:
    """Images whose label is the colour of a square at a random place."""
    k = len(colours)
    y = torch.randint(0, k, (n,), generator=gen)
    x = torch.rand(n, 3, 1, 1, generator=gen).expand(n, 3, size, size).clone()
    side = size // 2
    corners = torch.randint(0, size - side + 1, (n, 2), generator=gen)
    noise = 0.05 * torch.randn(n, 3, generator=gen)
    for i in range(n):
        a, b = corners[i].tolist()
        x[i, :, a : a + side, b : b + side] = (colours[y[i]] + noise[i]).view(3, 1, 1)
    return (x - 0.5) / 0.25, y


def run(spec: str, colours: torch.Tensor, steps: int, size: int, seed: int) -> dict:
    name, _, variant = spec.partition(":")
    torch.manual_seed(seed)
    kwargs = {"zero_init_last": False} if variant == "reference-init" else {}
    model = timm.create_model(name, num_classes=len(colours), **kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = batch(colours, 64, size, gen)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = batch(colours, 256, size, gen)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    return {"model": spec, "loss": loss.item(), "acc": acc, "s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default="drn_c_26,drn_c_26:reference-init,resnet18")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    colours = torch.rand(args.classes, 3, generator=torch.Generator().manual_seed(args.seed))
    print(f"{args.classes} colours, {args.steps} steps of 64 images at {args.size} px")
    print("| model | last training loss | accuracy | seconds |\n| --- | --- | --- | --- |")
    for spec in args.models.split(","):
        r = run(spec, colours, args.steps, args.size, args.seed)
        print(f"| {r['model']} | {r['loss']:.3f} | {r['acc']:.3f} | {r['s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
