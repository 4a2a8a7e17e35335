"""The ``train`` command (run, eval, predict). Filled by the training issue."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train and evaluate segmentation from a datakit store.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


@app.command("run")
def run() -> None:
    """Train a model (not implemented yet)."""
    typer.echo("train run: not implemented yet", err=True)
    raise typer.Exit(2)


def main() -> None:
    app()
