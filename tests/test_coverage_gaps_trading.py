"""Trading, liquidation and AMM-controller paths that no other test module reaches.

Each test states the rule it checks (from the NatSpec of IClearingHouse, ILiquidationEngine and
IAmmController, or the comment next to the code) and computes the expected values here, in Python
integers, from the chain's inputs (reserves, index, parameters, collateral): trade quotes with the
vAMM formulas of trading_helpers, slices and auction prices with the models of test_liquidation.

Funding is switched off (maxFundingRate 0) in every market used, so health and PnL have no time term.
"""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from test_liquidation import (  # noqa: F401 - batcher is a fixture (module-scoped, autouse) used here too
    MIN_ETH,
    ORACLE_UNIT,
    _push_vamm_to,
    auction_price,
    batcher,
    deposit,
    discount_exponential_float,
    discount_of,
    fill_quotes,
    health_of,
    kick_checked,
    lp_tuple,
    lparams,
    model_slice,
    mul_up,
    one_event,
    open_long,
    requirement,
    reverts_unchanged,
    set_price,
)
from trading_helpers import (
    funding_off,
    BTC_ID,
    ETH_ID,
    MAX_UINT,
    WAD,
    Amm,
    apply_trade,
    ceil_div,
    deadline,
    exit_value,
    expect_revert,
    trade,
)
from vperp.config import wad

ETH, BTC = ETH_ID, BTC_ID


# ---------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module", autouse=True)
def _prepare(system, deployer, accounts, ch, vault, engine, pool):
    """Funding off in ETH and BTC; collateral minted and approved once for accounts[1..7]. (Requests the
    session fixtures the tests use, so they exist before this module's state is snapshotted.)"""
    usdc = system.collateral
    for m in system.markets.values():
        funding_off(system, m.id)
    for a in list(accounts)[1:8]:
        usdc.mint(a, 10**9 * 10**6, sender=a)
        usdc.approve(vault, MAX_UINT, sender=a)


@pytest.fixture(scope="module")
def arb(accounts):
    return accounts[6]


@pytest.fixture(scope="module")
def fay(accounts):
    return accounts[7]




def take_at(engine, chain, when: int, aid: int, amount: int, taker, limit: int):
    """take at timestamp `when` (the auction price depends on the time since the kick)."""
    chain.pending_timestamp = when
    return engine.take(aid, amount, limit, 0, sender=taker)


# ---------------------------------------------------------------------------- auction takers that already hold the market


def two_sided_auctions(system, chain, alice, bob, carol, dave, erin, arb):
    """ETH auctions on both sides at index 2800 (no funding, so exact):

    at index 3000 alice and bob go long 10 ETH on thin margin (3100, 3200), dave and erin long 10 ETH on 4500;
    the index falls to 2600 and an arbitrageur sells the vAMM down to it; carol shorts 10 ETH there on 2700;
    the index recovers to 2800: alice, bob (longs) and carol (short) are liquidatable and kicked, while dave
    and erin are above maintenance but below initial margin. Returns the kicks {owner: (id, model, tx)}."""
    ch = system.clearing_house
    open_long(system, alice, margin=3100)
    open_long(system, bob, margin=3200)  # bob buys after alice, a little higher up the vAMM
    for who in (dave, erin):
        open_long(system, who, margin=4500)
    set_price(system, "ETH", 2600 * 10**8)
    deposit(system, arb, 1_000_000)
    _push_vamm_to(system, arb, 2600 * WAD)
    deposit(system, carol, 2700)
    trade(ch, carol, ETH, -10 * WAD)
    set_price(system, "ETH", 2800 * 10**8)
    kicks = {}
    for who in (alice, bob, carol):
        kicks[who.address] = kick_checked(system, chain, who, ETH, arb, caller=arb)
    return kicks


