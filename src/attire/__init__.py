"""attire: tag every attribute of clothing product photos in one pass."""

__version__ = "0.1.0"
