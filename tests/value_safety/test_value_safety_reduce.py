"""Regression suite of the reduce margin rule (ClearingHouse._trade / ClearingHouseMargin._checkReduce,
`IClearingHouse.ReduceBelowMaintenance`), from the attacker review of the LP side that found the leak it closes.

The leak (AR1, AR2 of that review): a reduce or close was checked against no margin, so account A could open a
levered long, its partner B push the vAMM to the bottom of the price band, and A close into it for more than A
held, ending with no position and negative collateral; B bought back on the curve A's sale pushed down, and the
pair kept A's debt (paid by the insurance fund, then the pool) as profit. The rule now: a reduce or close without a
builder fee that fills worse than the index (quote + base x index < 0), or a close that leaves the account
with no open market and negative collateral, must leave the account at or above maintenance (free and auctioned
parts; with no position: collateral >= 0), else it reverts `ReduceBelowMaintenance(owner, subaccount, excess)`.
A reduce filled at or better than the index is accepted with no check (it lowers the value by its fee at most).

The attack tests run the attack end to end on the session deployment (`lagging_peg_config`), on fresh
`plain_config()` and `concentrated_config()` deployments, funding off, and assert: the harmful step reverts with
exactly `ReduceBelowMaintenance` for the right owner and subaccount and the `excess` computed to the wei from the
views, the refused call changes nothing observable, the attacker pair's wealth does not grow (tokens + each Vault
account's worth floored at zero, an abandoned underwater account being nobody's debt + pool shares at
`convertToAssets`; test_value_safety.py's count) and the pool's NAV (`pool.navWad()`, which holds the open
positions' PnL) plus the insurance fund loses nothing. The honest-path tests show what the rule must not refuse.
AR3 (a cooldown bypass by relaying shares, from the same review) is kept at the end. Figures are printed in USD.
Block times are set explicitly.
"""
from __future__ import annotations

from contextlib import contextmanager

import pytest

from helpers.trading import apply_trade, expect_revert, fee_of, funding_off, requirement, snapshot, upnl
from helpers.value_safety import (  # noqa: F401 - crew is a fixture
    ETH,
    MAX_UINT,
    SCALE,
    at,
    band_room,
    close,
    crew,
    deposit,
    fund,
    lp_deposit,
    lp_value,
    mint,
    nav_plus_insurance,
    refresh_oracles,
    set_index,
    start,
    trade,
    usd,
    wealth,
)
from vperp import deploy
from vperp.config import concentrated_config, plain_config
from vperp.units import DAY, WAD

pytestmark = pytest.mark.usefixtures("no_funding")  # tests/conftest.py: funding off for the module


# ---------------------------------------------------------------------------- helpers


def _observable(s, owners) -> dict:
    """What a refused call must leave as it was: reserves, open interest, the owners' collateral, positions and
    values, the pool's cash and NAV, the insurance fund, the bad-debt estimate, the Vault's tokens."""
    out = snapshot(s, owners)
    out["nav"] = s.pool.navWad()
    out["pendingBadDebt"] = s.vault.pendingBadDebt()
    for o in owners:
        out[("accountValue", o.address)] = s.vault.accountValue(o, 0)
        out[("tokens", o.address)] = s.collateral.balanceOf(o)
    return out


@contextmanager
def _refused(s, owner, excess: int, others=()):
    """The call in the block must revert with exactly ReduceBelowMaintenance(owner, 0, excess) and change nothing."""
    owners = [owner, *others]
    before = _observable(s, owners)
    with expect_revert(s.clearing_house.ReduceBelowMaintenance, owner=owner, subaccount=0, excess=excess):
        yield
    assert _observable(s, owners) == before, "the refused reduce changed state"