def free_collateral(coll: int, size: int, on: int, index: int, imr: int) -> int:
    """IVault.freeCollateral of a one-market account with no funding: min(coll, coll + uPnL) - initial."""
    return min(coll, coll + size * index // WAD - on) - requirement(size, index, imr)


def test_taker_with_its_own_auction_may_not_cut_into_it(system, ch, vault, engine, chain, alice, bob, carol, dave,
                                                        erin, arb, batcher):
    """Reached by no other test: the TAKER of an auction holds a position in that market which is itself
    partly in auction (ClearingHouseSettlement._auctionSettle, taker side, auctioned != 0). A fill that would leave
    the taker's position smaller than its auctioned part reverts PositionInAuction(taker, sub, market,
    auctionedSize) and changes nothing; a fill that stops exactly at the auctioned part, and a fill that
    grows the position on the auctioned side, settle at the auction price (sizes and bases to the wei)."""
    kicks = two_sided_auctions(system, chain, alice, bob, carol, dave, erin, arb)
    a_id, a_m, a_tx = kicks[alice.address]
    b_id, b_m, _ = kicks[bob.address]
    c_id, c_m, c_tx = kicks[carol.address]
    assert a_m.size > 0 and b_m.size > 0 and c_m.size < 0  # long, long, short slices
    index = 2800 * WAD
    ap = engine.auctionParams(ETH)
    deposit(system, bob, 100_000)  # bob's own auction stays, but bob can now afford to take
    auctioned_b = b_m.size
    free_b = 10 * WAD - auctioned_b
    assert free_b >= MIN_ETH and ch.auctionedSize(bob, 0, ETH) == auctioned_b

    # carol's short slice: the taker sells, i.e. a long taker reduces. One MIN_ETH past the free part is refused.
    amount = free_b + MIN_ETH
    assert -c_m.size - amount >= MIN_ETH  # the engine's own rules (no dust left in the auction) pass
    chain.pending_timestamp = c_tx.timestamp + 300
    with reverts_unchanged(system, batcher, ch.PositionInAuction, [alice, bob, carol],
                           owner=bob, subaccount=0, marketId=ETH, auctionedSize=auctioned_b):
        engine.take(c_id, amount, 0, 0, sender=bob)

    # Exactly the free part: the taker's position ends equal to its auctioned part.
    dt = 400
    p = auction_price(-1, index, discount_of(ap, dt))
    size0, on0, _ = ch.position(bob, 0, ETH)
    csize0, con0, _ = ch.position(carol, 0, ETH)
    coll_b0, coll_c0 = vault.collateral(bob, 0), vault.collateral(carol, 0)
    tx = take_at(engine, chain, c_tx.timestamp + dt, c_id, free_b, bob, limit=p)
    ev = one_event(engine, "Take", tx)
    assert (ev.taker, ev.amount, ev.price, ev.remaining) == (bob.address, free_b, p, c_m.size + free_b)
    owner_q, taker_q = fill_quotes(-1, free_b, p)
    ns, non, realized_b = apply_trade(size0, on0, -free_b, taker_q)
    assert ns == auctioned_b
    assert ch.position(bob, 0, ETH)[:2] == (ns, non)
    assert vault.collateral(bob, 0) == coll_b0 + realized_b
    assert ch.auctionedSize(bob, 0, ETH) == auctioned_b  # the taker's own auction is untouched
    cs, con, realized_c = apply_trade(csize0, con0, free_b, owner_q)
    assert ch.position(carol, 0, ETH)[:2] == (cs, con)
    assert vault.collateral(carol, 0) == coll_c0 + realized_c

    # alice's long slice grows bob's long on the auctioned side: allowed, and bob's auction is untouched.
    k = 2 * WAD
    dt = 500
    p = auction_price(1, index, discount_of(ap, dt))
    size0, on0, _ = ch.position(bob, 0, ETH)
    tx = take_at(engine, chain, a_tx.timestamp + dt, a_id, k, bob, limit=p)
    assert one_event(engine, "Take", tx).price == p
    _, taker_q = fill_quotes(1, k, p)
    ns, non, realized = apply_trade(size0, on0, k, taker_q)
    assert realized == 0 and ns == auctioned_b + k
    assert ch.position(bob, 0, ETH)[:2] == (ns, non)
    assert ch.auctionedSize(bob, 0, ETH) == auctioned_b
    assert engine.auction(b_id).size == auctioned_b

    # The short side of the same rule: carol's whole short is in auction, so buying any of alice's long
    # slice (which would shrink her short below its auctioned part) is refused.
    assert ch.position(carol, 0, ETH)[0] == ch.auctionedSize(carol, 0, ETH) == c_m.size + free_b
    deposit(system, carol, 100_000)
    chain.pending_timestamp = a_tx.timestamp + 600
    with reverts_unchanged(system, batcher, ch.PositionInAuction, [alice, bob, carol],
                           owner=carol, subaccount=0, marketId=ETH, auctionedSize=c_m.size + free_b):
        engine.take(a_id, MIN_ETH, MAX_UINT, 0, sender=carol)


def test_reducing_take_skips_the_takers_initial_margin_check(system, ch, vault, engine, chain, alice, bob, carol,
                                                             dave, erin, arb, batcher):
    """Reached by no other test: settleAuctionFill checks the taker's initial margin only when the fill does
    not reduce the taker's position (`if (!reducing) _checkInitialMargin`). dave and erin hold the same
    10 ETH long with the same collateral, above maintenance but below initial margin. dave takes 1 ETH of a
    SHORT slice (he sells: his long shrinks) and it settles although his free collateral stays negative;
    erin takes 1 ETH of a LONG slice (her long grows) and gets InsufficientMargin with her free collateral
    after the fill, and nothing changes."""
    kicks = two_sided_auctions(system, chain, alice, bob, carol, dave, erin, arb)
    a_id, _, a_tx = kicks[alice.address]
    c_id, _, c_tx = kicks[carol.address]
    index = 2800 * WAD
    imr = ch.marketParams(ETH).imr
    ap = engine.auctionParams(ETH)
    for who in (dave, erin):
        coll = vault.collateral(who, 0)
        size, on, _ = ch.position(who, 0, ETH)
        assert size == 10 * WAD
        assert free_collateral(coll, size, on, index, imr) < 0 and not vault.isLiquidatable(who, 0)
        assert vault.freeCollateral(who, 0) == free_collateral(coll, size, on, index, imr)

    # dave: reducing fill of 1 ETH at the short slice's price.
    amount = WAD
    dt = 300
    p = auction_price(-1, index, discount_of(ap, dt))
    size0, on0, _ = ch.position(dave, 0, ETH)
    coll0 = vault.collateral(dave, 0)
    tx = take_at(engine, chain, c_tx.timestamp + dt, c_id, amount, dave, limit=p)
    assert one_event(engine, "Take", tx).price == p
    _, taker_q = fill_quotes(-1, amount, p)
    ns, non, realized = apply_trade(size0, on0, -amount, taker_q)
    assert ns == 9 * WAD
    assert ch.position(dave, 0, ETH)[:2] == (ns, non)
    assert vault.collateral(dave, 0) == coll0 + realized
    free_after = free_collateral(coll0 + realized, ns, non, index, imr)
    assert free_after < 0, "the margin check, had it run, would have refused this fill"
    assert vault.freeCollateral(dave, 0) == free_after

    # erin: the same amount, but growing her long.
    dt = 400
    chain.pending_timestamp = a_tx.timestamp + dt
    p = auction_price(1, index, discount_of(ap, dt))
    size0, on0, _ = ch.position(erin, 0, ETH)
    coll0 = vault.collateral(erin, 0)
    _, taker_q = fill_quotes(1, amount, p)
    ns, non, _ = apply_trade(size0, on0, amount, taker_q)
    want = free_collateral(coll0, ns, non, index, imr)
    with reverts_unchanged(system, batcher, ch.InsufficientMargin, [alice, erin],
                           owner=erin, subaccount=0, freeCollateral=want):
        engine.take(a_id, amount, p, 0, sender=erin)
    assert ch.position(erin, 0, ETH)[:2] == (size0, on0)


def test_taker_fill_may_not_leave_its_own_free_part_dust(
        system, ch, vault, engine, chain, alice, bob, carol, dave, erin, arb, batcher):
    """Rule (ClearingHouse._trade and, for a taker, _auctionSettle): while part of a position is in auction,
    the free part must be zero or at least minPositionSize, or the auction's last fill, which leaves only
    the free part, could never settle. bob's ETH long is partly in auction; taking from carol's short slice
    just enough to leave himself 0.005 ETH free is refused (BelowMinPositionSize(ETH, 0.005 ETH, 0.01 ETH),
    nothing moves), exactly as the same cut by a trade is. Taking his whole free part is allowed, and then
    his own auction can still be taken in full.
    (Before the fix the taker side skipped the rule: the fill went through and bob's own auction could
    never finish, neither by a full take nor by the backstop.)"""
    kicks = two_sided_auctions(system, chain, alice, bob, carol, dave, erin, arb)
    b_id, b_m, b_tx = kicks[bob.address]
    c_id, _, c_tx = kicks[carol.address]
    deposit(system, dave, 100_000)
    auctioned_b = b_m.size
    free_b = 10 * WAD - auctioned_b
    dust = MIN_ETH // 2
    with reverts_unchanged(system, batcher, ch.BelowMinPositionSize, [bob], marketId=ETH, size=dust,
                           minPositionSize=MIN_ETH):
        trade(ch, bob, ETH, -(free_b - dust))
    chain.pending_timestamp = c_tx.timestamp + 300
    with reverts_unchanged(system, batcher, ch.BelowMinPositionSize, [bob, carol], marketId=ETH, size=dust,
                           minPositionSize=MIN_ETH):
        engine.take(c_id, free_b - dust, 0, 0, sender=bob)
    take_at(engine, chain, c_tx.timestamp + 301, c_id, free_b, bob, limit=0)  # bob sells his whole free part
    assert ch.position(bob, 0, ETH)[0] == auctioned_b and ch.auctionedSize(bob, 0, ETH) == auctioned_b
    take_at(engine, chain, b_tx.timestamp + 600, b_id, MAX_UINT, dave, limit=MAX_UINT)
    assert engine.auction(b_id).size == 0
    assert ch.position(bob, 0, ETH)[0] == 0 and ch.auctionedSize(bob, 0, ETH) == 0


# ---------------------------------------------------------------------------- extra markets

ZERO = "0x0000000000000000000000000000000000000000"
# LiquidationEngine.defaultAuctionParams NatSpec: "exponential, 30 min to a 2 % discount, redo after a 5 %
# index move" (step 60 s is unused by the exponential curve). Struct order: curve, duration, step, maxDiscount,
# resetDrop.
DEFAULT_AUCTION = (1, 1800, 60, 2 * 10**16, 5 * 10**16)


def list_market(system, project, price, oracle=None, base_reserve=None, **changes):
    """List a market shaped like ETH's config (`changes` override fields) at `price` (human units) with its
    own mock feed unless `oracle` is given; no auction or AMM parameters are set. Returns (id, oracle, cfg, tx)."""
    ch, deployer = system.clearing_house, system.deployer
    n = ch.marketCount() + 1
    mc = replace(system.config.markets[0], symbol=f"M{n}", price=price, **changes)
    if oracle is None:
        oracle = project.MockAggregator.deploy(mc.oracle_decimals, int(Decimal(str(price)) * 10**mc.oracle_decimals),
                                               f"M{n} / USD", sender=deployer)
    x = wad(mc.base_reserve) if base_reserve is None else base_reserve
    tx = ch.listMarket(mc.symbol.encode().ljust(32, b"\0"), mc.to_params(oracle.address),
                       wad(mc.insurance_fee_share), x, sender=deployer)
    mid = one_event(ch, "MarketListed", tx).marketId
    assert mid == n
    return mid, oracle, mc, tx


def listed_amm(ch, mid: int, x: int, index: int) -> Amm:
    """A freshly listed vAMM: `baseReserve` x and quote floor(x * index) (listMarket NatSpec: starts at the
    oracle's price); checked against the chain."""
    amm = Amm(x, x * index // WAD)
    st = ch.marketState(mid)
    assert (st.baseReserve, st.quoteReserve) == (amm.x, amm.y)
    return amm


def expected_margin(coll: int, held: dict) -> dict:
    """The margin formulas (docs/design.md#accounts-and-margin) over the held markets, no funding: held = {id:
    (size, openNotional, index, imr, mmr)}."""
    upnl = sum(size * index // WAD - on for size, on, index, _, _ in held.values())
    initial = sum(requirement(size, index, imr) for size, _, index, imr, _ in held.values())
    maint = sum(requirement(size, index, mmr) for size, _, index, _, mmr in held.values())
    return {"upnl": upnl, "initial": initial, "maint": maint, "value": coll + upnl,
            "free": min(coll, coll + upnl) - initial,
            "bitmap": sum(1 << (mid - 1) for mid in held),
            "exposure": sum(ceil_div(abs(size) * index, WAD) for size, _, index, _, _ in held.values())}


def check_cross_margin_views(system, who, coll: int, held: dict):
    """Every view that walks the account's market bitmap equals the per-market sum computed here; so does
    the ClearingHouse's marginSummary over a part of the bitmap, and (the account being the only trader)
    tradersPnl's loop over every listed market."""
    ch, vault = system.clearing_house, system.vault
    e = expected_margin(coll, held)
    assert vault.collateral(who, 0) == coll
    assert vault.openMarkets(who, 0) == e["bitmap"]
    assert tuple(ch.marginSummary(who, 0, e["bitmap"])) == (e["upnl"], 0, e["initial"], e["maint"], 0, 0)
    assert tuple(vault.health(who, 0)) == (e["value"], e["free"], e["initial"], e["maint"])
    assert vault.accountValue(who, 0) == e["value"]
    assert vault.freeCollateral(who, 0) == e["free"]
    assert tuple(vault.marginRequirements(who, 0)) == (e["initial"], e["maint"])
    assert vault.isLiquidatable(who, 0) == (e["value"] < e["maint"])
    assert tuple(ch.tradersPnl()) == (e["upnl"], e["exposure"])
    top = sorted(held)[-2:]  # the two highest ids alone
    part = expected_margin(coll, {mid: held[mid] for mid in top})
    assert tuple(ch.marginSummary(who, 0, part["bitmap"])) == (part["upnl"], 0, part["initial"], part["maint"], 0, 0)


def open_and_check_then_close(system, chain, who, positions: dict, amms: dict, params: dict, oracles: dict,
                              new_answers: dict):
    """Open `positions` ({id: base}) for `who` (one trade each, quotes from the vAMM formulas), move the feeds
    to `new_answers` ({oracle: 8-decimal answer}), check the cross-margin views, close every position and
    check that the bitmap and the margin views clear, with the collateral moved by exactly the realized
    PnL and fees."""
    ch, vault = system.clearing_house, system.vault
    coll = vault.collateral(who, 0)
    held = {}
    for mid, base in positions.items():
        q = amms[mid].trade(base)
        tx = trade(ch, who, mid, base)
        ev = one_event(ch, "PositionChanged", tx)
        fee = ceil_div(abs(q) * params[mid]["takerFee"], WAD)
        assert (ev.quoteDelta, ev.fee, ev.newSize, ev.newOpenNotional) == (q, fee, base, -q)
        coll -= fee
        held[mid] = [base, -q]
    for oracle, answer in new_answers.items():
        oracle.updateAnswer(answer, sender=system.deployer)
    full = {mid: (size, on, oracles[mid].latestAnswer() * ORACLE_UNIT, params[mid]["imr"], params[mid]["mmr"])
            for mid, (size, on) in held.items()}
    check_cross_margin_views(system, who, coll, full)
    bitmap = vault.openMarkets(who, 0)
    for mid, (size, on) in held.items():
        q = amms[mid].trade(-size)
        _, _, realized = apply_trade(size, on, -size, q)
        coll += realized - ceil_div(abs(q) * params[mid]["takerFee"], WAD)
        ch.closePosition(0, mid, 0 if size > 0 else MAX_UINT, deadline(), sender=who)
        assert ch.position(who, 0, mid)[:2] == (0, 0)
    assert vault.openMarkets(who, 0) == 0
    assert vault.collateral(who, 0) == coll
    assert tuple(vault.health(who, 0)) == (coll, coll, 0, 0)
    assert tuple(ch.marginSummary(who, 0, bitmap)) == (0, 0, 0, 0, 0, 0)
    assert tuple(ch.tradersPnl()) == (0, 0)


def market_params_of(ch, mid: int) -> dict:
    p = ch.marketParams(mid)
    return {"imr": p.imr, "mmr": p.mmr, "takerFee": p.takerFee}


def test_cross_margin_views_over_high_market_ids(system, ch, vault, project, chain, alice):
    """Reached by no other test: accounts holding markets above id 2 (ClearingHouse._bitToMarket past its
    first branches). Markets 3..12 are listed, each with its own feed, price and margin ratios; alice holds
    ETH (1) and markets 3, 5, 9 and 12, long and short. marginSummary, the Vault's health views and
    tradersPnl equal the per-market sums; closing every position clears the bitmap and the views."""
    oracles = {ETH: system.markets["ETH"].oracle}
    amms = {ETH: Amm(ch.marketState(ETH).baseReserve, ch.marketState(ETH).quoteReserve)}
    for k in range(3, 13):
        mmr = Decimal("0.03") + Decimal(k) / 500
        mid, oracle, mc, _ = list_market(system, project, 50 * k + 13, mmr=mmr, imr=2 * mmr)
        assert mid == k
        oracles[mid] = oracle
        amms[mid] = listed_amm(ch, mid, 10_000 * WAD, (50 * k + 13) * WAD)
    positions = {ETH: 2 * WAD, 3: -30 * WAD, 5: 40 * WAD, 9: -7 * WAD, 12: 5 * WAD}
    for mid in positions:
        if mid != ETH:
            funding_off(system, mid)
    params = {mid: market_params_of(ch, mid) for mid in positions}
    assert len({p["mmr"] for p in params.values()}) == len(params)  # a wrong market id would show
    deposit(system, alice, 100_000)
    # Every feed moves differently (up and down), so each market's PnL differs from its neighbours'.
    moves = {ETH: 3100 * 10**8, 3: 150 * 10**8, 5: 280 * 10**8, 9: 500 * 10**8, 12: 560 * 10**8}
    open_and_check_then_close(system, chain, alice, positions, amms, params, oracles,
                              {oracles[mid]: answer for mid, answer in moves.items()})


def test_listing_stops_at_max_markets_and_the_top_ids_still_margin(system, ch, vault, project, chain, deployer,
                                                                   alice, batcher):
    """Reached by no other test: listMarket past MAX_MARKETS (128, one bit per market in the Vault's bitmap)
    reverts TooManyMarkets(128) and lists nothing; an account holding markets 17, 33, 65 and 128 (the upper
    branches of _bitToMarket: bits at or above 2^16, 2^32 and 2^64, and the very last bit) is margined on the
    per-market sums, and closing clears the bitmap."""
    assert ch.MAX_MARKETS() == 128
    oracle = system.markets["ETH"].oracle  # one feed for all new markets (3000)
    base = system.config.markets[0]
    for k in range(3, 129):
        mmr = Decimal("0.01") + Decimal(k) / 1000
        mc = replace(base, mmr=mmr, imr=2 * mmr)
        ch.listMarket(f"M{k}".encode().ljust(32, b"\0"), mc.to_params(oracle.address), wad(mc.insurance_fee_share),
                      wad(mc.base_reserve), sender=deployer)
    assert ch.marketCount() == 128
    mc = replace(base, symbol="M129")
    before = (ch.marketCount(), ch.symbolOf(129))
    with reverts_unchanged(system, batcher, ch.TooManyMarkets, maxMarkets=128):
        ch.listMarket(b"M129".ljust(32, b"\0"), mc.to_params(oracle.address), wad(mc.insurance_fee_share),
                      wad(mc.base_reserve), sender=deployer)
    assert (ch.marketCount(), ch.symbolOf(129)) == before == (128, b"\0" * 32)

    positions = {ETH: WAD, 17: -2 * WAD, 33: 3 * WAD, 65: -4 * WAD, 128: 5 * WAD}
    amms = {ETH: Amm(ch.marketState(ETH).baseReserve, ch.marketState(ETH).quoteReserve)}
    for mid in positions:
        if mid != ETH:
            funding_off(system, mid)
            amms[mid] = listed_amm(ch, mid, 10_000 * WAD, 3000 * WAD)
    params = {mid: market_params_of(ch, mid) for mid in positions}
    assert len({p["mmr"] for p in params.values()}) == len(params)
    deposit(system, alice, 100_000)
    open_and_check_then_close(system, chain, alice, positions, amms, params, {mid: oracle for mid in positions},
                              {oracle: 2950 * 10**8})


def test_twaps_in_the_listing_block_are_the_spot_and_the_index(system, ch, project, chain, deployer):
    """Reached by no other test: in the block a market is listed every TWAP observation is at `now`, so the
    TWAP span is zero and the views return the current vAMM price and the last index price instead of
    dividing by zero (_twapsFrom, span == 0); the funding window's is padded to a day at premium 0
    (_fundingTwaps). The reserves are chosen so that the spot price (quote / base,
    rounded down) is not the index, which tells the two apart. The feed is made exactly `heartbeat` old at
    the listing block, so indexPrice answering proves the views ran in that block (it is stale one block on)."""
    answer = 3000_12345678  # 3000.12345678 (8 decimals)
    index = answer * ORACLE_UNIT
    x = 7 * WAD + 1
    spot = (x * index // WAD) * WAD // x  # listMarket: quote = floor(x * index); spot = floor(quote / x)
    assert spot == index - 1
    oracle = project.MockAggregator.deploy(8, answer, "T / USD", sender=deployer)
    heartbeat = 60
    when = chain.pending_timestamp + 5
    oracle.updateRoundData(2, answer, when - heartbeat, when - heartbeat, sender=deployer)
    chain.pending_timestamp = when
    mid, _, _, tx = list_market(system, project, "3000.12345678", oracle=oracle, base_reserve=x, heartbeat=heartbeat)
    assert tx.timestamp == when and chain.blocks.head.timestamp == when
    assert ch.indexPrice(mid) == index  # the views see block.timestamp == when
    assert ch.spotPrice(mid) == spot
    assert tuple(ch.twaps(mid)) == (spot, index)
    assert ch.markPrice(mid) == spot
    # The funding window has no span yet either: padded to the whole day at premium 0 (mark and index at the last
    # index), not this block's spot, so no trade in the listing block can set the first funding sample.
    fs = ch.fundingState(mid)
    assert (fs.markTwap, fs.indexTwap, fs.premium, fs.targetRate) == (index, index, 0, 0)
    chain.mine()
    with expect_revert(ch.StaleOracle, feed=oracle.address, updatedAt=when - heartbeat, heartbeat=heartbeat):
        ch.indexPrice(mid)


# ---------------------------------------------------------------------------- liquidation engine


def test_market_without_auction_params_runs_auctions_on_the_defaults(system, ch, vault, engine, project, chain,
                                                                    deployer, alice, bob, carol, batcher):
    """Reached by no other test: a market listed without setAuctionParams reads defaultAuctionParams()
    (auctionParams NatSpec: "the defaults until governance sets its own": exponential, 30 min to 2 %, redo
    after a 5 % move), even when another market has its own; an auction in it is priced on that curve (index x
    (1 - 0.02 (1 - e^(-4t/1800)) / (1 - e^-4)), rounded up, for a long slice), takeable at t = 1800 and expired
    at 1801."""
    mid, oracle, _, _ = list_market(system, project, 2000)
    funding_off(system, mid)
    engine.setAuctionParams(ETH, (1, 600, 60, 5 * 10**16, 10**17), sender=deployer)
    assert tuple(engine.auctionParams(ETH)) == (1, 600, 60, 5 * 10**16, 10**17)
    assert tuple(engine.defaultAuctionParams()) == DEFAULT_AUCTION
    assert tuple(engine.auctionParams(mid)) == DEFAULT_AUCTION
    _, duration, _, max_d, _ = DEFAULT_AUCTION
    for t in (0, 1, 300, 450, 1799, 1800, 5000):
        assert engine.discountAt(mid, t) == discount_of(engine.auctionParams(mid), t)
        assert abs(engine.discountAt(mid, t) - discount_exponential_float(max_d, duration, t)) <= 10**4, t
    # Front-loaded: half the discount (0.991 %) after 5 minutes, 1.5 % after 10, against 0.33 % and 0.67 % linear.
    assert engine.discountAt(mid, 300) == 9_913_224_662_489_205 and engine.discountAt(mid, 600) == 15_002_843_909_027_252
    # the bundled keeper's 1 % is reached at 304 s (900 s on the linear curve): docs/liquidation.md
    assert engine.discountAt(mid, 303) < 10**16 <= engine.discountAt(mid, 304)

    deposit(system, alice, 2100)
    trade(ch, alice, mid, 10 * WAD)
    oracle.updateAnswer(1870 * 10**8, sender=deployer)
    index = 1870 * WAD
    assert vault.isLiquidatable(alice, 0)
    aid, m, ktx = kick_checked(system, chain, alice, mid, carol, caller=carol, markets=(mid,))
    assert m.size > 0
    deposit(system, bob, 100_000)
    p = auction_price(1, index, discount_of(engine.auctionParams(mid), 900))
    assert p == ceil_div(index * (WAD - engine.discountAt(mid, 900)), WAD)  # half-way: 1.76 %, not 1 %
    assert 1_761 * 10**13 < engine.discountAt(mid, 900) < 1_762 * 10**13
    tx = take_at(engine, chain, ktx.timestamp + 900, aid, MIN_ETH, bob, limit=p)
    assert one_event(engine, "Take", tx).price == p
    assert ch.position(bob, 0, mid)[0] == MIN_ETH
    chain.pending_timestamp = ktx.timestamp + duration
    tx = engine.take(aid, MIN_ETH, MAX_UINT, 0, sender=bob)
    assert one_event(engine, "Take", tx).price == ceil_div(index * (WAD - max_d), WAD)
    assert chain.pending_timestamp == ktx.timestamp + duration + 1
    with reverts_unchanged(system, batcher, engine.AuctionExpired, [alice, bob], auctionId=aid):
        engine.take(aid, MIN_ETH, MAX_UINT, 0, sender=bob)


def rule_best(models: dict) -> int:
    """bestMarketToKick's rule (its comment): prefer a slice that restores target health, among those the
    smallest notional; otherwise the largest position. Ties keep the lower id (the scan's order)."""
    restoring = [mid for mid in sorted(models) if models[mid].restores]
    if restoring:
        return min(restoring, key=lambda mid: models[mid].notional)
    return max(sorted(models), key=lambda mid: models[mid].notional)


def slice_inputs(system, who, markets=(ETH, BTC)) -> dict:
    """What the slice model needs from the chain (read once): collateral, positions, indices, parameters."""
    ch, vault, engine = system.clearing_house, system.vault, system.liquidation
    rows = {}
    for mid in markets:
        size, on, _ = ch.position(who, 0, mid)
        rows[mid] = (size, on, ch.indexPrice(mid), ch.marketParams(mid), engine.auctionParams(mid).maxDiscount)
    return {"coll": vault.collateral(who, 0), "lp": lparams(engine), "rows": rows}


def slices_at(inputs: dict, eth_index: int):
    """(value, maintenance, {id: slice model}) if the ETH index were `eth_index`
    (docs/design.md#accounts-and-margin, no funding)."""
    rows = {mid: (size, on, eth_index if mid == ETH else idx, mp, max_d)
            for mid, (size, on, idx, mp, max_d) in inputs["rows"].items()}
    value = inputs["coll"] + sum(size * idx // WAD - on for size, on, idx, _, _ in rows.values())
    maint = sum(requirement(size, idx, mp.mmr) for size, _, idx, mp, _ in rows.values())
    models = {mid: model_slice(value, maint, size, idx, mp.mmr, mp.minPositionSize, inputs["lp"], max_d)
              for mid, (size, _, idx, mp, max_d) in rows.items()}
    return value, maint, models


@pytest.mark.parametrize("case", ["none-restores-earlier-larger", "both-restore-later-larger",
                                  "earlier-restores-later-does-not"])
def test_best_market_to_kick_keeps_the_earlier_market_when_the_later_is_not_better(
        system, ch, vault, engine, chain, deployer, alice, carol, case):
    """Reached by no other test: bestMarketToKick's comparisons where the later market (BTC, id 2) does NOT
    beat the earlier one (ETH, id 1): no slice restores and ETH is the larger position; both restore and
    BTC's slice is the larger (its auctions allow a deeper discount, so it needs more notional); ETH
    restores and BTC cannot. The expectation follows the rule, from slices modelled here."""
    if case == "none-restores-earlier-larger":
        margin, btc_size = 4400, WAD // 5
    elif case == "both-restore-later-larger":
        engine.setAuctionParams(BTC, (0, 1800, 60, 25 * 10**15, 5 * 10**16), sender=deployer)
        margin, btc_size = 6400, WAD // 2
    else:
        margin, btc_size = 3200, WAD // 100
    deposit(system, alice, margin)
    trade(ch, alice, ETH, 10 * WAD)
    trade(ch, alice, BTC, btc_size)

    def wanted(value, maint, models):
        e, b = models[ETH], models[BTC]
        if case == "none-restores-earlier-larger":
            return not e.restores and not b.restores and e.notional > b.notional
        if case == "both-restore-later-larger":
            return e.restores and b.restores and b.notional > e.notional
        return e.restores and not b.restores

    inputs = slice_inputs(system, alice)
    for dollars in range(2900, 2000, -1):  # the first liquidatable ETH price (walking down) that fits the case
        value, maint, models = slices_at(inputs, dollars * WAD)
        if value < maint and wanted(value, maint, models):
            break
    else:
        raise AssertionError("no ETH price fits the case")
    set_price(system, "ETH", dollars * 10**8)
    assert health_of(system, alice) == (value, maint)
    for mid in (ETH, BTC):
        m = models[mid]
        assert tuple(engine.kickPreview(alice, 0, mid)) == (m.size, m.notional, m.reward, m.penalty)
    assert rule_best(models) == ETH
    assert engine.bestMarketToKick(alice, 0) == ETH
    kick_checked(system, chain, alice, ETH, carol, caller=carol)


def test_kick_slice_below_min_position_size_is_floored_to_it(system, ch, vault, engine, chain, deployer, alice,
                                                             carol):
    """Reached by no other test: when the restoring slice the formula gives is smaller than the market's
    minPositionSize, the kick auctions exactly minPositionSize (_slice: "rounded up ... to at least the
    minimum position size"). ETH's minimum is raised to 4.5 ETH; a 10 ETH long just past maintenance needs
    about 4 ETH; the slice is 4.5 ETH and restores target health."""
    min_size = 45 * 10**17
    p = ch.marketParams(ETH)
    ch.setMarketParams(ETH, (p.oracle, p.heartbeat, p.twapWindow, p.imr, p.mmr, p.takerFee, p.maxSpread,
                             p.maxOiPoolRatio, p.maxOpenInterest, min_size), ch.insuranceFeeShare(ETH),
                       sender=deployer)
    open_long(system, alice)
    coll = vault.collateral(alice, 0)
    size, on, _ = ch.position(alice, 0, ETH)
    mmr = ch.marketParams(ETH).mmr
    for cents in range(285_000, 250_000, -1):  # the highest liquidatable price, to the cent
        index = cents * 10**16
        if coll + size * index // WAD - on < requirement(size, index, mmr):
            break
    set_price(system, "ETH", cents * 10**6)
    value, maint, models = slices_at(slice_inputs(system, alice, markets=(ETH,)), index)
    m = models[ETH]
    assert 0 < m.raw_base < min_size and m.restores
    aid, km, _ = kick_checked(system, chain, alice, ETH, carol, caller=carol, markets=(ETH,))
    assert km.size == min_size == engine.auction(aid).size == ch.auctionedSize(alice, 0, ETH)
    v1, m1 = health_of(system, alice, markets=(ETH,))
    assert v1 * WAD >= lparams(engine).targetHealth * m1


# ---------------------------------------------------------------------------- AMM controller


def test_amm_controller_constructor_rejects_zero_addresses(system, project, deployer):
    """Reached by no other test: the AmmController constructor reverts ZeroAddress() for a zero clearing
    house or a zero pool; the deployed system keeps its controller."""
    for ch_addr, pool_addr in ((ZERO, system.pool.address), (system.clearing_house.address, ZERO)):
        with expect_revert(system.amm.ZeroAddress):
            project.AmmController.deploy(ch_addr, pool_addr, deployer, sender=deployer)
    assert system.clearing_house.ammController() == system.amm.address


def long_450(system, alice):
    """alice buys 450 ETH at the listing price (about 9.6 % up the vAMM, inside the 10 % band).
    Returns (size, openNotional) from the vAMM formulas."""
    ch = system.clearing_house
    st = ch.marketState(ETH)
    amm = Amm(st.baseReserve, st.quoteReserve)
    deposit(system, alice, 300_000)
    q = amm.trade(450 * WAD)
    trade(ch, alice, ETH, 450 * WAD)
    assert ch.position(alice, 0, ETH)[:2] == (450 * WAD, -q)
    return 450 * WAD, -q


def let_twaps_see(system, chain, who):
    """Record the index move and let a full hour (four TWAP windows) pass at it (as test_amm_controller)."""
    ch = system.clearing_house
    ch.pokeFunding(ETH, sender=who)
    chain.pending_timestamp += 3600
    ch.pokeFunding(ETH, sender=who)
    chain.pending_timestamp += 10
    chain.mine()


def test_amm_controller_with_pool_value_not_positive(system, ch, vault, pool, engine, chain, deployer, alice, bob, carol,
                                                     batcher):
    """Reached by no other test: when the pool's NAV is not positive, syncDepth reverts
    PoolValueNotPositive(nav) and changes nothing, and a repeg has no cost budget (budget = max(NAV, 0) x
    maxRepegCost = 0 with open interest): it moves neither reserve and costs nothing.
    NAV goes negative the one way it can: a position whose loss dwarfs its collateral and the pool's cash
    is kicked, and the bad debt its auction will leave beyond the insurance fund is set aside at once."""
    amm = system.amm
    engine.setLiquidationParams(lp_tuple(lparams(engine), maxAuctionNotional=10**8 * WAD), sender=deployer)
    deposit(system, alice, 300_000)
    trade(ch, alice, ETH, -450 * WAD)  # a 450 ETH short
    size, on, _ = ch.position(alice, 0, ETH)
    set_price(system, "ETH", 30_000 * 10**8)
    index = 30_000 * WAD
    aid, m, _ = kick_checked(system, chain, alice, ETH, carol, caller=carol)
    assert m.size == size and m.reward == m.penalty == 0
    value = vault.collateral(alice, 0) + size * index // WAD - on
    shortfall = -(value - mul_up(mul_up(-size, index), engine.auctionParams(ETH).maxDiscount))
    assert vault.shortfallOf(alice, 0) == shortfall == vault.pendingBadDebt()
    st = ch.marketState(ETH)
    nav = vault.poolBalance() - (exit_value(st.baseReserve, st.quoteReserve, size) - on) - (shortfall - vault.insuranceFund())
    assert nav < 0 and pool.navWad() == nav
    with reverts_unchanged(system, batcher, amm.PoolValueNotPositive, [alice], nav=nav):
        amm.syncDepth(ETH, sender=bob)

    let_twaps_see(system, chain, bob)
    assert pool.navWad() < 0
    st = ch.marketState(ETH)
    p0, x = st.spotPrice, st.baseReserve
    y1 = st.quoteReserve  # move = min(gap, maxMove, byCost = 0) = 0: the reserves stay as they are
    tx = amm.repeg(ETH, sender=bob)
    ev = one_event(amm, "Repeg", tx)
    assert (ev.priceBefore, ev.priceAfter, ev.indexPrice, ev.cost) == (p0, p0, index, 0)
    assert (ch.marketState(ETH).baseReserve, ch.marketState(ETH).quoteReserve) == (x, y1)


def test_repeg_up_is_bounded_by_the_cost_budget(system, ch, vault, pool, chain, alice, bob):
    """Reached by no other test: a repeg UP (index above the peg, x y / (x + net)^2) where the cost budget binds:
    the peg moves by min(index - P, P x maxRepegStep, floor(floor(NAV x maxRepegCost) x / (x + n)) 1e18 / n),
    the cost term (a peg move dP moves the quote reserve by dP (x + n)^2 / x and the net long's exit value by
    dP n (x + n) / x); the quote reserve grows by floor(floor(move (x + n) / x) (x + n) / 1e18), x kept. The new
    price, reserves, cost (that exit-value change, exactly: the change of netExitValue, within the budget to a
    wei), the pool's NAV (down by the cost) and the running repegCost follow."""
    amm = system.amm
    size, on = long_450(system, alice)
    set_price(system, "ETH", 3500 * 10**8)
    index = 3500 * WAD
    let_twaps_see(system, chain, bob)
    prm = amm.ammParams(ETH)
    st = ch.marketState(ETH)
    p0, x, y = st.spotPrice, st.baseReserve, st.quoteReserve
    nav = vault.poolBalance() - (exit_value(x, y, size) - on)  # NAV: cash - exit PnL
    assert pool.navWad() == nav > 0
    net = st.longOpenInterest - st.shortOpenInterest
    assert net == size
    z = x + net
    peg0 = (x * y // z) * WAD // z
    assert amm.pegPrice(ETH) == peg0 < p0  # the long's premium puts the mark above the peg
    max_move = peg0 * prm.maxRepegStep // WAD
    budget = nav * prm.maxRepegCost // WAD
    by_cost = budget * x // z * WAD // net
    assert index > peg0 and by_cost < max_move < index - peg0  # the budget is what binds
    y1 = y + (by_cost * z // x) * z // WAD
    p1 = y1 * WAD // x
    cost = exit_value(x, y1, net) - exit_value(x, y, net)
    exit0 = amm.netExitValue(ETH)
    t = chain.blocks.head.timestamp + 1
    chain.pending_timestamp = t
    tx = amm.repeg(ETH, sender=bob)
    assert tx.timestamp == t
    ev = one_event(amm, "Repeg", tx)
    assert (ev.priceBefore, ev.priceAfter, ev.indexPrice, ev.cost) == (p0, p1, index, cost)
    assert budget * 99 // 100 < cost <= budget + 1  # net long and the peg up: a cost to the pool, within budget
    assert cost == amm.netExitValue(ETH) - exit0 and pool.navWad() == nav - cost
    assert (ch.marketState(ETH).baseReserve, ch.marketState(ETH).quoteReserve) == (x, y1)
    assert 0 <= peg0 + by_cost - amm.pegPrice(ETH) <= 2  # the peg up by the cost bound, not past it (rounding down)
    assert amm.repegCost(ETH) == cost and amm.lastRepeg(ETH) == t


def test_depth_and_repeg_need_amm_params(system, ch, project, chain, bob):
    """Reached by no other test: a listed market without setAmmParams has no depth rule: syncDepth and repeg
    revert DepthNotConfigured(marketId) and leave its reserves, repeg time and cost untouched."""
    amm = system.amm
    mid, _, _, _ = list_market(system, project, 1500)
    assert tuple(amm.ammParams(mid)) == (0,) * 8
    before = (tuple(ch.marketState(mid))[:5], amm.lastRepeg(mid), amm.repegCost(mid))
    for call in (amm.syncDepth, amm.repeg):
        with expect_revert(amm.DepthNotConfigured, marketId=mid):
            call(mid, sender=bob)
        assert (tuple(ch.marketState(mid))[:5], amm.lastRepeg(mid), amm.repegCost(mid)) == before


def test_repeg_without_open_interest_moves_by_the_step_at_no_cost(system, ch, chain, bob):
    """With no open interest (net 0) the peg is the spot and no cost bounds a repeg: the price moves by
    min(index - p0, p0 x maxRepegStep) and the repeg costs the pool nothing."""
    amm = system.amm
    st = ch.marketState(ETH)
    assert st.longOpenInterest == st.shortOpenInterest == 0
    set_price(system, "ETH", 3300 * 10**8)  # 10 % above the listing price
    index = 3300 * WAD
    let_twaps_see(system, chain, bob)
    prm = amm.ammParams(ETH)
    st = ch.marketState(ETH)
    p0, x = st.spotPrice, st.baseReserve
    assert amm.pegPrice(ETH) == p0  # no net position: the peg is the spot
    step = p0 * prm.maxRepegStep // WAD
    assert index - p0 > step  # the step binds
    y1 = st.quoteReserve + x * step // WAD  # from the reserve, not the truncated spot
    p1 = y1 * WAD // x
    tx = amm.repeg(ETH, sender=bob)
    ev = one_event(amm, "Repeg", tx)
    assert (ev.priceBefore, ev.priceAfter, ev.indexPrice, ev.cost) == (p0, p1, index, 0)
    assert (ch.marketState(ETH).baseReserve, ch.marketState(ETH).quoteReserve) == (x, y1)
    assert amm.repegCost(ETH) == 0 and amm.lastRepeg(ETH) == tx.timestamp


def test_taker_may_not_end_with_a_position_below_the_minimum(system, ch, vault, engine, chain, alice, bob, carol,
                                                              dave, erin, arb, fay, batcher):
    """A fill leaves the taker's position zero or at least minPositionSize, like any trade: a taker short
    0.015 ETH that takes 0.01 ETH of a long auction would end short 0.005 ETH, and the take reverts
    BelowMinPositionSize(ETH, -0.005 ETH, 0.01 ETH) with nothing moved."""
    kicks = two_sided_auctions(system, chain, alice, bob, carol, dave, erin, arb)
    a_id, a_m, a_tx = kicks[alice.address]
    assert a_m.size >= 2 * MIN_ETH  # a minimum fill leaves no dust in the auction
    taker = fay
    deposit(system, taker, 10_000)
    short = -(3 * MIN_ETH // 2)
    trade(ch, taker, ETH, short)
    assert ch.position(taker, 0, ETH)[0] == short
    chain.pending_timestamp = a_tx.timestamp + 300
    with reverts_unchanged(system, batcher, ch.BelowMinPositionSize, [taker, alice], marketId=ETH,
                           size=short + MIN_ETH, minPositionSize=MIN_ETH):
        engine.take(a_id, MIN_ETH, MAX_UINT, 0, sender=taker)
