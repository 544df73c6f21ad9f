"""Adversarial regression tests: one end-to-end attack per finding of the independent value-safety review.

Every test runs the attack as the review describes it, on a default `deploy()` (the session `system`) or on
a fresh deployment when the finding needs another market set-up, and measures what it did, in USD:

    attacker gain   the attacker accounts' wealth after minus before: collateral tokens held + each Vault
                    account's worth (collateral + for an open position the lower of its PnL at the index and
                    what closing it on the vAMM would realize after the fee - pending funding, floored at
                    zero: an underwater account is not the owner's debt) + pool shares at `convertToAssets`.
                    When the attack's profit is the difference from what the rules would have given (findings
                    1 and 4), the same chain state is also run without the attack (chain.snapshot/restore)
                    and the gain is attack minus control.
    pool/insurance  Vault.poolBalance + Vault.insuranceFund, the pool's NAV and honest LPs' share value,
                    compared the same way.

The assertions are the SAFE properties: the attacker gains nothing, the insurance fund and the honest LPs
lose nothing beyond fees and the documented rules, and the liveness findings (6, 7, 8, 11, 12) hold. On the
vulnerable contracts (commit 4745643) every test fails; each prints its measured figures (`F<n> ...`).

Fixed contracts may refuse some attack step with a named error (a withdrawal while in auction, a second
syncDepth in an interval, an LP redemption while a market is dislocated, a kick ...). Every step a fix may
refuse therefore runs through `attempt(tx_fn) -> bool`, which swallows the revert; the attacker then goes
on with the best strategy left and the value is measured the same way. No test asserts that an attack
step succeeds. Block times are set explicitly (chain.pending_timestamp) wherever time matters, and
funding is switched off (maxFundingRate 0, as tests/liquidation/test_liquidation.py does) so nothing accrues.

Attacks:

 1. Equity behind a fully auctioned position. A 10x 30k USD ETH long is kicked as a whole (the highest index
    at which `kick` auctions the whole position); initial margin is owed only on the free part, so the owner
    withdraws all its equity while the auction runs; the fill 10 minutes later at the 0.67 % discount
    leaves bad debt. Gain = owner's final wealth minus the same account left alone; the insurance fund is
    seeded so the loss shows there.
 2. syncDepth sandwich. After a 10M LP deposit (NAV 20M, depth still 30M), the attacker buys 450 ETH (just
    inside the price band) on the shallow curve, calls `AmmController.syncDepth` (once, or four times in one
    transaction through BatchCaller), and sells on the deeper curve. The no-sync round trip is printed as
    the control.
 3. LP redeems at a NAV it inflated. The attacker holds half of a 20M pool with a matured withdraw request;
    its trader account pumps ETH (450) and BTC (22), 1.35M USD each, inside the price band (the slippage
    it pays counts as pool profit at the index), the LP redeems, the trader unwinds and gets the slippage
    back. Variant: another trader already holds a large long skew (887 ETH, the most the band allows once
    the deposit's depth syncs ran) first. The gain is counted from the start of the pump (the LP's shares
    at the pool's NAV then); the gain since the LP's deposit is printed too.
 4. Informed exit ahead of bad debt. A 1.35M USD ETH long (450 ETH, 210k collateral) and a -20 % index gap:
    NAV books the whole loss, only the collateral is collectable. The attacker LP (half the pool) redeems
    after the gap and before the liquidation ends; gain = its payout minus what identical shares are worth
    when it stays until the bad debt is resolved (the control run).
 5. Keeper tips above the margin. Five long/short pairs of 0.01 ETH in isolated sub-accounts (3.10 USD
    each); a 7 % fall; the attacker kicks its own losing accounts, redoes them three times and backstops,
    collecting 4 tips of 5 USD from accounts that had ~1 USD: bad debt.
 6. int96 auction size. A market priced at 1e-4 USD whose maxOpenInterest is set to uint96.max; the largest
    position the parameters allow (~7.9e10 base, 7.9M USD) becomes liquidatable: `kick` must succeed.
 7. Price band blocks the winning side. A 10 ETH short after a 13 % index fall (more than maxSpread): a
    0.01 ETH reduce and then a full close with a 1 % slippage limit must both succeed.
 8. Stale feed. With ETH's feed stale and ETH open interest, the ERC-4626 views must not revert and the
    max* views must report exactly what succeeds (deposit, redeem, withdraw with a matured request).
 9. Backstop sandwich. A 200 ETH long (75k collateral) is kicked whole after a 10 % fall and goes through
    three redos untaken; before the backstop the attacker shorts the vAMM down to the band, the backstop
    sells into it without a bound, the attacker buys back. Pool + insurance loss against the backstop
    alone (control).
10. Redo on a healthy account. After a kick the index recovers; the keeper redoes the (index-expired)
    auction three times and collects three tips from an account that is no longer liquidatable.
11. max* views that the actions refuse. `maxRedeem` = 999,999 shares of a 1 USDC position that `redeem`
    refuses (ZeroAssets); `maxDeposit` = 2^256-1 while large deposits revert (AmountTooLarge / overflow).
12. Gas DoS. A fresh deployment with 20 cheap markets: one account must not hold positions in more
    than 16 markets.
"""
from __future__ import annotations