class _Reduce:
    """The outcome of a reduce of `who`'s ETH position by `base` (sign opposite the position), from the views,
    to the wei: the fill (`quote`), whether it is worse than the index (the rule's trigger) and the excess over
    maintenance the account would have after it (`_checkReduce`'s `excess`; with no position left, the
    collateral). One open market (ETH), none of it auctioned, funding off."""

    def __init__(self, s, who, sub: int = 0):
        ch, vault = s.clearing_house, s.vault
        assert vault.openMarkets(who, sub) == 1 << (ETH - 1)
        assert ch.auctionedSize(who, sub, ETH) == 0
        self.ch = ch
        self.size, self.on, pending = ch.position(who, sub, ETH)
        assert pending == 0  # funding off
        self.coll = vault.collateral(who, sub)
        self.index = ch.indexPrice(ETH)
        mp = ch.marketParams(ETH)
        self.fee, self.mmr, self.min_size = mp.takerFee, mp.mmr, mp.minPositionSize

    def quote(self, base: int) -> int:
        return self.ch.quote(ETH, base)[0]

    def worse_than_index(self, base: int) -> bool:
        return self.quote(base) + base * self.index // WAD < 0

    def excess(self, base: int) -> int:
        q = self.quote(base)
        new_size, new_on, realized = apply_trade(self.size, self.on, base, q)
        coll = self.coll + realized - fee_of(q, self.fee)
        if new_size == 0:
            return coll
        return coll + upnl(new_size, new_on, self.index) - requirement(new_size, self.index, self.mmr)

    def largest_allowed(self) -> int:
        """The largest reduce (base, wei) that leaves the account at or above maintenance and at least the minimum
        position size; 0 if none. Excess falls as the reduce grows into a vAMM below the index (each base sold
        loses more than the maintenance it frees), so a bisection finds the boundary."""
        sign = -1 if self.size > 0 else 1
        lo, hi = 0, abs(self.size) - self.min_size
        if self.excess(sign * hi) >= 0:
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.excess(sign * mid) >= 0:
                lo = mid
            else:
                hi = mid
        return lo


def _excess_now(s, who) -> int:
    """accountValue - maintenance (free and auctioned parts) from the Vault's views, WAD."""
    return s.vault.accountValue(who, 0) - s.vault.marginRequirements(who, 0)[1]


def _size(s, who) -> int:
    return s.clearing_house.position(who, 0, ETH)[0]


def _fill_vs_index(s, receipt) -> int:
    """A trade's quote + floor(base x index) from its PositionChanged event: >= 0 at or better than the index."""
    ev = list(s.clearing_house.PositionChanged.from_receipt(receipt))[0]
    return ev.quoteDelta + ev.baseDelta * s.clearing_house.indexPrice(ETH) // WAD


def _margin_for_top_of_band_long(s, cap_base: int | None = None) -> tuple[int, int]:
    """(base, USD) of the largest long to the top of ETH's band (within `cap_base`) and the whole-dollar margin that
    just opens it at the initial requirement (slippage at the index + IM + the fee + 0.05 % of notional spare)."""
    ch = s.clearing_house
    q = band_room(s, ETH, buy=True) // 10**16 * 10**16
    if cap_base is not None:
        q = min(q, cap_base)
    cost = -ch.quote(ETH, q)[0]
    mp, index = ch.marketParams(ETH), ch.indexPrice(ETH)
    notional = q * index // WAD
    need = cost - notional + notional * mp.imr // WAD + cost * mp.takerFee // WAD + notional // 2000
    return q, need // WAD + 1


def _push_and_try_close(s, a, b, a_usd: int, b_usd: int, q: int, short_cap: int | None = None) -> int:
    """A (margin `a_usd`) buys `q` to the top of the band at 10x; B sells the vAMM to the bottom of the band (within
    `short_cap` base); A tries to close its whole long into it, which would realize more loss than its collateral:
    refused (ReduceBelowMaintenance, `excess` = the collateral the close would have left, nothing changed).
    Returns that excess [wad]."""
    deposit(s, a, a_usd)
    deposit(s, b, b_usd)
    trade(s, a, ETH, q)
    short = band_room(s, ETH, buy=False)
    if short_cap is not None:
        short = min(short, short_cap)
    trade(s, b, ETH, -short)
    r = _Reduce(s, a)
    assert r.worse_than_index(-r.size)
    excess = r.excess(-r.size)
    assert excess < 0  # the close the leak allowed: no position, negative collateral
    with _refused(s, a, excess, others=[b]):
        close(s, a, ETH)
    return excess


