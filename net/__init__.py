"""Trio I/O for peers: TCP framing, Noise XX sessions bound to Ed25519 identities, gossip, sync."""
