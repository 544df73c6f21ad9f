"""Maker, Black Thursday, 12-13 March 2020 (~$8M of ETH collateral sold for 0 DAI).

What happened: ETH fell ~50 % in a day. Maker's liquidation auctions (English auctions, "flip") started at
a fixed lot and accepted bids in DAI; with gas prices spiking and keepers failing, a few auctions got a
single bid of 0 DAI and closed at it: vaults lost all their collateral for nothing and the system was left
with ~$5M of bad debt. Prices in the auction did not follow the market, stale auctions closed anyway, and
nothing stopped a settlement at zero.

The shape: a crash, no (or one) taker, an auction price detached from the live market, settlement at a
stale or zero price.

What stops it in vPerp (docs/liquidation.md; Maker's own fix, Liquidations 2.0, is the model):
- The taker's price is the *live* index less a discount that grows with time (here: the shipped exponential curve to 2 % over
  30 min): at every moment of a falling market it follows the index, never above it and never below
  `index x (1 - maxDiscount)`, so never zero.
- A fall against the account never ends an auction: it stays priced off the live index, its discount
  growing, so in a fast market it becomes worth taking instead of restarting at no discount. An auction is
  expired when its time is up (or the index rose more than `resetDrop`, 5 %, in the account's favour):
  then it cannot be taken (`AuctionExpired`), only restarted from the live index (`redo`, at most `maxRedos`
  times) and then closed on the vAMM (`backstop`); `redo`/`backstop` of a live auction revert
  (`AuctionNotExpired`), a backstop before the redos are used up reverts (`RedosRemaining`), a redo past
  them reverts (`MaxRedosReached`).
- A zero or stale oracle answer stops every path (`InvalidOraclePrice`, `StaleOracle`): no settlement at a
  price that is not the market's.
- Whatever the position's margin does not cover runs through the waterfall: no negative balance remains.

Here one 10x long rides the ETH index from 3000 down to ~1500 in 4 % steps two minutes apart, then the
index holds there (ten-minute steps) until the auction has been redone and backstopped, with no taker ever. Expected prices come from the documented curve and rounding (tests/helpers/liquidation.py);
funding is off.

The crowd version (the first test, at the listing's funding): four longs of increasing leverage, the index
halved in five steps with an arbitrageur keeping the vAMM near it, a keeper pass after each; a stale feed
and a zero answer stop take, redo, backstop and kick; the Vault's tokens equal the ledger throughout.
"""
from __future__ import annotations

import pytest

from helpers.incidents import (
    ETH,
    HEARTBEAT,
    MAX_UINT,
    WAD,
    auction_price,
    backstop_edge,
    backstop_fit,
    check_auction_prices,
    discount_of,
    expect_revert,
    expected_redo_tip,
    fund_many,
    keeper_pass,
    ledger,
    live_auctions,
    push_vamm_to,
    reverts_unchanged,
    set_price,
    swap,
    trade,
    vamm_base_to,
)

ORACLE_UNIT = 10**10


