"""Every named error the ClearingHouse raises from openPosition / openPositionFor / closePosition / listMarket /
setMarketParams (docs/design.md#accounts-and-margin, docs/design.md#trading,
docs/specification.md#9-safety-and-bad-input, docs/specification.md#10-external-surface; IClearingHouse errors;
OracleLib; Vault's IsolatedSubaccountInUse): the exact error, its arguments (derived independently with the
formulas in helpers.trading), and that a reverted call changed nothing (ledger, reserves, open interest,
positions, bitmaps, market parameters).
"""
from contextlib import contextmanager

import ape
import pytest

from helpers.trading import (
    b32,
    BTC_ID,
    BTC_INDEX,
    ETH_ID,
    ETH_INDEX,
    HEARTBEAT,
    IMR,
    INSURANCE_SHARE,
    MAX_SPREAD,
    MAX_UINT,
    POOL_SEED,
    QUARTER,
    WAD,
    apply_trade,
    btc_amm,
    deadline,
    eth_amm,
    expect_revert,
    fee_of,
    insurance_part,
    notional_up,
    position_changed,
    requirement,
    snapshot,
    trade,
    upnl,
)

MIN_ETH = 10**16  # default ETH minPositionSize (0.01)
MIN_BTC = 10**15  # default BTC minPositionSize (0.001)





# ---------------------------------------------------------------------------- fixtures / helpers


