"""The exchange state machine (mempool rules, matching, perpetuals ledger) and the node daemon."""
