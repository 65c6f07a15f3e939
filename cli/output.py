"""How ``lockstep`` prints for people: two-column rich tables (``--json`` bypasses this)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

PIPE_WIDTH = 200
"""Width when stdout is not a terminal: a 64-character hex id and its label fit on one line."""


def print_rows(title: str, rows: Iterable[tuple[str, str]]) -> None:
    """A titled table of (field, value) rows; long values fold rather than truncate."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    if not console.is_terminal:
        # Piped into a file or another program: do not fold keys and ids at 80 columns.
        console = Console(width=PIPE_WIDTH)
    console.print(table)


def print_help_of(parser: argparse.ArgumentParser) -> int:
    """For a command group run without an action: show its actions, exit status 2."""
    parser.print_help()
    return 2
