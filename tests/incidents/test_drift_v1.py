"""Drift Protocol v1, May 2022 (~$10M).

What happened: in a fast LUNA/BTC sell-off, Drift paid out traders' realized profit (and let them withdraw
it) before the offsetting losses of the traders on the other side had been collected; the losers' accounts
went negative, withdrawals dipped into the insurance and fee pools, and the protocol stopped with a
shortfall. Payout order decided who was paid.

The attack's (or failure's) shape: a winner realizes and withdraws first; the loser never closes; the
loser's loss is larger than its margin.

What stops it in vPerp (docs/design.md#architecture, docs/liquidation.md, docs/pool.md; invariant 1 of
docs/specification.md):
- One ledger in the Vault: the winner's profit is paid from the liquidity pool's balance (the counterparty
  of every trader), never from another trader's margin or the insurance fund, so the winner is paid in full
  whatever the loser does, and paying it does not depend on the loser's money having arrived.
- The Vault's token balance equals the ledger (trader collateral + pool + insurance) at every step, so every
  claim is backed at every moment; the pool's own withdrawals are limited by the reserve (tests/pool/test_pool.py).
- The loser's loss is realized by the liquidation (here: auction, no taker, backstop) and whatever its margin
  does not cover runs through the waterfall: insurance fund first, then the pool, with a `BadDebt` event;
  no negative balance stays on the books.
- Order does not matter: the winner's payout is the same figure whether it withdraws before or after the
  loser's bad debt is settled.

Expected figures come from the vAMM formulas (tests/helpers/trading.py), the slice/reward formulas of
docs/liquidation.md (tests/helpers/liquidation.py's model) and the waterfall rule. Funding is off.
"""
from __future__ import annotations

import pytest

from helpers.incidents import (
    ETH,
    SCALE,
    WAD,
    Amm,
    apply_trade,
    assert_backed,
    fee_of,
    insurance_part,
    model_slice,
    funding_off,
    requirement,
    set_index,
    set_liquidation_params,
    trade,
    upnl,
    vamm_base_to,
)
from helpers.trading import ETH_X0, ETH_Y0

INSURANCE_SEED = 1_000
# The deployment's own insurance seed would cover the loser's debt: this module runs on a deployment
# without it (the `uninsured` fixture), with a small fund of its own, so the debt runs past the fund into
# the pool.


@pytest.fixture(scope="module", autouse=True)
def _setup(uninsured, deployer):
    system = uninsured
    funding_off(system)
    set_liquidation_params(system, maxRedos=0)  # nobody takes: straight to the backstop after one auction
    units = system.units(INSURANCE_SEED)
    system.collateral.mint(deployer, units, sender=deployer)
    system.collateral.approve(system.vault, units, sender=deployer)
    system.vault.fundInsurance(units, sender=deployer)


