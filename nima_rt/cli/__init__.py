"""The ``nima-rt`` command line: one typer app, one module per command.

Command modules import only typer and the light runtime at top level; torch, GPU libraries and
other heavy dependencies load inside the command that needs them.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="nima-rt",
    help="Score photos for aesthetic and technical quality (NIMA), train and export models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _print_version(value: bool) -> None:
    if value:
        from nima_rt import __version__

        typer.echo(f"nima-rt {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print nima-rt's version and exit."),
) -> None:
    pass


# Each module defines ``register(app)``; add a module here to add its commands.
COMMAND_MODULES = (
    "nima_rt.cli.score",
    "nima_rt.cli.rank",
    "nima_rt.cli.info",
    "nima_rt.cli.models",
    "nima_rt.cli.report",
    "nima_rt.cli.visualize",
    "nima_rt.cli.label",
    "nima_rt.cli.serve",
    "nima_rt.cli.train",
    "nima_rt.cli.export",
    "nima_rt.cli.build_dataset",
    "nima_rt.cli.references",
    "nima_rt.cli.graded_eval",
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Entry point of the ``nima-rt`` script."""
    app()
