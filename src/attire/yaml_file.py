"""Reading the YAML files users write (taxonomies, mappings, training configs, experiments).

One place decides what a missing file or broken YAML looks like to the user: an error of the
caller's type that names the file, so each loader only adds its own field checks.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from attire.errors import AttireError


def read_yaml(
    path: Path, error: type[AttireError], what: str, loader: type = yaml.SafeLoader
) -> object:
    """The parsed contents of `path` (`what` names the kind of file in the error message)."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML: {e}") from None
