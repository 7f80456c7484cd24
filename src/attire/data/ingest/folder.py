"""Ingest an image-folder tree ``root/<class>/*.jpg``: one task, the folder names are its classes.

Every file under the root is accounted for: images in a class folder become rows, anything else
(a non-image file, an image lying directly in the root) is rejected with a reason.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from attire.data.ingest.common import (
    IngestError,
    IngestResult,
    RowLog,
    image_id_from_path,
    is_image_name,
    progress,
    slug,
    unique_ids,
)
from attire.data.ingest.mapping import resolve_or_raw
from attire.data.manifest import Manifest
from attire.taxonomy import Taxonomy


def ingest_folder(
    root: Path, task: str = "label", taxonomy: Taxonomy | None = None
) -> IngestResult:
    """Label each image by its first-level folder; build a one-task taxonomy unless one is given.

    With a taxonomy, folder names resolve through `Task.resolve` (id, name, alias, Chinese name);
    a name that resolves to no class is stored as written for `attire data check` to report.
    """
    root = Path(root)
    if not root.is_dir():
        raise IngestError(f"{root}: not a folder")
    root = root.resolve()
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.as_posix())
    log = RowLog(root.name)
    images: list[tuple[str, str]] = []  # (path relative to root, class folder)
    for f in files:
        rel = f.relative_to(root)
        if not is_image_name(f.name):
            log.reject(
                None, rel.as_posix(), "not_image", f"'{f.suffix or f.name}' is no image type"
            )
        elif len(rel.parts) < 2:
            log.reject(None, rel.as_posix(), "no_class_folder", "image lies directly in the root")
        else:
            images.append((rel.as_posix(), rel.parts[0]))

    folders = list(dict.fromkeys(folder for _, folder in images))
    if taxonomy is None:
        taxonomy = _folder_taxonomy(root, task, folders)
    target = taxonomy.task(task)
    if target.multilabel:
        raise IngestError(f"task '{task}' is multilabel; a folder tree gives one class per image")
    labels = {folder: resolve_or_raw(target, folder) for folder in folders}

    ids = unique_ids([None] * len(images), [image_id_from_path(p, root) for p, _ in images])
    records = [
        {"image_id": image_id, "path": path, "source": path, task: labels[folder]}
        for image_id, (path, folder) in zip(
            ids, progress(images, f"ingesting {root.name}"), strict=True
        )
    ]
    df = pd.DataFrame(records, columns=["image_id", "path", "source", task]).astype(object)
    manifest = Manifest(df, taxonomy, root)
    return IngestResult(manifest, log.rejected, len(files), 0, log.warnings)


def _folder_taxonomy(root: Path, task: str, folders: list[str]) -> Taxonomy:
    """One multiclass task: class ids are the slugified folder names, names as written."""
    if len(folders) < 2:
        raise IngestError(
            f"{root}: found {len(folders)} class folder(s) with images; a folder tree needs at "
            "least 2 (root/<class>/<image>)"
        )
    classes, used = [], set()
    for i, folder in enumerate(sorted(folders), start=1):
        base = slug(folder) or f"class_{i}"
        cid, n = base, 1
        while cid in used:
            n += 1
            cid = f"{base}_{n}"
        used.add(cid)
        classes.append({"id": cid, "name": folder})
    name = slug(root.name) or "folder"
    data = {"name": name, "tasks": [{"name": task, "type": "multiclass", "classes": classes}]}
    return Taxonomy.from_dict(data, f"taxonomy built from the folders of {root}")
