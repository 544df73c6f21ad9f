"""Liquidation scenarios named after the incidents they reproduce (docs/incidents.md: Maker Black Thursday,
Perp v1 cascade, Euler self-liquidation), plus a kicked account that recovers.

Each test drives the deployed system through Ape the way a market would (oracle steps, a keeper pass,
takers, an arbitrageur, time) and checks the properties of docs/liquidation.md that the incident broke: auctions are
priced off the live oracle and never settle at a zero or stale price, kicks and takes leave the vAMM alone,
the loss waterfall leaves no negative balance, every token in the Vault is accounted for, and a second
account cannot make self-liquidation pay. Amounts are computed in Python from the documented formulas (the
helpers are shared with tests/test_liquidation.py).
"""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_liquidation import (
    ETH,
    MIN_ETH,
    apply_trade,
    auction_price,
    discount_of,
    events,
    fill_quotes,
    health_of,
    kick_checked,
    one_event,
    read,
    reverts_unchanged,
    set_price,
    swap,
)
from trading_helpers import funding_off, HEARTBEAT, MAX_UINT, WAD, ceil_div, deadline, expect_revert, funded_crowd, requirement, trade


@pytest.fixture(scope="module", autouse=True)
def batcher(project, system, deployer):
    b = project.BatchCaller.deploy(sender=deployer)
    system.extra["batcher"] = b
    return b


@pytest.fixture(scope="module", autouse=True)
def crowd(accounts, deployer, alice, bob, carol):
    """accounts[4..] and, past the ten configured test accounts, generated ones with gas money."""
    return funded_crowd(accounts, deployer)


def fund_many(system, funder, amounts) -> int:
    """Deposit each (account, human amount) into its cross account through `depositFor` from one funder
    (one mint, one approval); returns the total deposited in WAD."""
    units = [system.units(x) for _, x in amounts]
    system.collateral.mint(funder, sum(units), sender=funder)
    system.collateral.approve(system.vault, sum(units), sender=funder)
    for (who, _), u in zip(amounts, units):
        system.vault.depositFor(who, 0, u, sender=funder)
    return sum(units) * system.token_scale




def ledger(system, owners):
    """(sum of the owners' collateral + pool + insurance, the Vault's token balance in WAD, insurance)."""
    vault, usdc = system.vault, system.collateral
    calls = {f"c{i}": (vault, "collateral", o.address, 0) for i, o in enumerate(owners)}
    calls.update(pool=(vault, "poolBalance"), ins=(vault, "insuranceFund"), bal=(usdc, "balanceOf", vault.address))
    r = read(system, **calls)
    total = sum(r[f"c{i}"] for i in range(len(owners))) + r["pool"] + r["ins"]
    return total, r["bal"] * system.token_scale, r["ins"]