@pytest.fixture(autouse=True)
def _quiet_funding_window(chain):
    """Start each test just after a quarter-window boundary, so every trade of the test falls in one
    funding sample window: the market's price history before the test is flat (spot == index), the
    sampled premium is zero and no funding accrues; expected values need no funding term."""
    chain.pending_timestamp = (chain.pending_timestamp // QUARTER + 1) * QUARTER + 1


def frozen(system, owners, subs=(0,), governance=False):
    """`snapshot` plus each market's full state (TWAP/funding bookkeeping, last update) and, for
    governance calls, the market count, parameters and fee shares."""
    ch = system.clearing_house
    snap = snapshot(system, owners, subs)
    for m in system.markets.values():
        snap[("state", m.id)] = tuple(ch.marketState(m.id))
        if governance:
            snap[("params", m.id)] = tuple(ch.marketParams(m.id))
            snap[("share", m.id)] = ch.insuranceFeeShare(m.id)
    if governance:
        snap["marketCount"] = ch.marketCount()
    return snap


_LAST_FROZEN: dict = {}


@contextmanager
def reverts_unchanged(system, error_cls, owners=(), subs=(0,), governance=False, **inputs):
    """expect_revert(error_cls, **inputs) and the reverted call left every observed value unchanged.
    (Speed: when no block was mined since the previous check of the same accounts, i.e. the chain
    head is the very block that check saw, its "after" picture is reused as this "before".)"""
    key = (tuple(o.address for o in owners), tuple(subs), governance)
    head = ape.chain.blocks.head.hash
    cached = _LAST_FROZEN.get(key)
    before = cached[1] if cached is not None and cached[0] == head else frozen(system, owners, subs, governance)
    with expect_revert(error_cls, **inputs) as info:
        yield info
    after = frozen(system, owners, subs, governance)
    assert after == before
    _LAST_FROZEN[key] = (ape.chain.blocks.head.hash, after)


def params_with(system, symbol="ETH", **changes):
    """MarketParams tuple of a listed market with some fields changed."""
    p = system.clearing_house.marketParams(system.markets[symbol].id)
    d = {
        "oracle": p.oracle,
        "heartbeat": p.heartbeat,
        "twapWindow": p.twapWindow,
        "imr": p.imr,
        "mmr": p.mmr,
        "takerFee": p.takerFee,
        "maxSpread": p.maxSpread,
        "maxOiPoolRatio": p.maxOiPoolRatio,
        "maxOpenInterest": p.maxOpenInterest,
        "minPositionSize": p.minPositionSize,
    }
    d.update(changes)
    return tuple(d.values())


# ---------------------------------------------------------------------------- input errors


def test_unknown_market(system, ch, alice):
    system.fund(alice, 10_000)
    for market_id in (0, 3):
        with reverts_unchanged(system, ch.UnknownMarket, [alice], marketId=market_id):
            trade(ch, alice, market_id, WAD)
    with reverts_unchanged(system, ch.UnknownMarket, [alice], marketId=2**32 - 1):
        ch.openPositionFor(alice, 0, 2**32 - 1, -WAD, 0, deadline(), sender=alice)
    for market_id in (0, 3, 2**32 - 1):
        with expect_revert(ch.UnknownMarket, marketId=market_id):
            ch.quote(market_id, WAD)


def test_zero_size(system, ch, alice):
    system.fund(alice, 10_000)
    with reverts_unchanged(system, ch.ZeroSize, [alice]):
        ch.openPosition(0, ETH_ID, 0, MAX_UINT, deadline(), sender=alice)
    with reverts_unchanged(system, ch.ZeroSize, [alice]):
        ch.openPositionFor(alice, 0, BTC_ID, 0, 0, deadline(), sender=alice)
    with expect_revert(ch.ZeroSize):
        ch.quote(ETH_ID, 0)


def test_deadline_passed_open_and_close(system, ch, chain, alice):
    system.fund(alice, 10_000)
    ts = chain.pending_timestamp
    with reverts_unchanged(system, ch.DeadlinePassed, [alice], deadline=ts - 1, timestamp=ts):
        ch.openPosition(0, ETH_ID, WAD, MAX_UINT, ts - 1, sender=alice)
    # deadline == block timestamp is still in time
    ts = chain.pending_timestamp
    ev = position_changed(ch, ch.openPosition(0, ETH_ID, WAD, MAX_UINT, ts, sender=alice))
    assert ev.newSize == WAD
    ts = chain.pending_timestamp
    with reverts_unchanged(system, ch.DeadlinePassed, [alice], deadline=ts - 5, timestamp=ts):
        ch.closePosition(0, ETH_ID, 0, ts - 5, sender=alice)
    assert ch.position(alice, 0, ETH_ID)[0] == WAD


def test_slippage_buy_side(system, ch, alice):
    system.fund(alice, 10_000)
    q, _ = eth_amm().peek(WAD)
    assert q < 0
    with reverts_unchanged(system, ch.SlippageExceeded, [alice], quote=q, quoteLimit=-q - 1):
        trade(ch, alice, ETH_ID, WAD, limit=-q - 1)
    # exactly the quote paid is within the limit
    ev = position_changed(ch, trade(ch, alice, ETH_ID, WAD, limit=-q))
    assert ev.quoteDelta == q


def test_slippage_sell_side(system, ch, alice):
    system.fund(alice, 10_000)
    q, _ = eth_amm().peek(-WAD)
    assert q > 0
    with reverts_unchanged(system, ch.SlippageExceeded, [alice], quote=q, quoteLimit=q + 1):
        trade(ch, alice, ETH_ID, -WAD, limit=q + 1)
    ev = position_changed(ch, trade(ch, alice, ETH_ID, -WAD, limit=q))
    assert ev.quoteDelta == q


def test_slippage_on_close_long_and_short(system, ch, alice, bob):
    system.fund(alice, 20_000)
    system.fund(bob, 20_000)
    amm = eth_amm()
    amm.trade(2 * WAD)
    trade(ch, alice, ETH_ID, 2 * WAD)
    amm.trade(-3 * WAD)
    trade(ch, bob, ETH_ID, -3 * WAD)
    # closing alice's long is a sell of 2: limit is the least quote received
    q_close_long, _ = amm.peek(-2 * WAD)
    with reverts_unchanged(system, ch.SlippageExceeded, [alice, bob], quote=q_close_long, quoteLimit=q_close_long + 1):
        ch.closePosition(0, ETH_ID, q_close_long + 1, deadline(), sender=alice)
    # closing bob's short is a buy of 3: limit is the most quote paid
    q_close_short, _ = amm.peek(3 * WAD)
    with reverts_unchanged(system, ch.SlippageExceeded, [alice, bob], quote=q_close_short, quoteLimit=-q_close_short - 1):
        ch.closePosition(0, ETH_ID, -q_close_short - 1, deadline(), sender=bob)
    ev = position_changed(ch, ch.closePosition(0, ETH_ID, -q_close_short, deadline(), sender=bob))
    assert (ev.quoteDelta, ev.newSize) == (q_close_short, 0)


# ---------------------------------------------------------------------------- size rules


def test_below_min_position_size_new_position(system, ch, alice):
    system.fund(alice, 10_000)
    with reverts_unchanged(system, ch.BelowMinPositionSize, [alice], marketId=ETH_ID, size=MIN_ETH - 1, minPositionSize=MIN_ETH):
        trade(ch, alice, ETH_ID, MIN_ETH - 1)
    with reverts_unchanged(system, ch.BelowMinPositionSize, [alice], marketId=BTC_ID, size=-(MIN_BTC - 1), minPositionSize=MIN_BTC):
        trade(ch, alice, BTC_ID, -(MIN_BTC - 1))
    # exactly the minimum is allowed
    assert position_changed(ch, trade(ch, alice, ETH_ID, MIN_ETH)).newSize == MIN_ETH
    assert position_changed(ch, trade(ch, alice, BTC_ID, -MIN_BTC)).newSize == -MIN_BTC


def test_below_min_position_size_reduce_and_flip_leaving_dust(system, ch, alice):
    system.fund(alice, 10_000)
    trade(ch, alice, ETH_ID, WAD)
    # reduce leaving 0.01 - 1 wei
    with reverts_unchanged(system, ch.BelowMinPositionSize, [alice], marketId=ETH_ID, size=MIN_ETH - 1, minPositionSize=MIN_ETH):
        trade(ch, alice, ETH_ID, -(WAD - MIN_ETH + 1))
    # flip leaving a 1-wei short
    with reverts_unchanged(system, ch.BelowMinPositionSize, [alice], marketId=ETH_ID, size=-1, minPositionSize=MIN_ETH):
        trade(ch, alice, ETH_ID, -(WAD + 1))
    # reducing to exactly the minimum, and closing to zero, are allowed
    assert position_changed(ch, trade(ch, alice, ETH_ID, -(WAD - MIN_ETH))).newSize == MIN_ETH
    assert position_changed(ch, trade(ch, alice, ETH_ID, -MIN_ETH)).newSize == 0


def test_insufficient_liquidity(system, ch, alice, bob):
    system.fund(alice, 10_000)
    system.fund(bob, 10_000)
    x0 = 10_000 * WAD
    with reverts_unchanged(system, ch.InsufficientLiquidity, [alice], marketId=ETH_ID, baseAmount=x0, baseReserve=x0):
        trade(ch, alice, ETH_ID, x0)
    with expect_revert(ch.InsufficientLiquidity, marketId=ETH_ID, baseAmount=x0, baseReserve=x0):
        ch.quote(ETH_ID, x0)
    # after bob buys 1, the reserve is 9,999: buying all of it is refused with the new reserve
    trade(ch, bob, ETH_ID, WAD)
    x1 = x0 - WAD
    with reverts_unchanged(system, ch.InsufficientLiquidity, [alice, bob], marketId=ETH_ID, baseAmount=x1, baseReserve=x1):
        trade(ch, alice, ETH_ID, x1)
    bx = 500 * WAD + 1
    with expect_revert(ch.InsufficientLiquidity, marketId=BTC_ID, baseAmount=bx, baseReserve=500 * WAD):
        ch.quote(BTC_ID, bx)


# ---------------------------------------------------------------------------- market risk limits


def _band_buy_size(amm, index, max_spread):
    """Smallest whole-ETH buy whose price after is beyond the band (from the formulas)."""
    band = index * max_spread // WAD
    b = 1
    while amm.peek(b * WAD)[1] - index <= band:
        b += 1
    return b * WAD


def test_price_band_exceeded_buy_and_sell(system, ch, alice):
    system.fund(alice, 1_000_000)
    amm = eth_amm()
    band = ETH_INDEX * MAX_SPREAD // WAD
    b = _band_buy_size(amm, ETH_INDEX, MAX_SPREAD)
    _, p_after = amm.peek(b)
    assert p_after - ETH_INDEX > band
    with reverts_unchanged(system, ch.PriceBandExceeded, [alice], marketId=ETH_ID, priceAfter=p_after,
                           indexPrice=ETH_INDEX, maxSpread=MAX_SPREAD):
        trade(ch, alice, ETH_ID, b)
    # one ETH less stays inside the band and executes
    _, p_ok = amm.peek(b - WAD)
    assert p_ok - ETH_INDEX <= band
    assert position_changed(ch, trade(ch, alice, ETH_ID, b - WAD)).priceAfter == p_ok
    # sell side on BTC: find the first whole-BTC sell beyond the band
    bamm = btc_amm()
    bband = BTC_INDEX * MAX_SPREAD // WAD
    s = 1
    while BTC_INDEX - bamm.peek(-s * WAD)[1] <= bband:
        s += 1
    _, p_sell = bamm.peek(-s * WAD)
    with reverts_unchanged(system, ch.PriceBandExceeded, [alice], marketId=BTC_ID, priceAfter=p_sell,
                           indexPrice=BTC_INDEX, maxSpread=MAX_SPREAD):
        trade(ch, alice, BTC_ID, -s * WAD)


def test_price_band_uses_live_index(system, ch, alice):
    """The band is measured against the live oracle index: after the index drops 5 %, a buy that was
    fine at the old index is outside the band."""
    system.fund(alice, 1_000_000)
    amm = eth_amm()
    base = 300 * WAD
    _, p_after = amm.peek(base)
    new_index = 2850 * WAD
    assert p_after - ETH_INDEX <= ETH_INDEX // 10 and p_after - new_index > new_index // 10
    system.set_price("ETH", 2850)
    with reverts_unchanged(system, ch.PriceBandExceeded, [alice], marketId=ETH_ID, priceAfter=p_after,
                           indexPrice=new_index, maxSpread=MAX_SPREAD):
        trade(ch, alice, ETH_ID, base)


def test_open_interest_cap_absolute(system, ch, deployer, alice, bob):
    system.fund(alice, 100_000)
    system.fund(bob, 100_000)
    cap = 5 * WAD
    ch.setMarketParams(ETH_ID, params_with(system, maxOpenInterest=cap), INSURANCE_SHARE, sender=deployer)
    trade(ch, bob, ETH_ID, 3 * WAD)
    with reverts_unchanged(system, ch.OpenInterestCapExceeded, [alice, bob], marketId=ETH_ID, openInterest=6 * WAD, cap=cap):
        trade(ch, alice, ETH_ID, 3 * WAD)
    with reverts_unchanged(system, ch.OpenInterestCapExceeded, [alice, bob], marketId=ETH_ID, openInterest=cap + 1, cap=cap):
        trade(ch, alice, ETH_ID, 2 * WAD + 1)
    # exactly at the cap is allowed
    trade(ch, alice, ETH_ID, 2 * WAD)
    assert ch.marketState(ETH_ID).longOpenInterest == cap
    # the short side has its own cap: 5 short fit, a 6th does not
    trade(ch, alice, ETH_ID, -2 * WAD)  # alice closes her 2 long: long OI 3 (bob's)
    trade(ch, bob, ETH_ID, -8 * WAD)  # bob flips 3 long -> 5 short: long OI 0, short OI 5
    s = ch.marketState(ETH_ID)
    assert (s.longOpenInterest, s.shortOpenInterest) == (0, cap)
    with reverts_unchanged(system, ch.OpenInterestCapExceeded, [alice, bob], marketId=ETH_ID, openInterest=6 * WAD, cap=cap):
        trade(ch, alice, ETH_ID, -WAD)  # alice (flat) opens a short of 1: short OI would be 6


def test_open_interest_cap_only_on_the_side_it_increases(system, ch, deployer, alice, bob):
    system.fund(alice, 100_000)
    system.fund(bob, 100_000)
    trade(ch, alice, ETH_ID, 4 * WAD)
    # governance lowers the cap below the live long OI
    ch.setMarketParams(ETH_ID, params_with(system, maxOpenInterest=2 * WAD), INSURANCE_SHARE, sender=deployer)
    with reverts_unchanged(system, ch.OpenInterestCapExceeded, [alice, bob], marketId=ETH_ID, openInterest=4 * WAD + MIN_ETH, cap=2 * WAD):
        trade(ch, bob, ETH_ID, MIN_ETH)
    # reducing the over-cap side and trading the other side are fine
    trade(ch, alice, ETH_ID, -WAD)
    trade(ch, bob, ETH_ID, -2 * WAD)
    s = ch.marketState(ETH_ID)
    assert (s.longOpenInterest, s.shortOpenInterest) == (3 * WAD, 2 * WAD)


def test_open_interest_cap_pool_ratio(system, ch, vault, usdc, deployer, alice):
    system.fund(alice, 100_000)
    ratio = 10**15  # 0.1 % of the pool's balance, per side, in notional
    ch.setMarketParams(ETH_ID, params_with(system, maxOiPoolRatio=ratio), INSURANCE_SHARE, sender=deployer)
    base = 4 * WAD
    q, _ = eth_amm().peek(base)
    fee = fee_of(q)
    # the cap is read after the trade's own settlement (pool += fee - insurance part)
    pool_after = POOL_SEED + fee - insurance_part(fee)
    notional_cap = pool_after * ratio // WAD
    assert notional_up(base, ETH_INDEX) > notional_cap
    with reverts_unchanged(system, ch.OpenInterestCapExceeded, [alice], marketId=ETH_ID, openInterest=base,
                           cap=notional_cap * WAD // ETH_INDEX):
        trade(ch, alice, ETH_ID, base)
    # the pool is shared capital: a deposit into it raises the cap and the same trade passes
    units = system.units(5_000_000)
    usdc.mint(deployer, units, sender=deployer)
    usdc.approve(vault, units, sender=deployer)
    vault.fundPool(units, sender=deployer)
    assert position_changed(ch, trade(ch, alice, ETH_ID, base)).newSize == base


# ---------------------------------------------------------------------------- margin


def test_insufficient_margin_single_market(system, ch, alice):
    system.fund(alice, 100)
    amm = eth_amm()
    q, _ = amm.peek(WAD)
    fee = fee_of(q)
    coll = 100 * WAD - fee
    u = upnl(WAD, -q, ETH_INDEX)
    free = min(coll, coll + u) - requirement(WAD, ETH_INDEX, IMR)
    assert free < 0
    with reverts_unchanged(system, ch.InsufficientMargin, [alice], owner=alice, subaccount=0, freeCollateral=free):
        trade(ch, alice, ETH_ID, WAD)


def test_insufficient_margin_boundary_to_the_wei(system, ch, vault, alice):
    """Isolated sub-account 9 gets exactly the collateral the trade needs (transferMargin is in WAD):
    free collateral after the trade is 0 and it passes; one wei less fails with free = -1."""
    system.fund(alice, 10_000)
    base = 3 * WAD + 12345
    q, _ = eth_amm().peek(base)
    fee = fee_of(q)
    need = fee - upnl(base, -q, ETH_INDEX) + requirement(base, ETH_INDEX, IMR)
    vault.transferMargin(0, 9, need - 1, sender=alice)
    with reverts_unchanged(system, ch.InsufficientMargin, [alice], subs=(0, 9), owner=alice, subaccount=9, freeCollateral=-1):
        trade(ch, alice, ETH_ID, base, sub=9)
    vault.transferMargin(0, 9, 1, sender=alice)
    trade(ch, alice, ETH_ID, base, sub=9)
    assert vault.freeCollateral(alice, 9) == 0
    assert vault.collateral(alice, 9) == need - fee


def test_insufficient_margin_across_two_markets_cross_account(system, ch, vault, alice, bob):
    """The BTC trade alone fits 700 of collateral (bob does it), but alice's ETH position already uses
    part of her cross-margin: the check sums both markets' unrealized PnL and initial requirements."""
    system.fund(alice, 700)
    system.fund(bob, 700)
    eamm, bamm = eth_amm(), btc_amm()
    qe = eamm.trade(WAD)
    trade(ch, alice, ETH_ID, WAD)
    fee_e = fee_of(qe)
    btc_base = WAD // 10
    qb, _ = bamm.peek(btc_base)
    fee_b = fee_of(qb)
    coll = 700 * WAD - fee_e - fee_b
    u = upnl(WAD, -qe, ETH_INDEX) + upnl(btc_base, -qb, BTC_INDEX)
    initial = requirement(WAD, ETH_INDEX, IMR) + requirement(btc_base, BTC_INDEX, IMR)
    free = min(coll, coll + u) - initial
    assert free < 0
    # BTC alone would fit
    assert 700 * WAD - fee_b + upnl(btc_base, -qb, BTC_INDEX) - requirement(btc_base, BTC_INDEX, IMR) >= 0
    with reverts_unchanged(system, ch.InsufficientMargin, [alice, bob], owner=alice, subaccount=0, freeCollateral=free):
        trade(ch, alice, BTC_ID, btc_base)
    assert position_changed(ch, trade(ch, bob, BTC_ID, btc_base)).newSize == btc_base


def test_insufficient_margin_unrealized_profit_does_not_back_new_risk(system, ch, vault, alice):
    """docs/design.md#accounts-and-margin: free collateral = min(collateral - funding, accountValue) - initial.
    With the index up, alice's unrealized profit would cover a bigger position, but it is not counted."""
    system.fund(alice, 1_000)
    amm = eth_amm()
    q1 = amm.trade(2 * WAD)
    trade(ch, alice, ETH_ID, 2 * WAD)
    fee1 = fee_of(q1)
    system.set_price("ETH", 3300)
    index = 3300 * WAD
    base = 2 * WAD
    q2, _ = amm.peek(base)
    fee2 = fee_of(q2)
    coll = 1_000 * WAD - fee1 - fee2
    size, on = 4 * WAD, -q1 - q2
    u = upnl(size, on, index)
    initial = requirement(size, index, IMR)
    assert u > 0 and coll + u - initial >= 0  # accountValue alone would allow it
    free = min(coll, coll + u) - initial
    assert free == coll - initial < 0
    with reverts_unchanged(system, ch.InsufficientMargin, [alice], owner=alice, subaccount=0, freeCollateral=free):
        trade(ch, alice, ETH_ID, base)


def test_no_position_on_close(system, ch, alice):
    system.fund(alice, 10_000)
    with reverts_unchanged(system, ch.NoPosition, [alice], owner=alice, subaccount=0, marketId=ETH_ID):
        ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)
    trade(ch, alice, ETH_ID, WAD)
    # a position in sub-account 0 is not one in sub-account 1, nor in BTC
    with reverts_unchanged(system, ch.NoPosition, [alice], subs=(0, 1), owner=alice, subaccount=1, marketId=ETH_ID):
        ch.closePosition(1, ETH_ID, 0, deadline(), sender=alice)
    with reverts_unchanged(system, ch.NoPosition, [alice], owner=alice, subaccount=0, marketId=BTC_ID):
        ch.closePosition(0, BTC_ID, MAX_UINT, deadline(), sender=alice)
    ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)
    with reverts_unchanged(system, ch.NoPosition, [alice], owner=alice, subaccount=0, marketId=ETH_ID):
        ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)