def _run_pair(s, chain, a, b, b_usd: int, tag: str, cap_base=None, short_cap=None, salvage: bool = False):
    """AR1 end to end: the push, A's refused close, then the pair's way out: (with `salvage`) A reduces as far
    as the rule lets it into the pushed vAMM, B buys back, A closes the rest on the curve B's buy moved back up,
    both withdraw everything. Returns (refused excess, pair gain, pool NAV + insurance change)."""
    vault = s.vault
    holders = [(a, [0]), (b, [0])]
    t = start(chain)
    refresh_oracles(s)
    q, a_usd = _margin_for_top_of_band_long(s, cap_base)
    mint(s, a, a_usd)
    mint(s, b, b_usd)
    w0, pi0 = wealth(s, holders), nav_plus_insurance(s)
    at(chain, t + 100)
    excess = _push_and_try_close(s, a, b, a_usd, b_usd, q, short_cap)
    salvaged = 0
    if salvage:
        r = _Reduce(s, a)
        salvaged = r.largest_allowed()
        assert 0 < salvaged < q
        with _refused(s, a, r.excess(-(salvaged + 1)), others=[b]):
            trade(s, a, ETH, -(salvaged + 1))
        trade(s, a, ETH, -salvaged)
        assert _excess_now(s, a) >= 0
    at(chain, t + 200)
    close(s, b, ETH)
    at(chain, t + 300)
    fill = _fill_vs_index(s, close(s, a, ETH))
    assert fill >= 0  # back on the curve B's buy restored: at or better than the index, no check needed
    vault.withdraw(0, MAX_UINT, sender=a)
    vault.withdraw(0, MAX_UINT, sender=b)
    assert vault.collateral(a, 0) >= 0 and vault.openMarkets(a, 0) == 0 and vault.pendingBadDebt() == 0
    w1, pi1 = wealth(s, holders), nav_plus_insurance(s)
    gain = w1 - w0
    salvage_note = f"; A's largest allowed reduce {salvaged / WAD:,.4f} ETH" if salvage else ""
    print(f"\nAR1[{tag}] A long {q / WAD:,.2f} ETH on {a_usd:,} USD margin; its close into B's short refused "
          f"(excess {usd(excess)}){salvage_note}; pair gain {usd(gain)} USD; pool NAV + insurance {usd(pi1 - pi0)}")
    assert gain <= 0, f"AR1[{tag}]: the pair gained {usd(gain)} USD"
    assert pi1 - pi0 >= 0, f"AR1[{tag}]: pool NAV + insurance lost {usd(pi0 - pi1)} USD"
    return excess, gain, pi1 - pi0


# ---------------------------------------------------------------------------- the attacks, now refused


def test_ar1_a_levered_close_into_a_vamm_its_partner_pushed_is_refused(system, chain, crew):
    """AR1 (no oracle move at all): account A opens a 10x long to the top of the band; account B (same attacker)
    shorts the vAMM to the bottom of the band; A closes its long into the dislocated vAMM, which would realize a
    loss larger than its ~210k collateral (no position, negative collateral: the pair's profit, the insurance
    fund's and the pool's loss). The close fills worse than the index and leaves negative collateral, so it must
    leave A at or above maintenance: refused, `excess` = the collateral it would have left. The attacker then does
    the best the rule allows: A reduces exactly as far as keeps it at maintenance (a wei more is refused), B buys
    back, A closes the rest at or better than the index. Safe property: the pair gains nothing; the pool's NAV +
    the insurance fund lose nothing."""
    _run_pair(system, chain, crew.atk[0], crew.atk[1], 400_000, "lagging peg", salvage=True)


@pytest.fixture(scope="module")
def plain(deployer):
    """The shipped system on the plain markets (deployments/config/plain.yaml: the peg follows the index every block,
    stale-peg rule on, trades direct), once for the module, funding off."""
    d = deploy(deployer, plain_config())
    funding_off(d)
    return d


def test_ar1_on_the_plain_shipped_system_too(plain, chain, crew):
    """AR1 on `plain_config()` (the plain markets as shipped: peg following every block, the stale-peg rule on), not
    the lagging-peg set-up of the session deployment: no trade moves the peg, so the stale-peg rule holds no leg and
    the reduce rule alone refuses A's close. Safe property as AR1."""
    _run_pair(plain, chain, crew.atk[0], crew.atk[1], 400_000, "plain.yaml")


@pytest.fixture(scope="module")
def deep(deployer):
    """The concentrated deployment (the shipped depth: 300M of quote per market, peg following the index every block,
    stale-peg rule 11 bps; trades direct), once for the module, funding off."""
    d = deploy(deployer, concentrated_config())
    funding_off(d)
    return d


