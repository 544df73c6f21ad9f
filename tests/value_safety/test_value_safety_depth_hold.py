"""Value safety: positions held across many depth syncs (two findings of 2026-12-05, fixed).

1. docs/pool.md proved that no round trip around *one* `syncDepth` beats its fees, but a deepening handed the
   net position up to min(maxDepthCost x NAV, takerFee x maxSpread x y0) of exit value each time, so a position
   held through k hourly syncs collected up to k times that while paying the taker fee once: with funding off
   (maxFundingRate 0, inside its bounds) a 465 ETH long / 540 ETH short held 12 hours ended +4,762 / +6,230
   USD, against -2,926 / -3,076 holding without syncs.
2. A first fix shifted the curve against the net position to keep its exit value; the mark then sat below the
   index, and funding plus repeg paid the shift back to the net position: an arbitrageur long 465 ETH at the
   index (after an index move) collected +21,435 USD over 48 hourly syncs, the pool -22,021 (review).
Now the exit change of a rescale is charged back to the positions through the funding index (price kept): a
position that is the net position gains nothing from the syncs in either shape, and every sync's booked cost
is <= 0. Each attack runs end to end here against its no-sync control.
"""
import math

import pytest

from helpers.trading import funding_off
from helpers.value_safety import (ETH, at, attempt, band_room, cash_out, crew, deposit,  # noqa: F401 - crew: fixture
                                  lp_deposit, mint, start, trade, usd, wealth)
from vperp.units import WAD

DUST = 10**13
HOURS = 12


def _hold(system, chain, crew, side: int, syncs: bool):
    """The attacker opens the largest position the band allows on `side`, holds it HOURS hours (feeds
    refreshed at a constant index), with or without an hourly `syncDepth` by a keeper, and closes. Returns
    (attacker's gain, pool NAV change, depth cost booked) [wad]."""
    s, pool, amm = system, system.pool, system.amm
    atk = crew.atk[0]
    lp_deposit(s, crew.honest_lp, 10_000_000)  # NAV 20M: the depth target 60M, the depth 30M
    mint(s, atk, 600_000)
    holders = [(atk, [0])]
    t = start(chain)
    w0, nav0, cost0 = wealth(s, holders), pool.navWad(), amm.depthCost(ETH)
    at(chain, t + 10)
    deposit(s, atk, 600_000)
    b = min(900 * WAD, band_room(s, ETH, buy=side > 0))
    assert attempt(lambda: trade(s, atk, ETH, side * b), "open")
    for h in range(1, HOURS + 1):
        at(chain, t + 10 + h * 3_601)
        s.markets["ETH"].oracle.updateAnswer(3_000 * 10**8, sender=s.deployer)
        s.markets["BTC"].oracle.updateAnswer(60_000 * 10**8, sender=s.deployer)
        if syncs:
            assert attempt(lambda: amm.syncDepth(ETH, sender=crew.keeper), f"sync {h}")
    cash_out(s, atk, [0])
    return wealth(s, holders) - w0, pool.navWad() - nav0, amm.depthCost(ETH) - cost0


@pytest.mark.parametrize("side", [1, -1], ids=["long", "short"])
def test_at_the_shipped_funding_a_patient_holder_loses(system, chain, crew, side):
    gain, nav, cost = _hold(system, chain, crew, side, syncs=True)
    print(f"\nshipped funding, {HOURS} hourly syncs: depth cost {usd(cost)} USD, holder {usd(gain)} USD, "
          f"pool NAV {usd(nav)} USD")
    assert cost <= 0  # no sync handed the net position exit value
    assert gain < 0 and nav > 0


@pytest.mark.parametrize("side", [1, -1], ids=["long", "short"])
def test_with_funding_off_a_patient_holder_gains_nothing_from_depth_syncs(system, chain, crew, side):
    funding_off(system)
    snap = chain.snapshot()
    control, _, _ = _hold(system, chain, crew, side, syncs=False)
    chain.restore(snap)
    assert control < 0  # holding without syncs only pays the fees
    gain, nav, cost = _hold(system, chain, crew, side, syncs=True)
    print(f"\nfunding off, {HOURS} hourly syncs: depth cost {usd(cost)} USD, holder {usd(gain)} USD, "
          f"pool NAV {usd(nav)} USD")
    assert gain <= DUST, f"the holder gained {usd(gain)} USD from {HOURS} depth syncs"
    # Nothing from the syncs: holding through them is no better than holding without them (the charge is
    # rounded against the holder), the syncs' booked cost is <= 0 and the pool's NAV does not fall.
    assert gain <= control and cost <= 0 and nav >= 0


def _arbitrage_then_hold(system, chain, crew, syncs: bool, hours: int):
    """The index moves 3,000 -> 3,150 -> 3,300 and the attacker is the arbitrageur who buys the mark along (mark =
    index after each buy, so it holds a net long of about 465 ETH at no premium); it holds `hours` hours while a
    keeper syncs depth hourly (an honest LP's 10M deposit made the target 60M) and tries a repeg hourly, then
    closes. Returns (attacker's gain, pool NAV change) [wad]."""
    s, pool, amm, ch = system, system.pool, system.amm, system.clearing_house
    atk = crew.atk[0]
    lp_deposit(s, crew.honest_lp, 10_000_000)
    mint(s, atk, 600_000)
    holders = [(atk, [0])]
    t = start(chain)
    w0, nav0 = wealth(s, holders), pool.navWad()
    at(chain, t + 10)
    deposit(s, atk, 600_000)
    for i, px in enumerate((3_150, 3_300)):
        at(chain, t + 20 + i * 1_000)
        s.markets["ETH"].oracle.updateAnswer(px * 10**8, sender=s.deployer)
        st = ch.marketState(ETH)
        x1 = math.isqrt(st.baseReserve * st.quoteReserve * WAD // (px * WAD))
        buy = (st.baseReserve - x1) // 10**16 * 10**16
        assert attempt(lambda: trade(s, atk, ETH, buy), f"arbitrage {i}")
    for h in range(1, hours + 1):
        at(chain, t + 3_000 + h * 3_601)
        s.markets["ETH"].oracle.updateAnswer(3_300 * 10**8, sender=s.deployer)
        s.markets["BTC"].oracle.updateAnswer(60_000 * 10**8, sender=s.deployer)
        if syncs:
            assert attempt(lambda: amm.syncDepth(ETH, sender=crew.keeper), f"sync {h}")
        attempt(lambda: amm.repeg(ETH, sender=crew.keeper), f"repeg {h}")  # refused while not needed
    cash_out(s, atk, [0])
    return wealth(s, holders) - w0, pool.navWad() - nav0


def test_an_arbitrageur_at_the_index_gains_nothing_from_depth_syncs(system, chain, crew):
    """Finding 2's attack at the shipped funding: with the mark kept at the index by every sync, no premium
    funding or repeg flows to the net position, and the charge takes back the exit value it gained."""
    snap = chain.snapshot()
    control, control_nav = _arbitrage_then_hold(system, chain, crew, syncs=False, hours=24)
    chain.restore(snap)
    gain, nav = _arbitrage_then_hold(system, chain, crew, syncs=True, hours=24)
    print(f"\narbitrageur at the index, 24 hourly syncs: {usd(gain)} USD (control {usd(control)}), "
          f"pool NAV {usd(nav)} USD (control {usd(control_nav)})")
    assert gain <= control, f"the syncs made the net holder {usd(gain - control)} USD"
    assert nav >= control_nav
