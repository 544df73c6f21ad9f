"""Circuit breakers under attack (review of the first CircuitBreaker, 2026-12-05): a stale index TWAP in a quiet
market tripped the move breaker for anyone (fixed: a poke accrues the market first), a balancing round trip
around a poke lifted the skew cap (fixed: the cap holds a cool-off after the skew was last seen), and an
insurance trip by a round trip (left: it costs four taker fees and clears at the next poke)."""
from __future__ import annotations

import pytest

from helpers.governance import NO_CAP, deploy_governance, deposit, fund_actors, refresh_oracles
from helpers.governance import admin, guardian  # noqa: F401 - shared module fixtures
from helpers.trading import ETH_ID, MAX_UINT, WAD, deadline, expect_revert, trade  # noqa: F401

ETH = ETH_ID


@pytest.fixture(scope="module", autouse=True)
def g(system, deployer, admin, guardian, accounts, alice, bob, carol, dave, erin):
    fund_actors(system, accounts)
    return deploy_governance(system, deployer, admin, guardian)


@pytest.mark.parametrize("accrue", [False, True], ids=["breaker pokes only", "and hourly funding pokes"])
def test_a_quiet_drift_does_not_trip_the_move_breaker(chain, system, g, bob, accrue):
    """+1 %/h for 6 h in a market nobody trades. The breaker compares the index with its 15-min TWAP, which is
    built from the index the market last accrued at; the review tripped reduce-only at hour 5 when only the
    breaker was poked (its pokes did not accrue). A poke now accrues the market first: with or without other
    pokes the move stays about 1 % and nothing trips."""
    ch, brk = system.clearing_house, g.breaker
    oracle = system.markets["ETH"].oracle
    t0 = chain.pending_timestamp
    price = 3000 * 10**8
    moves, tripped = [], False
    for h in range(1, 7):
        price = price * 101 // 100
        chain.pending_timestamp = t0 + h * 3600
        refresh_oracles(system)
        oracle.updateAnswer(price, sender=system.deployer)
        if accrue:
            ch.pokeFunding(ETH, sender=bob)
        tx = brk.poke(ETH, sender=bob)
        tripped |= any(e.kind == 0 for e in brk.BreakerTripped.from_receipt(tx))  # Kind.IndexMove
        moves.append(brk.breakerState(ETH).move)
    # The first poke compares with a TWAP of the listing price (nothing accrued the market for an hour).
    assert not tripped and max(moves[1:]) < WAD // 20


def test_insurance_breaker_tripped_by_a_round_trip(chain, system, g, alice, bob, carol, erin):
    """Open a balanced long+short (no net vAMM move), poke, close both: the insurance cap stays on every
    poked market until the next poke, below the open interest, refusing honest opens. Cost: 4 taker fees."""
    from helpers.governance import bp_tuple, encode, propose
    pid, eta, _ = propose(g, g.governor, encode(g.governor, "setBreakerParams",
                                                bp_tuple(g.breaker.params(), insuranceTarget=WAD // 20)))
    chain.pending_timestamp = eta
    refresh_oracles(system)
    g.governor.execute(pid, sender=alice)  # 5 % (the shipped 1 % needs a book five times larger)
    ch, vault, brk, gov = system.clearing_house, system.vault, g.breaker, g.governor
    deposit(system, carol, 10_000)
    trade(ch, carol, ETH, 5 * WAD)  # an honest book
    ins = vault.insuranceFund()
    print("insurance fund", ins / WAD, "pool", vault.poolBalance() / WAD, "params", ch.marketParams(ETH))
    # 5 % of gross notional must exceed the fund: gross > 20 x fund
    size = (ins * 20 // (3000 * WAD) // 2 * 115 // 100) * WAD
    coll0 = vault.collateral(alice, 0) + vault.collateral(bob, 0)
    deposit(system, alice, 200_000)
    deposit(system, bob, 200_000)
    trade(ch, alice, ETH, size)
    trade(ch, bob, ETH, -size)
    brk.poke(ETH, sender=alice)
    cap, ro = gov.restriction(ETH)
    ch.closePosition(0, ETH, 0, deadline(), sender=alice)
    ch.closePosition(0, ETH, MAX_UINT, deadline(), sender=bob)
    st = ch.marketState(ETH)
    print("size", size / WAD, "cap", cap / WAD, "oi", st.longOpenInterest / WAD)
    assert cap < NO_CAP
    spent = (vault.collateral(alice, 0) + vault.collateral(bob, 0)) - coll0 - 2 * 200_000 * WAD
    print("attacker cost (wad)", -spent / WAD)
    if cap <= st.longOpenInterest:
        deposit(system, erin, 10_000)
        with expect_revert(ch.OpenInterestCapExceeded, marketId=ETH):
            trade(ch, erin, ETH, WAD)
    brk.poke(ETH, sender=erin)  # anyone clears it
    assert tuple(gov.restriction(ETH)) == (NO_CAP, False)


def test_a_balancing_round_trip_cannot_lift_the_skew_cap(chain, system, g, bob, carol):
    """The review: a trader opened the light side up to the heavy one, poked (skew 0: restriction lifted),
    closed it, and grew the heavy side 75 % past the cap, all before the next poke. Now the cap holds for a
    cool-off after the last poke that saw the skew: the heavy side cannot grow past it."""
    from helpers.governance import bp_tuple, encode, propose
    ch, brk, gov = system.clearing_house, g.breaker, g.governor
    pid, eta, _ = propose(g, gov, encode(gov, "setBreakerParams", bp_tuple(brk.params(), maxSkewShare=WAD // 100)))
    chain.pending_timestamp = eta
    refresh_oracles(system)
    gov.execute(pid, sender=bob)
    deposit(system, bob, 100_000)
    deposit(system, carol, 100_000)
    trade(ch, bob, ETH, 40 * WAD)  # skew 120k > 1 % of NAV
    brk.poke(ETH, sender=bob)
    cap, _ = gov.restriction(ETH)
    assert cap == 40 * WAD
    with expect_revert(ch.OpenInterestCapExceeded, marketId=ETH):
        trade(ch, carol, ETH, 10 * WAD)
    trade(ch, carol, ETH, -40 * WAD)  # the light side grows up to the heavy one: allowed
    brk.poke(ETH, sender=carol)
    assert tuple(gov.restriction(ETH)) == (40 * WAD, False)  # the cap holds
    ch.closePosition(0, ETH, MAX_UINT, deadline(), sender=carol)
    with expect_revert(ch.OpenInterestCapExceeded, marketId=ETH):
        trade(ch, carol, ETH, 30 * WAD)
    assert ch.marketState(ETH).longOpenInterest == 40 * WAD
