"""ERC-4626 to the letter: a property suite for LiquidityPool written from the EIP-4626 text, run on the
fast tier (the compiled contracts on pyrevm in-process, vperp.fast) with Hypothesis.

Every example starts from one deployment (`vperp.deploy`; its 10M seed moved to LP 0, LPs 1 and 2 with
1M and 10k; LPs are BatchCaller contracts, helpers/fast_erc4626.py's Env) and runs a drawn list
of steps (fast_erc4626.STEPS): LP deposits, mints, requests, redemptions, withdrawals and share
transfers (dust included), donations (`Vault.fundPool`), trades, index moves and gaps, time with or
without fresh feeds (stale feeds), a levered account's bad debt kicked (set aside) and taken, repegs and
depth syncs, funding pokes, pause levels, pool parameters (cooldown 0 to 1 day, reserve factor 0 to 1),
the pool's ledger line filled to within a few units of int128.max, and jumps to a request's cooldown and
window edges (the second before it matures, the second it matures, the last second of the window, the
first second after). A step that reverts is a step like any other.

Properties (EIP-4626's wording in quotes):

P1  views: `totalAssets`, `convertToShares`, `convertToAssets`, `preview*` and `max*` never revert in any
    state reached (stale feed, suspended flows, pause level 3, no request, matured or expired request,
    zero balance, dust, pool cash short, reserve binding, ledger near int128.max); `convertTo*` "MUST
    round down" (convertToAssets(convertToShares(a)) <= a and back, and each is the floor of the
    virtual-share formula) and "MUST NOT show any variations depending on the caller" (same answer from
    two callers); `preview*` likewise caller-independent, rounded against the caller, and never better
    than `convertTo*`.
P2  preview against the call, in the same state and block (one eth_call through the LP's BatchCaller:
    balance, preview, call, balance): previewDeposit(a) <= shares minted (equal here), previewMint(s) >=
    assets taken (equal), previewWithdraw(a) >= shares burnt (equal), previewRedeem(s) <= assets paid
    (equal), and the balances move by exactly what the call returned.
P3  `max*` exact, for each LP and a stranger, after every step: by probe (eth_calls in the head block's
    state), max > 0 -> the call with max succeeds (P2 checked on it); max + 1 reverts; max == 0 -> the
    call with 1 unit reverts; any amount below max succeeds unless it is a dust refusal (A4); then max*
    equals the documented rule (docs/pool.md; for maxDeposit, 0 when the room left buys no share, which
    EIP-exactness requires and the contract does not do yet: see docs/testing.md). Also at the ledger
    limit alone (test_max_deposit_and_mint_are_exact_at_the_ledger_limit).
P4  round trips never profitable. In one block (adaptation A1): deposit->redeem, deposit->withdraw,
    mint->redeem, mint->withdraw return per share at most what was paid per share (whole round trips:
    redeem(deposit(a)) <= a, withdraw(a) burns >= deposit(a)'s shares, ...). Across the cooldown with
    other steps in between (donations, losses, other LPs, time): at most what was paid plus the LP's
    share of what the steps in between added to its shares' value (measured block by block); with no
    such gain, at most what was paid.
P5  operator/allowance: redeem/withdraw for an owner without allowance are refused
    (ERC20InsufficientAllowance); with one they spend exactly the shares burnt (an infinite allowance is
    not spent), take the owner's shares and request, pay the receiver and emit Withdraw(caller,
    receiver, owner, assets, shares); deposit/mint without the token allowance are refused, with it they
    spend it and mint to the receiver (Deposit emitted: checked on every round trip's entry).

Adaptations (what the two-step withdrawal and the pool's own rules require; docs/testing.md lists them):

A1  Two-step withdrawals. withdraw/redeem need the owner's request (`requestWithdraw`), matured
    (cooldown passed) and inside its window, for at most the requested shares: maxWithdraw/maxRedeem are
    0 without one, before the cooldown and after the window, and bounded by the request; the edges are
    visited to the second. EIP-4626's round trips are run as deposit -> requestWithdraw -> redeem: in one
    block with the cooldown set to 0 (a governance setting within its bounds) for the EIP's immediate
    round trip, and across the cooldown for the round trip with events between.
A2  LP-flow suspension (`LpFlowsSuspended`): while an index cannot be trusted every max* is 0 and every
    flow reverts; convertTo* and preview* keep answering (EIP: preview "MUST NOT account for ... limits").
A3  Deposits priced before the bad-debt set-aside: previewDeposit/previewMint (and deposit/mint) use
    `depositAssets()` >= `totalAssets()`; convertTo*, previewWithdraw, previewRedeem use `totalAssets()`.
    The difference is treated as the EIP's entry fee: previewDeposit(a) <= convertToShares(a) and
    previewMint(s) >= convertToAssets(s), equal when nothing is set aside.
A4  Dust refusals instead of zero mints/burns: a deposit that buys no share reverts ZeroShares, a
    redemption that pays nothing ZeroAssets; maxRedeem is 0 when its shares would pay nothing. Amounts
    below max may revert for these two reasons only.
A5  Pause level 3 stops deposits (maxDeposit = maxMint = 0, deposits revert Paused); withdrawals go on.
A6  The reserve and the pool's cash bound maxWithdraw/maxRedeem (global limits the EIP asks max* to
    factor in).
A7  Round trips with events between are bounded by what was paid plus the LP's share of the value
    others added (a donation legitimately raises every share), measured per block.

Profiles: the CI profile is derandomized (tests/conftest.py): 300 examples of 1-8 steps with every check
after every step, 40 at the ledger limit, 300 + 300 round trips, 200 allowance examples, about 25 s of CPU.
VPERP_FUZZ=long draws fresh examples, 20x as many; VPERP_FUZZ_EXAMPLES=n sets every test's count;
VPERP_FUZZ_SHRINK=0 reports a failure as found. The module prints what ran at the end (-s): examples and
seconds per test, steps by kind and outcome, each probe's outcome (with the error that refused it), and
how often each state was reached (the main test asserts every state the issue lists was reached).
"""
from __future__ import annotations

