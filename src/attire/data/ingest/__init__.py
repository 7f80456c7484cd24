"""Bring labelled photos in: a label table with a mapping file, an image-folder tree, or
FashionAI-style y/m/n rows; and propose a mapping for a new table (`attire data init`).

Each form returns an `IngestResult`: the manifest plus the rows it left out (with reasons), so
that rows in = kept + merged + rejected.
"""

from attire.data.ingest.common import (
    REJECT_COLUMNS,
    IngestError,
    IngestResult,
    read_table,
)
from attire.data.ingest.fashionai import default_fashionai_mapping_path, ingest_fashionai
from attire.data.ingest.folder import ingest_folder
from attire.data.ingest.mapping import (
    FashionAIMapping,
    FashionAITask,
    IngestMapping,
    MappingError,
    TaskMapping,
)
from attire.data.ingest.propose import Proposal, propose_mapping, write_proposal
from attire.data.ingest.table import ingest_table

__all__ = [
    "REJECT_COLUMNS",
    "FashionAIMapping",
    "FashionAITask",
    "IngestError",
    "IngestMapping",
    "IngestResult",
    "MappingError",
    "Proposal",
    "TaskMapping",
    "default_fashionai_mapping_path",
    "ingest_fashionai",
    "ingest_folder",
    "ingest_table",
    "propose_mapping",
    "read_table",
    "write_proposal",
]
