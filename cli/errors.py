"""Errors the ``lockstep`` command reports as one line and exit status 1, not a traceback.

Each is the user's to fix (a wrong flag, a bad file, an unreachable node), so the message says
what and where; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CLIError(Exception):
    """A command cannot do what was asked; the message says why."""


def user_errors() -> tuple[type[Exception], ...]:
    """The exception types that mean "fix your input", imported only when needed."""
    from lockstep.consensus.codec import CodecError
    from lockstep.consensus.genesis import GenesisError
    from lockstep.node.config import ConfigError
    from lockstep.node.exchange.units import UnitError
    from lockstep.node.home import HomeError
    from lockstep.node.keys import KeyFileError

    from .rpc_client import RPCError

    return (
        CLIError,
        CodecError,
        ConfigError,
        GenesisError,
        HomeError,
        KeyFileError,
        RPCError,
        UnitError,
    )