import functools
import os
import random
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from helpers import fast_erc4626 as h
from helpers.fast_erc4626 import (BTC, ETH, INT128_MAX, LP, MAX_UINT, OFFSET, PER_CALL, SCALE, STATS, STEPS,
                                 Refused, ceil_div)
from vperp.fast import Revert

LONG = os.environ.get("VPERP_FUZZ", "").lower() == "long"


def examples(ci: int) -> int:
    return int(os.environ.get("VPERP_FUZZ_EXAMPLES", ci * 20 if LONG else ci))


def fuzz(ci: int):
    return settings(max_examples=examples(ci), deadline=None, database=None if not LONG else settings.default.database,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture],
                    phases=[p for p in Phase if p != Phase.shrink or os.environ.get("VPERP_FUZZ_SHRINK", "1") != "0"])


TIMES: dict[str, list] = {}


@pytest.fixture(scope="module")
def env():
    start = time.perf_counter()
    e = h.Env()
    yield e
    print(f"\nERC-4626 properties: {e.sent:,} transactions, {e.fc.calls:,} eth_calls "
          f"in {time.perf_counter() - start:.1f} s")
    for name, (n, secs) in TIMES.items():
        print(f"  {name}: {n} examples, {secs:.1f} s")
    for key in sorted(STATS):
        print(f"  {key}: {STATS[key]:,}")


def run_example(env, body):
    """Run `body()` from the deployment's state and leave that state behind."""
    token = env.fc.snapshot()
    try:
        body()
    finally:
        env.observers.clear()
        env.fc.revert(token)


def timed(name: str):
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                n, secs = TIMES.get(name, (0, 0.0))
                TIMES[name] = (n + 1, secs + time.perf_counter() - t)
        return inner
    return wrap


# ---------------------------------------------------------------------------- the pool's state


