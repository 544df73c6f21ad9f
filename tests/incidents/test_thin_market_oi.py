"""dYdX YFI, November 2023 (~$9M from the insurance fund) and Hyperliquid JELLY, March 2025.

What happened: on dYdX v3, a thin YFI market carried open interest far larger than the spot market could
support; YFI was driven up ~100 % and then crashed, the concentrated positions were liquidated into a book
with no depth, and the insurance fund paid ~$9M. On Hyperliquid, a trader opened a large JELLY short on a
tiny token, let it be liquidated into the exchange's HLP vault, then pumped JELLY ~400 %: the vault held a
short it could not close, and the exchange delisted the market to stop the loss.

The shape: open interest out of proportion to the capital behind the market, then a large price move;
the loss lands on the insurance fund or the pool without any bound.

What stops it in vPerp (docs/design.md#trading, docs/liquidation.md; docs/pool.md "Open-interest caps"):
- Per-market open-interest caps, absolute and as a fraction of the pool's capital
  (`notional <= maxOiPoolRatio x poolBalance`), checked on the side a trade grows:
  `OpenInterestCapExceeded(marketId, openInterest, capInBase)`. LP deposits raise the cap at once, LP
  withdrawals lower it; above a lowered cap, positions may still shrink but not grow.
- The loss waterfall draws the insurance fund only for bad debt and only up to its balance
  (`fromInsurance = min(debt, insuranceFund)`), the pool pays the rest, and the pool's loss is bounded by the
  capped open interest times the price move.
- The liquidated position is not inherited by the pool: a taker takes it over at the live index.

Expected figures: the caps from the parameters and the pool's balance (an input read from the Vault), the
liquidation from docs/liquidation.md, the waterfall from IVault. Funding is off.
"""
from __future__ import annotations

import pytest

from helpers.incidents import (
    ETH,
    SCALE,
    WAD,
    Amm,
    amm_of,
    apply_trade,
    auction_price,
    discount_of,
    fee_of,
    fill_quotes,
    insurance_part,
    mul_up,
    funding_off,
    reverts_unchanged,
    set_market_params,
    trade,
)
from helpers.trading import ETH_X0, ETH_Y0

# The deployment's own insurance seed would cover the pump's debt: the pump test runs on a deployment
# without it (the `uninsured` fixture), with a small fund of its own, so the debt reaches the pool and
# the cap is what bounds it.

RATIO = 2 * 10**16  # a thin listing: each side's notional at most 2 % of the pool


@pytest.fixture(scope="module", autouse=True)
def _thin_market(system, uninsured):
    for s in (system, uninsured):
        funding_off(s)
        set_market_params(s, ETH, maxOiPoolRatio=RATIO)


