"""A network host in its own process, for the kill/restart test (``python net_node_proc.py``).

Arguments: node index, genesis size, listen port, then ``index=port`` pairs of peers to dial.
Prints ``READY <port>`` once listening and one ``GOT <payload>`` line per delivered message.
"""

from __future__ import annotations

import logging
import sys

import structlog
import trio


async def main(argv: list[str]) -> None:
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent.parent))
    from lockstep.net.host import Host

    from tests.net_harness import accept_all, fast_config, net_genesis

    me, n, port = int(argv[0]), int(argv[1]), int(argv[2])
    g, signers = net_genesis(n)
    host = Host(fast_config(g, signers[me], listen_port=port), signers[me], accept_all)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        for pair in argv[3:]:
            i, p = pair.split("=")
            host.add_peer(signers[int(i)].public_key, f"127.0.0.1:{p}")
        print(f"READY {host.listen_port}", flush=True)
        async for batch in host.inbound:
            for m in batch:
                print(f"GOT {m.payload.decode()}", flush=True)


if __name__ == "__main__":
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    trio.run(main, sys.argv[1:])
