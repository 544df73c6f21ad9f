"""LiquidityPool: the ERC-4626 pool over the Vault's pool balance (docs/pool.md, docs/specification.md
section 9; invariants 1, 16 and 17 of docs/specification.md).

Expected values are computed here, independently of the contract, from the ERC-4626 virtual-share
formulas as OpenZeppelin documents them (`_decimalsOffset() = 6`, so 10**6 virtual shares and 1
virtual asset):

    deposit  a: shares = floor(a * (supply + 1e6) / (totalAssets + 1))
    mint     s: assets = ceil (s * (totalAssets + 1) / (supply + 1e6))
    withdraw a: shares = ceil (a * (supply + 1e6) / (totalAssets + 1))
    redeem   s: assets = floor(s * (totalAssets + 1) / (supply + 1e6))

and from the pool's NatSpec for its value: NAV [wad] = Vault.poolBalance - the traders' PnL if every
position closed now against its vAMM (per market: exitValue(x, y, net OI) - sum over its positions of
(openNotional + pendingFunding)) - the bad-debt estimate the insurance fund cannot cover; totalAssets =
floor(NAV / 1e12) for the 6-decimal token; reserve = ceil(0.2 x sum over markets of ceil(|net OI| x vAMM
price)).

Time-sensitive boundaries (the reserve, maxWithdraw) are checked at an exact timestamp: `view_at`
reads the views in a throw-away block mined at T, then the transaction is sent in the block at T.
"""
from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from helpers.trading import (MAX_UINT, WAD, b32, ceil_div, deadline, exit_value, expect_revert, funding_off, snapshot,
                             swap)
from vperp import deploy
from vperp.config import lagging_peg_config
from vperp.units import DAY, HOUR

SCALE = 10**12  # WAD per token unit (6-decimal collateral)
OFFSET = 10**6  # virtual shares: 10 ** _decimalsOffset()
SEED = 10_000_000 * 10**6  # the deployer's seed deposit [token units]
SEED_SHARES = SEED * OFFSET  # first deposit into an empty pool: a * (0 + 1e6) / (0 + 1)
COOLDOWN = DAY
WINDOW = 2 * DAY
RESERVE_FACTOR = 2 * 10**17
ETH_ID, BTC_ID = 1, 2