def test_black_thursday_crash_without_takers_never_settles_at_zero_or_stale_price(
        system, ch, vault, engine, usdc, chain, deployer, bob, carol, crowd, batcher):
    """Maker, 12-13 March 2020: ETH fell ~50 % within a day while gas prices kept keepers away; collateral
    auctions closed with a single bid of 0 DAI and ~$8M of ETH went for nothing. The property: an auction is
    priced off the *live* oracle, an expired or stale auction restarts (redo) instead of settling, and
    what nobody takes is closed by the backstop with the losses run through the waterfall.

    Here the ETH index falls from 3000 to 1500 in five 10 % oracle steps a minute apart; an arbitrageur
    keeps the vAMM near the index; four longs of increasing leverage are kicked, redone and finally
    backstopped; no taker ever bids. Stale (24 h heartbeat passed) and zero oracle answers stop take, redo,
    backstop and kick with named errors; once the feed is back, redo restarts from the live index."""
    longs = crowd[:4]
    arb = crowd[4]
    keeper = bob
    late_taker = carol
    owners = longs + [arb, keeper, late_taker]
    base_total, bal0, _ = ledger(system, owners)
    assert base_total == bal0
    deposits = fund_many(system, deployer, list(zip(longs, (6000, 4500, 3600, 3300))) + [(arb, 3_000_000), (late_taker, 1_000_000)])
    for who in longs:
        trade(ch, who, ETH, 10 * WAD)
    stats = dict(kicks=0, redos=0, backstops=0, bad_debt=0, bad_debt_from_insurance=0, bad_debt_from_pool=0)

    for price in (2700, 2400, 2100, 1800, 1500):
        chain.pending_timestamp += 60
        set_price(system, "ETH", price * 10**8)
        # A fall against the accounts does not end their auctions: each stays priced off the live index
        # (checked by check_auction_prices below), its discount growing, never at an old price.
        for aid in live_auctions(system):
            assert not engine.isExpired(aid)
        push_vamm_to(system, arb, price * WAD)
        keeper_pass(system, keeper, longs, stats)
        check_auction_prices(system, chain)
        total, bal, _ = ledger(system, owners)
        assert total == bal == bal0 + deposits
    assert stats["kicks"] >= len(longs)
    assert all(ch.position(o, 0, ETH)[0] == ch.auctionedSize(o, 0, ETH) for o in longs)  # all of it in auctions

    live = live_auctions(system)
    assert live
    aid = live[0]
    feed = system.markets["ETH"].oracle
    updated = feed.latestTimestamp()
    # The oracle stops: a day and a second later every liquidation path refuses the stale price.
    chain.pending_timestamp = updated + HEARTBEAT + 1
    chain.mine()
    stale = dict(feed=feed, updatedAt=updated, heartbeat=HEARTBEAT)
    with reverts_unchanged(system, batcher, ch.StaleOracle, longs, **stale):
        engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=late_taker)
    with reverts_unchanged(system, batcher, ch.StaleOracle, longs, **stale):
        engine.redo(aid, keeper, sender=keeper)
    with reverts_unchanged(system, batcher, ch.StaleOracle, longs, **stale):
        engine.backstop(aid, sender=keeper)
    with reverts_unchanged(system, batcher, ch.StaleOracle, longs, **stale):
        engine.kick(arb, 0, ETH, keeper, sender=keeper)
    with expect_revert(ch.StaleOracle, **stale):
        engine.auctionPrice(aid)
    # A zero answer is refused too (never a settlement at 0).
    feed.updateAnswer(0, sender=deployer)
    with reverts_unchanged(system, batcher, ch.InvalidOraclePrice, longs, feed=feed, answer=0):
        engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=late_taker)
    with reverts_unchanged(system, batcher, ch.InvalidOraclePrice, longs, feed=feed, answer=0):
        engine.redo(aid, keeper, sender=keeper)

    # The feed is back at 1500: every auction has run out of time; redo restarts each from the live index.
    set_price(system, "ETH", 1500 * 10**8)
    max_redos = engine.liquidationParams().maxRedos
    for aid in live_auctions(system):
        assert engine.isExpired(aid)
        if engine.auction(aid).redos < max_redos:
            tx = engine.redo(aid, keeper, sender=keeper)
            stats["redos"] += 1
            a = engine.auction(aid)
            assert (a.startIndex, a.startTime) == (1500 * WAD, tx.timestamp)
            assert engine.auctionPrice(aid) == 1500 * WAD  # restarted: the live index, no discount yet
    # Still nobody takes: the keeper redoes until maxRedos, then backstops against the vAMM.
    while live_auctions(system):
        chain.pending_timestamp += engine.auctionParams(ETH).duration + 1
        set_price(system, "ETH", 1500 * 10**8)  # the feed keeps updating at 1500
        keeper_pass(system, keeper, longs, stats)
    total, bal, _ = ledger(system, owners)
    assert total == bal == bal0 + deposits
    assert stats["backstops"] >= len(longs) and stats["bad_debt"] > 0
    for o in longs:
        assert ch.position(o, 0, ETH)[0] == 0 and vault.openMarkets(o, 0) == 0
        assert vault.collateral(o, 0) >= 0  # no negative balance remains: the waterfall ran
    print(f"\nblack thursday: {stats}")


