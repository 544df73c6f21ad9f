"""Chain-vs-model harness shared by the differential fuzz (test_differential.py) and the stateful
machine (test_stateful.py): a `Runner` sends each action to the chain as a raw transaction and applies
it to `vperp.model.Model`, then compares reverts, events and every view, to the wei.

Actions (step tuples, first element the kind): time (("time", seconds), or ("time", "hour", offset): the next
block `offset` seconds past the first hour boundary after the head block, a negative offset that many
seconds before it: where the hourly funding sample happens), oracle, poke, deposit, withdraw, transfer, open,
reduce, close, lever (the largest position the margin allows), kick, take, redo, cancel, backstop,
baddebt (Vault.resolveBadDebt), lpdeposit, lpmint, lprequest, lpredeem, lpwithdraw, syncdepth, repeg.
Actors are indexes into `Env.traders`; every trader can also act as keeper, taker and LP.

Events compared with the model's results: PositionChanged, Kick, Take, Redo, AuctionCancelled (from
cancel, and from a redo or a backstop of a recovered account, which then emit no Redo / Backstop),
Backstop (the size it closed), every ShortfallRecorded, BadDebt and KeeperBounty a step emits (in order;
deposits and margin transfers into an account with an estimate lower it, with a ShortfallRecorded; the
Kick's keeperReward includes the insurance fund's bounty to the keeper of an account under water), DepthSynced,
DepthSyncCost and Repeg. Views compared include marketState with lastDislocation, the pool's
depositAssets (what deposits and mints are priced on) and, in the full comparison, previewDeposit and
previewMint.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from helpers.reverts import error_table, revert_data
from vperp import deploy
from vperp.config import lagging_peg_config
from vperp.model import Cancelled, MarketThresholds, Model, ModelRevert, breaker_check

from vperp.units import HOUR, WAD
MAX_UINT = 2**256 - 1
MARKETS = (1, 2)

STATS = {"examples": 0, "steps": 0, "reverts": 0, "seconds": 0.0, "errors": {}, "trades": 0, "funding_trades": 0,
         "funding_steps": 0, "kicks": 0, "takes": 0, "redos": 0, "backstops": 0, "bad_debts": 0, "lp": 0,
         "depth_syncs": 0, "repegs": 0, "cancels": 0, "partial_backstops": 0, "shortfall_events": 0,
         "bad_debt_events": 0, "suspended_steps": 0, "backstop_cancels": 0, "shortfall_credits": 0,
         "dislocations": 0, "keeper_bounties": 0}


# ---------------------------------------------------------------------------- ABI plumbing


def _selector(sig: str) -> bytes:
    return keccak(text=sig)[:4]


class Errors:
    """Selector -> (name, input types) for every error the contracts can raise, plus Panic/Error."""

    def __init__(self, *contracts):
        self.table: dict[bytes, tuple[str, list[str]]] = error_table(*contracts)
        # BatchCaller wraps an inner revert as CallFailed(index, reason).
        self.call_failed = _selector("CallFailed(uint256,bytes)")

    def decode(self, data: bytes) -> tuple[str, tuple]:
        name, types = self.table.get(data[:4], (f"unknown:{data[:4].hex()}", []))
        args = abi_decode(types, data[4:]) if types else ()
        return name, tuple(_norm(a) for a in args)


def _norm(v):
    """Canonical form for comparing error arguments: addresses lowercase, everything else as is."""
    if isinstance(v, str) and v.startswith("0x") and len(v) == 42:
        return v.lower()
    if hasattr(v, "address"):
        return str(v.address).lower()
    if isinstance(v, bytes) and len(v) == 32:
        return v.rstrip(b"\0")
    return v


# The refusals a close may meet besides the stale-peg rule: a fill worse than the index that would leave the account
# below maintenance, or whose health check meets an invalid feed of another market the account holds.
REDUCE_REFUSALS = ("ReduceBelowMaintenance", "StaleOracle", "InvalidOraclePrice")


def _model_error(e: ModelRevert) -> tuple[str, tuple]:
    return e.name, tuple(_norm(a.encode() if isinstance(a, str) and not a.startswith("0x") else a)
                         for a in e.error_args)


@dataclass
class View:
    """One view call: target, calldata, output types, and the model's answer (value or revert)."""

    label: str
    target: str
    data: bytes
    types: list[str]
    expected: object  # tuple of values, or ("revert", name, args)


def view_call(label, target, sig, arg_types, args, out_types, model_fn) -> View:
    """A `View` for `Runner.check` (the model's answer is computed now)."""
    return _call(label, target, sig, arg_types, args, out_types, model_fn)


def _call(label, target, sig, arg_types, args, out_types, model_fn):
    data = _selector(sig) + abi_encode(arg_types, args)
    try:
        value = model_fn()
        expected = tuple(_norm(v) for v in value) if isinstance(value, tuple) else (_norm(value),)
    except ModelRevert as e:
        expected = ("revert",) + _model_error(e)
    return View(label, target, data, out_types, expected)


# ---------------------------------------------------------------------------- environment


@dataclass
class Env:
    chain: object
    system: object
    batch: object
    traders: list
    errors: Errors
    base_model: Model
    w3: object
    x0: dict = field(default_factory=dict)
    breaker: object = None  # a CircuitBreaker over the system (never poked): its check() is compared in full
    breaker_thresholds: dict = field(default_factory=dict)  # market id -> its own thresholds set on the breaker


