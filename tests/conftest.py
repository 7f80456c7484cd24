"""Shared fixtures: where the real datasets live, and small generated data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attire.taxonomy import Taxonomy

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["browser"]  # fixtures chromium, browser_page (tests/browser.py)


def shared_datasets_dir() -> Path:
    """../shared/datasets beside the checkout (read-only), or $ATTIRE_SHARED_DATASETS."""
    return Path(os.environ.get("ATTIRE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real datasets; in CI their absence is a failure, elsewhere a skip."""
    root = shared_datasets_dir()
    if not (root / "clothing-dataset" / "labels.csv").exists():
        if os.environ.get("CI"):
            pytest.fail(f"real datasets not found at {root}")
        pytest.skip(f"real datasets not found at {root}")
    return root


@pytest.fixture
def tax() -> Taxonomy:
    """A toy taxonomy: two multiclass tasks and one multilabel task (the loss tests use it)."""
    return Taxonomy.from_dict(
        {
            "name": "toy",
            "tasks": [
                {"name": "colour", "classes": [{"id": "red"}, {"id": "blue"}, {"id": "green"}]},
                {
                    "name": "elements",
                    "type": "multilabel",
                    "classes": [{"id": "bow"}, {"id": "lace"}, {"id": "rivets"}, {"id": "pocket"}],
                },
                {"name": "fit", "classes": [{"id": "slim"}, {"id": "loose"}]},
            ],
        }
    )


# Real-data manifests (ingested once per session with the shipped example mappings).
from fixtures_real import (  # noqa: E402
    clothing_attributes_manifest,  # noqa: F401
    clothing_dataset_manifest,  # noqa: F401
)
