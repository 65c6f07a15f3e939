"""Sans-I/O protocol cores: canonical types and encoding, domain-separated signing, ECVRF,
genesis, the HotStuff-style replica, pacemaker and sequencer election.

Nothing in this package opens a socket, reads a clock, starts a thread or draws randomness it
was not handed; that is what lets the deterministic simulator run the real code.
"""
