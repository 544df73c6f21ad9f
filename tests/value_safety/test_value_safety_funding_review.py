"""An attacker's review of the funding path and the pool's valuation (funding index, depth charges through it, the
NAV's aggregates), 2026-12-07: no leak beyond the documented rules. Each test is an attack run end to end against a
control on the same chain state without the step the attack relies on (chain.snapshot / restore); the attacker's and
the honest parties' wealth are measured in USD (helpers.value_safety.wealth). Block times are set explicitly.

The closest to a leak is documented in docs/pool.md ("What a sync can give whom"): the minority side of a market
collects the depth charges the net side pays, and an attacker can switch them on by an LP deposit of its own (a
transfer from the net side's traders, the pool untouched). The file takes about a minute, so it runs with the long
profile only: VPERP_FUZZ=long ./run.sh test tests/value_safety/test_value_safety_funding_review.py -s
"""
import os

import pytest

from helpers.trading import exit_value, funding_off
from helpers.value_safety import (ETH, at, attempt, band_room, cash_out, crew, deposit,  # noqa: F401 - crew: fixture
                                  lp_deposit, mint, start, trade, usd, wealth, close)
from vperp.units import WAD

DUST = 10**13

pytestmark = pytest.mark.skipif(os.environ.get("VPERP_FUZZ", "").lower() != "long",
                                reason="about a minute: runs with the long profile (VPERP_FUZZ=long)")


# ---------------------------------------------------------------------------- depth charge paid to the minority side


def _minority_hold(system, chain, crew, syncs: bool, hours: int, atk_frac: int = 50, lp_is_attacker: bool = False):
    """An honest victim opens a long of what the band allows (the net long); the attacker opens a short of
    `atk_frac` % of it from its own account (the minority side: the net stays long). A keeper syncs depth hourly
    (an honest LP's 10M deposit made the target deeper than the curve), feeds refreshed at a constant index;
    after `hours` the attacker closes, then the victim. Returns (attacker gain, victim gain, pool NAV change)."""
    s, pool, amm = system, system.pool, system.amm
    atk, victim = crew.atk[0], crew.victim
    lp = crew.atk[1] if lp_is_attacker else crew.honest_lp
    atk_holders = [(atk, [0]), (crew.atk[1], [])]  # atk[1]'s pool shares count in the attacker's wealth
    lp_deposit(s, lp, 10_000_000)
    mint(s, atk, 600_000)
    mint(s, victim, 1_200_000)
    t = start(chain)
    w_atk0, w_vic0, nav0 = wealth(s, atk_holders), wealth(s, [(victim, [0])]), pool.navWad()
    at(chain, t + 10)
    deposit(s, atk, 600_000)
    deposit(s, victim, 1_200_000)
    b = min(900 * WAD, band_room(s, ETH, buy=True))
    assert attempt(lambda: trade(s, victim, ETH, b), "victim long")
    at(chain, t + 20)
    a = b * atk_frac // 100 // 10**16 * 10**16
    assert attempt(lambda: trade(s, atk, ETH, -a), "attacker short")
    for h in range(1, hours + 1):
        at(chain, t + 20 + h * 3_601)
        s.markets["ETH"].oracle.updateAnswer(3_000 * 10**8, sender=s.deployer)
        s.markets["BTC"].oracle.updateAnswer(60_000 * 10**8, sender=s.deployer)
        if syncs:
            attempt(lambda: amm.syncDepth(ETH, sender=crew.keeper), f"sync {h}")
    cash_out(s, atk, [0])
    cash_out(s, victim, [0])
    return (wealth(s, atk_holders) - w_atk0, wealth(s, [(victim, [0])]) - w_vic0, pool.navWad() - nav0)


