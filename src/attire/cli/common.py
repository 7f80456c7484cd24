"""What every command shares: one console, and user errors shown as one clear line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from attire.errors import AttireError

console = Console(stderr=True)
USER_ERRORS: tuple[type[Exception], ...] = (AttireError, FileNotFoundError)
F = TypeVar("F", bound=Callable)


def user_errors(fn: F) -> F:
    """Turn expected errors (bad file, bad value) into a red message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            console.print("[bold red]error:[/]", escape(str(e)), highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]