def test_ar1b_on_the_concentrated_depth_the_close_is_refused_too(deep, chain, crew):
    """AR1 on the concentrated deployment (10M pool): the long is 1,500 ETH (the size that left the most bad debt
    among 500..3,000 ETH in the review), the short is capped by the pool-ratio OI cap (2 x the pool, ~6,600 ETH).
    Before the rule A's close left about 35k USD of negative collateral (paid by the insurance fund; the pair still
    lost, B's push across the 10x amplified curve costing more in fees): now that close is refused like AR1's (its
    `excess` is that negative collateral), and the pair's unwinding (B buys back, A closes) costs it fees only.
    Safe property as AR1."""
    cap = 2 * deep.vault.poolBalance() * 99 // 100 // deep.clearing_house.indexPrice(ETH) * WAD // 10**16 * 10**16
    _run_pair(deep, chain, crew.atk[0], crew.atk[1], 4_000_000, "concentrated", cap_base=1_500 * WAD,
              short_cap=cap)


def test_ar2_the_close_that_would_hide_a_debt_from_the_nav_is_refused_and_the_lp_exit_is_priced_as_after(
        system, chain, crew):
    """AR2. The attack on the NAV: the bad-debt set-aside counts only the engine's estimates, so an account left with
    no position and negative collateral by its own close (AR1's construction) carried a certain debt no estimate
    held; an LP with a matured request redeemed in that block, before anyone called `resolveBadDebt`, at a NAV
    blind to it. That state can no longer be made by a close: each of three pairs' closes is refused
    (ReduceBelowMaintenance, nothing changed), no account is left with negative collateral, `pendingBadDebt` stays
    0 and `resolveBadDebt` finds nothing (NoBadDebt). The LP (half of a 20M pool) redeems in the block right after
    the last refused close (a revert mines no block), with that pair's positions still open; the control (same
    chain state, same block time) redeems after the keeper's `resolveBadDebt` calls. Safe property: both payouts
    are equal to the wei, and the seed LP's value with them."""
    s, pool, vault = system, system.pool, system.vault
    lp, keeper = crew.atk[6], crew.keeper
    pairs = [(crew.atk[0], crew.atk[1]), (crew.atk[2], crew.atk[3]), (crew.atk[4], crew.atk[5])]
    t = start(chain)
    shares = lp_deposit(s, lp, 10_000_000)  # half of a 20M pool
    pool.requestWithdraw(shares, sender=lp)
    at(chain, t + DAY + 10)  # the request has matured
    refresh_oracles(s)
    excesses = []
    for i, (a, b) in enumerate(pairs):
        at(chain, t + DAY + 100 * (i + 1))
        q, a_usd = _margin_for_top_of_band_long(s)
        mint(s, a, a_usd)
        mint(s, b, 400_000)
        excesses.append(_push_and_try_close(s, a, b, a_usd, 400_000, q))
        if i < len(pairs) - 1:  # unwound (at or better than the index) so the next pair finds the band's room
            at(chain, t + DAY + 100 * (i + 1) + 50)
            close(s, b, ETH)
            close(s, a, ETH)
    a_last, b_last = pairs[-1]
    assert vault.openMarkets(a_last, 0) and vault.openMarkets(b_last, 0)  # the last push is still on
    assert all(vault.collateral(a, 0) >= 0 for a, _ in pairs) and vault.pendingBadDebt() == 0
    nav_ahead = pool.navWad()
    when = chain.pending_timestamp  # the block right after the last refused close (a revert mines none)

    def redeem():
        before = s.collateral.balanceOf(lp)
        pool.redeem(shares, lp, lp, sender=lp)
        return (s.collateral.balanceOf(lp) - before) * SCALE

    snap = chain.snapshot()
    at(chain, when)
    paid_ahead = redeem()
    honest_ahead = lp_value(s, s.deployer)
    chain.restore(snap)
    at(chain, when)
    for a, _ in pairs:
        with expect_revert(vault.NoBadDebt, owner=a, subaccount=0, collateral=vault.collateral(a, 0),
                           openMarkets=vault.openMarkets(a, 0)):
            vault.resolveBadDebt(a, 0, sender=keeper)
    assert pool.navWad() == nav_ahead
    paid_after = redeem()
    honest_after = lp_value(s, s.deployer)
    print(f"\nAR2 three closes refused (excess {', '.join(usd(e) for e in excesses)}); pendingBadDebt 0; NAV "
          f"{usd(nav_ahead)}; LP payout in the block {usd(paid_ahead)} vs after the resolve calls {usd(paid_after)}")
    assert paid_ahead > 0
    assert paid_ahead == paid_after, f"AR2: the LP's exit ahead differs by {usd(paid_ahead - paid_after)} USD"
    assert honest_ahead == honest_after


# ---------------------------------------------------------------------------- honest paths the rule keeps open