def push_vamm_to(system, who, target: int):
    """An arbitrageur sells (or buys) base until the vAMM price is about `target` (WAD)."""
    ch = system.clearing_house
    s = ch.marketState(ETH)
    x1 = math.isqrt(s.baseReserve * s.quoteReserve * WAD // target)
    base = s.baseReserve - x1  # > 0 buys, < 0 sells
    if abs(base) >= MIN_ETH:
        trade(ch, who, ETH, base)


def live_auctions(system):
    """Ids of the auctions with something left (one batched read)."""
    engine = system.liquidation
    n = engine.auctionCount()
    if n == 0:
        return []
    r = read(system, **{f"a{i}": (engine, "auction", i) for i in range(1, n + 1)})
    return [i for i in range(1, n + 1) if r[f"a{i}"].size != 0]


def liquidatable(system, owners):
    """The owners that are liquidatable now (one batched read)."""
    r = read(system, **{f"o{i}": (system.vault, "isLiquidatable", o.address, 0) for i, o in enumerate(owners)})
    return [o for i, o in enumerate(owners) if r[f"o{i}"]]


def keeper_pass(system, keeper, owners, stats):
    """What a keeper does: redo (or, after maxRedos, backstop) every expired auction, then kick every
    liquidatable account in its best market until it is not liquidatable or has nothing free."""
    engine, ch, vault = system.liquidation, system.clearing_house, system.vault
    max_redos = engine.liquidationParams().maxRedos
    for aid in live_auctions(system):
        if engine.isExpired(aid):
            a = engine.auction(aid)
            if a.redos < max_redos:
                engine.redo(aid, keeper, sender=keeper)
                stats["redos"] += 1
            else:
                backstop_checked(system, aid, keeper, stats)
    for o in liquidatable(system, owners):
        while vault.isLiquidatable(o, 0):
            mid = engine.bestMarketToKick(o, 0)
            if mid == 0:
                break
            engine.kick(o, 0, mid, keeper, sender=keeper)
            stats["kicks"] += 1


def backstop_checked(system, aid, caller, stats):
    """backstop: the remainder is swapped against the vAMM exactly as VAmmMath.swap; any bad debt runs
    through the waterfall (insurance first, then the pool) and leaves the account at zero."""
    engine, ch, vault = system.liquidation, system.clearing_house, system.vault
    a = engine.auction(aid)
    s0 = ch.marketState(a.marketId)
    ins0 = vault.insuranceFund()
    q, x1, y1 = swap(s0.baseReserve, s0.quoteReserve, -a.size)
    tx = engine.backstop(aid, sender=caller)
    ev = one_event(engine, "Backstop", tx)
    assert (ev.size, ev.quote) == (a.size, q)
    s1 = ch.marketState(a.marketId)
    assert (s1.baseReserve, s1.quoteReserve) == (x1, y1)
    stats["backstops"] += 1
    for bd in events(vault, "BadDebt", tx):
        assert bd.fromInsurance == min(bd.amount, ins0) and bd.fromInsurance + bd.fromPool == bd.amount
        assert vault.collateral(bd.owner, bd.subaccount) == 0
        stats["bad_debt"] += bd.amount
        stats["bad_debt_from_insurance"] += bd.fromInsurance
        stats["bad_debt_from_pool"] += bd.fromPool
    return tx


def favourable_move(size: int, start: int, index: int) -> int:
    """How far the index moved in the auctioned account's favour since its (re)start (0 if against it)."""
    return max(index - start, 0) if size > 0 else max(start - index, 0)


def check_auction_prices(system, chain):
    """Every live auction: expired ones cannot be priced (nor taken); the others are priced at the live
    index less the curve's discount for their age -- never zero, never an old index."""
    engine, ch = system.liquidation, system.clearing_house
    head = chain.blocks.head.timestamp
    for aid in live_auctions(system):
        a = engine.auction(aid)
        ap = engine.auctionParams(a.marketId)
        index = ch.indexPrice(a.marketId)
        expired = head - a.startTime > ap.duration or favourable_move(a.size, a.startIndex, index) > a.startIndex * ap.resetDrop // WAD
        assert engine.isExpired(aid) == expired
        if expired:
            with expect_revert(engine.AuctionExpired, auctionId=aid):
                engine.auctionPrice(aid)
            continue
        p = engine.auctionPrice(aid)
        sign = 1 if a.size > 0 else -1
        assert p == auction_price(sign, index, discount_of(ap, head - a.startTime))
        assert p >= index * (WAD - ap.maxDiscount) // WAD > 0


# ---------------------------------------------------------------------------- Maker, Black Thursday


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


# ---------------------------------------------------------------------------- Perp v1 cascade


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


# ---------------------------------------------------------------------------- Euler self-liquidation


def test_self_liquidation_via_second_account_never_profits_at_constant_index(
        system, ch, vault, engine, chain, crowd):
    """Euler (March 2023): an attacker made its own position liquidatable, then liquidated it from a second
    account at a discount and walked off with the difference. Here attacker A holds a levered long; the
    index moves once so A is liquidatable, then stays constant; B (the same person, another address) kicks
    A with itself as keeper and takes the slice at any moment of the auction, in one or two fills. The
    discount moves value from A to B (a wash), the keeper reward too; the penalty leaves for the insurance
    fund. Combined equity (collateral + unrealized PnL at the index, both accounts) never rises: it falls
    by exactly the penalty plus at most 2 wei of rounding per fill (in the pool's favour)."""
    funding_off(system)
    a, b = crowd[0], crowd[1]
    system.fund(a, 3100)
    trade(ch, a, ETH, 10 * WAD)
    system.fund(b, 100_000)
    set_price(system, "ETH", 2800 * 10**8)
    assert vault.isLiquidatable(a, 0)
    duration = engine.auctionParams(ETH).duration

    def equity():
        r = read(system, va=(vault, "accountValue", a.address, 0), vb=(vault, "accountValue", b.address, 0))
        return r["va"] + r["vb"]

    @settings(max_examples=8, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(dt=st.integers(1, duration), first_bp=st.integers(0, 10_000), two_fills=st.booleans())
    def attack(dt, first_bp, two_fills):
        sid = chain.snapshot()
        try:
            before = equity()
            tx = engine.kick(a, 0, ETH, b, sender=b)
            kick = one_event(engine, "Kick", tx)
            size = kick.size
            assert kick.keeper == b.address and kick.penalty > 0
            chain.pending_timestamp = tx.timestamp + dt
            fills = 0
            if two_fills:
                first = max(MIN_ETH, min(size - MIN_ETH, size * first_bp // 10_000))
                engine.take(kick.auctionId, first, MAX_UINT, 0, sender=b)
                fills += 1
            engine.take(kick.auctionId, MAX_UINT, MAX_UINT, 0, sender=b)
            fills += 1
            after = equity()
            assert after <= before - kick.penalty
            assert before - kick.penalty - after <= 2 * fills
        finally:
            chain.restore(sid)

    attack()


# ---------------------------------------------------------------------------- recovery


def test_kicked_account_recovering_keeps_the_rest_of_its_position(
        system, ch, vault, engine, chain, alice, bob, carol, batcher):
    """A long is kicked at 2800; the index then recovers. The account is healthy again, keeps its free
    position (size - auctioned), may reduce or add to it (initial margin on the free part, plus the
    auctioned slice's maintenance, which keeps backing it), may not touch the auctioned slice; the auction
    goes on for the slice only while it is needed: `cancel` is refused (AuctionStillNeeded) until the
    account covers the maintenance of its whole position; once the recovery passes resetDrop, a keeper's
    redo finds the account healthy and cancels the auction unpaid, and the slice is the owner's again."""
    funding_off(system)
    system.fund(alice, 3100)
    trade(ch, alice, ETH, 10 * WAD)
    system.fund(bob, 100_000)
    set_price(system, "ETH", 2800 * 10**8)
    aid, m, _ = kick_checked(system, chain, alice, ETH, carol, caller=carol)
    free = 10 * WAD - m.size
    assert m.restores and free >= MIN_ETH
    with reverts_unchanged(system, batcher, engine.AuctionStillNeeded, [alice]):
        engine.cancel(aid, sender=alice)

    set_price(system, "ETH", 2900 * 10**8)  # +3.6 %: within resetDrop, the auction is still live
    assert not vault.isLiquidatable(alice, 0) and not engine.isExpired(aid)
    assert ch.position(alice, 0, ETH)[0] == 10 * WAD and ch.auctionedSize(alice, 0, ETH) == m.size
    with reverts_unchanged(system, batcher, ch.PositionInAuction, [alice], owner=alice, subaccount=0, marketId=ETH,
                           auctionedSize=m.size):
        trade(ch, alice, ETH, -(free + MIN_ETH))
    trade(ch, alice, ETH, -(free // 2))  # reduce the free part
    trade(ch, alice, ETH, WAD)  # and add to it
    kept = free - free // 2 + WAD
    assert ch.position(alice, 0, ETH)[0] == m.size + kept
    assert not vault.isLiquidatable(alice, 0)
    with reverts_unchanged(system, batcher, engine.NotLiquidatable, [alice], owner=alice, subaccount=0):
        engine.kick(alice, 0, ETH, carol, sender=carol)

    set_price(system, "ETH", 3000 * 10**8)  # +7.1 % since the kick: past resetDrop
    assert engine.isExpired(aid)
    with reverts_unchanged(system, batcher, engine.AuctionExpired, [alice, bob], auctionId=aid):
        engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=bob)
    v, mm = health_of(system, alice)
    index, mmr = 3000 * WAD, ch.marketParams(ETH).mmr
    backing = requirement(m.size, index, max(mmr, engine.auctionParams(ETH).maxDiscount))
    requirement_all = ceil_div((mm + backing) * engine.liquidationParams().targetHealth, WAD)
    assert v >= requirement_all  # recovered: at target health with the slice counted back in
    carol0, alice0 = vault.collateral(carol, 0), vault.collateral(alice, 0)
    rtx = engine.redo(aid, carol, sender=carol)
    ev = one_event(engine, "AuctionCancelled", rtx)
    assert (ev.auctionId, ev.size, ev.accountValue, ev.requirement) == (aid, m.size, v, requirement_all)
    assert not events(engine, "Redo", rtx)
    assert vault.collateral(carol, 0) == carol0 and vault.collateral(alice, 0) == alice0  # nobody paid
    assert engine.auction(aid).size == 0 and engine.liveNotional() == 0
    assert ch.auctionedSize(alice, 0, ETH) == 0 and ch.position(alice, 0, ETH)[0] == m.size + kept
    with reverts_unchanged(system, batcher, engine.AuctionFinished, [alice, bob], auctionId=aid):
        engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=bob)
    ch.closePosition(0, ETH, 0, deadline(), sender=alice)  # the whole position is its own to close
    assert ch.position(alice, 0, ETH)[0] == 0
