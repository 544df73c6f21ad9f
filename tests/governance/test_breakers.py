"""CircuitBreaker (issue 17, item 2): deterministic breakers, applied through the RiskGovernor.

Each breaker is probed at its threshold and one unit of the measured quantity beyond it, where the quantity
can be set directly: the index move by one oracle unit (1e-8 USD), the insurance cover by one wei of open
interest and one token unit of the fund, the auction share by one wei of maxAuctionNotional, the skew by
one wei of open interest; the reduce-only cool-off and the divergence duration to the second. While each
breaker holds, growth is refused (OpenInterestCapExceeded) and everything else stays open: reducing,
closing, a keeper's kick and take, withdrawing free collateral. A governance change during a restriction
changes the configured parameters, the effective ones stay tightened, and lifting restores the new ones.

Expected figures are recomputed from the definitions in ICircuitBreaker (and, for the pool's NAV, from
the vAMM formulas in tests/helpers/trading.py), never read back from the breaker. Funding is off and the
taker fee zero in this module, so the insurance fund and the pool's cash move only when a test moves them.
"""
from __future__ import annotations

import ape
import pytest

from helpers.governance import admin, deposit, g, guardian, keeper  # noqa: F401 - shared module fixtures (g: autouse)
from helpers.governance import (
    AUCTIONS,
    DIVERGENCE,
    INSURANCE,
    MOVE,
    NO_CAP,
    SKEW,
    bp_tuple,
    encode,
    mp_tuple,
    propose,
    refresh_oracles,
    struct_tuple,
    wait_out,
)
from helpers.trading import (
    ETH_ID,
    MAX_UINT,
    WAD,
    ceil_div,
    deadline,
    exit_value,
    expect_revert,
    trade,
)

ETH = ETH_ID
PRICE = 3000 * 10**8  # the ETH feed's answer (8 decimals)
UNIT = 10**12  # one token unit of the 6-decimal collateral, in wad
COOL_OFF = 1800
DIVERGENCE_DURATION = 1800


def set_eth(system, answer: int, symbol: str = "ETH"):
    """ETH's (or `symbol`'s) feed at `answer`, its round stamped at the next block's time: as if posted in the block
    of the poke that follows, so the index TWAP that poke compares with holds none of it (a round counts from its
    own time, ClearingHouseAccrual._indexArea: one posted n seconds before the poke would count n seconds)."""
    oracle = system.markets[symbol].oracle
    at = ape.chain.pending_timestamp + 1
    oracle.updateRoundData(oracle.latestRound() + 1, answer, at, at, sender=system.deployer)


def poke_at(chain, g, ts: int | None, keeper, market=ETH):
    if ts is not None:
        chain.pending_timestamp = ts
    return g.breaker.poke(market, sender=keeper)


def restriction(g, market=ETH):
    return tuple(g.governor.restriction(market))


def effective(system, market=ETH):
    return struct_tuple(system.clearing_house.marketParams(market))


def configured(g, market=ETH):
    return struct_tuple(g.governor.configuredMarketParams(market)[0])


def events(contract, name, tx):
    return list(getattr(contract, name).from_receipt(tx))


def tripped(g, tx):
    return [(e.kind, e.value, e.threshold, e.until) for e in events(g.breaker, "BreakerTripped", tx)]


def applied(g, tx):
    return [(e.marketId, e.capBase, e.reduceOnly) for e in events(g.breaker, "RestrictionApplied", tx)]


def set_breaker_params(chain, system, g, **changes):
    pid, _, _ = propose(g, g.governor, encode(g.governor, "setBreakerParams", bp_tuple(g.breaker.params(), **changes)))
    wait_out(chain, system, g, [pid])


# ---------------------------------------------------------------------------- at rest


def test_nothing_holds_at_rest_and_a_poke_changes_nothing(system, g, keeper):
    e = g.breaker.check(ETH)
    assert (e.capBase, e.reduceOnly, e.changes, e.holding) == (NO_CAP, False, False, 0)
    assert (e.move, e.divergence, e.insuranceFactor, e.auctionFactor) == (0, 0, WAD, WAD)
    before = effective(system)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert applied(g, tx) == [] and tripped(g, tx) == []
    assert effective(system) == before and restriction(g) == (NO_CAP, False)
    s = g.breaker.breakerState(ETH)
    assert (s.reduceOnlyUntil, s.divergentSince, s.capBase, s.reduceOnly, s.holding) == (0, 0, NO_CAP, False, 0)
    print(f"\npoke, nothing changes (first poke of the market): {tx.gas_used:,} gas")
    tx = g.breaker.poke(ETH, sender=keeper)
    assert applied(g, tx) == []
    print(f"poke, nothing changes (again): {tx.gas_used:,} gas")
    tx = g.breaker.pokeAll(sender=keeper)
    print(f"pokeAll (2 markets), nothing changes: {tx.gas_used:,} gas")
    assert applied(g, tx) == []


def test_defaults(g):
    p = g.breaker.params()
    assert struct_tuple(p) == bp_tuple()
    assert struct_tuple(g.breaker.defaultParams()) == bp_tuple()


# ---------------------------------------------------------------------------- index move


