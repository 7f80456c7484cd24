"""The typer command groups; each cli module adds its commands to one of these."""

import typer

app = typer.Typer(
    name="attire",
    help="Tag every attribute of clothing product photos in one pass, and stay accurate on the "
    "rare values.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Bring photos and labels in, check them, see the long tail, split without leakage.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
