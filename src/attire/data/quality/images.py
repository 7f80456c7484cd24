"""One pass over one image file: read once, hash the bytes, check the header, decode, phash.

This runs in worker processes, so it takes a plain path string and returns a small picklable
record; every problem a file can have becomes a finding instead of an exception, because one bad
photo must never stop a check of thousands.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

THUMB_SIDE = 8


@dataclass(frozen=True)
class ImageFacts:
    """What one file turned out to be; `findings` holds (reason, detail) pairs, empty if clean."""

    findings: tuple[tuple[str, str], ...] = ()
    sha256: str | None = None
    phash: int | None = None  # 64-bit perceptual hash as an unsigned int; None if not decoded
    thumb: bytes | None = None  # 8x8 RGB thumbnail: phash is grey-only, this tells colours apart


@contextmanager
def _strict_pillow(max_pixels: int) -> Iterator[None]:
    """Refuse truncated files and raise Pillow's own bomb guard to at least `max_pixels`.

    Both are process-wide Pillow settings that a training loader may have changed, so they are
    set for the duration of one file and then restored.
    """
    old_limit, old_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS = max(max_pixels, old_limit or 0)
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_limit, old_truncated


def phash64(image: Image.Image) -> int:
    """imagehash's DCT perceptual hash packed into one unsigned 64-bit integer."""
    bits = imagehash.phash(image).hash.ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def colour_thumbnail(image: Image.Image) -> bytes:
    """Mean colour of an 8x8 grid (192 bytes), to confirm that a phash match is not a recolour."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return rgb.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX).tobytes()


def inspect_image(path: str, min_size: int, max_pixels: int) -> ImageFacts:
    """Read, hash and fully decode one file; never raises for a bad file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return ImageFacts((("missing_file", "no file at this path"),))
    except OSError as e:  # a folder, no permission, an I/O error
        return ImageFacts((("unreadable", f"cannot read the file: {e.strerror or e}"),))
    if not data:
        return ImageFacts((("empty_file", "the file has 0 bytes"),))
    sha = hashlib.sha256(data).hexdigest()
    with _strict_pillow(max_pixels):
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            return ImageFacts((("decompression_bomb", f"Pillow refused the header: {e}"),), sha)
        except UnidentifiedImageError:
            return ImageFacts((("unreadable", f"not an image ({len(data):,} bytes)"),), sha)
        except Exception as e:  # Pillow plugins raise many types on corrupt headers
            return ImageFacts((_decode_failure(e),), sha)
        w, h = image.size
        if w * h > max_pixels:
            detail = f"header claims {w}x{h} = {w * h:,} pixels > --max-pixels {max_pixels:,}"
            return ImageFacts((("decompression_bomb", detail),), sha)
        findings = []
        if min(w, h) < min_size:
            findings.append(("too_small", f"{w}x{h}: shorter side {min(w, h)} px < {min_size}"))
        try:
            image.load()
            phash = phash64(image)
            thumb = colour_thumbnail(image)
        except Exception as e:  # a corrupt body fails in decoder-specific ways
            return ImageFacts((_decode_failure(e), *findings), sha)
    return ImageFacts(tuple(findings), sha, phash, thumb)


def _decode_failure(err: Exception) -> tuple[str, str]:
    text = f"{type(err).__name__}: {err}"
    if "truncated" in str(err).lower():
        return "truncated", f"decoding stopped early ({text})"
    return "unreadable", f"cannot decode ({text})"
