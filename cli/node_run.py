"""``lockstep node run --home DIR``: run a validator node until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

DEFAULT_HOME = Path("~/.lockstep")
HOME_ENV = "LOCKSTEP_HOME"


def cmd_run(args: argparse.Namespace) -> int:
    import structlog
    import trio
    from lockstep.consensus.replica import ReplicaHalted
    from lockstep.node.chain_app import StateDivergence
    from lockstep.node.config import load_config
    from lockstep.node.daemon import Node, NodePaths, StartupError
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

    async def main() -> None:
        node = Node(cfg, NodePaths.of(cfg, config_file))
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                await nursery.start(node.run)
                async for signum in signals:
                    log.info("shutdown", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except StartupError as e:
        log.error("startup_refused", reason=str(e))
        print(f"lockstep: cannot start: {e}", file=sys.stderr)
        return 1
    except (StateDivergence, ReplicaHalted) as e:
        log.critical("node_halted", reason=str(e))
        print(f"lockstep: node halted: {e}", file=sys.stderr)
        return 2
    return 0


def add_run_parser(nsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = nsub.add_parser("run", help="run the node (stop with Ctrl-C or SIGTERM)")
    run.add_argument("--home", help=f"home directory (default: ${HOME_ENV} or {DEFAULT_HOME})")
    run.add_argument("--log-format", choices=("json", "console"), help="override config.toml")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    run.set_defaults(func=cmd_run)
