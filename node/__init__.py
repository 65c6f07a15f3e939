"""The node daemon: consensus, the network, the exchange and the RPC wired together on trio.

The deterministic exchange lives in :mod:`lockstep.node.exchange`; everything beside it here does
I/O (stores, journal, keys, RPC, streams) or drives the parts (the daemon's concerns)."""
