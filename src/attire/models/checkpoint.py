"""The exported checkpoint: a self-describing folder that predicts and serves on its own.

    model/
      weights.safetensors   the network's state dict
      attire.json           attire version, model config, preprocessing, metrics, thresholds
      taxonomy.yaml         the tasks and classes the heads index

No training config is needed to use it; the folder is written under a temporary name and
renamed into place, so a reader never sees half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from attire import __version__
from attire.errors import AttireError
from attire.models.multitask import ModelConfig, MultiTaskModel
from attire.taxonomy import Taxonomy, load_taxonomy

WEIGHTS, META, TAXONOMY = "weights.safetensors", "attire.json", "taxonomy.yaml"


class CheckpointError(AttireError):
    """A checkpoint folder that is missing a file or does not match its config."""


@dataclass
class Preprocessing:
    """How pixels must be prepared for this model (the service and tagger repeat it exactly)."""

    input_size: int
    cache_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "pad"
    eval_crop: float = 1.0
    # trained on mirrored images too (no task is left/right asymmetric): mirroring at test time
    # (Predictor's tta) asks the same question twice; False in checkpoints from before attire
    # recorded it
    hflip: bool = False


@dataclass
class CheckpointMeta:
    model: dict[str, Any]
    preprocessing: Preprocessing
    metrics: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    attire_version: str = __version__


def save_checkpoint(out_dir: str | Path, model: MultiTaskModel, meta: CheckpointMeta) -> Path:
    """Write weights, metadata and taxonomy atomically (replacing an older export)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"attire_version": __version__})
        payload = asdict(meta)
        (tmp / META).write_text(json.dumps(payload, indent=2), encoding="utf-8")
        model.taxonomy.save(tmp / TAXONOMY)
        _readable_by_all(tmp)
        old = out_dir.with_name(f".{out_dir.name}.old")
        if out_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _readable_by_all(folder: Path) -> None:
    """mkdtemp makes a private 0700 folder; a service running as another user must read it."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def read_meta(ckpt_dir: str | Path) -> tuple[CheckpointMeta, Taxonomy]:
    ckpt_dir = Path(ckpt_dir)
    for name in (WEIGHTS, META, TAXONOMY):
        if not (ckpt_dir / name).exists():
            raise CheckpointError(
                f"{ckpt_dir}: not an attire checkpoint folder (missing {name}); "
                "pass the folder written by `attire train` (e.g. runs/NAME/model)"
            )
    raw = json.loads((ckpt_dir / META).read_text(encoding="utf-8"))
    raw["preprocessing"] = Preprocessing(**raw["preprocessing"])
    return CheckpointMeta(**raw), load_taxonomy(ckpt_dir / TAXONOMY)


def load_checkpoint(ckpt_dir: str | Path) -> tuple[MultiTaskModel, CheckpointMeta]:
    """Rebuild the model from the folder alone (no download, no training config)."""
    ckpt_dir = Path(ckpt_dir)
    meta, taxonomy = read_meta(ckpt_dir)
    model = MultiTaskModel(taxonomy, ModelConfig(**meta.model), load_pretrained=False)
    state = load_file(str(ckpt_dir / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt_dir / WEIGHTS}: weights do not match the model config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.eval()
    return model, meta
