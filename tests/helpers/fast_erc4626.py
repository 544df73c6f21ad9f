"""Helpers of the ERC-4626 property suite (tests/fast/test_erc4626_properties.py), not a test.

- `Env`: the whole system deployed by `vperp.deploy` on a `FastChain` (vperp.fast.fast_deploy), plus the
  suite's actors: three LPs and a donor that are `BatchCaller` contracts (so one eth_call can read a
  balance, call the pool and read the balance again, all in one state and at one timestamp), a stranger
  with nothing, two traders, a levered trader, a keeper/arbitrageur. The seed LP position (the deployer's
  10M deposit) is moved to LP 0, the whale; LPs 1 and 2 deposit 1M and 10k. `Env.base` is a snapshot of
  that state.
- calls: `Handle.view` (an eth_call of a view), `Env.send` (a transaction; every transaction goes
  through it, so observers can measure what each one changed), `Env.batch_call` / `Env.batch_send` (an
  LP's calls through its BatchCaller; a revert is `Refused` with the inner call's error and index).
- time: `Env.goto(T, refresh)` makes the head block's timestamp exactly T, re-posting the feeds' answers
  in the last blocks before it (so they are fresh at T) or not (so they may go stale).
- `STEPS` (Hypothesis) and `Env.apply(step)`: the actions that build the states the properties run
  in (LP flows, share transfers, donations, trades, index moves and gaps, stale feeds, pause levels,
  pool parameters, a levered account's bad debt kicked and taken, repegs and depth syncs, the pool's
  ledger line filled up to int128.max, funding off, and moving to a request's cooldown and window
  edges). A step that reverts is kept as a reverted step: the state is what it is.
- the ERC-4626 arithmetic the properties expect (`floor_div`, `ceil_div`), and the int128 bounds.
"""
from __future__ import annotations

import math
from collections import Counter

from eth_abi import decode as abi_decode
from hypothesis import strategies as st

from vperp.config import plain_config
from vperp.fast import Account, FastChain, Revert, fast_deploy, mnemonic_accounts

from vperp.units import WAD, funding_off_params
SCALE = 10**12  # wad per token unit (6-decimal collateral)
OFFSET = 10**6  # OpenZeppelin's virtual shares: 10 ** _decimalsOffset(), with one virtual asset
INT128_MAX = 2**127 - 1
MAX_UINT = 2**256 - 1
PER_CALL = INT128_MAX // SCALE  # the Vault's bound on one amount, in token units
ETH, BTC = 1, 2
MARKETS = (ETH, BTC)
# base sizes that stay inside each market's band from the listed depth (ETH 10,000 x 3,000; BTC 500 x 60,000)
SIZE = {ETH: 450 * WAD, BTC: 22 * WAD}
MIN_SIZE = {ETH: 10**16, BTC: 10**15}
N_LPS = 3
STATS: Counter = Counter()  # what the module ran (steps by kind and outcome, properties, states reached)


def floor_div(n: int, d: int) -> int:
    return n // d