@pytest.mark.usefixtures("no_funding")
def test_a_crash_with_no_taker_never_settles_at_a_stale_or_zero_price(
        system, ch, vault, engine, chain, deployer, alice, bob, carol, batcher):
    owner, keeper, arb = alice, bob, carol
    system.fund(owner, 3100)
    system.fund(arb, 3_000_000)
    trade(ch, owner, ETH, 10 * WAD)
    feed = system.markets["ETH"].oracle
    ap = engine.auctionParams(ETH)
    lp = engine.liquidationParams()
    everyone = [owner, keeper, arb]
    seen = dict(kicks=0, live_prices=0, expired_takes=0, redos=0, backstops=0, bad_debt=0)
    checked_once = set()

    p8 = 3000 * 10**8
    aid = None
    falling, hold = True, 0
    while falling or (aid is not None and hold < 40):
        if falling:
            p8 = p8 * 96 // 100
            falling = p8 > 1500 * 10**8
            chain.pending_timestamp += 120
        else:
            hold += 1
            chain.pending_timestamp += 600
        feed.updateAnswer(p8, sender=deployer)
        idx = p8 * ORACLE_UNIT
        now = chain.blocks.head.timestamp
        if aid is None:
            if vault.isLiquidatable(owner, 0):
                engine.kick(owner, 0, ETH, keeper, sender=keeper)
                aid = engine.auctionCount()
                seen["kicks"] += 1
                assert engine.auction(aid).startIndex == idx
            continue
        a = engine.auction(aid)
        expired = now - a.startTime > ap.duration  # the index only falls or holds: never in the account's favour
        assert engine.isExpired(aid) == expired
        if not expired:
            # Priced off the live index, not the (higher) start index, and never below the floor.
            price = engine.auctionPrice(aid)
            assert price == auction_price(1, idx, discount_of(ap, now - a.startTime))
            assert idx * (WAD - ap.maxDiscount) // WAD <= price <= idx <= a.startIndex
            seen["live_prices"] += 1
            if "not_expired" not in checked_once:
                checked_once.add("not_expired")
                with reverts_unchanged(system, batcher, engine.AuctionNotExpired, everyone, auctionId=aid):
                    engine.redo(aid, keeper, sender=keeper)
                with reverts_unchanged(system, batcher, engine.AuctionNotExpired, everyone, auctionId=aid):
                    engine.backstop(aid, sender=keeper)
                # A zero answer stops the price, the take and the redo; then the feed comes back.
                feed.updateAnswer(0, sender=deployer)
                with reverts_unchanged(system, batcher, ch.InvalidOraclePrice, everyone, feed=feed, answer=0):
                    engine.take(aid, 2**255, 2**255, 0, sender=arb)
                with reverts_unchanged(system, batcher, ch.InvalidOraclePrice, everyone, feed=feed, answer=0):
                    engine.redo(aid, keeper, sender=keeper)
                feed.updateAnswer(p8, sender=deployer)
            continue
        # Expired: nobody may take it at the old terms (checked on the first expiries; each one is alike).
        if seen["expired_takes"] < 2:
            with reverts_unchanged(system, batcher, engine.AuctionExpired, everyone, auctionId=aid):
                engine.take(aid, 2**255, 2**255, 0, sender=arb)
            seen["expired_takes"] += 1
        if a.redos < lp.maxRedos:
            if "redos_remaining" not in checked_once:
                checked_once.add("redos_remaining")
                with reverts_unchanged(system, batcher, engine.RedosRemaining, everyone, auctionId=aid,
                                       redos=a.redos, maxRedos=lp.maxRedos):
                    engine.backstop(aid, sender=keeper)
            tip, _ = expected_redo_tip(system, owner, ETH)  # at most what the account keeps after the worst fill
            tx = engine.redo(aid, keeper, sender=keeper)
            ev = engine.Redo.from_receipt(tx)[0]
            assert (ev.redos, ev.startIndex, ev.tip) == (a.redos + 1, idx, tip)
            b = engine.auction(aid)
            assert (b.startIndex, b.startTime, b.size) == (idx, tx.timestamp, a.size)
            assert engine.auctionPrice(aid) == idx  # restarted at the live index, no discount yet
            seen["redos"] += 1
            continue
        with reverts_unchanged(system, batcher, engine.MaxRedosReached, everyone, auctionId=aid, redos=a.redos):
            engine.redo(aid, keeper, sender=keeper)
        # Backstop: an arbitrageur first brings the vAMM to the index, then the slice is sold on it.
        base = vamm_base_to(system, ETH, idx)
        if base:
            trade(ch, arb, ETH, base)
        s = ch.marketState(ETH)
        # Sold no lower than the auction's own last price (index less the full discount), the rest waits.
        edge = backstop_edge(idx, a.size, ap.maxDiscount, ch.marketParams(ETH).maxSpread)
        closed = backstop_fit(s.baseReserve, s.quoteReserve, a.size, edge, ch.marketParams(ETH).minPositionSize)
        assert closed > 0
        q, x1, y1 = swap(s.baseReserve, s.quoteReserve, -closed)
        tx = engine.backstop(aid, sender=keeper)
        ev = engine.Backstop.from_receipt(tx)[0]
        assert (ev.size, ev.quote) == (closed, q) and q > 0
        assert ch.spotPrice(ETH) >= edge
        s = ch.marketState(ETH)
        assert (s.baseReserve, s.quoteReserve) == (x1, y1)
        for e in vault.BadDebt.from_receipt(tx):  # the waterfall: insurance first, then the pool
            assert e.fromInsurance + e.fromPool == e.amount and vault.collateral(owner, 0) == 0
            assert vault.insuranceFund() == 0 or e.fromPool == 0
            seen["bad_debt"] += e.amount
        seen["backstops"] += 1
        if engine.auction(aid).size == 0:
            aid = None  # the rest of the position (if any) is kicked again when liquidatable
    assert seen["kicks"] >= 1 and seen["redos"] >= lp.maxRedos and seen["backstops"] >= 1
    assert seen["live_prices"] >= 3 and seen["expired_takes"] == 2
    assert vault.collateral(owner, 0) >= 0 or vault.openMarkets(owner, 0) != 0  # no negative balance left
    print(f"\nblack thursday: {seen}")
