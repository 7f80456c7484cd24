"""The `attire` command: one entry point over data, models, training, evaluation and serving."""

from attire.cli import data as _data  # noqa: F401  (registers `attire data ...`)
from attire.cli import predict as _predict  # noqa: F401
from attire.cli import train as _train  # noqa: F401
from attire.cli.apps import app

__all__ = ["app"]

if __name__ == "__main__":
    app()
