"""AmmController: depth follows the pool (price kept, the net position charged its exit change), repeg moves the vAMM toward the index, bounded.

Expected values come from the rules in IAmmController/AmmController's NatSpec, recomputed here:
  depth: at most once per depthInterval;
         shrink  y1 = max(depthRatio x NAV, y0 (1 - maxDepthChange), ceil(2 |net short| y0 / x0));
         deepen  y1 = min(depthRatio x NAV, y0 (1 + min(maxDepthChange, takerFee / maxSpread)), y0 sMax)
                 with sMax the largest scale whose exit-value change for the net position is within
                 min(maxDepthCost x NAV, takerFee x maxSpread x y0, |net| x price x takerFee / 2);
         x1 = ceil(x0 y1 / y0); exitChange = exit(x1, y1) - exit(x0, y0) of the net, charged back through
         the funding index at +-|exitChange| (1 +- takerFee) / |net| per base (rounded up, fee added, when the
         net gained; down, fee taken off, when it lost; positive = longs pay);
         cost = exitChange - (floor(net (F + charge)) - floor(net F)) <= 0;
  repeg: move = min(|index - p0|, p0 x maxRepegStep, maxRepegCost x NAV / |net OI|),
         y1 = floor(x0 p1), cost = ceil(net x (p1' - p0)) with p1' = floor(y1 / x0).
"""
import math

import ape
import pytest

from trading_helpers import funding_off, exit_value, expect_revert

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


def charge_of(exit_change, net, fee):
    """AmmController._depthCharge, recomputed: the exit change with the taker fee it saves or costs the close."""
    if exit_change == 0 or net == 0:
        return 0
    n = abs(net)
    magnitude = ceil_div(exit_change * (WAD + fee), n) if exit_change > 0 else -exit_change * (WAD - fee) // n
    return magnitude if (net > 0) == (exit_change > 0) else -magnitude


def _lp(system, usdc, pool, lp, amount):
    units = system.units(amount)
    usdc.mint(lp, units, sender=lp)
    usdc.approve(pool, units, sender=lp)
    pool.deposit(units, lp, sender=lp)




