"""`attire data ...`: imports the modules that add each data command."""

from attire.cli import (  # noqa: F401
    check,
    download,
    ingest,
    split,
    stats,
)