def test_a_long_below_maintenance_reduces_and_closes_above_the_index(system, chain, crew):
    """An account below maintenance because the index fell (the vAMM was not pushed: the lagging peg has not
    followed, the vAMM sits above the new index) still reduces and closes: a long selling above the index fills at
    or better than it, which the rule accepts with no check, even though the account stays below maintenance after
    the reduce."""
    s, vault = system, system.vault
    a = crew.victim
    t = start(chain)
    refresh_oracles(s)
    fund(s, a, 40_000)
    trade(s, a, ETH, 100 * WAD)
    at(chain, t + 100)
    set_index(s, "ETH", 2_700 * 10**8)  # -10 %
    assert vault.isLiquidatable(a, 0) and vault.accountValue(a, 0) > 0
    at(chain, t + 200)
    assert _fill_vs_index(s, trade(s, a, ETH, -10 * WAD)) >= 0
    assert _size(s, a) == 90 * WAD and _excess_now(s, a) < 0  # accepted below maintenance
    at(chain, t + 300)
    assert _fill_vs_index(s, close(s, a, ETH)) >= 0
    assert vault.openMarkets(a, 0) == 0 and vault.collateral(a, 0) > 0


def test_a_short_below_maintenance_buys_back_below_the_index(system, chain, crew):
    """The mirror: a short below maintenance because the index rose buys back on a vAMM still below the index (a
    fill better than the index): the reduce and the close go through without a check."""
    s, vault = system, system.vault
    b = crew.victim
    t = start(chain)
    refresh_oracles(s)
    fund(s, b, 40_000)
    trade(s, b, ETH, -100 * WAD)
    at(chain, t + 100)
    set_index(s, "ETH", 3_300 * 10**8)  # +10 %
    assert vault.isLiquidatable(b, 0) and vault.accountValue(b, 0) > 0
    at(chain, t + 200)
    assert _fill_vs_index(s, trade(s, b, ETH, 10 * WAD)) >= 0
    assert _size(s, b) == -90 * WAD and _excess_now(s, b) < 0
    at(chain, t + 300)
    assert _fill_vs_index(s, close(s, b, ETH)) >= 0
    assert vault.openMarkets(b, 0) == 0 and vault.collateral(b, 0) > 0


def test_a_long_below_maintenance_reduces_after_the_peg_followed_the_index(plain, chain, crew):
    """On the plain markets (peg following the index, stale-peg rule on): the index falls 7 %, which leaves an 8.6x
    long below maintenance; the keeper's repegs bring the peg to the index (before them the stale-peg rule holds a
    sell). The long is the only net position, so the curve's price is above the peg: selling fills above the index,
    and a reduce that leaves the account still below maintenance, then the close, go through."""
    s, vault = plain, plain.vault
    a, keeper = crew.victim, crew.keeper
    t = start(chain)
    refresh_oracles(s)
    fund(s, a, 35_000)
    trade(s, a, ETH, 100 * WAD)
    at(chain, t + 100)
    set_index(s, "ETH", 2_790 * 10**8)  # -7 %
    assert vault.isLiquidatable(a, 0) and vault.accountValue(a, 0) > 0
    index = s.clearing_house.indexPrice(ETH)
    for i in range(3):  # 5 % of the peg a call at most; done once within the repeg threshold (0.1 %)
        if abs(s.amm.pegPrice(ETH) - index) * 1_000 <= index:
            break
        at(chain, t + 110 + 10 * i)
        s.amm.repeg(ETH, sender=keeper)
    assert abs(s.amm.pegPrice(ETH) - index) * 1_000 <= index  # followed (within the stale-peg rule's 11 bps)
    at(chain, t + 200)
    assert _fill_vs_index(s, trade(s, a, ETH, -10 * WAD)) >= 0
    assert _size(s, a) == 90 * WAD and _excess_now(s, a) < 0
    at(chain, t + 400)
    assert _fill_vs_index(s, close(s, a, ETH)) >= 0
    assert vault.openMarkets(a, 0) == 0 and vault.collateral(a, 0) > 0


