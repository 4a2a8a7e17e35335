"""The ``datakit`` command. Each command group lives in its own module and is registered here.

Heavy imports (scipy, h5py, torch) happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import typer
import typer.core

from datakit import __version__
from datakit.cli import (
    convert,
    export,
    merge,
    preview,
    scribble,
    splines,
    stats,
    store_cmds,
    synth,
)
from datakit.cli.common import version_option

# --help lists the commands in the order a user meets them (Typer would list plain commands before groups)
ORDER = ("convert", "splines-to-masks", "validate", "info", "stats", "preview", "scribble", "merge", "export",
         "synth")


class _InOrder(typer.core.TyperGroup):
    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


app = typer.Typer(help="Medical-image segmentation datasets to one HDF5 store.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, cls=_InOrder)
app.add_typer(convert.app, name="convert")
app.add_typer(splines.app, name="splines-to-masks")
# every source's convert (or splines-to-masks) and synth command, from datakit.sources.registry
convert.register({"convert": convert.app, "splines-to-masks": splines.app}, synth.app)
app.command("validate")(store_cmds.validate)
app.command("info")(store_cmds.info)
app.command("stats")(stats.stats)
app.command("preview")(preview.preview)
app.command("scribble")(scribble.scribble)
app.command("merge")(merge.merge)
app.add_typer(export.app, name="export")
app.add_typer(synth.app, name="synth")


@app.callback()
def _main(version: bool = version_option("datakit", __version__)) -> None:
    """Medical-image segmentation datasets to one HDF5 store."""


def main() -> None:
    from datakit.cli.fast_exit import run_then_exit

    run_then_exit(app)
