"""Local multi-node testnets: launcher, load generator, chaos scenarios, invariant checks."""