def cap_in_base(pool_balance: int, index: int) -> int:
    """The cap the error reports: floor(floor(pool x ratio) / index), in base."""
    return (pool_balance * RATIO // WAD) * WAD // index


def cap_for(system, base: int, index: int) -> int:
    """The cap a trade of `base` is checked against: the pool's balance after the trade settled, i.e. with
    the pool's part of this trade's own fee (docs/design.md, Trading, steps 7-9)."""
    fee = fee_of(amm_of(system, ETH).peek(base)[0])
    return cap_in_base(system.vault.poolBalance() + fee - insurance_part(fee), index)


def lp_deposit(system, who, units):
    system.collateral.mint(who, units, sender=who)
    system.collateral.approve(system.pool, units, sender=who)
    system.pool.deposit(units, who, sender=who)


def test_open_interest_is_capped_by_the_pool_capital_behind_the_market(system, ch, vault, pool, chain, deployer, alice,
                                                                         bob, batcher):
    index = 3000 * WAD
    system.fund(alice, 200_000)
    system.fund(bob, 200_000)
    pb = vault.poolBalance()
    assert pb == 10_000_000 * 10**6 * SCALE
    cap = cap_for(system, -70 * WAD, index)  # 66.67 ETH per side at 3000
    assert cap_in_base(pb, index) <= cap < cap_in_base(pb, index) + 10**16  # plus this trade's fee
    with reverts_unchanged(system, batcher, ch.OpenInterestCapExceeded, [alice, bob], marketId=ETH,
                           openInterest=70 * WAD, cap=cap):
        trade(ch, alice, ETH, -70 * WAD)
    trade(ch, alice, ETH, -66 * WAD)  # 198,000 of notional: inside
    assert mul_up(66 * WAD, index) <= pb * RATIO // WAD

    # An LP adds 5M: the cap grows with it, immediately.
    lp_deposit(system, bob, 5_000_000 * 10**6)
    trade(ch, bob, ETH, -30 * WAD)  # another account, same side: 96 ETH in all
    cap = cap_for(system, -5 * WAD, index)
    assert 99 * WAD < cap < 101 * WAD
    with reverts_unchanged(system, batcher, ch.OpenInterestCapExceeded, [alice, bob], marketId=ETH,
                           openInterest=101 * WAD, cap=cap):
        trade(ch, alice, ETH, -5 * WAD)

    # The LP leaves with most of it (after the cooldown): the cap falls below the open interest. The
    # shorts may shrink, not grow; the other side is free.
    shares = pool.balanceOf(bob)
    pool.requestWithdraw(shares, sender=bob)
    chain.pending_timestamp += pool.poolParams().withdrawCooldown
    system.set_price("ETH", 3000)  # the feed kept updating
    pool.redeem(shares * 4 // 5, bob, bob, sender=bob)
    cap = cap_for(system, -10**16, index)
    assert cap < 96 * WAD == ch.marketState(ETH).shortOpenInterest
    with reverts_unchanged(system, batcher, ch.OpenInterestCapExceeded, [alice, bob], marketId=ETH,
                           openInterest=96 * WAD + 10**16, cap=cap):
        trade(ch, bob, ETH, -10**16)
    trade(ch, alice, ETH, 6 * WAD)  # reducing is always open
    trade(ch, bob, ETH, 20 * WAD)  # bob: short 30 -> short 10
    assert ch.marketState(ETH).shortOpenInterest == 70 * WAD


def test_a_pump_against_a_capped_short_draws_the_insurance_fund_first_and_bounds_the_pool(
        uninsured, chain, deployer, alice, carol, batcher):
    system = uninsured
    ch, vault, engine = system.clearing_house, system.vault, system.liquidation
    whale, taker = alice, carol
    ins_seed = 5_000 * 10**6
    system.collateral.mint(deployer, ins_seed, sender=deployer)
    system.collateral.approve(vault, ins_seed, sender=deployer)
    vault.fundInsurance(ins_seed, sender=deployer)
    system.fund(whale, 20_000)
    system.fund(taker, 1_000_000)
    amm = Amm(ETH_X0, ETH_Y0)
    size = -60 * WAD  # ~9x, within the 66.67 ETH cap
    q = amm.trade(size)
    trade(ch, whale, ETH, size)
    on = -q
    coll = 20_000 * 10**6 * SCALE - fee_of(q)
    ins = vault.insuranceFund()

    # The pump: +60 % in one print (JELLY did +400 %; any move past the margin is the same story).
    p0, p1 = 3000 * WAD, 4800 * WAD
    system.set_price("ETH", 4800)
    lp = engine.liquidationParams()
    notional = mul_up(60 * WAD, p1)
    # The account has nothing left after the worst fill: it pays no reward and no penalty; the insurance
    # fund pays the keeper's bounty, chip x notional.
    reward = 0
    bounty = min(mul_up(notional, lp.chip), lp.maxKeeperReward, ins)
    tx = engine.kick(whale, 0, ETH, carol, sender=carol)
    ev = engine.Kick.from_receipt(tx)[0]
    assert (ev.size, ev.keeperReward, ev.penalty) == (size, reward + bounty, 0)  # all of it; no penalty from nothing
    ins -= bounty
    ap = engine.auctionParams(ETH)
    chain.pending_timestamp = tx.timestamp + 30
    price = auction_price(-1, p1, discount_of(ap, 30))
    owner_q, _ = fill_quotes(-1, 60 * WAD, price)
    _, _, realized = apply_trade(size, on, 60 * WAD, owner_q)
    debt = -(coll - reward + realized)
    assert debt > ins
    pool0 = vault.poolBalance()
    tx = engine.take(ev.auctionId, 2**255, price, 0, sender=taker)
    bd = vault.BadDebt.from_receipt(tx)
    assert [(e.owner, e.amount, e.fromInsurance, e.fromPool) for e in bd] == [
        (whale.address, debt, min(debt, ins), debt - min(debt, ins))]
    assert vault.insuranceFund() == 0 and vault.collateral(whale, 0) == 0
    # The taker holds the short now, at the index; the pool is not left holding it.
    assert ch.position(taker, 0, ETH)[0] == size and ch.position(whale, 0, ETH)[0] == 0
    # The pool's cash moved by the whale's realized loss and the uncovered debt: a loss bounded by the
    # capped open interest times the move (66.67 ETH x 1800), not by the size anyone could have built.
    assert vault.poolBalance() == pool0 - realized - (debt - min(debt, ins))
    cap_base = cap_in_base(10_000_000 * 10**6 * SCALE, p0)
    assert debt - min(debt, ins) <= cap_base * (p1 - p0) // WAD
