"""Decode every image once into a memory-mapped uint8 array, so training never waits on JPEGs.

Training on CPU runs at tens of images per second; decoding and resizing a JPEG costs about as
much as a forward pass, so each image is decoded once per (image set, size, resize mode) into
``<cache_dir>/<mode><size>-<key>.npy`` (shape (N, S, S, 3), uint8) beside a JSON sidecar with
the image ids, paths, the content key and each row's status. The key hashes the image paths,
their sizes and mtimes, S and the mode, so an edited image or manifest gives a new cache and an
unchanged one is reused without decoding anything.

Resize modes:
- ``pad`` (default): letterbox the whole image onto SxS, padding with the mean colour of the
  resized image's border, so garment length and sleeves stay visible.
- ``crop``: short side to S, centre crop SxS (torchvision's ``Resize(S)`` + ``CenterCrop(S)``);
  a 256 crop cache plus an eval centre crop of 0.875 reproduces the usual 256 -> 224 pipeline.

A build writes temporary files and renames them into place only when complete, so a killed
build never leaves a cache that looks valid. Images that fail to decode become zero rows that
are recorded (``ok``/``errors``), logged one line each, and excluded by the datasets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageOps
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from attire.errors import AttireError

if TYPE_CHECKING:
    from attire.data.manifest import Manifest

log = logging.getLogger(__name__)

ResizeMode = Literal["pad", "crop"]
RESIZE_MODES: tuple[str, ...] = ("pad", "crop")
FORMAT_VERSION = 1
_CHUNK = 64  # rows per worker task: large enough to amortise IPC, small enough for the bar
_RESAMPLE = Image.Resampling.BICUBIC


class ImageCacheError(AttireError):
    """A cache that cannot be built, read or used with the given images."""


def default_cache_dir() -> Path:
    """``$ATTIRE_CACHE`` or ``~/.cache/attire``: outside the (read-only) dataset folders."""
    env = os.environ.get("ATTIRE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attire"


# -- decoding ---------------------------------------------------------------------------------


def load_image(path: str | Path, size: int, mode: ResizeMode = "pad") -> np.ndarray:
    """One image as an (S, S, 3) uint8 RGB array, resized the way the cache stores it."""
    with Image.open(path) as im:
        w, h = im.size
        scale = size / (max(w, h) if mode == "pad" else min(w, h))
        # JPEG decodes at 1/2, 1/4, 1/8 scale almost for free; keeping >= 2x the target (as
        # Pillow's thumbnail does) leaves the antialiased resize to smooth the DCT shortcut.
        im.draft("RGB", (max(1, int(2 * w * scale)), max(1, int(2 * h * scale))))
        return resize_square(to_rgb(ImageOps.exif_transpose(im)), size, mode)


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparent parts (cut-out product shots) on white rather than on black."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def resize_square(im: Image.Image, size: int, mode: ResizeMode = "pad") -> np.ndarray:
    """Letterbox (``pad``) or short-side resize + centre crop (``crop``) an RGB image to SxS."""
    w, h = im.size
    if mode == "crop":
        short, long = min(w, h), max(w, h)
        new_long = max(size, int(size * long / short))  # torchvision Resize(size) rounding
        nw, nh = (size, new_long) if w <= h else (new_long, size)
        im = im.resize((nw, nh), _RESAMPLE)
        left, top = round((nw - size) / 2), round((nh - size) / 2)
        return np.asarray(im.crop((left, top, left + size, top + size)), np.uint8)
    if mode != "pad":
        raise ImageCacheError(f"resize mode {mode!r} is not one of {RESIZE_MODES}")
    scale = size / max(w, h)
    nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    small = np.asarray(im.resize((nw, nh), _RESAMPLE), np.uint8)
    out = np.empty((size, size, 3), np.uint8)
    out[:] = border_colour(small)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = small
    return out


def border_colour(img: np.ndarray) -> np.ndarray:
    """Mean colour of an (H, W, 3) image's one-pixel outer ring: the photo's background."""
    ring = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]]).astype(np.float64)
    return np.rint(ring.mean(axis=0)).astype(np.uint8)


def _fill_rows(
    array_path: str, rows: list[int], paths: list[str], size: int, mode: ResizeMode
) -> list[tuple[int, str]]:
    """Worker: decode some rows straight into the memmap (no pixels cross processes)."""
    arr = np.load(array_path, mmap_mode="r+")
    errors: list[tuple[int, str]] = []
    for row, path in zip(rows, paths, strict=True):
        try:
            arr[row] = load_image(path, size, mode)
        except Exception as e:  # any undecodable file is reported, never fatal to the build
            errors.append((row, f"{type(e).__name__}: {e}"))
    arr.flush()
    del arr
    return errors


# -- the cache --------------------------------------------------------------------------------


def content_key(
    paths: Sequence[str | Path],
    size: int,
    mode: str,
    *,
    ids: Sequence[str] | None = None,
    key_extra: str = "",
) -> str:
    """Hash of the image paths, their sizes and mtimes, the ids, S, mode and format version."""
    files = []
    for p in paths:
        try:
            st = os.stat(p)
            files.append([str(p), st.st_size, st.st_mtime_ns])
        except OSError:
            files.append([str(p), -1, -1])
    blob = {
        "format": FORMAT_VERSION,
        "size": size,
        "mode": mode,
        "extra": key_extra,
        "files": files,
        "ids": list(ids) if ids is not None else None,
    }
    return hashlib.sha256(json.dumps(blob, separators=(",", ":")).encode()).hexdigest()


class ImageCache:
    """Row i holds image i of the list it was built from; ``ok[i]`` says whether it decoded.

    Pickles by file path (the memmap is reopened lazily), so DataLoader workers started with
    spawn/forkserver never copy the whole array.
    """

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        self.size: int = meta["size"]
        self.mode: ResizeMode = meta["mode"]
        self.key: str = meta["key"]
        self.ids: list[str] = meta["ids"]
        self.paths: list[str] = meta["paths"]
        self.ok = np.asarray(meta["ok"], bool)
        self.errors: dict[int, str] = {int(k): v for k, v in meta["errors"].items()}
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        bad = len(self) - int(self.ok.sum())
        return (
            f"ImageCache({len(self)} images, {self.mode} {self.size}px, {bad} failed, {self.path})"
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    @property
    def array(self) -> np.ndarray:
        """The (N, S, S, 3) uint8 memmap, opened read-only on first use in each process."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")

    # -- opening and building -----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> ImageCache:
        """An existing cache from its ``.npy`` (or ``.json``) path."""
        path = Path(path).with_suffix(".npy")
        side = path.with_suffix(".json")
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
            cache = cls(path, meta)
            shape = cache.array.shape
        except (OSError, ValueError, KeyError) as e:
            raise ImageCacheError(f"{path}: not a readable image cache ({e})") from None
        if shape != (len(cache), cache.size, cache.size, 3):
            raise ImageCacheError(f"{path}: array shape {shape} does not match its sidecar")
        return cache

    @classmethod
    def build(
        cls,
        paths: Sequence[str | Path],
        size: int,
        *,
        mode: ResizeMode = "pad",
        cache_dir: str | Path | None = None,
        workers: int = 2,
        key_extra: str = "",
        ids: Sequence[str] | None = None,
        progress: bool = True,
    ) -> ImageCache:
        """The cache of these images at this size and mode: reused if its key matches, else built.

        ``ids`` name the rows (default: the paths); ``workers`` <= 1 decodes in this process.
        """
        if mode not in RESIZE_MODES:
            raise ImageCacheError(f"resize mode {mode!r} is not one of {RESIZE_MODES}")
        if size < 1:
            raise ImageCacheError(f"cache size must be positive, got {size}")
        str_paths = [os.path.abspath(p) for p in paths]
        id_list = list(ids) if ids is not None else str_paths
        if len(id_list) != len(str_paths):
            raise ImageCacheError(f"{len(id_list)} ids for {len(str_paths)} image paths")
        key = content_key(str_paths, size, mode, ids=id_list, key_extra=key_extra)
        folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        target = folder / f"{mode}{size}-{key[:20]}.npy"
        if target.exists() and target.with_suffix(".json").exists():
            try:
                cache = cls.open(target)
            except ImageCacheError as e:
                log.warning("rebuilding %s", e)
            else:
                if cache.key == key:
                    log.info("reusing image cache %s", target)
                    return cache
        _make_writable_dir(folder)
        _remove_stale_temps(folder, target.stem)
        return cls._write(target, key, str_paths, id_list, size, mode, workers, progress)

    @classmethod
    def for_manifest(cls, manifest: Manifest, size: int, **kw) -> ImageCache:
        """The cache of a manifest's images, rows in manifest order, ids = ``image_id``."""
        ids = [str(i) for i in manifest.df["image_id"]]
        return cls.build(manifest.image_paths(), size, ids=ids, **kw)

    @classmethod
    def _write(
        cls,
        target: Path,
        key: str,
        paths: list[str],
        ids: list[str],
        size: int,
        mode: ResizeMode,
        workers: int,
        progress: bool,
    ) -> ImageCache:
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npy")
        tmp_side = tmp.with_suffix(".json")
        n = len(paths)
        try:
            arr = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3)
            )
            del arr  # workers reopen it; the file is zero-filled, so failed rows stay zeros
            errors = _decode_all(str(tmp), paths, size, mode, workers, progress)
            ok = np.ones(n, bool)
            ok[list(errors)] = False
            meta = {
                "format": FORMAT_VERSION,
                "key": key,
                "size": size,
                "mode": mode,
                "ids": ids,
                "paths": paths,
                "ok": ok.tolist(),
                "errors": {str(k): v for k, v in sorted(errors.items())},
            }
            tmp_side.write_text(json.dumps(meta), encoding="utf-8")
            # The sidecar is renamed last: an array without a sidecar is never reused.
            os.replace(tmp, target)
            os.replace(tmp_side, target.with_suffix(".json"))
        except BaseException:
            tmp.unlink(missing_ok=True)
            tmp_side.unlink(missing_ok=True)
            raise
        for row, msg in sorted(errors.items()):
            log.warning(
                "image %s (row %d, id %s) failed to decode: %s", paths[row], row, ids[row], msg
            )
        if errors:
            log.warning(
                "%d of %d images failed to decode; their rows are zeros and marked not ok in %s",
                len(errors),
                n,
                target.with_suffix(".json"),
            )
        return cls(target, meta)


