"""AmmController: depth follows the pool (price kept), repeg moves the vAMM toward the index, bounded.

Expected values come from the rules in IAmmController/AmmController's NatSpec, recomputed here:
  depth: y1 = clamp(depthRatio x NAV, y0 (1 -/+ maxDepthChange)), x1 = ceil(x0 y1 / y0)
  repeg: move = min(|index - p0|, p0 x maxRepegStep, maxRepegCost x NAV / |net OI|),
         y1 = floor(x0 p1), cost = ceil(net x (p1' - p0)) with p1' = floor(y1 / x0).
"""
import ape
import pytest

from trading_helpers import expect_revert

WAD = 10**18
ETH = 1


def ceil_div(a, b):
    return -((-a) // b)


def mul_wad_down(a, b):
    return a * b // WAD


def _deadline(chain):
    return chain.pending_timestamp + 3600


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
        lo, hi = y0 - mul_wad_down(y0, p.maxDepthChange), y0 + mul_wad_down(y0, p.maxDepthChange)
        y1 = min(max(target, lo), hi)
        x1 = ceil_div(x0 * y1, y0)
        amm.syncDepth(m.id, sender=alice)
        st = ch.marketState(m.id)
        assert (st.baseReserve, st.quoteReserve) == (x1, y1)
        assert y1 > y0  # deeper
        assert st.spotPrice <= states[m.id].spotPrice and states[m.id].spotPrice - st.spotPrice <= 1
    impact_after = ch.quote(ETH, 10 * WAD)[1] - ch.marketState(ETH).spotPrice
    assert impact_after < impact_before  # the same trade moves the price less


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
    move = min(p0 - index, mul_wad_down(p0, p.maxRepegStep), mul_wad_down(nav, p.maxRepegCost) * WAD // abs(net))
    y1 = st.baseReserve * (p0 - move) // WAD
    p1 = y1 * WAD // st.baseReserve
    expected_cost = ceil_div(net * (p1 - p0), WAD)
    tx = amm.repeg(ETH, sender=bob)
    ev = tx.decode_logs(amm.Repeg)[0]
    assert ch.marketState(ETH).quoteReserve == y1 and ch.marketState(ETH).baseReserve == st.baseReserve
    assert (ev.priceBefore, ev.priceAfter, ev.cost) == (p0, p1, expected_cost)
    assert expected_cost < 0  # net long and price down: the pool's liability shrinks
    assert abs(expected_cost) <= mul_wad_down(nav, p.maxRepegCost) + abs(net) // WAD + 1
    assert amm.repegCost(ETH) == expected_cost
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
                                         ("maxRepegStep", 0), ("maxRepegCost", 10**17), ("repegInterval", 2 * 86400)])
def test_set_amm_params_bounds(system, deployer, field, value):
    amm = system.amm
    current = amm.ammParams(ETH)
    names = ["depthRatio", "maxDepthChange", "repegThreshold", "maxRepegStep", "maxRepegCost", "repegInterval"]
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
