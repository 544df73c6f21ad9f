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

Expected figures: the slice, reward and penalty from the kick model in tests/helpers/liquidation.py
(`kick_checked` asserts them to the wei, with reserves and open interest unchanged); fills from
docs/liquidation.md. Funding is off.

The crowd version (the first test, at the listing's funding): ten ~8x longs ride the index down 20 %; no
kick, take or redo moves the vAMM, only the final backstop does, and the Vault's tokens equal the ledger
after every wave.
"""
from __future__ import annotations

import pytest

from helpers.incidents import (
    ETH,
    MAX_UINT,
    WAD,
    auction_price,
    backstop_checked,
    discount_of,
    fee_of,
    fund_many,
    insurance_part,
    ledger,
    liquidatable,
    live_auctions,
    one_event,
    read,
    reverts_unchanged,
    set_liquidation_params,
    set_price,
    trade,
)
from helpers.liquidation import expected_kick, kick_checked


def values(system, owners):
    r = read(system, **{f"v{i}": (system.vault, "accountValue", o.address, 0) for i, o in enumerate(owners)})
    return [r[f"v{i}"] for i in range(len(owners))]


def test_cascade_of_levered_longs_does_not_move_the_vamm_until_a_backstop(
        system, ch, vault, engine, usdc, chain, bob, carol, crowd):
    """Perp v1 (May 2022) and similar vAMM perps: liquidations were market orders on the vAMM, so each one
    pushed the mark further, triggering the next (a cascade), and the resulting bad debt drained the
    insurance fund. Here ten ~8x longs ride the ETH index down 20 % in 4 % steps; a keeper kicks whatever
    is liquidatable and a taker buys the slices off the auctions a couple of minutes later. The vAMM price
    does not move on any kick or take; it moves only when, at the end, unsold slices are backstopped.
    Conservation: the Vault's token balance equals the ledger (traders + pool + insurance) equals what was
    deposited, after every step. The bad debt and the insurance fund's path are printed."""
    traders = crowd[:10]
    keeper, taker = bob, carol
    owners = traders + [keeper, taker]
    base_total, bal0, ins_start = ledger(system, owners)
    assert base_total == bal0
    deposits = fund_many(system, system.deployer, [(who, 4000) for who in traders] + [(taker, 2_000_000)])
    for i, who in enumerate(traders):
        trade(ch, who, ETH, 10_400 * 10**15 + i * 60 * 10**15)  # 10.40 .. 10.94 ETH: ~7.8x .. 8.3x
    ap = engine.auctionParams(ETH)
    stats = dict(kicks=0, takes=0, redos=0, backstops=0, bad_debt=0, bad_debt_from_insurance=0, bad_debt_from_pool=0)
    spot = ch.spotPrice(ETH)
    ins_path = [("start", ledger(system, owners)[2])]

    steps = [3000 - 120 * k for k in range(1, 6)]  # 2880, 2760, 2640, 2520, 2400
    for k, price in enumerate(steps):
        set_price(system, "ETH", price * 10**8)
        for o in liquidatable(system, traders):
            while vault.isLiquidatable(o, 0) and engine.bestMarketToKick(o, 0) == ETH:
                engine.kick(o, 0, ETH, keeper, sender=keeper)
                stats["kicks"] += 1
                assert ch.spotPrice(ETH) == spot, "a kick moved the vAMM"
        if k == len(steps) - 1:
            break  # the takers stay away from the last wave
        chain.pending_timestamp += 120
        for aid in live_auctions(system):
            p = engine.auctionPrice(aid)
            a = engine.auction(aid)
            tx = engine.take(aid, MAX_UINT, p, 0, sender=taker)
            assert one_event(engine, "Take", tx).remaining == 0 and a.size > 0
            stats["takes"] += 1
            assert ch.spotPrice(ETH) == spot, "a take moved the vAMM"
        total, bal, ins = ledger(system, owners)
        assert total == bal == bal0 + deposits
        ins_path.append((price, ins))
    assert stats["kicks"] >= 10 and stats["takes"] >= 10
    left = live_auctions(system)
    assert left, "the last wave should leave auctions for the backstop"
    print(f"\ncascade: {sum(engine.auction(i).size for i in left) / WAD:.4f} ETH left for the backstop; vAMM spot "
          f"{spot / WAD:,.2f} vs index {steps[-1]:,} (the backstop has no price band)")
    # Nobody takes the last wave: redo until maxRedos, then the backstop closes against the vAMM.
    while live_auctions(system):
        chain.pending_timestamp += ap.duration + 1
        set_price(system, "ETH", steps[-1] * 10**8)
        for aid in live_auctions(system):
            if engine.auction(aid).redos < engine.liquidationParams().maxRedos:
                engine.redo(aid, keeper, sender=keeper)
                stats["redos"] += 1
                assert ch.spotPrice(ETH) == spot, "a redo moved the vAMM"
            else:
                backstop_checked(system, aid, keeper, stats)
    assert stats["backstops"] == len(left) and ch.spotPrice(ETH) < spot  # only the backstop sold into the vAMM
    total, bal, ins = ledger(system, owners)
    assert total == bal == bal0 + deposits
    ins_path.append(("after backstop", ins))
    for o in traders:
        assert vault.collateral(o, 0) >= 0 or vault.openMarkets(o, 0) != 0
    print(f"\ncascade: {stats}")
    print("cascade insurance fund path (WAD -> USDC): "
          + ", ".join(f"{lbl}: {v / WAD:,.2f}" for lbl, v in ins_path))
    print(f"cascade total bad debt: {stats['bad_debt'] / WAD:,.6f} USDC")


@pytest.mark.usefixtures("no_funding")
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