@pytest.mark.parametrize("side", ["up", "down"])
def test_index_move_trips_one_oracle_unit_past_the_threshold(chain, system, g, keeper, side):
    """5 % of 3000 is 150: an index of 3150 (2850) is exactly at the threshold and does not trip; one unit
    (1e-8 USD) further trips reduce-only until now + coolOff."""
    ch = system.clearing_house
    assert ch.twaps(ETH)[1] == 3000 * WAD
    edge = PRICE + 150 * 10**8 if side == "up" else PRICE - 150 * 10**8
    beyond = edge + 1 if side == "up" else edge - 1
    # At the edge, what a poke would do (check): nothing. Not poked, because a poke accrues the market and
    # records the index it read, which would move the TWAP the next poke compares with.
    set_eth(system, edge)
    e = g.breaker.check(ETH)
    assert e.move == WAD // 20 and not e.reduceOnly and not e.changes and e.holding == 0

    set_eth(system, beyond)
    before = effective(system)
    conf = configured(g)
    move = abs(beyond - PRICE) * 10**10 * WAD // (3000 * WAD)
    tx = g.breaker.poke(ETH, sender=keeper)
    until = tx.timestamp + COOL_OFF
    assert tripped(g, tx) == [(MOVE, move, WAD // 20, until)]
    assert applied(g, tx) == [(ETH, NO_CAP, True)]
    assert restriction(g) == (NO_CAP, True)
    # The governor accrued the market at the live index in this block before writing.
    st = ch.marketState(ETH)
    assert (st.lastUpdate, st.lastIndexPrice) == (tx.timestamp, beyond * 10**10)
    # Reduce-only: the pool-ratio cap at 1 wei, everything else as configured.
    assert effective(system) == mp_tuple(before, maxOiPoolRatio=1) and configured(g) == conf == before
    s = g.breaker.breakerState(ETH)
    assert (s.reduceOnlyUntil, s.reduceOnly, s.holding, s.move) == (until, True, 1 << MOVE, move)
    print(f"\npoke, tripping reduce-only: {tx.gas_used:,} gas")


def test_cool_off_ends_to_the_second(chain, system, g, keeper):
    set_eth(system, PRICE + 150 * 10**8 + 1)
    t0 = poke_at(chain, g, None, keeper).timestamp
    until = t0 + COOL_OFF
    # The index TWAP has caught up: the move no longer holds, but the cool-off runs to its end.
    tx = poke_at(chain, g, until - 1, keeper)
    assert [e.kind for e in events(g.breaker, "BreakerCleared", tx)] == [MOVE]
    assert applied(g, tx) == [] and restriction(g) == (NO_CAP, True)
    assert system.clearing_house.marketParams(ETH).maxOiPoolRatio == 1
    tx = poke_at(chain, g, until, keeper)
    assert applied(g, tx) == [(ETH, NO_CAP, False)]
    assert restriction(g) == (NO_CAP, False) and effective(system) == configured(g)
    print(f"\npoke, lifting: {tx.gas_used:,} gas")


# ---------------------------------------------------------------------------- divergence


def test_divergence_trips_after_its_duration_to_the_second(chain, system, g, keeper, bob):
    """A 200 ETH buy takes the vAMM ~4.1 % above the index; once the mark TWAP has followed, the first poke
    that sees the divergence starts the clock, a poke at +1799 s does not trip, one at +1800 s does."""
    deposit(system, bob, 100_000)
    t_a = trade(system.clearing_house, bob, ETH, 200 * WAD).timestamp
    t1 = t_a + 1200  # more than a window and a quarter: the mark TWAP is the post-trade price
    tx = poke_at(chain, g, t1, keeper)
    s = g.breaker.breakerState(ETH)
    assert s.divergence > 3 * WAD // 100 and s.divergentSince == t1 and s.holding == 0
    assert applied(g, tx) == []
    tx = poke_at(chain, g, t1 + DIVERGENCE_DURATION - 1, keeper)
    assert applied(g, tx) == [] and g.breaker.breakerState(ETH).divergentSince == t1
    tx = poke_at(chain, g, t1 + DIVERGENCE_DURATION, keeper)
    ((kind, value, threshold, until),) = tripped(g, tx)
    assert (kind, threshold, until) == (DIVERGENCE, 3 * WAD // 100, t1 + DIVERGENCE_DURATION + COOL_OFF)
    mark, index = system.clearing_house.twaps(ETH)  # unchanged within the poke's block
    assert value == abs(mark - index) * WAD // index
    assert applied(g, tx) == [(ETH, NO_CAP, True)]


def test_a_poke_without_divergence_restarts_the_clock(chain, system, g, keeper, bob):
    deposit(system, bob, 100_000)
    t_a = trade(system.clearing_house, bob, ETH, 200 * WAD).timestamp
    poke_at(chain, g, t_a + 1200, keeper)
    assert g.breaker.breakerState(ETH).divergentSince == t_a + 1200
    chain.pending_timestamp = t_a + 1300
    t_c = system.clearing_house.closePosition(0, ETH, 0, deadline(), sender=bob).timestamp
    poke_at(chain, g, t_c + 1200, keeper)  # the mark TWAP is back at the index
    assert g.breaker.breakerState(ETH).divergentSince == 0
    # 30 minutes after the first divergent poke, nothing trips: the run was broken.
    tx = poke_at(chain, g, t_a + 1200 + DIVERGENCE_DURATION + 60, keeper)
    assert applied(g, tx) == [] and restriction(g) == (NO_CAP, False)


# ---------------------------------------------------------------------------- insurance


def insurance_required(gross_base: int, index: int, target: int = WAD // 20) -> int:
    return ceil_div(ceil_div(gross_base * index, WAD) * target, WAD)


def test_insurance_cover_one_wei_of_open_interest_and_one_token_unit(chain, system, g, keeper, alice, bob, carol):
    set_breaker_params(chain, system, g, insuranceTarget=WAD // 20)  # 5 %: a book of a few hundred ETH trips it
    vault, ch = system.vault, system.clearing_house
    fund = vault.insuranceFund()
    index = 3000 * WAD
    # The most gross open interest the fund covers at 5 %.
    gross = fund * 20 * WAD // index
    while insurance_required(gross + 1, index) <= fund:
        gross += 1
    while insurance_required(gross, index) > fund:
        gross -= 1
    long_, short = gross // 2, gross - gross // 2
    deposit(system, alice, 300_000)
    deposit(system, bob, 300_000)
    trade(ch, alice, ETH, long_)
    trade(ch, bob, ETH, -short)
    e = g.breaker.check(ETH)
    assert (e.insuranceFund, e.insuranceRequired, e.insuranceFactor) == (fund, insurance_required(gross, index), WAD)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert applied(g, tx) == [] and restriction(g) == (NO_CAP, False)

    trade(ch, alice, ETH, 1)  # one wei more open interest
    required = insurance_required(gross + 1, index)
    assert required > fund
    factor = fund * WAD // required
    cap = ch.marketParams(ETH).maxOpenInterest * factor // WAD
    tx = g.breaker.poke(ETH, sender=keeper)
    assert tripped(g, tx) == [(INSURANCE, fund, required, 0)]
    assert applied(g, tx) == [(ETH, cap, False)]
    assert effective(system) == mp_tuple(configured(g), maxOpenInterest=cap)
    # The insurance breaker scales every market's cap, not only the one poked.
    btc = system.markets["BTC"].id
    tx = g.breaker.poke(btc, sender=keeper)
    assert applied(g, tx) == [(btc, system.clearing_house.marketParams(btc).maxOpenInterest, False)]
    assert g.governor.restriction(btc).capBase == configured(g, btc)[8] * factor // WAD

    # One token unit into the fund covers the missing wei again: the next poke lifts the cap.
    assert required - fund < UNIT
    vault.fundInsurance(1, sender=carol)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert [e.kind for e in events(g.breaker, "BreakerCleared", tx)] == [INSURANCE]
    assert applied(g, tx) == [(ETH, NO_CAP, False)] and effective(system) == configured(g)


# ---------------------------------------------------------------------------- auctions


def test_auction_share_one_wei_of_max_auction_notional(chain, system, g, keeper, alice, carol):
    """Live notional L after a kick: maxAuctionNotional 2L puts it exactly at the 50 % soft level (nothing),
    2L - 1 puts it above (caps scaled by (maxLive - L) / (maxLive - soft))."""
    engine, ch = system.liquidation, system.clearing_house
    deposit(system, alice, 3100)
    trade(ch, alice, ETH, 10 * WAD)
    set_eth(system, 2800 * 10**8)
    ch.pokeFunding(ETH, sender=carol)  # the market accrues at 2800: after the delay the index TWAP is there too
    engine.kick(alice, 0, ETH, carol, sender=carol)
    live = engine.liveNotional()
    lp = struct_tuple(engine.liquidationParams())
    p1, _, _ = propose(g, engine, encode(engine, "setLiquidationParams", lp[:6] + (2 * live,)))
    p2, _, _ = propose(g, engine, encode(engine, "setLiquidationParams", lp[:6] + (2 * live - 1,)))
    eta = g.governor.proposal(p2).eta
    chain.pending_timestamp = eta
    refresh_oracles(system)
    g.governor.execute(p1, sender=keeper)
    e = g.breaker.check(ETH)
    assert (e.liveAuctionNotional, e.auctionSoft, e.auctionFactor) == (live, live, WAD)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert applied(g, tx) == [] and tripped(g, tx) == []

    g.governor.execute(p2, sender=keeper)
    max_live = 2 * live - 1
    soft = max_live * (WAD // 2) // WAD
    factor = (max_live - live) * WAD // (max_live - soft)
    cap = ch.marketParams(ETH).maxOpenInterest * factor // WAD
    tx = g.breaker.poke(ETH, sender=keeper)
    assert tripped(g, tx) == [(AUCTIONS, live, soft, 0)]
    assert applied(g, tx) == [(ETH, cap, False)]


# ---------------------------------------------------------------------------- skew


def nav_after(x, y, pool, trades):
    """The pool's NAV (LiquidityPool.navWad) after one trader's buys `trades` from reserves (x, y): cash minus
    the traders' exit value net of their open notional (no fee, no funding, no bad debt)."""
    size, paid = 0, 0
    for b in trades:
        q = ceil_div(y * b, x - b)
        x, y, size, paid = x - b, y + q, size + b, paid + q
    return pool - (exit_value(x, y, size) - paid)


def test_skew_one_wei_of_open_interest(chain, system, g, keeper, alice, bob):
    """maxSkewShare 5 % (set through the timelock; 20 % of a 10 M pool is beyond the price band): the largest
    long whose notional is within 5 % of NAV does not trip, one wei more does; the cap is then the heavy side."""
    set_breaker_params(chain, system, g, maxSkewShare=WAD // 20)
    ch, vault, pool = system.clearing_house, system.vault, system.pool
    st = ch.marketState(ETH)
    x, y, cash, index = st.baseReserve, st.quoteReserve, vault.poolBalance(), 3000 * WAD

    def within(trades):
        size = sum(trades)
        return ceil_div(size * index, WAD) <= nav_after(x, y, cash, trades) * (WAD // 20) // WAD

    lo, hi = 100 * WAD, 250 * WAD
    assert within([lo]) and not within([hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if within([mid]) else (lo, mid)
    assert within([lo]) and not within([lo, 1])
    deposit(system, alice, 200_000)
    trade(ch, alice, ETH, lo)
    assert pool.navWad() == nav_after(x, y, cash, [lo])
    e = g.breaker.check(ETH)
    assert e.skewNotional == lo * 3000 and e.skewLimit == pool.navWad() * (WAD // 20) // WAD
    assert g.breaker.poke(ETH, sender=keeper) and restriction(g) == (NO_CAP, False)

    trade(ch, alice, ETH, 1)
    e = g.breaker.check(ETH)
    assert e.skewNotional > e.skewLimit
    tx = g.breaker.poke(ETH, sender=keeper)
    assert tripped(g, tx) == [(SKEW, (lo + 1) * 3000, e.skewLimit, 0)]
    assert applied(g, tx) == [(ETH, lo + 1, False)]
    # The heavy side cannot grow; the light side may grow up to it.
    with expect_revert(ch.OpenInterestCapExceeded, marketId=ETH, openInterest=lo + 2, cap=lo + 1):
        trade(ch, alice, ETH, 1)
    deposit(system, bob, 200_000)
    with expect_revert(ch.OpenInterestCapExceeded, marketId=ETH, openInterest=lo + 2, cap=lo + 1):
        trade(ch, bob, ETH, -(lo + 2))
    trade(ch, bob, ETH, -(lo + 1))
    # Balanced again, but the cap holds for a cool-off after the last poke that saw the skew (so a balancing
    # round trip around a poke cannot lift it), to the second.
    seen = tx.timestamp
    tx = poke_at(chain, g, seen + COOL_OFF - 1, keeper)
    assert applied(g, tx) == [] and restriction(g) == (lo + 1, False)
    tx = poke_at(chain, g, seen + COOL_OFF, keeper)
    assert applied(g, tx) == [(ETH, NO_CAP, False)] and effective(system) == configured(g)


# ---------------------------------------------------------------------------- while a breaker holds

FRANK = 6


def _open_book(system, alice, bob, frank=None, frank_base=0, frank_margin=0):
    """alice: a 10x long (10 ETH on 3100), the account a keeper liquidates later; bob: 20 ETH long on ample
    margin, who reduces, closes and withdraws; frank: optional extra long."""
    ch = system.clearing_house
    deposit(system, alice, 3100)
    trade(ch, alice, ETH, 10 * WAD)
    deposit(system, bob, 50_000)
    trade(ch, bob, ETH, 20 * WAD)
    if frank is not None:
        deposit(system, frank, frank_margin)
        trade(ch, frank, ETH, frank_base)


def _growth_refused(system, g, bob, erin):
    """Whatever the restriction, the side it caps cannot grow: reduce-only refuses a newcomer on either side,
    a cap refuses one wei more than it leaves room for (and no more than the configured cap would allow)."""
    ch = system.clearing_house
    cap, reduce_only = restriction(g)
    st = ch.marketState(ETH)
    if reduce_only:
        deposit(system, erin, 10_000)
        for base in (WAD, -WAD):
            with expect_revert(ch.OpenInterestCapExceeded, marketId=ETH):
                trade(ch, erin, ETH, base)
    else:
        room = max(cap - st.longOpenInterest, 0)
        assert st.longOpenInterest + room + 1 <= configured(g)[8]  # only the breaker refuses it
        with expect_revert(ch.OpenInterestCapExceeded, marketId=ETH, openInterest=st.longOpenInterest + room + 1,
                           cap=cap):
            trade(ch, bob, ETH, room + 1)


def _exits_stay_open(system, g, bob, carol, dave, alice):
    """Withdrawing free collateral, reducing, closing, and a keeper's kick and take all go through while the
    restriction stays exactly as it was."""
    ch, vault, engine, usdc = system.clearing_house, system.vault, system.liquidation, system.collateral
    held = restriction(g)
    params = effective(system)
    balance = usdc.balanceOf(bob)
    vault.withdraw(0, system.units(1000), sender=bob)
    assert usdc.balanceOf(bob) == balance + system.units(1000)
    trade(ch, bob, ETH, -5 * WAD)  # reduce
    assert ch.position(bob, 0, ETH).size == 15 * WAD
    ch.closePosition(0, ETH, 0, deadline(), sender=bob)
    assert ch.position(bob, 0, ETH).size == 0
    vault.withdraw(0, MAX_UINT, sender=bob)  # everything free, position gone
    if system.markets["ETH"].oracle.latestAnswer() != 2800 * 10**8:
        set_eth(system, 2800 * 10**8)  # alice becomes liquidatable (nobody pokes the breaker)
    if ch.auctionedSize(alice, 0, ETH) == 0:
        engine.kick(alice, 0, ETH, carol, sender=carol)
    (aid,) = [i for i in range(1, engine.auctionCount() + 1)
              if engine.auction(i).owner == alice.address and engine.auction(i).size != 0]
    deposit(system, dave, 100_000)
    engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=dave)  # the taker's long grows: fills are never capped
    assert engine.auction(aid).size == 0 and ch.position(dave, 0, ETH).size > 0
    assert restriction(g) == held and effective(system) == params


def test_exits_stay_open_under_reduce_only_from_an_index_move(chain, system, g, keeper, alice, bob, carol, dave, erin):
    _open_book(system, alice, bob)
    set_eth(system, 2800 * 10**8)
    g.breaker.poke(ETH, sender=keeper)
    assert restriction(g) == (NO_CAP, True)
    _growth_refused(system, g, bob, erin)
    _exits_stay_open(system, g, bob, carol, dave, alice)


def test_exits_stay_open_under_reduce_only_from_divergence(chain, system, g, keeper, accounts, alice, bob, carol,
                                                          dave, erin):
    frank = accounts[FRANK]
    _open_book(system, alice, bob, frank, 200 * WAD, 100_000)
    t1 = chain.blocks.head.timestamp + 1200
    poke_at(chain, g, t1, keeper)
    tx = poke_at(chain, g, t1 + DIVERGENCE_DURATION, keeper)
    assert [k for k, *_ in tripped(g, tx)] == [DIVERGENCE] and restriction(g) == (NO_CAP, True)
    _growth_refused(system, g, bob, erin)
    _exits_stay_open(system, g, bob, carol, dave, alice)


def test_exits_stay_open_under_the_insurance_cap(chain, system, g, keeper, accounts, alice, bob, carol, dave, erin):
    """Gross open interest of 700 ETH at 3000 wants 105,000 of insurance at 5 %; the fund holds 100,000."""
    set_breaker_params(chain, system, g, insuranceTarget=WAD // 20)  # 5 %: a book of a few hundred ETH trips it
    frank, ch = accounts[FRANK], system.clearing_house
    p, share = ch.marketParams(ETH), ch.insuranceFeeShare(ETH)
    g.governor.act(ch, encode(ch, "setMarketParams", ETH, mp_tuple(p, maxOpenInterest=450 * WAD), share),
                   sender=g.guardian)  # a risk-reducing change, at once
    _open_book(system, alice, bob, frank, 370 * WAD, 300_000)
    deposit(system, carol, 300_000)
    trade(ch, carol, ETH, -300 * WAD)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert [k for k, *_ in tripped(g, tx)] == [INSURANCE]
    cap, reduce_only = restriction(g)
    assert not reduce_only and cap < ch.marketState(ETH).longOpenInterest + 30 * WAD < 450 * WAD
    _growth_refused(system, g, bob, erin)
    _exits_stay_open(system, g, bob, carol, dave, alice)


def test_exits_stay_open_under_the_auction_cap(chain, system, g, keeper, accounts, alice, bob, carol, dave, erin):
    """Two accounts to liquidate; maxAuctionNotional is set (through the timelock) to hold both slices, so
    the first kick takes live notional above 50 % and the second still fits while the breaker holds."""
    frank, ch, engine = accounts[FRANK], system.clearing_house, system.liquidation
    p, share = ch.marketParams(ETH), ch.insuranceFeeShare(ETH)
    g.governor.act(ch, encode(ch, "setMarketParams", ETH, mp_tuple(p, maxOpenInterest=50 * WAD), share),
                   sender=g.guardian)
    _open_book(system, alice, bob, frank, 5 * WAD, 1600)
    set_eth(system, 2800 * 10**8)
    ch.pokeFunding(ETH, sender=keeper)
    n1, n2 = engine.kickPreview(alice, 0, ETH).notional, engine.kickPreview(frank, 0, ETH).notional
    assert n1 > n2 > 0
    lp = struct_tuple(engine.liquidationParams())
    pid, _, _ = propose(g, engine, encode(engine, "setLiquidationParams", lp[:6] + (n1 + n2,)))
    wait_out(chain, system, g, [pid])
    engine.kick(alice, 0, ETH, carol, sender=carol)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert [k for k, *_ in tripped(g, tx)] == [AUCTIONS]
    cap, reduce_only = restriction(g)
    assert not reduce_only and cap == 50 * WAD * ((n2 * WAD) // (n1 + n2 - (n1 + n2) // 2)) // WAD
    _growth_refused(system, g, bob, erin)
    # A second kick while the breaker holds (it fills the engine's own cap exactly), and its take.
    engine.kick(frank, 0, ETH, carol, sender=carol)
    assert engine.liveNotional() == n1 + n2
    deposit(system, dave, 100_000)
    engine.take(engine.auctionCount(), MAX_UINT, MAX_UINT, 0, sender=dave)
    _exits_stay_open(system, g, bob, carol, dave, alice)


def test_exits_stay_open_under_the_skew_cap(chain, system, g, keeper, accounts, alice, bob, carol, dave, erin):
    frank = accounts[FRANK]
    set_breaker_params(chain, system, g, maxSkewShare=WAD // 20)
    _open_book(system, alice, bob, frank, 200 * WAD, 100_000)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert [k for k, *_ in tripped(g, tx)] == [SKEW]
    assert restriction(g) == (system.clearing_house.marketState(ETH).longOpenInterest, False)
    _growth_refused(system, g, bob, erin)
    _exits_stay_open(system, g, bob, carol, dave, alice)


# ---------------------------------------------------------------------------- governance during a restriction


def test_governance_changes_configured_params_during_reduce_only(chain, system, g, keeper, bob):
    ch, gov = system.clearing_house, g.governor
    set_eth(system, 2800 * 10**8)
    g.breaker.poke(ETH, sender=keeper)
    assert restriction(g) == (NO_CAP, True)
    p, share = configured(g), ch.insuranceFeeShare(ETH)  # the configured params, not the restricted ones
    # The guardian halves the cap at once: configured and effective follow, reduce-only stays.
    conf = mp_tuple(p, maxOpenInterest=p[8] // 2)
    gov.act(ch, encode(ch, "setMarketParams", ETH, conf, share), sender=g.guardian)
    assert configured(g) == conf and effective(system) == mp_tuple(conf, maxOiPoolRatio=1)
    # The admin raises the caps through the timelock: configured changes, effective keeps reduce-only.
    new = mp_tuple(conf, maxOpenInterest=2 * p[8], maxOiPoolRatio=3 * WAD)
    pid, _, _ = propose(g, ch, encode(ch, "setMarketParams", ETH, new, share))
    wait_out(chain, system, g, [pid])
    assert configured(g) == new and effective(system) == mp_tuple(new, maxOiPoolRatio=1)
    assert restriction(g) == (NO_CAP, True)
    # Lifting the restriction restores the new configured parameters.
    ch.pokeFunding(ETH, sender=keeper)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert applied(g, tx) == [(ETH, NO_CAP, False)]
    assert effective(system) == new and ch.insuranceFeeShare(ETH) == share


def test_governance_raises_the_cap_during_a_cap_restriction(chain, system, g, keeper, accounts, alice, bob, carol):
    """A configured cap raised while the insurance breaker caps the market: nothing is written (the effective
    cap is the breaker's), the next poke rescales the breaker's cap from the new configured one, and funding
    the insurance lifts it to the new configured cap."""
    set_breaker_params(chain, system, g, insuranceTarget=WAD // 20)  # 5 %: a book of a few hundred ETH trips it
    frank, ch, gov = accounts[FRANK], system.clearing_house, g.governor
    _open_book(system, alice, bob, frank, 370 * WAD, 300_000)
    deposit(system, carol, 300_000)
    trade(ch, carol, ETH, -300 * WAD)
    g.breaker.poke(ETH, sender=keeper)
    cap, _ = restriction(g)
    factor = g.breaker.check(ETH).insuranceFactor
    assert cap == 10_000 * WAD * factor // WAD
    p, share = ch.marketParams(ETH), ch.insuranceFeeShare(ETH)
    new = mp_tuple(configured(g), maxOpenInterest=20_000 * WAD)
    pid, _, _ = propose(g, ch, encode(ch, "setMarketParams", ETH, new, share))
    eta = gov.proposal(pid).eta
    chain.pending_timestamp = eta
    refresh_oracles(system)
    tx = gov.execute(pid, sender=keeper)
    assert list(ch.MarketParamsSet.from_receipt(tx)) == []  # effective unchanged: min(new, cap) == cap
    assert configured(g) == new and struct_tuple(p) == effective(system)
    # The governor's view of the effective parameters is what the ClearingHouse holds: the configured record
    # tightened by the restriction (here the breaker's cap), not the record itself.
    assert struct_tuple(gov.effectiveMarketParams(ETH)) == effective(system) == mp_tuple(new, maxOpenInterest=cap)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert applied(g, tx) == [(ETH, 20_000 * WAD * factor // WAD, False)]
    assert g.breaker.check(ETH).insuranceRequired < system.vault.insuranceFund() + 10_000 * WAD
    system.vault.fundInsurance(system.units(10_000), sender=carol)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert applied(g, tx) == [(ETH, NO_CAP, False)] and effective(system) == new
    assert struct_tuple(gov.effectiveMarketParams(ETH)) == new  # lifted: the configured record itself


def test_a_configured_value_the_restriction_hides_is_still_bounds_checked(chain, system, g, keeper, accounts, alice,
                                                                          bob, carol):
    """Under a cap restriction a configured cap above int96 would be written as the (valid) breaker cap; the
    governor checks the configured record against the ClearingHouse itself, so lifting could always write it."""
    set_breaker_params(chain, system, g, insuranceTarget=WAD // 20)  # 5 %: a book of a few hundred ETH trips it
    frank, ch = accounts[FRANK], system.clearing_house
    _open_book(system, alice, bob, frank, 370 * WAD, 300_000)
    deposit(system, carol, 300_000)
    trade(ch, carol, ETH, -300 * WAD)
    g.breaker.poke(ETH, sender=keeper)
    assert restriction(g)[0] < NO_CAP
    too_big = 2**95
    assert min(too_big, restriction(g)[0]) < 2**95 - 1  # the effective cap alone would pass
    data = encode(ch, "setMarketParams", ETH, mp_tuple(configured(g), maxOpenInterest=too_big), ch.insuranceFeeShare(ETH))
    count = g.governor.proposalCount()
    with expect_revert(ch.ParameterOutOfBounds, value=too_big):
        g.governor.propose(ch, data, sender=g.admin)
    assert g.governor.proposalCount() == count


# ---------------------------------------------------------------------------- pokeAll, access


def test_pokeAll_skips_a_market_whose_feed_is_stale(chain, system, g, keeper):
    btc = system.markets["BTC"]
    chain.pending_timestamp = chain.blocks.head.timestamp + 86_400 + 60
    set_eth(system, 2800 * 10**8)  # ETH fresh (and moved), BTC stale
    with expect_revert(system.clearing_house.StaleOracle, feed=btc.oracle):
        g.breaker.poke(btc.id, sender=keeper)
    tx = g.breaker.pokeAll(sender=keeper)
    assert applied(g, tx) == [(ETH, NO_CAP, True)]


def test_poke_of_an_unknown_market_reverts(system, g, keeper):
    with expect_revert(system.clearing_house.UnknownMarket, marketId=3):
        g.breaker.poke(3, sender=keeper)


# ---------------------------------------------------------------------------- per-market thresholds
# A market's own move, divergence and skew thresholds (setMarketThresholds through the governor's timelock;
# 0: the global value).

BTC = 2
BTC_PRICE = 60_000 * 10**8  # the BTC feed's answer


def set_market_thresholds(chain, system, g, market, thresholds):
    pid, _, _ = propose(g, g.governor, encode(g.governor, "setBreakerMarketThresholds", market, thresholds))
    wait_out(chain, system, g, [pid])


def test_market_thresholds_are_the_global_ones_until_set(chain, system, g):
    glob = (WAD // 20, 3 * WAD // 100, DIVERGENCE_DURATION, WAD // 5)
    for m in (ETH, BTC):
        assert struct_tuple(g.breaker.thresholdOverrides(m)) == (0, 0, 0, 0)
        assert struct_tuple(g.breaker.marketThresholds(m)) == glob
    # A field left at 0 follows the global value, also after the global one changes.
    set_market_thresholds(chain, system, g, ETH, (0, WAD // 10, 0, 0))
    assert struct_tuple(g.breaker.marketThresholds(ETH)) == (WAD // 20, WAD // 10, DIVERGENCE_DURATION, WAD // 5)
    set_breaker_params(chain, system, g, moveThreshold=WAD // 25, divergenceDuration=600, maxSkewShare=WAD // 10)
    assert struct_tuple(g.breaker.marketThresholds(ETH)) == (WAD // 25, WAD // 10, 600, WAD // 10)
    assert struct_tuple(g.breaker.marketThresholds(BTC)) == (WAD // 25, 3 * WAD // 100, 600, WAD // 10)
    assert struct_tuple(g.breaker.thresholdOverrides(ETH)) == (0, WAD // 10, 0, 0)


def test_a_markets_own_move_threshold_is_the_one_check_and_poke_use(chain, system, g, keeper):
    """ETH's move threshold at 10 %: one oracle unit past the global 5 % does not trip it, exactly 10 % does
    not, one unit past 10 % does, and the event reports ETH's 10 %."""
    set_market_thresholds(chain, system, g, ETH, (WAD // 10, 0, 0, 0))
    assert system.clearing_house.twaps(ETH)[1] == 3000 * WAD
    set_eth(system, PRICE + 150 * 10**8 + 1)
    e = g.breaker.check(ETH)
    assert e.move > WAD // 20 and not e.reduceOnly and e.holding == 0 and not e.changes
    set_eth(system, PRICE + 300 * 10**8)
    e = g.breaker.check(ETH)
    assert e.move == WAD // 10 and not e.reduceOnly and e.holding == 0
    beyond = PRICE + 300 * 10**8 + 1
    set_eth(system, beyond)
    e = g.breaker.check(ETH)
    assert e.reduceOnly and e.holding == 1 << MOVE and e.changes
    move = (beyond - PRICE) * 10**10 * WAD // (3000 * WAD)
    tx = g.breaker.poke(ETH, sender=keeper)
    assert tripped(g, tx) == [(MOVE, move, WAD // 10, tx.timestamp + COOL_OFF)]
    assert applied(g, tx) == [(ETH, NO_CAP, True)]


def test_pokeAll_uses_each_markets_thresholds(chain, system, g, keeper):
    """ETH at 10 %, BTC at the global 5 %: both indices one unit past 5 %, only BTC turns reduce-only."""
    set_market_thresholds(chain, system, g, ETH, (WAD // 10, 0, 0, 0))
    set_eth(system, PRICE + 150 * 10**8 + 1)
    set_eth(system, BTC_PRICE + 3_000 * 10**8 + 1, "BTC")
    tx = g.breaker.pokeAll(sender=keeper)
    assert applied(g, tx) == [(BTC, NO_CAP, True)]
    ((log,),) = [events(g.breaker, "BreakerTripped", tx)]
    assert (log.marketId, log.kind, log.threshold) == (BTC, MOVE, WAD // 20)
    assert restriction(g, ETH) == (NO_CAP, False) and restriction(g, BTC) == (NO_CAP, True)


def test_a_markets_own_divergence_threshold_and_duration(chain, system, g, keeper, bob):
    """The 200 ETH buy of the divergence test (~4.1 % above the index): with ETH's divergence duration at
    10 min it trips at +600 s to the second (threshold the global 3 %); with ETH's threshold at 5 % the same
    divergence is not counted at all."""
    set_market_thresholds(chain, system, g, ETH, (0, 0, 600, 0))
    deposit(system, bob, 100_000)
    snap = chain.snapshot()
    t_a = trade(system.clearing_house, bob, ETH, 200 * WAD).timestamp
    t1 = t_a + 1200
    poke_at(chain, g, t1, keeper)
    assert g.breaker.breakerState(ETH).divergentSince == t1
    tx = poke_at(chain, g, t1 + 599, keeper)
    assert applied(g, tx) == []
    tx = poke_at(chain, g, t1 + 600, keeper)
    ((kind, _, threshold, until),) = tripped(g, tx)
    assert (kind, threshold, until) == (DIVERGENCE, 3 * WAD // 100, t1 + 600 + COOL_OFF)
    assert applied(g, tx) == [(ETH, NO_CAP, True)]

    chain.restore(snap)
    set_market_thresholds(chain, system, g, ETH, (0, WAD // 20, 0, 0))
    t_a = trade(system.clearing_house, bob, ETH, 200 * WAD).timestamp
    poke_at(chain, g, t_a + 1200, keeper)
    s = g.breaker.breakerState(ETH)
    assert 3 * WAD // 100 < s.divergence < WAD // 20 and s.divergentSince == 0
    tx = poke_at(chain, g, t_a + 1200 + 2 * DIVERGENCE_DURATION, keeper)
    assert applied(g, tx) == [] and restriction(g) == (NO_CAP, False)


def test_market_thresholds_refuse_bad_input_and_the_deployer_window_closes_at_wiring(project, system, deployer,
                                                                                    admin, carol, bob):
    """A breaker over a governor with no breaker wired yet: its deployer (carol) may set market thresholds,
    anyone else gets NotGovernor; out of bounds and unknown markets are named errors and change nothing; once
    the governor wires a breaker, the deployer is refused too."""
    tl = project.GovernanceTimelock.deploy(2 * 86_400, [], ["0x" + "00" * 20], deployer, sender=deployer)
    gov = project.RiskGovernor.deploy(system.vault, system.clearing_house, system.liquidation, system.pool,
                                      system.amm, tl, admin, admin, sender=deployer)
    brk = project.CircuitBreaker.deploy(gov, sender=carol)
    assert brk.deployer() == carol.address
    with expect_revert(brk.NotGovernor, caller=bob):
        brk.setMarketThresholds(ETH, (WAD // 5, 0, 0, 0), sender=bob)
    b32 = lambda n: n.encode().ljust(32, b"\0")  # noqa: E731
    bad = [((WAD // 100 - 1, 0, 0, 0), "moveThreshold", WAD // 100 - 1),
           ((WAD // 2 + 1, 0, 0, 0), "moveThreshold", WAD // 2 + 1),
           ((0, WAD // 200 - 1, 0, 0), "divergenceThreshold", WAD // 200 - 1),
           ((0, WAD // 2 + 1, 0, 0), "divergenceThreshold", WAD // 2 + 1),
           ((0, 0, 59, 0), "divergenceDuration", 59),
           ((0, 0, 86_401, 0), "divergenceDuration", 86_401),
           ((0, 0, 0, WAD // 100 - 1), "maxSkewShare", WAD // 100 - 1),
           ((0, 0, 0, 10 * WAD + 1), "maxSkewShare", 10 * WAD + 1)]
    for t, name, value in bad:
        with expect_revert(brk.ParameterOutOfBounds, name=b32(name), value=value):
            brk.setMarketThresholds(ETH, t, sender=carol)
    for market in (0, 3):
        with expect_revert(brk.UnknownMarket, marketId=market):
            brk.setMarketThresholds(market, (WAD // 5, 0, 0, 0), sender=carol)
    assert struct_tuple(brk.thresholdOverrides(ETH)) == (0, 0, 0, 0)
    # The bounds themselves are accepted.
    for t in ((WAD // 100, WAD // 200, 60, WAD // 100), (WAD // 2, WAD // 2, 86_400, 10 * WAD)):
        tx = brk.setMarketThresholds(ETH, t, sender=carol)
        (log,) = events(brk, "MarketThresholdsSet", tx)
        assert (log.marketId, struct_tuple(log.thresholds)) == (ETH, t)
        assert struct_tuple(brk.marketThresholds(ETH)) == t
    gov.setBreaker(brk, sender=admin)
    with expect_revert(brk.NotGovernor, caller=carol):
        brk.setMarketThresholds(ETH, (WAD // 5, 0, 0, 0), sender=carol)
    assert struct_tuple(brk.thresholdOverrides(ETH)) == (WAD // 2, WAD // 2, 86_400, 10 * WAD)


def test_a_markets_own_skew_share_sets_its_skew_limit(chain, system, g, keeper, bob):
    """ETH's skew share at 1 % of the NAV (tighter than the global 20 %): each evaluation's limit is its market's
    share of the NAV, and a long of 1.2 % of the NAV caps ETH's long side, which the global share would not."""
    set_market_thresholds(chain, system, g, ETH, (0, 0, 0, WAD // 100))
    e, b = g.breaker.check(ETH), g.breaker.check(BTC)
    assert e.skewLimit == e.nav * (WAD // 100) // WAD and b.skewLimit == b.nav * (WAD // 5) // WAD
    assert e.holding == b.holding == 0
    deposit(system, bob, 1_000_000)
    base = e.nav * 12 // 1000 // 3000  # [wad base] 1.2 % of the NAV at 3000
    trade(system.clearing_house, bob, ETH, base)
    tx = g.breaker.poke(ETH, sender=keeper)
    ((kind, value, threshold, _),) = tripped(g, tx)
    e = g.breaker.check(ETH)
    assert (kind, value, threshold) == (SKEW, e.skewNotional, e.skewLimit)
    assert e.skewLimit < e.skewNotional < e.nav * (WAD // 5) // WAD
    assert restriction(g) == (system.clearing_house.marketState(ETH).longOpenInterest, False)
