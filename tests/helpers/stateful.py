"""The stateful fuzz's machine (tests/model/test_stateful.py; the fast tier, tests/fast/test_fast_stateful.py, runs
it on the fast chain by swapping `Runner`): `Protocol`, its exploit properties (`PROPS`), the profile's sizes,
and the scripted exploit attempts (`SCRIPTS`, `run_script`)."""
from __future__ import annotations

import copy
import os
import time

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, precondition, rule

from helpers.chain_harness import (MARKETS, MAX_UINT, REDUCE_REFUSALS, STATS, WAD, Runner, _encode, _model_error,
                                   step_and_compare, view_call)
from vperp.model import Cancelled, ModelRevert, Redone, exit_value, mul_wad_up, s_mul_wad_down

LONG = os.environ.get("VPERP_FUZZ", "").lower() == "long"
# CI: a smoke layer on the real client: one drawn run and three of the fixed scripts (SMOKE_SCRIPTS); the fast
# tier's machine runs thousands of steps and every script (tests/fast/test_fast_stateful.py).
RUNS, STEPS = (200, 60) if LONG else (1, 30)
RUNS = int(os.environ.get("VPERP_FUZZ_EXAMPLES", RUNS))

TRADERS = (0, 1, 2)
ATTACKERS = (3, 4)
LP = 5
KEEPER = 6
WHALE = 7
PREFUND = {0: 200_000, 1: 50_000}
LIQUIDATION_OR_PRICE = {"oracle", "time", "kick", "take", "redo", "backstop", "cancel"}
TRADES = {"open", "reduce", "close", "lever"}
NAV_WEI = 4  # rounding a trade may move the pool's NAV by beyond its fee [wei] (F3)
REPEG_WEI = 2  # what a repeg may move the pool's NAV by beyond its booked cost [wei] (the identity is exact)
FILL_WEI = 10  # rounding per fill a bad debt may exceed its recorded shortfall by [wei] (F1, F4)
# How often each exploit property was exercised (printed with the fuzz figures).
PROPS = {"F1 withdrawals in auction": 0, "F1/F4 bad debts within estimate": 0, "F2 sandwiches": 0,
         "F3 trades": 0, "F4 gap exits": 0, "F4 deposits priced before the set-aside": 0,
         "F4 credits lowering estimates": 0, "F4 releases after a deposit": 0, "F4 trades back after a gap": 0,
         "F5 kicks/redos": 0, "F5 backstop cancels": 0, "F7 close probes": 0,
         "F7 closes refused below maintenance": 0, "F8 max probes": 0, "repegs at -cost": 0}