def test_a_healthy_reduce_into_a_pushed_vamm_passes_up_to_maintenance(system, chain, crew):
    """The refusal boundary: a healthy 200 ETH long (about 8x) reduces into a vAMM its partner pushed to the bottom
    of the band (every fill worse than the index, so each reduce is checked). The largest reduce that leaves it at
    or above maintenance (found to the wei from the views) goes through, and the account's `accountValue -
    maintenance` after it is the predicted excess, >= 0; one wei more is refused with the predicted (negative)
    excess and changes nothing."""
    s, vault = system, system.vault
    a, b = crew.atk[0], crew.atk[1]
    t = start(chain)
    refresh_oracles(s)
    fund(s, a, 75_000)
    fund(s, b, 400_000)
    trade(s, a, ETH, 200 * WAD)
    assert not vault.isLiquidatable(a, 0)
    at(chain, t + 100)
    trade(s, b, ETH, -band_room(s, ETH, buy=False))
    assert _excess_now(s, a) > 0  # healthy at the index
    at(chain, t + 200)
    r = _Reduce(s, a)
    ok = r.largest_allowed()
    assert 0 < ok < 200 * WAD - r.min_size  # a real boundary inside the position
    assert r.worse_than_index(-ok) and r.worse_than_index(-(ok + 1))
    too_much = r.excess(-(ok + 1))
    assert too_much < 0
    with _refused(s, a, too_much, others=[b]):
        trade(s, a, ETH, -(ok + 1))
    want = r.excess(-ok)
    trade(s, a, ETH, -ok)
    print(f"\nreduce boundary: {ok} wei of base passes (excess {want} wei), one wei more is refused "
          f"(excess {too_much} wei)")
    assert _size(s, a) == 200 * WAD - ok
    assert _excess_now(s, a) == want >= 0


def test_a_close_worse_than_the_index_that_leaves_collateral_passes(system, chain, crew):
    """A close into a vAMM pushed to the bottom of the band fills worse than the index, but leaves no position and
    collateral >= 0 (a 3x long): no check applies and it goes through, the collateral left to the wei as predicted
    from the views, and the account withdraws it."""
    s, vault = system, system.vault
    a, b = crew.atk[0], crew.atk[1]
    t = start(chain)
    refresh_oracles(s)
    fund(s, a, 50_000)
    fund(s, b, 400_000)
    trade(s, a, ETH, 50 * WAD)
    at(chain, t + 100)
    trade(s, b, ETH, -band_room(s, ETH, buy=False))
    at(chain, t + 200)
    r = _Reduce(s, a)
    assert r.worse_than_index(-r.size)
    want = r.excess(-r.size)
    assert want >= 0
    assert _fill_vs_index(s, close(s, a, ETH)) < 0
    assert vault.openMarkets(a, 0) == 0 and vault.collateral(a, 0) == want
    before = s.collateral.balanceOf(a)
    vault.withdraw(0, MAX_UINT, sender=a)
    assert (s.collateral.balanceOf(a) - before) * SCALE == want // SCALE * SCALE


# ---------------------------------------------------------------------------- AR3 (same review, the pool's cooldown)


def test_ar3_shares_relayed_into_a_matured_request_do_not_leave_before_their_cooldown(system, chain, crew):
    """AR3. Cooldown bypass by relay: the attacker keeps a second address B holding a few shares with a matured
    request, so that when a loss becomes visible its main address A (no request) can pass its shares to B and redeem
    them at once, ahead of the loss. A request is for the shares held when it was made (receiving shares never grows
    it) and `redeem` is capped by it: B gets out only its own requested shares; A's relayed shares wait a full
    cooldown like anyone's. Safe property: nothing beyond the request leaves, and `maxRedeem` says so."""
    s, pool = system, system.pool
    a, b = crew.atk[0], crew.atk[1]
    t = start(chain)
    small = lp_deposit(s, b, 10_000)
    big = lp_deposit(s, a, 5_000_000)
    pool.requestWithdraw(small, sender=b)
    at(chain, t + DAY + 10)  # B's request matured; A never asked
    refresh_oracles(s)
    pool.transfer(b, big, sender=a)  # the relay
    assert pool.withdrawRequest(b).shares == small and pool.maxRedeem(b) == small
    with expect_revert(pool.ExceedsRequest):
        pool.redeem(small + big, b, b, sender=b)
    before = s.collateral.balanceOf(b)
    pool.redeem(pool.maxRedeem(b), b, b, sender=b)
    out = (s.collateral.balanceOf(b) - before) * SCALE
    print(f"\nAR3 relayed {big} shares into a matured request for {small}: redeemed {usd(out)} USD, "
          f"{pool.balanceOf(b)} shares left to wait a cooldown")
    assert pool.balanceOf(b) == big and out <= s.units(10_000) * SCALE + 10**13
    pool.requestWithdraw(big, sender=b)
    assert pool.maxRedeem(b) == 0  # a fresh cooldown
