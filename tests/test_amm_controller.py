"""AmmController: depth follows the pool (never paying the net position), repeg moves the vAMM toward the index, bounded.

Expected values come from the rules in IAmmController/AmmController's NatSpec, recomputed here:
  depth: at most once per depthInterval;
         shrink  y1 = max(depthRatio x NAV, y0 (1 - maxDepthChange), ceil(2 |net short| y0 / x0));
         deepen  y1 = min(depthRatio x NAV, y0 (1 + min(maxDepthChange, takerFee / maxSpread)),
                          floor(y0 u / (u - v))) with u = |net|, v = floor((x0 - u) floor(takerFee / 2))
                          (no bound when u <= v, no deepening when u >= x0);
                 x1 = ceil((x0 + net) y1 / y0) - net for a net long (or none), floor(...) - net for a net short;
         shrink and no net: x1 = ceil(x0 y1 / y0); cost = exit(x1, y1) - exit(x0, y0) of the net, never > 0;
  repeg: move = min(|index - p0|, p0 x maxRepegStep, maxRepegCost x NAV / |net OI|),
         y1 = floor(x0 p1), cost = ceil(net x (p1' - p0)) with p1' = floor(y1 / x0).
"""
import math

import ape
import pytest

from trading_helpers import exit_value, expect_revert

WAD = 10**18
ETH = 1
HOUR = 3600


