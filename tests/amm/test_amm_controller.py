"""AmmController: depth follows the pool (the net position charged or credited its exit change), repeg moves
the peg toward the index, bounded.

Expected values come from the rules in IAmmController/AmmController's NatSpec, recomputed here:
  peg:   P = x y / (x + net)^2 (rounded down twice), the curve's price at zero net position (pegPrice);
  depth: at most once per depthInterval; the quote reserve steps toward depthRatio x NAV within the step and
         cost bounds; deepening (or any sync with no net position) scales the base reserve by the same factor
         (rounded up, so the price never rises), a shrink under a net position scales the curve about its
         zero-skew point (the peg kept); the net position's exit change is charged back through the funding
         index (positive = longs pay) and the booked cost is never positive;
  repeg: refused while |P - index| / index <= repegThreshold, and before lastRepeg + max(repegInterval, 1);
         move = min(|index - P|, P x maxRepegStep, floor(floor(maxRepegCost x NAV) x / (x + net)) 1e18 / |net|),
         y1 = y +- floor(floor(move (x + net) / x) (x + net) / 1e18), x kept;
         cost = exit(x, y1) - exit(x, y) of the net (the pool's NAV moves by -cost).
"""
import math
from fractions import Fraction

import ape
import pytest

from helpers.liquidation import (deposit, kick_checked, lp_tuple, lparams, mul_up, one_event, reverts_unchanged,
                                 set_price)
from helpers.markets import list_market
from helpers.trading import ZERO, Amm, exit_value, expect_revert, funding_off, trade

from vperp.units import HOUR, WAD
ETH = 1


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


def _at(chain, gap=1):
    """Pin the next block `gap` seconds after the head block; return its time."""
    t = chain.blocks.head.timestamp + gap
    chain.pending_timestamp = t
    return t


