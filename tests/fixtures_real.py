"""Manifests of the real datasets, ingested once per test session with the shipped mappings.

Use from a test module or conftest.py with ``pytest_plugins = ["fixtures_real"]`` (the tests
folder is on sys.path); both depend on conftest's `shared_datasets` (skip when absent).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attire.data.ingest import ingest_table
from attire.data.manifest import Manifest

MAPPINGS = Path(__file__).resolve().parents[1] / "examples" / "mappings"


def _ingest(shared: Path, name: str, out: Path) -> Manifest:
    result = ingest_table(shared / name / "labels.csv", MAPPINGS / f"{name}.yaml")
    return Manifest.read(result.write(out))


@pytest.fixture(scope="session")
def clothing_dataset_manifest(shared_datasets: Path, tmp_path_factory) -> Manifest:
    """clothing-dataset (5,398 photos): tasks `label` (18 classes) and `kids`; group = sender_id."""
    return _ingest(shared_datasets, "clothing-dataset", tmp_path_factory.mktemp("clothing_dataset"))


@pytest.fixture(scope="session")
def clothing_attributes_manifest(shared_datasets: Path, tmp_path_factory) -> Manifest:
    """clothing-attributes (1,856 photos): 9 multiclass tasks + multilabel `pattern`, `colour`."""
    return _ingest(
        shared_datasets, "clothing-attributes", tmp_path_factory.mktemp("clothing_attributes")
    )