class Runner:
    """Runs one example: each step on chain and in the model, then compares everything.

    Transactions go straight to the embedded node through web3 (fixed gas, no estimate, no Ape
    receipt tracing), which makes a step about three times cheaper than through Ape's contract
    wrappers. A reverted transaction is mined with status 0; its revert data is then read by
    replaying it as an `eth_call` on the head block, which has the same timestamp and, since the
    failed transaction changed nothing, the same state.
    """

    def __init__(self, env: Env, model: Model):
        self.env = env
        self.model = model
        self.w3 = env.w3
        self.chain = env.chain
        self.s = env.system
        self.ch = env.system.clearing_house.address
        self.vault = env.system.vault.address
        self.engine = env.system.liquidation.address
        self.pool = env.system.pool.address
        self.amm = env.system.amm.address
        self.touched_auctions: set[int] = set()
        self.touched_lps: set[int] = set()
        self.lps: set[int] = set()  # traders that acted on the pool
        self.last_good_answer: dict[int, int] = {}
        self.jump = 0  # seconds of time steps not yet applied to a block
        self.addr = [t.address for t in env.traders]
        self.seen: set[tuple[int, int]] = set()  # every account the example acted on
        self.touched: set[tuple[int, int]] = set()  # the accounts the current step acted on
        self.touched_markets: set[int] = set()
        self.log: list[str] = []
        self.last_result = None  # the model's result of the last step that went through
        self.last_error = None  # (name, args) of the last step's revert, None when it went through

    # -------------------------------------------------------------- step dispatch

    def next_timestamp(self) -> int:
        """The timestamp the next transaction's block will have."""
        return self.w3.eth.get_block("latest")["timestamp"] + 1 + self.jump

    def hour_jump(self, offset: int) -> int:
        """Seconds of time step that put the next block `offset` seconds past the first hour boundary after
        the head block (with the time steps not yet applied); a negative offset: that many seconds before
        it, or before the next one when that second has passed."""
        nxt = self.next_timestamp()
        target = ((nxt - 1) // HOUR + 1) * HOUR + offset
        if target < nxt:
            target += HOUR
        return target - nxt

    def touch(self, *accts) -> None:
        self.seen.update(accts)
        self.touched.update(accts)

    def send(self, sender: str, target: str, data: bytes):
        """Mine one transaction; return (receipt, None) or (receipt, (error name, args))."""
        tx = {"from": sender, "to": target, "data": data, "gas": 5_000_000}
        # (Anvil may answer the hash a moment before the receipt is queryable: wait for it.)
        receipt = self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_transaction(tx), timeout=60,
                                                           poll_latency=0.01)
        if receipt["status"] == 1:
            return receipt, None
        try:
            self.w3.eth.call(tx)
        except Exception as exc:  # noqa: BLE001 - eth-tester's TransactionFailed or web3's errors
            return receipt, self.env.errors.decode(revert_data(exc))
        raise AssertionError("transaction failed on chain but its replay succeeded")

    def probe(self, sender: str, target: str, data: bytes):
        """An `eth_call` on the head block: (True, return data) or (False, (error name, args))."""
        try:
            return True, bytes(self.w3.eth.call({"from": sender, "to": target, "data": data}))
        except Exception as exc:  # noqa: BLE001 - the node's revert exception type varies
            return False, self.env.errors.decode(revert_data(exc))

    def step(self, step: tuple) -> None:
        self.touched, self.touched_markets, self.touched_auctions = set(), set(), set()
        self.touched_lps = set()
        self.last_result, self.last_error = None, None
        kind = step[0]
        if kind == "time":
            seconds = self.hour_jump(step[2]) if step[1] == "hour" else step[1]
            self.jump += seconds
            self.log.append(f"time +{seconds}" + (f" (hour boundary {step[2]:+d} s)" if step[1] == "hour" else ""))
            return
        T = self.next_timestamp()
        self.jump = 0
        # Every block's time is set explicitly (one second after the previous block, plus any time
        # step): a run is then the same on every replay and on either chain, whatever the wall clock.
        self.chain.pending_timestamp = T
        model_fn, (sender, target, data), describe = getattr(self, f"_{kind}")(T, *step[1:])
        self.log.append(f"t={T} {describe}")
        n_shortfalls, n_bad_debts = len(self.model.shortfall_log), len(self.model.bad_debt)
        n_bounties = len(self.model.keeper_bounties)
        try:
            result, m_err = model_fn(), None
        except ModelRevert as e:
            result, m_err = None, _model_error(e)
        receipt, c_err = self.send(sender, target, data)
        assert c_err == m_err, f"revert mismatch at {describe}: chain {c_err} vs model {m_err}\n" + self.trace()
        block = self.w3.eth.get_block(receipt["blockNumber"])
        assert block["timestamp"] == T, f"transaction mined at {block['timestamp']}, expected {T}"
        self.last_result, self.last_error = result, c_err
        if c_err is not None:
            self.log[-1] += f"  -> {c_err[0]}{c_err[1]}"
            STATS["reverts"] += 1
            STATS["errors"][c_err[0]] = STATS["errors"].get(c_err[0], 0) + 1
            return
        self._check_vault_events(receipt, n_shortfalls, n_bad_debts, describe, n_bounties)
        STATS["dislocations"] += any(mk.last_dislocation == T for mk in self.model.markets.values())
        if kind in ("deposit", "transfer") and len(self.model.shortfall_log) > n_shortfalls:
            STATS["shortfall_credits"] += 1  # collateral credited to an account in liquidation
        if kind in ("kick", "take", "redo", "backstop", "baddebt", "cancel"):
            cancelled = isinstance(result, Cancelled)
            STATS[{"kick": "kicks", "take": "takes", "redo": "cancels" if cancelled else "redos",
                   "backstop": "cancels" if cancelled else "backstops", "baddebt": "bad_debts",
                   "cancel": "cancels"}[kind]] += 1
            STATS["backstop_cancels"] += kind == "backstop" and cancelled
            self._check_liquidation_event(kind, receipt, result, describe)
        if kind.startswith("lp"):
            STATS["lp"] += 1
        if kind in ("syncdepth", "repeg"):
            self._check_amm_event(kind, receipt, result, describe, T)
        if kind in ("open", "reduce", "close", "lever"):
            got = _one_event_data(receipt, POSITION_CHANGED,
                                  ["int256", "int256", "uint256", "int256", "int256", "int256", "int256", "uint256"])
            want = (result.base, result.quote, result.fee, result.realized_pnl, result.funding, result.new_size,
                    result.new_open_notional, result.price_after)
            assert got == want, f"PositionChanged mismatch at {describe}: chain {got} vs model {want}\n" + self.trace()
            STATS["trades"] += 1
            STATS["funding_trades"] += result.funding != 0

    def _deadline(self, T, ok):
        return T + 60 if ok else T - 1

    def _limit(self, market_id, base, mode):
        if mode != "any":
            try:
                q, _ = self.model.quote(market_id, base)
            except ModelRevert:
                mode = "any"
        if mode == "any":
            return MAX_UINT if base > 0 else 0
        exact = -q if base > 0 else q
        return exact if mode == "exact" else (exact - 1 if base > 0 else exact + 1)

    def _open(self, T, t, sub, market_id, sign, ppb, limit_mode, dl_ok):
        base = sign * max(1, self.env.x0[market_id] * ppb // 10**9)
        return self._trade(T, t, sub, market_id, base, limit_mode, dl_ok)

    def _reduce(self, T, t, sub, market_id, pct, limit_mode):
        size = self.model._position(market_id, self.addr[t], sub).size
        base = -size * pct // 100 if size else (WAD // 10) * (1 if pct % 2 else -1)
        return self._trade(T, t, sub, market_id, base, limit_mode, True)

    def _trade(self, T, t, sub, market_id, base, limit_mode, dl_ok):
        self.touch((t, sub))
        self.touched_markets.add(market_id)
        limit = self._limit(market_id, base, limit_mode)
        dl = self._deadline(T, dl_ok)
        owner = self.addr[t]
        data = _encode("openPosition(uint32,uint32,int256,uint256,uint256)", [sub, market_id, base, limit, dl])
        return (lambda: self.model.open_position(owner, sub, market_id, base, limit, T, dl),
                (owner, self.ch, data),
                f"openPosition(trader{t}, sub={sub}, market={market_id}, base={base}, limit={limit_mode}:{limit}, "
                f"deadline={'ok' if dl_ok else 'passed'})")

    def _close(self, T, t, sub, market_id, limit_mode, dl_ok):
        self.touch((t, sub))
        self.touched_markets.add(market_id)
        owner = self.addr[t]
        size = self.model._position(market_id, owner, sub).size
        limit = self._limit(market_id, -size, limit_mode) if size else 0
        dl = self._deadline(T, dl_ok)
        data = _encode("closePosition(uint32,uint32,uint256,uint256)", [sub, market_id, limit, dl])
        return (lambda: self.model.close_position(owner, sub, market_id, limit, T, dl),
                (owner, self.ch, data),
                f"closePosition(trader{t}, sub={sub}, market={market_id}, limit={limit_mode}:{limit}, "
                f"deadline={'ok' if dl_ok else 'passed'})")

    def _deposit(self, T, t, sub, mode, normal, any_units):
        units = {"normal": normal, "any": any_units, "zero": 0}[mode]
        self.touch((t, sub))
        owner = self.addr[t]
        return (lambda: self.model.deposit(owner, sub, units, T),
                (owner, self.vault, _encode("deposit(uint32,uint256)", [sub, units])),
                f"deposit(trader{t}, sub={sub}, {units})")

    def _free_or(self, T, owner, sub, fallback):
        """The model's free collateral at `T` (input generation only), or `fallback` when it reverts."""
        try:
            return max(self.model.free_collateral(owner, sub, T), 0)
        except ModelRevert:
            return fallback

    def _withdraw(self, T, t, sub, mode, delta, raw):
        self.touch((t, sub))
        owner = self.addr[t]
        scale = self.model.token_scale
        coll = max(self.model.collateral(owner, sub), 0)
        if mode == "free":
            units = max(self._free_or(T, owner, sub, coll) // scale + delta, 0)
        elif mode == "all":
            units = max(coll // scale + delta, 0)
        else:
            units = raw
        return (lambda: self.model.withdraw(owner, sub, units, T),
                (owner, self.vault, _encode("withdraw(uint32,uint256)", [sub, units])),
                f"withdraw(trader{t}, sub={sub}, {units} [{mode}])")

    def _transfer(self, T, t, src, dst, mode, delta, raw):
        self.touch((t, src), (t, dst))
        owner = self.addr[t]
        if mode == "free":
            amount = max(self._free_or(T, owner, src, max(self.model.collateral(owner, src), 0)) + delta, 0)
        else:
            amount = raw
        return (lambda: self.model.transfer_margin(owner, src, dst, amount, T),
                (owner, self.vault, _encode("transferMargin(uint32,uint32,uint256)", [src, dst, amount])),
                f"transferMargin(trader{t}, {src}->{dst}, {amount} [{mode}])")

    def _oracle(self, T, market_id, mode, step_bps, jump_bps):
        self.touched_markets.add(market_id)
        m = self.model.markets[market_id]
        # After a zero answer the feed recovers from the last good one.
        answer = m.answer if m.answer > 0 else self.last_good_answer.get(market_id, 10**m.oracle_decimals)
        if answer > 0:
            self.last_good_answer[market_id] = answer
        if mode == "step":
            answer = answer * (10_000 + step_bps) // 10_000
        elif mode == "jump":
            answer = answer * (10_000 + jump_bps) // 10_000
        elif mode == "zero":
            answer = 0
        elif mode == "spot":  # the index meets the vAMM (a market back in line)
            answer = max(m.spot // m.oracle_scale, 1)
        oracle = self.s.markets[m.symbol].oracle.address
        # The health of every account holding this market moved: compare them all.
        bit = 1 << (market_id - 1)
        self.touched.update(a for a in self.seen if self.model.open_markets(self.addr[a[0]], a[1]) & bit)
        return (lambda: self.model.set_answer(market_id, answer, T),
                (self.s.deployer.address, oracle, _encode("updateAnswer(int256)", [answer])),
                f"oracle[{m.symbol}].updateAnswer({answer}) [{mode}]")

    def _poke(self, T, market_id):
        self.touched_markets.add(market_id)
        return (lambda: self.model.poke_funding(market_id, T),
                (self.addr[0], self.ch, _encode("pokeFunding(uint32)", [market_id])),
                f"pokeFunding({market_id})")

    def _syncdepth(self, T, market_id):
        """AmmController.syncDepth by anyone: the depth follows the pool's NAV."""
        self.touched_markets.add(market_id)
        return (lambda: self.model.sync_depth(market_id, T),
                (self.addr[0], self.amm, _encode("syncDepth(uint32)", [market_id])), f"syncDepth({market_id})")

    def _repeg(self, T, market_id):
        """AmmController.repeg by anyone: the peg follows the index when the TWAPs diverge."""
        self.touched_markets.add(market_id)
        return (lambda: self.model.repeg(market_id, T),
                (self.addr[0], self.amm, _encode("repeg(uint32)", [market_id])), f"repeg({market_id})")

    def _check_amm_event(self, kind, receipt, result, describe, T) -> None:
        """DepthSynced + DepthSyncCost / Repeg carry the model's result to the wei."""
        got = _one_event_data(receipt, *AMM_EVENTS[kind])
        if kind == "syncdepth":  # (x1, y1, cost, total cost), and DepthCharged's (exitChange, chargePerBase)
            got = got[2:4] + _one_event_data(receipt, DEPTH_SYNC_COST, ["int256", "int256"])
            charged = _one_event_data(receipt, DEPTH_CHARGED, ["int256", "int256"])
            market_id = _topic_int(_event_logs(receipt, DEPTH_CHARGED)[0], 1)
            want = self.model.last_depth_charge[market_id]
            assert charged == want, f"DepthCharged mismatch at {describe}: chain {charged} vs model {want}\n" + self.trace()
        else:  # (price1, cost)
            got = (got[1], got[3])
        assert got == tuple(result), f"{kind} mismatch at {describe}: chain {got} vs model {result}\n" + self.trace()
        STATS["depth_syncs" if kind == "syncdepth" else "repegs"] += 1

    def _lever(self, T, t, sub, market_id, sign, pct):
        """Open (or add to) a position of `pct` % of the largest one the margin allows (found on a
        copy of the model, shrinking from free collateral / imr by 10 % steps): the step that makes
        accounts liquidatable after an adverse oracle move."""
        owner = self.addr[t]
        m = self.model.markets[market_id]
        trial = copy.deepcopy(self.model)
        try:
            free = trial.free_collateral(owner, sub, T)
            index = trial.index_price(market_id, T)
        except ModelRevert:
            free, index = 0, max(m.answer, 1) * m.oracle_scale
        base = max(free, 0) * WAD // m.imr * WAD // index
        for _ in range(40):
            if base < m.min_position_size:
                break
            try:
                trial.open_position(owner, sub, market_id, sign * base, MAX_UINT if sign > 0 else 0, T, T + 60)
                break
            except ModelRevert:
                base = base * 9 // 10
        base = sign * max(base * pct // 100, m.min_position_size)
        return self._trade(T, t, sub, market_id, base, "any", True)

    # liquidation
    def _live_auction(self, pick: int) -> int:
        """An auction id: the `pick`-th live one (mod their number), or an unknown id when none is live."""
        live = sorted(i for i, a in self.model.auctions.items() if a.size != 0)
        if not live:
            return self.model.auction_count + 1 if pick % 2 else max(self.model.auction_count, 1)
        return live[pick % len(live)]

    def _touch_auction(self, auction_id: int, extra=()) -> None:
        self.touched_auctions.add(auction_id)
        a = self.model.auctions.get(auction_id)
        if a is not None:
            self.touch((self.addr.index(a.owner), a.subaccount), *extra)
            self.touched_markets.add(a.market_id)

    def _kick(self, T, keeper_t, t, sub, market_pick):
        owner, keeper = self.addr[t], self.addr[keeper_t]
        try:
            best = self.model.best_market_to_kick(owner, sub, T)
        except ModelRevert:
            best = 0
        market_id = best if market_pick == 0 and best else (market_pick or 1)
        self.touch((t, sub), (keeper_t, 0))
        self.touched_markets.add(market_id)
        self.touched_auctions.add(self.model.auction_count + 1)
        return (lambda: self.model.kick(owner, sub, market_id, keeper, T),
                (keeper, self.engine, _encode("kick(address,uint32,uint32,address)", [owner, sub, market_id, keeper])),
                f"kick(trader{t}/{sub}, market={market_id}, keeper=trader{keeper_t})")

    def _take(self, T, taker_t, taker_sub, pick, amount_mode, limit_mode):
        auction_id = self._live_auction(pick)
        self._touch_auction(auction_id, [(taker_t, taker_sub)])
        a = self.model.auctions.get(auction_id)
        size = a.size if a else 1
        remaining = abs(size)
        min_size = self.model.markets[a.market_id].min_position_size if a else 1
        # "below": one wei under the minimum, refused by the take's rule or, first, by a settlement rule (the taker's
        # or the owner's minimum), as the engine checks its own after the settlement.
        amount = {"all": MAX_UINT, "exact": remaining, "half": remaining // 2, "min": min_size,
                  "below": max(min_size - 1, 1), "dust": max(remaining - min_size + 1, 1), "zero": 0}[amount_mode]
        limit = MAX_UINT if size > 0 else 0
        if limit_mode != "any":
            try:
                price = self.model.auction_price(auction_id, T)
                limit = price if limit_mode == "exact" else (price - 1 if size > 0 else price + 1)
            except ModelRevert:
                pass
        taker = self.addr[taker_t]
        return (lambda: self.model.take(auction_id, amount, limit, taker, taker_sub, T),
                (taker, self.engine, _encode("take(uint256,uint256,uint256,uint32)", [auction_id, amount, limit, taker_sub])),
                f"take(auction {auction_id}, {amount_mode}:{amount}, limit={limit_mode}:{limit}, "
                f"taker=trader{taker_t}/{taker_sub})")

    def _redo(self, T, keeper_t, pick):
        auction_id = self._live_auction(pick)
        self._touch_auction(auction_id, [(keeper_t, 0)])
        keeper = self.addr[keeper_t]
        return (lambda: self.model.redo(auction_id, keeper, T),
                (keeper, self.engine, _encode("redo(uint256,address)", [auction_id, keeper])),
                f"redo(auction {auction_id}, keeper=trader{keeper_t})")

    def _cancel(self, T, t, pick):
        """LiquidationEngine.cancel by anyone: the auction of a recovered account ends unpaid."""
        auction_id = self._live_auction(pick)
        self._touch_auction(auction_id)
        return (lambda: self.model.cancel(auction_id, T),
                (self.addr[t], self.engine, _encode("cancel(uint256)", [auction_id])),
                f"cancel(auction {auction_id}, by trader{t})")

    def _backstop(self, T, t, pick):
        auction_id = self._live_auction(pick)
        self._touch_auction(auction_id)
        return (lambda: self.model.backstop(auction_id, T),
                (self.addr[t], self.engine, _encode("backstop(uint256)", [auction_id])),
                f"backstop(auction {auction_id})")

    def _baddebt(self, T, t, owner_t, sub):
        owner = self.addr[owner_t]
        self.touch((owner_t, sub))
        return (lambda: self.model.resolve_bad_debt(owner, sub),
                (self.addr[t], self.vault, _encode("resolveBadDebt(address,uint32)", [owner, sub])),
                f"resolveBadDebt(trader{owner_t}/{sub})")

    # pool
    def _lpdeposit(self, T, t, units):
        self.lps.add(t)
        self.touched_lps.add(t)
        owner = self.addr[t]
        return (lambda: self.model.pool_deposit(owner, units, owner, T),
                (owner, self.pool, _encode("deposit(uint256,address)", [units, owner])),
                f"pool.deposit(trader{t}, {units})")

    def _lpmint(self, T, t, shares):
        self.lps.add(t)
        self.touched_lps.add(t)
        owner = self.addr[t]
        return (lambda: self.model.pool_mint(owner, shares, owner, T),
                (owner, self.pool, _encode("mint(uint256,address)", [shares, owner])),
                f"pool.mint(trader{t}, {shares} shares)")

    def _lprequest(self, T, t, pct):
        self.lps.add(t)
        self.touched_lps.add(t)
        owner = self.addr[t]
        shares = self.model.pool_balance_of(owner) * pct // 100 if pct >= 0 else 1
        return (lambda: self.model.pool_request_withdraw(owner, shares, T),
                (owner, self.pool, _encode("requestWithdraw(uint256)", [shares])),
                f"pool.requestWithdraw(trader{t}, {shares} [{pct} %])")

    def _lpredeem(self, T, t, pct):
        self.lps.add(t)
        self.touched_lps.add(t)
        owner = self.addr[t]
        r = self.model.pool_requests.get(owner)
        requested = r.shares if r else 0
        shares = requested * pct // 100 if pct >= 0 else requested + 1
        return (lambda: self.model.pool_redeem(owner, shares, T),
                (owner, self.pool, _encode("redeem(uint256,address,address)", [shares, owner, owner])),
                f"pool.redeem(trader{t}, {shares} [{pct} % of the request])")

    def _lpwithdraw(self, T, t, pct):
        self.lps.add(t)
        self.touched_lps.add(t)
        owner = self.addr[t]
        try:
            top = self.model.pool_max_withdraw(owner, T)
        except ModelRevert:
            top = 10**6
        assets = top * pct // 100 if pct >= 0 else top + 1
        return (lambda: self.model.pool_withdraw(owner, assets, T),
                (owner, self.pool, _encode("withdraw(uint256,address,address)", [assets, owner, owner])),
                f"pool.withdraw(trader{t}, {assets} [{pct} % of maxWithdraw])")

    def _check_vault_events(self, receipt, n_shortfalls: int, n_bad_debts: int, describe: str,
                            n_bounties: int = 0) -> None:
        """Every ShortfallRecorded, BadDebt and KeeperBounty the step emitted, in order, is the model's."""
        got = [(_norm(_topic_address(lg, 1)), _topic_int(lg, 2)) + abi_decode(["uint256", "uint256"], bytes(lg["data"]))
               for lg in _event_logs(receipt, SHORTFALL_RECORDED)]
        want = [(_norm(o), sub, sf, total) for o, sub, sf, total in self.model.shortfall_log[n_shortfalls:]]
        assert got == want, f"ShortfallRecorded mismatch at {describe}: chain {got} vs model {want}\n" + self.trace()
        STATS["shortfall_events"] += len(got)
        got = [(_norm(_topic_address(lg, 1)), _topic_int(lg, 2))
               + abi_decode(["uint256", "uint256", "uint256"], bytes(lg["data"]))
               for lg in _event_logs(receipt, BAD_DEBT)]
        want = [(_norm(o), sub, debt, ins, pool) for o, sub, debt, ins, pool in self.model.bad_debt[n_bad_debts:]]
        assert got == want, f"BadDebt mismatch at {describe}: chain {got} vs model {want}\n" + self.trace()
        STATS["bad_debt_events"] += len(got)
        got = [(_norm(_topic_address(lg, 1)),) + abi_decode(["uint256"], bytes(lg["data"]))
               for lg in _event_logs(receipt, KEEPER_BOUNTY)]
        want = [(_norm(k), amount) for k, amount in self.model.keeper_bounties[n_bounties:]]
        assert got == want, f"KeeperBounty mismatch at {describe}: chain {got} vs model {want}\n" + self.trace()
        STATS["keeper_bounties"] += len(got)

    def _check_liquidation_event(self, kind, receipt, result, describe) -> None:
        """The engine's event carries what the model computed (the data fields; topics are ids)."""
        if kind == "baddebt":
            return
        if isinstance(result, Cancelled):  # AuctionCancelled(size, value, requirement); no Redo, no Backstop
            for ev in ("redo", "backstop"):
                assert not _event_logs(receipt, LIQUIDATION_EVENTS[ev][0]), f"a cancelling {kind} emitted {ev}: {describe}"
            got = _one_event_data(receipt, AUCTION_CANCELLED, ["int256", "int256", "uint256"])
            want = (result.size, result.value, result.requirement)
            assert got == want, f"{kind} event mismatch at {describe}: chain {got} vs model {want}\n" + self.trace()
            return
        got = tuple(_norm(v) for v in _one_event_data(receipt, *LIQUIDATION_EVENTS[kind]))
        if kind == "kick":
            _, sl = result
            got = got[:3] + got[4:]  # the keeper (got[3]) is checked through its ledger
            want = (self.model.auctions[self.model.auction_count].market_id, sl.size, sl.index,
                    sl.keeper_reward + sl.bounty, sl.penalty)
        elif kind == "take":
            amount, price = result
            got, want = got[1:3], (amount, price)
        elif kind == "redo":  # Redo(redos, startIndex, keeper, tip)
            got, want = (got[0], got[1], got[3]), (result.redos, result.start_index, result.tip)
        else:  # backstop: (closed, quote); what the band did not allow stays in the auction
            want = tuple(result)
            STATS["partial_backstops"] += any(self.model.auctions[i].size != 0 for i in self.touched_auctions
                                              if i in self.model.auctions)
        assert got == want, f"{kind} event mismatch at {describe}: chain {got} vs model {want}\n" + self.trace()

    # -------------------------------------------------------------- comparison

    def views(self, now: int, accts, markets, full: bool, auctions=(), lps=()) -> list[View]:
        """The views to compare. `full` adds the derived ones (markPrice, indexPrice, quote,
        isLiquidatable), checked at the end of each example rather than after every step: each view
        runs the funding kernel in the EVM, which is what a step's time is spent on."""
        m, ch, vault = self.model, self.ch, self.vault
        out = [
            _call("poolBalance", vault, "poolBalance()", [], [], ["int256"], m.pool_balance),
            _call("insuranceFund", vault, "insuranceFund()", [], [], ["uint256"], m.insurance_fund),
            _call("token balance", self.s.collateral.address, "balanceOf(address)", ["address"], [vault],
                  ["uint256"], lambda: m.token_balance),
            # the pool's valuation from the aggregates, and the engine's totals
            _call("tradersPnl", ch, "tradersPnl()", [], [], ["int256", "uint256"], lambda: m.traders_pnl(now)),
            _call("pool.navWad", self.pool, "navWad()", [], [], ["int256"], lambda: m.pool_nav(now)),
            _call("pool.totalAssets", self.pool, "totalAssets()", [], [], ["uint256"], lambda: m.pool_total_assets(now)),
            _call("pool.totalSupply", self.pool, "totalSupply()", [], [], ["uint256"], lambda: m.pool_supply),
            # the pool's exit valuation, the bad-debt estimates and the LP-flow gate
            _call("tradersExitPnl", ch, "tradersExitPnl()", [], [], ["int256", "uint256", "uint256", "uint32"],
                  lambda: m.traders_exit_pnl(now)),
            _call("pendingBadDebt", vault, "pendingBadDebt()", [], [], ["uint256"], m.pending_bad_debt),
            _call("pool.uncoveredBadDebt", self.pool, "uncoveredBadDebt()", [], [], ["uint256"],
                  m.uncovered_bad_debt),
            _call("pool.lpFlowsSuspended", self.pool, "lpFlowsSuspended()", [], [], ["bool", "uint32"],
                  lambda: m.lp_flows_suspended(now)),
            _call("pool.maxDeposit", self.pool, "maxDeposit(address)", ["address"], [self.addr[0]], ["uint256"],
                  lambda: m.pool_max_deposit(now)),
            _call("pool.maxMint", self.pool, "maxMint(address)", ["address"], [self.addr[0]], ["uint256"],
                  lambda: m.pool_max_mint(now)),
            _call("pool.depositAssets", self.pool, "depositAssets()", [], [], ["uint256"],
                  lambda: m.pool_deposit_assets(now)),
            _call("pool.reserveRequired", self.pool, "reserveRequired()", [], [], ["uint256"],
                  lambda: m.pool_reserve_required(now)),
            _call("pool.withdrawableAssets", self.pool, "withdrawableAssets()", [], [], ["uint256"],
                  lambda: m.pool_withdrawable_assets(now)),
            _call("liveNotional", self.engine, "liveNotional()", [], [], ["uint256"], lambda: m.live_notional),
            _call("auctionCount", self.engine, "auctionCount()", [], [], ["uint256"], lambda: m.auction_count),
        ]
        if full:
            out += [_call(f"pool.{fn}({n})", self.pool, f"{fn}(uint256)", ["uint256"], [n], ["uint256"],
                          lambda f=model_fn, n=n: f(n, now))
                    for fn, n, model_fn in (("previewDeposit", 10**9, m.pool_preview_deposit),
                                            ("previewMint", 10**15, m.pool_preview_mint),
                                            ("convertToShares", 10**9, m.pool_convert_to_shares),
                                            ("convertToAssets", 10**15, m.pool_convert_to_assets))]
        auction_ids = range(1, m.auction_count + 2) if full else sorted(auctions)
        for i in auction_ids:
            out.append(_call(f"auction({i})", self.engine, "auction(uint256)", ["uint256"], [i],
                             ["address", "uint32", "uint32", "uint8", "int96", "uint128", "uint32", "uint128"],
                             lambda i=i: m.auction(i)))
            if full:
                out.append(_call(f"auctionPrice({i})", self.engine, "auctionPrice(uint256)", ["uint256"], [i],
                                 ["uint256"], lambda i=i: m.auction_price(i, now)))
                out.append(_call(f"isExpired({i})", self.engine, "isExpired(uint256)", ["uint256"], [i],
                                 ["bool"], lambda i=i: m.is_expired(i, now)))
        for t in sorted(self.lps if full else lps):
            o = self.addr[t]
            out.append(_call(f"pool.balanceOf trader{t}", self.pool, "balanceOf(address)", ["address"], [o],
                             ["uint256"], lambda o=o: m.pool_balance_of(o)))
            out.append(_call(f"pool.withdrawRequest trader{t}", self.pool, "withdrawRequest(address)", ["address"],
                             [o], ["uint128", "uint64"],
                             lambda o=o: (lambda r: (r.shares, r.unlock_at) if r else (0, 0))(m.pool_requests.get(o))))
            out.append(_call(f"pool.maxRedeem trader{t}", self.pool, "maxRedeem(address)", ["address"], [o],
                             ["uint256"], lambda o=o: m.pool_max_redeem(o, now)))
            out.append(_call(f"pool.maxWithdraw trader{t}", self.pool, "maxWithdraw(address)", ["address"], [o],
                             ["uint256"], lambda o=o: m.pool_max_withdraw(o, now)))
        for mid in sorted(markets):
            out.append(_call(f"repegCost({mid})", self.amm, "repegCost(uint32)", ["uint32"], [mid], ["int256"],
                             lambda mid=mid: m.repeg_cost.get(mid, 0)))
            out.append(_call(f"lastRepeg({mid})", self.amm, "lastRepeg(uint32)", ["uint32"], [mid], ["uint256"],
                             lambda mid=mid: m.last_repeg.get(mid, 0)))
            out.append(_call(f"depthCost({mid})", self.amm, "depthCost(uint32)", ["uint32"], [mid], ["int256"],
                             lambda mid=mid: m.depth_cost.get(mid, 0)))
            out.append(_call(f"lastDepthSync({mid})", self.amm, "lastDepthSync(uint32)", ["uint32"], [mid],
                             ["uint256"], lambda mid=mid: m.last_depth_sync.get(mid, 0)))
            out.append(_call(f"netExitValue({mid})", self.amm, "netExitValue(uint32)", ["uint32"], [mid], ["int256"],
                             lambda mid=mid: m.net_exit_value(mid)))
            out.append(_call(f"marketState({mid})", ch, "marketState(uint32)", ["uint32"], [mid],
                             ["uint256"] * 5 + ["int256"] * 3 + ["uint256"] * 3, lambda mid=mid: m.market_state(mid, now)))
            out.append(_call(f"fundingState({mid})", ch, "fundingState(uint32)", ["uint32"], [mid],
                             ["int256"] * 3 + ["uint256"] * 2 + ["int256"] * 2,
                             lambda mid=mid: m.funding_state(mid, now)))
            if not full:
                continue
            out.append(_call(f"markPrice({mid})", ch, "markPrice(uint32)", ["uint32"], [mid], ["uint256"],
                             lambda mid=mid: m.mark_price(mid, now)))
            breaker = getattr(self.env, "breaker", None)
            if breaker is not None:
                out.append(_call(f"breaker.check({mid})", breaker.address, "check(uint32)", ["uint32"], [mid],
                                 ["uint96", "bool", "bool", "uint8", "uint64", "uint64"] + ["uint256"] * 11
                                 + ["int256", "uint64", "uint96"],
                                 lambda mid=mid: breaker_check(
                                     m, mid, now, thresholds=self.env.breaker_thresholds.get(mid))))
            out.append(_call(f"indexPrice({mid})", ch, "indexPrice(uint32)", ["uint32"], [mid], ["uint256"],
                             lambda mid=mid: m.index_price(mid, now)))
            out.append(_call(f"quote({mid}, +-1)", ch, "quote(uint32,int256)", ["uint32", "int256"], [mid, -WAD],
                             ["int256", "uint256"], lambda mid=mid: m.quote(mid, -WAD)))
        for t, sub in sorted(accts):
            o = self.addr[t]
            a = (["address", "uint32"], [o, sub])
            tag = f"trader{t}/{sub}"
            out.append(_call(f"collateral {tag}", vault, "collateral(address,uint32)", *a, ["int256"],
                             lambda o=o, sub=sub: m.collateral(o, sub)))
            out.append(_call(f"openMarkets {tag}", vault, "openMarkets(address,uint32)", *a, ["uint256"],
                             lambda o=o, sub=sub: m.open_markets(o, sub)))
            out.append(_call(f"shortfallOf {tag}", vault, "shortfallOf(address,uint32)", *a, ["uint256"],
                             lambda o=o, sub=sub: m.shortfall_of(o, sub)))
            for mid in MARKETS:
                out.append(_call(f"position {tag} market {mid}", ch, "position(address,uint32,uint32)",
                                 ["address", "uint32", "uint32"], [o, sub, mid], ["int256"] * 3,
                                 lambda o=o, sub=sub, mid=mid: m.position(o, sub, mid, now)))
                out.append(_call(f"auctionedSize {tag} market {mid}", ch, "auctionedSize(address,uint32,uint32)",
                                 ["address", "uint32", "uint32"], [o, sub, mid], ["int256"],
                                 lambda o=o, sub=sub, mid=mid: m.auctioned_size(o, sub, mid)))
                if full:
                    out.append(_call(f"kickPreview {tag} market {mid}", self.engine,
                                     "kickPreview(address,uint32,uint32)", ["address", "uint32", "uint32"],
                                     [o, sub, mid], ["int256", "uint256", "uint256", "uint256"],
                                     lambda o=o, sub=sub, mid=mid: m.kick_preview(o, sub, mid, now)))
            if full:
                out.append(_call(f"bestMarketToKick {tag}", self.engine, "bestMarketToKick(address,uint32)", *a,
                                 ["uint32"], lambda o=o, sub=sub: m.best_market_to_kick(o, sub, now)))
            health = [
                _call(f"accountValue {tag}", vault, "accountValue(address,uint32)", *a, ["int256"],
                      lambda o=o, sub=sub: m.account_value(o, sub, now)),
                _call(f"freeCollateral {tag}", vault, "freeCollateral(address,uint32)", *a, ["int256"],
                      lambda o=o, sub=sub: m.free_collateral(o, sub, now)),
                _call(f"marginRequirements {tag}", vault, "marginRequirements(address,uint32)", *a,
                      ["uint256", "uint256"], lambda o=o, sub=sub: m.margin_requirements(o, sub, now)),
                _call(f"liquidationState {tag}", vault, "liquidationState(address,uint32)", *a,
                      ["int256", "uint256", "uint256", "uint256"],
                      lambda o=o, sub=sub: m.liquidation_state(o, sub, now)),
                _call(f"isLiquidatable {tag}", vault, "isLiquidatable(address,uint32)", *a, ["bool"],
                      lambda o=o, sub=sub: m.is_liquidatable(o, sub, now)),
            ]
            # The health views share one code path: when it reverts, one call proves it.
            out.extend(health[:1] if health[0].expected[0] == "revert" else health if full else health[:4])
        return out

    def _batch(self, views: list[View]):
        data = _encode("batch(address[],bytes[])", [[v.target for v in views], [v.data for v in views]])
        try:
            # An explicit `from` spares web3's eth-tester middleware a lookup of the node's accounts.
            raw = self.w3.eth.call({"from": self.addr[0], "to": self.env.batch.address, "data": data})
        except Exception as exc:  # noqa: BLE001 - the node's revert exception type varies
            blob = revert_data(exc)
            assert blob[:4] == self.env.errors.call_failed, f"batch call failed oddly: {exc!r}"
            i, reason = abi_decode(["uint256", "bytes"], blob[4:])
            return None, (i, self.env.errors.decode(reason))
        (results,) = abi_decode(["bytes[]"], bytes(raw))
        return results, None

    def compare(self, accts, markets=MARKETS, full: bool = False, auctions=(), lps=()) -> None:
        """Compare the global views, `markets`' and `auctions`' views, every view of `accts` and of the
        LPs `lps` at the head block's time (`full`: every auction and LP, and the derived views)."""
        now = self.w3.eth.get_block("latest")["timestamp"]
        self.check(self.views(now, accts, markets, full, auctions, lps), now)

    def check(self, views: list[View], now: int) -> None:
        """Each view answers on chain what the model expects (a value, or the same revert)."""
        ok = [v for v in views if v.expected[0] != "revert"]
        results, failure = self._batch(ok)
        if failure is not None:
            i, err = failure
            raise AssertionError(f"view {ok[i].label} reverted on chain with {err}, model: {ok[i].expected}\n"
                                 + self.trace())
        for v, r in zip(ok, results):
            got = tuple(_norm(x) for x in abi_decode(v.types, r))
            assert got == v.expected, f"{v.label} at t={now}: chain {got} vs model {v.expected}\n" + self.trace()
        for v in views:
            if v.expected[0] == "revert":
                _, failure = self._batch([v])
                assert failure is not None, f"{v.label}: model reverts {v.expected[1:]} but chain answered\n" + self.trace()
                assert ("revert",) + failure[1] == v.expected, (
                    f"{v.label}: chain reverts {failure[1]} vs model {v.expected[1:]}\n" + self.trace())

    def trace(self) -> str:
        return "steps so far:\n  " + "\n  ".join(self.log)


LIQUIDATION_EVENTS = {
    "kick": (keccak(text="Kick(uint256,address,uint32,uint32,int256,uint256,address,uint256,uint256)"),
             ["uint32", "int256", "uint256", "address", "uint256", "uint256"]),
    "take": (keccak(text="Take(uint256,address,uint32,uint256,uint256,int256)"),
             ["uint32", "uint256", "uint256", "int256"]),
    "redo": (keccak(text="Redo(uint256,uint8,uint256,address,uint256)"), ["uint8", "uint256", "address", "uint256"]),
    "backstop": (keccak(text="Backstop(uint256,int256,int256)"), ["int256", "int256"]),
}

AMM_EVENTS = {
    "syncdepth": (keccak(text="DepthSynced(uint32,uint256,uint256,uint256,uint256,int256)"),
                  ["uint256", "uint256", "uint256", "uint256", "int256"]),
    "repeg": (keccak(text="Repeg(uint32,uint256,uint256,uint256,int256)"), ["uint256", "uint256", "uint256", "int256"]),
}

DEPTH_SYNC_COST = keccak(text="DepthSyncCost(uint32,int256,int256)")
DEPTH_CHARGED = keccak(text="DepthCharged(uint32,int256,int256)")
AUCTION_CANCELLED = keccak(text="AuctionCancelled(uint256,int256,int256,uint256)")
SHORTFALL_RECORDED = keccak(text="ShortfallRecorded(address,uint32,uint256,uint256)")
BAD_DEBT = keccak(text="BadDebt(address,uint32,uint256,uint256,uint256)")
KEEPER_BOUNTY = keccak(text="KeeperBounty(address,uint256)")

POSITION_CHANGED = keccak(
    text="PositionChanged(address,uint32,uint32,int256,int256,uint256,int256,int256,int256,int256,uint256)")


def _event_logs(receipt, topic: bytes) -> list:
    return [lg for lg in receipt["logs"] if bytes(lg["topics"][0]) == topic]


def _one_event_data(receipt, topic: bytes, types: list[str]) -> tuple:
    """The decoded data fields of the receipt's one log with `topic` (there must be exactly one)."""
    logs = _event_logs(receipt, topic)
    assert len(logs) == 1, f"expected one event with topic {topic.hex()}, got {logs}"
    return abi_decode(types, bytes(logs[0]["data"]))


def _topic_int(log, i: int) -> int:
    return int.from_bytes(bytes(log["topics"][i]), "big")


def _topic_address(log, i: int) -> str:
    return "0x" + bytes(log["topics"][i])[-20:].hex()


def _encode(sig: str, args: list) -> bytes:
    types = sig[sig.index("(") + 1:-1]
    return _selector(sig) + abi_encode([t for t in _split_types(types)], args)


def _split_types(types: str) -> list[str]:
    return [t for t in types.split(",") if t] if "(" not in types else [types]




# ---------------------------------------------------------------------------- environment builder


def _deployment_stamps(system) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """The blocks of the deployment's listings, first skew-setter and funding-parameter calls (each accrues, which moves
    lastUpdate past the listing), and those blocks' times. Deployment facts: read once per deployment and kept in
    `system.extra` (a log query over the whole chain grows with every block a worker has mined: 1.5 s a call late
    in a run). The fast tier has no Ape chain to query: there the deployment sets no skew term after listing (the
    shipped config), so lastUpdate is the listing time."""
    cached = system.extra.get("_deployment_stamps")
    if cached is not None:
        return cached
    ch = system.clearing_house
    listed: dict[int, int] = {}
    skew: dict[int, int] = {}
    funding: dict[int, int] = {}  # the deployment's setFundingParams (a funding period or time constant of its own)
    stamp: dict[int, int] = {}
    try:
        from ape import chain as ape_chain

        head = ape_chain.blocks.head.number
        listed = {int(log.marketId): log.block_number for log in ch.MarketListed.range(0, head + 1)}
        for log in ch.SkewFundingSet.range(0, head + 1):
            skew.setdefault(int(log.marketId), log.block_number)  # the deployment's own call, the first
        for log in ch.FundingParamsSet.range(0, head + 1):  # listMarket emits one too: the deployment's is next
            if log.block_number != listed.get(int(log.marketId)):
                funding.setdefault(int(log.marketId), log.block_number)
        stamp = {n: ape_chain.blocks[n].timestamp for n in {*listed.values(), *skew.values(), *funding.values()}}
    except (ImportError, AttributeError):
        listed, skew, funding = {}, {}, {}
    if all(m.id in listed for m in system.markets.values()):
        system.extra["_deployment_stamps"] = (listed, skew, funding, stamp)
    return listed, skew, funding, stamp


def deployment_model(system, deployer) -> Model:
    """vperp.model.Model in the state a fresh `deploy(deployer, system.config)` left: every market listed when
    the chain says, its feed answered when the chain says, at the chain's addresses."""
    ids = {m.id: m for m in system.markets.values()}
    ch = system.clearing_house
    listed, skew, funding, stamp = _deployment_stamps(system)
    return Model.from_config(
        system.config,
        listed_at={i: stamp[listed[i]] if i in listed else ch.marketState(i).lastUpdate for i in ids},
        skew_funding_at={i: stamp[b] for i, b in skew.items()},
        funding_params_at={i: stamp[b] for i, b in funding.items()},
        oracle_updated_at={i: m.oracle.latestTimestamp() for i, m in ids.items()},
        oracles={i: m.oracle.address for i, m in ids.items()},
        deployer=deployer.address,
    )


def build_env(accounts, chain, project, traders: int, prefund: dict[int, int], warmup=()) -> Env:
    """A fresh deployment, the model of it, `traders` funded accounts (accounts[1..]) with
    `prefund[sub]` human units on each listed sub-account, approvals for the Vault and the pool, and
    `warmup` steps run (and compared) on both. The caller snapshots the chain after this."""
    deployer = accounts[0]
    actors = [accounts[i] for i in range(1, traders + 1)]
    system = deploy(deployer, lagging_peg_config())
    ch, vault, usdc, pool = system.clearing_house, system.vault, system.collateral, system.pool
    batch = project.BatchCaller.deploy(sender=deployer)
    for t in actors:
        usdc.mint(t, 10**18, sender=t)
        usdc.approve(vault, MAX_UINT, sender=t)
        usdc.approve(pool, MAX_UINT, sender=t)
    model = deployment_model(system, deployer)
    for t in actors:
        for sub, amount in prefund.items():
            units = system.units(amount)
            vault.deposit(sub, units, sender=t)
            model.deposit(t.address, sub, units)
    # A governor that owns nothing (the deployer keeps the modules) and its breaker, never poked: what
    # CircuitBreaker.check measures is compared with the model's mirror (vperp.model.breaker_check) in full.
    timelock = project.GovernanceTimelock.deploy(2 * 86_400, [], ["0x" + "00" * 20], deployer, sender=deployer)
    governor = project.RiskGovernor.deploy(vault, ch, system.liquidation, pool, system.amm, timelock, deployer,
                                           deployer, sender=deployer)
    breaker = project.CircuitBreaker.deploy(governor, sender=deployer)
    # Market 2 has its own breaker thresholds, at the bounds' tight ends (so they trip where the global ones
    # would not): the mirror must use them too. Market 1 keeps the global ones. The deployer sets them while the
    # governor has no breaker wired.
    thresholds = {2: MarketThresholds(move_threshold=10**16, divergence_threshold=5 * 10**15, divergence_duration=60,
                                      max_skew_share=10**16)}
    for mid, t in thresholds.items():
        breaker.setMarketThresholds(mid, (t.move_threshold, t.divergence_threshold, t.divergence_duration,
                                          t.max_skew_share), sender=deployer)
    e = Env(chain, system, batch, actors, Errors(ch, vault, system.liquidation, pool, system.amm), model, chain.provider.web3,
            x0={i: model.markets[i].x for i in model.markets}, breaker=breaker, breaker_thresholds=thresholds)
    warm = Runner(e, model)
    for step in warmup:
        warm.step(step)
        warm.compare(warm.touched, MARKETS, full=True)
    return e


def step_and_compare(runner: Runner, step: tuple) -> None:
    """One step, then the views it can have moved: globals, the markets, auctions, accounts and LPs
    it acted on (each view runs the funding kernel in the EVM, which dominates the run time)."""
    runner.step(step)
    runner.compare(runner.touched, runner.touched_markets, auctions=runner.touched_auctions, lps=runner.touched_lps)
    STATS["steps"] += 1
    STATS["funding_steps"] += any(mk.rate or mk.target for mk in runner.model.markets.values())
    STATS["suspended_steps"] += runner.model.lp_flows_suspended(runner.w3.eth.get_block("latest")["timestamp"])[0]


def report_line(profile: str, name: str) -> str:
    rate = STATS["steps"] / STATS["seconds"] if STATS["seconds"] else 0.0
    return (f"{name} ({profile} profile): {STATS['examples']} examples, {STATS['steps']} steps "
            f"({STATS['reverts']} reverted) in {STATS['seconds']:.1f} s = {rate:.2f} steps/s; "
            f"{STATS['trades']} trades ({STATS['funding_trades']} settling funding), {STATS['kicks']} kicks, "
            f"{STATS['takes']} takes, {STATS['redos']} redos, {STATS['cancels']} cancels, "
            f"{STATS['backstops']} backstops ({STATS['partial_backstops']} partial), "
            f"{STATS['bad_debt_events']} bad debts resolved ({STATS['bad_debts']} by resolveBadDebt), "
            f"{STATS['shortfall_events']} shortfall records ({STATS['shortfall_credits']} by deposits/transfers "
            f"into accounts in liquidation), {STATS['backstop_cancels']} backstops cancelling a recovered auction, "
            f"{STATS['dislocations']} steps recording a dislocation, {STATS['keeper_bounties']} keeper bounties, "
            f"{STATS['lp']} pool actions, {STATS['suspended_steps']} steps with LP flows suspended, "
            f"{STATS['depth_syncs']} depth syncs, {STATS['repegs']} repegs; "
            f"reverts by error: {dict(sorted(STATS['errors'].items()))}")


def reset_stats() -> None:
    for key in STATS:
        STATS[key] = {} if key == "errors" else 0


def print_report(request, line: str) -> None:
    """Print the module's fuzz summary past pytest's output capture (on an xdist worker, which has no
    terminal: into the controller's report folder, printed at the end of the run; see conftest.py)."""
    folder = os.environ.get("VPERP_REPORT_DIR")
    if hasattr(request.config, "workerinput") and folder and Path(folder).is_dir():
        name = request.node.nodeid.replace("/", "_").replace(":", "_")
        with open(Path(folder) / f"{name}.txt", "a") as fh:
            fh.write(line + "\n")
        return
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)
    else:
        print(line)
