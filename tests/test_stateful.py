"""Stateful fuzz: a Hypothesis `RuleBasedStateMachine` over the whole protocol, checked against the
reference model (vperp.model) after every step and against TESTPLAN.md's invariants.

Actors (bundles): traders on cross (0) and isolated (1, 2) sub-accounts, an attacker pair that
trades against itself, a keeper, an LP, and every trader may also act as taker, keeper or LP.
Rules: deposit, withdraw, transferMargin, open, reduce/flip, close, lever up to the margin limit,
oracle steps and jumps (the index may also go to zero), time jumps, funding pokes, kick (the market
bestMarketToKick names, or a given one), take (partial, whole, dust, below minimum, at or past the
limit), redo, backstop, resolveBadDebt, LP deposit / requestWithdraw / redeem / withdraw, the AMM
controller's syncDepth and repeg (also after an index jump and time for the TWAPs to diverge), and the
attacker pair's round trip at a constant index.

After every step (chain_harness.Runner): reverts equal by error name and arguments, the trade and
liquidation events, and every view the step can have moved, to the wei. Then the invariants, on
the model (equal to the chain by the comparison just made):
- TESTPLAN 1: the Vault's token balance (as WAD) == sum of collateral + insurance fund + pool
  balance, exactly (every ledger move is zero-sum; a deficit would show as a shortfall).
- TESTPLAN 2 and the GMX v1 lesson: per market, long/short open interest == the sums over positions;
  the traders' net size == the vAMM's base moved since listing; the pool's aggregates (sum of open
  notionals, sum of funding bases) == the sums over positions; tradersPnl from aggregates == summed
  position by position (compared on chain too, through the pool's NAV view).
- TESTPLAN 4 and 13: the attacker pair's round trip at a constant index never ends with more
  collateral than it started with.
- TESTPLAN 6: |applied rate| <= the market's cap.
- TESTPLAN 8: every action other than an oracle move, a time jump or a liquidation step leaves the
  health (value - maintenance, at that step's timestamp) of every account it did not act on as it
  was or better.
- TESTPLAN 10 and 12: every auctioned part is backed by exactly the live auctions' sizes, with the
  position's sign, never more than the position; a finished auction leaves no auctioned size.
- TESTPLAN 14: live auction notional == the sum over live auctions, <= the global cap.
- TESTPLAN 15: the insurance fund only falls by the bad debt it pays; a resolved account is at zero.
- TESTPLAN 16: an LP withdrawal leaves the pool's NAV at or above its reserve for open interest.
- The AMM controller: a depth sync or a repeg leaves the pool's NAV unchanged at its timestamp (NAV
  values positions at the index; a repeg's cost is realized later, when positions close on the vAMM).

Profiles: CI (default) 8 runs x up to 30 rules; `VPERP_FUZZ=long` 200 runs x 60 steps (hours, on
either chain: add `--network ethereum:local:foundry` for Anvil). `VPERP_FUZZ_EXAMPLES=n` overrides.
The run prints steps/s and what was exercised.
"""
from __future__ import annotations

import copy
import os
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule,
                                 run_state_machine_as_test)

from chain_harness import (MARKETS, STATS, Runner, build_env, print_report, report_line, reset_stats,
                           step_and_compare)
from vperp.model import mul_wad_up, s_mul_wad_down

LONG = os.environ.get("VPERP_FUZZ", "").lower() == "long"
RUNS, STEPS = (200, 60) if LONG else (8, 30)
RUNS = int(os.environ.get("VPERP_FUZZ_EXAMPLES", RUNS))

TRADERS = (0, 1, 2)
ATTACKERS = (3, 4)
LP = 5
KEEPER = 6
WHALE = 7
PREFUND = {0: 200_000, 1: 50_000}
LIQUIDATION_OR_PRICE = {"oracle", "time", "kick", "take", "redo", "backstop"}

WARMUP = [("deposit", WHALE, 0, "normal", 10**12, 0), ("open", WHALE, 0, 1, 1, 2 * 10**7, "any", True),
          ("open", WHALE, 0, 2, -1, 10**7, "any", True), ("time", 1000), ("poke", 1), ("poke", 2),
          ("time", 1000), ("poke", 1), ("poke", 2)]


