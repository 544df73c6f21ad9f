"""A caller's gas limit cannot turn the engine's guarded reads into silent skips.

The engine reads an account's health inside try/catch in two places, so that a stale feed in another market the
account holds does not stop a liquidation (tests/liquidation/test_liquidation.py::
test_a_stale_feed_elsewhere_does_not_stop_a_liquidation): the bad-debt estimate's refresh after a fill
(`_afterFill`) and the recovery check of a redo or a backstop (`_recovery`). A call gets at most 63/64 of the gas
left (EIP-150), so a caller who picks the transaction's gas limit can make that call run out of gas while the rest
of the transaction finishes on the last 64th: the attack. Before the guard, the smallest gas limit at which a take
went through left the estimate where the kick had put it (the refresh caught as if a feed were stale), and the
pool's NAV reads that estimate beyond the insurance fund (`LiquidityPool.uncoveredBadDebt`); a redo of a recovered
account restarted its auction instead of cancelling it. Now a caught failure that used up the call's gas reverts
the whole transaction (`GasTooLowForCheck`), so every gas limit at which the action goes through gives the outcome
a generous one gives.

Each attempt is replayed from the same snapshot at the same block time; the smallest gas limit that goes through
is found by bisection.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
from ape.exceptions import ContractLogicError

from helpers.liquidation import BTC, ETH, deposit, set_price
from helpers.trading import MAX_UINT, WAD, prepare_actors, trade
from helpers.value_safety import refresh_oracles
from vperp import deploy
from vperp.config import lagging_peg_config

GENEROUS = 5_000_000


EXTRA = 8  # markets beside ETH and BTC: an account holding ten makes the health read cost some 300k gas, so the
# last 64th of it is enough to finish the transaction after the read has run out of gas


@pytest.fixture(scope="module")
def crowded(deployer, accounts):
    """The default deployment with eight more ETH-like markets and without its insurance seed, so the estimate
    reaches the pool's NAV (`uncoveredBadDebt`); funding off and the actors funded (`prepare_actors`)."""
    base = lagging_peg_config()
    extra = [replace(base.markets[0], symbol=f"M{i}") for i in range(3, 3 + EXTRA)]
    s = deploy(deployer, replace(base.with_markets(*base.markets, *extra), insurance_seed=0))
    prepare_actors(s, accounts)
    return s


def _smallest_gas_that_goes_through(chain, attempt, lo: int = 50_000, hi: int = GENEROUS):
    """Bisect the gas limit of `attempt(gas)` (run from a fresh snapshot each time): the smallest limit at which the
    transaction succeeds. `attempt` raises on a revert (out of gas included)."""
    def run(gas):
        snap = chain.snapshot()
        try:
            return attempt(gas)
        except Exception:  # a revert, out of gas included: any failure of the transaction
            return None
        finally:
            chain.restore(snap)

    assert run(lo) is None and run(hi) is not None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run(mid) is None:
            lo = mid
        else:
            hi = mid
    return hi


def _under_water_auction(system, chain, alice, carol):
    """alice long ETH, BTC and a little of each other market, ETH down so she is under water at the worst fill:
    kicked, with an estimate. Returns (auction id, slice size, kick timestamp)."""
    ch, vault, engine = system.clearing_house, system.vault, system.liquidation
    deposit(system, alice, 6_700)
    trade(ch, alice, ETH, 10 * WAD)
    trade(ch, alice, BTC, WAD // 2)
    for i in range(3, 3 + EXTRA):
        trade(ch, alice, i, WAD // 10)
    set_price(system, "ETH", 2_300 * 10**8)
    refresh_oracles(system)
    tx = engine.kick(alice, 0, ETH, carol, sender=carol)
    aid = engine.auctionCount()
    assert vault.shortfallOf(alice, 0) > 0
    return aid, engine.auction(aid).size, tx.timestamp


def test_a_take_at_any_gas_limit_refreshes_the_bad_debt_estimate(crowded, chain, alice, bob, carol):
    system = crowded
    vault, engine, pool = system.vault, system.liquidation, system.pool
    aid, size, kicked_at = _under_water_auction(system, chain, alice, carol)
    kicked = vault.shortfallOf(alice, 0)
    deposit(system, bob, 100_000)
    t = kicked_at + 600
    half = abs(size) // 2

    def take(gas):
        chain.pending_timestamp = t
        refresh_oracles(system)
        receipt = engine.take(aid, half, MAX_UINT, 0, sender=bob, gas=gas)
        return receipt, vault.shortfallOf(alice, 0), vault.pendingBadDebt(), pool.totalAssets()

    snap = chain.snapshot()
    _, refreshed, pending, nav = take(GENEROUS)
    chain.restore(snap)
    assert refreshed != kicked  # the fill moves the estimate: a skipped refresh would show
    assert pool.uncoveredBadDebt() > 0  # no insurance: the estimate is in the NAV

    smallest = _smallest_gas_that_goes_through(chain, take)
    for gas in (smallest, smallest + 1, smallest + 5_000, (smallest + GENEROUS) // 2):
        snap = chain.snapshot()
        _, estimate, total, assets = take(gas)
        chain.restore(snap)
        assert (estimate, total, assets) == (refreshed, pending, nav), (
            f"gas {gas}: estimate {estimate} (kick's {kicked}, refreshed {refreshed}), NAV {assets} vs {nav}")
    # Just below: where the read runs out of gas and the take used to finish (before the guard, a take at 239,927 gas
    # left the estimate at the kick's 882.54 USD instead of 826.43, and the pool's NAV 56.11 USD lower), the guard
    # names the reason.
    named = []
    for gas in range(smallest - 500, smallest - 20_500, -2_000):
        snap = chain.snapshot()
        try:
            take(gas)
        except ContractLogicError as e:
            named.append(type(e).__name__)
        except Exception:  # out of gas elsewhere: no name to check
            pass
        finally:
            chain.restore(snap)
    assert "GasTooLowForCheck" in named, named


def test_a_redo_at_any_gas_limit_cancels_a_recovered_accounts_auction(crowded, chain, alice, carol, dave):
    system = crowded
    engine = system.liquidation
    aid, _, kicked_at = _under_water_auction(system, chain, alice, carol)
    deposit(system, alice, 20_000)  # recovered: well above the requirement again
    t = kicked_at + engine.auctionParams(ETH).duration + 1

    def redo(gas):
        chain.pending_timestamp = t
        refresh_oracles(system)
        receipt = engine.redo(aid, dave, sender=dave, gas=gas)
        return receipt, [e.event_name for e in receipt.events if e.contract_address == engine.address]

    snap = chain.snapshot()
    _, names = redo(GENEROUS)
    chain.restore(snap)
    assert "AuctionCancelled" in names and "Redo" not in names

    smallest = _smallest_gas_that_goes_through(chain, redo)
    for gas in (smallest, smallest + 1, smallest + 5_000):
        snap = chain.snapshot()
        _, names = redo(gas)
        chain.restore(snap)
        assert "AuctionCancelled" in names and "Redo" not in names, f"gas {gas}: {names}"
