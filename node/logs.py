"""Structured logging for the node: JSON lines in files, readable lines on a terminal.

Every log line carries the context bound where it happens — ``node`` (the validator's name),
and where known ``height``, ``view`` and ``peer`` — through structlog's bound loggers and
contextvars, so a line can be traced to one node, one view and one peer without parsing text.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Literal, TextIO

import structlog

LogFormat = Literal["json", "console"]


def configure_logging(
    level: str = "info",
    fmt: LogFormat | None = None,
    file: Path | None = None,
    node: str | None = None,
) -> None:
    """Configure structlog once per process.

    ``fmt=None`` picks ``console`` when writing to a terminal and ``json`` otherwise. With
    ``file`` set, lines go to that file (always JSON: files are for machines).
    """
    stream: TextIO
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        stream = open(file, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        fmt = "json"
    else:
        stream = sys.stderr
        if fmt is None:
            fmt = "console" if stream.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    if node is not None:
        structlog.contextvars.bind_contextvars(node=node)