def ceil_div(n: int, d: int) -> int:
    return -(-n // d)


class Refused(Exception):
    """A reverted transaction or eth_call: the custom error's name and arguments (for a BatchCaller
    batch, those of the inner call that reverted, and its index)."""

    def __init__(self, name: str, args: tuple = (), index: int | None = None):
        super().__init__(f"{name}{args}" + (f" (call {index} of the batch)" if index is not None else ""))
        self.name, self.error_args, self.index = name, args, index


class Handle:
    """A deployed contract: calldata by function name, and views by eth_call."""

    def __init__(self, env: "Env", ctype: str, address: str):
        self.env, self.ctype, self.address = env, ctype, address.lower()
        self.functions = env.fc.artifacts[ctype].functions

    def data(self, name: str, *args) -> bytes:
        return self.functions[name].encode(args)

    def decode(self, name: str, raw: bytes):
        out = self.functions[name].decode(raw)
        return out[0] if len(out) == 1 else out

    def view(self, name: str, *args, sender: str | None = None):
        """An eth_call on the head block; raises `Revert` (vperp.fast) if it reverts."""
        raw = self.env.fc.call(sender or self.env.deployer, self.address, self.data(name, *args))
        return self.decode(name, raw)

    def __call__(self, name: str, *args) -> tuple:
        """(handle, function name, args): one entry of a batch."""
        return (self, name, args)


class Env:
    def __init__(self):
        fc = self.fc = FastChain()
        addrs = mnemonic_accounts(8)
        for a in addrs:
            fc.add_account(a)
        (self.deployer, self.trader0, self.trader1, self.levered, self.keeper, self.stranger,
         self.spare, _) = addrs
        self.traders = (self.trader0, self.trader1)
        s = self.system = fast_deploy(fc, Account(fc, self.deployer), plain_config())
        self.pool = Handle(self, "LiquidityPool", s.pool.address)
        self.vault = Handle(self, "Vault", s.vault.address)
        self.ch = Handle(self, "ClearingHouse", s.clearing_house.address)
        self.engine = Handle(self, "LiquidationEngine", s.liquidation.address)
        self.amm = Handle(self, "AmmController", s.amm.address)
        self.token = Handle(self, "MockERC20", s.collateral.address)
        self.oracles = {m.id: Handle(self, "MockAggregator", m.oracle.address) for m in s.markets.values()}
        self.batch_fn = fc.artifacts["BatchCaller"].functions["batch"]
        self.observers: list = []  # called with the receipt after every transaction
        self.last_receipt = None
        self.sent = 0  # transactions sent (the chain's own count goes back with every snapshot revert)
        self.lps = [fc.deploy(self.deployer, "BatchCaller")[0] for _ in range(N_LPS)]
        self.donor = fc.deploy(self.deployer, "BatchCaller")[0]
        P, T, V = self.pool, self.token, self.vault
        for lp in self.lps:
            self.batch_send(lp, [T("approve", P.address, MAX_UINT)])
        self.batch_send(self.donor, [T("approve", V.address, MAX_UINT)])
        for who, units in ((self.trader0, 5_000_000), (self.trader1, 5_000_000), (self.keeper, 20_000_000),
                           (self.levered, 0)):
            self.send(who, T, "mint", who, 10**30)
            self.send(who, T, "approve", V.address, MAX_UINT)
            if units:
                self.send(who, V, "deposit", 0, units * 10**6)
        # the seed LP position (the deployer's deposit) becomes LP 0's: the whale of the suite; LPs 1 and 2
        # start with 1M and 10k
        self.send(self.deployer, P, "transfer", self.lps[0], P.view("balanceOf", self.deployer))
        for lp, units in ((self.lps[1], 1_000_000), (self.lps[2], 10_000)):
            self.batch_send(lp, [T("mint", lp, units * 10**6), P("deposit", units * 10**6, lp)])
        self.base = fc.snapshot()

    # ------------------------------------------------------------------ transactions and calls

    def _raise(self, name: str, args: tuple):
        if name == "CallFailed":  # BatchCaller: the inner call's error
            index, reason = args
            inner, inner_args = self.fc.artifacts.decode_error(reason)
            raise Refused(inner, inner_args, index)
        raise Refused(name, args)

    def send(self, sender: str, handle: Handle, name: str, *args):
        """A transaction in a new block at the pending timestamp; raises `Refused` if it reverts."""
        r = self.fc.transact(sender, handle.address, handle.data(name, *args))
        self.sent += 1
        for observe in self.observers:
            observe(r)
        if r.status != 1:
            self._raise(*r.error)
        return handle.decode(name, r.output)

    def _batch_data(self, calls) -> bytes:
        return self.batch_fn.encode([[h.address for h, _, _ in calls], [h.data(n, *a) for h, n, a in calls]])

    def _batch_results(self, calls, raw: bytes) -> list:
        outs = abi_decode(["bytes[]"], raw)[0]
        return [h.decode(n, o) if h.functions[n].outputs else None for (h, n, _), o in zip(calls, outs)]

    def batch_call(self, actor: str, calls) -> list:
        """`actor`'s (a BatchCaller) calls in one eth_call on the head block: their decoded results, or
        `Refused` with the first failing call's error."""
        try:
            raw = self.fc.call(self.deployer, actor, self._batch_data(calls))
        except Revert as e:
            self._raise(e.name, e.error_args)
        return self._batch_results(calls, raw)

    def batch_send(self, actor: str, calls) -> list:
        """The same as a transaction (its receipt is kept in `last_receipt`)."""
        r = self.last_receipt = self.fc.transact(self.deployer, actor, self._batch_data(calls))
        self.sent += 1
        for observe in self.observers:
            observe(r)
        if r.status != 1:
            self._raise(*r.error)
        return self._batch_results(calls, r.output)

    def pool_events(self, name: str) -> list[dict]:
        """The pool's events called `name` in the last batch transaction, decoded by field."""
        out = []
        for lg in self.last_receipt.logs:
            d = self.fc.artifacts.decode_log(lg.topics, lg.data) if lg.address == self.pool.address else None
            if d is not None and d[0] == name:
                out.append(d[1])
        return out

    def call_as(self, sender: str, handle: Handle, name: str, *args):
        """An eth_call of a state-changing function from `sender` (an EOA) on the head block."""
        try:
            return handle.decode(name, self.fc.call(sender, handle.address, handle.data(name, *args)))
        except Revert as e:
            self._raise(e.name, e.error_args)

    # ------------------------------------------------------------------ time

    @property
    def now(self) -> int:
        return self.fc.timestamp

    def goto(self, target: int, refresh: bool) -> bool:
        """Make the head block's timestamp exactly `target`. With `refresh`, every feed re-posts its answer
        in the last blocks up to `target` (fresh there); without, a block that changes nothing is mined at
        `target` (when `target` is only a second ahead, only the last feed re-posts). False (nothing done)
        if `target` is not ahead of the head."""
        if target <= self.now:
            return False
        feeds = list(self.oracles.values()) if refresh else []
        feeds = feeds[len(feeds) - min(len(feeds), target - self.now):]  # those that fit before target
        first = target - max(len(feeds), 1) + 1
        if not feeds:
            self.fc.pending_timestamp = target
            self.send(self.deployer, self.token, "totalSupply")
            return True
        for i, o in enumerate(feeds):
            self.fc.pending_timestamp = first + i
            self.send(self.deployer, o, "updateAnswer", o.view("latestAnswer"))
        return True

    def advance(self, seconds: int, refresh: bool) -> None:
        self.goto(self.now + max(seconds, 2), refresh)

    # ------------------------------------------------------------------ reads

    def request(self, lp: str) -> tuple[int, int]:
        return tuple(self.pool.view("withdrawRequest", lp))

    def shares(self, who: str) -> int:
        return self.pool.view("balanceOf", who)

    # ------------------------------------------------------------------ steps

    def apply(self, step: tuple) -> str:
        """Run one step (see STEPS); returns "ok" or the name of the error that reverted it."""
        kind = step[0]
        try:
            getattr(self, "_step_" + kind)(*step[1:])
            out = "ok"
        except (Refused, Revert) as e:  # Revert: a view the step reads refused (a stale feed's index)
            out = e.name
        STATS[f"step {kind}: {out}"] += 1
        return out

    def _step_deposit(self, i: int, amount: int) -> None:
        P, T, lp = self.pool, self.token, self.lps[i]
        self.batch_send(lp, [T("mint", lp, amount), P("deposit", amount, lp)])

    def _step_mint(self, i: int, shares: int) -> None:
        P, T, lp = self.pool, self.token, self.lps[i]
        cost = P.view("previewMint", shares)
        self.batch_send(lp, [T("mint", lp, cost * 101 // 100 + 1), P("mint", shares, lp)])  # a block's slack

    @staticmethod
    def _part(total: int, frac) -> int:
        """`frac` of `total` (at least 1: frac 0 means a single unit)."""
        return max(1, int(total * frac)) if frac else 1

    def _step_request(self, i: int, frac) -> None:
        lp = self.lps[i]
        self.batch_send(lp, [self.pool("requestWithdraw", self._part(self.shares(lp), frac))])

    def _step_redeem(self, i: int, frac) -> None:
        lp = self.lps[i]
        self.batch_send(lp, [self.pool("redeem", self._part(self.pool.view("maxRedeem", lp), frac), lp, lp)])

    def _step_withdraw(self, i: int, frac) -> None:
        lp = self.lps[i]
        self.batch_send(lp, [self.pool("withdraw", self._part(self.pool.view("maxWithdraw", lp), frac), lp, lp)])

    def _step_transfer(self, i: int, j: int, amount) -> None:
        if i == j:
            raise Refused("SameLp")
        src, dst = self.lps[i], self.lps[j]
        n = self._part(self.shares(src), amount) if isinstance(amount, float) else amount  # a fraction, or shares
        self.batch_send(src, [self.pool("transfer", dst, n)])

    def _step_donate(self, amount: int) -> None:
        T, d = self.token, self.donor
        self.batch_send(d, [T("mint", d, amount), self.vault("fundPool", amount)])

    def _deadline(self) -> int:
        return self.now + 3_600

    def _open(self, who: str, market: int, base: int) -> None:
        if base == 0:
            return
        if abs(base) < MIN_SIZE[market]:
            base = MIN_SIZE[market] if base > 0 else -MIN_SIZE[market]
        self.send(who, self.ch, "openPosition", 0, market, base, MAX_UINT if base > 0 else 0, self._deadline())

    def _step_open(self, t: int, market: int, frac) -> None:
        self._open(self.traders[t], market, int(SIZE[market] * frac))

    def _step_close(self, t: int, market: int) -> None:
        size = self.ch.view("position", self.traders[t], 0, market)[0]
        if size == 0:
            raise Refused("NoPosition")
        self.send(self.traders[t], self.ch, "closePosition", 0, market, 0 if size > 0 else MAX_UINT, self._deadline())

    def _step_oracle(self, market: int, bps: int) -> None:
        o = self.oracles[market]
        self.send(self.deployer, o, "updateAnswer", o.view("latestAnswer") * (10_000 + bps) // 10_000)

    def _step_time(self, seconds: int, refresh: bool) -> None:
        self.advance(seconds, refresh)

    def _step_edge(self, i: int, which: str, refresh: bool) -> None:
        """Move to one of LP i's request edges: the second before it matures, the second it matures, the
        last second of its window, the first second after."""
        shares, unlock = self.request(self.lps[i])
        if shares == 0:
            raise Refused("NoWithdrawRequest")
        window = self.pool.view("poolParams")[1]
        target = {"unlock-1": unlock - 1, "unlock": unlock, "unlock+1": unlock + 1,
                  "expiry-1": unlock + window - 1, "expiry": unlock + window, "expiry+1": unlock + window + 1}[which]
        if not self.goto(target, refresh):
            raise Refused("EdgePassed")
        STATS[f"edge reached: {which}"] += 1

    def _step_cycle(self, i: int, frac, which: str) -> None:
        """LP i requests `frac` of its shares and waits for the request to mature (fresh feeds)."""
        self._step_request(i, frac)
        self._step_edge(i, which, True)

    def _step_pause(self, level: int) -> None:
        self.send(self.deployer, self.vault, "setPauseLevel", level)

    def _step_params(self, cooldown: int, window: int, reserve: int) -> None:
        self.send(self.deployer, self.pool, "setPoolParams", (cooldown, window, reserve))

    def _step_funding_off(self) -> None:
        """Funding off in every market: the parameters of `helpers.trading.funding_off` (ape; it cannot run on
        the FastChain's call API), both from `vperp.units.funding_off_params`."""
        for m in MARKETS:
            fp = self.ch.view("fundingParams", m)
            self.send(self.deployer, self.ch, "setFundingParams", m, funding_off_params(fp))

    def _step_baddebt(self, gap_bps: int, arbitrage: bool) -> None:
        """A 450 ETH long on 220k of margin, an index gap down by `gap_bps`, the kick (bad debt set aside
        beyond the insurance fund), and optionally an arbitrageur selling the vAMM back to the index."""
        who = self.levered
        self.send(who, self.vault, "deposit", 0, 220_000 * 10**6)
        self._open(who, ETH, 450 * WAD)
        self._step_oracle(ETH, -gap_bps)
        self.send(self.keeper, self.engine, "kick", who, 0, ETH, self.keeper)
        if arbitrage:
            self._arbitrage(ETH)

    def _arbitrage(self, market: int) -> None:
        """The keeper trades the vAMM to the index (as far as the band lets it)."""
        x, y = self.ch.view("marketState", market)[:2]
        index = self.ch.view("indexPrice", market)
        target_x = math.isqrt(x * y * WAD // index)
        self._open(self.keeper, market, x - target_x)

    def _step_arbitrage(self, market: int) -> None:
        self._arbitrage(market)

    def _step_take(self) -> None:
        n = self.engine.view("auctionCount")
        if n == 0:
            raise Refused("NoAuction")
        self.send(self.keeper, self.engine, "take", n, 2**255, 2**255, 0)

    def _step_amm(self, what: str, market: int) -> None:
        self.send(self.keeper, self.amm, {"repeg": "repeg", "sync": "syncDepth"}[what], market)

    def _step_poke(self, market: int) -> None:
        self.send(self.keeper, self.ch, "pokeFunding", market)

    def _step_ledger(self, room: int, how: str) -> None:
        """Fill the pool's ledger line (Vault.poolBalance, an int128) to `room` token units below its
        limit, by a donation or by LP 2's deposit."""
        cash = self.vault.view("poolBalance")
        amount = (INT128_MAX - cash) // SCALE - room
        if amount <= 0:
            raise Refused("LedgerAlreadyFull")
        if how == "donate":
            self._step_donate(amount)
        else:
            self._step_deposit(2, amount)


# ---------------------------------------------------------------------------- strategies

LP = st.integers(0, N_LPS - 1)
UNITS = st.one_of(st.integers(1, 20), st.integers(1, 10**6), st.integers(10**6, 10**13),
                  st.sampled_from([10**6, 10**12, 10**13, 5 * 10**13]))
SHARES = st.one_of(st.integers(1, 10**6), st.integers(10**6, 10**19), st.sampled_from([10**12, 10**18, 10**19]))
FRACTION = st.sampled_from([0.0, 0.001, 0.1, 0.5, 0.999, 1.0])  # 0.0: a single unit
EDGES = ("unlock-1", "unlock", "unlock+1", "expiry-1", "expiry", "expiry+1")
MARKET = st.sampled_from(MARKETS)

LP_FLOWS = st.one_of(
    st.tuples(st.just("deposit"), LP, UNITS),
    st.tuples(st.just("mint"), LP, SHARES),
    st.tuples(st.just("request"), LP, FRACTION),
    st.tuples(st.just("redeem"), LP, FRACTION),
    st.tuples(st.just("withdraw"), LP, FRACTION),
    st.tuples(st.just("transfer"), LP, LP, st.one_of(st.integers(1, 10**6), FRACTION)),
    st.tuples(st.just("cycle"), LP, FRACTION, st.sampled_from(["unlock", "unlock+1", "expiry"])),
    st.tuples(st.just("cycle"), LP, FRACTION, st.sampled_from(["unlock", "unlock+1", "expiry"])),
)
TIME = st.one_of(
    st.tuples(st.just("time"), st.sampled_from([2, 60, 901, 3_600, 86_400, 86_401, 3 * 86_400]), st.booleans()),
    st.tuples(st.just("edge"), LP, st.sampled_from(EDGES), st.booleans()),
)
MARKET_EVENTS = st.one_of(
    st.tuples(st.just("open"), st.integers(0, 1), MARKET, st.sampled_from([-1, -0.5, -0.05, 0.01, 0.05, 0.5, 1])),
    st.tuples(st.just("close"), st.integers(0, 1), MARKET),
    st.tuples(st.just("oracle"), MARKET, st.sampled_from([-2_500, -1_200, -300, -50, 50, 300, 1_200, 2_500])),
    st.tuples(st.just("baddebt"), st.sampled_from([1_500, 2_000, 3_000]), st.booleans()),
    st.tuples(st.just("take")),
    st.tuples(st.just("arbitrage"), MARKET),
    st.tuples(st.just("amm"), st.sampled_from(["repeg", "sync"]), MARKET),
    st.tuples(st.just("poke"), MARKET),
)
GOVERNANCE = st.one_of(
    st.tuples(st.just("pause"), st.integers(0, 3)),
    st.tuples(st.just("params"), st.sampled_from([0, 60, 86_400]), st.sampled_from([3_600, 2 * 86_400]),
              st.sampled_from([0, 2 * 10**17, 10**18])),
    st.tuples(st.just("funding_off")),
)
DONATIONS = st.one_of(
    st.tuples(st.just("donate"), UNITS),
    st.tuples(st.just("donate"), UNITS),
    st.tuples(st.just("ledger"), st.sampled_from([0, 1, 2, 999, 10**6, 10**7, 10**9, 10**13]),
              st.sampled_from(["donate", "deposit"])),
)
# LP flows and time twice as likely as the rest
STEPS = st.one_of(LP_FLOWS, TIME, LP_FLOWS, TIME, MARKET_EVENTS, GOVERNANCE, DONATIONS)
