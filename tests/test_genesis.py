"""Genesis: TOML round trip, chain id stability, and consistency rules."""

from __future__ import annotations

import dataclasses

import pytest
from lockstep.consensus.genesis import (
    Genesis,
    GenesisError,
    LeverageTier,
    decode_genesis,
    load_genesis,
)
from lockstep.node.genesis_file import genesis_to_toml, read_genesis_file, write_genesis_file

from .conftest import make_genesis


def test_toml_round_trip_keeps_chain_id() -> None:
    g, _ = make_genesis()
    text = genesis_to_toml(g)
    assert g.chain_id.hex() in text
    again = load_genesis(text)
    assert again == g
    assert again.chain_id == g.chain_id
    assert decode_genesis(g.encode()) == g


def test_comments_and_whitespace_do_not_change_the_chain() -> None:
    g, _ = make_genesis()
    text = genesis_to_toml(g)
    noisy = "# operator notes\n\n" + text.replace("\n", "\n\n")
    assert load_genesis(noisy).chain_id == g.chain_id


def test_any_substantive_change_is_another_chain() -> None:
    g, _ = make_genesis()
    other = dataclasses.replace(g, insurance_fund=g.insurance_fund + 1)
    assert other.chain_id != g.chain_id
    renamed = dataclasses.replace(g, chain_name="other")
    assert renamed.chain_id != g.chain_id


def test_chain_id_is_pinned() -> None:
    """The chain id of a fixed genesis never changes unless the protocol version does."""
    g, _ = make_genesis()
    assert len(g.chain_id) == 32
    assert g.chain_id == Genesis(
        g.chain_name, g.genesis_time_ms, g.validators, g.markets, g.accounts,
        g.insurance_fund, g.timing,
    ).chain_id  # fmt: skip


def test_unknown_and_missing_keys_named() -> None:
    g, _ = make_genesis()
    text = genesis_to_toml(g)
    with pytest.raises(GenesisError, match=r"unknown key\(s\) \['surprise'\]"):
        load_genesis("surprise = 1\n" + text)
    with pytest.raises(GenesisError, match="missing key"):
        load_genesis(text.replace("insurance_fund =", "# insurance_fund ="))
    with pytest.raises(GenesisError, match="not valid TOML"):
        load_genesis("this is [not toml")


def test_float_in_genesis_rejected() -> None:
    g, _ = make_genesis()
    text = genesis_to_toml(g).replace("insurance_fund = 1000000000000", "insurance_fund = 1e12")
    with pytest.raises(GenesisError, match="expected uint64, got float"):
        load_genesis(text)


def test_duplicate_validator_key_rejected() -> None:
    g, _ = make_genesis()
    v = g.validators[0]
    with pytest.raises(GenesisError, match="appears twice"):
        dataclasses.replace(g, validators=(v, v))


def test_zero_weight_rejected() -> None:
    g, _ = make_genesis()
    v = dataclasses.replace(g.validators[0], weight=0)
    with pytest.raises(GenesisError, match="weight must be positive"):
        dataclasses.replace(g, validators=(v, *g.validators[1:]))


def test_market_units_must_be_exact() -> None:
    g, _ = make_genesis()
    m = g.markets[0]
    assert m.contract_multiplier == 100  # $0.1 tick × 0.001 BTC lot = $0.0001 = 100 atoms
    assert str(m.tick_size) == "0.1" and str(m.lot_size) == "0.001"
    bad = dataclasses.replace(m, lot_size_units=1)  # 1 satoshi × $0.1 = 0.001 atoms: inexact
    with pytest.raises(GenesisError, match="whole number of quote atoms"):
        dataclasses.replace(g, markets=(bad, *g.markets[1:]))


def test_leverage_tiers_rules() -> None:
    g, _ = make_genesis()
    m = g.markets[0]
    inverted = dataclasses.replace(m, leverage_tiers=(LeverageTier(10, 1000, 2000),))
    with pytest.raises(GenesisError, match="maintenance < initial"):
        dataclasses.replace(g, markets=(inverted, *g.markets[1:]))
    unordered = dataclasses.replace(
        m, leverage_tiers=(LeverageTier(10, 2000, 1000), LeverageTier(5, 2000, 1000))
    )
    with pytest.raises(GenesisError, match="increasing max_notional"):
        dataclasses.replace(g, markets=(unordered, *g.markets[1:]))


def test_accounts_must_be_sorted_and_unique() -> None:
    g, _ = make_genesis()
    with pytest.raises(GenesisError, match="sorted"):
        dataclasses.replace(g, accounts=tuple(reversed(g.accounts)))


def test_genesis_file_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    g, _ = make_genesis()
    path = tmp_path / "config" / "genesis.toml"
    write_genesis_file(path, g)
    assert read_genesis_file(path) == g


def test_missing_genesis_file_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GenesisError, match="no genesis file"):
        read_genesis_file(tmp_path / "nope.toml")
