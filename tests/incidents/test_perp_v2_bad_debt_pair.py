"""Perp Protocol v2, bad-debt attack (disclosed and patched through a bug bounty, 2022).

What the attack was: two accounts of one attacker. Account A opens a large, highly levered position; account
B trades the other way in size to push the AMM price against A, so that A's liquidation (executed on the
AMM at that pushed price) leaves bad debt, which the protocol's insurance fund absorbs; B then unwinds at a
profit. The pair as a whole extracts the bad debt: one account keeps the loss, the other the gain.

The shape: a price pushed by one's own trades, a liquidation triggered and priced by that price, and two
accounts splitting the gain and the debt.

What stops it in vPerp (docs/design.md#trading, docs/liquidation.md; invariants 4 and 19 of
docs/specification.md):
- Health and liquidations read the *index* (the oracle), not the vAMM: however far B pushes the vAMM,
  A does not become liquidatable while the index stands still (`NotLiquidatable`).
- The price band: no trade may leave the vAMM more than `maxSpread` from the index unless it moves the
  price closer (`PriceBandExceeded` with the exact price after).
- A reduce or close filled worse than the index may not leave the account below its maintenance requirement
  (`ReduceBelowMaintenance`): A cannot close into the vAMM B pushed and leave a loss past its value behind,
  which the insurance fund and the pool would pay while B bought back cheap.
- At a constant index, whatever the pair trades (here: random sequences by both accounts), their combined
  equity at the index never exceeds what they deposited less the fees they paid, an account below zero counting
  as nothing (abandoned, its debt the protocol's): the constant-product curve is path-independent, so the
  pair's trading at best breaks even before fees.

Every step is checked against a Python model of the vAMM, positions, collateral and margin built from the
documented formulas (tests/helpers/trading.py), to the wei; a reverted step must be the model's named error
with its arguments and change nothing. Funding is off.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helpers.incidents import (
    ETH,
    WAD,
    EthModel,
    eth_equity,
    read,
    reverts_unchanged,
    trade,
)

INDEX = 3000 * WAD
DEPOSITS = (180_000, 400_000)  # A, B


pytestmark = pytest.mark.usefixtures("no_funding")


def PairModel(owners):
    return EthModel(owners, DEPOSITS, INDEX)


def equity(coll: int, size: int, on: int) -> int:
    return eth_equity(coll, size, on, INDEX)


def check_against_chain(system, model, owners):
    ch, vault = system.clearing_house, system.vault
    calls = {}
    for i, o in enumerate(owners):
        calls[f"p{i}"] = (ch, "position", o.address, 0, ETH)
        calls[f"c{i}"] = (vault, "collateral", o.address, 0)
        calls[f"v{i}"] = (vault, "accountValue", o.address, 0)
        calls[f"l{i}"] = (vault, "isLiquidatable", o.address, 0)
    calls["st"] = (ch, "marketState", ETH)
    r = read(system, **calls)
    assert (r["st"].baseReserve, r["st"].quoteReserve) == (model.amm.x, model.amm.y)
    total = 0
    for i, o in enumerate(owners):
        size, on = model.pos[o.address]
        assert tuple(r[f"p{i}"])[:2] == (size, on)
        assert r[f"c{i}"] == model.coll[o.address]
        assert r[f"v{i}"] == equity(model.coll[o.address], size, on)
        assert r[f"l{i}"] == model.liquidatable(o.address)
        assert r[f"v{i}"] >= 0, "an account's own trades never leave it below zero at a constant index"
        # An account below zero would be abandoned, its debt left to the insurance fund and the pool: it counts as
        # nothing for the pair, not as a debt the pair repays.
        total += max(r[f"v{i}"], 0)
    # The pair never holds more than it deposited, less the fees it paid (invariant 4).
    assert total <= model.deposited - model.fees


def test_pushing_the_vamm_against_a_levered_partner_liquidates_nothing(system, ch, vault, engine, alice, bob, batcher):
    a, b = alice, bob
    system.fund(a, DEPOSITS[0])
    system.fund(b, DEPOSITS[1])
    model = PairModel([a, b])
    # A: a long at ~9.5x of its value; B: sells to drag the vAMM price down onto A.
    for who, base in ((a, 400 * WAD), (b, -(400 + 450) * WAD)):
        err, res = model.predict(who.address, base)
        assert err is None, (err, res)
        trade(ch, who, ETH, base)
        model.apply(who.address, base, res)
        check_against_chain(system, model, [a, b])
    assert ch.spotPrice(ETH) < INDEX * 92 // 100  # the vAMM is ~9 % under the index, A is ~9.5x long on its value
    # Further down is outside the band: refused with the exact price the trade would have left.
    err, kw = model.predict(b.address, -100 * WAD)
    assert err == "PriceBandExceeded"
    with reverts_unchanged(system, batcher, ch.PriceBandExceeded, [a, b], **kw):
        trade(ch, b, ETH, -100 * WAD)
    # A is valued at the index, not at the pushed vAMM: not liquidatable, and no kick.
    assert not model.liquidatable(a.address)
    with reverts_unchanged(system, batcher, engine.NotLiquidatable, [a, b], owner=a, subaccount=0):
        engine.kick(a, 0, ETH, b, sender=b)
    # Nor can A close into the pushed vAMM: a close filled that far under the index would leave it below its
    # maintenance requirement (here below zero), the loss past its value falling on the insurance fund and the pool
    # while B bought the base back cheap. Refused with the exact shortfall; A's value stays its own.
    size = model.pos[a.address][0]
    err, kw = model.predict(a.address, -size)
    assert err == "ReduceBelowMaintenance" and kw["excess"] < 0, (err, kw)
    with reverts_unchanged(system, batcher, ch.ReduceBelowMaintenance, [a, b], **kw):
        ch.closePosition(0, ETH, 0, 2**64, sender=a)
    # Unwinding: both close; the pair has paid fees and the vAMM round trip, and made nothing.
    for who in (b, a):
        size = model.pos[who.address][0]
        err, res = model.predict(who.address, -size)
        assert err is None
        ch.closePosition(0, ETH, 0 if size > 0 else 2**255, 2**64, sender=who)
        model.apply(who.address, -size, res)
        check_against_chain(system, model, [a, b])
    assert sum(model.coll.values()) <= model.deposited - model.fees


STEP = st.tuples(st.booleans(), st.integers(-600, 600).filter(lambda n: n != 0))


@settings(max_examples=3, deadline=None, database=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=list(HealthCheck))
@given(steps=st.lists(STEP, min_size=2, max_size=5))
def test_the_pair_never_extracts_more_than_it_deposited_at_a_constant_index(system, ch, chain, alice, bob, batcher, steps):
    sid = chain.snapshot()
    try:
        a, b = alice, bob
        system.fund(a, DEPOSITS[0])
        system.fund(b, DEPOSITS[1])
        model = PairModel([a, b])
        steps = steps + [(True, None), (False, None)]  # then both close what they hold
        for is_a, n in steps:
            who = a if is_a else b
            if n is None:
                base = -model.pos[who.address][0]
                if base == 0:
                    continue
            else:
                base = n * WAD
            err, res = model.predict(who.address, base)
            if err is None:
                trade(ch, who, ETH, base)
                model.apply(who.address, base, res)
            else:
                with reverts_unchanged(system, batcher, getattr(ch, err), [a, b], **res):
                    trade(ch, who, ETH, base)
            check_against_chain(system, model, [a, b])
    finally:
        chain.restore(sid)
