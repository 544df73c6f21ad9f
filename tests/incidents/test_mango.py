"""Mango Markets, October 2022 (~$115M).

What happened: the attacker funded two accounts, sold MNGO-PERP from one to the other (a ~480M MNGO long
on a thin market), then bought MNGO on the few spot venues the oracle read, so the index rose ~10x in
minutes. Mango valued the long's *unrealized* profit at the pumped oracle and let the account borrow
against it: the attacker withdrew ~$115M of other depositors' assets and left the bad debt behind.

The attack's shape: (1) a position far larger than the market can absorb, (2) a mark/index pump,
(3) unrealized PnL counted as withdrawable collateral (or as margin for new borrowing).

What stops it in vPerp (docs/design.md#accounts-and-margin, docs/design.md#trading;
docs/design.md#design-choices-and-their-reasons):
- `freeCollateral = min(collateral - funding, accountValue) - initial`: unrealized profit never counts
  towards a withdrawal or a new position; it must be realized on the vAMM first, where it is worth only
  what the vAMM pays, not what the oracle says. A withdrawal past it reverts
  `InsufficientFreeCollateral(owner, sub, free)`, a new position `InsufficientMargin(owner, sub, free)`.
- The pump trade itself is bounded by the price band (`PriceBandExceeded`) and the position by the
  open-interest cap (`OpenInterestCapExceeded`), so the size in (1) is bounded.

Expected figures come from the documented vAMM formulas (tests/helpers/trading.py) and
docs/design.md#accounts-and-margin.
Funding is switched off in this module so health has no time term.
"""
from __future__ import annotations

import pytest

from helpers.incidents import (
    BTC,
    ETH,
    IMR,
    SCALE,
    WAD,
    Amm,
    apply_trade,
    fee_of,
    free_collateral,
    requirement,
    reverts_unchanged,
    set_index,
    set_market_params,
    snapshot,
    trade,
    upnl,
)
from helpers.trading import BTC_X0, BTC_Y0, ETH_X0, ETH_Y0, MAX_SPREAD


pytestmark = pytest.mark.usefixtures("no_funding")


