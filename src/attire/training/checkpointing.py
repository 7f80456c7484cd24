"""Resume checkpoints: always current, never half-written.

Two things in Lightning 2.6 are not enough on their own:

- `ModelCheckpoint(every_n_train_steps=N)` sets ``every_n_epochs`` to 0, and with
  ``save_top_k=0`` it then writes ``last.ckpt`` only on the steps that are multiples of N and
  once at the end of training, not at epoch ends; without ``every_n_train_steps`` it writes it
  only when training ends. `LastCheckpoint` writes ``last.ckpt`` after every epoch (after
  validation, so early-stopping state is in it) and, if asked, every N optimizer steps.
- `TorchCheckpointIO` saves through an fsspec transaction, which for local files writes a temp
  file in the system temp folder and ``shutil.move``s it: across filesystems that is a copy that
  a kill can leave half done, and nothing is fsynced. `AtomicCheckpointIO` writes beside the
  target, fsyncs, and ``os.replace``s, so a reader sees the old file or the new one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from attire.data.cache import pid_alive

log = logging.getLogger(__name__)

LAST = "last.ckpt"
_TMP = ".tmp"


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to ``.<name>.<pid>.tmp`` in the target folder, fsync, rename into place."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}{_TMP}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temp files left by writers that were killed (their process is gone)."""
    removed = []
    for tmp in folder.glob(f".*{_TMP}"):
        pid = tmp.name[: -len(_TMP)].rsplit(".", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.info("removed %d partial checkpoint files of killed runs in %s", len(removed), folder)
    return removed


class LastCheckpoint(Checkpoint):
    """Keeps ``<folder>/last.ckpt`` current: after each epoch and every `every_n_steps` steps.

    A step checkpoint is not written on an epoch's last batch: the epoch-end one follows it
    right after validation, and one taken before validation would make a resumed run skip that
    epoch's validation and epoch-end hooks.
    """

    def __init__(self, folder: Path, every_n_steps: int | None = None):
        self.folder = Path(folder)
        self.every_n_steps = every_n_steps
        self._saved_at: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LAST

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        n = self.every_n_steps
        step = trainer.global_step
        if not n or step == 0 or step % n or step == self._saved_at:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_at = trainer.global_step