@pytest.mark.parametrize("lp_is_attacker", [False, True], ids=["honest-lp-deposit", "attacker-lp-deposit"])
@pytest.mark.parametrize("atk_frac", [50, 90])
def test_the_minority_side_collects_depth_charges_from_the_net_side_not_the_pool(system, chain, crew, atk_frac,
                                                                                 lp_is_attacker):
    """The depth charge is c = exitChange x (1 + f) / net per unit, paid by every unit on the net side and RECEIVED by
    every unit on the other side. A minority-side position (here the attacker's short under an honest net long)
    collects c on each sync while its own exit value also moves with the curve: does it gain from the syncs?"""
    funding_off(system)
    snap = chain.snapshot()
    c_atk, c_vic, c_nav = _minority_hold(system, chain, crew, False, 12, atk_frac, lp_is_attacker)
    chain.restore(snap)
    g_atk, g_vic, g_nav = _minority_hold(system, chain, crew, True, 12, atk_frac, lp_is_attacker)
    print(f"\n{'attacker' if lp_is_attacker else 'honest'} LP 10M; minority short {atk_frac}% of the net long, 12 hourly syncs, funding off: attacker {usd(g_atk)} USD "
          f"(control {usd(c_atk)}), victim {usd(g_vic)} (control {usd(c_vic)}), pool NAV {usd(g_nav)} "
          f"(control {usd(c_nav)})")
    # What the review found: the attacker ends ABOVE what it put in (+2,428.54 USD at 50 %, +4,523.10 at 90 %; +3,926.19
    # and +7,168.46 against the control), paid by the honest net-side long (-3,925.84 / -7,155.61 against the control),
    # not by the pool (its NAV -10.27 USD against the control at 90 %: the fee on the closes' changed quotes). The
    # attacker needs no honest LP: its own 10M LP deposit (attacker-lp-deposit) makes the same syncs due, and its
    # shares keep their value. docs/pool.md ("What a
    # sync can give whom") states this transfer: a position opposite the net collects up to f/2 of the price per unit
    # and sync, plus the deeper curve's slippage return, "the way the balancing side of a market collects funding".
    # Asserted: the documented bounds, i.e. the pool does not pay it (its NAV moves only by the fee on the closes'
    # changed quotes, below 0.1 bp of the notional) and the attacker's take is within f/2 per unit per sync plus the
    # slippage return (at most f per unit per sync, i.e. 12 x f x notional).
    fee = system.clearing_house.marketParams(ETH).takerFee
    notional = 900 * 3_000 * WAD * atk_frac // 100
    assert g_nav >= c_nav - notional // 100_000
    assert g_atk - c_atk <= 12 * notional * fee // WAD
    assert g_atk - c_atk > 0 and (g_atk - c_atk) + (g_vic - c_vic) <= notional // 100_000  # a transfer, not new value


# ---------------------------------------------------------------------------- the NAV's funding aggregate vs positions


def _nav_funding_vs_positions(s, holders):
    """(funding the NAV counts the traders as owing, the sum of what the positions would pay now, rounded up each)
    for ETH (the only market with positions). The NAV's figure is recovered from tradersExitPnl:
    exit - sum(openNotional) - pnl."""
    ch = s.clearing_house
    st = ch.marketState(ETH)
    net = st.longOpenInterest - st.shortOpenInterest
    sum_on, pending = 0, 0
    for who, subs in holders:
        for sub in subs:
            size, on, pf = ch.position(who, sub, ETH)
            if size:
                sum_on += on
                pending += pf
    pnl = ch.tradersExitPnl()[0]
    return exit_value(st.baseReserve, st.quoteReserve, net) - sum_on - pnl, pending


def test_the_navs_funding_aggregate_never_counts_more_than_the_positions_owe(system, chain, crew):
    """Many accounts and sub-accounts, funding on (the session's shipped parameters), a day of increases, reduces,
    flips and closes at odd sizes, hourly depth syncs (their charge moves the funding index) and pokes: after every
    step the funding the NAV counts the traders as owing (floor(net x F) - sumFundingBasis) is within a couple of wei
    per position of what the open positions would actually pay (each rounded up), so the aggregate does not drift
    from the sum over positions on any of these paths. (The NAV's figure can exceed the positions' by a wei:
    floor(a) - floor(b) against ceil(a - b), summed over positions; no economic effect.)"""
    s, amm = system, system.amm
    lp_deposit(s, crew.honest_lp, 10_000_000)
    actors = [crew.victim, crew.taker, *crew.atk[:4]]
    subs = [0, 1, 2]
    for a in actors:
        mint(s, a, 3_000_000)
        for sub in subs:
            deposit(s, a, 1_000_000, sub)
    holders = [(a, subs) for a in actors]
    t = start(chain)
    sizes = [7_130, -3_370, 12_110, -9_990, 5_550, -1_230, 4_440, -8_880, 2_220]  # hundredths of ETH
    worst = 0
    step = 0
    now = t
    for h in range(24):
        for k, a in enumerate(actors):
            for sub in subs:
                step += 1
                now += 67
                at(chain, now)
                if step % 7 == 0:
                    s.markets["ETH"].oracle.updateAnswer((3_000 + (step % 11) - 5) * 10**8, sender=s.deployer)
                    s.markets["BTC"].oracle.updateAnswer(60_000 * 10**8, sender=s.deployer)
                base = sizes[(step * 5 + k + sub) % len(sizes)] * 10**16 // 3
                base = base // 10**16 * 10**16
                if step % 5 == 0:
                    size = s.clearing_house.position(a, sub, ETH)[0]
                    if size:
                        attempt(lambda: close(s, a, ETH, sub), "close")
                        continue
                attempt(lambda: trade(s, a, ETH, base, sub), "trade")
                owed_nav, owed_pos = _nav_funding_vs_positions(s, holders)
                worst = max(worst, abs(owed_nav - owed_pos))
                assert abs(owed_nav - owed_pos) <= 2 * len(actors) * len(subs) + 2
        now += 2_400
        at(chain, now)
        s.markets["ETH"].oracle.updateAnswer(3_000 * 10**8, sender=s.deployer)
        s.markets["BTC"].oracle.updateAnswer(60_000 * 10**8, sender=s.deployer)
        attempt(lambda: amm.syncDepth(ETH, sender=crew.keeper), "sync")
        s.clearing_house.pokeFunding(ETH, sender=crew.keeper)
        owed_nav, owed_pos = _nav_funding_vs_positions(s, holders)
        assert abs(owed_nav - owed_pos) <= 2 * len(actors) * len(subs) + 2
    print(f"\n{step} trades over 24 h: worst NAV-minus-positions funding {worst} wei; "
          f"F = {s.clearing_house.marketState(ETH).cumulativeFunding}")