def ceil_div(a, b):
    return -((-a) // b)


def mul_wad_down(a, b):
    return a * b // WAD


def _deadline(chain):
    return chain.pending_timestamp + 3600


def deepen_cap(ch, p, mid, y0):
    mp = ch.marketParams(mid)
    step = min(p.maxDepthChange, mp.takerFee * WAD // mp.maxSpread)
    return y0 + mul_wad_down(y0, step)


def test_deposit_then_sync_depth_deepens_every_market_and_keeps_prices(system, ch, pool, usdc, alice, chain):
    amm = system.amm
    states = {m.id: ch.marketState(m.id) for m in system.markets.values()}
    impact_before = ch.quote(ETH, 10 * WAD)[1] - states[ETH].spotPrice
    units = system.units(2_000_000)  # +20 % pool capital
    usdc.mint(alice, units, sender=alice)
    usdc.approve(pool, units, sender=alice)
    pool.deposit(units, alice, sender=alice)
    nav = pool.navWad()
    for m in system.markets.values():
        p = amm.ammParams(m.id)
        x0, y0 = states[m.id].baseReserve, states[m.id].quoteReserve
        target = mul_wad_down(nav, p.depthRatio)
        # No open interest: only the per-call bounds apply, and deepening is the tighter one (1 % here).
        y1 = min(target, deepen_cap(ch, p, m.id, y0))
        x1 = ceil_div(x0 * y1, y0)
        tx = amm.syncDepth(m.id, sender=alice)
        st = ch.marketState(m.id)
        assert (st.baseReserve, st.quoteReserve) == (x1, y1)
        assert y1 > y0  # deeper
        assert st.spotPrice <= states[m.id].spotPrice and states[m.id].spotPrice - st.spotPrice <= 1
        ev = tx.decode_logs(amm.DepthSyncCost)[0]
        assert (ev.marketId, ev.cost, ev.totalCost) == (m.id, 0, 0)  # no position, nothing handed out
        assert amm.lastDepthSync(m.id) == tx.timestamp
    impact_after = ch.quote(ETH, 10 * WAD)[1] - ch.marketState(ETH).spotPrice
    assert impact_after < impact_before  # the same trade moves the price less


def test_sync_depth_converges_one_interval_at_a_time(system, ch, pool, usdc, alice, chain):
    """The honest path: after a deposit, hourly syncs walk the depth to its target, one bounded step each;
    a second sync inside the interval is refused and changes nothing."""
    amm = system.amm
    units = system.units(2_000_000)
    usdc.mint(alice, units, sender=alice)
    usdc.approve(pool, units, sender=alice)
    pool.deposit(units, alice, sender=alice)
    p = amm.ammParams(ETH)
    target = mul_wad_down(pool.navWad(), p.depthRatio)
    first = amm.syncDepth(ETH, sender=alice)
    before = ch.marketState(ETH)
    with expect_revert(amm.DepthSyncTooSoon, nextAllowed=first.timestamp + p.depthInterval,
                       timestamp=first.timestamp + 1):
        chain.pending_timestamp = first.timestamp + 1
        amm.syncDepth(ETH, sender=alice)
    assert ch.marketState(ETH) == before and amm.lastDepthSync(ETH) == first.timestamp
    t = first.timestamp
    for _ in range(40):
        y0 = ch.marketState(ETH).quoteReserve
        if y0 == target:
            break
        t += p.depthInterval
        chain.pending_timestamp = t
        amm.syncDepth(ETH, sender=alice)
        y1 = ch.marketState(ETH).quoteReserve
        assert y1 == min(target, deepen_cap(ch, p, ETH, y0))
    assert ch.marketState(ETH).quoteReserve == target


def expected_deepening(ch, p, mid, x0, y0, net, target):
    """The rule in the module docstring, recomputed: (x1, y1)."""
    mp = ch.marketParams(mid)
    y1 = min(target, deepen_cap(ch, p, mid, y0))
    u = abs(net)
    if u >= x0:
        return x0, y0
    v = mul_wad_down(x0 - u, mp.takerFee // 2)
    if u > v:
        y1 = min(y1, y0 * u // (u - v))
    if net >= 0:
        return ceil_div((x0 + net) * y1, y0) - net, y1
    return (x0 + net) * y1 // y0 - net, y1


def _lp(system, usdc, pool, lp, amount):
    units = system.units(amount)
    usdc.mint(lp, units, sender=lp)
    usdc.approve(pool, units, sender=lp)
    pool.deposit(units, lp, sender=lp)


@pytest.mark.parametrize("side", [1, -1], ids=["net long", "net short"])
def test_sync_depth_deepening_never_pays_the_net_position(system, ch, pool, usdc, alice, bob, chain, side):
    """With a net position open, deepening also shifts the curve against it so that what closing it pays does
    not rise: the booked cost is <= 0 (the rounding's wei go to the pool), the pool's NAV does not fall, and the
    price moves against the net position by at most takerFee / 2."""
    amm = system.amm
    system.fund(bob, 2_000_000)
    ch.openPosition(0, ETH, side * 400 * WAD, 2**255 if side > 0 else 0, _deadline(chain), sender=bob)
    _lp(system, usdc, pool, alice, 2_000_000)
    p = amm.ammParams(ETH)
    st0 = ch.marketState(ETH)
    x0, y0, net = st0.baseReserve, st0.quoteReserve, st0.longOpenInterest - st0.shortOpenInterest
    nav0, e0 = pool.navWad(), amm.netExitValue(ETH)
    tx = amm.syncDepth(ETH, sender=alice)
    st1 = ch.marketState(ETH)
    x1, y1 = st1.baseReserve, st1.quoteReserve
    assert (x1, y1) == expected_deepening(ch, p, ETH, x0, y0, net, mul_wad_down(nav0, p.depthRatio))
    assert y1 > y0  # it did deepen
    cost = exit_value(x1, y1, net) - exit_value(x0, y0, net)
    assert -10**6 < cost <= 0 and amm.netExitValue(ETH) - e0 == cost
    ev = tx.decode_logs(amm.DepthSyncCost)[0]
    assert (ev.cost, ev.totalCost) == (cost, cost) and amm.depthCost(ETH) == cost
    # Funding does not move within the block: NAV changes by -cost and nothing else.
    assert pool.navWad() == nav0 - cost >= nav0
    move = (st1.spotPrice - st0.spotPrice) * WAD // st0.spotPrice
    fee = ch.marketParams(ETH).takerFee
    assert (move < 0 if side > 0 else move > 0) and abs(move) <= fee // 2


def _big_net_long(system, ch, bob, chain):
    """A net long of some 1,400 ETH (more than the band lets one trade build: the index follows the vAMM
    up between the buys, each taking it 9 % above)."""
    system.fund(bob, 5_000_000)
    for _ in range(4):
        system.set_price("ETH", ch.spotPrice(ETH) // 10**10 / 10**8)
        st = ch.marketState(ETH)
        x1 = math.isqrt(st.baseReserve * st.quoteReserve * WAD // (ch.indexPrice(ETH) * 109 // 100))
        ch.openPosition(0, ETH, st.baseReserve - x1, 2**255, _deadline(chain), sender=bob)


@pytest.mark.parametrize("max_depth_cost", [0, 10**16], ids=["maxDepthCost 0", "maxDepthCost 1 %"])
def test_sync_depth_deepening_under_a_large_net_is_cut_to_half_a_fee_of_price(
        system, ch, pool, usdc, alice, bob, chain, deployer, max_depth_cost):
    """Under a large net long the shift bound binds before the step bound: the price moves by at most
    takerFee / 2, the net's exit value does not rise, and maxDepthCost (kept in the ABI) changes nothing."""
    amm = system.amm
    p = list(amm.ammParams(ETH))
    p[7] = max_depth_cost
    amm.setAmmParams(ETH, tuple(p), sender=deployer)
    _big_net_long(system, ch, bob, chain)
    _lp(system, usdc, pool, alice, 10_000_000)
    st0 = ch.marketState(ETH)
    x0, y0, net = st0.baseReserve, st0.quoteReserve, st0.longOpenInterest - st0.shortOpenInterest
    nav0 = pool.navWad()
    amm.syncDepth(ETH, sender=alice)
    st1 = ch.marketState(ETH)
    expected = expected_deepening(ch, amm.ammParams(ETH), ETH, x0, y0, net, mul_wad_down(nav0, p[0]))
    assert (st1.baseReserve, st1.quoteReserve) == expected
    assert y0 < st1.quoteReserve < deepen_cap(ch, amm.ammParams(ETH), ETH, y0)  # cut by the shift, not the step
    fee = ch.marketParams(ETH).takerFee
    move = (st0.spotPrice - st1.spotPrice) * WAD // st0.spotPrice
    # The bound is conservative (it measures the shift against x0 - u rather than the new reserve), so the move
    # falls somewhat short of it; it still binds.
    assert fee // 4 < move <= fee // 2
    assert exit_value(st1.baseReserve, st1.quoteReserve, net) <= exit_value(x0, y0, net)
    assert pool.navWad() >= nav0


def test_sync_depth_shrink_keeps_a_net_short_exit_finite(system, ch, pool, alice, bob, chain, deployer):
    """Shrinking stops at x1 >= 2 |net short|, so buying the net short back stays possible."""
    amm = system.amm
    system.fund(bob, 2_000_000)
    ch.openPosition(0, ETH, -400 * WAD, 0, _deadline(chain), sender=bob)
    p = list(amm.ammParams(ETH))
    p[0] = 10**15  # depthRatio 0.001: the target is far below today's depth
    p[1] = 5 * 10**17  # maxDepthChange 50 %
    amm.setAmmParams(ETH, tuple(p), sender=deployer)
    short = 400 * WAD
    t = chain.pending_timestamp
    for _ in range(6):
        st0 = ch.marketState(ETH)
        x0, y0 = st0.baseReserve, st0.quoteReserve
        chain.pending_timestamp = t
        amm.syncDepth(ETH, sender=alice)
        t += p[6]
        st1 = ch.marketState(ETH)
        floor = ceil_div(2 * short * y0, x0)
        assert st1.quoteReserve == min(y0, max(floor, y0 - mul_wad_down(y0, p[1])))
        assert st1.baseReserve >= 2 * short
        assert exit_value(st1.baseReserve, st1.quoteReserve, -short) < 0  # a finite buy-back cost
    # The floor holds the depth once reached (x1 rounds up, so y can only creep down by wei).
    assert y0 - st1.quoteReserve <= y0 // 10**18 and st1.baseReserve == 2 * short + 1
    ch.closePosition(0, ETH, 2**255, _deadline(chain), sender=bob)  # and the short can still close


def test_sync_depth_does_not_touch_positions(system, ch, vault, alice, chain):
    system.fund(alice, 10_000)
    ch.openPosition(0, ETH, 2 * WAD, 2**255, _deadline(chain), sender=alice)
    before = (ch.position(alice, 0, ETH), vault.accountValue(alice, 0))
    system.amm.syncDepth(ETH, sender=alice)
    assert (ch.position(alice, 0, ETH), vault.accountValue(alice, 0)) == before


def test_repeg_not_needed_when_mark_tracks_index(system, ch, alice):
    before = ch.marketState(ETH)
    assert before.lastUpdate > 0
    mark, index = ch.twaps(ETH)
    threshold = system.amm.ammParams(ETH).repegThreshold
    div = abs(mark - index) * WAD // index
    with expect_revert(system.amm.RepegNotNeeded, divergence=div, threshold=threshold):
        system.amm.repeg(ETH, sender=alice)
    assert ch.marketState(ETH) == before


def test_repeg_moves_price_toward_index_by_at_most_the_step_and_books_cost(system, ch, pool, alice, bob, chain):
    amm = system.amm
    system.fund(alice, 200_000)
    ch.openPosition(0, ETH, 100 * WAD, 2**255, _deadline(chain), sender=alice)  # net long 100
    system.set_price("ETH", 2700)  # index falls 10 %: mark stays above
    system.set_price("BTC", 60_000)
    # Record the move now: an interval is priced at the index last observed, so without this poke the
    # whole hour would enter the index TWAP at the old price and the divergence would depend on timing.
    ch.pokeFunding(ETH, sender=bob)
    chain.pending_timestamp += 3600
    ch.pokeFunding(ETH, sender=bob)
    chain.pending_timestamp += 10
    chain.mine()
    p = amm.ammParams(ETH)
    st = ch.marketState(ETH)
    nav = pool.navWad()
    p0 = st.spotPrice
    net = st.longOpenInterest - st.shortOpenInterest
    index = ch.indexPrice(ETH)
    x, n = st.baseReserve, abs(net)
    # The budget bounds the change of the net's exit value, x dp n / (x + n) for a net long.
    by_cost = mul_wad_down(nav, p.maxRepegCost) * (x + n) // x * WAD // n
    move = min(p0 - index, mul_wad_down(p0, p.maxRepegStep), by_cost)
    y1 = st.quoteReserve - x * move // WAD  # from the reserve, not the truncated spot
    p1 = y1 * WAD // x
    expected_cost = exit_value(x, y1, net) - exit_value(x, st.quoteReserve, net)
    tx = amm.repeg(ETH, sender=bob)
    ev = tx.decode_logs(amm.Repeg)[0]
    assert ch.marketState(ETH).quoteReserve == y1 and ch.marketState(ETH).baseReserve == x
    assert (ev.priceBefore, ev.priceAfter, ev.cost) == (p0, p1, expected_cost)
    assert expected_cost < 0  # net long and price down: the pool's liability shrinks
    assert abs(expected_cost) <= mul_wad_down(nav, p.maxRepegCost) + 2
    assert amm.repegCost(ETH) == expected_cost
    # NAV moves by -cost (and by the funding of the seconds between the reads, far below a cent)
    assert abs(pool.navWad() - (nav - expected_cost)) < WAD // 100
    assert amm.lastRepeg(ETH) == tx.timestamp and amm.lastRepeg(2) == 0
    # A second repeg inside the interval is refused, and changes nothing.
    snap = ch.marketState(ETH)
    with ape.reverts(amm.RepegTooSoon):
        amm.repeg(ETH, sender=bob)
    after = ch.marketState(ETH)
    assert (after.baseReserve, after.quoteReserve) == (snap.baseReserve, snap.quoteReserve)
    assert amm.repegCost(ETH) == expected_cost


def test_only_the_controller_sets_reserves(system, ch, alice):
    before = ch.marketState(ETH)
    with expect_revert(ch.UnauthorizedModule, caller=alice.address):
        ch.setReserves(ETH, WAD * 5, WAD * 5, sender=alice)
    assert ch.marketState(ETH) == before


@pytest.mark.parametrize("field,value", [("depthRatio", 0), ("maxDepthChange", 10**18), ("repegThreshold", 0),
                                         ("maxRepegStep", 0), ("maxRepegCost", 10**17), ("repegInterval", 2 * 86400),
                                         ("depthInterval", 59), ("depthInterval", 86401),
                                         ("maxDepthCost", 10**16 + 1)])
def test_set_amm_params_bounds(system, deployer, field, value):
    amm = system.amm
    current = amm.ammParams(ETH)
    names = ["depthRatio", "maxDepthChange", "repegThreshold", "maxRepegStep", "maxRepegCost", "repegInterval",
             "depthInterval", "maxDepthCost"]
    values = [getattr(current, n) for n in names]
    values[names.index(field)] = value
    with expect_revert(amm.ParameterOutOfBounds, value=value):
        amm.setAmmParams(ETH, tuple(values), sender=deployer)
    assert [getattr(amm.ammParams(ETH), n) for n in names] == [getattr(current, n) for n in names]


def test_unknown_market_and_owner_only(system, alice, deployer):
    amm = system.amm
    with expect_revert(amm.UnknownMarket, marketId=99):
        amm.syncDepth(99, sender=alice)
    with ape.reverts():
        amm.setAmmParams(1, tuple(amm.ammParams(1)), sender=alice)