def _decode_all(
    array_path: str, paths: list[str], size: int, mode: ResizeMode, workers: int, progress: bool
) -> dict[int, str]:
    chunks = [list(range(i, min(i + _CHUNK, len(paths)))) for i in range(0, len(paths), _CHUNK)]
    errors: dict[int, str] = {}
    bar = Progress(
        TextColumn(f"caching images ({mode} {size}px)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    with bar:
        task = bar.add_task("cache", total=len(paths))
        if workers <= 1:
            for rows in chunks:
                errors.update(_fill_rows(array_path, rows, [paths[r] for r in rows], size, mode))
                bar.advance(task, len(rows))
            return errors
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {
                pool.submit(
                    _fill_rows, array_path, rows, [paths[r] for r in rows], size, mode
                ): rows
                for rows in chunks
            }
            for fut in as_completed(futures):
                errors.update(fut.result())
                bar.advance(task, len(futures[fut]))
    return errors


def _make_writable_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ImageCacheError(
            f"{folder}: cannot create the image cache folder ({e}); set $ATTIRE_CACHE or "
            "cache_dir to a writable folder outside the datasets"
        ) from None
    if not os.access(folder, os.W_OK):
        raise ImageCacheError(
            f"{folder}: image cache folder is not writable; set $ATTIRE_CACHE or cache_dir"
        )


def _remove_stale_temps(folder: Path, stem: str) -> None:
    """Delete temp files of builds that were killed (their process no longer exists)."""
    for tmp in folder.glob(f".{stem}.*.tmp.*"):
        pid = tmp.name[len(stem) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process still runs: its temp files are not stale yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
