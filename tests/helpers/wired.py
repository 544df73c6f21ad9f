"""A fresh Vault + ClearingHouse whose module slots hold test accounts (`wired`), for the tests that call the
module-only hooks (the ClearingHouse's liquidation hooks, setReserves) with arguments a real module would never
send, and the checks around them: a constructor that must revert, the state a rejected hook must leave alone.
Module setters are once-only, which is why the session deployment cannot be re-wired for this."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import rlp
from ape import project
from eth_utils import keccak, to_canonical_address, to_checksum_address

from helpers.trading import WAD, b32, expect_revert, snapshot, trade
from helpers.vault import mint_approve
from vperp.config import lagging_peg_config, wad
from vperp.deployment import Market, System

SIZE = 10 * WAD  # each trader's position in the fresh market (base)
AUCTIONED = 4 * WAD  # the part of it a test puts into an auction


def create_address(sender, nonce: int) -> str:
    """Address of the contract `sender` creates with `nonce` (CREATE: keccak(rlp([sender, nonce])))."""
    return to_checksum_address(keccak(rlp.encode([to_canonical_address(sender.address), nonce]))[12:])


def assert_constructor_reverts(chain, deployer, container, error, *args):
    """Deploying `container(*args)` reverts with exactly `error` and leaves no code where it would live."""
    would_be = create_address(deployer, deployer.nonce)
    with expect_revert(error):
        container.deploy(*args, sender=deployer)
    assert len(chain.provider.get_code(would_be)) == 0


@pytest.fixture(scope="module")
def wired(deployer, alice, bob, carol, dave, erin):
    """A fresh Vault + ClearingHouse (the minimum of vperp.deployment's wiring that trading needs) whose
    liquidation engine is bob and whose AMM controller is carol, with one market (the default ETH
    config), 10M of pool cash, alice long SIZE, dave short SIZE, erin funded but flat."""
    cfg = lagging_peg_config()
    mc = cfg.markets[0]
    token = project.MockERC20.deploy("USD Coin (mock)", "USDC", cfg.collateral_decimals, sender=deployer)
    vault = project.Vault.deploy(token, deployer, sender=deployer)
    ch = project.ClearingHouse.deploy(vault, deployer, sender=deployer)
    vault.setClearingHouse(ch, sender=deployer)
    ch.setLiquidationEngine(bob, sender=deployer)
    ch.setAmmController(carol, sender=deployer)
    oracle = project.MockAggregator.deploy(mc.oracle_decimals, int(mc.price) * 10**mc.oracle_decimals, "ETH / USD",
                                           sender=deployer)
    ch.listMarket(b32(mc.symbol), mc.to_params(oracle.address), wad(mc.insurance_fee_share), wad(mc.base_reserve),
                  sender=deployer)
    assert ch.marketCount() == 1  # the first market of a fresh clearing house has id 1
    system = System(vault=vault, clearing_house=ch, collateral=token, deployer=deployer,
                    config=cfg.with_markets(mc), markets={mc.symbol: Market(mc.symbol, 1, oracle, mc)})
    cash = system.units(10_000_000)  # pool cash: the open-interest cap is a multiple of it
    mint_approve(token, vault, deployer, cash)
    vault.fundPool(cash, sender=deployer)
    for who in (alice, dave, erin):
        system.fund(who, 100_000)
    trade(ch, alice, 1, SIZE)
    trade(ch, dave, 1, -SIZE)
    assert ch.position(alice, 0, 1)[0] == SIZE and ch.position(dave, 0, 1)[0] == -SIZE
    return SimpleNamespace(system=system, ch=ch, vault=vault, token=token, engine=bob, amm=carol,
                           long=alice, short=dave, taker=erin, market=1)


def ch_state(w, owners) -> dict:
    """What a rejected ClearingHouse hook must leave alone: ledger, market and positions (helpers.trading
    .snapshot) plus each owner's auctioned size."""
    snap = snapshot(w.system, owners, markets=[w.market])
    for o in owners:
        snap[("auctioned", o.address)] = w.ch.auctionedSize(o, 0, w.market)
    return snap
