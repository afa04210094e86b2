"""The `fraudstream` command. Thin: each area registers its commands from fraudstream/commands/."""

from __future__ import annotations

import logging

import typer

from fraudstream.commands import register_all

app = typer.Typer(
    name="fraudstream",
    help="Real-time fraud detection for payment transactions.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug details.")) -> None:
    """Every endpoint comes from FRAUDSTREAM_* environment variables (see README)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


register_all(app)