import pytest

from helpers.trading import funding_off
from helpers.value_safety import (  # noqa: F401 - crew is a fixture
    BTC,
    DUST,
    ETH,
    FAR,
    INT128_MAX,
    LOG,
    MAX_UINT,
    SCALE,
    SPARE_SUB,
    at,
    attempt,
    attempt_tx,
    bad_debt_of,
    band_room,
    big,
    cash_out,
    crew,
    deposit,
    div_up,
    fund,
    fund_insurance,
    lp_deposit,
    lp_value,
    mint,
    mul_up,
    pool_plus_insurance,
    redeem_all,
    refresh_oracles,
    refused,
    set_index,
    start,
    trade,
    usd,
    view,
    wealth,
)
from vperp import deploy
from vperp.config import DeployConfig, MarketConfig
from vperp.units import DAY, WAD

pytestmark = pytest.mark.usefixtures("no_funding")  # tests/conftest.py: funding off for the module


# ---------------------------------------------------------------------------- 1. equity behind an auction


def _whole_kick_answer(s, who, mid: int = ETH) -> int:
    """Highest 8-decimal ETH answer at which `who`'s long is liquidatable and `kick` auctions it whole
    (the slice formula of LiquidationEngine._slice, from the chain's inputs)."""
    ch, vault, engine = s.clearing_house, s.vault, s.liquidation
    coll = vault.collateral(who, 0)
    size, on, _ = ch.position(who, 0, mid)
    mp = ch.marketParams(mid)
    lp = engine.liquidationParams()
    denom = lp.targetHealth * mp.mmr // WAD - lp.chip - lp.penalty - engine.auctionParams(mid).maxDiscount
    for cents in range(300_000, 200_000, -1):
        index = cents * 10**16
        value = coll + size * index // WAD - on
        maint = mul_up(mul_up(size, index), mp.mmr)
        if value >= maint:
            continue
        need = mul_up(maint, lp.targetHealth) - value + lp.tip
        b = 0 if need <= 0 or denom <= 0 else div_up(div_up(need, denom), index)
        b = max(b, mp.minPositionSize)
        if denom <= 0 or not (b < size and size - b >= mp.minPositionSize):
            return cents * 10**6
    raise AssertionError("no whole-position price found")


