"""Perp Protocol v1 (and vAMM perps of its generation), May 2022.

What happened: liquidations were market orders on the vAMM. When a large, levered position was liquidated,
closing it moved the vAMM price a long way; the next positions were judged at that price, were liquidated
in turn, and each forced close pushed the price further (a cascade). The last closes happened at prices
far from the market, the positions' losses exceeded their margin, and the bad debt emptied the insurance
fund.

The shape: one big liquidation dumped on the pricing curve, feeding the next; whole positions closed at
once; nothing bounding how much is being liquidated at a time.

What stops it in vPerp (docs/liquidation.md):
- Partial liquidation: `kick` auctions only the smallest slice that restores target health
  (`n >= (h*M - V + tip) / (h*mmr - chip - penalty - maxDiscount)`), not the whole position.
- No market dump: a kick and a take leave the vAMM reserves and the open interest untouched (a taker takes
  the slice over at the live index less a discount); other accounts' health, which reads the index, does
  not move when someone else is liquidated.
- A global cap on notional in live auctions (`AuctionCapReached(live, slice, cap)`) bounds a cascade.
- The insurance fund only grows from fees and penalties while accounts are liquidated with margin left.

Expected figures: the slice, reward and penalty from the kick model in tests/test_liquidation.py
(`kick_checked` asserts them to the wei, with reserves and open interest unchanged); fills from
docs/liquidation.md. Funding is off.
"""
from __future__ import annotations

import pytest

from incident_helpers import (
    ETH,
    WAD,
    auction_price,
    discount_of,
    fee_of,
    insurance_part,
    read,
    reverts_unchanged,
    set_liquidation_params,
    trade,
)
from test_liquidation import expected_kick, kick_checked


pytestmark = pytest.mark.usefixtures("no_funding")


def values(system, owners):
    r = read(system, **{f"v{i}": (system.vault, "accountValue", o.address, 0) for i, o in enumerate(owners)})
    return [r[f"v{i}"] for i in range(len(owners))]


def test_a_whale_liquidation_is_a_partial_auction_that_moves_nobody_else(
        system, ch, vault, engine, chain, alice, bob, carol, crowd, batcher):
    whale, keeper, taker = alice, bob, carol
    smalls = crowd[:4]
    system.fund(whale, 132_000)
    system.fund(taker, 2_000_000)
    for s in smalls:
        system.fund(s, 11_500)
    ins = vault.insuranceFund()
    fees = []
    for who, base in [(whale, 300 * WAD)] + [(s, 20 * WAD) for s in smalls]:
        tx = trade(ch, who, ETH, base)
        fees.append(ch.PositionChanged.from_receipt(tx)[0].fee)
        assert fees[-1] == fee_of(ch.PositionChanged.from_receipt(tx)[0].quoteDelta)
    ins += sum(insurance_part(f) for f in fees)
    assert vault.insuranceFund() == ins

    system.set_price("ETH", 2760)  # -8 %: everyone is below maintenance
    everyone = [whale] + smalls
    assert all(vault.isLiquidatable(o, 0) for o in everyone)
    spot = ch.spotPrice(ETH)

    # The whale: a partial slice, priced and sized by the formula; the vAMM does not move.
    aid, m, _ = kick_checked(system, chain, whale, ETH, keeper, caller=keeper)
    assert m.restores and m.size < 300 * WAD
    ins += m.penalty
    assert ch.spotPrice(ETH) == spot

    # The live-auction cap bounds the cascade: room for the whale's slice and one more.
    m1, *_ = expected_kick(system, smalls[0], ETH)
    cap = m.notional + m1.notional
    set_liquidation_params(system, maxAuctionNotional=cap)
    others = values(system, smalls)
    aid1, m1b, _ = kick_checked(system, chain, smalls[0], ETH, keeper, caller=keeper)
    assert m1b.size == m1.size and m1b.restores
    ins += m1b.penalty
    m2, *_ = expected_kick(system, smalls[1], ETH)
    with reverts_unchanged(system, batcher, engine.AuctionCapReached, everyone + [keeper],
                           liveNotional=m.notional + m1.notional, sliceNotional=m2.notional, cap=cap):
        engine.kick(smalls[1], 0, ETH, keeper, sender=keeper)
    # Nobody else's health moved: the kicks did not touch the price they are judged at.
    assert values(system, smalls[1:]) == others[1:]

    # A taker takes the whale's slice a few minutes later at the index less the discount: still no move.
    ap = engine.auctionParams(ETH)
    s0 = ch.marketState(ETH)
    start = engine.auction(aid).startTime
    chain.pending_timestamp = start + 300
    tx = engine.take(aid, 2**255, 2**255, 0, sender=taker)
    take = engine.Take.from_receipt(tx)[0]
    assert take.price == auction_price(1, 2760 * WAD, discount_of(ap, 300))
    assert take.remaining == 0 and take.amount == m.size
    s1 = ch.marketState(ETH)
    assert (s1.baseReserve, s1.quoteReserve, s1.longOpenInterest, s1.shortOpenInterest) == (
        s0.baseReserve, s0.quoteReserve, s0.longOpenInterest, s0.shortOpenInterest)
    assert values(system, smalls[1:]) == others[1:]
    assert ch.position(taker, 0, ETH)[0] == m.size and ch.position(whale, 0, ETH)[0] == 300 * WAD - m.size
    assert not vault.isLiquidatable(whale, 0)

    # The whale's slice left the cap: the next kicks fit again, each a partial slice.
    _, ms, _ = kick_checked(system, chain, smalls[1], ETH, keeper, caller=keeper)
    assert ms.restores
    ins += ms.penalty
    assert ch.spotPrice(ETH) == spot
    # The insurance fund only grew: fees and penalties in, nothing out, no bad debt anywhere.
    assert vault.insuranceFund() == ins
    assert all(vault.collateral(o, 0) > 0 for o in everyone)
