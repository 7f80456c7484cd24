"""`attire train`: build data, model, loss and Lightning trainer from a config, fit, export."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    EarlyStopping,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from attire.data.cache import ImageCache
from attire.data.dataset import MultiTaskDataset, make_loader
from attire.data.manifest import Manifest, ManifestError
from attire.data.transforms import build_transforms
from attire.losses import build_multitask_loss
from attire.models.checkpoint import CheckpointMeta, Preprocessing, save_checkpoint
from attire.models.multitask import MultiTaskModel
from attire.training.config import TrainConfig
from attire.training.module import MultiTaskModule

log = logging.getLogger(__name__)
LAST = "last.ckpt"


@dataclass
class FitResult:
    export_dir: Path
    metrics: dict[str, float]
    skipped_steps: int


def load_training_manifest(cfg: TrainConfig) -> Manifest:
    """The manifest restricted to the configured tasks; refuses unknown label values."""
    manifest = Manifest.read(cfg.data.manifest, cfg.data.taxonomy)
    if cfg.data.tasks:
        manifest = Manifest(manifest.df, manifest.taxonomy.subset(cfg.data.tasks), manifest.root)
    problems = manifest.label_problems()
    if problems:
        shown = "\n  ".join(str(p) for p in problems[:5])
        raise ManifestError(
            f"{cfg.data.manifest}: {len(problems)} label values are not in the taxonomy; "
            f"run `attire data check` and fix or drop them:\n  {shown}"
        )
    return manifest


def build_datasets(
    cfg: TrainConfig, manifest: Manifest, mean, std
) -> tuple[MultiTaskDataset, MultiTaskDataset | None]:
    tax = manifest.taxonomy

    def make(split: str, train: bool) -> MultiTaskDataset:
        part = manifest.split(split)
        if len(part) == 0:
            raise ManifestError(f"{cfg.data.manifest}: split '{split}' has no rows")
        cache = ImageCache.for_manifest(
            part,
            cfg.data.cache_size,
            mode=cfg.data.resize_mode,
            cache_dir=cfg.data.cache_dir,
            workers=max(1, cfg.data.workers),
        )
        tf = build_transforms(cfg.augment, tax, cfg.data.image_size, mean, std, train=train)
        return MultiTaskDataset(part, cache, tf)

    train = make(cfg.data.train_split, True)
    val = make(cfg.data.val_split, False) if cfg.data.val_split else None
    return train, val


def build_trainer(cfg: TrainConfig, has_val: bool) -> L.Trainer:
    out = cfg.out_dir
    ckpt_every = ModelCheckpoint(
        dirpath=out / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=cfg.checkpoint_every_n_steps,
        save_on_train_epoch_end=True,
    )
    callbacks: list[L.Callback] = [ckpt_every, LearningRateMonitor("step"), RichProgressBar()]
    if has_val and cfg.early_stopping:
        es = cfg.early_stopping
        callbacks.append(EarlyStopping(es.monitor, patience=es.patience, mode=es.mode))
    if cfg.ema_decay:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema_decay))
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16-mixed" if torch.cuda.is_available() else "32-true"
    return L.Trainer(
        max_epochs=cfg.epochs,
        accumulate_grad_batches=cfg.accumulate,
        precision=precision,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        max_time=cfg.max_time,
        limit_train_batches=cfg.limit_train_batches,
        callbacks=callbacks,
        logger=[
            CSVLogger(out, name="logs", version=""),
            TensorBoardLogger(out, name="tensorboard", version=""),
        ],
        deterministic=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        log_every_n_steps=10,
        limit_val_batches=1.0 if has_val else 0,
    )


def fit(cfg: TrainConfig, *, resume: bool = False) -> FitResult:
    """Train from a validated config; with `resume`, continue from out_dir's last checkpoint."""
    L.seed_everything(cfg.seed, workers=True)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / "config.json").write_text(cfg.model_dump_json(indent=2), encoding="utf-8")
    manifest = load_training_manifest(cfg)
    model = MultiTaskModel(manifest.taxonomy, cfg.model)
    info = model.backbone_info
    train_ds, val_ds = build_datasets(cfg, manifest, info.mean, info.std)
    loss = build_multitask_loss(manifest.taxonomy, cfg.loss)
    module = MultiTaskModule(model, loss, cfg.optim, channels_last=cfg.channels_last)
    train_dl = make_loader(
        train_ds, cfg.batch_size, shuffle=True, workers=cfg.data.workers, seed=cfg.seed
    )
    val_dl = (
        make_loader(val_ds, cfg.batch_size, shuffle=False, workers=cfg.data.workers, seed=cfg.seed)
        if val_ds is not None
        else None
    )
    trainer = build_trainer(cfg, val_dl is not None)
    last = cfg.out_dir / "checkpoints" / LAST
    ckpt_path = str(last) if resume and last.exists() else None
    if resume and ckpt_path is None:
        log.warning("--resume: no %s yet, starting from scratch", last)
    trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    (cfg.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    meta = CheckpointMeta(
        model=cfg.model.model_dump(mode="json"),
        preprocessing=Preprocessing(
            input_size=cfg.data.image_size,
            cache_size=cfg.data.cache_size or cfg.data.image_size,
            mean=tuple(info.mean),
            std=tuple(info.std),
            resize_mode=cfg.data.resize_mode,
            eval_crop=cfg.augment.eval_crop,
        ),
        metrics=metrics,
        extra={"epochs_run": trainer.current_epoch, "skipped_steps": module.skipped_steps},
    )
    export = save_checkpoint(cfg.out_dir / "model", model, meta)
    return FitResult(export, metrics, module.skipped_steps)
