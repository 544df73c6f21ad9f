"""Helpers of the value-safety reviews (tests/value_safety/test_value_safety.py, test_value_safety_pool_nav.py,
test_value_safety_depth_hold.py): actors (`crew`), attack steps that may be refused (`attempt`, logged with
the error's name), and the attacker's and the honest parties' wealth, in WAD."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from ape.exceptions import ContractLogicError, VirtualMachineError

from helpers.reverts import revert_name
from vperp.units import WAD

SCALE = 10**12  # WAD per unit of the 6-decimal collateral
MAX_UINT = 2**256 - 1
INT128_MAX = 2**127 - 1
FAR = 2**40  # a deadline that never passes in these tests
ETH, BTC = 1, 2
DUST = 10**13  # 0.00001 USD: rounding tolerance on every value comparison
SPARE_SUB = 77  # sub-account an owner may move margin to (finding 1)


# ---------------------------------------------------------------------------- small helpers


def usd(x_wad: int) -> str:
    return f"{x_wad / WAD:,.2f}"


def mul_up(a: int, b: int) -> int:
    return -((-a * b) // WAD)


def div_up(a: int, b: int) -> int:
    return -((-a * WAD) // b)


LOG: list[str] = []  # refused steps of the running test, printed by the tests


def attempt_tx(tx_fn, label: str = ""):
    """Run one attack step; its receipt/result, or None if it reverted (a fix may refuse it)."""
    try:
        out = tx_fn()
        return out if out is not None else True
    except (ContractLogicError, VirtualMachineError) as exc:
        LOG.append(f"{label or 'step'} refused: {revert_name(exc)}")
        return None


def attempt(tx_fn, label: str = "") -> bool:
    """True if the step went through, False if it reverted (the attacker carries on without it)."""
    return attempt_tx(tx_fn, label) is not None


def view(fn, default=None):
    try:
        return fn()
    except (ContractLogicError, VirtualMachineError):
        return default


def big(n) -> str:
    return "2^256-1" if n == MAX_UINT else str(n)


def refused() -> str:
    out = "; ".join(LOG) if LOG else "none"
    LOG.clear()
    return out


@dataclass
class Crew:
    keeper: object  # honest keeper
    taker: object  # honest taker
    victim: object  # honest trader
    honest_lp: object  # honest LP (besides the deployer's seed)
    atk: list  # attacker accounts


@pytest.fixture(scope="module")
def crew(accounts, deployer):
    """Honest helpers on accounts[6], [7], [16], [17]; attackers on accounts[8..15]; all with gas money.
    Past the configured test accounts they are generated (deterministically, in order)."""
    while len(accounts) < 18:
        accounts.generate_test_account()
    c = Crew(keeper=accounts[6], taker=accounts[7], victim=accounts[16], honest_lp=accounts[17],
             atk=[accounts[i] for i in range(8, 16)])
    for a in [c.keeper, c.taker, c.victim, c.honest_lp, *c.atk]:
        if a.balance < 10**19:
            deployer.transfer(a, 10**20)
    return c





def start(chain, ahead: int = 1_000) -> int:
    """A time comfortably after the head; the caller schedules every step from it."""
    t = chain.pending_timestamp + ahead
    chain.pending_timestamp = t
    return t


def at(chain, t: int) -> None:
    chain.pending_timestamp = t


def mint(s, who, human) -> int:
    units = s.units(human)
    s.collateral.mint(who, units, sender=who)
    return units


def deposit(s, who, human, sub: int = 0) -> None:
    units = s.units(human)
    s.collateral.approve(s.vault, units, sender=who)
    s.vault.deposit(sub, units, sender=who)


def fund(s, who, human, sub: int = 0) -> None:
    mint(s, who, human)
    deposit(s, who, human, sub)


def lp_deposit(s, who, human) -> int:
    units = mint(s, who, human)
    s.collateral.approve(s.pool, units, sender=who)
    before = s.pool.balanceOf(who)
    s.pool.deposit(units, who, sender=who)
    return s.pool.balanceOf(who) - before


def fund_insurance(s, human) -> None:
    units = mint(s, s.deployer, human)
    s.collateral.approve(s.vault, units, sender=s.deployer)
    s.vault.fundInsurance(units, sender=s.deployer)


def set_index(s, symbol: str, answer: int) -> None:
    """Post a raw 8-decimal answer (stamped with the pending block's time)."""
    s.markets[symbol].oracle.updateAnswer(answer, sender=s.deployer)


def refresh_oracles(s) -> None:
    for m in s.markets.values():
        m.oracle.updateAnswer(m.oracle.latestRoundData()[1], sender=s.deployer)


def trade(s, who, mid: int, base: int, sub: int = 0, limit: int | None = None):
    if limit is None:
        limit = MAX_UINT if base > 0 else 0
    return s.clearing_house.openPosition(sub, mid, base, limit, FAR, sender=who)


def close(s, who, mid: int, sub: int = 0):
    return s.clearing_house.closePosition(sub, mid, 0 if s.clearing_house.position(who, sub, mid)[0] > 0 else MAX_UINT,
                                          FAR, sender=who)


def lp_value(s, who) -> int:
    """Pool shares of `who` at convertToAssets, in WAD (0 if the view is unavailable)."""
    shares = s.pool.balanceOf(who)
    if shares == 0:
        return 0
    return view(lambda: s.pool.convertToAssets(shares), 0) * SCALE


def account_worth(s, who, sub: int) -> int:
    """What an account is worth to its owner, WAD: collateral plus, for each open position, the lower of its
    PnL at the index and what closing it on the vAMM now would realize after the taker fee (a position the
    attacker could not unwind is not counted at a price it cannot get), less pending funding; floored at 0
    (an underwater account is not its owner's debt)."""
    ch, vault = s.clearing_house, s.vault
    total = vault.collateral(who, sub)
    bits, mid = vault.openMarkets(who, sub), 1
    while bits:
        if bits & 1:
            size, on, pending = ch.position(who, sub, mid)
            if size:
                at_index = size * ch.indexPrice(mid) // WAD - on
                q = view(lambda: ch.quote(mid, -size)[0])
                if q is not None:
                    fee = -((-abs(q) * ch.marketParams(mid).takerFee) // WAD)
                    at_index = min(at_index, q - on - fee)
                total += at_index - pending
        bits >>= 1
        mid += 1
    return max(total, 0)


def wealth(s, holders) -> int:
    """holders: [(account, [subaccounts])]. Tokens + account worth + pool shares at convertToAssets, WAD."""
    total = 0
    for who, subs in holders:
        total += s.collateral.balanceOf(who) * SCALE + lp_value(s, who)
        for sub in subs:
            total += account_worth(s, who, sub)
    return total


def pool_plus_insurance(s) -> int:
    return s.vault.poolBalance() + s.vault.insuranceFund()


def nav_plus_insurance(s) -> int:
    """What stands behind the traders, WAD: the pool's NAV (`navWad`: every open position valued at its vAMM exit,
    the uncovered bad-debt estimate set aside; an open position's PnL is in it, not in the cash) plus the insurance
    fund."""
    return s.pool.navWad() + s.vault.insuranceFund()


def cash_out(s, who, subs) -> None:
    """Close every position the owner may close and withdraw whatever the Vault lets go."""
    for sub in subs:
        for mid in (m.id for m in s.markets.values()):
            size, _, _ = s.clearing_house.position(who, sub, mid)
            free_size = size - s.clearing_house.auctionedSize(who, sub, mid)
            if free_size != 0 and not attempt(lambda: close(s, who, mid, sub), f"close sub {sub} market {mid}"):
                # Refused (e.g. the price band): reduce as far as the band lets the trade go.
                step = min(band_room(s, mid, buy=free_size < 0), abs(free_size))
                if abs(free_size) - step < s.clearing_house.marketParams(mid).minPositionSize:
                    step = abs(free_size) - s.clearing_house.marketParams(mid).minPositionSize
                if step > 0:
                    attempt(lambda: trade(s, who, mid, step if free_size < 0 else -step, sub), f"reduce sub {sub}")
        free = s.vault.freeCollateral(who, sub)
        units = free // SCALE if free > 0 else 0
        if units:
            attempt(lambda: s.vault.withdraw(sub, units, sender=who), f"withdraw sub {sub}")


def band_room(s, mid: int, buy: bool, frac_num: int = 999, frac_den: int = 1000) -> int:
    """Base that moves the vAMM from where it is to index x (1 +/- maxSpread x frac): the largest trade the
    price band lets through in that direction (0 if the vAMM is already past that point)."""
    ch = s.clearing_house
    st = ch.marketState(mid)
    mp = ch.marketParams(mid)
    idx = ch.indexPrice(mid)
    spread = mp.maxSpread * frac_num // frac_den
    target = idx * (WAD + spread) // WAD if buy else idx * (WAD - spread) // WAD
    x, y = st.baseReserve, st.quoteReserve
    x1 = math.isqrt(x * y * WAD // target)
    base = x - x1 if buy else x1 - x
    base = base // mp.minPositionSize * mp.minPositionSize
    return max(base, 0)


def bad_debt_of(s, receipt) -> int:
    if receipt in (None, True):
        return 0
    return sum(ev.amount for ev in s.vault.BadDebt.from_receipt(receipt))


def redeem_all(s, who, when: str = "") -> int:
    """The LP redeems its request (or what maxRedeem allows); returns the tokens received (units)."""
    pool = s.pool
    before = s.collateral.balanceOf(who)
    shares = min(pool.withdrawRequest(who).shares, pool.balanceOf(who))
    if shares and not attempt(lambda: pool.redeem(shares, who, who, sender=who), f"redeem request{when}"):
        mr = view(lambda: pool.maxRedeem(who), 0)
        if mr:
            attempt(lambda: pool.redeem(mr, who, who, sender=who), f"redeem maxRedeem{when}")
    return s.collateral.balanceOf(who) - before