# Few examples (each is a dozen transactions), no shrinking (a shrink replays the chain dozens of
# times) and no example database written into the repository.
POOL_SETTINGS = settings(
    max_examples=4,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---------------------------------------------------------------------------- formulas


def units(human) -> int:
    return int(Decimal(str(human)) * 10**6)


def shares_for(assets: int, supply: int, total: int, up: bool = False) -> int:
    n, d = assets * (supply + OFFSET), total + 1
    return ceil_div(n, d) if up else n // d


def assets_for(shares: int, supply: int, total: int, up: bool = False) -> int:
    n, d = shares * (total + 1), supply + OFFSET
    return ceil_div(n, d) if up else n // d


def net_exposure(net_by_market: dict[int, int], index_by_market: dict[int, int]) -> int:
    return sum(ceil_div(abs(net) * index_by_market[mid], WAD) for mid, net in net_by_market.items())


def reserve_of(exposure: int, factor: int = RESERVE_FACTOR) -> int:
    return ceil_div(exposure * factor, WAD)


# ---------------------------------------------------------------------------- chain helpers


def lp_deposit(system, who, amount: int, receiver=None):
    usdc, pool = system.collateral, system.pool
    usdc.mint(who, amount, sender=who)
    usdc.approve(pool, amount, sender=who)
    return pool.deposit(amount, receiver or who, sender=who)


def donate(system, who, amount: int):
    """A grant to the pool's balance through `Vault.fundPool` (no shares minted)."""
    usdc, vault = system.collateral, system.vault
    usdc.mint(who, amount, sender=who)
    usdc.approve(vault, amount, sender=who)
    return vault.fundPool(amount, sender=who)


def refresh_oracles(system):
    """Re-post every feed's current answer so it stays within its heartbeat after a time jump."""
    for m in system.markets.values():
        m.oracle.updateAnswer(m.oracle.latestRoundData()[1], sender=system.deployer)


def advance(system, chain, seconds: int, refresh: bool = True):
    """Jump `seconds`; re-post the oracles (needed only while positions are open: with no open
    interest the pool's NAV reads no index)."""
    chain.pending_timestamp += seconds
    chain.mine()
    if refresh:
        refresh_oracles(system)


def request_and_wait(system, chain, who, shares: int, refresh: bool = False):
    tx = system.pool.requestWithdraw(shares, sender=who)
    advance(system, chain, COOLDOWN, refresh)
    return tx


def open_(system, who, market_id: int, base: int, sub: int = 0):
    limit = MAX_UINT if base > 0 else 0
    return system.clearing_house.openPosition(sub, market_id, base, limit, deadline(), sender=who)


def view_at(chain, timestamp: int, fn):
    """`fn()` evaluated in a block at `timestamp`, without keeping that block."""
    sid = chain.snapshot()
    chain.pending_timestamp = timestamp
    chain.mine()
    try:
        return fn()
    finally:
        chain.restore(sid)


def one(receipt, event):
    logs = receipt.events.filter(event)
    assert len(logs) == 1, logs
    return logs[0]


def pool_snapshot(system, owners, assets: bool = True) -> dict:
    """The Vault's pool ledger and markets (helpers.trading.snapshot) plus the pool's supply, assets,
    and each owner's shares, tokens and request: what a reverted pool call must leave alone. With
    funding accruing, the assets move with the clock alone (a reverted call still takes a block):
    `assets=False` leaves them out."""
    pool, usdc = system.pool, system.collateral
    snap = snapshot(system, (), markets=[ETH_ID])  # pool balance, insurance, Vault tokens, a market
    snap["supply"] = pool.totalSupply()
    if assets:
        snap["totalAssets"] = pool.totalAssets()
    for o in owners:
        snap[("shares", o.address)] = pool.balanceOf(o)
        snap[("tokens", o.address)] = usdc.balanceOf(o)
        r = pool.withdrawRequest(o)
        snap[("request", o.address)] = (r.shares, r.unlockAt)
    return snap


def nav_from_positions(system, positions, index_by_market=None) -> tuple[int, int]:
    """(poolBalance - traders' PnL at vAMM exit net of funding - uncovered bad debt, number of open
    positions), summed position by position; the index plays no part (`index_by_market` is ignored)."""
    ch, vault = system.clearing_house, system.vault
    traders = 0
    open_count = 0
    for mid in {mid for _, _, mid in positions}:
        st = ch.marketState(mid)
        traders += exit_value(st.baseReserve, st.quoteReserve, st.longOpenInterest - st.shortOpenInterest)
    for owner, sub, mid in positions:
        size, on, pf = ch.position(owner, sub, mid)
        if size != 0:
            open_count += 1
        traders += -on - pf
    uncovered = max(0, vault.pendingBadDebt() - vault.insuranceFund())
    return vault.poolBalance() - traders - uncovered, open_count


def trader_views(system, owners_subs):
    ch, vault = system.clearing_house, system.vault
    out = {}
    for owner, sub in owners_subs:
        for mid in (ETH_ID, BTC_ID):
            out[("position", owner.address, sub, mid)] = tuple(ch.position(owner, sub, mid))
        out[("collateral", owner.address, sub)] = vault.collateral(owner, sub)
        out[("accountValue", owner.address, sub)] = vault.accountValue(owner, sub)
        out[("freeCollateral", owner.address, sub)] = vault.freeCollateral(owner, sub)
        out[("requirements", owner.address, sub)] = tuple(vault.marginRequirements(owner, sub))
        out[("liquidatable", owner.address, sub)] = vault.isLiquidatable(owner, sub)
    return out


def vault_is_solvent(system, owners_subs) -> bool:
    """Token balance of the Vault (as wad) >= every positive claim on it (invariant 1, docs/specification.md)."""
    vault = system.vault
    claims = sum(max(vault.collateral(o, s), 0) for o, s in owners_subs)
    claims += vault.insuranceFund() + max(vault.poolBalance(), 0)
    return system.collateral.balanceOf(vault) * SCALE >= claims


@pytest.fixture
def dave(accounts):
    return accounts[4]


@pytest.fixture
def erin(accounts):
    return accounts[5]


# ---------------------------------------------------------------------------- basics


def test_seed_deposit_state(system, pool, vault, usdc, deployer):
    assert pool.asset() == usdc.address
    assert pool.decimals() == 6 + 6  # asset decimals + offset
    assert pool.totalSupply() == SEED_SHARES == pool.balanceOf(deployer)
    assert pool.totalAssets() == SEED
    assert vault.poolBalance() == SEED * SCALE
    assert usdc.balanceOf(pool) == 0  # deposits go straight on to the Vault
    p = pool.poolParams()
    assert (p.withdrawCooldown, p.withdrawWindow, p.reserveFactor) == (COOLDOWN, WINDOW, RESERVE_FACTOR)


def test_deposit_mints_at_nav_by_the_virtual_share_formula(system, pool, vault, usdc, alice, bob, carol):
    donation = units("7777.777777")  # a grant, so that one share is no longer worth a round number
    donate(system, carol, donation)
    supply, total = SEED_SHARES, SEED + donation
    assert pool.totalAssets() == total

    a = units("12345.678901")
    expected = shares_for(a, supply, total)
    assert expected != a * OFFSET  # the grant matters
    assert pool.previewDeposit(a) == expected == pool.convertToShares(a)
    usdc.mint(alice, a, sender=alice)
    usdc.approve(pool, a, sender=alice)
    vault_tokens = usdc.balanceOf(vault)

    tx = pool.deposit(a, bob, sender=alice)  # alice pays, bob receives the shares

    ev = one(tx, pool.Deposit)
    assert (ev.sender, ev.owner, ev.assets, ev.shares) == (alice.address, bob.address, a, expected)
    funded = one(tx, vault.PoolFunded)
    assert (funded["from"], funded.amount, funded.amountWad) == (pool.address, a, a * SCALE)
    assert pool.balanceOf(bob) == expected and pool.balanceOf(alice) == 0
    assert pool.totalSupply() == supply + expected
    assert pool.totalAssets() == total + a
    assert vault.poolBalance() == (total + a) * SCALE
    assert usdc.balanceOf(alice) == 0 and usdc.balanceOf(pool) == 0
    assert usdc.balanceOf(vault) == vault_tokens + a

    # a second deposit prices off the new state
    supply, total = supply + expected, total + a
    a2 = units("3.000001")
    tx = lp_deposit(system, carol, a2)
    assert one(tx, pool.Deposit).shares == shares_for(a2, supply, total) == pool.balanceOf(carol)


def test_mint_charges_assets_rounded_up(system, pool, vault, usdc, alice, carol):
    donation = units("1234.567891")
    donate(system, carol, donation)
    supply, total = SEED_SHARES, SEED + donation
    s = 987_654_321_987_654  # an odd number of shares
    expected = assets_for(s, supply, total, up=True)
    assert expected != assets_for(s, supply, total)  # rounding up matters for this amount
    assert pool.previewMint(s) == expected
    usdc.mint(alice, expected + 5, sender=alice)
    usdc.approve(pool, expected + 5, sender=alice)

    tx = pool.mint(s, alice, sender=alice)

    ev = one(tx, pool.Deposit)
    assert (ev.sender, ev.owner, ev.assets, ev.shares) == (alice.address, alice.address, expected, s)
    assert usdc.balanceOf(alice) == 5
    assert pool.balanceOf(alice) == s
    assert pool.totalSupply() == supply + s and pool.totalAssets() == total + expected
    assert vault.poolBalance() == (total + expected) * SCALE


def test_redeem_and_withdraw_parts_of_a_request_pay_by_the_formula(system, pool, vault, usdc, chain, alice, bob, carol):
    donation = units("999.999999")
    donate(system, bob, donation)
    a = units("250000.123457")
    lp_deposit(system, alice, a)
    supply, total = SEED_SHARES, SEED + donation
    mine = shares_for(a, supply, total)
    supply, total = supply + mine, total + a
    assert pool.balanceOf(alice) == mine

    tx = pool.requestWithdraw(mine, sender=alice)
    req = one(tx, pool.WithdrawRequested)
    assert (req.owner, req.shares, req.unlockAt) == (alice.address, mine, tx.timestamp + COOLDOWN)
    advance(system, chain, COOLDOWN, refresh=False)

    # redeem 40 % of the request to carol
    s1 = mine * 2 // 5
    out1 = assets_for(s1, supply, total)
    assert pool.previewRedeem(s1) == out1
    tx = pool.redeem(s1, carol, alice, sender=alice)
    ev = one(tx, pool.Withdraw)
    assert (ev.sender, ev.receiver, ev.owner, ev.assets, ev.shares) == (alice.address, carol.address, alice.address, out1, s1)
    assert usdc.balanceOf(carol) == out1
    supply, total = supply - s1, total - out1
    assert pool.totalSupply() == supply and pool.totalAssets() == total
    assert vault.poolBalance() == total * SCALE
    assert pool.withdrawRequest(alice).shares == mine - s1

    # withdraw an asset amount: shares burnt round up
    w = units("20000.000001")
    burn = shares_for(w, supply, total, up=True)
    assert pool.previewWithdraw(w) == burn
    tx = pool.withdraw(w, alice, alice, sender=alice)
    ev = one(tx, pool.Withdraw)
    assert (ev.sender, ev.receiver, ev.owner, ev.assets, ev.shares) == (alice.address, alice.address, alice.address, w, burn)
    assert usdc.balanceOf(alice) == w
    supply, total = supply - burn, total - w
    assert pool.balanceOf(alice) == mine - s1 - burn
    assert pool.withdrawRequest(alice).shares == mine - s1 - burn

    # a spender with an allowance redeems for alice; the allowance is spent, alice's request used
    s3 = mine // 10
    pool.approve(bob, s3 + 7, sender=alice)
    out3 = assets_for(s3, supply, total)
    tx = pool.redeem(s3, bob, alice, sender=bob)
    ev = one(tx, pool.Withdraw)
    assert (ev.sender, ev.receiver, ev.owner, ev.assets, ev.shares) == (bob.address, bob.address, alice.address, out3, s3)
    assert pool.allowance(alice, bob) == 7
    assert pool.withdrawRequest(alice).shares == mine - s1 - burn - s3
    assert usdc.balanceOf(bob) == out3


def test_redeeming_the_whole_request_succeeds(system, pool, usdc, chain, alice):
    """An LP that requested all its shares can redeem all of them in the window (docs/pool.md)."""
    a = units("100000")
    lp_deposit(system, alice, a)
    mine = shares_for(a, SEED_SHARES, SEED)
    request_and_wait(system, chain, alice, mine)
    assert pool.maxRedeem(alice) == mine
    expected = assets_for(mine, SEED_SHARES + mine, SEED + a)

    pool.redeem(mine, alice, alice, sender=alice)

    assert usdc.balanceOf(alice) == expected
    assert pool.balanceOf(alice) == 0
    assert pool.withdrawRequest(alice).shares == 0


# ---------------------------------------------------------------------------- round trips (Hypothesis)


@POOL_SETTINGS
@given(amount=st.integers(1, 5_000_000 * 10**6), grant=st.integers(0, 100_000 * 10**6))
@example(amount=1, grant=54_899_740)  # found by CI: the shares of a 1-unit deposit were worth 0 units
def test_round_trip_never_returns_more_than_deposited(system, pool, usdc, chain, dave, carol, amount, grant):
    sid = chain.snapshot()
    try:
        if grant:
            donate(system, carol, grant)
        supply, total = SEED_SHARES, SEED + grant
        tx = lp_deposit(system, dave, amount)
        s = shares_for(amount, supply, total)
        assert one(tx, pool.Deposit).shares == s
        expected = assets_for(s, supply + s, total + amount)
        request_and_wait(system, chain, dave, s)

        if expected == 0:
            # Shares worth less than one token unit: refused by name, nothing burnt.
            with expect_revert(pool.ZeroAssets):
                pool.redeem(s, dave, dave, sender=dave)
            assert pool.balanceOf(dave) == s
            return
        pool.redeem(s, dave, dave, sender=dave)

        back = usdc.balanceOf(dave)
        assert back == expected
        assert back <= amount
        # and the round trip costs at most one share's worth plus one unit: (a - back - 1) <= (A+1)/(S+o)
        assert (amount - back - 1) * (supply + OFFSET) <= total + 1
    finally:
        chain.restore(sid)


ETH_STEP, BTC_STEP = 10**16, 10**15  # the markets' minimum position sizes
trade_st = st.one_of(
    st.tuples(st.just(ETH_ID), st.integers(-3000, 3000).filter(bool).map(lambda k: k * ETH_STEP)),
    st.tuples(st.just(BTC_ID), st.integers(-1500, 1500).filter(bool).map(lambda k: k * BTC_STEP)),
)


@settings(POOL_SETTINGS, max_examples=3)
@given(amount=st.integers(10**6, 2_000_000 * 10**6), trades=st.lists(trade_st, min_size=1, max_size=3))
def test_lp_trading_in_between_at_a_constant_index_gets_back_at_most_what_it_put_in(
    system, pool, vault, ch, usdc, chain, dave, amount, trades
):
    """The depositor also trades (round trips at a constant index) between its deposit and its
    redemption: it cannot pump the NAV with its own trades and take more out than it put in."""
    sid = chain.snapshot()
    try:
        margin = system.fund(dave, 200_000)
        lp_deposit(system, dave, amount)
        shares = pool.balanceOf(dave)
        for mid, base in trades:
            open_(system, dave, mid, base)
        for mid in (ETH_ID, BTC_ID):
            size = ch.position(dave, 0, mid)[0]
            if size:
                open_(system, dave, mid, -size)
        assert ch.position(dave, 0, ETH_ID)[0] == 0 == ch.position(dave, 0, BTC_ID)[0]
        request_and_wait(system, chain, dave, shares)
        pool.redeem(shares, dave, dave, sender=dave)
        vault.withdraw(0, vault.collateral(dave, 0) // SCALE, sender=dave)

        assert usdc.balanceOf(dave) <= amount + margin
    finally:
        chain.restore(sid)


# ---------------------------------------------------------------------------- inflation attack


@pytest.fixture(scope="module")
def fresh(deployer):
    """A second deployment whose pool is empty (no seed): the setting of the first-depositor attack."""
    return deploy(deployer, dataclasses.replace(lagging_peg_config(), pool_seed=0, insurance_seed=0))


def test_first_depositor_inflation_attack_fails(fresh, accounts):
    """Invariant 17 (docs/specification.md). `fresh.pool` is a LiquidityPool deployed over the fresh
    Vault/ClearingHouse with no seed and wired in as the Vault's pool (so the grant through `Vault.fundPool`
    reaches it)."""
    pool, usdc = fresh.pool, fresh.collateral
    attacker, victim = accounts[6], accounts[7]
    assert pool.totalSupply() == 0 and pool.totalAssets() == 0

    # 1. one token unit buys 10**6 shares of an empty pool
    lp_deposit(fresh, attacker, 1)
    att_shares = 1 * (0 + OFFSET) // (0 + 1)
    assert pool.balanceOf(attacker) == att_shares
    # 2. a large grant straight to the pool's balance
    grant = units(1_000_000)
    donate(fresh, attacker, grant)
    supply, total = att_shares, 1 + grant
    assert pool.totalAssets() == total
    # 3. the victim deposits
    v = units(100_000)
    lp_deposit(fresh, victim, v)
    vic_shares = shares_for(v, supply, total)
    assert pool.balanceOf(victim) == vic_shares > 0
    supply, total = supply + vic_shares, total + v
    assert usdc.balanceOf(fresh.vault) == 1 + grant + v and usdc.balanceOf(pool) == 0

    victim_value = pool.previewRedeem(vic_shares)
    assert victim_value == assets_for(vic_shares, supply, total)
    # the victim loses at most one pre-deposit share's worth plus a unit: ~0.5 USDC of 100,000
    one_share = ceil_div(1 + grant + 1, att_shares + OFFSET)
    assert v - victim_value <= one_share + 1
    assert v - victim_value <= v // 100_000  # <= 0.001 %
    attacker_value = pool.previewRedeem(att_shares)
    assert attacker_value == assets_for(att_shares, supply, total)
    assert attacker_value < 1 + grant
    assert (1 + grant) - attacker_value > grant * 4 // 10  # the attack costs it over 40 % of its grant


def test_donation_to_a_seeded_pool_cannot_zero_a_deposit(system, pool, carol, dave):
    """Even a grant of 10x the pool leaves a 1-unit deposit with non-zero shares (virtual offset)."""
    grant = 10 * SEED
    donate(system, carol, grant)
    lp_deposit(system, dave, 1)
    assert pool.balanceOf(dave) == shares_for(1, SEED_SHARES, SEED + grant) > 0


# ---------------------------------------------------------------------------- NAV


def test_nav_equals_pool_balance_minus_traders_pnl_over_every_position(system, pool, ch, chain, alice, bob, carol, dave, erin):
    for who, sub in ((alice, 0), (bob, 0), (bob, 1), (carol, 0), (dave, 0), (erin, 2)):
        system.fund(who, 200_000, subaccount=sub)
    steps = [
        (alice, 0, ETH_ID, 30 * WAD),
        (alice, 0, BTC_ID, -WAD // 2),
        (bob, 0, ETH_ID, 12 * WAD),
        (bob, 1, BTC_ID, 12 * WAD // 10),
        (carol, 0, ETH_ID, -8 * WAD),
        (carol, 0, ETH_ID, 3 * WAD),  # reduce
        (dave, 0, BTC_ID, 2 * WAD),
        (dave, 0, BTC_ID, -3 * WAD),  # flip
        (erin, 2, ETH_ID, -5 * WAD),
        (alice, 0, ETH_ID, 5 * WAD),  # increase
        (bob, 0, ETH_ID, -12 * WAD),  # close
    ]
    positions = {(who.address, sub, mid) for who, sub, mid, _ in steps}
    for who, sub, mid, base in steps:
        open_(system, who, mid, base, sub=sub)
    # net OI from the steps: ETH 35 - 5 - 5 = +25, BTC -0.5 + 1.2 - 1 = -0.3
    net = {ETH_ID: 25 * WAD, BTC_ID: -3 * WAD // 10}
    index = {ETH_ID: 3000 * WAD, BTC_ID: 60_000 * WAD}
    s = ch.marketState(ETH_ID)
    assert s.longOpenInterest - s.shortOpenInterest == net[ETH_ID]

    def check(label):
        expected, n = nav_from_positions(system, positions, index)
        got = pool.navWad()
        assert abs(got - expected) <= n, f"{label}: nav {got} vs per-position {expected} ({n} positions)"
        assert pool.totalAssets() == max(got, 0) // SCALE
        spot = {mid: ch.spotPrice(mid) for mid in net}
        assert pool.reserveRequired() == reserve_of(net_exposure(net, spot))
        return expected

    nav0 = check("after trades")
    assert nav0 != system.vault.poolBalance()  # the traders' side is not zero: the test measures something

    system.set_price("ETH", 2750)
    system.set_price("BTC", 63_000)
    index = {ETH_ID: 2750 * WAD, BTC_ID: 63_000 * WAD}
    nav1 = check("after the index move")
    # What closing every position would realize has not moved: nor has NAV (the vAMMs are still inside
    # their bands, so LP flows stay open; the traders' losses at the index reach the pool as they are
    # realized, repegged or funded).
    assert nav1 == nav0 and not pool.lpFlowsSuspended()[0]

    # funding: imbalanced markets accrue over time
    chain.pending_timestamp += 2 * 3600
    ch.pokeFunding(ETH_ID, sender=carol)
    ch.pokeFunding(BTC_ID, sender=carol)
    chain.pending_timestamp += 3 * 3600
    chain.mine()
    pending = [ch.position(o, s_, m)[2] for o, s_, m in positions]
    assert any(pending), "funding did not accrue"
    check("with funding accrued")

    # a deposit now mints at this NAV (bounds: the per-position tolerance either way)
    a = units(250_000)
    system.collateral.mint(carol, a, sender=carol)
    system.collateral.approve(pool, a, sender=carol)
    t = chain.pending_timestamp + 2
    nav, n = view_at(chain, t, lambda: nav_from_positions(system, positions, index))
    chain.pending_timestamp = t
    minted = one(pool.deposit(a, carol, sender=carol), pool.Deposit).shares
    assert shares_for(a, SEED_SHARES, (nav + n) // SCALE) <= minted <= shares_for(a, SEED_SHARES, (nav - n) // SCALE)


# ---------------------------------------------------------------------------- two-step withdrawals


def test_every_named_error_changes_nothing(system, pool, vault, usdc, chain, deployer, alice, bob):
    """Each group of failing calls is bracketed by a snapshot of the pool and the Vault's ledger."""
    lp_deposit(system, alice, units(1000))
    mine = pool.balanceOf(alice)
    usdc.mint(bob, 10**12, sender=bob)
    usdc.approve(pool, 10**12, sender=bob)
    owners = (deployer, alice, bob)

    def all_revert(*cases):
        before = pool_snapshot(system, owners)
        for call, error, inputs in cases:
            with expect_revert(error, **inputs):
                call()
        assert pool_snapshot(system, owners) == before

    all_revert(
        (lambda: pool.deposit(0, bob, sender=bob), pool.ZeroAssets, {}),
        (lambda: pool.mint(0, bob, sender=bob), pool.ZeroShares, {}),
        (lambda: pool.requestWithdraw(0, sender=alice), pool.ZeroShares, {}),
        (lambda: pool.requestWithdraw(mine + 1, sender=alice), pool.SharesExceedBalance, dict(shares=mine + 1, balance=mine)),
        (lambda: pool.requestWithdraw(1, sender=bob), pool.SharesExceedBalance, dict(shares=1, balance=0)),
        (lambda: pool.redeem(0, alice, alice, sender=alice), pool.ZeroShares, {}),
        (lambda: pool.withdraw(0, alice, alice, sender=alice), pool.ZeroAssets, {}),
        (lambda: pool.redeem(1, alice, alice, sender=alice), pool.NoWithdrawRequest, dict(owner=alice)),
        (lambda: pool.withdraw(1, alice, alice, sender=alice), pool.NoWithdrawRequest, dict(owner=alice)),
    )

    half = mine // 2
    tx = pool.requestWithdraw(half, sender=alice)
    unlock = tx.timestamp + COOLDOWN
    chain.pending_timestamp = unlock - 1
    all_revert((lambda: pool.redeem(1, alice, alice, sender=alice), pool.CooldownNotPassed,
                dict(unlockAt=unlock, timestamp=unlock - 1)))

    chain.pending_timestamp = unlock + 10
    chain.mine()
    supply, total = SEED_SHARES + mine, SEED + units(1000)
    too_much = assets_for(half, supply, total) + 1
    assert assets_for(1, supply, total) == 0  # one share is worth a millionth of a token unit
    all_revert(
        (lambda: pool.redeem(1, alice, alice, sender=alice), pool.ZeroAssets, {}),
        (lambda: pool.redeem(half + 1, alice, alice, sender=alice), pool.ExceedsRequest, dict(shares=half + 1, requested=half)),
        (lambda: pool.withdraw(too_much, alice, alice, sender=alice), pool.ExceedsRequest,
         dict(shares=shares_for(too_much, supply, total, up=True), requested=half)),
        # a spender without allowance
        (lambda: pool.redeem(10**7, bob, alice, sender=bob), pool.ERC20InsufficientAllowance,
         dict(spender=bob, allowance=0, needed=10**7)),
    )

    expiry = unlock + WINDOW
    chain.pending_timestamp = expiry + 1
    all_revert((lambda: pool.redeem(1, alice, alice, sender=alice), pool.WithdrawWindowExpired,
                dict(expiredAt=expiry, timestamp=expiry + 1)))

    vault.setPauseLevel(3, sender=deployer)
    all_revert(
        (lambda: pool.deposit(10, bob, sender=bob), vault.Paused, dict(level=3)),
        (lambda: pool.mint(10**7, bob, sender=bob), vault.Paused, dict(level=3)),
    )


def test_cooldown_and_window_edges_are_inclusive(system, pool, usdc, chain, alice):
    a = units("1000.000003")
    lp_deposit(system, alice, a)
    mine = shares_for(a, SEED_SHARES, SEED)
    supply, total = SEED_SHARES + mine, SEED + a
    tx = pool.requestWithdraw(mine, sender=alice)
    unlock = tx.timestamp + COOLDOWN
    assert pool.withdrawRequest(alice).unlockAt == unlock
    q = mine // 4
    chain.pending_timestamp = unlock  # the first second it can execute
    pool.redeem(q, alice, alice, sender=alice)
    out1 = assets_for(q, supply, total)
    supply, total = supply - q, total - out1
    chain.pending_timestamp = unlock + WINDOW  # the last second of the window
    pool.redeem(q, alice, alice, sender=alice)
    assert pool.balanceOf(alice) == mine - 2 * q
    assert usdc.balanceOf(alice) == out1 + assets_for(q, supply, total)


def test_a_new_request_replaces_the_old_one(system, pool, chain, alice):
    lp_deposit(system, alice, units(5000))
    mine = pool.balanceOf(alice)
    tx1 = pool.requestWithdraw(mine, sender=alice)
    chain.pending_timestamp = tx1.timestamp + COOLDOWN // 2
    tx2 = pool.requestWithdraw(mine // 3, sender=alice)
    ev = one(tx2, pool.WithdrawRequested)
    assert (ev.owner, ev.shares, ev.unlockAt) == (alice.address, mine // 3, tx2.timestamp + COOLDOWN)
    r = pool.withdrawRequest(alice)
    assert (r.shares, r.unlockAt) == (mine // 3, tx2.timestamp + COOLDOWN)

    # the first request's cooldown has passed, but it no longer exists: the new cooldown applies
    chain.pending_timestamp = tx1.timestamp + COOLDOWN + 1
    with expect_revert(pool.CooldownNotPassed, unlockAt=tx2.timestamp + COOLDOWN):
        pool.redeem(1, alice, alice, sender=alice)
    chain.pending_timestamp = tx2.timestamp + COOLDOWN
    with expect_revert(pool.ExceedsRequest, shares=mine // 3 + 1, requested=mine // 3):
        pool.redeem(mine // 3 + 1, alice, alice, sender=alice)
    pool.redeem(mine // 6, alice, alice, sender=alice)
    assert pool.withdrawRequest(alice).shares == mine // 3 - mine // 6


def test_partial_redemptions_within_the_window_use_up_the_request(system, pool, usdc, chain, alice):
    a = units(30_000)
    lp_deposit(system, alice, a)
    mine = pool.balanceOf(alice)
    supply, total = SEED_SHARES + mine, SEED + a
    tx = pool.requestWithdraw(mine, sender=alice)
    unlock = tx.timestamp + COOLDOWN
    parts = [mine // 4, mine // 4, mine - 2 * (mine // 4)]
    got = 0
    for i, s in enumerate(parts):
        chain.pending_timestamp = unlock + (i + 1) * (WINDOW // 4)  # spread over the window
        out = assets_for(s, supply, total)
        pool.redeem(s, alice, alice, sender=alice)
        got += out
        supply, total = supply - s, total - out
        assert usdc.balanceOf(alice) == got
        assert pool.withdrawRequest(alice).shares == mine - sum(parts[: i + 1])
    assert pool.balanceOf(alice) == 0
    assert got <= a
    with expect_revert(pool.NoWithdrawRequest, owner=alice):
        pool.redeem(1, alice, alice, sender=alice)


def test_max_withdraw_and_max_redeem_follow_the_request(system, pool, usdc, chain, alice, bob):
    a = units(40_000)
    lp_deposit(system, alice, a)
    mine = pool.balanceOf(alice)
    supply, total = SEED_SHARES + mine, SEED + a
    assert pool.maxRedeem(alice) == 0 == pool.maxWithdraw(alice)  # no request
    req = mine * 3 // 4
    tx = pool.requestWithdraw(req, sender=alice)
    assert pool.maxRedeem(alice) == 0 == pool.maxWithdraw(alice)  # cooldown
    chain.pending_timestamp = tx.timestamp + COOLDOWN
    chain.mine()
    assert pool.maxRedeem(alice) == req
    max_w = assets_for(req, supply, total)
    assert pool.maxWithdraw(alice) == max_w

    # shares moved away after the request: the request shrinks to the balance, and stays shrunk
    pool.transfer(bob, mine - req // 2, sender=alice)
    assert pool.maxRedeem(alice) == req // 2
    assert pool.withdrawRequest(alice).shares == req // 2
    pool.transfer(alice, mine - req // 2, sender=bob)
    assert pool.withdrawRequest(alice).shares == req // 2
    req = req // 2
    max_w = assets_for(req, supply, total)
    assert pool.maxRedeem(alice) == req and pool.maxWithdraw(alice) == max_w

    # one more than the max reverts, the max itself succeeds (in separate branches)
    over = shares_for(max_w + 1, supply, total, up=True)
    with expect_revert(pool.ExceedsRequest, shares=over, requested=req):
        pool.withdraw(max_w + 1, alice, alice, sender=alice)
    with expect_revert(pool.ExceedsRequest, shares=req + 1, requested=req):
        pool.redeem(req + 1, alice, alice, sender=alice)
    sid = chain.snapshot()
    pool.redeem(req, alice, alice, sender=alice)
    assert usdc.balanceOf(alice) == max_w
    chain.restore(sid)
    pool.withdraw(max_w, alice, alice, sender=alice)
    assert usdc.balanceOf(alice) == max_w
    assert pool.balanceOf(alice) == mine - shares_for(max_w, supply, total, up=True)

    chain.pending_timestamp = tx.timestamp + COOLDOWN + WINDOW + 1
    chain.mine()
    assert pool.maxRedeem(alice) == 0 == pool.maxWithdraw(alice)  # window over


# ---------------------------------------------------------------------------- reserve


def _open_large_net_long(system, alice, bob):
    """300 ETH and 15 BTC long, nobody short: net exposure about 0.95M + 0.95M at the vAMM prices after."""
    system.fund(alice, 300_000)
    system.fund(bob, 300_000)
    open_(system, alice, ETH_ID, 300 * WAD)
    open_(system, bob, BTC_ID, 15 * WAD)
    net = {ETH_ID: 300 * WAD, BTC_ID: 15 * WAD}
    spot = {mid: system.clearing_house.spotPrice(mid) for mid in net}
    return reserve_of(net_exposure(net, spot))


def test_withdrawal_that_breaches_the_reserve_reverts_a_smaller_one_succeeds(system, pool, vault, usdc, chain, deployer, alice, bob):
    pool.requestWithdraw(SEED_SHARES, sender=deployer)  # the whole seed, requested before any trade
    advance(system, chain, COOLDOWN)
    reserve = _open_large_net_long(system, alice, bob)
    assert 360_000 * WAD < reserve < 400_000 * WAD  # 20 % of 1.8M at the listing prices, more after the buys
    assert pool.reserveRequired() == reserve

    t = chain.pending_timestamp + 5
    nav = view_at(chain, t, pool.navWad)
    breach = (nav - reserve) // SCALE + 1  # leaves the pool 1 unit (less the rounding) under the reserve
    chain.pending_timestamp = t
    before = pool_snapshot(system, (deployer, alice, bob))
    with expect_revert(pool.PoolReserveLocked, assetsAfter=nav - breach * SCALE, reserve=reserve):
        pool.withdraw(breach, deployer, deployer, sender=deployer)
    assert pool_snapshot(system, (deployer, alice, bob)) == before

    small = units(1_000_000)
    tokens = usdc.balanceOf(deployer)
    pool.withdraw(small, deployer, deployer, sender=deployer)
    assert usdc.balanceOf(deployer) == tokens + small
    assert pool.navWad() >= pool.reserveRequired()


def test_max_withdraw_stops_exactly_at_the_reserve(system, pool, usdc, chain, deployer, alice, bob):
    pool.requestWithdraw(SEED_SHARES, sender=deployer)
    advance(system, chain, COOLDOWN)
    reserve = _open_large_net_long(system, alice, bob)

    t = chain.pending_timestamp + 5
    nav, cash, max_w = view_at(chain, t, lambda: (pool.navWad(), system.vault.poolBalance(), pool.maxWithdraw(deployer)))
    expected = min(nav - reserve, cash) // SCALE
    assert max_w == expected
    assert max_w < pool.previewRedeem(SEED_SHARES)  # the reserve, not the request, binds
    chain.pending_timestamp = t
    with expect_revert(pool.PoolReserveLocked, assetsAfter=nav - (expected + 1) * SCALE, reserve=reserve):
        pool.withdraw(expected + 1, deployer, deployer, sender=deployer)
    # funding moves the NAV between t and t+1: recompute for the executing block
    nav1, max1 = view_at(chain, t + 1, lambda: (pool.navWad(), pool.maxWithdraw(deployer)))
    expected1 = min(nav1 - reserve, cash) // SCALE
    assert max1 == expected1
    chain.pending_timestamp = t + 1
    pool.withdraw(expected1, deployer, deployer, sender=deployer)
    assert usdc.balanceOf(deployer) == expected1
    assert pool.navWad() >= reserve


def test_withdrawals_never_exceed_the_pool_cash(system, pool, vault, usdc, chain, deployer, alice, bob):
    """Funding the traders owe but have not settled counts in the NAV but is not cash: an LP may not take
    it out.
    docs/pool.md: LPs leave "never with more than the pool's cash (`InsufficientPoolCash`)", and the
    pool checks its named reasons before ERC-4626's generic max checks (`_checkWithdrawal`)."""
    pool.setPoolParams((COOLDOWN, WINDOW, 0), sender=deployer)  # no reserve: only the cash binds
    pool.requestWithdraw(SEED_SHARES, sender=deployer)
    _open_large_net_long(system, alice, bob)  # mark above index: the longs pay funding
    for _ in range(2):  # the funding targets are sampled from the TWAPs, then accrue for the day
        advance(system, chain, 1800)
        for mid in (ETH_ID, BTC_ID):
            system.clearing_house.pokeFunding(mid, sender=alice)
    advance(system, chain, COOLDOWN - 3600)

    t = chain.pending_timestamp + 3
    nav, cash, max_w = view_at(chain, t, lambda: (pool.navWad(), vault.poolBalance(), pool.maxWithdraw(deployer)))
    assert nav > cash + 1_000 * WAD  # a day of funding owed by the longs, not yet paid
    assert max_w == cash // SCALE
    before = pool_snapshot(system, (deployer, alice, bob), assets=False)
    chain.pending_timestamp = t
    with expect_revert(vault.InsufficientPoolCash, poolBalance=cash, amountWad=(max_w + 1) * SCALE):
        pool.withdraw(max_w + 1, deployer, deployer, sender=deployer)
    assert pool_snapshot(system, (deployer, alice, bob), assets=False) == before
    pool.withdraw(max_w, deployer, deployer, sender=deployer)
    assert usdc.balanceOf(deployer) == max_w
    assert 0 <= vault.poolBalance() < SCALE
    assert vault_is_solvent(system, ((alice, 0), (bob, 0)))


def test_constructor_rejects_zero_addresses(project, pool, usdc, vault, ch, deployer):
    zero = "0x" + "00" * 20
    for args in ((usdc, zero, ch), (usdc, vault, zero)):
        with expect_revert(pool.ZeroAddress):
            project.LiquidityPool.deploy(*args, deployer, sender=deployer)


# ---------------------------------------------------------------------------- Drift v1


def test_winner_is_paid_in_full_while_the_loser_stays_open_and_lps_keep_the_reserve(
    system, pool, vault, ch, usdc, chain, deployer, alice, bob
):
    """Drift v1 (May 2022): realized profit was paid out before the offsetting losses were collected.
    Here the winner (alice, long first) closes into the loser's buying (bob, long later and higher) and
    leaves with all of it while bob never closes; LPs then take out everything they may, and the pool
    still holds the reserve that backs bob's position, settles bob when he finally closes, and pays
    every LP claim left."""
    owners_subs = ((alice, 0), (bob, 0))
    dep_a = system.fund(alice, 100_000)
    system.fund(bob, 100_000)
    pool.requestWithdraw(SEED_SHARES, sender=deployer)

    def traded(who, base):
        s = ch.marketState(ETH_ID)
        q, _, _ = swap(s.baseReserve, s.quoteReserve, base)
        tx = open_(system, who, ETH_ID, base)
        ev = one(tx, ch.PositionChanged)
        assert ev.quoteDelta == q
        assert ev.fee == ceil_div(abs(q) * 10**15, WAD)
        return q, ev.fee, ev.fundingPaid

    q_open, fee_open, _ = traded(alice, 100 * WAD)  # the winner
    traded(bob, 100 * WAD)  # the loser buys after her, higher
    q_close, fee_close, funding = traded(alice, -100 * WAD)  # she sells into the higher price
    realized = q_close + q_open  # the open notional was -q_open
    assert realized > 0
    expected_collateral = dep_a * SCALE + realized - fee_open - fee_close - funding
    assert expected_collateral > dep_a * SCALE  # a profit after fees
    assert vault.collateral(alice, 0) == expected_collateral

    out = expected_collateral // SCALE
    vault.withdraw(0, out, sender=alice)
    assert usdc.balanceOf(alice) == out  # paid in full while the loser is still open
    assert ch.position(bob, 0, ETH_ID)[0] == 100 * WAD
    assert vault_is_solvent(system, owners_subs)

    # the index drops: bob's loss grows, unrealized; LPs leave with everything they may
    system.set_price("ETH", 2900)
    advance(system, chain, COOLDOWN)
    reserve = reserve_of(net_exposure({ETH_ID: 100 * WAD}, {ETH_ID: ch.spotPrice(ETH_ID)}))
    assert pool.reserveRequired() == reserve
    with expect_revert(pool.PoolReserveLocked, reserve=reserve):
        pool.withdraw(pool.previewRedeem(SEED_SHARES), deployer, deployer, sender=deployer)
    t = chain.pending_timestamp + 3
    nav, cash, max_w = view_at(chain, t, lambda: (pool.navWad(), vault.poolBalance(), pool.maxWithdraw(deployer)))
    assert max_w == min(nav - reserve, cash) // SCALE
    chain.pending_timestamp = t
    pool.withdraw(max_w, deployer, deployer, sender=deployer)
    assert usdc.balanceOf(deployer) == max_w
    assert pool.navWad() >= reserve
    assert vault.poolBalance() >= 0
    assert vault_is_solvent(system, owners_subs)
    # one unit more than what is left above the reserve (at the executing block) is refused
    t += 2
    nav = view_at(chain, t, pool.navWad)
    chain.pending_timestamp = t
    with expect_revert(pool.PoolReserveLocked, assetsAfter=nav - ((nav - reserve) // SCALE + 1) * SCALE, reserve=reserve):
        pool.withdraw((nav - reserve) // SCALE + 1, deployer, deployer, sender=deployer)

    # bob finally closes: his loss is collected, he leaves with the rest of his margin
    tx = ch.closePosition(0, ETH_ID, 0, deadline(), sender=bob)
    assert one(tx, ch.PositionChanged).realizedPnl < 0
    bob_out = vault.collateral(bob, 0) // SCALE
    vault.withdraw(0, bob_out, sender=bob)
    assert usdc.balanceOf(bob) == bob_out
    # no open interest left, no reserve: the LP's remaining claim is paid from cash
    assert pool.reserveRequired() == 0
    left = pool.maxWithdraw(deployer)
    shares_left = pool.balanceOf(deployer)
    assert pool.totalSupply() == shares_left  # the only LP
    assert left == assets_for(shares_left, shares_left, vault.poolBalance() // SCALE) > 0
    pool.withdraw(left, deployer, deployer, sender=deployer)
    assert usdc.balanceOf(deployer) == max_w + left
    assert vault.poolBalance() >= 0
    assert vault_is_solvent(system, owners_subs)


# ---------------------------------------------------------------------------- LPs never touch traders


def test_lp_deposit_and_redeem_never_change_trader_views(system, pool, ch, usdc, chain, deployer, alice, bob, carol):
    pool.requestWithdraw(SEED_SHARES // 10, sender=deployer)
    advance(system, chain, COOLDOWN)
    system.fund(alice, 50_000)
    system.fund(bob, 50_000, subaccount=1)
    open_(system, alice, ETH_ID, 20 * WAD)
    open_(system, alice, BTC_ID, -WAD // 2)
    open_(system, bob, ETH_ID, -10 * WAD, sub=1)
    chain.pending_timestamp += 2 * 3600
    ch.pokeFunding(ETH_ID, sender=carol)
    ch.pokeFunding(BTC_ID, sender=carol)
    chain.pending_timestamp += 3600
    chain.mine()
    big = units(50_000_000)
    usdc.mint(carol, big, sender=carol)
    usdc.approve(pool, big, sender=carol)
    accounts_ = ((alice, 0), (bob, 1))

    t = chain.pending_timestamp + 5
    baseline = view_at(chain, t, lambda: trader_views(system, accounts_))
    assert baseline[("position", bob.address, 1, ETH_ID)][2] != 0  # funding pending: the views are live
    lp_actions = (lambda: pool.deposit(big, carol, sender=carol),
                  lambda: pool.redeem(SEED_SHARES // 20, deployer, deployer, sender=deployer))
    for action in lp_actions:
        sid = chain.snapshot()
        chain.pending_timestamp = t
        action()
        assert chain.blocks.head.timestamp == t
        assert trader_views(system, accounts_) == baseline
        chain.restore(sid)

    amm = getattr(system, "amm", None)
    if amm is None:
        return
    # Depth follows the pool (AmmController.syncDepth): after the LP action, a depth sync of each
    # market at t+1 and t+2 leaves the views as they are after a plain funding poke at those times,
    # except for each position's share of the sync's charge (a sync accrues funding like a poke, and then
    # charges the net side its exit change through the funding index; sizes and entries do not move).
    charges = {}

    def then(step):
        for i, mid in enumerate((ETH_ID, BTC_ID), start=1):
            chain.pending_timestamp = t + i
            tx = step(mid)
            for ev in (tx.decode_logs(amm.DepthCharged) if hasattr(tx, "decode_logs") else []):
                charges[ev.marketId] = ev.chargePerBase
        assert chain.blocks.head.timestamp == t + 2
        return trader_views(system, accounts_)

    def less_charges(views):
        """`views` with each position's share of the charges given back: what a poke would have left."""
        out = dict(views)
        for key, value in views.items():
            if key[0] == "position" and key[3] in charges:
                size, notional, pending = value
                share = -((-size * charges[key[3]]) // WAD)  # ceil(size x charge), as pendingFunding rounds
                out[key] = (size, notional, pending - share)
        return out

    sid = chain.snapshot()
    chain.pending_timestamp = t
    chain.mine()
    poked = then(lambda mid: ch.pokeFunding(mid, sender=carol))
    chain.restore(sid)
    sid = chain.snapshot()
    chain.pending_timestamp = t
    lp_actions[0]()  # the deposit
    reserves = ch.marketState(ETH_ID).quoteReserve
    synced = then(lambda mid: amm.syncDepth(mid, sender=carol))
    assert charges.get(ETH_ID, 0) != 0  # the deepening under a net position was charged
    positions = {k: v for k, v in less_charges(synced).items() if k[0] == "position"}
    for key, value in positions.items():
        size, notional, pending = value
        want = poked[key]
        assert (size, notional) == want[:2] and abs(pending - want[2]) <= 1, (key, value, want)
    assert ch.marketState(ETH_ID).quoteReserve > reserves  # the sync did deepen the market
    chain.restore(sid)


# ---------------------------------------------------------------------------- governance and pause


def test_pool_params_bounds_owner_and_event(system, pool, deployer, alice):
    good = (2 * DAY, 3 * DAY, 5 * 10**17)
    tx = pool.setPoolParams(good, sender=deployer)
    assert tuple(one(tx, pool.PoolParamsSet).params) == good
    p = pool.poolParams()
    assert (p.withdrawCooldown, p.withdrawWindow, p.reserveFactor) == good
    edges = (0, 3600, 10**18)  # the inclusive bounds themselves are accepted
    pool.setPoolParams(edges, sender=deployer)
    p = pool.poolParams()
    assert (p.withdrawCooldown, p.withdrawWindow, p.reserveFactor) == edges
    pool.setPoolParams((30 * DAY, 30 * DAY, 0), sender=deployer)

    def name(s):
        return s.encode().ljust(32, b"\0")

    for params, field, value in (
        ((30 * DAY + 1, DAY, 0), "withdrawCooldown", 30 * DAY + 1),
        ((DAY, 3599, 0), "withdrawWindow", 3599),
        ((DAY, 30 * DAY + 1, 0), "withdrawWindow", 30 * DAY + 1),
        ((DAY, DAY, 10**18 + 1), "reserveFactor", 10**18 + 1),
    ):
        with expect_revert(pool.ParameterOutOfBounds, name=name(field), value=value):
            pool.setPoolParams(params, sender=deployer)
    with expect_revert(pool.OwnableUnauthorizedAccount, account=alice):
        pool.setPoolParams(good, sender=alice)
    p = pool.poolParams()
    assert (p.withdrawCooldown, p.withdrawWindow, p.reserveFactor) == (30 * DAY, 30 * DAY, 0)


def test_deposits_follow_the_pause_levels(system, pool, vault, deployer, alice):
    for level in (1, 2):
        vault.setPauseLevel(level, sender=deployer)
        lp_deposit(system, alice, 10)  # only level 3 stops pool funding
    vault.setPauseLevel(3, sender=deployer)
    with expect_revert(vault.Paused, level=3):
        lp_deposit(system, alice, 10)


def test_max_deposit_and_max_mint_are_zero_while_deposits_are_paused(system, pool, vault, deployer, alice):
    """EIP-4626: maxDeposit/maxMint "MUST factor in ... if deposits are entirely disabled (even
    temporarily) it MUST return 0" (docs/pool.md: the pool is an ERC-4626 vault)."""
    vault.setPauseLevel(3, sender=deployer)
    assert pool.maxDeposit(alice) == 0
    assert pool.maxMint(alice) == 0


def test_a_deposit_or_mint_past_the_ledgers_bound_is_refused_with_the_limit_and_changes_nothing(system, pool, usdc,
                                                                                               alice, bob):
    """The Vault keeps the pool's balance as an int128 [wad], so the pool takes at most (int128.max - its cash) /
    1e12 token units (`maxDeposit`), and as many shares as those buy (`maxMint`). One unit past either is refused
    with ERC-4626's named error carrying that limit (`ERC4626ExceededMaxDeposit`, `ERC4626ExceededMaxMint`), and
    nothing moves: the pool's ledger, its supply and the depositor's tokens and shares."""
    cash = system.vault.poolBalance()
    room = (2**127 - 1 - cash) // SCALE  # the ledger's bound less the cash; one amount's own bound is wider
    assert pool.maxDeposit(alice) == room and pool.maxDeposit(bob) == room
    max_shares = pool.previewDeposit(room)
    assert pool.maxMint(alice) == max_shares and max_shares > 0
    usdc.mint(alice, room + 1, sender=alice)
    usdc.approve(pool, MAX_UINT, sender=alice)
    before = pool_snapshot(system, (alice, bob))
    with expect_revert(pool.ERC4626ExceededMaxDeposit, receiver=bob, assets=room + 1, max=room):
        pool.deposit(room + 1, bob, sender=alice)
    assert pool_snapshot(system, (alice, bob)) == before
    with expect_revert(pool.ERC4626ExceededMaxMint, receiver=bob, shares=max_shares + 1, max=max_shares):
        pool.mint(max_shares + 1, bob, sender=alice)
    assert pool_snapshot(system, (alice, bob)) == before
    # The limit itself is accepted (EIP-4626: maxDeposit is what `deposit` takes without reverting), and fills
    # the ledger to its bound.
    shares = pool.previewDeposit(room)
    pool.deposit(room, bob, sender=alice)
    assert pool.balanceOf(bob) == shares == max_shares
    assert system.vault.poolBalance() == cash + room * SCALE and pool.maxDeposit(alice) == 0


def test_moving_shares_away_shrinks_the_senders_request(system, pool, usdc, alice, bob, chain):
    """A request covers shares held through the cooldown: passing them to another address (which
    could have its own request running) must not keep the sender's window usable for them."""
    units = system.units(10_000)
    usdc.mint(alice, units, sender=alice)
    usdc.approve(pool, units, sender=alice)
    pool.deposit(units, alice, sender=alice)
    shares = pool.balanceOf(alice)
    pool.requestWithdraw(shares, sender=alice)
    pool.transfer(bob, shares // 3, sender=alice)
    assert pool.withdrawRequest(alice).shares == shares - shares // 3
    pool.transfer(bob, shares - shares // 3, sender=alice)
    assert pool.withdrawRequest(alice).shares == 0
    # Receiving shares never grows a request: bob has none until he asks and waits.
    assert pool.withdrawRequest(bob).shares == 0


# ---------------------------------------------------------------------------- what moves the share price




def test_a_trade_moves_nav_by_its_pool_fee_and_nothing_else(system, pool, vault, ch, chain, alice, bob):
    """The pool values traders at their vAMM exit: a trade moves a market's exit value and its open notionals
    by the same quote flow, so every trade (open, increase, reduce, flip, close, in either market) moves the
    NAV by exactly the pool's part of its fee, to the wei of the exit rounding. This is what makes the share
    price immune to an LP pumping the vAMM around its own redemption."""
    funding_off(system)
    system.fund(alice, 500_000)
    system.fund(bob, 500_000)
    steps = [(alice, ETH_ID, 200 * WAD), (bob, ETH_ID, -37 * WAD), (alice, BTC_ID, 3 * WAD),
             (alice, ETH_ID, -120 * WAD), (bob, ETH_ID, 90 * WAD), (alice, BTC_ID, -5 * WAD),
             (alice, ETH_ID, -80 * WAD), (bob, ETH_ID, -53 * WAD), (alice, BTC_ID, 2 * WAD)]
    for who, mid, base in steps:
        nav0, ins0 = pool.navWad(), vault.insuranceFund()
        ev = one(open_(system, who, mid, base), ch.PositionChanged)
        pool_fee = ev.fee - (vault.insuranceFund() - ins0)
        assert abs(pool.navWad() - (nav0 + pool_fee)) <= 2, (who, mid, base)
    # Everyone flat again: the pool kept exactly its fee income.
    assert all(ch.position(w, 0, m)[0] == 0 for w in (alice, bob) for m in (ETH_ID, BTC_ID))


def test_a_gap_suspends_lp_flows_until_the_coming_bad_debt_is_set_aside(system, pool, vault, ch, engine, usdc,
                                                                        chain, deployer, alice, bob, carol, dave):
    """The honest path of an LP exit around a crash. A 450 ETH long on thin margin and a -20 % gap: the
    vAMM, still at the old price, is outside its band, and LP flows wait (LpFlowsSuspended) while no keeper
    has looked at the damage. The kick records the bad debt the auction will leave (after the worst fill);
    the part the insurance fund cannot cover comes off NAV at once. An arbitrageur brings the vAMM back
    inside its band; LP flows resume a TWAP window after the block that found the gap: the LP who leaves
    then is paid a share that already carries its part of the bad debt, so those who stay are not left
    with it (their share price after the auction settles is at least what the leaver got)."""
    funding_off(system)
    lp_deposit(system, alice, SEED)  # alice: half of a 20M pool
    mine = pool.balanceOf(alice)
    t0 = chain.pending_timestamp
    pool.requestWithdraw(mine, sender=alice)
    system.fund(bob, 220_000)
    open_(system, bob, ETH_ID, 450 * WAD)
    chain.pending_timestamp = t0 + COOLDOWN
    system.set_price("ETH", 2400)  # the gap
    refresh_oracles(system)
    suspended, market = pool.lpFlowsSuspended()
    assert suspended and market == ETH_ID
    assert pool.maxRedeem(alice) == 0 and pool.maxWithdraw(alice) == 0 and pool.maxDeposit(alice) == 0
    with expect_revert(pool.LpFlowsSuspended, marketId=ETH_ID):
        pool.redeem(mine, alice, alice, sender=alice)

    nav_before = pool.navWad()
    engine.kick(bob, 0, ETH_ID, dave, sender=dave)
    shortfall = vault.shortfallOf(bob, 0)
    uncovered = shortfall - vault.insuranceFund()
    assert uncovered > 0 and pool.uncoveredBadDebt() == uncovered
    assert pool.navWad() == nav_before - uncovered  # the set-aside, and nothing else

    system.fund(carol, 5_000_000)
    st = ch.marketState(ETH_ID)
    x1 = __import__("math").isqrt(st.baseReserve * st.quoteReserve * WAD // (2400 * WAD))
    tx = open_(system, carol, ETH_ID, -(x1 - st.baseReserve))  # the arbitrageur sells the vAMM down to the index
    # Back inside the band, but the block found the gap: flows wait a TWAP window more (a trade back into
    # the band cannot end the wait: the leaver could otherwise make that trade itself).
    assert ch.marketState(ETH_ID).lastDislocation == tx.timestamp
    assert pool.lpFlowsSuspended() == (True, ETH_ID)
    chain.pending_timestamp = tx.timestamp + ch.marketParams(ETH_ID).twapWindow
    refresh_oracles(system)
    assert not pool.lpFlowsSuspended()[0]
    paid = one(pool.redeem(mine, alice, alice, sender=alice), pool.Withdraw).assets
    per_share_leaver = paid * 10**18 // mine

    # The auction runs its course: the arbitrageur takes the slice, the bad debt is paid (insurance first).
    a = engine.auction(engine.auctionCount())
    chain.pending_timestamp = max(a.startTime + 1200, chain.pending_timestamp)
    tx = engine.take(engine.auctionCount(), 2**255, 2**255, 0, sender=carol)
    bad = one(tx, vault.BadDebt)
    assert 0 < bad.amount <= shortfall  # the fill was no worse than the full discount the estimate assumed
    assert vault.pendingBadDebt() == 0 and pool.uncoveredBadDebt() == 0
    seed_value = pool.previewRedeem(SEED_SHARES)
    per_share_stayer = seed_value * 10**18 // SEED_SHARES
    assert per_share_stayer >= per_share_leaver  # the leaver did not escape its share of the bad debt


def test_a_stale_feed_suspends_lp_flows_and_the_views_still_answer(system, pool, vault, chain, alice, bob):
    """EIP-4626 views never revert: with ETH's feed stale and ETH open interest, totalAssets, convertTo*,
    preview* and max* answer (max* with 0, since deposits and withdrawals wait: LpFlowsSuspended); the
    NAV needs no price (the last recorded index). A fresh answer reopens LP flows."""
    system.fund(bob, 100_000)
    open_(system, bob, ETH_ID, 10 * WAD)
    lp_deposit(system, alice, units(1_000))
    shares = pool.balanceOf(alice)
    pool.requestWithdraw(shares, sender=alice)
    nav = pool.navWad()
    chain.pending_timestamp += COOLDOWN + 1  # past the feeds' 24 h heartbeat: both are stale
    chain.mine()
    # without a price: the idle hours are charged at what the block's sample finds (the long pays the pool), the
    # feed's stale answer not read (the last recorded index)
    nav_stale = pool.navWad()
    assert nav_stale >= nav
    assert pool.totalAssets() == nav_stale // SCALE
    assert pool.convertToShares(units(1)) > 0 and pool.convertToAssets(shares) > 0
    assert pool.previewRedeem(shares) > 0 and pool.previewDeposit(units(1)) > 0
    assert pool.lpFlowsSuspended() == (True, ETH_ID)
    assert (pool.maxDeposit(alice), pool.maxMint(alice), pool.maxRedeem(alice), pool.maxWithdraw(alice)) == (0, 0, 0, 0)
    with expect_revert(pool.LpFlowsSuspended, marketId=ETH_ID):
        pool.redeem(shares, alice, alice, sender=alice)
    refresh_oracles(system)
    assert pool.lpFlowsSuspended() == (False, 0)
    assert pool.maxRedeem(alice) == shares
    pool.redeem(shares, alice, alice, sender=alice)


def test_deposits_are_priced_before_the_set_aside_withdrawals_after_it(system, pool, vault, ch, engine, usdc, chain,
                                                                       alice, bob, carol, dave):
    """While bad debt is set aside (estimated at the worst fill), a deposit pays the NAV before the
    set-aside (`depositAssets`) and a redemption gets the NAV after it (`totalAssets`): a depositor cannot
    buy shares cheap and gain when the estimate is released (a better fill, a top-up), and a leaver still
    pays its share of what is coming."""
    funding_off(system)
    system.fund(bob, 220_000)
    open_(system, bob, ETH_ID, 450 * WAD)
    system.set_price("ETH", 2400)
    engine.kick(bob, 0, ETH_ID, dave, sender=dave)
    uncovered = pool.uncoveredBadDebt()
    assert uncovered > 0
    cash = vault.poolBalance()
    pnl = ch.tradersExitPnl()[0]
    assert pool.depositAssets() == (cash - pnl) // SCALE
    assert pool.totalAssets() == (cash - pnl - uncovered) // SCALE < pool.depositAssets()
    a = units(1_000_000)
    supply = pool.totalSupply()
    assert pool.previewDeposit(a) == shares_for(a, supply, pool.depositAssets()) < pool.convertToShares(a)
    assert pool.previewMint(10**12) == assets_for(10**12, supply, pool.depositAssets(), up=True)
    # (deposits wait while the gap is fresh: the prices above are what they will pay once flows resume)
    assert pool.maxDeposit(carol) == 0 and pool.lpFlowsSuspended()[0]


def test_a_reduce_that_pushes_the_vamm_out_of_its_band_freezes_lp_flows_only_while_it_is_out(
        system, pool, vault, ch, chain, alice, bob, carol):
    """A large reduce may leave the vAMM outside its band at a steady index (reduces are never held by the
    band). LP flows wait while it is out, but no gap is recorded (the index did not move), so they resume
    as soon as a trade brings the vAMM back: a griefer pays fees for every block it keeps them frozen."""
    funding_off(system)
    system.fund(alice, 2_000_000)
    system.fund(bob, 2_000_000)
    open_(system, alice, ETH_ID, -460 * WAD)  # a short, inside the band
    open_(system, bob, ETH_ID, 460 * WAD)  # back to the index
    open_(system, bob, ETH_ID, 460 * WAD)  # a long, inside the band on the other side
    open_(system, alice, ETH_ID, 460 * WAD)  # alice closes her short: a reduce, pushing the vAMM out
    assert ch.position(alice, 0, ETH_ID)[0] == 0
    spot, index = ch.spotPrice(ETH_ID), ch.indexPrice(ETH_ID)
    assert spot > index * (WAD + ch.marketParams(ETH_ID).maxSpread) // WAD  # outside the band
    assert pool.lpFlowsSuspended() == (True, ETH_ID)
    ch.pokeFunding(ETH_ID, sender=carol)  # a new block finds the vAMM out, but at the same index: no gap
    assert ch.marketState(ETH_ID).lastDislocation == 0
    system.fund(carol, 2_000_000)
    x1 = __import__("math").isqrt(ch.marketState(ETH_ID).baseReserve * ch.marketState(ETH_ID).quoteReserve
                                  * WAD // index)
    open_(system, carol, ETH_ID, -(x1 - ch.marketState(ETH_ID).baseReserve))  # an arbitrageur sells it back
    assert pool.lpFlowsSuspended() == (False, 0)


def test_credit_pool_deposit_is_the_pools_alone(system, vault, alice, deployer):
    """`Vault.creditPoolDeposit` credits the pool's balance without moving tokens: only the pool, which has just
    moved the deposit into the Vault and checked it arrived, may call it. Anyone else: `UnauthorizedModule`,
    nothing changes (a caller that could credit itself would mint pool value from nothing)."""
    before = (vault.poolBalance(), system.collateral.balanceOf(vault))
    for who in (alice, deployer):
        with expect_revert(vault.UnauthorizedModule, caller=who.address):
            vault.creditPoolDeposit(10**6, sender=who)
    assert (vault.poolBalance(), system.collateral.balanceOf(vault)) == before


def test_an_lp_deposit_moves_tokens_straight_to_the_vault(system, pool, vault, chain, alice):
    """The assets go from the LP to the Vault in one transfer; the pool holds none and keeps no allowance to the
    Vault; the pool's balance grows by exactly the deposit; events as before (Deposit, PoolFunded)."""
    token = system.collateral
    amount = 1_000 * 10**6
    token.mint(alice, amount, sender=alice)
    token.approve(pool, amount, sender=alice)
    chain.pending_timestamp += 1
    refresh = getattr(system, "refresh_oracles", None)
    if refresh:
        refresh()
    pb, vb = vault.poolBalance(), token.balanceOf(vault)
    tx = pool.deposit(amount, alice, sender=alice)
    assert token.balanceOf(pool) == 0 and token.allowance(pool, vault) == 0
    assert token.balanceOf(vault) - vb == amount
    assert vault.poolBalance() - pb == amount * 10**12
    moves = [(str(e.event_arguments["from"]).lower(), str(e.event_arguments["to"]).lower())
             for e in tx.decode_logs(token.Transfer) if e.contract_address == token.address]
    assert moves == [(alice.address.lower(), vault.address.lower())]  # one token transfer, LP -> Vault
    assert len(tx.decode_logs(vault.PoolFunded)) == 1 and len(tx.decode_logs(pool.Deposit)) == 1


# ---------------------------------------------------------------------------- withdraw-window bounds


# Hard bounds of the pool's withdraw window.
MIN_WINDOW = HOUR
MAX_WINDOW = 30 * DAY


@pytest.mark.parametrize("window", [0, MIN_WINDOW - 1, MAX_WINDOW + 1, 2**32 - 1])
def test_set_pool_params_withdraw_window_out_of_bounds(system, deployer, window):
    """setPoolParams refuses a withdraw window outside [1 h, 30 days] with
    ParameterOutOfBounds("withdrawWindow", window), whatever the other (valid) fields; the pool's
    parameters stay as they were."""
    pool = system.pool
    before = tuple(pool.poolParams())
    with expect_revert(pool.ParameterOutOfBounds, name=b32("withdrawWindow"), value=window):
        pool.setPoolParams((DAY, window, 10**17), sender=deployer)
    assert tuple(pool.poolParams()) == before


@pytest.mark.parametrize("window", [MIN_WINDOW, MAX_WINDOW])
def test_set_pool_params_withdraw_window_bounds_are_inclusive(system, deployer, window):
    """Control for the window bounds: 1 h and 30 days themselves are accepted and stored."""
    pool = system.pool
    pool.setPoolParams((DAY, window, 10**17), sender=deployer)
    assert tuple(pool.poolParams()) == (DAY, window, 10**17)