def test_attack_1_owner_withdraws_equity_behind_a_fully_auctioned_position(system, chain, crew):
    s, vault, engine = system, system.vault, system.liquidation
    owner, keeper, taker = crew.atk[0], crew.keeper, crew.taker
    fund_insurance(s, 10_000)
    fund(s, taker, 200_000)
    mint(s, owner, 3_100)
    t = start(chain)
    deposit(s, owner, 3_100)
    trade(s, owner, ETH, 10 * WAD)  # 10x 30k USD long
    answer = _whole_kick_answer(s, owner)
    at(chain, t + 10)
    set_index(s, "ETH", answer)
    at(chain, t + 20)
    kick = attempt_tx(lambda: engine.kick(owner, 0, ETH, keeper, sender=keeper), "kick")
    aid = engine.auctionCount() if kick else None
    auctioned = s.clearing_house.auctionedSize(owner, 0, ETH)
    holders = [(owner, [0, SPARE_SUB])]

    def fill():
        at(chain, t + 20 + 600)  # ten minutes into the auction
        if aid:
            attempt(lambda: engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=taker), "take")

    snap = chain.snapshot()
    fill()  # control: the owner leaves its account alone
    w_control, ins_control, pool_control = wealth(s, holders), vault.insuranceFund(), vault.poolBalance()
    chain.restore(snap)
    LOG.clear()

    # Attack: take every unit of equity out while the auction runs.
    at(chain, t + 30)
    free = vault.freeCollateral(owner, 0)
    if free > 0 and not attempt(lambda: vault.withdraw(0, free // SCALE, sender=owner), "withdraw"):
        if attempt(lambda: vault.transferMargin(0, SPARE_SUB, free, sender=owner), "transferMargin"):
            moved = vault.collateral(owner, SPARE_SUB) // SCALE
            attempt(lambda: vault.withdraw(SPARE_SUB, moved, sender=owner), "withdraw spare")
    fill()
    w_attack, ins_attack, pool_attack = wealth(s, holders), vault.insuranceFund(), vault.poolBalance()
    gain = w_attack - w_control
    ins_loss, pool_loss = ins_control - ins_attack, pool_control - pool_attack
    print(f"\nF1 index {answer / 1e8:.2f}, auctioned {auctioned / WAD} ETH of 10, equity withdrawn {usd(free)} USD")
    print(f"F1 gain: {usd(gain)} USD; insurance fund loss: {usd(ins_loss)} USD; pool loss: {usd(pool_loss)} USD"
          f" (refused steps: {refused()})")
    assert gain <= DUST, f"F1: the owner gained {usd(gain)} USD by withdrawing the equity behind its auction"
    assert ins_loss <= DUST and pool_loss <= DUST, f"F1: insurance lost {usd(ins_loss)}, pool {usd(pool_loss)}"


# ---------------------------------------------------------------------------- 2. syncDepth sandwich


@pytest.mark.parametrize("n_syncs", [1, 4])
def test_attack_2_sync_depth_sandwich_drains_the_pool(system, chain, crew, project, n_syncs):
    s, pool, amm = system, system.pool, system.amm
    atk = crew.atk[0]
    lp_deposit(s, crew.honest_lp, 10_000_000)  # NAV 20M, depth still 30M
    batcher = project.BatchCaller.deploy(sender=atk)
    mint(s, atk, 400_000)
    holders = [(atk, [0])]
    t = start(chain)

    def run(n: int):
        w0, nav0 = wealth(s, holders), pool.navWad()
        at(chain, t + 10)
        deposit(s, atk, 400_000)
        b = min(450 * WAD, band_room(s, ETH, buy=True))  # 1.35M USD, just inside the band
        attempt(lambda: trade(s, atk, ETH, b), "buy")
        x0 = s.clearing_house.marketState(ETH).baseReserve
        if n:
            calls = [amm.syncDepth.encode_input(ETH)] * n
            if not attempt(lambda: batcher.batch([amm.address] * n, calls, sender=atk), f"{n} syncs in one tx"):
                for i in range(n):
                    attempt(lambda: amm.syncDepth(ETH, sender=atk), f"sync {i + 1}")
        x1 = s.clearing_house.marketState(ETH).baseReserve
        cash_out(s, atk, [0])
        return wealth(s, holders) - w0, pool.navWad() - nav0, b, x1 * 10**6 // x0

    snap = chain.snapshot()
    control, control_nav, _, _ = run(0)
    chain.restore(snap)
    LOG.clear()
    gain, nav_change, b, depth = run(n_syncs)
    print(f"\nF2 control (no sync) gain: {usd(control)} USD; pool NAV change {usd(control_nav)} USD")
    print(f"F2 {n_syncs} sync(s): bought {b / WAD:.2f} ETH, depth x{depth / 1e6:.4f}; "
          f"gain: {usd(gain)} USD; pool NAV change: {usd(nav_change)} USD (refused steps: {refused()})")
    assert gain <= DUST, f"F2: the sandwich around {n_syncs} syncDepth call(s) gained {usd(gain)} USD"
    assert nav_change >= -DUST, f"F2: the pool's NAV fell {usd(-nav_change)} USD"


# ---------------------------------------------------------------------------- 3. LP redeems at an inflated NAV


@pytest.mark.parametrize("skewed", [False, True], ids=["flat-book", "skewed-book"])
def test_attack_3_lp_redeems_at_a_nav_it_inflated(system, chain, crew, skewed):
    s, pool, amm = system, system.pool, system.amm
    lp, trader, other = crew.atk[0], crew.atk[1], crew.victim
    mint(s, lp, 10_000_000)
    mint(s, trader, 800_000)
    holders = [(lp, [0]), (trader, [0])]
    w_deposit = wealth(s, holders)
    t = start(chain)
    units = s.units(10_000_000)
    s.collateral.approve(pool, units, sender=lp)
    pool.deposit(units, lp, sender=lp)  # half of a 20M pool
    shares = pool.balanceOf(lp)
    pool.requestWithdraw(shares, sender=lp)
    skew = 0
    if skewed:
        # The deposit's depth syncs (an honest keeper, an hour apart), then another trader's large long.
        for i in range(4):
            at(chain, t + 100 + i * 3_700)
            for mid in (ETH, BTC):
                attempt(lambda: amm.syncDepth(mid, sender=crew.keeper), "honest sync")
        fund(s, other, 1_000_000)
        skew = band_room(s, ETH, buy=True, frac_num=95, frac_den=100) // 10**18 * 10**18
        attempt(lambda: trade(s, other, ETH, skew), "skew trader's long")
        skew = s.clearing_house.position(other, 0, ETH)[0]
    at(chain, t + DAY + 10)  # the request has matured
    refresh_oracles(s)
    # The attack starts here: its shares (and the honest LP's) are valued at the pool's own NAV, which in
    # the skewed book already counts the other trader's slippage; the gain asserted is what the pump,
    # redemption and unwind add to that.
    honest0 = lp_value(s, s.deployer)
    w0, lp0 = wealth(s, holders), wealth(s, [(lp, [0])])

    # Pump both markets to the band, redeem, unwind.
    deposit(s, trader, 800_000)
    pumped = {}
    for mid, most in ((ETH, 450 * WAD), (BTC, 22 * WAD)):  # ~1.35M USD each, inside the band
        b = min(most, band_room(s, mid, buy=True))
        pumped[mid] = b if b and attempt(lambda: trade(s, trader, mid, b), f"pump {mid}") else 0
    nav_pumped = pool.navWad()
    redeemed = redeem_all(s, lp, " at the pumped NAV")
    cash_out(s, trader, [0])
    if pool.balanceOf(lp):  # a fix refused the redemption: redeem what is allowed after the unwind
        redeemed += redeem_all(s, lp, " after the unwind")
    w1 = wealth(s, holders)
    honest1 = lp_value(s, s.deployer)
    gain = w1 - w0
    lp_leg = wealth(s, [(lp, [0])]) - lp0
    trading_leg = gain - lp_leg
    tag = "skewed" if skewed else "flat"
    print(f"\nF3[{tag}] other trader's long {skew / WAD:.2f} ETH; pumped {pumped[ETH] / WAD:.2f} ETH and "
          f"{pumped[BTC] / WAD:.3f} BTC; NAV when pumped {usd(nav_pumped)} USD; redeemed {usd(redeemed * SCALE)} USD")
    print(f"F3[{tag}] gain: {usd(gain)} USD (LP leg {usd(lp_leg)}, trading leg {usd(trading_leg)}; since the LP's "
          f"deposit {usd(w1 - w_deposit)}); honest LP (seed) loss: {usd(honest0 - honest1)} USD "
          f"(refused steps: {refused()})")
    assert gain <= DUST, f"F3[{tag}]: redeeming at a self-inflated NAV gained {usd(gain)} USD"
    assert honest1 >= honest0 - DUST, f"F3[{tag}]: the honest LP lost {usd(honest0 - honest1)} USD"


# ---------------------------------------------------------------------------- 4. informed exit ahead of bad debt


def test_attack_4_informed_lp_exits_ahead_of_bad_debt(system, chain, crew):
    s, pool, engine = system, system.pool, system.liquidation
    lp, victim, keeper, taker = crew.atk[0], crew.victim, crew.keeper, crew.taker
    t = start(chain)
    shares = lp_deposit(s, lp, 10_000_000)  # half of a 20M pool
    pool.requestWithdraw(shares, sender=lp)
    fund(s, victim, 210_000)
    trade(s, victim, ETH, 450 * WAD)  # 1.35M USD long
    fund(s, taker, 400_000)
    at(chain, t + DAY + 10)
    refresh_oracles(s)
    g = t + DAY + 20
    at(chain, g)
    set_index(s, "ETH", 2_400 * 10**8)  # -20 % gap
    lp_tokens0 = s.collateral.balanceOf(lp)
    nav_gap = pool.navWad()

    def liquidate():
        at(chain, g + 10)
        k = attempt(lambda: engine.kick(victim, 0, ETH, keeper, sender=keeper), "kick")
        aid = engine.auctionCount() if k else 0
        at(chain, g + 20)
        r = attempt_tx(lambda: engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=taker), "take") if aid else None
        return bad_debt_of(s, r)

    def payout():
        return (s.collateral.balanceOf(lp) - lp_tokens0) * SCALE + lp_value(s, lp)

    snap = chain.snapshot()
    debt_control = liquidate()
    at(chain, g + 30)
    redeem_all(s, lp, " after the liquidation")  # the LP stays through the liquidation, then leaves
    fair, honest_control = payout(), lp_value(s, s.deployer)
    chain.restore(snap)
    LOG.clear()

    at(chain, g + 5)
    early = redeem_all(s, lp, " after the gap")  # the informed exit
    debt = liquidate()
    at(chain, g + 30)
    if pool.balanceOf(lp):
        redeem_all(s, lp, " after the liquidation")
    got, honest_attack = payout(), lp_value(s, s.deployer)
    gain = got - fair
    print(f"\nF4 NAV after the gap {usd(nav_gap)} USD; bad debt {usd(debt)} USD (control {usd(debt_control)}); "
          f"early redemption {usd(early * SCALE)} USD")
    print(f"F4 gain: {usd(gain)} USD (payout {usd(got)} vs fair share {usd(fair)}); honest LP (seed) loss: "
          f"{usd(honest_control - honest_attack)} USD (refused steps: {refused()})")
    assert gain <= DUST, f"F4: the informed LP escaped {usd(gain)} USD of its share of the bad debt"
    assert honest_attack >= honest_control - DUST, f"F4: the staying LP lost {usd(honest_control - honest_attack)} USD"


# ---------------------------------------------------------------------------- 5. tips above the margin


def test_attack_5_keeper_tips_exceed_dust_accounts_margin(system, chain, crew):
    s, vault, engine = system, system.vault, system.liquidation
    atk = crew.atk[0]
    pairs = 5
    subs = list(range(1, 2 * pairs + 1))
    mint(s, atk, 100)
    holders = [(atk, [0, *subs])]
    w0, pi0 = wealth(s, holders), pool_plus_insurance(s)
    t = start(chain)
    for i in range(pairs):
        for sub, side in ((2 * i + 1, 1), (2 * i + 2, -1)):
            deposit(s, atk, "3.10", sub)
            trade(s, atk, ETH, side * 10**16, sub)  # 0.01 ETH, long in odd sub-accounts, short in even
    at(chain, t + 100)
    set_index(s, "ETH", 2_790 * 10**8)  # -7 %: the longs are liquidatable
    longs = [sub for sub in subs if sub % 2 == 1]
    liquidatable = sum(vault.isLiquidatable(atk, sub) for sub in longs)
    auctions = {}
    at(chain, t + 200)
    for sub in longs:
        if attempt(lambda: engine.kick(atk, sub, ETH, atk, sender=atk), f"kick {sub}"):
            auctions[sub] = engine.auctionCount()
    debt = 0
    step = engine.auctionParams(ETH).duration + 1
    for r in range(engine.liquidationParams().maxRedos):
        at(chain, t + 200 + (r + 1) * step)
        for sub, aid in auctions.items():
            attempt(lambda: engine.redo(aid, atk, sender=atk), f"redo {r + 1} sub {sub}")
    at(chain, t + 200 + (engine.liquidationParams().maxRedos + 1) * step)
    for sub, aid in auctions.items():
        debt += bad_debt_of(s, attempt_tx(lambda: engine.backstop(aid, sender=atk), f"backstop sub {sub}"))
    cash_out(s, atk, [0, *subs])
    gain, pi_change = wealth(s, holders) - w0, pool_plus_insurance(s) - pi0
    print(f"\nF5 {liquidatable} of {pairs} accounts liquidatable after -7 %; bad debt {usd(debt)} USD "
          f"({usd(debt // max(len(auctions), 1))} per account of 3.10 USD)")
    print(f"F5 gain: {usd(gain)} USD; pool + insurance change: {usd(pi_change)} USD (refused steps: {refused()})")
    assert gain <= DUST, f"F5: owner-and-keeper gained {usd(gain)} USD from tips its accounts could not pay"
    assert pi_change >= -DUST, f"F5: pool + insurance lost {usd(-pi_change)} USD"


# ---------------------------------------------------------------------------- 6. int96 auction size


def test_attack_6_largest_low_priced_position_can_be_kicked(deployer, chain, crew):
    cfg = DeployConfig(markets=(MarketConfig("MEME", price=0.0001, base_reserve=10**13, max_open_interest=10**9,
                                             min_position_size=1),))
    s = deploy(deployer, cfg)
    funding_off(s)
    ch, engine = s.clearing_house, s.liquidation
    mid = s.markets["MEME"].id
    p = ch.marketParams(mid)
    for cap in (2**96 - 1 >> k for k in range(12)):  # governance may set up to uint96.max; a fix may bound it lower
        if attempt(lambda: ch.setMarketParams(mid, (p.oracle, p.heartbeat, p.twapWindow, p.imr, p.mmr, p.takerFee,
                                                    p.maxSpread, p.maxOiPoolRatio, cap, p.minPositionSize),
                                              ch.insuranceFeeShare(mid), sender=deployer), "setMarketParams"):
            break
    p = ch.marketParams(mid)
    index = ch.indexPrice(mid)
    by_pool = s.vault.poolBalance() * p.maxOiPoolRatio // WAD * WAD // index * 99 // 100
    size = min(p.maxOpenInterest, by_pool, band_room(s, mid, buy=True))
    size = size // p.minPositionSize * p.minPositionSize
    trader, keeper = crew.atk[0], crew.keeper
    notional = size * index // WAD
    fund(s, trader, notional * 12 // 100 // WAD + 1_000)
    t = start(chain)
    opened = attempt(lambda: trade(s, trader, mid, size), "open")
    at(chain, t + 10)
    set_index(s, "MEME", 9_000)  # 0.00009: -10 %
    liquidatable = s.vault.isLiquidatable(trader, 0)
    at(chain, t + 20)
    kicked = attempt(lambda: engine.kick(trader, 0, mid, keeper, sender=keeper), "kick")
    auctioned = ch.auctionedSize(trader, 0, mid)
    print(f"\nF6 maxOpenInterest {p.maxOpenInterest / WAD:.4g} base; position {size / WAD:.6g} base "
          f"({usd(notional)} USD) opened={opened}, liquidatable={liquidatable}; kick succeeded: {kicked}, "
          f"auctioned {auctioned / WAD:.6g} base (int96 max {(2**95 - 1) / WAD:.6g}) (refused steps: {refused()})")
    assert opened and liquidatable, "F6: set-up did not produce a liquidatable position"
    assert kicked, "F6: the largest position the market allows cannot be kicked"


# ---------------------------------------------------------------------------- 7. price band blocks the winner


def test_attack_7_winning_short_can_reduce_and_close_after_a_large_index_move(system, chain, crew):
    s, ch = system, system.clearing_house
    short = crew.atk[0]
    fund(s, short, 3_100)
    t = start(chain)
    trade(s, short, ETH, -10 * WAD)
    at(chain, t + 10)
    set_index(s, "ETH", 2_600 * 10**8)  # -13.3 %: more than maxSpread (10 %)
    at(chain, t + 20)
    assert ch.indexPrice(ETH) == 2_600 * WAD  # the oracle is valid
    value0 = s.vault.accountValue(short, 0)

    def limit_for(base: int) -> int:
        q = view(lambda: ch.quote(ETH, base)[0])
        return -q * 101 // 100 if q is not None else 0  # pay at most 1 % over the vAMM's quote

    reduced = attempt(lambda: trade(s, short, ETH, 10**16, limit=limit_for(10**16)), "reduce 0.01 ETH")
    at(chain, t + 30)
    size = ch.position(short, 0, ETH)[0]
    closed = attempt(lambda: ch.closePosition(0, ETH, limit_for(-size), FAR, sender=short), "close")
    left = ch.position(short, 0, ETH)[0]
    print(f"\nF7 short value {usd(value0)} USD at index 2600 (vAMM {ch.spotPrice(ETH) / WAD:.2f}); reduce 0.01: "
          f"{reduced}; full close: {closed}; size left {left / WAD} ETH (refused steps: {refused()})")
    assert reduced, "F7: the winning short cannot reduce 0.01 ETH"
    assert closed and left == 0, "F7: the winning short cannot close"


# ---------------------------------------------------------------------------- 8. stale feed and ERC-4626 views


def test_attack_8_stale_feed_erc4626_views_never_revert_and_max_is_exact(system, chain, crew):
    s, pool, usdc = system, system.pool, system.collateral
    lp, trader, newcomer = crew.atk[0], crew.atk[1], crew.atk[2]
    t = start(chain)
    shares = lp_deposit(s, lp, 1_000)
    pool.requestWithdraw(shares, sender=lp)
    fund(s, trader, 10_000)
    trade(s, trader, ETH, 10 * WAD)  # ETH open interest
    now = t + DAY + 10  # the request has matured
    at(chain, now)
    set_index(s, "BTC", 60_000 * 10**8)
    eth = s.markets["ETH"].oracle
    hb = s.clearing_house.marketParams(ETH).heartbeat
    at(chain, now + 1)
    eth.updateRoundData(eth.latestRound() + 1, 3_000 * 10**8, now - hb - 100, 0, sender=s.deployer)  # stale
    stale = view(lambda: s.clearing_house.indexPrice(ETH)) is None
    problems = []
    views = {
        "totalAssets": lambda: pool.totalAssets(),
        "convertToShares": lambda: pool.convertToShares(10**6),
        "convertToAssets": lambda: pool.convertToAssets(10**12),
        "maxWithdraw": lambda: pool.maxWithdraw(lp),
        "maxRedeem": lambda: pool.maxRedeem(lp),
        "maxDeposit": lambda: pool.maxDeposit(newcomer),
        "maxMint": lambda: pool.maxMint(newcomer),
    }
    got = {}
    for name, fn in views.items():
        got[name] = attempt_tx(fn, name)
        if got[name] is None:
            problems.append(f"{name} reverts")

    def check(label, ok, detail):
        if not ok:
            problems.append(f"{label}: {detail}")

    # Deposits: a moderate amount within maxDeposit/maxMint must go through; when they say 0, nothing may.
    for name, action, unit in (("maxDeposit", lambda a: pool.deposit(a, newcomer, sender=newcomer), s.units(1)),
                               ("maxMint", lambda a: pool.mint(a, newcomer, sender=newcomer), s.units(1) * 10**6)):
        m = got[name]
        if m is None:
            continue
        snap = chain.snapshot()
        amount = min(m, 1_000 * unit) if m else unit
        usdc.mint(newcomer, 2_000 * s.units(1) if name == "maxMint" else amount, sender=newcomer)
        usdc.approve(pool, MAX_UINT, sender=newcomer)
        ok = attempt(lambda: action(amount), name[3:].lower())
        check(name, ok == (m > 0), f"reports {big(m)} but {name[3:].lower()}({amount}) {'succeeds' if ok else 'reverts'}")
        chain.restore(snap)
    for name, action, unit in (("maxRedeem", lambda a: pool.redeem(a, lp, lp, sender=lp), shares),
                               ("maxWithdraw", lambda a: pool.withdraw(a, lp, lp, sender=lp), 1)):
        m = got[name]
        if m is None:
            continue
        snap = chain.snapshot()
        amount = m if m else unit
        ok = attempt(lambda: action(amount), name.replace("max", "").lower())
        check(name, ok == (m > 0), f"reports {m} but {name[3:].lower()}({amount}) {'succeeds' if ok else 'reverts'}")
        chain.restore(snap)
    print(f"\nF8 ETH feed stale: {stale}; views: " + ", ".join(f"{k}={'REVERT' if v is None else big(v)}" for k, v in got.items()))
    print(f"F8 problems: {problems or 'none'} (refused steps: {refused()})")
    assert stale, "F8: set-up did not make the ETH feed stale"
    assert not problems, f"F8: {problems}"


# ---------------------------------------------------------------------------- 9. backstop sandwich


def test_attack_9_backstop_sandwich(system, chain, crew):
    s, engine = system, system.liquidation
    atk, victim, keeper = crew.atk[0], crew.victim, crew.keeper
    t = start(chain)
    fund(s, victim, 75_000)
    trade(s, victim, ETH, 200 * WAD)  # 600k USD long, 8x
    at(chain, t + 10)
    set_index(s, "ETH", 2_700 * 10**8)  # -10 %: kicked whole
    at(chain, t + 20)
    kicked = attempt(lambda: engine.kick(victim, 0, ETH, keeper, sender=keeper), "kick")
    aid = engine.auctionCount() if kicked else 0
    auctioned = s.clearing_house.auctionedSize(victim, 0, ETH)
    step = engine.auctionParams(ETH).duration + 1
    for r in range(engine.liquidationParams().maxRedos):  # nobody takes; the keeper redoes
        at(chain, t + 20 + (r + 1) * step)
        attempt(lambda: engine.redo(aid, keeper, sender=keeper), f"redo {r + 1}")
    b_time = t + 20 + (engine.liquidationParams().maxRedos + 1) * step
    mint(s, atk, 500_000)
    holders = [(atk, [0])]

    def backstop(label):
        return bad_debt_of(s, attempt_tx(lambda: engine.backstop(aid, sender=keeper), label)) if aid else 0

    snap = chain.snapshot()
    at(chain, b_time + 1)
    debt_control = backstop("backstop (control)")
    pi_control, victim_control = pool_plus_insurance(s), wealth(s, [(victim, [0])])
    chain.restore(snap)
    LOG.clear()

    w0 = wealth(s, holders)
    deposit(s, atk, 500_000)
    at(chain, b_time)
    short = band_room(s, ETH, buy=False)
    attempt(lambda: trade(s, atk, ETH, -short), "front-run short")
    at(chain, b_time + 1)
    debt = backstop("sandwiched backstop")
    at(chain, b_time + 2)
    cash_out(s, atk, [0])
    if aid and engine.auction(aid).size != 0:  # a fix refused the sandwiched backstop: it runs after
        at(chain, b_time + 10)
        debt += backstop("backstop after the unwind")
        cash_out(s, atk, [0])
    gain = wealth(s, holders) - w0
    pi_loss = pi_control - pool_plus_insurance(s)
    victim_loss = victim_control - wealth(s, [(victim, [0])])
    print(f"\nF9 auctioned {auctioned / WAD} ETH; front-run short {short / WAD:.2f} ETH; bad debt {usd(debt)} USD "
          f"(control {usd(debt_control)})")
    print(f"F9 gain: {usd(gain)} USD; pool + insurance loss: {usd(pi_loss)} USD; liquidated owner's extra loss: "
          f"{usd(victim_loss)} USD (refused steps: {refused()})")
    assert gain <= DUST, f"F9: the backstop sandwich gained {usd(gain)} USD"
    assert pi_loss <= DUST, f"F9: pool + insurance lost {usd(pi_loss)} USD"


# ---------------------------------------------------------------------------- 10. redo on a healthy account


def test_attack_10_redo_pays_no_tip_on_a_healthy_account(system, chain, crew):
    s, vault, engine = system, system.vault, system.liquidation
    owner, keeper = crew.victim, crew.atk[0]
    t = start(chain)
    fund(s, owner, 3_100)
    trade(s, owner, ETH, 10 * WAD)
    at(chain, t + 10)
    set_index(s, "ETH", 2_800 * 10**8)
    at(chain, t + 20)
    kicked = attempt(lambda: engine.kick(owner, 0, ETH, keeper, sender=keeper), "kick")
    aid = engine.auctionCount() if kicked else 0
    at(chain, t + 30)
    set_index(s, "ETH", 3_000 * 10**8)  # the index recovers (> resetDrop: the auction is expired)
    healthy = not vault.isLiquidatable(owner, 0)
    k0, o0 = vault.collateral(keeper, 0), vault.collateral(owner, 0)
    step = engine.auctionParams(ETH).duration + 1
    redos = 0
    for r in range(engine.liquidationParams().maxRedos):
        at(chain, t + 40 + r * step)
        redos += attempt(lambda: engine.redo(aid, keeper, sender=keeper), f"redo {r + 1}") if aid else 0
    gain, owner_loss = vault.collateral(keeper, 0) - k0, o0 - vault.collateral(owner, 0)
    print(f"\nF10 owner healthy after the recovery: {healthy}; redos done {redos}")
    print(f"F10 gain: {usd(gain)} USD (keeper's tips from redos); owner's loss: {usd(owner_loss)} USD "
          f"(refused steps: {refused()})")
    assert healthy, "F10: set-up did not make the account healthy again"
    assert gain <= 0 and owner_loss <= 0, f"F10: redo paid {usd(gain)} USD of tips from a healthy account"


# ---------------------------------------------------------------------------- 11. max views the actions refuse


def test_attack_11_max_redeem_and_max_deposit_are_honoured(system, chain, crew):
    s, pool, usdc = system, system.pool, system.collateral
    lp, whale = crew.atk[0], crew.atk[1]
    problems = []
    t = start(chain)
    lp_deposit(s, lp, 1)  # a 1 USDC position
    pool.requestWithdraw(999_999, sender=lp)
    at(chain, t + DAY + 10)
    mr = pool.maxRedeem(lp)
    preview = pool.previewRedeem(mr) if mr else 0
    if mr > 0:
        snap = chain.snapshot()
        if not attempt(lambda: pool.redeem(mr, lp, lp, sender=lp), "redeem(maxRedeem)"):
            problems.append(f"maxRedeem {mr} but redeem({mr}) reverts ({LOG[-1]})")
        chain.restore(snap)

    md = pool.maxDeposit(whale)
    ledger_max = INT128_MAX // SCALE - max(s.vault.poolBalance(), 0) // SCALE  # what the pool's ledger slot holds
    amounts = {"maxDeposit": min(md, MAX_UINT - usdc.totalSupply())}
    if ledger_max + 1 <= md:
        amounts["ledger limit + 1 unit"] = ledger_max + 1
    for label, amount in amounts.items():
        if amount <= 0:
            continue
        snap = chain.snapshot()
        usdc.mint(whale, amount, sender=whale)
        usdc.approve(pool, amount, sender=whale)
        if not attempt(lambda: pool.deposit(amount, whale, sender=whale), f"deposit({label})"):
            problems.append(f"maxDeposit {big(md)} but deposit({label} = {amount}) reverts ({LOG[-1]})")
        chain.restore(snap)
    print(f"\nF11 maxRedeem {mr} shares (previewRedeem {preview} units); maxDeposit {big(md)}")
    print(f"F11 problems: {problems or 'none'} (refused steps: {refused()})")
    assert not problems, f"F11: {problems}"


# ---------------------------------------------------------------------------- 12. markets per account


def test_attack_12_an_account_cannot_hold_more_than_16_markets(deployer, chain, crew):
    markets = tuple(MarketConfig(f"C{i:02d}", price=1, base_reserve=1_000_000, max_open_interest=1_000_000,
                                 min_position_size=1) for i in range(20))
    s = deploy(deployer, DeployConfig(markets=markets))
    funding_off(s)
    atk = crew.atk[0]
    fund(s, atk, 1_000)
    held, gas = 0, []
    for m in s.markets.values():
        r = attempt_tx(lambda: trade(s, atk, m.id, WAD), f"open {m.symbol}")
        if r is not None:
            held += 1
            gas.append(r.gas_used)
    nav_gas = view(lambda: s.pool.navWad.estimate_gas_cost(), "n/a")
    print(f"\nF12 markets listed {len(s.markets)}; markets one account holds: {held}; gas of the 1st/last open "
          f"{gas[0] if gas else '-'}/{gas[-1] if gas else '-'}; NAV gas {nav_gas} (refused steps: {refused()})")
    assert held <= 16, f"F12: one account holds positions in {held} markets (> 16)"
