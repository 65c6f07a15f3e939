"""``lockstep node run --home DIR``: run a validator node until SIGINT or SIGTERM.

A node that cannot start, or must stop, says why in one line (``lockstep: error: …``, with the
file and what to do) and exits non-zero; ``-v`` prints the traceback above it. trio wraps a
task's error in exception groups, so the line is found among the group's leaves; a leaf that
is none of the known faults is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

DEFAULT_HOME = Path("~/.lockstep")
HOME_ENV = "LOCKSTEP_HOME"


def _leaves(e: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``e``'s (nested) exception groups, or ``e`` itself."""
    if isinstance(e, BaseExceptionGroup):
        for inner in e.exceptions:
            yield from _leaves(inner)
    else:
        yield e


def _fatal_line(e: BaseException) -> tuple[int, str, str] | None:
    """(exit status, log event, one-line message) for a known fault among ``e``'s leaves."""
    from lockstep.consensus.replica import ReplicaHalted
    from lockstep.node.chain_app import StateDivergence
    from lockstep.node.context import StartupError
    from lockstep.node.faults import StorageFailure, is_io_error

    for leaf in _leaves(e):
        if isinstance(leaf, StartupError):
            return 1, "startup_refused", f"cannot start: {leaf}"
        if isinstance(leaf, StorageFailure):
            return 3, "storage_failed", str(leaf)
        if isinstance(leaf, (StateDivergence, ReplicaHalted)):
            return 2, "node_halted", f"node halted: {leaf}"
    for leaf in _leaves(e):
        if is_io_error(leaf) or isinstance(leaf, PermissionError):
            assert isinstance(leaf, OSError)
            where = f" {leaf.filename}" if leaf.filename else ""
            return 3, "storage_failed", f"{leaf.strerror}:{where}; fix it and start again"
    return None


def cmd_run(args: argparse.Namespace) -> int:
    import structlog
    import trio
    from lockstep.node.config import load_config
    from lockstep.node.daemon import Node, NodePaths
    from lockstep.node.logs import configure_logging

    home = Path(args.home or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()
    config_file = home / "config" / "config.toml"
    cfg = load_config(config_file)
    log_file = cfg.resolve(config_file, cfg.log.file) if cfg.log.file else None
    configure_logging(
        level=args.log_level or cfg.log.level,
        fmt=args.log_format or cfg.log.format,  # type: ignore[arg-type]
        file=log_file,
        node=cfg.node.moniker,
    )
    log = structlog.get_logger("lockstep.node")
    _tune_collector()

    async def main() -> None:
        node = Node(
            cfg, NodePaths.of(cfg, config_file), reset_safety_state=args.reset_safety_state
        )
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(node.run)
                _freeze_startup_heap()
                async for signum in signals:
                    log.info("shutdown", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except BaseException as e:  # sorted below; a bug is re-raised whole
        fatal = _fatal_line(e)
        if fatal is None:
            raise
        status, event, line = fatal
        if args.verbose:
            traceback.print_exception(e)
        log.critical(event, reason=line)
        print(f"lockstep: error: {line}", file=sys.stderr)
        return status
    return 0


YOUNG_COLLECTION_THRESHOLD = 10_000
"""Container allocations (net of frees) between young collections; CPython's default is 700.

A node decodes a few objects per order, nearly all freed by reference counting within the
block; collecting every 700 allocations scanned them over and over. At 10,000 a node at half
the peak rate spends ~10 ms per 4 s in the collector instead of ~60–100 ms."""


def _tune_collector() -> None:
    import gc

    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)


def _freeze_startup_heap() -> None:
    """Move everything alive once the node has started (modules, genesis, the history it
    replayed) out of the cycle collector's reach, for the life of the process.

    Those objects live as long as the node, or are freed by reference counting. Rescanning
    them made each full collection pause the event loop for 40–120 ms under load; what is
    left to scan is the little the node allocates and keeps while it runs (13–20 ms)."""
    import gc

    gc.freeze()  # no collection first: it would pause a node that is catching up


def add_run_parser(nsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = nsub.add_parser("run", help="run the node (stop with Ctrl-C or SIGTERM)")
    run.add_argument("--home", help=f"home directory (default: ${HOME_ENV} or {DEFAULT_HOME})")
    run.add_argument("--log-format", choices=("json", "console"), help="override config.toml")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    run.add_argument(
        "--reset-safety-state",
        action="store_true",
        help="the consensus safety state is lost: learn from peers how far the views went "
        "and vote only above that (docs/operators.md, 'A lost safety state')",
    )
    run.add_argument(
        "-v", "--verbose", action="store_true", help="print the traceback of a fatal error"
    )
    run.set_defaults(func=cmd_run)
