"""The `attire` command: one entry point over data, models, training, evaluation and serving."""

from attire.cli import (  # noqa: F401  (each module registers its commands)
    compare,
    data,
    eval,
    predict,
    profile,
    rebalance,
    synth,
    train,
)
from attire.cli.apps import app

__all__ = ["app"]

if __name__ == "__main__":
    app()
