"""Protocol limits. Every bound on what a peer or client may send is named here, with its reason.

These are consensus-critical: a block that breaks one is invalid on every honest node, so they
change only with a new chain (they are not configuration).
"""

# Actions ------------------------------------------------------------------------------------
MAX_BATCH_ACTIONS = 64
"""Actions in one atomic batch: enough for a market maker to re-quote 32 levels a side at once."""

MAX_TX_BYTES = 8 * 1024
"""Encoded size of one signed transaction: a full batch is ~64 × 40 bytes plus envelope."""

MAX_EXPIRY_WINDOW_BLOCKS = 1_000
"""An action may set expiry_height at most this far ahead; replay memory is bounded by it."""

MAX_WITHDRAW_DESTINATION_BYTES = 64
"""Opaque destination of a withdrawal (an address on another chain)."""

# Markets and prices -------------------------------------------------------------------------
MAX_MARKETS = 256
MAX_ORACLE_PRICES = MAX_MARKETS
"""One oracle transaction may carry a price for every market."""

# Validators and certificates ----------------------------------------------------------------
MAX_VALIDATORS = 256
"""Validator indices are uint16 on the wire; 256 keeps certificates (≤ 256 × 64 B) small."""

# Blocks -------------------------------------------------------------------------------------
MAX_BLOCK_TXS = 8_192
"""Transactions per block: ~0.5 s of the measured verification rate of four nodes on two cores."""

MAX_BLOCK_BYTES = 2 * 1024 * 1024
"""Encoded block size. Must exceed MAX_BLOCK_TXS × typical tx (~170 B) with headroom."""

MAX_BLOCK_TICKETS = MAX_VALIDATORS
"""VRF tickets carried by one block: at most one per validator."""

MAX_MESSAGE_BYTES = MAX_BLOCK_BYTES + 64 * 1024
"""Largest consensus message (a proposal: block + timeout certificate + signature)."""

# Genesis ------------------------------------------------------------------------------------
MAX_GENESIS_ACCOUNTS = 100_000
MAX_GENESIS_BYTES = 16 * 1024 * 1024
MAX_LEVERAGE_TIERS = 16
MAX_NAME_CHARS = 64
MAX_ADDRESS_CHARS = 256