def peg_of(x, y, net):
    """AmmController._peg: x y / (x + net)^2 [wad], rounded down twice."""
    z = x + net
    return (x * y // z) * WAD // z


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


def _shrink_due(amm, deployer, mid=ETH):
    """depthRatio 2 (the target below today's depth: the next sync shrinks); returns the market's AmmParams."""
    p = list(amm.ammParams(mid))
    p[0] = 2 * WAD
    amm.setAmmParams(mid, tuple(p), sender=deployer)
    return amm.ammParams(mid)


def band_floor(x0, y0, net, index, band):
    """AmmController._bandFloor restated: the spot after a shrink about the zero-skew point is P (s Z / (s Z - net))^2
    (P the peg); it stays within index +- floor(index x band) while s Z >= q n / (q - 1) (net long, q = sqrt((index +
    edge) / P) rounded down) or s Z >= q n / (1 - q) (net short, q rounded up); y0 when q is past 1."""
    n, z, peg, edge = abs(net), x0 + net, peg_of(x0, y0, net), index * band // WAD
    if net > 0:
        q = math.isqrt((index + edge) * WAD // peg * WAD)
        if q <= WAD:
            return y0
        s_min = ceil_div(q * n * WAD, (q - WAD) * z)
    else:
        r = ceil_div((index - edge) * WAD, peg) * WAD
        q = math.isqrt(r)
        q += q * q < r
        if q >= WAD:
            return y0
        s_min = ceil_div(q * n * WAD, (WAD - q) * z)
    return ceil_div(y0 * s_min, WAD)


def shrink_expected(ch, pool, p, st, mid=ETH):
    """AmmController._depthStep's shrink branch and _shrinkKeepingPeg, restated from their NatSpec: the scale s
    (a quote reserve y0 s) is the target at zero net position within maxDepthChange and, under a net position n,
    not below ceil(y0 sMin): with Z = x0 + net, Y = floor(x0 y0 / Z) and the budget B, a net long's exit
    E(s) = s Y n / (s Z - n) may rise by at most B (sMin = ceil((e0 + B) n / ((e0 + B) Z - Y n))), a net short's
    buy-back cost C(s) = s Y n / (s Z + n) may fall by at most B, and s Z >= n (x1 >= 2 |net short|). Then
    Z1 = floor(Z y0 s / y0), x1 = Z1 - net, y1 = floor(floor(Y Z1 / Z) Z1 / x1); and not below `band_floor`."""
    mp = ch.marketParams(mid)
    x0, y0, net = st.baseReserve, st.quoteReserve, st.longOpenInterest - st.shortOpenInterest
    n, z = abs(net), x0 + net
    yz = x0 * y0 // z
    target = mul_wad_down(pool.navWad(), p.depthRatio) * z // x0  # amplification 1 (default markets)
    lo = y0 - mul_wad_down(y0, p.maxDepthChange)
    budget = _depth_budget(ch, pool, p, x0, y0, net, mid)
    if net > 0:
        t = exit_value(x0, y0, net) + budget
        s_min = ceil_div(t * n * WAD, t * z - yz * n)
    else:
        s_min = ceil_div(n * WAD, z)
        c0 = -exit_value(x0, y0, net)
        if c0 > budget:
            r = c0 - budget
            s_min = max(s_min, ceil_div(r * n * WAD, yz * n - r * z))
    lo = max(lo, ceil_div(y0 * s_min, WAD))
    scaled = min(lo, y0) if target < lo else target
    if scaled < y0:  # the spot kept inside the band: _bandFloor
        scaled = max(scaled, min(band_floor(x0, y0, net, ch.indexPrice(mid), mp.maxSpread), y0))
    if scaled == y0:
        return x0, y0
    z1 = z * scaled // y0
    x1 = z1 - net
    return x1, (yz * z1 // z) * z1 // x1


@pytest.mark.parametrize("side", [1, -1], ids=["net long", "net short"])
def test_sync_depth_shrinking_keeps_the_peg_and_charges_the_net_position_its_exit_gain(
        system, ch, pool, alice, bob, chain, deployer, side):
    """Shrinking under a net position scales the curve about its zero-skew point: the peg is kept (to a wei), so
    no repeg follows to move it back at the pool's cost. The net side's curve gets steeper (a net long's spot
    rises, a net short's falls) and its exit improves; that gain is charged back through the funding index
    (rounded up), within the same per-sync budget as a deepening (here `|net| x price x f / 2` binds, not the 20 %
    step): the pool's NAV does not fall and the booked cost is <= 0."""
    amm = system.amm
    funding_off(system)
    system.fund(bob, 2_000_000)
    ch.openPosition(0, ETH, side * 400 * WAD, 2**255 if side > 0 else 0, _deadline(chain), sender=bob)
    p = _shrink_due(amm, deployer)
    st0 = ch.marketState(ETH)
    x0, y0, net = st0.baseReserve, st0.quoteReserve, st0.longOpenInterest - st0.shortOpenInterest
    nav0, pending0 = pool.navWad(), ch.position(bob, 0, ETH)[2]
    want = shrink_expected(ch, pool, p, st0)
    tx = amm.syncDepth(ETH, sender=alice)
    st1 = ch.marketState(ETH)
    x1, y1 = st1.baseReserve, st1.quoteReserve
    assert (x1, y1) == want
    assert x1 + net < x0 + net  # the zero-skew reserves shrank ...
    assert y0 - mul_wad_down(y0, p.maxDepthChange) < y1  # ... by less than the step: the budget binds
    peg0, peg1 = peg_of(x0, y0, net), peg_of(x1, y1, net)
    assert 0 <= peg0 - peg1 <= 1  # the peg is kept (rounded down)
    assert (st1.spotPrice > st0.spotPrice) == (side > 0)  # the net side's curve is steeper
    exit_change = exit_value(x1, y1, net) - exit_value(x0, y0, net)
    assert 0 < exit_change <= _depth_budget(ch, pool, p, x0, y0, net)
    mp = ch.marketParams(ETH)
    charge = charge_of(exit_change, net, mp.takerFee)
    assert (charge > 0) == (side > 0)  # the net side pays
    assert st1.cumulativeFunding - st0.cumulativeFunding == charge
    per_base_limit = mul_wad_down(mul_wad_down(st0.spotPrice, mp.takerFee // 2), WAD + mp.takerFee)
    assert abs(charge) <= per_base_limit + 1
    (charged,) = tx.decode_logs(amm.DepthCharged)
    assert (charged.exitChange, charged.chargePerBase) == (exit_change, charge)
    assert pool.navWad() >= nav0 and amm.depthCost(ETH) <= 0
    owed = ch.position(bob, 0, ETH)[2] - pending0
    assert owed >= exit_change  # bob is the whole net position: he owes at least the exit he gained


def test_sync_depth_shrinking_with_no_net_position_scales_both_reserves(system, ch, pool, alice, chain, deployer):
    """With no net position the zero-skew point is the live one: a shrink is the 20 % step on both reserves
    (the base rounded up, so the price can only fall by a wei), and nothing is charged."""
    amm = system.amm
    p = _shrink_due(amm, deployer)
    st0 = ch.marketState(ETH)
    x0, y0 = st0.baseReserve, st0.quoteReserve
    tx = amm.syncDepth(ETH, sender=alice)
    st1 = ch.marketState(ETH)
    assert st1.quoteReserve == y0 - mul_wad_down(y0, p.maxDepthChange)  # the step binds
    assert st1.baseReserve == ceil_div(x0 * st1.quoteReserve, y0)
    assert 0 <= st0.spotPrice - st1.spotPrice <= 1
    (charged,) = tx.decode_logs(amm.DepthCharged)
    assert (charged.exitChange, charged.chargePerBase) == (0, 0) and st1.cumulativeFunding == st0.cumulativeFunding


def test_sync_depth_shrink_stops_at_the_band(system, ch, pool, alice, bob, chain, deployer):
    """A shrink about the zero-skew point moves a net long's spot up, away from the kept peg; it stops where the
    spot reaches the band around the index (index + floor(index x maxSpread)), so it never suspends LP flows or
    holds trades the way a dislocated market does. Here a long has taken the spot 9.9 % above the index and the
    band (10 %) binds before the charge budget; the next sync finds the spot at the edge and keeps the depth."""
    amm = system.amm
    funding_off(system)
    system.fund(bob, 2_000_000)
    st = ch.marketState(ETH)
    mp = ch.marketParams(ETH)
    index = ch.indexPrice(ETH)
    # The base whose purchase puts the spot 9.9 % over the index (the peg = the index: no net position yet).
    x_after = math.isqrt(st.baseReserve * st.quoteReserve * WAD // (index * 1099 // 1000))
    ch.openPosition(0, ETH, st.baseReserve - x_after, 2**255, _deadline(chain), sender=bob)
    p = _shrink_due(amm, deployer)
    st0 = ch.marketState(ETH)
    x0, y0, net = st0.baseReserve, st0.quoteReserve, st0.longOpenInterest - st0.shortOpenInterest
    want = shrink_expected(ch, pool, p, st0)
    t = _at(chain)
    amm.syncDepth(ETH, sender=alice)
    st1 = ch.marketState(ETH)
    assert (st1.baseReserve, st1.quoteReserve) == want
    assert st1.quoteReserve < y0  # it shrank ...
    edge = index + index * mp.maxSpread // WAD
    assert index * 10_998 // 10_000 < st1.spotPrice <= edge  # ... to the band's edge, not past it
    assert 0 <= peg_of(x0, y0, net) - peg_of(st1.baseReserve, st1.quoteReserve, net) <= 1
    assert not pool.lpFlowsSuspended()[0]
    chain.pending_timestamp = t + p.depthInterval
    amm.syncDepth(ETH, sender=alice)
    st2 = ch.marketState(ETH)
    assert (st2.baseReserve, st2.quoteReserve) == (st1.baseReserve, st1.quoteReserve)  # at the edge: kept


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
    """Repeated shrinks under a net short (target far below, 50 % steps) move only as far as the charge budget
    allows, keep the peg, keep x >= 2 |net short| (the rule's last floor, s Z >= n), so buying the net short back
    stays possible at a finite price, and the short can close."""
    amm = system.amm
    system.fund(bob, 2_000_000)
    ch.openPosition(0, ETH, -400 * WAD, 0, _deadline(chain), sender=bob)
    p = list(amm.ammParams(ETH))
    p[0] = 10**15  # depthRatio 0.001: the target is far below today's depth
    p[1] = 5 * 10**17  # maxDepthChange 50 %
    amm.setAmmParams(ETH, tuple(p), sender=deployer)
    p = amm.ammParams(ETH)
    short = 400 * WAD
    t = chain.pending_timestamp
    for _ in range(6):
        st0 = ch.marketState(ETH)
        want = shrink_expected(ch, pool, p, st0)
        chain.pending_timestamp = t
        amm.syncDepth(ETH, sender=alice)
        t += p.depthInterval
        st1 = ch.marketState(ETH)
        assert (st1.baseReserve, st1.quoteReserve) == want
        assert st1.quoteReserve < st0.quoteReserve and st1.baseReserve >= 2 * short
        assert 0 <= peg_of(st0.baseReserve, st0.quoteReserve, -short) - peg_of(st1.baseReserve, st1.quoteReserve,
                                                                                 -short) <= 1
        assert exit_value(st1.baseReserve, st1.quoteReserve, -short) < 0  # a finite buy-back cost
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


def test_repeg_not_needed_while_the_peg_tracks_the_index(system, ch, alice, bob, chain):
    """The repeg rule reads the peg, not the mark: a 400 ETH long puts the mark some 8 % above the index and an
    hour passes at it (the mark TWAP far from the index TWAP), but a trade does not move the peg, x y / (x + net)^2
    (beyond the swaps' rounding up), so the repeg is refused with RepegNotNeeded(|peg - index| / index = 0,
    repegThreshold) and changes nothing."""
    amm = system.amm
    system.fund(alice, 2_000_000)
    peg0 = amm.pegPrice(ETH)
    assert peg0 == ch.indexPrice(ETH) == ch.spotPrice(ETH)
    ch.openPosition(0, ETH, 400 * WAD, 2**255, _deadline(chain), sender=alice)
    assert ch.spotPrice(ETH) * 100 > peg0 * 108
    t = _at(chain)
    ch.pokeFunding(ETH, sender=bob)
    chain.pending_timestamp = t + 3600
    ch.pokeFunding(ETH, sender=bob)
    mark, index = ch.twaps(ETH)
    threshold = amm.ammParams(ETH).repegThreshold
    assert abs(mark - index) * WAD // index > threshold  # the mark TWAP's divergence would have repegged
    before = tuple(ch.marketState(ETH))[:5]  # reserves, spot and open interest
    peg = amm.pegPrice(ETH)
    assert 0 <= peg - peg0 <= 10
    div = abs(peg - ch.indexPrice(ETH)) * WAD // ch.indexPrice(ETH)
    assert div == 0
    with expect_revert(amm.RepegNotNeeded, divergence=div, threshold=threshold):
        chain.pending_timestamp = t + 3601
        amm.repeg(ETH, sender=alice)
    assert tuple(ch.marketState(ETH))[:5] == before and amm.lastRepeg(ETH) == 0 and amm.repegCost(ETH) == 0


def test_repeg_moves_the_peg_toward_the_index_by_at_most_the_step_and_books_cost(system, ch, pool, alice, bob, chain):
    """The index 10 % below the peg under a 100 ETH net long: a repeg moves the peg, x y / (x + net)^2, down by
    min(gap, peg x maxRepegStep, cost bound) = the step (to within 2 wei; toward the index, not past it), the
    quote reserve alone changing, by floor(floor(move (x + net) / x) (x + net) / 1e18). The cost is the change of
    the net's exit value (netExitValue), here < 0 (the long's exit value falls), within maxRepegCost x NAV; it is
    booked in repegCost and the pool's NAV moves by exactly -cost. A second repeg before lastRepeg +
    repegInterval is refused (RepegTooSoon) and changes nothing; at that time the next step is allowed."""
    amm = system.amm
    funding_off(system)  # NAV without a time term: it moves by the repeg's cost alone
    system.fund(alice, 200_000)
    ch.openPosition(0, ETH, 100 * WAD, 2**255, _deadline(chain), sender=alice)  # net long 100
    system.set_price("ETH", 2700)  # index falls 10 %: the peg stays above
    system.set_price("BTC", 60_000)
    p = amm.ammParams(ETH)
    st = ch.marketState(ETH)
    nav = pool.navWad()
    p0 = st.spotPrice
    net = st.longOpenInterest - st.shortOpenInterest
    index = ch.indexPrice(ETH)
    x, y, n = st.baseReserve, st.quoteReserve, abs(net)
    z = x + net
    peg0 = amm.pegPrice(ETH)
    assert peg0 == peg_of(x, y, net) and (peg0 - index) * WAD // index > p.repegThreshold
    budget = mul_wad_down(nav, p.maxRepegCost)
    by_cost = budget * x // z * WAD // n  # the peg move whose exit-value change, move n (x + net) / x, is the budget
    move = min(peg0 - index, mul_wad_down(peg0, p.maxRepegStep), by_cost)
    assert move == mul_wad_down(peg0, p.maxRepegStep) < by_cost  # the step binds
    y1 = y - (move * z // x) * z // WAD
    p1 = y1 * WAD // x
    expected_cost = exit_value(x, y1, net) - exit_value(x, y, net)
    exit0 = amm.netExitValue(ETH)
    t = _at(chain)
    tx = amm.repeg(ETH, sender=bob)
    assert tx.timestamp == t
    ev = tx.decode_logs(amm.Repeg)[0]
    assert ch.marketState(ETH).quoteReserve == y1 and ch.marketState(ETH).baseReserve == x
    assert (ev.marketId, ev.priceBefore, ev.priceAfter, ev.indexPrice, ev.cost) == (ETH, p0, p1, index, expected_cost)
    peg1 = amm.pegPrice(ETH)
    assert index < peg1 and -1 <= peg1 - (peg0 - move) <= 2  # one step toward the index (a wei of rounding)
    assert expected_cost == amm.netExitValue(ETH) - exit0 < 0  # net long and the peg down: the pool's liability shrinks
    assert -expected_cost <= budget + 1
    assert amm.repegCost(ETH) == expected_cost
    assert pool.navWad() == nav - expected_cost
    assert amm.lastRepeg(ETH) == tx.timestamp and amm.lastRepeg(2) == 0
    # A second repeg inside the interval is refused, and changes nothing.
    snap = ch.marketState(ETH)
    with expect_revert(amm.RepegTooSoon, nextAllowed=t + p.repegInterval, timestamp=t + p.repegInterval - 1):
        chain.pending_timestamp = t + p.repegInterval - 1
        amm.repeg(ETH, sender=bob)
    after = ch.marketState(ETH)
    assert (after.baseReserve, after.quoteReserve) == (snap.baseReserve, snap.quoteReserve)
    assert amm.repegCost(ETH) == expected_cost and amm.lastRepeg(ETH) == t
    # At lastRepeg + repegInterval: the next step.
    chain.pending_timestamp = t + p.repegInterval
    tx2 = amm.repeg(ETH, sender=bob)
    assert tx2.timestamp == t + p.repegInterval and amm.lastRepeg(ETH) == tx2.timestamp
    assert -1 <= amm.pegPrice(ETH) - (peg1 - mul_wad_down(peg1, p.maxRepegStep)) <= 2


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


# ---------------------------------------------------------------------------- guards and budgets


@pytest.mark.usefixtures("batcher", "actors_no_funding")  # funding off (no time term), actors funded
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


@pytest.mark.usefixtures("batcher", "actors_no_funding")  # funding off (no time term), actors funded
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


@pytest.mark.usefixtures("batcher", "actors_no_funding")  # funding off (no time term), actors funded
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


@pytest.mark.usefixtures("batcher", "actors_no_funding")  # funding off (no time term), actors funded
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


@pytest.mark.usefixtures("batcher", "actors_no_funding")  # funding off (no time term), actors funded
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
