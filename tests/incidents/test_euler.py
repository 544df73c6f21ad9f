"""Euler Finance, March 2023 (~$197M).

What happened: Euler's `donateToReserves` let an account give away part of its collateral (eTokens) to
the protocol's reserves without checking the account's health afterwards. The attacker, with a flash loan,
built a levered position, donated collateral until the account was deeply insolvent, then liquidated it
from a second account: Euler's liquidation discount grew with how insolvent the account was, so the
liquidator took the collateral at up to 20 % off and walked away with more than the debt it repaid.

The shape: (1) one action that lowers an account's health without a health check; (2) self-liquidation
through a second account at a discount that exceeds what the first account loses.

What stops it in vPerp (docs/design.md#accounts-and-margin, docs/liquidation.md,
docs/specification.md#9-safety-and-bad-input; invariants 8 and 13 of docs/specification.md):
- Every action that can lower an account's health is checked, with a named error and the exact shortfall:
  withdrawals and withdrawals by operators (`InsufficientFreeCollateral`), margin moved out to another
  sub-account (same), opens/increases/flips by the owner or an operator (`InsufficientMargin`). There is no
  donation out of an account: pool and insurance grants come from a wallet, not from margin. So at a
  constant index no action but liquidation takes a healthy account below maintenance (random sequences
  below, checked against a Python model to the wei). The sequences are one account's; a reduce into a vAMM
  that *another* account dislocated, filled worse than the index, may not take the account below maintenance
  either (`ReduceBelowMaintenance`; docs/incidents.md, "Closed limit"; tests/value_safety/test_value_safety_reduce.py
  and the pair property of test_perp_v2_bad_debt_pair.py).
- Self-liquidation does not pay: an auction's discount is paid by the liquidated account to the taker (a
  wash between the attacker's two accounts), the keeper reward likewise, and the penalty leaves for the
  insurance fund; the pair's combined equity falls by exactly the penalty plus the rounding wei. The
  liquidated account cannot take its own auction (`SelfTake`).

Funding is off; expectations come from docs/design.md#accounts-and-margin and the vAMM formulas
(tests/helpers/trading.py). The first test draws the attack's timing (when the second account takes, in one
fill or two) at a constant index: the pair's equity never rises.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helpers.incidents import (
    ETH,
    IMR,
    MAX_UINT,
    MIN_ETH,
    SCALE,
    WAD,
    EthModel,
    auction_price,
    discount_of,
    fill_quotes,
    free_collateral,
    funding_off,
    one_event,
    read,
    requirement,
    reverts_unchanged,
    set_price,
    trade,
    upnl,
)

INDEX = 3000 * WAD


def test_self_liquidation_via_second_account_never_profits_at_constant_index(
        system, ch, vault, engine, chain, crowd):
    """Euler (March 2023): an attacker made its own position liquidatable, then liquidated it from a second
    account at a discount and walked off with the difference. Here attacker A holds a levered long; the
    index moves once so A is liquidatable, then stays constant; B (the same person, another address) kicks
    A with itself as keeper and takes the slice at any moment of the auction, in one or two fills. The
    discount moves value from A to B (a wash), the keeper reward too; the penalty leaves for the insurance
    fund. Combined equity (collateral + unrealized PnL at the index, both accounts) never rises: it falls
    by exactly the penalty plus at most 2 wei of rounding per fill (in the pool's favour)."""
    funding_off(system)
    a, b = crowd[0], crowd[1]
    system.fund(a, 3100)
    trade(ch, a, ETH, 10 * WAD)
    system.fund(b, 100_000)
    set_price(system, "ETH", 2800 * 10**8)
    assert vault.isLiquidatable(a, 0)
    duration = engine.auctionParams(ETH).duration

    def equity():
        r = read(system, va=(vault, "accountValue", a.address, 0), vb=(vault, "accountValue", b.address, 0))
        return r["va"] + r["vb"]

    @settings(max_examples=8, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(dt=st.integers(1, duration), first_bp=st.integers(0, 10_000), two_fills=st.booleans())
    def attack(dt, first_bp, two_fills):
        sid = chain.snapshot()
        try:
            before = equity()
            tx = engine.kick(a, 0, ETH, b, sender=b)
            kick = one_event(engine, "Kick", tx)
            size = kick.size
            assert kick.keeper == b.address and kick.penalty > 0
            chain.pending_timestamp = tx.timestamp + dt
            fills = 0
            if two_fills:
                first = max(MIN_ETH, min(size - MIN_ETH, size * first_bp // 10_000))
                engine.take(kick.auctionId, first, MAX_UINT, 0, sender=b)
                fills += 1
            engine.take(kick.auctionId, MAX_UINT, MAX_UINT, 0, sender=b)
            fills += 1
            after = equity()
            assert after <= before - kick.penalty
            assert before - kick.penalty - after <= 2 * fills
        finally:
            chain.restore(sid)

    attack()


@pytest.mark.usefixtures("no_funding")
def test_no_action_but_liquidation_takes_a_healthy_account_below_its_margin(system, ch, vault, usdc, alice, bob,
                                                                         batcher):
    """Every weakening action one wei (or one token unit) past the initial requirement is refused with the
    exact figure, whether the owner or its operator acts; exactly at it, it passes; a grant to the pool
    from the owner's wallet does not touch the account."""
    system.fund(alice, 40_000)
    vault.setOperator(bob, True, sender=alice)
    model = EthModel([alice], [40_000], INDEX)
    err, res = model.predict(alice.address, 100 * WAD)
    assert err is None
    trade(ch, alice, ETH, 100 * WAD)
    model.apply(alice.address, 100 * WAD, res)
    free = model.free(alice.address)
    coll = model.coll[alice.address]
    assert vault.freeCollateral(alice, 0) == free > 0

    w = free // SCALE + 1
    for call in (lambda: vault.withdraw(0, w, sender=alice), lambda: vault.withdrawFor(alice, 0, w, sender=bob)):
        with reverts_unchanged(system, batcher, vault.InsufficientFreeCollateral, [alice], subs=(0, 1), owner=alice,
                               subaccount=0, freeCollateral=free - w * SCALE):
            call()
    for call in (lambda: vault.transferMargin(0, 1, free + 1, sender=alice),
                 lambda: vault.transferMarginFor(alice, 0, 1, free + 1, sender=bob)):
        with reverts_unchanged(system, batcher, vault.InsufficientFreeCollateral, [alice], subs=(0, 1), owner=alice,
                               subaccount=0, freeCollateral=-1):
            call()
    # The smallest increase that breaks the initial requirement, found on the model, by owner or operator.
    b = 10**16
    while model.predict(alice.address, b)[0] is None:
        b *= 2
    err, kw = model.predict(alice.address, b)
    assert err == "InsufficientMargin"
    for call in (lambda: trade(ch, alice, ETH, b),
                 lambda: ch.openPositionFor(alice, 0, ETH, b, 2**255, 2**64, sender=bob)):
        with reverts_unchanged(system, batcher, ch.InsufficientMargin, [alice], subs=(0, 1), **kw):
            call()
    # Euler's missing check had no counterpart: a grant to the pool comes from the wallet, not the account.
    usdc.mint(alice, 10**9, sender=alice)
    usdc.approve(vault, 10**9, sender=alice)
    vault.fundPool(10**9, sender=alice)
    assert (vault.collateral(alice, 0), vault.freeCollateral(alice, 0)) == (coll, free)
    # Exactly to the boundary: allowed, and still healthy.
    vault.transferMargin(0, 1, free, sender=alice)
    assert vault.freeCollateral(alice, 0) == 0 and not vault.isLiquidatable(alice, 0)


ACTION = st.one_of(
    st.tuples(st.just("trade"), st.integers(-300, 300).filter(bool)),
    st.tuples(st.just("withdraw"), st.integers(1, 40_000)),
    st.tuples(st.just("transfer_out"), st.integers(1, 40_000)),
    st.tuples(st.just("transfer_in"), st.integers(1, 40_000)),
)


@pytest.mark.usefixtures("no_funding")
@settings(max_examples=3, deadline=None, database=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=list(HealthCheck))
@given(actions=st.lists(ACTION, min_size=3, max_size=6))
def test_random_actions_at_a_constant_index_keep_a_healthy_account_healthy(system, ch, vault, chain, alice, batcher,
                                                                          actions):
    sid = chain.snapshot()
    try:
        system.fund(alice, 40_000)
        system.fund(alice, 10_000, subaccount=1)
        model = EthModel([alice], [40_000], INDEX)
        me = alice.address
        side = 10_000 * 10**6 * SCALE  # sub-account 1's collateral
        for kind, n in actions:
            added_risk = False
            if kind == "trade":
                base = n * WAD
                prev = model.pos[me][0]
                err, res = model.predict(me, base)
                if err is None:
                    trade(ch, alice, ETH, base)
                    model.apply(me, base, res)
                    new = prev + base
                    added_risk = not ((prev > 0 and 0 <= new < prev) or (prev < 0 and prev < new <= 0))
                else:
                    with reverts_unchanged(system, batcher, getattr(ch, err), [alice], subs=(0, 1), **res):
                        trade(ch, alice, ETH, base)
            elif kind in ("withdraw", "transfer_out"):
                amount = n * 10**6 * SCALE
                coll, free = model.coll[me], model.free(me)
                call = (lambda: vault.withdraw(0, n * 10**6, sender=alice)) if kind == "withdraw" else (
                    lambda: vault.transferMargin(0, 1, amount, sender=alice))
                if amount > coll:
                    with reverts_unchanged(system, batcher, vault.InsufficientCollateral, [alice], subs=(0, 1),
                                           owner=alice, subaccount=0, collateral=coll, amountWad=amount):
                        call()
                elif model.pos[me][0] != 0 and free - amount < 0:
                    with reverts_unchanged(system, batcher, vault.InsufficientFreeCollateral, [alice], subs=(0, 1),
                                           owner=alice, subaccount=0, freeCollateral=free - amount):
                        call()
                else:
                    call()
                    added_risk = True
                    model.coll[me] -= amount
                    side += amount if kind == "transfer_out" else 0
            else:  # margin back in from the isolated sub-account (no position there)
                amount = min(n * 10**6 * SCALE, side)
                if amount:
                    vault.transferMargin(1, 0, amount, sender=alice)
                    model.coll[me] += amount
                    side -= amount
            size, on = model.pos[me]
            r = read(system, c=(vault, "collateral", me, 0), f=(vault, "freeCollateral", me, 0),
                     l=(vault, "isLiquidatable", me, 0), p=(ch, "position", me, 0, ETH), s=(vault, "collateral", me, 1))
            assert (r["c"], tuple(r["p"])[:2], r["s"]) == (model.coll[me], (size, on), side)
            assert r["f"] == model.free(me)
            # The property: healthy stays healthy; what was allowed to add risk left free collateral >= 0.
            assert not r["l"] and not model.liquidatable(me)
            if added_risk:
                assert r["f"] >= 0
    finally:
        chain.restore(sid)


@pytest.mark.usefixtures("no_funding")
def test_self_liquidation_through_a_second_account_loses_the_penalty(system, ch, vault, engine, chain, alice, bob,
                                                                      batcher):
    """A is made liquidatable by the market (the only way), B kicks it as its own keeper and takes the whole
    slice at the deepest discount; A also tries to take its own auction (refused) and then from its isolated
    sub-account (allowed: still a wash). Combined equity falls by exactly the penalty plus rounding."""
    a, b = alice, bob
    system.fund(a, 3100)
    system.fund(a, 50_000, subaccount=1)
    system.fund(b, 100_000)
    trade(ch, a, ETH, 10 * WAD)
    system.set_price("ETH", 2800)
    index = 2800 * WAD
    assert vault.isLiquidatable(a, 0)

    def equity():
        r = read(system, a0=(vault, "accountValue", a.address, 0), a1=(vault, "accountValue", a.address, 1),
                 b0=(vault, "accountValue", b.address, 0))
        return r["a0"] + r["a1"] + r["b0"]

    before = equity()
    tx = engine.kick(a, 0, ETH, b, sender=b)
    kick = engine.Kick.from_receipt(tx)[0]
    assert kick.keeper == b.address and kick.penalty > 0
    assert equity() == before - kick.penalty  # the reward moved from A to B; the penalty left the pair
    ap = engine.auctionParams(ETH)
    chain.pending_timestamp = tx.timestamp + 60
    with reverts_unchanged(system, batcher, engine.SelfTake, [a, b], subs=(0, 1), owner=a, subaccount=0):
        engine.take(kick.auctionId, 2**255, 2**255, 0, sender=a)
    half = kick.size // 2
    # The deepest discounts: A's own isolated account takes half a second before the end, B the rest at it.
    fills = [(a, 1, half, ap.duration - 1), (b, 0, kick.size - half, ap.duration)]
    expected = before - kick.penalty
    for taker, sub, amount, t in fills:
        price = auction_price(1, index, discount_of(ap, t))
        owner_q, taker_q = fill_quotes(1, amount, price)
        expected -= -taker_q - owner_q  # the rounding wei stays with the pool
        chain.pending_timestamp = tx.timestamp + t
        fill = engine.take(kick.auctionId, amount, price, sub, sender=taker)
        assert engine.Take.from_receipt(fill)[0].price == price
    after = equity()
    # Up to the flooring of each account's floor(size x index): at most a wei per account.
    assert after <= expected
    assert expected - after <= 3
    assert after < before  # the pair lost money: self-liquidation never profits
    assert requirement(ch.position(b, 0, ETH)[0], index, IMR) <= vault.accountValue(b, 0)
    assert free_collateral(vault.collateral(b, 0), [(ch.position(b, 0, ETH)[0], ch.position(b, 0, ETH)[1], index,
                                                     IMR)]) == vault.freeCollateral(b, 0)
    assert upnl(*ch.position(b, 0, ETH)[:2], index) > 0  # B's side of the wash: the discount it was paid