# ---------------------------------------------------------------------------- the hourly sample, pushed for one second


def _sample_push(system, chain, crew, push: bool, hours: int = 6):
    """Funding on (the session's parameters). An honest victim holds a 300 ETH long (longs pay). The attacker holds a
    200 ETH long on atk[0] and, with `push`, shorts what the band allows on atk[1] in the last second of each hour and
    closes it in the first block of the next, so the short is the skew and the mark the first block's sample finds
    (held one second), to pull the next hour's target down for its long. Returns (attacker gain, victim gain, pool
    NAV change) [wad]."""
    s, pool, ch = system, system.pool, system.clearing_house
    a0, a1, victim = crew.atk[0], crew.atk[1], crew.victim
    lp_deposit(s, crew.honest_lp, 10_000_000)
    for w, amount in ((a0, 600_000), (a1, 1_500_000), (victim, 1_000_000)):
        mint(s, w, amount)
    holders = [(a0, [0]), (a1, [0])]
    t = start(chain)
    t = (t // 3_600 + 1) * 3_600 + 100  # 100 s into an hour
    w0, v0, nav0 = wealth(s, holders), wealth(s, [(victim, [0])]), pool.navWad()
    at(chain, t)
    for w, amount in ((a0, 600_000), (a1, 1_500_000), (victim, 1_000_000)):
        deposit(s, w, amount)
    assert attempt(lambda: trade(s, victim, ETH, min(300 * WAD, band_room(s, ETH, buy=True) // 2)), "victim long")
    at(chain, t + 10)
    assert attempt(lambda: trade(s, a0, ETH, min(200 * WAD, band_room(s, ETH, buy=True))), "attacker long")
    for h in range(1, hours + 1):
        top = t - 100 + h * 3_600  # the hour boundary
        at(chain, top - 60)
        s.markets["ETH"].oracle.updateAnswer(3_000 * 10**8, sender=s.deployer)
        s.markets["BTC"].oracle.updateAnswer(60_000 * 10**8, sender=s.deployer)
        ch.pokeFunding(ETH, sender=crew.keeper)
        if push:
            at(chain, top - 1)
            b = min(1_500 * WAD, band_room(s, ETH, buy=False))
            assert attempt(lambda: trade(s, a1, ETH, -b), f"push {h}")
            at(chain, top)
            assert attempt(lambda: close(s, a1, ETH), f"unpush {h}")  # the hour's first touch: samples, then closes
        else:
            at(chain, top)
            ch.pokeFunding(ETH, sender=crew.keeper)
    at(chain, t - 100 + hours * 3_600 + 1_800)
    s.markets["ETH"].oracle.updateAnswer(3_000 * 10**8, sender=s.deployer)
    s.markets["BTC"].oracle.updateAnswer(60_000 * 10**8, sender=s.deployer)
    cash_out(s, a0, [0])
    cash_out(s, a1, [0])
    cash_out(s, victim, [0])
    return wealth(s, holders) - w0, wealth(s, [(victim, [0])]) - v0, pool.navWad() - nav0


def test_a_short_held_one_second_across_each_hourly_sample_does_not_pay(system, chain, crew):
    snap = chain.snapshot()
    c_atk, c_vic, c_nav = _sample_push(system, chain, crew, push=False)
    chain.restore(snap)
    g_atk, g_vic, g_nav = _sample_push(system, chain, crew, push=True)
    print(f"\nshort pushed 1 s across 6 hourly samples: attacker {usd(g_atk)} USD (control {usd(c_atk)}), victim "
          f"{usd(g_vic)} (control {usd(c_vic)}), pool NAV {usd(g_nav)} (control {usd(c_nav)})")
    assert g_atk <= c_atk + DUST, f"the pushes paid the attacker {usd(g_atk - c_atk)} USD"
    assert g_nav >= c_nav - DUST
