"""The ``edm`` command line: a thin layer that parses flags, calls the library and prints.

Each command lives in its own ``cmd_*.py`` module, imported only when that command runs, so
``edm --help`` stays fast (torch and transformers are never imported for it).
"""

from __future__ import annotations

import importlib

import click

from edm import __version__

#: command name → module under ``edm.cli`` that defines a click command called ``command``.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("cmd_data", "Import, inspect, validate and export annotations (Rekordbox XML)."),
    "synth": ("cmd_synth", "Make EDM tracks with exact ground truth and DJ-style label noise."),
    "embed": ("cmd_embed", "Decode audio and write backbone frame embeddings to a Zarr store."),
    "store": ("cmd_store", "Inspect an embedding store."),
    "fit-heads": ("cmd_fit_heads", "Train beat/downbeat/boundary and energy heads from a store."),
    "label-audit": ("cmd_label_audit", "Rank the labels most likely to be wrong; apply fixes."),
    "analyze": ("cmd_analyze", "Beat grid, sections and energy for tracks, folders or an XML."),
    "evaluate": ("cmd_evaluate", "Score predictions against ground truth with mir_eval."),
    "demo": ("cmd_demo", "Run the whole loop on a small synthetic library and report."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, _ = COMMANDS[cmd_name]
        module = importlib.import_module(f"edm.cli.{module_name}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help comes from the table above so listing commands imports nothing.
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])


@click.group(cls=LazyGroup, epilog="""\b
Examples:
  edm demo                                  # the whole loop on a synthetic library
  edm data import rekordbox.xml --out annotations/
  edm embed ~/Music --store store.zarr
  edm analyze track.mp3 --plot""")
@click.version_option(__version__, prog_name="edm")
def main() -> None:
    """edm learns EDM track structure from a DJ's own Rekordbox library.

    Exit codes: 0 success, 1 some inputs failed or errors were found, 2 usage error.
    """