WARMUP = [("deposit", WHALE, 0, "normal", 10**12, 0), ("open", WHALE, 0, 1, 1, 2 * 10**7, "any", True),
          ("open", WHALE, 0, 2, -1, 10**7, "any", True), ("time", 1000), ("poke", 1), ("poke", 2),
          ("time", 1000), ("poke", 1), ("poke", 2)]


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
        self.bounties = len(self.runner.model.keeper_bounties)
        # The vAMM base reserve traders' net size is measured from: the listing reserve, re-based when
        # a depth sync rescales the reserves (it moves no position).
        self.x_ref = dict(self.env.x0)
        # F1/F4: per account in liquidation, what the engine last recorded (see `_track_shortfalls`).
        self.records: dict[tuple, dict] = {}
        # Funding: per market, the total variation of the funding index sampled at every step.
        now = self.now()
        self.cf_last = {mid: self.model._cumulative_funding_now(mk, now) for mid, mk in self.model.markets.items()}
        self.tv = {mid: 0 for mid in self.model.markets}
        self.turn = 0  # F7's rotation over the free positions
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

    def now(self) -> int:
        return self.runner.w3.eth.get_block("latest")["timestamp"]

    def do(self, step: tuple) -> None:
        kind = step[0]
        if kind == "time":
            step_and_compare(self.runner, step)
            return
        T = self.runner.next_timestamp()
        pre = self._before(step, T)
        if kind in LIQUIDATION_OR_PRICE:
            step_and_compare(self.runner, step)
        else:
            # Invariant 8 (docs/specification.md): at a constant index, an action lowers no other account's
            # health. Health (value - maintenance) of every account seen so far, evaluated at this step's
            # timestamp before and after it, so funding accrual between blocks does not enter. The one exception
            # by rule: a depth sync charges the net side its exit change through the funding index, so an account
            # on the paying side may lose exactly its share of the charge (at most half a taker fee of the price
            # per unit of base), rounded up, and nothing more.
            before = {a: self._health(a, T) for a in self.runner.seen}
            step_and_compare(self.runner, step)
            charged = self._depth_charge_shares(step)
            for a, h in before.items():
                if a not in self.runner.touched and h is not None:
                    after = self._health(a, T)
                    allowed = charged.get(a, 0)
                    assert after is None or after >= h - allowed, (
                        f"{step} lowered the health of trader{a[0]}/{a[1]}: {h} -> {after} (charge share {allowed})")
        self._after(step, T, pre)

    # -------------------------------------------------------------- per-step exploit properties

    def _owner_of(self, step: tuple):
        """The (trader, sub) account a kick/redo/take/backstop/cancel step liquidates, if any."""
        kind = step[0]
        if kind == "kick":
            return step[2], step[3]
        if kind in ("redo", "take", "backstop", "cancel"):
            a = self.model.auctions.get(self.runner._live_auction(step[{"take": 3}.get(kind, 2)]))
            if a is not None:
                return self.runner.addr.index(a.owner), a.subaccount
        return None

    def _state(self, acct, T):
        try:
            return self.model.liquidation_state(self.runner.addr[acct[0]], acct[1], T)
        except ModelRevert:  # a stale or zero feed
            return None

    def _before(self, step: tuple, T: int) -> dict:
        m = self.model
        pre = {"nav": m.pool_nav(T), "uncovered": m.uncovered_bad_debt(), "bad_debts": len(m.bad_debt),
               "shortfalls": len(m.shortfall_log), "owner": self._owner_of(step)}
        if step[0] in ("kick", "redo", "backstop") and pre["owner"] is not None:
            pre["state"] = self._state(pre["owner"], T)
            pre["auction"] = self.runner._live_auction(step[2]) if step[0] != "kick" else m.auction_count + 1
            pre["reserves"] = {mid: (mk.x, mk.y) for mid, mk in m.markets.items()}
            pre["insurance"] = m.insurance_fund_wad
        if step[0] in ("deposit", "transfer"):
            # The account credited, its estimate before, and the WAD the step credits if it goes through.
            t, sub = (step[1], step[2]) if step[0] == "deposit" else (step[1], step[3])
            pre["credited"] = (t, sub, m.shortfall_of(self.runner.addr[t], sub))
        if step[0] in ("lpdeposit", "lpmint"):
            v = m.traders_exit_pnl(T)
            pre["pricing"] = (max(0, m.pool_balance_wad - v[0]) // m.token_scale, m.pool_supply)
        return pre

    def _after(self, step: tuple, T: int, pre: dict) -> None:
        m, kind, ok = self.model, step[0], self.runner.last_error is None
        result = self.runner.last_result
        if ok and kind in TRADES:
            # F3: a trade moves NAV by the fee it pays the pool only (and, while the estimates exceed the
            # insurance fund, by the insurance part it adds to what covers them), within rounding.
            drift = m.pool_nav(T) - pre["nav"] - (result.fee - result.to_insurance) - min(result.to_insurance,
                                                                                           pre["uncovered"])
            assert -NAV_WEI <= drift <= NAV_WEI, f"{step} moved the pool's NAV by {drift} wei beyond its fee"
            PROPS["F3 trades"] += 1
        if ok and kind in ("kick", "redo") and pre.get("state") is not None:
            self._check_costs_capped(kind, pre, result, T)
        if ok and kind == "backstop" and isinstance(result, Cancelled):
            # F5: a backstop cancels only a recovered account's auction (its health read as redo reads it),
            # closing nothing: value >= targetHealth x (free maintenance + auctioned backing), vAMMs untouched.
            value, maintenance, _, am = pre["state"]
            lp = m.liquidation_params
            assert result.requirement == mul_wad_up(maintenance + am, lp.target_health) <= value == result.value
            assert {mid: (mk.x, mk.y) for mid, mk in m.markets.items()} == pre["reserves"], "a cancelling backstop traded"
            PROPS["F5 backstop cancels"] += 1
        if ok and kind in ("deposit", "transfer") and pre["credited"][2]:
            # Collateral credited to an account in liquidation lowers its estimate one for one (floor 0).
            t, sub, before = pre["credited"]
            credit = result  # the WAD credited (deposit, transferMargin)
            after = m.shortfall_of(self.runner.addr[t], sub)
            assert after == max(0, before - credit), f"{step}: estimate {before} -> {after}, credited {credit}"
            PROPS["F4 credits lowering estimates"] += 1
        if ok and kind in ("lpdeposit", "lpmint"):
            # F4: deposits and mints are priced before the bad-debt set-aside (depositAssets), from first
            # principles: shares = floor(assets (supply + 1e6) / (depositAssets + 1)), a mint's assets the
            # ceiling of the inverse.
            deposit_assets, supply = pre["pricing"]
            if kind == "lpdeposit":
                assert result == step[2] * (supply + 10**6) // (deposit_assets + 1)
            else:
                assert result == -(-step[2] * (deposit_assets + 1) // (supply + 10**6))
            PROPS["F4 deposits priced before the set-aside"] += 1
        if ok and kind in ("withdraw", "transfer"):
            # F1: what an account in auction may withdraw or move leaves its auctioned parts' backing.
            acct = (step[1], step[2])
            state = self._state(acct, T)
            if state is not None and state[3]:
                assert state[0] >= state[3], f"{step} left value {state[0]} below the auctioned backing {state[3]}"
                PROPS["F1 withdrawals in auction"] += 1
        self._track_shortfalls(step, pre, ok)

    def _check_costs_capped(self, kind, pre: dict, result, T: int) -> None:
        """F5: at the step's index, a kick's reward and penalty and a redo's tip come out of the room the
        account keeps after the worst fill of its auctions: they never take it below zero, and an account
        already below it pays nothing (its shortfall is the room's deficit)."""
        m = self.model
        value0, _, an0, _ = pre["state"]
        owner = self.runner.addr[pre["owner"][0]], pre["owner"][1]
        value1, _, an1, _ = m.liquidation_state(*owner, T)
        md = m._auction_params_of(m.auctions[pre["auction"]].market_id).max_discount
        if kind == "kick":
            _, s = result
            room0 = value0 - mul_wad_up(an0 + s.notional, md)
            assert value1 == value0 - s.keeper_reward - s.penalty
            # The keeper of an account that pays it nothing gets a bounty from the insurance fund instead.
            lp = m.liquidation_params
            bounty = min(mul_wad_up(s.notional, lp.chip), lp.max_keeper_reward, pre["insurance"])
            assert s.bounty == (bounty if s.keeper_reward == 0 else 0), f"kick bounty {s.bounty}, expected {bounty}"
        elif isinstance(result, Redone):
            room0 = value0 - mul_wad_up(an0, md)
            assert value1 == value0 - result.tip and an1 == an0
        else:  # a cancelled redo: nobody is paid
            assert isinstance(result, Cancelled) and value1 == value0 >= result.requirement
            return
        if room0 >= 0:
            assert value1 - mul_wad_up(an1, md) >= 0, f"{kind} costs created bad debt: room {room0}"
            assert m.shortfall_of(*owner) == 0
        else:
            assert value1 == value0, f"{kind} charged an account already short of its worst fill"
            assert m.shortfall_of(*owner) == -room0
        PROPS["F5 kicks/redos"] += 1

    def _track_shortfalls(self, step: tuple, pre: dict, ok: bool) -> None:
        """F1 (the insurance fund pays no more than recorded) and F4 (the pool pays no more than NAV set
        aside): a bad debt resolved at the index of the engine's last record for the account exceeds that
        record by no more than the funding the account's positions paid since (and a few wei per fill);
        the pool's part exceeds the uncovered estimate NAV held by no more than that either."""
        m, kind = self.model, step[0]
        now = self.now()
        for mid, mk in m.markets.items():
            cf = m._cumulative_funding_now(mk, now)
            self.tv[mid] += abs(cf - self.cf_last[mid])
            self.cf_last[mid] = cf
        if not ok:
            return
        owner = pre["owner"]
        addr = {a: i for i, a in enumerate(self.runner.addr)}
        # The account's own trades and fills as a taker (a loss at the vAMM, or more size), and index moves,
        # end a record; its withdrawals do not: what F1 is about is that they cannot take the backing.
        if kind in TRADES or kind == "take":
            self.records.pop((step[1], step[2]), None)
        if kind == "oracle":
            for acct, rec in list(self.records.items()):
                if step[1] in rec["index"] and self._index_or_none(step[1], now) != rec["index"][step[1]]:
                    del self.records[acct]
        if owner is not None and owner in self.records:
            self.records[owner]["fills"] += kind in ("take", "backstop")
        for o, sub, debt, from_insurance, from_pool in m.bad_debt[pre["bad_debts"]:]:
            rec = self.records.get((addr.get(o), sub))
            if rec is None:
                continue
            slack = FILL_WEI * (rec["fills"] + 1) + sum(
                size * (self.tv[mid] - rec["tv"][mid]) // WAD + 2 for mid, size in rec["size"].items())
            assert debt <= rec["shortfall"] + slack, (
                f"bad debt {debt} beyond the shortfall {rec['shortfall']} recorded at an unchanged index (slack {slack})")
            assert from_pool <= pre["uncovered"] + slack, (
                f"the pool paid {from_pool}, NAV had set aside {pre['uncovered']} (slack {slack})")
            PROPS["F1/F4 bad debts within estimate"] += 1
        latest = {}
        for o, sub, shortfall, _ in m.shortfall_log[pre["shortfalls"]:]:
            latest[(addr.get(o), sub)] = shortfall
        for acct, shortfall in latest.items():
            o, sub = self.runner.addr[acct[0]], acct[1]
            held = [mid for mid in m.markets if m.open_markets(o, sub) >> (mid - 1) & 1]
            index = {mid: self._index_or_none(mid, now) for mid in held}
            if None in index.values():
                self.records.pop(acct, None)
                continue
            self.records[acct] = {"shortfall": shortfall, "index": index, "tv": dict(self.tv), "fills": 0,
                                  "size": {mid: abs(m._position(mid, o, sub).size) for mid in held}}

    def _index_or_none(self, mid: int, now: int):
        try:
            return self.model.index_price(mid, now)
        except ModelRevert:
            return None

    def _depth_charge_shares(self, step: tuple) -> dict:
        """What a successful syncdepth step's charge takes from each paying account [wad], rounded up."""
        if step[0] != "syncdepth" or self.runner.last_error is not None:
            return {}
        mid = step[1]
        _, charge = self.model.last_depth_charge.get(mid, (0, 0))
        shares = {}
        for a in self.runner.seen:
            size = self.model._position(mid, self.runner.addr[a[0]], a[1]).size
            if size * charge > 0:
                shares[a] = -((-abs(size) * abs(charge)) // WAD) + 1
        return shares

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
        """Depth and peg move the vAMM, and with it the exit value of the open positions that the pool's
        NAV subtracts: a depth sync moves NAV by exactly minus the cost it books (DepthSyncCost), a
        deepening one by at most min(maxDepthCost x NAV, takerFee x maxSpread x quote reserve), a
        shrinking one never down; a repeg by exactly minus the cost it books (Repeg, repegCost: the change
        of the net position's exit value, within REPEG_WEI), |cost| within maxRepegCost x NAV (for a net
        short plus the price's truncation, y0 - x price0 < x / 1e18 wei of quote levered by n / (x - n))."""
        T = self.runner.next_timestamp()
        mid = step[1]
        m = self.model
        mk = m.markets[mid]
        nav0, x0, y0 = m.pool_nav(T), mk.x, mk.y
        net = mk.long_open_interest - mk.short_open_interest
        booked0 = m.repeg_cost.get(mid, 0)
        self.do(step)
        result = self.runner.last_result
        mk = m.markets[mid]
        if self.runner.last_error is None:
            nav1 = m.pool_nav(T)
            p = m.amm_params[mid]
            if step[0] == "syncdepth":
                _, y1, cost, _ = result
                assert nav1 == nav0 - cost, f"{step} moved NAV by {nav1 - nav0}, booked cost {cost}"
                exit_change, _ = m.last_depth_charge[mid]
                assert cost <= 0, f"{step} cost the pool {cost}: the charge must hand it all back"
                if y1 > y0:
                    budget = min(nav0 * p.max_depth_cost // WAD, y0 * mk.taker_fee // WAD * mk.max_spread // WAD,
                                 abs(net) * y0 // x0 * (mk.taker_fee // 2) // WAD)
                    assert exit_change <= budget + 2, f"{step} moved {exit_change} of exit value, budget {budget}"
            else:
                _, cost = result
                moved = nav0 - nav1  # what the pool lost
                assert abs(moved - cost) <= REPEG_WEI, f"{step}: NAV fell by {moved}, booked cost {cost}"
                assert cost == exit_value(x0, mk.y, net) - exit_value(x0, y0, net)
                assert m.repeg_cost[mid] == booked0 + cost
                n = abs(net)
                budget = max(nav0, 0) * p.max_repeg_cost // WAD
                slack = 1 if net >= 0 else (x0 // WAD + 2) * n // (x0 - n) + 2
                assert abs(cost) <= budget + slack, f"{step}: cost {cost} beyond the budget {budget}"
                PROPS["repegs at -cost"] += 1
        # A depth sync rescales the base reserve and moves no position: re-base by what it moved (the
        # invariant then still proves that no position moved).
        self.x_ref[mid] += self.model.markets[mid].x - x0

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

    @precondition(lambda self: self.has_live_auction())
    @rule(pick=picks, units=st.sampled_from([10**10, 10**11]))
    def runs_out_then_recovers(self, pick, units):
        """The auction is redone until none remain; before the backstop the owner tops up (lowering its
        estimate one for one): a recovered account's backstop cancels the auction, closing nothing (F5)."""
        auction_id = self.runner._live_auction(pick)
        a = self.model.auctions[auction_id]
        for _ in range(self.model.liquidation_params.max_redos - a.redos):
            self.do(("time", 1801))
            self.do(("poke", 1))
            self.do(("poke", 2))
            self.do(("redo", KEEPER, pick))
        if self.model.auctions[auction_id].size == 0:
            return
        pick = sorted(i for i, au in self.model.auctions.items() if au.size).index(auction_id)
        self.do(("time", 1801))
        self.do(("deposit", self.runner.addr.index(a.owner), a.subaccount, "any", 0, units))
        self.do(("backstop", KEEPER, pick))

    @precondition(has_live_auction)
    @rule(taker=takers, pick=picks,
          amount=st.sampled_from(["all", "all", "exact", "half", "min", "below", "dust", "zero"]),
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

    @precondition(has_live_auction)
    @rule(pick=picks, units=st.sampled_from([0, 10**9, 10**10, 10**11]))
    def recover_and_cancel(self, pick, units):
        """The owner of an auctioned account adds margin (maybe none), then anyone cancels its auction
        (refused while the account still needs it)."""
        a = self.model.auctions[self.runner._live_auction(pick)]
        if units:
            self.do(("deposit", self.runner.addr.index(a.owner), a.subaccount, "any", 0, units))
        self.do(("cancel", KEEPER, pick))

    # -------------------------------------------------------------- exploits of the value-safety review

    @precondition(has_live_auction)
    @rule(pick=picks, units=st.sampled_from([0, 10**9, 10**10, 10**11]), dst=st.sampled_from([0, 1, 2]))
    def withdraw_in_auction(self, pick, units, dst):
        """F1: an account in auction (maybe after a deposit) withdraws all it may, then moves what is left
        free to another sub-account; each leaves its value at or above its auctioned parts' backing
        (checked in `_after`), and the bad debt its auctions leave stays within the recorded estimate."""
        a = self.model.auctions[self.runner._live_auction(pick)]
        t, sub = self.runner.addr.index(a.owner), a.subaccount
        if units:
            self.do(("deposit", t, sub, "any", 0, units))
        self.do(("withdraw", t, sub, "free", 0, 0))
        if dst != sub:
            self.do(("transfer", t, sub, dst, "free", 0, 0))

    @rule(pair=attackers, market=markets, side=sides, ppb=st.integers(10**5, 3 * 10**7),
          units=st.sampled_from([0, 10**12, 5 * 10**12]))
    def sandwich_depth_sync(self, pair, market, side, ppb, units):
        """F2: an LP deposit makes the target depth deeper; an attacker opens, the depth syncs (the interval
        has passed), the attacker closes, in consecutive blocks at one index. It never gains: collateral
        after <= before, the funding settled on the close aside."""
        t = pair
        owner = self.runner.addr[t]
        held = self.model._position(market, owner, 0).size != 0
        self.do(("time", 3601))
        if units:
            self.do(("lpdeposit", LP, units))
        before = self.model.collateral(owner, 0)
        self.do(("open", t, 0, market, side, ppb, "any", True))
        self._amm(("syncdepth", market))
        T = self.runner.next_timestamp()
        funding = self.model.position(owner, 0, market, T)[2] if self.model.open_markets(owner, 0) else 0
        self.do(("close", t, 0, market, "any", True))
        if not held and self.model._position(market, owner, 0).size == 0:
            gain = self.model.collateral(owner, 0) - before + funding
            assert gain <= 0, f"a sandwich around syncDepth gained {gain} wei"
            PROPS["F2 sandwiches"] += 1

    def _untrusted_notional(self, T: int) -> int:
        """F4's gap, from first principles: the gross open interest (at the vAMM price, rounded up) of the
        markets whose index cannot be trusted at T: a stale or zero feed; a vAMM outside its band around the
        index; an index more than the band away from the last one the market accrued at; a block that found
        a gap (the vAMM in its band around the old index, out around the new one) less than a TWAP window
        ago."""
        gap = 0
        for mk in self.model.markets.values():
            index = self._index_or_none(mk.id, T)
            oi = mk.long_open_interest + mk.short_open_interest
            if not oi:
                continue
            last = mk.last_index_price
            if (index is None or abs(mk.spot - index) > index * mk.max_spread // WAD
                    or abs(index - last) > last * mk.max_spread // WAD or T < mk.last_dislocation + mk.twap_window):
                gap += -((-oi * mk.spot) // WAD)
        return gap

    def _probe_lp_deposit(self, lp: int, T: int, gap: int) -> None:
        """F4: an LP deposit (eth_call on the head block, the model at the head's time) is refused with
        LpFlowsSuspended while `gap` exceeds the tolerance, 0.1 % of the pool's cash."""
        r, m = self.runner, self.model
        now = self.now()
        o = r.addr[lp]
        ok, out = r.probe(o, r.pool, _encode("deposit(uint256,address)", [10**9, o]))
        if gap > max(m.pool_balance_wad, 0) // 1000:
            assert not ok and out[0] == "LpFlowsSuspended", f"an LP deposit went through during a gap: {out}"
        trial = copy.deepcopy(m)
        try:
            trial.pool_deposit(o, 10**9, o, now)
            expected = (True,)
        except ModelRevert as e:
            expected = (False, e.name)
        assert (ok,) == expected[:1] and (ok or out[0] == expected[1]), f"deposit probe: chain {out}, model {expected}"

    @rule(lp=lps, a=accounts.filter(lambda a: a[1] < 2), market=markets, side=sides, bps=st.integers(1100, 3000))
    def gap_lp_exit(self, lp, a, market, side, bps):
        """F4: an LP's withdrawal matures; an account levers up and the index gaps past the band; the LP
        redeems before any keeper has acted. While the gap's open interest exceeds the tolerance the
        redemption (and a deposit, probed) is refused; if it goes through, it pays no more than its
        shares' part of NAV net of the uncovered bad-debt estimate."""
        if not self.model.pool_balance_of(self.runner.addr[lp]):
            self.do(("lpdeposit", lp, 10**10))
        self.do(("lprequest", lp, 50))
        self.do(("time", 86_400))
        for mid in MARKETS:  # the feeds would be stale a day later
            self.do(("oracle", mid, "same", 0, 0))
        self.do(("oracle", market, "spot", 0, 0))
        self.do(("lever", a[0], a[1], market, side, 100))
        self.do(("oracle", market, "jump", 0, -side * bps))
        m = self.model
        T = self.runner.next_timestamp()
        owner = self.runner.addr[lp]
        r = m.pool_requests.get(owner)
        shares = r.shares if r else 0
        gap = self._untrusted_notional(T)
        nav, supply, cash = m.pool_nav(T), m.pool_supply, m.pool_balance_wad
        balance = m.token_balance
        self.do(("lpredeem", lp, 100))
        paid = balance - m.token_balance
        if shares and gap > max(cash, 0) // 1000:
            assert paid == 0 and self.runner.last_error is not None, "an LP exited during a gap"
            assert self.runner.last_error[0] == "LpFlowsSuspended", self.runner.last_error
        elif paid:
            assert paid * m.token_scale <= max(nav, 0) * shares // supply + m.token_scale
        self._probe_lp_deposit(lp, self.now(), self._untrusted_notional(self.now()))
        PROPS["F4 gap exits"] += 1

    def _trade_to_index(self, trader: int, market: int, index: int):
        """`trader` (funded with 1M more) trades the vAMM to `index` in one block: the block's time when
        the trade went through, else None."""
        import math
        self.do(("deposit", trader, 0, "any", 0, 10**12))
        mk = self.model.markets[market]
        T = self.runner.next_timestamp()
        base = mk.x - math.isqrt(mk.x * mk.y * WAD // index)  # > 0: buy up to the index, < 0: sell down to it
        ppb = abs(base) * 10**9 // self.env.x0[market]
        if ppb == 0:
            return None
        self.do(("open", trader, 0, market, 1 if base > 0 else -1, ppb, "any", True))
        return T if self.runner.last_error is None else None

    @rule(a=accounts.filter(lambda a: a[1] < 2), market=markets, side=sides, bps=st.integers(800, 960),
          credit=st.sampled_from([1, 10**8, 10**9]), via=st.sampled_from(["deposit", "transfer"]),
          release=st.sampled_from(["topup", "cancel", "take"]), lp_units=st.sampled_from([10**9, 10**11]))
    def credit_then_release(self, a, market, side, bps, credit, via, release, lp_units):
        """F4 (i): an account kicked short of its worst fill gets `credit` token units of collateral, by a
        deposit or a margin transfer from its other sub-account: its estimate falls one for one (checked in
        `_after`). Once LP flows are open (an attacker trades the vAMM back to the index and a TWAP window
        passes, if the crash left it out of its band) an LP deposits, priced on depositAssets (before the
        set-aside); then the set-aside is released (the owner tops up, maybe then a cancel; or a taker
        takes it all). The LP's new shares are worth no more than it paid, up to what the same shares
        gained over the same time without the release (funding) and a token unit."""
        self.crash(a, market, side, bps)
        m, r = self.model, self.runner
        t, sub = a
        owner = r.addr[t]
        live = [i for i, au in m.auctions.items() if au.size and (au.owner, au.subaccount) == (owner, sub)]
        if not live or not m.shortfall_of(owner, sub):
            return
        if via == "deposit":
            self.do(("deposit", t, sub, "any", 0, credit))
        else:
            self.do(("transfer", t, 1 - sub, sub, "raw", 0, credit * m.token_scale))
        if m.lp_flows_suspended(r.next_timestamp())[0]:
            index = self._index_or_none(market, r.next_timestamp())
            if index is None or self._trade_to_index(ATTACKERS[0], market, index) is None:
                return
            self.do(("time", m.markets[market].twap_window))
            self.do(("poke", market))
            if m.lp_flows_suspended(r.next_timestamp())[0] or not m.shortfall_of(owner, sub):
                return
        self.do(("lpdeposit", LP, lp_units))
        if r.last_error is not None:
            return
        shares, paid, t0 = r.last_result, lp_units, self.now()
        value0 = m.pool_convert_to_assets(shares, t0)
        assert value0 <= paid
        if not m.auctions[live[-1]].size:
            return
        before = copy.deepcopy(m)
        pick = sorted(i for i, au in m.auctions.items() if au.size).index(live[-1])
        if release in ("topup", "cancel"):
            self.do(("deposit", t, sub, "any", 0, 10**11))
            if release == "cancel":
                self.do(("cancel", KEEPER, pick))
        else:
            self.do(("take", KEEPER, 0, pick, "all", "any"))
        now = self.now()
        drift = max(0, before.pool_convert_to_assets(shares, now) - value0)  # time alone: funding
        value1 = m.pool_convert_to_assets(shares, now)
        assert value1 <= paid + drift + 1, (
            f"a depositor ahead of a release gained: paid {paid}, worth {value1} (time alone {drift})")
        PROPS["F4 releases after a deposit"] += 1

    @rule(a=accounts.filter(lambda a: a[1] < 2), trader=st.sampled_from(ATTACKERS), market=markets, side=sides,
          bps=st.integers(1100, 2500), wait=st.sampled_from([0, 1, 600, 898]))
    def gap_then_trade_back(self, a, trader, market, side, bps, wait):
        """F4 (ii): the index meets the vAMM and a block accrues it; an account levers up; the index gaps
        past the band; in the next block a trader sells (buys) the vAMM back to the index. That block's
        accrual finds the gap before the trade (lastDislocation = its time), so LP flows keep waiting a
        TWAP window: a deposit probed `wait` seconds later is refused while the market's open interest
        exceeds the tolerance, by the dislocation alone once the vAMM is back in its band."""
        self.do(("oracle", market, "spot", 0, 0))
        self.do(("poke", market))
        self.do(("lever", a[0], a[1], market, side, 100))
        self.do(("oracle", market, "jump", 0, -side * bps))
        m = self.model
        mk = m.markets[market]
        T = self.runner.next_timestamp()
        index = self._index_or_none(market, T)
        if index is None or not mk.long_open_interest + mk.short_open_interest:
            return
        band_before = abs(mk.spot - mk.last_index_price) <= mk.last_index_price * mk.max_spread // WAD
        spot0_out = abs(mk.spot - index) > index * mk.max_spread // WAD
        jumped = abs(index - mk.last_index_price) > mk.last_index_price * mk.max_spread // WAD
        T = self._trade_to_index(trader, market, index)
        if T is None:
            return
        mk = m.markets[market]
        gap_found = mk.last_dislocation == T
        back_in_band = abs(mk.spot - index) <= index * mk.max_spread // WAD
        # The trade's block accrued first: with the index more than a band from the last accrued one, or the
        # vAMM in its band around the old index and out around the new one, it found the gap, and the trade
        # back cannot hide it.
        assert gap_found == (jumped or (spot0_out and band_before)), (
            f"block {T}: lastDislocation {mk.last_dislocation}, index jumped past the band {jumped}, "
            f"out around the new index {spot0_out}, in around the old one {band_before}")
        if wait:
            self.do(("time", wait))
        self.do(("poke", market))  # a block after the wait: the probe runs on it
        now = self.now()
        gap = self._untrusted_notional(now)
        if gap_found and now < T + mk.twap_window:
            assert gap >= -((-(mk.long_open_interest + mk.short_open_interest) * mk.spot) // WAD)
        self._probe_lp_deposit(LP, now, gap)
        PROPS["F4 trades back after a gap"] += gap_found and back_in_band

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
        """Invariant 16 (docs/specification.md): a withdrawal that went through left NAV (net of the uncovered
        bad-debt estimate) >= the reserve for the net open interest at the vAMM price."""
        before = self.model.pool_supply
        self.do(step)
        if self.model.pool_supply < before:
            now = self.now()
            assert self.model.pool_nav(now) >= self.model.pool_reserve_required(now), "an LP exit went below the reserve"

    # -------------------------------------------------------------- attacker pair (invariants 4, 13)

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
        """Invariant 15 (docs/specification.md): the insurance fund falls only by the bad debt it pays and the
        keeper bounties of kicks under water (each at most maxKeeperReward)."""
        m = self.model
        new = m.bad_debt[self.bad_debts:]
        paid = sum(entry[3] for entry in new)
        bounties = m.keeper_bounties[self.bounties:]
        assert all(0 < b <= m.liquidation_params.max_keeper_reward for _, b in bounties)
        paid += sum(b for _, b in bounties)
        self.bounties = len(m.keeper_bounties)
        assert m.insurance_fund_wad >= self.insurance - paid, "the insurance fund fell by more than bad debt and bounties"
        for owner, sub, *_ in new:
            acct = m.accounts[(owner, sub)]
            assert acct.collateral >= 0 or acct.open_markets, "a resolved account was left negative"
        self.insurance, self.bad_debts = m.insurance_fund_wad, len(m.bad_debt)

    @invariant()
    def closing_a_free_position_is_never_band_blocked(self):
        """F7: with a valid index and no pause, closing any free position goes through (a reduce is never
        blocked by the price band) unless it fills worse than the index and would leave the account below
        maintenance, or leave it with no position and negative collateral (`ReduceBelowMaintenance`: such an
        account leaves through its liquidation), or, so filled, its health check meets a stale feed of another
        market it holds; one position per step, in turn, by eth_call, and the chain's answer is the model's, the
        refusal's arguments included."""
        m = self.model
        if m.pause_level:
            return
        now = self.now()
        free = sorted(((k, p) for k, p in m.positions.items() if p.size != p.auctioned), key=lambda kp: str(kp[0]))
        if not free:
            return
        self.turn += 1
        (mid, owner, sub), p = free[self.turn % len(free)]
        if self._index_or_none(mid, now) is None:
            return
        limit = 0 if p.size - p.auctioned > 0 else MAX_UINT
        deadline = now + 3600
        ok, out = self.runner.probe(owner, self.runner.ch,
                                    _encode("closePosition(uint32,uint32,uint256,uint256)", [sub, mid, limit, deadline]))
        trial = copy.deepcopy(m)
        try:
            trial.close_position(owner, sub, mid, limit, now, deadline)
            expected = None
        except ModelRevert as e:
            expected = _model_error(e)
        if expected is not None and expected[0] in REDUCE_REFUSALS:
            # Filled worse than the index, the close needs the account's health: below maintenance it is refused,
            # and the health reads every feed the account holds (a stale one elsewhere refuses it too).
            assert not ok and tuple(out) == expected, (out, expected)
            PROPS["F7 closes refused below maintenance"] += 1
            return
        assert ok, f"closing a free position of {owner}/{sub} in market {mid} reverted: {out}"
        assert expected is None, f"the model refuses that close: {expected}"
        PROPS["F7 close probes"] += 1

    @invariant()
    def pool_views_answer_and_max_is_exact(self):
        """F4 and F8: on chain, navWad == poolBalance - tradersExitPnl - uncoveredBadDebt and depositAssets ==
        max(0, poolBalance - tradersExitPnl) / tokenScale (deposits priced before the set-aside), previewDeposit
        and previewMint on it, maxMint == previewDeposit(maxDeposit); the ERC-4626 views answer (never
        revert) what the model says; maxDeposit == 0 iff a deposit of one unit is refused for a reason other
        than ZeroShares; a positive maxRedeem / maxWithdraw is redeemable / withdrawable in full (eth_call)."""
        m, r = self.model, self.runner
        now = self.now()
        lp_addrs = sorted({r.addr[t] for t in (LP, TRADERS[0])} | {r.addr[t] for t in r.lps})
        views = [
            view_call("navWad", r.pool, "navWad()", [], [], ["int256"], lambda: m.pool_nav(now)),
            view_call("poolBalance", r.vault, "poolBalance()", [], [], ["int256"], m.pool_balance),
            view_call("tradersExitPnl", r.ch, "tradersExitPnl()", [], [], ["int256", "uint256", "uint256", "uint32"],
                      lambda: m.traders_exit_pnl(now)),
            view_call("uncoveredBadDebt", r.pool, "uncoveredBadDebt()", [], [], ["uint256"], m.uncovered_bad_debt),
            view_call("totalAssets", r.pool, "totalAssets()", [], [], ["uint256"], lambda: m.pool_total_assets(now)),
            view_call("maxDeposit", r.pool, "maxDeposit(address)", ["address"], [lp_addrs[0]], ["uint256"],
                      lambda: m.pool_max_deposit(now)),
            view_call("maxMint", r.pool, "maxMint(address)", ["address"], [lp_addrs[0]], ["uint256"],
                      lambda: m.pool_max_mint(now)),
            view_call("depositAssets", r.pool, "depositAssets()", [], [], ["uint256"],
                      lambda: m.pool_deposit_assets(now)),
            view_call("previewDeposit", r.pool, "previewDeposit(uint256)", ["uint256"], [10**9], ["uint256"],
                      lambda: m.pool_preview_deposit(10**9, now)),
            view_call("previewMint", r.pool, "previewMint(uint256)", ["uint256"], [10**15], ["uint256"],
                      lambda: m.pool_preview_mint(10**15, now)),
            view_call("totalSupply", r.pool, "totalSupply()", [], [], ["uint256"], lambda: m.pool_supply),
        ]
        for o in lp_addrs:
            views.append(view_call(f"maxRedeem {o}", r.pool, "maxRedeem(address)", ["address"], [o], ["uint256"],
                                   lambda o=o: m.pool_max_redeem(o, now)))
            views.append(view_call(f"maxWithdraw {o}", r.pool, "maxWithdraw(address)", ["address"], [o], ["uint256"],
                                   lambda o=o: m.pool_max_withdraw(o, now)))
        assert all(v.expected[0] != "revert" for v in views), [v.label for v in views if v.expected[0] == "revert"]
        r.check(views, now)
        nav, cash, pnl, uncovered = (views[i].expected[0] for i in range(4))
        assert nav == cash - pnl - uncovered
        max_deposit, max_mint, deposit_assets, preview_deposit, preview_mint, supply = (
            views[i].expected[0] for i in range(5, 11))
        assert deposit_assets == max(0, cash - pnl) // m.token_scale >= views[4].expected[0]
        assert preview_deposit == 10**9 * (supply + 10**6) // (deposit_assets + 1)
        assert preview_mint == -(-(10**15) * (deposit_assets + 1) // (supply + 10**6))
        assert max_mint == max_deposit * (supply + 10**6) // (deposit_assets + 1)
        lp = lp_addrs[0]
        ok, out = r.probe(lp, r.pool, _encode("deposit(uint256,address)", [1, lp]))
        refused = not ok and out[0] != "ZeroShares"
        assert (m.pool_max_deposit(now) == 0) == refused, f"maxDeposit {m.pool_max_deposit(now)} vs deposit(1): {out}"
        for o in lp_addrs:
            shares = m.pool_max_redeem(o, now)
            if shares:
                ok, out = r.probe(o, r.pool, _encode("redeem(uint256,address,address)", [shares, o, o]))
                assert ok, f"redeem(maxRedeem = {shares}) reverted: {out}"
            assets = m.pool_max_withdraw(o, now)
            if assets:
                ok, out = r.probe(o, r.pool, _encode("withdraw(uint256,address,address)", [assets, o, o]))
                assert ok, f"withdraw(maxWithdraw = {assets}) reverted: {out}"
        PROPS["F8 max probes"] += 1


# ---------------------------------------------------------------------------- scripted exploit attempts

# Every CI run attempts each exploit of the value-safety review at least once, whatever the draws: the
# machine's own rules in a fixed order (a fresh machine per script, every invariant after each rule).
SCRIPTS = {
    # F1 and F5: kicked under water, the owner adds margin, withdraws all it may and moves the rest; the
    # keeper takes the auction.
    "F1 withdraw in auction": [("crash", dict(a=(0, 1), market=1, side=1, bps=1500)),
                               ("withdraw_in_auction", dict(pick=0, units=10**11, dst=0)),
                               ("take", dict(taker=(KEEPER, 0), pick=0, amount="all", limit="any"))],
    # F1 and F4: a deep crash and a full take: the bad debt stays within the estimate the kick recorded.
    "F1/F4 bad debt": [("crash_and_take", dict(a=(1, 0), market=2, side=-1, bps=2500, taker=(KEEPER, 0), wait=900,
                                               amount="all"))],
    # F5: the auction runs out: three redos (each tip capped at the room) and the backstop.
    "F5 redos and backstop": [("crash", dict(a=(2, 0), market=1, side=-1, bps=2000)),
                              ("auction_runs_out", dict(pick=0, redos=3))],
    # The recovery: the owner adds margin, anyone cancels.
    "cancel": [("crash", dict(a=(0, 0), market=2, side=1, bps=700)),
               ("recover_and_cancel", dict(pick=0, units=0)),
               ("recover_and_cancel", dict(pick=0, units=10**11))],
    # F2: an LP deposit deepens the target; open, sync, close.
    "F2 sandwich": [("sandwich_depth_sync", dict(pair=ATTACKERS[0], market=1, side=1, ppb=2 * 10**7, units=5 * 10**12)),
                    ("sandwich_depth_sync", dict(pair=ATTACKERS[1], market=2, side=-1, ppb=2 * 10**7, units=0))],
    # F4: a gap past the band, an LP's matured request.
    "F4 gap exit": [("gap_lp_exit", dict(lp=LP, a=(1, 1), market=1, side=1, bps=2000))],
    # F4 (ii): a gap, then a trade back to the index in the next block; the LP-flow wait goes on (probed at
    # once and 898 s later), and ends a TWAP window after the gap's block.
    "F4 trade back after a gap": [
        ("gap_then_trade_back", dict(a=(2, 0), trader=ATTACKERS[0], market=1, side=1, bps=1500, wait=0)),
        ("gap_then_trade_back", dict(a=(0, 1), trader=ATTACKERS[1], market=2, side=-1, bps=1300, wait=898)),
        ("wait", dict(seconds=901)), ("lp_deposit", dict(lp=LP, units=10**9))],
    # F4 (i): credits lower an account's estimate one for one; a depositor ahead of the set-aside's
    # release (a top-up, a cancel, a take) gains nothing from it.
    "F4 credit then release": [
        ("credit_then_release", dict(a=(0, 0), market=1, side=1, bps=900, credit=10**9, via="deposit",
                                     release="topup", lp_units=10**11)),
        ("credit_then_release", dict(a=(1, 0), market=2, side=-1, bps=900, credit=10**8, via="transfer",
                                     release="take", lp_units=10**9)),
        ("credit_then_release", dict(a=(2, 1), market=1, side=-1, bps=950, credit=1, via="deposit",
                                     release="cancel", lp_units=10**11))],
    # F5: a recovered account's last auction is cancelled by the backstop, not dumped on the vAMM.
    "F5 backstop cancels": [("crash", dict(a=(1, 1), market=1, side=1, bps=1200)),
                            ("runs_out_then_recovers", dict(pick=0, units=10**11))],
}


def run_script(env, name):
    """SCRIPTS[name] on a fresh machine over `env`: each rule in order, every invariant after each."""
    Protocol.env = env
    invariants = [n for n, f in vars(Protocol).items() if getattr(f, "hypothesis_stateful_invariant", None)]
    machine = Protocol()
    try:
        for rule_name, kwargs in SCRIPTS[name]:
            getattr(machine, rule_name)(**kwargs)
            for inv in invariants:
                getattr(machine, inv)()
    finally:
        machine.teardown()