@pytest.mark.parametrize("order", ["winner_withdraws_first", "loser_settled_first"])
def test_winner_paid_in_full_loser_debt_through_the_waterfall(uninsured, chain, alice, bob, carol, crowd, order):
    system = uninsured
    ch, vault, engine, usdc = system.clearing_house, system.vault, system.liquidation, system.collateral
    winner, loser, arb, keeper = alice, bob, carol, crowd[0]
    owners = [winner, loser, arb, keeper]
    system.fund(winner, 50_000)
    system.fund(loser, 40_000)
    system.fund(arb, 1_000_000)
    ins = INSURANCE_SEED * 10**6 * SCALE
    assert vault.insuranceFund() == ins
    assert_backed(system, owners)
    amm = Amm(ETH_X0, ETH_Y0)

    # The winner buys first; the loser buys after, higher, at ~7.7x; the winner sells into it.
    q1 = amm.trade(100 * WAD)
    trade(ch, winner, ETH, 100 * WAD)
    q2 = amm.trade(100 * WAD)
    trade(ch, loser, ETH, 100 * WAD)
    q3 = amm.trade(-100 * WAD)
    ch.closePosition(0, ETH, 0, 2**64, sender=winner)
    _, _, realized_w = apply_trade(100 * WAD, -q1, -100 * WAD, q3)
    assert realized_w > 0
    coll_w = 50_000 * 10**6 * SCALE + realized_w - fee_of(q1) - fee_of(q3)
    coll_l = 40_000 * 10**6 * SCALE - fee_of(q2)
    on_l = -q2
    ins += sum(insurance_part(fee_of(q)) for q in (q1, q2, q3))
    assert vault.collateral(winner, 0) == coll_w > 50_000 * 10**6 * SCALE
    assert vault.collateral(loser, 0) == coll_l
    assert vault.insuranceFund() == ins
    assert_backed(system, owners)
    payout = coll_w // SCALE

    def winner_withdraws():
        pool0, ins0 = vault.poolBalance(), vault.insuranceFund()
        vault.withdraw(0, payout, sender=winner)
        assert usdc.balanceOf(winner) == payout  # in full, to the unit
        assert (vault.poolBalance(), vault.insuranceFund()) == (pool0, ins0)  # neither fund touched
        assert_backed(system, owners)

    def crash_and_settle_the_loser():
        nonlocal ins
        index = 2650 * WAD
        set_index(system, "ETH", 2650)  # -11.7 %: the loser is under water, its loss exceeds its margin
        value = coll_l + upnl(100 * WAD, on_l, index)
        maint = requirement(100 * WAD, index, 5 * 10**16)
        assert value < 0
        lp = engine.liquidationParams()
        m = model_slice(value, maint, 100 * WAD, index, 5 * 10**16, 10**16, lp, engine.auctionParams(ETH).maxDiscount,
                        insurance=ins)
        assert (m.size, m.penalty, m.reward) == (100 * WAD, 0, 0)  # all of it; no reward or penalty out of nothing
        assert m.bounty > 0  # the insurance fund pays the keeper of an account that can pay nothing
        tx = engine.kick(loser, 0, ETH, keeper, sender=keeper)
        ev = engine.Kick.from_receipt(tx)[0]
        assert (ev.size, ev.keeperReward, ev.penalty, ev.startIndex) == (m.size, m.reward + m.bounty, m.penalty, index)
        assert vault.collateral(keeper, 0) == m.bounty
        ins -= m.bounty
        assert_backed(system, owners)
        # An arbitrageur brings the vAMM down to the index (selling towards the index is always allowed).
        base = vamm_base_to(system, ETH, index)
        assert base < 0
        ins += insurance_part(fee_of(amm.trade(base)))
        trade(ch, arb, ETH, base)
        assert vault.insuranceFund() == ins
        assert_backed(system, owners)
        # Nobody takes; the auction expires; the backstop closes the slice on the vAMM.
        chain.pending_timestamp += engine.auctionParams(ETH).duration + 1
        qb = amm.trade(-100 * WAD)
        _, _, realized_l = apply_trade(100 * WAD, on_l, -100 * WAD, qb)
        debt = -(coll_l - m.reward + realized_l)
        assert debt > ins  # more than the insurance fund holds: the pool pays the rest
        pool0 = vault.poolBalance()
        tx = engine.backstop(1, sender=keeper)
        bd = vault.BadDebt.from_receipt(tx)
        assert len(bd) == 1
        assert (bd[0].owner, bd[0].amount, bd[0].fromInsurance, bd[0].fromPool) == (loser.address, debt, ins, debt - ins)
        assert vault.collateral(loser, 0) == 0 and vault.openMarkets(loser, 0) == 0
        assert vault.insuranceFund() == 0
        # The pool, the loser's counterparty, books the loser's realized loss and pays what neither the
        # loser's margin nor the insurance fund covered.
        assert vault.poolBalance() == pool0 - realized_l - (debt - ins)
        ins = 0
        assert_backed(system, owners)

    if order == "winner_withdraws_first":
        winner_withdraws()
        crash_and_settle_the_loser()
    else:
        crash_and_settle_the_loser()
        winner_withdraws()
    assert usdc.balanceOf(winner) == payout
    # No negative balance anywhere; every token in the Vault is somebody's (ledger == balance).
    for o in owners:
        assert vault.collateral(o, 0) >= 0
    assert_backed(system, owners)