@pytest.fixture(scope="module")
def env(accounts, chain, project, request):
    e = build_env(accounts, chain, project, WHALE + 1, PREFUND, WARMUP)
    reset_stats()
    yield e
    print_report(request, report_line("long" if LONG else "ci", "stateful fuzz"))


markets = st.sampled_from(MARKETS)
sides = st.sampled_from([1, -1])
limit_modes = st.sampled_from(["any"] * 6 + ["exact", "tight"])
picks = st.integers(0, 3)


class Protocol(RuleBasedStateMachine):
    """One run: a snapshot of the warmed-up deployment, a copy of its model, rules until the run ends."""

    env = None  # set by the test before the machine runs

    accounts = Bundle("accounts")  # (trader, subaccount) of the traders
    attackers = Bundle("attackers")
    takers = Bundle("takers")  # accounts that take auctions (cross accounts of traders and the keeper)
    lps = Bundle("lps")

    def __init__(self):
        super().__init__()
        self.sid = self.env.chain.snapshot()
        self.runner = Runner(self.env, copy.deepcopy(self.env.base_model))
        self.started = time.perf_counter()
        self.insurance = self.runner.model.insurance_fund_wad
        self.bad_debts = len(self.runner.model.bad_debt)
        # The vAMM base reserve traders' net size is measured from: the listing reserve, re-based when
        # a depth sync rescales the reserves (it moves no position).
        self.x_ref = dict(self.env.x0)
        self.runner.compare((), MARKETS, full=True)

    def teardown(self):
        if os.environ.get("VPERP_FUZZ_TRACE"):
            print(self.runner.trace())
        try:
            self.runner.compare(self.runner.seen, MARKETS, full=True)
        finally:
            STATS["seconds"] += time.perf_counter() - self.started
            STATS["examples"] += 1
            self.env.chain.restore(self.sid)

    def do(self, step: tuple) -> None:
        kind = step[0]
        if kind in LIQUIDATION_OR_PRICE:
            step_and_compare(self.runner, step)
            return
        # TESTPLAN 8: at a constant index, an action lowers no other account's health. Health
        # (value - maintenance) of every account seen so far, evaluated at this step's timestamp
        # before and after it, so funding accrual between blocks does not enter.
        T = self.runner.next_timestamp()
        before = {a: self._health(a, T) for a in self.runner.seen}
        step_and_compare(self.runner, step)
        for a, h in before.items():
            if a not in self.runner.touched and h is not None:
                after = self._health(a, T)
                assert after is None or after >= h, f"{step} lowered the health of trader{a[0]}/{a[1]}: {h} -> {after}"

    def _health(self, a, T):
        try:
            value, _, _, maintenance = self.model._health(self.runner.addr[a[0]], a[1], T)
        except Exception:  # noqa: BLE001 - a stale or zero feed: no health to compare
            return None
        return value - maintenance

    @property
    def model(self):
        return self.runner.model

    # -------------------------------------------------------------- actors

    @initialize(target=accounts)
    def traders(self):
        return multiple(*[(t, sub) for t in TRADERS for sub in (0, 1, 2)])

    @initialize(target=attackers)
    def attacker_pair(self):
        return multiple(*ATTACKERS)

    @initialize(target=takers)
    def taker_accounts(self):
        return multiple((KEEPER, 0), *[(t, 0) for t in TRADERS])

    @initialize(target=lps)
    def liquidity_providers(self):
        return multiple(LP, TRADERS[0])

    # -------------------------------------------------------------- margin

    @rule(a=accounts, units=st.one_of(st.integers(10**9, 10**11), st.integers(0, 10)))
    def deposit(self, a, units):
        self.do(("deposit", a[0], a[1], "any", 0, units) if units else ("deposit", a[0], a[1], "zero", 0, 0))

    @rule(a=accounts, mode=st.sampled_from(["free", "all", "raw"]), delta=st.integers(-2, 2),
          raw=st.integers(0, 10**11))
    def withdraw(self, a, mode, delta, raw):
        self.do(("withdraw", a[0], a[1], mode, delta, raw))

    @rule(a=accounts, dst=st.sampled_from([0, 1, 2]), delta=st.integers(-2, 2))
    def transfer(self, a, dst, delta):
        self.do(("transfer", a[0], a[1], dst, "free", delta, 0))

    # -------------------------------------------------------------- trading

    @rule(a=accounts, market=markets, side=sides, ppb=st.one_of(st.integers(10**4, 5 * 10**6), st.integers(1, 3000)),
          limit=limit_modes)
    def open(self, a, market, side, ppb, limit):
        self.do(("open", a[0], a[1], market, side, ppb, limit, True))

    @rule(a=accounts, market=markets, pct=st.sampled_from([100, 50, 200, 1, 150]), limit=limit_modes)
    def reduce(self, a, market, pct, limit):
        self.do(("reduce", a[0], a[1], market, pct, limit))

    @rule(a=accounts, market=markets, limit=limit_modes)
    def close(self, a, market, limit):
        self.do(("close", a[0], a[1], market, limit, True))

    @rule(a=accounts, market=markets, side=sides, pct=st.sampled_from([100, 95, 60, 105]))
    def lever(self, a, market, side, pct):
        self.do(("lever", a[0], a[1], market, side, pct))

    # -------------------------------------------------------------- the world

    @rule(market=markets, bps=st.integers(-300, 300))
    def oracle_step(self, market, bps):
        self.do(("oracle", market, "step", bps, 0))

    @rule(market=markets, bps=st.one_of(st.integers(-4000, -600), st.integers(600, 4000)))
    def oracle_jump(self, market, bps):
        self.do(("oracle", market, "jump", 0, bps))

    @rule(market=markets)
    def oracle_meets_vamm(self, market):
        self.do(("oracle", market, "spot", 0, 0))

    @rule(market=markets)
    def oracle_zero(self, market):
        self.do(("oracle", market, "zero", 0, 0))

    @rule(seconds=st.one_of(st.integers(1, 120), st.integers(121, 1900), st.integers(1801, 4 * 3600)))
    def wait(self, seconds):
        self.do(("time", seconds))

    @rule(market=markets)
    def poke(self, market):
        self.do(("poke", market))

    # -------------------------------------------------------------- AMM controller

    @rule(market=markets)
    def sync_depth(self, market):
        self._amm(("syncdepth", market))

    @rule(market=markets)
    def repeg(self, market):
        self._amm(("repeg", market))

    @rule(market=markets, side=sides, bps=st.integers(100, 2000), wait=st.sampled_from([600, 1800, 3600, 7200]))
    def drift_and_repeg(self, market, side, bps, wait):
        """The index leaves the vAMM behind, the TWAPs diverge, the controller repegs."""
        self.do(("oracle", market, "jump", 0, side * bps))
        self.do(("time", wait))
        self._amm(("repeg", market))

    def _amm(self, step):
        """Depth and peg change the vAMM, never the pool's value: NAV values positions at the index
        (docs/pool.md), so at the step's own timestamp NAV is the same before and after."""
        T = self.runner.next_timestamp()
        try:
            before = self.model.pool_nav(T)
        except Exception:  # noqa: BLE001 - a stale or zero feed: NAV reverts, nothing to compare
            before = None
        mid = step[1]
        x_before = self.model.markets[mid].x
        self.do(step)
        if before is not None:
            assert self.model.pool_nav(T) == before, f"{step} changed the pool's NAV"
        # A depth sync rescales the base reserve and moves no position: re-base by what it moved (the
        # invariant then still proves that no position moved).
        self.x_ref[mid] += self.model.markets[mid].x - x_before

    # -------------------------------------------------------------- liquidation

    @rule(a=accounts, market=st.sampled_from([0, 0, 0, 1, 2]))
    def kick(self, a, market):
        self.do(("kick", KEEPER, a[0], a[1], market))

    @rule(a=accounts.filter(lambda a: a[1] < 2), market=markets, side=sides, bps=st.integers(700, 4000))
    def crash(self, a, market, side, bps):
        """The index meets the vAMM (so the band leaves room), the account levers up to its margin
        limit, the index moves against the position, the keeper kicks."""
        self.do(("oracle", market, "spot", 0, 0))
        self.do(("lever", a[0], a[1], market, side, 100))
        self.do(("oracle", market, "jump", 0, -side * bps))
        self.do(("kick", KEEPER, a[0], a[1], 0))

    # Liquidations need a levered account and an adverse move in a row: the same rule under two
    # more names makes Hypothesis pick it about three times as often as any single action.
    crash_again = rule(a=accounts.filter(lambda a: a[1] < 2), market=markets, side=sides,
                       bps=st.integers(700, 4000))(lambda self, **kw: self.crash(**kw))
    crash_deep = rule(a=accounts.filter(lambda a: a[1] < 2), market=markets, side=sides,
                      bps=st.integers(2500, 6000))(lambda self, **kw: self.crash(**kw))

    @rule(a=accounts.filter(lambda a: a[1] < 2), market=markets, side=sides, bps=st.integers(700, 3000),
          taker=takers, wait=st.sampled_from([1, 300, 900, 1700]),
          amount=st.sampled_from(["all", "all", "half", "min"]))
    def crash_and_take(self, a, market, side, bps, taker, wait, amount):
        """A crash, then a taker arrives while the discount grows."""
        self.crash(a, market, side, bps)
        self.do(("time", wait))
        self.do(("take", taker[0], taker[1], 0, amount, "any"))

    @precondition(lambda self: self.has_live_auction())
    @rule(pick=picks, redos=st.integers(1, 4))
    def auction_runs_out(self, pick, redos):
        """Nobody takes: the auction expires, is redone up to `redos` times, then backstopped."""
        for _ in range(redos):
            self.do(("time", 1801))
            self.do(("poke", 1))
            self.do(("poke", 2))
            self.do(("redo", KEEPER, pick))
        self.do(("time", 1801))
        self.do(("backstop", KEEPER, pick))

    def has_live_auction(self):
        return any(a.size for a in self.model.auctions.values())

    @precondition(has_live_auction)
    @rule(taker=takers, pick=picks, amount=st.sampled_from(["all", "all", "exact", "half", "min", "dust", "zero"]),
          limit=st.sampled_from(["any", "any", "exact", "tight"]))
    def take(self, taker, pick, amount, limit):
        self.do(("take", taker[0], taker[1], pick, amount, limit))

    @precondition(has_live_auction)
    @rule(pick=picks)
    def redo(self, pick):
        self.do(("redo", KEEPER, pick))

    @precondition(has_live_auction)
    @rule(pick=picks)
    def backstop(self, pick):
        self.do(("backstop", KEEPER, pick))

    @rule(a=accounts)
    def resolve_bad_debt(self, a):
        self.do(("baddebt", KEEPER, a[0], a[1]))

    # -------------------------------------------------------------- pool

    @rule(lp=lps, units=st.one_of(st.integers(10**6, 10**12), st.integers(0, 10)))
    def lp_deposit(self, lp, units):
        self.do(("lpdeposit", lp, units))

    @rule(lp=lps, pct=st.sampled_from([100, 50, -1, 101, 0]))
    def lp_request(self, lp, pct):
        self.do(("lprequest", lp, pct))

    @rule(lp=lps, pct=st.sampled_from([100, 50, -1, 0]))
    def lp_redeem(self, lp, pct):
        self._lp_exit(("lpredeem", lp, pct))

    @rule(lp=lps, pct=st.sampled_from([100, 50, -1]))
    def lp_withdraw(self, lp, pct):
        self._lp_exit(("lpwithdraw", lp, pct))

    def _lp_exit(self, step):
        """TESTPLAN 16: a withdrawal that went through left NAV >= reserve."""
        before = self.model.pool_supply
        self.do(step)
        if self.model.pool_supply < before:
            now = self.runner.w3.eth.get_block("latest")["timestamp"]
            pnl, exposure = self.model.traders_pnl(now)
            reserve = mul_wad_up(exposure, self.model.pool_reserve_factor)
            assert self.model.pool_balance_wad - pnl >= reserve, "an LP exit went below the reserve"

    # -------------------------------------------------------------- attacker pair (TESTPLAN 4, 13)

    @rule(pair=attackers, market=markets, side=sides, ppb=st.integers(10**5, 3 * 10**7))
    def attacker_round_trip(self, pair, market, side, ppb):
        """One attacker pushes the vAMM, the other takes the other side, both close; the index does
        not move. Together they never end with more than they started with."""
        a, b = ATTACKERS if pair == ATTACKERS[0] else ATTACKERS[::-1]
        owners = [self.runner.addr[a], self.runner.addr[b]]
        before = sum(self.model.collateral(o, 0) for o in owners)
        held = any(self.model.open_markets(o, 0) for o in owners)
        self.do(("open", a, 0, market, side, ppb, "any", True))
        self.do(("open", b, 0, market, -side, ppb, "any", True))
        self.do(("close", a, 0, market, "any", True))
        self.do(("close", b, 0, market, "any", True))
        if not held and not any(self.model.open_markets(o, 0) for o in owners):
            after = sum(self.model.collateral(o, 0) for o in owners)
            assert after <= before, f"attacker pair gained {after - before} wei at a constant index"

    # -------------------------------------------------------------- invariants

    @invariant()
    def ledger_is_fully_backed(self):
        m = self.model
        assert m.token_balance * m.token_scale == m.total_claims(), "Vault token balance != sum of claims"

    @invariant()
    def aggregates_equal_sums_over_positions(self):
        m = self.model
        for mid, mk in m.markets.items():
            ps = [p for (k, p) in m.positions.items() if k[0] == mid]
            assert mk.long_open_interest == sum(p.size for p in ps if p.size > 0)
            assert mk.short_open_interest == -sum(p.size for p in ps if p.size < 0)
            assert sum(p.size for p in ps) == self.x_ref[mid] - mk.x, "traders' net size != vAMM base moved"
            assert mk.sum_open_notional == sum(p.open_notional for p in ps)
            assert mk.sum_funding_basis == sum(s_mul_wad_down(p.size, p.last_cumulative_funding) for p in ps)
            assert abs(mk.rate) <= mk.funding_params.max_funding_rate

    @invariant()
    def auctions_back_auctioned_sizes(self):
        m = self.model
        live: dict[tuple, int] = {}
        for a in m.auctions.values():
            if a.size:
                key = (a.market_id, a.owner, a.subaccount)
                live[key] = live.get(key, 0) + a.size
        for key, p in m.positions.items():
            assert p.auctioned == live.get(key, 0), f"auctioned {p.auctioned} != live auctions {live.get(key, 0)}"
            if p.auctioned:
                assert (p.auctioned > 0) == (p.size > 0) and abs(p.auctioned) <= abs(p.size)
        assert all(k in m.positions for k in live)
        total = sum(mul_wad_up(abs(a.size), a.start_index) for a in m.auctions.values() if a.size)
        assert m.live_notional == total <= m.liquidation_params.max_auction_notional

    @invariant()
    def insurance_only_pays_bad_debt(self):
        m = self.model
        new = m.bad_debt[self.bad_debts:]
        paid = sum(entry[3] for entry in new)
        assert m.insurance_fund_wad >= self.insurance - paid, "the insurance fund fell by more than bad debt"
        for owner, sub, *_ in new:
            acct = m.accounts[(owner, sub)]
            assert acct.collateral >= 0 or acct.open_markets, "a resolved account was left negative"
        self.insurance, self.bad_debts = m.insurance_fund_wad, len(m.bad_debt)


def test_protocol_state_machine(env):
    Protocol.env = env
    run_state_machine_as_test(
        Protocol,
        settings=settings(
            max_examples=RUNS,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[p for p in Phase if p != Phase.shrink or os.environ.get("VPERP_FUZZ_SHRINK", "1") != "0"],
            print_blob=True,
        ),
    )
    assert STATS["steps"] > 0