def test_isolated_subaccount_in_use(system, ch, vault, alice, bob):
    system.fund(alice, 10_000, subaccount=5)
    trade(ch, alice, ETH_ID, WAD, sub=5)
    with reverts_unchanged(system, vault.IsolatedSubaccountInUse, [alice], subs=(5,), owner=alice, subaccount=5,
                           heldMarketId=ETH_ID, marketId=BTC_ID):
        trade(ch, alice, BTC_ID, -WAD // 100, sub=5)
    # through an operator as well
    vault.setOperator(bob, True, sender=alice)
    with reverts_unchanged(system, vault.IsolatedSubaccountInUse, [alice], subs=(5,), owner=alice, subaccount=5,
                           heldMarketId=ETH_ID, marketId=BTC_ID):
        ch.openPositionFor(alice, 5, BTC_ID, WAD // 100, MAX_UINT, deadline(), sender=bob)
    # BTC-first sub-account: the held market reported is BTC
    system.fund(alice, 10_000, subaccount=6)
    trade(ch, alice, BTC_ID, WAD // 100, sub=6)
    with reverts_unchanged(system, vault.IsolatedSubaccountInUse, [alice], subs=(5, 6), owner=alice, subaccount=6,
                           heldMarketId=BTC_ID, marketId=ETH_ID):
        trade(ch, alice, ETH_ID, WAD, sub=6)


# ---------------------------------------------------------------------------- access and pause


def test_list_market_and_set_params_only_owner(system, ch, alice, eth):
    params = params_with(system)
    with reverts_unchanged(system, ch.OwnableUnauthorizedAccount, [alice], governance=True, account=alice):
        ch.listMarket(b32("SOL"), params, INSURANCE_SHARE, 1_000 * WAD, sender=alice)
    with reverts_unchanged(system, ch.OwnableUnauthorizedAccount, [alice], governance=True, account=alice):
        ch.setMarketParams(ETH_ID, params_with(system, takerFee=0), 0, sender=alice)


def test_not_owner_or_operator(system, ch, vault, alice, bob):
    system.fund(alice, 10_000)
    system.fund(bob, 10_000)
    with reverts_unchanged(system, ch.NotOwnerOrOperator, [alice, bob], caller=bob, owner=alice):
        ch.openPositionFor(alice, 0, ETH_ID, WAD, MAX_UINT, deadline(), sender=bob)
    # the owner itself may use openPositionFor
    ev = position_changed(ch, ch.openPositionFor(alice, 0, ETH_ID, WAD, MAX_UINT, deadline(), sender=alice))
    assert ev.owner == alice.address and ev.newSize == WAD
    # an approved operator trades for alice: the position, the fee and the event are alice's
    vault.setOperator(bob, True, sender=alice)
    bob_coll = vault.collateral(bob, 0)
    ev = position_changed(ch, ch.openPositionFor(alice, 0, ETH_ID, -WAD // 2, 0, deadline(), sender=bob))
    assert ev.owner == alice.address and ev.newSize == WAD // 2
    assert ch.position(alice, 0, ETH_ID)[0] == WAD // 2 and ch.position(bob, 0, ETH_ID)[0] == 0
    assert vault.collateral(bob, 0) == bob_coll
    # approval for alice does not let alice act for bob, and revocation works
    with reverts_unchanged(system, ch.NotOwnerOrOperator, [alice, bob], caller=alice, owner=bob):
        ch.openPositionFor(bob, 0, ETH_ID, WAD, MAX_UINT, deadline(), sender=alice)
    vault.setOperator(bob, False, sender=alice)
    with reverts_unchanged(system, ch.NotOwnerOrOperator, [alice, bob], caller=bob, owner=alice):
        ch.openPositionFor(alice, 0, ETH_ID, WAD, MAX_UINT, deadline(), sender=bob)


def test_paused_blocks_all_trading(system, ch, vault, deployer, alice):
    system.fund(alice, 10_000)
    trade(ch, alice, ETH_ID, 2 * WAD)
    vault.setPauseLevel(2, sender=deployer)
    # level 2: no trading at all, not even reducing
    with reverts_unchanged(system, ch.Paused, [alice], level=2):
        trade(ch, alice, BTC_ID, WAD // 100)
    with reverts_unchanged(system, ch.Paused, [alice], level=2):
        trade(ch, alice, ETH_ID, WAD)
    with reverts_unchanged(system, ch.Paused, [alice], level=2):
        trade(ch, alice, ETH_ID, -WAD)
    with reverts_unchanged(system, ch.Paused, [alice], level=2):
        ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)
    # level 3 (withdrawals only) blocks trading too
    vault.setPauseLevel(3, sender=deployer)
    with reverts_unchanged(system, ch.Paused, [alice], level=3):
        trade(ch, alice, ETH_ID, WAD)
    with reverts_unchanged(system, ch.Paused, [alice], level=3):
        ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)
    vault.setPauseLevel(0, sender=deployer)
    assert position_changed(ch, ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)).newSize == 0


def test_paused_level_1_is_reduce_only(system, ch, vault, deployer, alice, bob):
    system.fund(alice, 10_000)
    system.fund(bob, 10_000)
    amm = eth_amm()
    q1 = amm.trade(3 * WAD)
    trade(ch, alice, ETH_ID, 3 * WAD)
    amm.trade(-2 * WAD)
    trade(ch, bob, ETH_ID, -2 * WAD)
    vault.setPauseLevel(1, sender=deployer)
    # new position, increase, and flip (which opens new risk on the other side) are blocked
    with reverts_unchanged(system, ch.Paused, [alice, bob], level=1):
        trade(ch, alice, BTC_ID, WAD // 100)
    with reverts_unchanged(system, ch.Paused, [alice, bob], level=1):
        trade(ch, alice, ETH_ID, WAD)
    with reverts_unchanged(system, ch.Paused, [alice, bob], level=1):
        trade(ch, bob, ETH_ID, -WAD)
    with reverts_unchanged(system, ch.Paused, [alice, bob], level=1):
        trade(ch, alice, ETH_ID, -4 * WAD)
    # reduce passes, with the usual accounting
    q_red = amm.trade(-WAD)
    exp = apply_trade(3 * WAD, -q1, -WAD, q_red)
    ev = position_changed(ch, trade(ch, alice, ETH_ID, -WAD))
    assert (ev.newSize, ev.newOpenNotional, ev.realizedPnl, ev.quoteDelta) == (exp[0], exp[1], exp[2], q_red)
    # closes pass (a short close is a buy, still reducing)
    assert position_changed(ch, ch.closePosition(0, ETH_ID, MAX_UINT, deadline(), sender=bob)).newSize == 0
    assert position_changed(ch, ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)).newSize == 0
    assert vault.openMarkets(alice, 0) == 0 and vault.openMarkets(bob, 0) == 0


# ---------------------------------------------------------------------------- oracle


def test_stale_oracle_blocks_trading_and_closing(system, ch, chain, eth, alice):
    system.fund(alice, 10_000)
    trade(ch, alice, ETH_ID, WAD)
    ts = chain.pending_timestamp + 1  # the oracle update takes one block, the trade runs at ts
    stale_at = ts - HEARTBEAT - 1
    eth.oracle.updateRoundData(7, 3000 * 10**8, stale_at, 0, sender=alice)
    assert chain.pending_timestamp == ts
    with reverts_unchanged(system, ch.StaleOracle, [alice], feed=eth.oracle, updatedAt=stale_at, heartbeat=HEARTBEAT):
        trade(ch, alice, ETH_ID, WAD)
    # docs/design.md#accounts-and-margin: reducing/closing is allowed only while the oracle is valid
    with reverts_unchanged(system, ch.StaleOracle, [alice], feed=eth.oracle, updatedAt=stale_at, heartbeat=HEARTBEAT):
        ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)
    # an answer exactly `heartbeat` old is still fresh
    ts = chain.pending_timestamp + 1
    eth.oracle.updateRoundData(8, 3000 * 10**8, ts - HEARTBEAT, 0, sender=alice)
    assert chain.pending_timestamp == ts
    assert position_changed(ch, ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)).newSize == 0


def test_governance_replaces_a_stale_feed_without_reading_it(system, ch, chain, eth, alice, deployer, project):
    """A dead feed must not lock its own replacement: setMarketParams accrues at the last recorded
    index instead of reading the old feed; the next trade prices off the new one."""
    system.fund(alice, 10_000)
    ts = chain.pending_timestamp + 1
    eth.oracle.updateRoundData(9, 3000 * 10**8, ts - HEARTBEAT - 1, 0, sender=alice)  # old feed now stale
    assert chain.pending_timestamp == ts
    with ape.reverts(ch.StaleOracle):
        trade(ch, alice, ETH_ID, WAD)
    fresh = project.MockAggregator.deploy(8, 3100 * 10**8, "ETH / USD (new)", sender=deployer)
    params = list(ch.marketParams(ETH_ID))
    params[0] = fresh.address
    ch.setMarketParams(ETH_ID, tuple(params), ch.insuranceFeeShare(ETH_ID), sender=deployer)
    assert ch.marketParams(ETH_ID).oracle == fresh.address
    assert ch.indexPrice(ETH_ID) == 3100 * WAD
    assert position_changed(ch, trade(ch, alice, ETH_ID, WAD)).newSize == WAD


def test_stale_oracle_by_time_passing(system, ch, chain, btc, alice):
    system.fund(alice, 10_000)
    updated = btc.oracle.latestTimestamp()
    chain.pending_timestamp = updated + HEARTBEAT + 1
    with reverts_unchanged(system, ch.StaleOracle, [alice], feed=btc.oracle, updatedAt=updated, heartbeat=HEARTBEAT):
        trade(ch, alice, BTC_ID, WAD // 100)


def test_stale_oracle_of_another_held_market_blocks_new_risk(system, ch, chain, btc, alice):
    """A cross account's margin check values every market it holds: a stale BTC feed blocks an ETH
    increase (the BTC leg cannot be valued)."""
    system.fund(alice, 10_000)
    trade(ch, alice, BTC_ID, WAD // 100)
    ts = chain.pending_timestamp + 1
    btc.oracle.updateRoundData(9, 60_000 * 10**8, ts - HEARTBEAT - 1, 0, sender=alice)
    with reverts_unchanged(system, ch.StaleOracle, [alice], feed=btc.oracle, updatedAt=ts - HEARTBEAT - 1, heartbeat=HEARTBEAT):
        trade(ch, alice, ETH_ID, WAD)


def test_invalid_oracle_price(system, ch, eth, alice):
    system.fund(alice, 10_000)
    trade(ch, alice, ETH_ID, WAD)
    for answer in (0, -3000 * 10**8):
        eth.oracle.updateAnswer(answer, sender=alice)
        with reverts_unchanged(system, ch.InvalidOraclePrice, [alice], feed=eth.oracle, answer=answer):
            trade(ch, alice, ETH_ID, -WAD // 2)
        with expect_revert(ch.InvalidOraclePrice, feed=eth.oracle, answer=answer):
            ch.indexPrice(ETH_ID)
    eth.oracle.updateAnswer(-1, sender=alice)
    with reverts_unchanged(system, ch.InvalidOraclePrice, [alice], feed=eth.oracle, answer=-1):
        ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)
    # a valid answer again: closing works
    eth.oracle.updateAnswer(3000 * 10**8, sender=alice)
    assert position_changed(ch, ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)).newSize == 0


# ---------------------------------------------------------------------------- governance bounds

# (field, out-of-bounds value, reported name); bounds from ClearingHouse's constants.
MARKET_PARAM_CASES = [
    ("heartbeat", 59, "heartbeat"),
    ("heartbeat", 2 * 86_400 + 1, "heartbeat"),
    ("twapWindow", 59, "twapWindow"),
    ("twapWindow", 4 * 3600 + 1, "twapWindow"),
    ("mmr", 5 * 10**15 - 1, "mmr"),
    ("mmr", 5 * 10**17 + 1, "mmr"),
    ("imr", 5 * 10**16, "imr"),  # must exceed mmr (0.05)
    ("imr", 10**18 + 1, "imr"),
    ("takerFee", 10**16 + 1, "takerFee"),
    ("maxSpread", 5 * 10**15 - 1, "maxSpread"),
    ("maxSpread", 5 * 10**17 + 1, "maxSpread"),
    ("maxOiPoolRatio", 0, "maxOiPoolRatio"),
    ("maxOiPoolRatio", 10 * 10**18 + 1, "maxOiPoolRatio"),
    ("maxOpenInterest", 0, "maxOpenInterest"),
    # every position fits an auction's int96 slice: the cap stops at int96.max
    ("maxOpenInterest", 2**95, "maxOpenInterest"),
    ("minPositionSize", 0, "minPositionSize"),
    ("minPositionSize", 10_000 * WAD + 1, "minPositionSize"),  # no larger than maxOpenInterest (ETH: 10,000)
]


def test_list_market_parameter_out_of_bounds(system, ch, deployer):
    before = frozen(system, [], governance=True)
    for field, value, name in MARKET_PARAM_CASES:
        params = params_with(system, **{field: value})
        with expect_revert(ch.ParameterOutOfBounds, name=b32(name), value=value):
            ch.listMarket(b32("SOL"), params, INSURANCE_SHARE, 1_000 * WAD, sender=deployer)
    with expect_revert(ch.ParameterOutOfBounds, name=b32("insuranceFeeShare"), value=WAD + 1):
        ch.listMarket(b32("SOL"), params_with(system), WAD + 1, 1_000 * WAD, sender=deployer)
    assert frozen(system, [], governance=True) == before


def test_set_market_params_out_of_bounds(system, ch, deployer):
    before = frozen(system, [], governance=True)
    for field, value, name in MARKET_PARAM_CASES:
        params = params_with(system, **{field: value})
        with expect_revert(ch.ParameterOutOfBounds, name=b32(name), value=value):
            ch.setMarketParams(ETH_ID, params, INSURANCE_SHARE, sender=deployer)
    with expect_revert(ch.ParameterOutOfBounds, name=b32("insuranceFeeShare"), value=WAD + 1):
        ch.setMarketParams(BTC_ID, params_with(system, "BTC"), WAD + 1, sender=deployer)
    assert frozen(system, [], governance=True) == before


def test_list_market_reserve_bounds(system, ch, deployer, project):
    params = params_with(system)
    feed = project.MockAggregator.deploy(8, 100_000_001, "X / USD", sender=deployer)  # $1.00000001
    p2 = params_with(system, oracle=feed.address)
    with reverts_unchanged(system, ch.ParameterOutOfBounds, governance=True, name=b32("baseReserve"), value=WAD - 1):
        ch.listMarket(b32("SOL"), params, INSURANCE_SHARE, WAD - 1, sender=deployer)
    with reverts_unchanged(system, ch.ParameterOutOfBounds, governance=True, name=b32("baseReserve"), value=10**36 + 1):
        ch.listMarket(b32("SOL"), params, INSURANCE_SHARE, 10**36 + 1, sender=deployer)
    # quote reserve = base reserve x index must stay <= 1e36: at $3000, 1e33 base is 3e36 quote
    with reverts_unchanged(system, ch.ParameterOutOfBounds, governance=True, name=b32("quoteReserve"), value=10**33 * 3000):
        ch.listMarket(b32("SOL"), params, INSURANCE_SHARE, 10**33, sender=deployer)
    # at $1.00000001, 1e36 base -> quote 1e36 + 1e28 (too much); at $1 exactly 1e36 is fine
    with reverts_unchanged(system, ch.ParameterOutOfBounds, governance=True, name=b32("quoteReserve"), value=10**36 + 10**28):
        ch.listMarket(b32("X"), p2, INSURANCE_SHARE, 10**36, sender=deployer)
    feed.updateAnswer(10**8, sender=deployer)
    tx = ch.listMarket(b32("X"), p2, INSURANCE_SHARE, 10**36, sender=deployer)
    listed = tx.events.filter(ch.MarketListed)[0]
    assert (listed.marketId, listed.baseReserve, listed.quoteReserve) == (3, 10**36, 10**36)


def test_bounds_are_inclusive(system, ch, deployer, project):
    """Every bound value itself is accepted (low ends in one listing, high ends in another)."""
    feed = project.MockAggregator.deploy(8, 10**8, "ONE / USD", sender=deployer)
    lo = (feed.address, 60, 60, 5 * 10**15 + 1, 5 * 10**15, 0, 5 * 10**15, 1, 1, 1)
    hi = (feed.address, 2 * 86_400, 4 * 3600, 10**18, 5 * 10**17, 10**16, 5 * 10**17, 10 * 10**18, 2**95 - 1, 2**95 - 1)
    ch.listMarket(b32("LO"), lo, 0, WAD, sender=deployer)
    ch.listMarket(b32("HI"), hi, WAD, 10**36, sender=deployer)
    assert tuple(ch.marketParams(3)) == lo and tuple(ch.marketParams(4)) == hi
    assert ch.insuranceFeeShare(3) == 0 and ch.insuranceFeeShare(4) == WAD
    assert ch.marketCount() == 4


def test_zero_oracle_and_unsupported_decimals(system, ch, deployer, project):
    zero = "0x" + "00" * 20
    feed = project.MockAggregator.deploy(19, 10**19, "BAD / USD", sender=deployer)
    with reverts_unchanged(system, ch.ZeroAddress, governance=True):
        ch.listMarket(b32("SOL"), params_with(system, oracle=zero), INSURANCE_SHARE, 1_000 * WAD, sender=deployer)
    with reverts_unchanged(system, ch.ZeroAddress, governance=True):
        ch.setMarketParams(ETH_ID, params_with(system, oracle=zero), INSURANCE_SHARE, sender=deployer)
    with reverts_unchanged(system, ch.UnsupportedOracleDecimals, governance=True, feed=feed, decimals=19):
        ch.listMarket(b32("BAD"), params_with(system, oracle=feed.address), INSURANCE_SHARE, 1_000 * WAD, sender=deployer)


def test_set_market_params_unknown_market(system, ch, deployer):
    with reverts_unchanged(system, ch.UnknownMarket, governance=True, marketId=3):
        ch.setMarketParams(3, params_with(system), INSURANCE_SHARE, sender=deployer)
    with reverts_unchanged(system, ch.UnknownMarket, governance=True, marketId=0):
        ch.setMarketParams(0, params_with(system), INSURANCE_SHARE, sender=deployer)