class PoolState:
    """What the properties read off the pool at the head block, and the ERC-4626 arithmetic on it
    (OpenZeppelin's virtual shares: 10**6 virtual shares and 1 virtual asset, docs/pool.md)."""

    def __init__(self, env):
        P, V = env.pool, env.vault
        self.now = env.now
        self.A = P.view("totalAssets")
        self.D = P.view("depositAssets")
        self.S = P.view("totalSupply")
        self.nav = P.view("navWad")
        self.cash = V.view("poolBalance")
        self.reserve = P.view("reserveRequired")
        self.pause = V.view("pauseLevel")
        self.suspended = P.view("lpFlowsSuspended")[0]
        self.set_aside = P.view("uncoveredBadDebt")
        self.cooldown, self.window, self.reserve_factor = P.view("poolParams")
        self.stale = any(self.now > o.view("latestTimestamp") + env.ch.view("marketParams", m)[1]
                         for m, o in env.oracles.items())
        # what withdrawals may take in total: NAV down to the reserve, never more than the cash
        limit = min(self.nav - self.reserve, self.cash)
        self.withdrawable = limit // SCALE if limit > 0 else 0

    def to_shares(self, a):  # convertToShares, and the floor every deposit-side figure rounds to
        return a * (self.S + OFFSET) // (self.A + 1)

    def to_assets(self, s):
        return s * (self.A + 1) // (self.S + OFFSET)

    def preview(self, kind: str, x: int) -> int:
        if kind == "deposit":
            return x * (self.S + OFFSET) // (self.D + 1)
        if kind == "mint":
            return ceil_div(x * (self.D + 1), self.S + OFFSET)
        if kind == "withdraw":
            return ceil_div(x * (self.S + OFFSET), self.A + 1)
        return self.to_assets(x)

    def redeemable(self, request: tuple[int, int], balance: int) -> int:
        """A1: the shares a request lets its owner redeem now."""
        shares, unlock = request
        if shares == 0 or self.now < unlock or self.now > unlock + self.window:
            return 0
        return min(shares, balance)

    def expected_max(self, request, balance) -> dict:
        """docs/pool.md's rule for each max* (A1, A2, A4, A5, A6). For maxDeposit, the room left in the
        ledger line as docs/pool.md says, but 0 when that room buys no share: EIP-4626 asks deposit(max)
        to go through, and a deposit that buys no share reverts ZeroShares (A4), as maxRedeem is 0 for
        shares that would pay nothing. (The contract today reports the room: the probes in check_max
        fail first, with the reproduction.)"""
        if self.pause >= 3 or self.suspended:
            dep = 0
        else:
            dep = min((INT128_MAX - self.cash) // SCALE, PER_CALL)
            dep = dep if self.preview("deposit", dep) else 0
        out = {"deposit": dep, "mint": self.preview("deposit", dep)}
        if self.suspended:
            out.update(withdraw=0, redeem=0)
            return out
        mine = self.redeemable(request, balance)
        out["withdraw"] = min(self.to_assets(mine), self.withdrawable)
        r = min(mine, self.to_shares(self.withdrawable))
        out["redeem"] = 0 if r and self.to_assets(r) == 0 else r
        return out


KINDS = ("deposit", "mint", "withdraw", "redeem")
VIEW = {"deposit": "maxDeposit", "mint": "maxMint", "withdraw": "maxWithdraw", "redeem": "maxRedeem"}
PREVIEW = {k: v.replace("max", "preview") for k, v in VIEW.items()}
DUST_REFUSAL = {"deposit": "ZeroShares", "redeem": "ZeroAssets"}


def view_ok(env, name, *args, sender=None):
    """P1: a view that must not revert."""
    try:
        return env.pool.view(name, *args, sender=sender)
    except Revert as e:  # pragma: no cover - a failure
        raise AssertionError(f"{name}{args} reverted in this state: {e.name}{e.error_args}") from None


# ---------------------------------------------------------------------------- P1: views


def check_views(env, ps: PoolState, rnd: random.Random) -> None:
    callers = (env.deployer, env.stranger)  # EOAs: an eth_call from a contract is refused (EIP-3607)
    assert view_ok(env, "totalAssets") == ps.A
    assert view_ok(env, "asset").lower() == env.token.address
    amounts = [0, 1, rnd.randrange(1, 10**14), rnd.choice([10**6, PER_CALL, 2**128])]
    for x in amounts:
        for name, want in (("convertToShares", ps.to_shares(x)), ("convertToAssets", ps.to_assets(x)),
                           ("previewDeposit", ps.preview("deposit", x)), ("previewMint", ps.preview("mint", x)),
                           ("previewWithdraw", ps.preview("withdraw", x)), ("previewRedeem", ps.preview("redeem", x))):
            got = {view_ok(env, name, x, sender=c) for c in callers}
            assert got == {want}, f"{name}({x}) = {got} from {len(callers)} callers, expected {want}"
        # rounding: down for convertTo*, against the caller for preview*, never better than convertTo* (A3)
        assert ps.to_assets(ps.to_shares(x)) <= x and ps.to_shares(ps.to_assets(x)) <= x
        assert ps.preview("deposit", x) <= ps.to_shares(x) and ps.preview("mint", x) >= ps.to_assets(x)
        assert ps.preview("withdraw", x) >= ps.to_shares(x) and ps.preview("redeem", x) <= ps.to_assets(x)
        assert ps.preview("redeem", ps.preview("withdraw", x)) >= x  # withdrawing x burns shares worth >= x
        assert ps.preview("deposit", ps.preview("mint", x)) >= x  # paying for x shares buys >= x shares
    STATS["P1 view states checked"] += 1


# ---------------------------------------------------------------------------- P2, P3: calls and max


def call_kind(env, who: str, kind: str, x: int, receiver: str | None = None) -> dict:
    """P2: `who` (an LP's BatchCaller) calls `kind` with `x` in an eth_call on the head block, with the
    preview and both balances read right before and after in the same call. Returns what moved, or
    raises Refused."""
    P, T = env.pool, env.token
    receiver = receiver or who
    if kind in ("deposit", "mint"):
        cost = x if kind == "deposit" else P.view("previewMint", x)
        calls = [T("mint", who, cost), P("balanceOf", receiver), T("balanceOf", who), P(PREVIEW[kind], x),
                 P(kind, x, receiver), P("balanceOf", receiver), T("balanceOf", who)]
        _, s0, t0, preview, ret, s1, t1 = env.batch_call(who, calls)
        return {"preview": preview, "returned": ret, "shares": s1 - s0, "assets": t0 - t1}
    calls = [P("balanceOf", who), T("balanceOf", receiver), P(PREVIEW[kind], x),
             P(kind, x, receiver, who), P("balanceOf", who), T("balanceOf", receiver)]
    s0, t0, preview, ret, s1, t1 = env.batch_call(who, calls)
    return {"preview": preview, "returned": ret, "shares": s0 - s1, "assets": t1 - t0}


def check_call(kind: str, x: int, moved: dict) -> None:
    """P2: preview on the safe side of (here: equal to) what the call did; balances moved as returned."""
    p, r = moved["preview"], moved["returned"]
    if kind == "deposit":
        assert p <= r == moved["shares"] and moved["assets"] == x, (kind, x, moved)
    elif kind == "mint":
        assert p >= r == moved["assets"] and moved["shares"] == x, (kind, x, moved)
    elif kind == "withdraw":
        assert p >= r == moved["shares"] and moved["assets"] == x, (kind, x, moved)
    else:
        assert p <= r == moved["assets"] and moved["shares"] == x, (kind, x, moved)
    assert p == r, f"{kind}({x}): preview {p}, the call {r} (this pool has no fees: equal)"
    STATS[f"P2 preview == {kind}"] += 1


def refused(env, who, kind, x) -> Refused | None:
    try:
        call_kind(env, who, kind, x)
    except Refused as e:
        return e
    return None


def check_max(env, ps: PoolState, who: str, rnd: random.Random) -> None:
    """P3 for one LP: the probes at max, max + 1, 1 and below max (what EIP-4626 asks), then the value
    docs/pool.md documents."""
    request, balance = tuple(env.pool.view("withdrawRequest", who)), env.shares(who)
    want = ps.expected_max(request, balance)
    tag_state(ps, request, balance, want)
    for kind in KINDS:
        got = {view_ok(env, VIEW[kind], who, sender=c) for c in (env.deployer, env.spare)}
        assert len(got) == 1, f"{VIEW[kind]}({who}) depends on the caller: {got}"
        (m,) = got
        if m > 0:
            try:
                moved = call_kind(env, who, kind, m)
            except Refused as e:
                raise AssertionError(f"{VIEW[kind]}({who}) = {m} but {kind}({m}) reverts {e}") from None
            check_call(kind, m, moved)
            STATS[f"P3 {kind}(max) succeeds"] += 1
            e = refused(env, who, kind, m + 1)
            assert e is not None, f"{VIEW[kind]} = {m} but {kind}({m + 1}) succeeds"
            STATS[f"P3 {kind}(max + 1) refused: {e.name}"] += 1
            below = rnd.choice([1, rnd.randint(1, m), max(1, m >> rnd.randint(1, max(1, m.bit_length())))])
            if below < m:
                try:
                    moved = call_kind(env, who, kind, below)
                except Refused as e:
                    assert e.name == DUST_REFUSAL.get(kind) and ps.preview(kind, below) == 0, (
                        f"{kind}({below}) below {VIEW[kind]} = {m} reverts {e}")
                    STATS[f"P3 {kind}(below max) dust refusal"] += 1
                else:
                    check_call(kind, below, moved)
                    STATS[f"P3 {kind}(below max) succeeds"] += 1
        else:
            e = refused(env, who, kind, 1)
            assert e is not None, f"{VIEW[kind]} = 0 but {kind}(1) succeeds"
            STATS[f"P3 {kind}(1) refused at max 0: {e.name}"] += 1
        assert m == want[kind], (f"{VIEW[kind]} = {m}, the documented rule says {want[kind]} "
                                 f"(request {request}, balance {balance}, t {ps.now})")


def check_stranger(env, ps: PoolState) -> None:
    """An address holding nothing: maxWithdraw = maxRedeem = 0 and both refuse 1 unit; maxDeposit and
    maxMint do not depend on who receives."""
    s = env.stranger
    assert view_ok(env, "maxWithdraw", s) == 0 and view_ok(env, "maxRedeem", s) == 0
    for kind in ("withdraw", "redeem"):
        with pytest.raises(Refused):
            env.call_as(s, env.pool, kind, 1, s, s)
    assert view_ok(env, "maxDeposit", s) == view_ok(env, "maxDeposit", env.lps[0])
    assert view_ok(env, "maxMint", s) == view_ok(env, "maxMint", env.lps[0])
    STATS["tag zero balance"] += 1


def tag_state(ps: PoolState, request, balance, want) -> None:
    """Which of the states the issue lists this check ran in (asserted reached at the end)."""
    shares, unlock = request
    tags = []
    if ps.suspended:
        tags.append("suspended flows")
    if ps.pause >= 3:
        tags.append("pause level 3")
    if ps.set_aside:
        tags.append("bad debt set aside")
    if ps.stale:
        tags.append("stale feed" + (" (flows suspended)" if ps.suspended else " (open interest within tolerance)"))
    if 0 <= (INT128_MAX - ps.cash) // SCALE < 10**13:
        tags.append("ledger near int128.max")
    if balance == 0:
        tags.append("zero balance")
    if shares == 0:
        tags.append("no request")
    elif ps.now < unlock:
        tags.append("cooling down" + (" (1 s before)" if ps.now == unlock - 1 else ""))
    elif ps.now > unlock + ps.window:
        tags.append("window expired" + (" (1 s after)" if ps.now == unlock + ps.window + 1 else ""))
    else:
        tags.append("matured" + (" (first second)" if ps.now == unlock else "")
                    + (" (last second)" if ps.now == unlock + ps.window else ""))
        mine = ps.redeemable(request, balance)
        if not ps.suspended and mine:
            if 0 < mine and ps.to_assets(mine) == 0:
                tags.append("dust request (worth < 1 unit)")
            elif ps.to_assets(mine) > ps.withdrawable:
                tags.append("cash binds" if ps.nav - ps.reserve > ps.cash else "reserve binds")
    for k in KINDS:
        if want[k]:
            tags.append(f"max{k} > 0")
    for t in tags:
        STATS["tag " + t] += 1


def check_all(env, rnd: random.Random) -> None:
    ps = PoolState(env)
    check_views(env, ps, rnd)
    for lp in env.lps:
        check_max(env, ps, lp, rnd)
    check_stranger(env, ps)


REQUIRED_TAGS = ("suspended flows", "stale feed (flows suspended)", "pause level 3", "bad debt set aside",
                 "ledger near int128.max", "zero balance", "no request", "cooling down (1 s before)",
                 "matured (first second)", "matured (last second)", "window expired (1 s after)",
                 "dust request (worth < 1 unit)", "cash binds", "reserve binds",
                 "maxdeposit > 0", "maxmint > 0", "maxwithdraw > 0", "maxredeem > 0")

# States the issue lists, each kept as an explicit example (run before the generated ones).
EXPLICIT = {
    "stale feed": [("open", 0, ETH, 0.5), ("deposit", 1, 10**9), ("request", 1, 1), ("time", 86_401, False)],
    "gap": [("open", 0, ETH, 0.5), ("deposit", 1, 10**9), ("request", 1, 1), ("edge", 1, "unlock", True),
            ("oracle", ETH, -2_500)],
    "pause 3": [("deposit", 1, 10**9), ("request", 1, 0.5), ("pause", 3), ("edge", 1, "unlock", True)],
    "edges": [("deposit", 1, 10**9), ("request", 1, 1), ("edge", 1, "unlock-1", True), ("edge", 1, "unlock", True),
              ("edge", 1, "expiry", True), ("edge", 1, "expiry+1", True)],
    "dust": [("transfer", 1, 0, 1.0), ("transfer", 2, 0, 1.0), ("transfer", 0, 1, 1), ("transfer", 0, 2, 999_999),
             ("request", 1, 1), ("request", 2, 1), ("time", 86_400, True), ("deposit", 2, 1)],
    "reserve binds": [("open", 0, ETH, 1), ("open", 1, BTC, -1), ("params", 0, 7_200, 10**18), ("request", 0, 1),
                      ("time", 2, True)],
    "cash short": [("transfer", 1, 0, 1.0), ("transfer", 2, 0, 1.0), ("params", 0, 7_200, 0), ("open", 0, ETH, 1),
                   ("open", 1, BTC, 1), ("time", 3_600, True), ("poke", ETH), ("poke", BTC), ("time", 86_400, True),
                   ("request", 0, 1), ("time", 60, True)],
    "bad debt": [("deposit", 1, 10**12), ("request", 1, 1), ("baddebt", 2_000, True), ("time", 86_400, True),
                 ("take",)],
    "ledger by deposit": [("ledger", 0, "deposit"), ("request", 2, 1), ("time", 86_400, True)],
    "ledger by donation": [("deposit", 1, 10**9), ("request", 1, 1), ("ledger", 1, "donate"), ("time", 86_400, True)],
}


def _explicit(fn):
    for steps in EXPLICIT.values():
        fn = example(steps=steps, seed=0)(fn)
    return fn


def test_views_never_revert_and_max_is_exact(env):
    """P1, P2, P3 in every state the steps reach, checked after every step."""

    @fuzz(300)
    @given(steps=st.lists(STEPS, min_size=1, max_size=8), seed=st.integers(0, 2**32))
    @_explicit
    @timed("views and max (P1-P3)")
    def run(steps, seed):
        rnd = random.Random(seed)

        def body():
            check_all(env, rnd)
            for step in steps:
                env.apply(step)
                check_all(env, rnd)
        run_example(env, body)

    run()
    missing = [t for t in REQUIRED_TAGS if STATS["tag " + t] == 0]
    assert not missing, f"states never reached: {missing}"


def test_max_deposit_and_mint_are_exact_at_the_ledger_limit(env):
    """P3 at the pool's size limit: its ledger line (`Vault.poolBalance`, an int128) filled to `room` token
    units below int128.max, by an LP's deposit (the share price stays ~1e-6 unit) or by a donation (the
    price rises to ~1.7e7 units a share, so a small room buys no share): maxDeposit/maxMint for every LP
    are the documented values, deposit(maxDeposit) and mint(maxMint) go through, one more is refused, and
    a 0 means a single unit is refused."""

    @fuzz(40)
    @given(room=st.one_of(st.integers(0, 20), st.integers(0, 10**9), st.sampled_from([10**7, 2 * 10**7, 10**13])),
           how=st.sampled_from(["donate", "deposit"]), seed=st.integers(0, 2**32))
    @example(room=1, how="donate", seed=0)
    @example(room=0, how="deposit", seed=0)
    @timed("ledger limit (P3)")
    def run(room, how, seed):
        def body():
            assert env.apply(("ledger", room, how)) == "ok"
            ps = PoolState(env)
            assert (INT128_MAX - ps.cash) // SCALE == room
            for lp in env.lps:
                check_max(env, ps, lp, random.Random(seed))
        run_example(env, body)

    run()


# ---------------------------------------------------------------------------- P4: round trips


class ValueMeter:
    """A7: the value of `shares` held through a run of blocks, read after every transaction (shares x
    (totalAssets + 1) / (totalSupply + 1e6), exactly), and the sum of its rises."""

    def __init__(self, env, shares: int):
        self.env, self.shares = env, shares
        self.last = self.value()
        self.gain = Fraction(0)
        self.blocks = 0

    def value(self) -> Fraction:
        P = self.env.pool
        return Fraction(self.shares * (P.view("totalAssets") + 1), P.view("totalSupply") + OFFSET)

    def __call__(self, receipt) -> None:
        v = self.value()
        if v > self.last:
            self.gain += v - self.last
        self.last = v
        self.blocks += 1


def enter(env, lp: str, kind: str, x: int) -> tuple[int, int]:
    """The LP deposits `x` assets or mints `x` shares (a transaction); returns (assets paid, shares got)."""
    P, T = env.pool, env.token
    cost = x if kind == "deposit" else P.view("previewMint", x) * 101 // 100 + 1  # a block's funding of slack
    _, t0, s0, _, t1, s1 = env.batch_send(lp, [T("mint", lp, cost), T("balanceOf", lp), P("balanceOf", lp),
                                               P(kind, x, lp), T("balanceOf", lp), P("balanceOf", lp)])
    # "MUST emit the Deposit event"
    assert env.pool_events("Deposit") == [{"sender": lp, "owner": lp, "assets": t0 - t1, "shares": s1 - s0}]
    return t0 - t1, s1 - s0


def leave(env, lp: str, kind: str, x: int) -> tuple[int, int]:
    """The LP redeems `x` shares or withdraws `x` assets, in the head block's state (an eth_call: the last
    state the value was measured in); returns (assets got, shares burnt)."""
    P, T = env.pool, env.token
    t0, s0, _, t1, s1 = env.batch_call(lp, [T("balanceOf", lp), P("balanceOf", lp), P(kind, x, lp, lp),
                                            T("balanceOf", lp), P("balanceOf", lp)])
    return t1 - t0, s0 - s1


def exit_leg(env, lp: str, kind: str, paid: int, got: int) -> tuple[int, int] | None:
    """The exit of a round trip: redeem the shares got (or withdraw the assets paid), as far as max* allows."""
    if kind == "redeem":
        x = min(got, env.pool.view("maxRedeem", lp))
    else:
        x = min(paid, env.pool.view("maxWithdraw", lp))
    if x == 0:
        return None
    return leave(env, lp, kind, x)


def assert_not_profitable(paid: int, got: int, out_assets: int, burnt: int, gain: Fraction, what: str) -> None:
    """Per share, the exit pays at most what the entry cost plus the gain per share:
    out_assets / burnt <= (paid + gain) / got."""
    assert burnt > 0
    assert out_assets * got <= burnt * (paid + gain), (
        f"{what}: paid {paid} for {got} shares, got {out_assets} for {burnt} (gain from others {float(gain):.3f})")
    if burnt >= got and gain == 0:
        assert out_assets <= paid, what


ROUND_TRIPS = (("deposit", "redeem"), ("deposit", "withdraw"), ("mint", "redeem"), ("mint", "withdraw"))


def test_round_trip_in_one_block_is_never_profitable(env):
    """P4 (A1): in any state the steps reach, with the cooldown set to 0 and funding off (so the NAV does
    not move between the round trip's blocks: checked, the measured gain must be 0), an LP enters and
    leaves at once: deposit->redeem, deposit->withdraw, mint->redeem, mint->withdraw; the exit pays per
    share at most what the entry cost, and a whole round trip at most what was paid."""

    @fuzz(300)
    @given(steps=st.lists(STEPS, max_size=6), lp=LP, trip=st.sampled_from(ROUND_TRIPS),
           amount=st.one_of(st.integers(1, 10**6), st.integers(10**6, 10**14)))
    @timed("round trip in one block (P4)")
    def run(steps, lp, trip, amount):
        def body():
            for step in steps:
                env.apply(step)
            who = env.lps[lp]
            env.apply(("funding_off",))
            ps = PoolState(env)
            env.send(env.deployer, env.pool, "setPoolParams", (0, ps.window, ps.reserve_factor))
            into, out = trip
            x = amount if into == "deposit" else amount * OFFSET
            try:
                paid, got = enter(env, who, into, x)
            except Refused as e:
                STATS[f"P4 one block: entry refused ({e.name})"] += 1
                return
            meter = ValueMeter(env, got)
            env.observers.append(meter)
            env.batch_send(who, [env.pool("requestWithdraw", got)])
            env.observers.clear()
            assert meter.gain == 0, "the NAV moved between the blocks of the round trip"
            done = exit_leg(env, who, out, paid, got)
            if done is None:
                STATS["P4 one block: exit not allowed (max 0)"] += 1
                return
            assert_not_profitable(paid, got, *done, Fraction(0), f"{into}({x}) -> {out}")
            whole = done[1] >= got or done[0] >= paid
            STATS[f"P4 one block: {into} -> {out}" + (" (whole)" if whole else " (partial)")] += 1
        run_example(env, body)

    run()
    assert sum(v for k, v in STATS.items() if k.startswith("P4 one block: ") and "->" in k) >= examples(300) // 3


OTHERS = st.one_of(
    h.MARKET_EVENTS, h.GOVERNANCE, h.DONATIONS, h.TIME,
    st.tuples(st.just("deposit"), st.sampled_from([0, 2]), h.UNITS),
    st.tuples(st.just("request"), st.sampled_from([0, 2]), h.FRACTION),
    st.tuples(st.just("redeem"), st.sampled_from([0, 2]), h.FRACTION),
    st.tuples(st.just("withdraw"), st.sampled_from([0, 2]), h.FRACTION),
    st.tuples(st.just("transfer"), st.sampled_from([0, 2]), st.sampled_from([0, 2]), h.FRACTION),
).filter(lambda s: not (s[0] == "edge" and s[1] == 1))


def test_round_trip_across_the_cooldown_is_never_profitable(env):
    """P4 (A1, A7): LP 1 enters (deposit or mint), then other LPs, traders, donors, keepers, governance and
    time act (LP 1 does nothing), LP 1 requests its shares, waits out the cooldown (fresh feeds, and a few
    more TWAP windows while flows wait) and leaves (redeem or withdraw, as far as max* allows). Per share
    it gets at most what it paid plus the rises of its shares' value during the wait (measured after every
    block); when nothing raised them, at most what it paid."""

    @fuzz(300)
    @given(before=st.lists(STEPS, max_size=3), between=st.lists(OTHERS, max_size=6),
           trip=st.sampled_from(ROUND_TRIPS), amount=st.one_of(st.integers(1, 10**6), st.integers(10**6, 10**14)))
    @timed("round trip across the cooldown (P4)")
    def run(before, between, trip, amount):
        def body():
            for step in before:
                env.apply(step)
            who = env.lps[1]
            into, out = trip
            x = amount if into == "deposit" else amount * OFFSET
            try:
                paid, got = enter(env, who, into, x)
            except Refused as e:
                STATS[f"P4 across: entry refused ({e.name})"] += 1
                return
            meter = ValueMeter(env, got)
            env.observers.append(meter)
            for step in between:
                env.apply(step)
            try:
                env.batch_send(who, [env.pool("requestWithdraw", got)])
            except Refused as e:  # the shares are LP 1's; nothing in between may take them
                raise AssertionError(f"LP 1 cannot request the {got} shares it holds: {e}") from None
            unlock = env.pool.view("withdrawRequest", who)[1]
            env.goto(unlock, refresh=True)
            for _ in range(4):  # flows may wait (a gap's window, a vAMM out of band): give them time
                if not env.pool.view("lpFlowsSuspended")[0]:
                    break
                env.apply(("arbitrage", ETH))
                env.apply(("arbitrage", BTC))
                env.advance(901, refresh=True)
            env.observers.clear()
            done = exit_leg(env, who, out, paid, got)
            if done is None:
                STATS["P4 across: exit not allowed (max 0)"] += 1
                return
            assert_not_profitable(paid, got, *done, meter.gain, f"{into}({x}) -> {between} -> {out}")
            STATS[f"P4 across: {into} -> {out}" + (" (no gain between)" if meter.gain == 0 else " (gain between)")] += 1
        run_example(env, body)

    run()
    done = sum(v for k, v in STATS.items() if k.startswith("P4 across: ") and "->" in k)
    assert done >= examples(300) // 3, done


# ---------------------------------------------------------------------------- P5: allowances


def test_calls_for_an_owner_need_its_allowance_and_spend_it(env):
    """P5: LP 2 redeems/withdraws for LP 1 (whose request is matured): refused without an allowance (and
    with one short by a share), and with one it spends exactly the shares burnt (an infinite allowance is
    not spent), burns the owner's shares, uses the owner's request, pays the receiver and emits Withdraw. Deposits and
    mints without the token allowance are refused; with it they spend it and mint to the receiver."""

    @fuzz(200)
    @given(steps=st.lists(STEPS, max_size=4), kind=st.sampled_from(["redeem", "withdraw"]),
           allowance=st.sampled_from(["none", "short", "exact", "more", "infinite"]),
           fraction=st.sampled_from([0, 0.5, 1]), amount=st.integers(10**6, 10**13))
    @timed("allowances (P5)")
    def run(steps, kind, allowance, fraction, amount):
        def body():
            for step in steps:
                env.apply(step)
            # funding off: the shares a withdrawal burns, read before the approval's block, stay what the
            # call burns after it (the NAV does not move with time alone; checked in the batch below)
            env.apply(("funding_off",))
            owner, spender = env.lps[1], env.lps[2]
            P, T = env.pool, env.token
            check_deposit_allowance(env, spender, owner, amount)
            try:
                env.batch_send(owner, [T("mint", owner, amount), P("deposit", amount, owner)])
            except Refused:
                pass
            if env.shares(owner) == 0:
                STATS["P5 owner holds nothing"] += 1
                return
            env.batch_send(owner, [P("requestWithdraw", env.shares(owner))])
            env.goto(P.view("withdrawRequest", owner)[1], refresh=True)
            m = P.view(VIEW[kind], owner)
            if m == 0:
                STATS["P5 owner's max is 0"] += 1
                return
            x = max(1, int(m * fraction))
            burns = x if kind == "redeem" else P.view("previewWithdraw", x)
            if kind == "redeem" and P.view("previewRedeem", x) == 0:
                x = burns = m  # a redemption of dust is refused for its own reason (A4)
            given_ = {"none": 0, "short": burns - 1, "exact": burns, "more": burns + 12_345,
                      "infinite": MAX_UINT}[allowance]
            if given_:
                env.batch_send(owner, [P("approve", spender, given_)])
            receiver = env.stranger
            req0 = P.view("withdrawRequest", owner)[0]
            calls = [P("balanceOf", owner), T("balanceOf", receiver), P(kind, x, receiver, owner),
                     P("balanceOf", owner), T("balanceOf", receiver), P("allowance", owner, spender),
                     P("withdrawRequest", owner)]
            if kind == "withdraw":
                assert P.view("previewWithdraw", x) == burns, "the NAV moved with the approval's block"
            try:
                s0, t0, ret, s1, t1, left, req1 = env.batch_call(spender, calls)
            except Refused as e:
                assert given_ < burns, f"{kind}({x}) for the owner with allowance {given_} >= {burns} refused: {e}"
                assert e.name == "ERC20InsufficientAllowance", e
                assert (e.error_args[0].lower(), *e.error_args[1:]) == (spender, given_, burns), e
                STATS[f"P5 {kind} for an owner refused ({allowance} allowance)"] += 1
                return
            assert given_ >= burns, f"{kind}({x}) for the owner went through with allowance {given_} < {burns}"
            assert s0 - s1 == burns and req1[0] == req0 - burns, (s0, s1, burns, req0, req1)
            assert t1 - t0 == (ret if kind == "redeem" else x) and (ret == burns if kind == "withdraw" else True)
            assert left == (MAX_UINT if given_ == MAX_UINT else given_ - burns), (given_, burns, left)
            # the same call as a transaction: "MUST emit the Withdraw event" with what it did
            s0, t0, ret, s1, t1, _, _ = env.batch_send(spender, calls)
            assets, shares = (ret, s0 - s1) if kind == "redeem" else (t1 - t0, ret)
            assert env.pool_events("Withdraw") == [{"sender": spender, "receiver": receiver, "owner": owner,
                                                    "assets": assets, "shares": shares}]
            assert (t1 - t0, s0 - s1) == (assets, shares)
            STATS[f"P5 {kind} for an owner spends the allowance ({allowance})"] += 1
        run_example(env, body)

    run()
    assert STATS["P5 redeem for an owner refused (none allowance)"] > 0
    assert STATS["P5 withdraw for an owner spends the allowance (exact)"] > 0


def check_deposit_allowance(env, lp: str, receiver: str, amount: int) -> None:
    """Deposit and mint pull the assets by allowance: none (or one unit short) is refused; exactly enough
    goes through, mints to the receiver and leaves no allowance."""
    P, T = env.pool, env.token
    if P.view("maxDeposit", lp) < amount or P.view("previewDeposit", amount) == 0:
        return
    shares = P.view("previewDeposit", amount)
    for kind, x, cost in (("deposit", amount, amount), ("mint", shares, P.view("previewMint", shares))):
        if kind == "mint" and P.view("maxMint", lp) < shares:
            continue
        for short in (cost, 1):
            with pytest.raises(Refused) as e:
                env.batch_call(lp, [T("approve", P.address, cost - short), T("mint", lp, cost), P(kind, x, receiver)])
            assert e.value.name == "ERC20InsufficientAllowance", e.value
        _, _, r0, ret, r1, left = env.batch_call(lp, [T("approve", P.address, cost), T("mint", lp, cost),
                                                      P("balanceOf", receiver), P(kind, x, receiver),
                                                      P("balanceOf", receiver), T("allowance", lp, P.address)])
        assert r1 - r0 == (ret if kind == "deposit" else x) and left == 0, (kind, x, r0, r1, ret, left)
        STATS[f"P5 {kind} needs the token allowance and spends it"] += 1