def _depth_budget(ch, pool, p, x0, y0, net, mid=ETH):
    mp = ch.marketParams(mid)
    return min(mul_wad_down(pool.navWad(), p.maxDepthCost), mul_wad_down(mul_wad_down(y0, mp.takerFee), mp.maxSpread),
               mul_wad_down(abs(net) * y0 // x0, mp.takerFee // 2))


@pytest.mark.parametrize("side", [1, -1], ids=["net long", "net short"])
def test_sync_depth_deepening_charges_the_net_position_its_exit_gain(
        system, ch, pool, usdc, alice, bob, chain, deployer, side):
    """Deepening under a net position keeps the price and improves the net's exit; that gain is charged back
    through the funding index (longs pay a rising index), so the pool's NAV does not fall (the booked cost is
    <= 0: the charge's rounding goes to the pool) and the position pays exactly its share of the charge."""
    amm = system.amm
    funding_off(system)
    system.fund(bob, 2_000_000)
    ch.openPosition(0, ETH, side * 400 * WAD, 2**255 if side > 0 else 0, _deadline(chain), sender=bob)
    _lp(system, usdc, pool, alice, 2_000_000)
    p = amm.ammParams(ETH)
    st0 = ch.marketState(ETH)
    x0, y0, net = st0.baseReserve, st0.quoteReserve, st0.longOpenInterest - st0.shortOpenInterest
    nav0, pending0 = pool.navWad(), ch.position(bob, 0, ETH)[2]
    tx = amm.syncDepth(ETH, sender=alice)
    st1 = ch.marketState(ETH)
    x1, y1 = st1.baseReserve, st1.quoteReserve
    assert y0 < y1 <= deepen_cap(ch, p, ETH, y0) and x1 == ceil_div(x0 * y1, y0)
    assert st1.spotPrice <= st0.spotPrice and st0.spotPrice - st1.spotPrice <= 1  # the price is kept
    exit_change = exit_value(x1, y1, net) - exit_value(x0, y0, net)
    assert 0 < exit_change <= _depth_budget(ch, pool, p, x0, y0, net)
    fee = ch.marketParams(ETH).takerFee
    charge = charge_of(exit_change, net, fee)
    assert (charge > 0) == (side > 0)
    assert st1.cumulativeFunding - st0.cumulativeFunding == charge  # funding off: only the charge moved it
    collected = (net * (st0.cumulativeFunding + charge)) // WAD - (net * st0.cumulativeFunding) // WAD
    cost = exit_change - collected
    # What the pool keeps: the fee part, and the rounding up of the charge (at most a wei per unit of base).
    assert -(exit_change * fee // WAD + abs(net) // WAD + 2) <= cost <= -(exit_change * fee // WAD)
    (ev,) = tx.decode_logs(amm.DepthSyncCost)
    assert (ev.cost, ev.totalCost) == (cost, cost) and amm.depthCost(ETH) == cost
    (charged,) = tx.decode_logs(amm.DepthCharged)
    assert (charged.marketId, charged.exitChange, charged.chargePerBase) == (ETH, exit_change, charge)
    assert pool.navWad() == nav0 - cost >= nav0
    # Bob is the whole net position: he owes the exit he gained (rounded up), so it gains him nothing.
    owed = ch.position(bob, 0, ETH)[2] - pending0
    assert owed == -((-(side * 400 * WAD) * charge) // WAD) >= exit_change


def test_sync_depth_shrinking_credits_the_net_position_its_exit_loss(system, ch, pool, alice, bob, chain, deployer):
    """Shrinking makes the net's exit worse; the positions are credited that loss (rounded down), so a depth
    cut neither pays the pool nor takes from the traders' side as a whole."""
    amm = system.amm
    funding_off(system)
    system.fund(bob, 2_000_000)
    ch.openPosition(0, ETH, 400 * WAD, 2**255, _deadline(chain), sender=bob)
    p = list(amm.ammParams(ETH))
    p[0] = 2 * WAD  # depthRatio 2: the target is below today's depth
    amm.setAmmParams(ETH, tuple(p), sender=deployer)
    st0 = ch.marketState(ETH)
    x0, y0, net = st0.baseReserve, st0.quoteReserve, st0.longOpenInterest - st0.shortOpenInterest
    nav0 = pool.navWad()
    amm.syncDepth(ETH, sender=alice)
    st1 = ch.marketState(ETH)
    assert st1.quoteReserve == y0 - mul_wad_down(y0, p[1])  # the step binds
    exit_change = exit_value(st1.baseReserve, st1.quoteReserve, net) - exit_value(x0, y0, net)
    fee = ch.marketParams(ETH).takerFee
    charge = charge_of(exit_change, net, fee)
    assert exit_change < 0 and charge < 0  # the longs are paid
    assert st1.cumulativeFunding - st0.cumulativeFunding == charge
    # The pool keeps the fee the shallower curve adds to the longs' close, and the rounding down.
    kept = -exit_change * fee // WAD
    assert kept <= pool.navWad() - nav0 <= kept + abs(net) // WAD + 2
    assert amm.depthCost(ETH) <= 0


def test_sync_depth_deepening_is_cut_to_the_cost_budget(system, ch, pool, usdc, alice, bob, chain, deployer):
    """A tight maxDepthCost binds before the step bound: the depth moves only as far as the budget allows."""
    amm = system.amm
    p = amm.ammParams(ETH)
    tight = list(p)
    tight[7] = 10**12  # maxDepthCost: 1e-6 of NAV
    amm.setAmmParams(ETH, tuple(tight), sender=deployer)
    system.fund(bob, 2_000_000)
    ch.openPosition(0, ETH, 400 * WAD, 2**255, _deadline(chain), sender=bob)
    _lp(system, usdc, pool, alice, 2_000_000)
    st0 = ch.marketState(ETH)
    x0, y0, net = st0.baseReserve, st0.quoteReserve, st0.longOpenInterest - st0.shortOpenInterest
    budget = mul_wad_down(pool.navWad(), 10**12)
    amm.syncDepth(ETH, sender=alice)
    st1 = ch.marketState(ETH)
    assert y0 < st1.quoteReserve < deepen_cap(ch, p, ETH, y0)  # cut by the budget, not the step
    exit_change = exit_value(st1.baseReserve, st1.quoteReserve, net) - exit_value(x0, y0, net)
    assert budget * 99 // 100 < exit_change <= budget  # and the budget is used, not wasted


def _big_net_long(system, ch, bob, chain):
    """A net long of some 1,400 ETH (more than the band lets one trade build: the index follows the vAMM
    up between the buys, each taking it 9 % above)."""
    system.fund(bob, 5_000_000)
    for _ in range(4):
        system.set_price("ETH", ch.spotPrice(ETH) // 10**10 / 10**8)
        st = ch.marketState(ETH)
        x1 = math.isqrt(st.baseReserve * st.quoteReserve * WAD // (ch.indexPrice(ETH) * 109 // 100))
        ch.openPosition(0, ETH, st.baseReserve - x1, 2**255, _deadline(chain), sender=bob)


def test_sync_depth_charge_per_base_is_at_most_half_a_taker_fee(system, ch, pool, usdc, alice, bob, chain, deployer):
    """Under a large net long (maxDepthCost at its bound, 1 %, so it does not bind) the charge bound binds:
    one sync charges a long at most takerFee / 2 of the price per unit of base."""
    amm = system.amm
    p = list(amm.ammParams(ETH))
    p[7] = 10**16
    amm.setAmmParams(ETH, tuple(p), sender=deployer)
    _big_net_long(system, ch, bob, chain)
    _lp(system, usdc, pool, alice, 10_000_000)
    st0 = ch.marketState(ETH)
    x0, y0, net = st0.baseReserve, st0.quoteReserve, st0.longOpenInterest - st0.shortOpenInterest
    mp = ch.marketParams(ETH)
    by_charge = mul_wad_down(net * y0 // x0, mp.takerFee // 2)
    assert by_charge < mul_wad_down(mul_wad_down(y0, mp.takerFee), mp.maxSpread)
    tx = amm.syncDepth(ETH, sender=alice)
    st1 = ch.marketState(ETH)
    assert y0 < st1.quoteReserve < deepen_cap(ch, amm.ammParams(ETH), ETH, y0)
    (charged,) = tx.decode_logs(amm.DepthCharged)
    assert by_charge * 99 // 100 < charged.exitChange <= by_charge
    per_base_limit = mul_wad_down(mul_wad_down(st0.spotPrice, mp.takerFee // 2), WAD + mp.takerFee)
    assert per_base_limit * 99 // 100 < charged.chargePerBase <= per_base_limit + 1


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
    """A sync leaves sizes and entries alone; a position on the net side owes (or is owed) its share of the
    depth charge as funding (here the whole net position, a 2 ETH long)."""
    system.fund(alice, 10_000)
    ch.openPosition(0, ETH, 2 * WAD, 2**255, _deadline(chain), sender=alice)
    size, notional, pending = ch.position(alice, 0, ETH)
    f0 = ch.marketState(ETH).cumulativeFunding
    system.amm.syncDepth(ETH, sender=alice)
    after = ch.position(alice, 0, ETH)
    assert (after.size, after.openNotional) == (size, notional)
    f1 = ch.marketState(ETH).cumulativeFunding
    # Her pending funding moves by her share of the index's move (accrual and charge), to the rounding wei.
    assert abs((after.pendingFunding - pending) - size * (f1 - f0) // WAD) <= 1


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
        ch.setReserves(ETH, WAD * 5, WAD * 5, 0, sender=alice)
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