def test_pumped_unrealized_profit_is_neither_withdrawable_nor_margin(system, ch, vault, usdc, alice, batcher):
    deposit = 60_000 * 10**6
    system.fund(alice, 60_000)
    amm = Amm(ETH_X0, ETH_Y0)
    size = 150 * WAD
    q = amm.trade(size)  # the big buy: the vAMM goes from 3000 to ~3092
    fee = fee_of(q)
    trade(ch, alice, ETH, size)
    coll = deposit * SCALE - fee
    on = -q
    assert tuple(ch.position(alice, 0, ETH))[:2] == (size, on)
    assert vault.collateral(alice, 0) == coll

    # The oracle is pumped 9 % (Mango's was ~10x; vPerp's band keeps the vAMM within 10 % of the index).
    index = 3270 * WAD
    set_index(system, "ETH", 3270)
    paper = upnl(size, on, index)
    assert paper > 30_000 * WAD  # a large paper profit at the pumped index
    initial = requirement(size, index, IMR)
    free = free_collateral(coll, [(size, on, index, IMR)])
    assert free == coll - initial  # the profit is not in it
    assert vault.accountValue(alice, 0) == coll + paper
    assert vault.freeCollateral(alice, 0) == free
    assert tuple(vault.marginRequirements(alice, 0))[0] == initial

    # What Mango let the attacker take: account value less the initial requirement.
    mango_amount = (coll + paper - initial) // SCALE
    with reverts_unchanged(system, batcher, vault.InsufficientFreeCollateral, [alice],
                           owner=alice, subaccount=0, freeCollateral=coll - mango_amount * SCALE - initial):
        vault.withdraw(0, mango_amount, sender=alice)
    # One token unit past the free collateral: refused with the exact shortfall.
    w = free // SCALE
    with reverts_unchanged(system, batcher, vault.InsufficientFreeCollateral, [alice],
                           owner=alice, subaccount=0, freeCollateral=coll - (w + 1) * SCALE - initial):
        vault.withdraw(0, w + 1, sender=alice)
    # Exactly the free collateral: paid.
    vault.withdraw(0, w, sender=alice)
    assert usdc.balanceOf(alice) == w
    coll -= w * SCALE
    assert vault.collateral(alice, 0) == coll and vault.freeCollateral(alice, 0) == coll - initial >= 0

    # The paper profit cannot back new risk either: one more ETH, or a BTC position on the cross account.
    q2, p2 = amm.peek(WAD)
    c2 = coll - fee_of(q2)
    s2, on2, _ = apply_trade(size, on, WAD, q2)
    free2 = free_collateral(c2, [(s2, on2, index, IMR)])
    assert free2 < 0 < c2 + upnl(s2, on2, index) - requirement(s2, index, IMR)  # only the profit would cover it
    with reverts_unchanged(system, batcher, ch.InsufficientMargin, [alice], owner=alice, subaccount=0,
                           freeCollateral=free2):
        trade(ch, alice, ETH, WAD)
    btc = Amm(BTC_X0, BTC_Y0)
    qb = btc.trade(WAD // 10)
    c3 = coll - fee_of(qb)
    free3 = free_collateral(c3, [(size, on, index, IMR), (WAD // 10, -qb, 60_000 * WAD, IMR)])
    assert free3 < 0
    with reverts_unchanged(system, batcher, ch.InsufficientMargin, [alice], owner=alice, subaccount=0,
                           freeCollateral=free3):
        trade(ch, alice, BTC, WAD // 10)

    # Realizing it: closing sells into the vAMM, which the oracle pump did not move. The profit the
    # oracle showed is not there; the close realizes what the vAMM pays (a loss: the round trip's slippage).
    qc = amm.trade(-size)
    _, _, realized = apply_trade(size, on, -size, qc)
    ch.closePosition(0, ETH, 0, 2**64, sender=alice)
    assert ch.position(alice, 0, ETH)[0] == 0
    assert realized < 0 < paper
    coll += realized - fee_of(qc)
    assert vault.collateral(alice, 0) == coll
    vault.withdraw(0, coll // SCALE, sender=alice)
    assert usdc.balanceOf(alice) == w + coll // SCALE < deposit  # the attacker leaves with less than it put in


def test_the_pump_trade_is_bounded_by_the_price_band_and_the_open_interest_cap(system, ch, vault, alice, bob, batcher):
    system.fund(alice, 2_000_000)
    system.fund(bob, 100_000)
    amm = Amm(ETH_X0, ETH_Y0)

    # A buy that would take the vAMM more than 10 % above the index is refused.
    big = 500 * WAD
    _, after = amm.peek(big)
    assert after > 3000 * WAD * (WAD + MAX_SPREAD) // WAD
    with reverts_unchanged(system, batcher, ch.PriceBandExceeded, [alice], marketId=ETH, priceAfter=after,
                           indexPrice=3000 * WAD, maxSpread=MAX_SPREAD):
        trade(ch, alice, ETH, big)

    # Governance lists the market as thin: at most 300 ETH per side.
    cap = 300 * WAD
    set_market_params(system, ETH, maxOpenInterest=cap)
    # With the oracle pumped 9 % the same buy is inside the band, but above the cap.
    set_index(system, "ETH", 3270)
    with reverts_unchanged(system, batcher, ch.OpenInterestCapExceeded, [alice], marketId=ETH,
                           openInterest=big, cap=cap):
        trade(ch, alice, ETH, big)
    # Up to the cap is fine (inclusive); one hundredth of an ETH more is not, from any account.
    before = snapshot(system, [alice, bob])
    trade(ch, alice, ETH, cap)
    amm.trade(cap)
    assert ch.marketState(ETH).longOpenInterest == cap
    assert before[("position", alice.address, 0, ETH)] == (0, 0)
    for who in (alice, bob):
        with reverts_unchanged(system, batcher, ch.OpenInterestCapExceeded, [alice, bob], marketId=ETH,
                               openInterest=cap + 10**16, cap=cap):
            trade(ch, who, ETH, 10**16)
    # The cap binds the side that grows only: the other side and reductions stay open.
    trade(ch, bob, ETH, -10 * WAD)
    trade(ch, alice, ETH, -10 * WAD)
    s = ch.marketState(ETH)
    assert (s.longOpenInterest, s.shortOpenInterest) == (cap - 10 * WAD, 10 * WAD)
