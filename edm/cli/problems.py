"""The one way a command prints its problems: one line each on stderr, the first few only."""

from __future__ import annotations

from collections.abc import Sequence

import click

#: Lines printed before "… N more"; --json always carries all of them.
SHOWN = 20


def echo_problems(lines: Sequence[str], *, what: str = "more", prefix: str = "",
                  shown: int = SHOWN) -> None:
    """Print ``lines`` to stderr (``prefix`` before each), at most ``shown`` of them, then
    "… N <what> (see --json)" for the rest."""
    for line in lines[:shown]:
        click.echo(f"{prefix}{line}", err=True)
    if len(lines) > shown:
        click.echo(f"… {len(lines) - shown} {what} (see --json)", err=True)
