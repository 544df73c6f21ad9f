"""Hyperliquid ETH whale, March 2025 (~$4M loss to the HLP vault).

What happened: a trader opened a ~$300M ETH long at up to 50x, then withdrew margin (including its
unrealized profit) down to about the maintenance requirement. The position was then one small move from
liquidation, and it was: the liquidation took it over into the HLP vault (the exchange's liquidity pool)
at a price the vault could not exit at, and the vault lost ~$4M while the whale kept the profit it had
withdrawn. Hyperliquid then raised the margin that must stay after a withdrawal.

The shape: withdraw down to maintenance (not initial) margin, so the liquidation that follows is
immediate and large, and it lands on the pool.

What stops it in vPerp (docs/design.md#accounts-and-margin, docs/liquidation.md):
- A withdrawal (and a margin transfer out of the account) must leave `freeCollateral >= 0`, i.e.
  collateral (unrealized profit excluded) at or above the *initial* requirement, twice maintenance at the
  default 10 % / 5 %: `InsufficientFreeCollateral(owner, sub, free)` with the exact shortfall.
- When the market does move far enough, the liquidation is a partial Dutch auction to takers at the live
  index less a small discount: the pool does not take the position over, the penalty goes to the insurance
  fund, and the liquidated account, which kept its initial-margin buffer, ends with no bad debt.

Expected figures from docs/design.md#accounts-and-margin and docs/liquidation.md (formulas in
tests/helpers/trading.py and tests/helpers/liquidation.py). Funding is off.
"""
from __future__ import annotations

import pytest

from helpers.incidents import (
    ETH,
    IMR,
    MMR,
    SCALE,
    WAD,
    Amm,
    apply_trade,
    auction_price,
    discount_of,
    fee_of,
    fill_quotes,
    free_collateral,
    model_slice,
    requirement,
    reverts_unchanged,
    trade,
    upnl,
)
from helpers.trading import ETH_X0, ETH_Y0

ORACLE_UNIT = 10**10  # one unit of the 8-decimal feed, in WAD


pytestmark = pytest.mark.usefixtures("no_funding")


def test_withdrawal_must_leave_initial_margin_and_the_liquidation_that_follows_spares_the_pool(
        system, ch, vault, engine, usdc, chain, alice, carol, batcher):
    whale, taker = alice, carol
    system.fund(whale, 100_000)
    system.fund(taker, 1_000_000)
    amm = Amm(ETH_X0, ETH_Y0)
    size = 250 * WAD
    q = amm.trade(size)
    trade(ch, whale, ETH, size)
    on = -q
    coll = 100_000 * 10**6 * SCALE - fee_of(q)

    # The whale is in profit: the index is up to 3200.
    index = 3200 * WAD
    system.set_price("ETH", 3200)
    paper = upnl(size, on, index)
    assert paper > 0
    initial, maint = requirement(size, index, IMR), requirement(size, index, MMR)
    assert initial == 2 * maint
    free = free_collateral(coll, [(size, on, index, IMR)])
    assert free == coll - initial
    assert vault.freeCollateral(whale, 0) == free
    assert tuple(vault.marginRequirements(whale, 0)) == (initial, maint)

    # Hyperliquid let the whale withdraw down to maintenance: value - maintenance.
    to_maint = (coll + paper - maint) // SCALE
    with reverts_unchanged(system, batcher, vault.InsufficientFreeCollateral, [whale], owner=whale, subaccount=0,
                           freeCollateral=coll - to_maint * SCALE - initial):
        vault.withdraw(0, to_maint, sender=whale)
    # vPerp stops at the initial requirement, profit excluded: one unit more is refused ...
    w = free // SCALE
    with reverts_unchanged(system, batcher, vault.InsufficientFreeCollateral, [whale], owner=whale, subaccount=0,
                           freeCollateral=coll - (w + 1) * SCALE - initial):
        vault.withdraw(0, w + 1, sender=whale)
    vault.withdraw(0, w, sender=whale)
    assert usdc.balanceOf(whale) == w
    coll -= w * SCALE
    left = coll - initial
    assert vault.freeCollateral(whale, 0) == left and 0 <= left < SCALE
    # ... and moving the rest into an isolated sub-account is a withdrawal too: one wei past it is refused.
    with reverts_unchanged(system, batcher, vault.InsufficientFreeCollateral, [whale], subs=(0, 1), owner=whale,
                           subaccount=0, freeCollateral=-1):
        vault.transferMargin(0, 1, left + 1, sender=whale)
    assert vault.accountValue(whale, 0) == coll + paper >= 2 * maint  # twice maintenance is left

    # How far must the index fall before the whale is liquidatable? Solve the margin formula in oracle units.
    def liquidatable_at(p8: int) -> bool:
        idx = p8 * ORACLE_UNIT
        return coll + upnl(size, on, idx) < requirement(size, idx, MMR)

    lo, hi = 1, 3200 * 10**8  # liquidatable at lo, not at hi
    assert liquidatable_at(lo) and not liquidatable_at(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if liquidatable_at(mid) else (lo, mid)
    assert hi * ORACLE_UNIT < 3040 * WAD  # more than a 5 % fall from 3200: the initial-margin buffer
    system.markets["ETH"].oracle.updateAnswer(hi, sender=system.deployer)
    assert not vault.isLiquidatable(whale, 0)
    with reverts_unchanged(system, batcher, engine.NotLiquidatable, [whale], owner=whale, subaccount=0):
        engine.kick(whale, 0, ETH, carol, sender=carol)
    system.markets["ETH"].oracle.updateAnswer(lo, sender=system.deployer)
    assert vault.isLiquidatable(whale, 0)

    # The liquidation: a partial slice, the penalty to insurance, the pool untouched, no bad debt.
    index = lo * ORACLE_UNIT
    lp = engine.liquidationParams()
    ap = engine.auctionParams(ETH)
    value = coll + upnl(size, on, index)
    m = model_slice(value, requirement(size, index, MMR), size, index, MMR, 10**16, lp, ap.maxDiscount)
    assert m.restores and 0 < m.size < size
    pool0, ins0 = vault.poolBalance(), vault.insuranceFund()
    tx = engine.kick(whale, 0, ETH, carol, sender=carol)
    ev = engine.Kick.from_receipt(tx)[0]
    assert (ev.size, ev.keeperReward, ev.penalty) == (m.size, m.reward, m.penalty)
    assert vault.insuranceFund() == ins0 + m.penalty and vault.poolBalance() == pool0
    dt = 600
    chain.pending_timestamp = tx.timestamp + dt
    price = auction_price(1, index, discount_of(ap, dt))
    owner_q, taker_q = fill_quotes(1, m.size, price)
    _, _, realized = apply_trade(size, on, -m.size, owner_q)
    nav0 = system.pool.navWad()
    tx = engine.take(1, 2**255, price, 0, sender=taker)
    assert vault.BadDebt.from_receipt(tx) == []
    # The pool settles the whale's realized loss as its counterparty (cash in), and its value moves by the
    # rounding wei between what the whale receives and the taker pays, nothing more: the discount is paid
    # by the liquidated account to the taker, not by the pool.
    assert vault.poolBalance() == pool0 - realized
    assert system.pool.navWad() == nav0 + (-taker_q - owner_q)
    assert ch.position(taker, 0, ETH)[0] == m.size  # a taker holds it now, not the pool
    assert ch.position(whale, 0, ETH)[0] == size - m.size
    assert vault.collateral(whale, 0) > 0 and not vault.isLiquidatable(whale, 0)
