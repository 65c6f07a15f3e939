"""How ``lockstep`` prints for people: rich tables (``--json`` bypasses this)."""

from __future__ import annotations

import argparse
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PIPE_WIDTH = 200
"""Width when stdout is not a terminal: a 64-character hex id and its label fit on one line."""


def console() -> Console:
    """A console for people; piped into a file (``testnet up … > log``), a wide one."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        # Piped into a file or another program: do not fold keys and ids at 80 columns.
        console = Console(width=PIPE_WIDTH)
    return console


def print_rows(title: str, rows: Iterable[tuple[str, str]]) -> None:
    """A titled table of (field, value) rows; long values fold rather than truncate."""
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    console().print(table)


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[str]],
    right: Collection[str] = (),
    empty: str = "none",
) -> None:
    """A titled table with a header row; ``right`` names the columns to right-align.

    Numbers are right-aligned so that fixed-decimal prices and sizes line up on the point. The
    title is its own line (a table title would wrap at the table's width, splitting a 64-hex
    account). With no rows, that line says so (``empty``) instead of a bare header, which reads
    like a failure.
    """
    from rich.markup import escape
    from rich.table import Table

    body = [list(row) for row in rows]
    out = console()
    if not body:
        out.print(f"[bold]{escape(title)}[/bold]: {escape(empty)}", highlight=False)
        return
    out.print(f"[bold]{escape(title)}[/bold]", highlight=False)
    table = Table()
    for name in columns:
        table.add_column(name, justify="right" if name in right else "left", overflow="fold")
    for row in body:
        assert len(row) == len(columns), (len(row), len(columns))
        table.add_row(*row)
    out.print(table)


def print_help_of(parser: argparse.ArgumentParser) -> int:
    """For a command group run without an action: show its actions, exit status 2."""
    parser.print_help()
    return 2
