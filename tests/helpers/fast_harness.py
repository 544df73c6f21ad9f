"""The fast tier's harness (not a test): tests/helpers/chain_harness.py's `Runner` on a `vperp.fast.FastChain`.

The environment is built by `chain_harness.build_env` itself (vperp.deploy, the funded traders, the
approvals, the warm-up steps, the model of it all) against small stand-ins for Ape's accounts,
`project`, `chain` and web3 (`FastEth`), so the fast tier starts from the same state as the Ape fuzzers.
`FastRunner` inherits the step vocabulary and `Runner.step` (the transaction, the model's action, the
revert and event comparisons) unchanged and replaces only what is slow:
- transactions and eth_calls go to pyrevm directly;
- after each step a lean set of views is compared (`lean_views`): the ledger (poolBalance,
  insuranceFund, pendingBadDebt, the Vault's token balance), the pool (navWad, totalSupply), the
  engine's liveNotional and auctionCount, for each market the step touched its marketState and the AMM
  controller's concentration and pegPrice, for each account it touched collateral, openMarkets,
  shortfallOf and both positions, each auction it touched, each LP's shares. Calldata is built once and
  cached; results are decoded word by word. At the end of every example the same views widen to
  everything the example touched, with the health views; one example in `full_every` (chosen by a hash
  of its steps, so a replay checks the same) also gets the
  whole `Runner.compare(..., full=True)` (every view of chain_harness, through the BatchCaller) at its
  start and end.
- the exploit properties (`Properties`) are checked after every step.
- `minimize` cuts a failing step list down (delta debugging) for a short replayable report.

`FAST` counts what ran: steps per action kind, reverts by error, events, gas per action kind.
"""
from __future__ import annotations

import re
import time
import zlib
from collections import Counter
from types import SimpleNamespace

from helpers import chain_harness
from helpers.chain_harness import (MARKETS, MAX_UINT, REDUCE_REFUSALS, WAD, Runner, _model_error, _norm, _selector,
                                   build_env)
from eth_abi import encode as abi_encode
from helpers.differential import ConcentrationSteps, concentration_of
from vperp.fast import FastChain, mnemonic_accounts
from vperp.fast.chain import Receipt, Revert
from vperp.fast.deploy import Account, Project, ape_project
from vperp.fast.model import fast_copy
from vperp.model import Cancelled, ModelRevert, peg_holds

TRADES = ("open", "reduce", "close", "lever")
NAV_WEI = 4  # rounding a trade may move the pool's NAV by beyond its fee [wei] (helpers.stateful's F3)

FAST = {"examples": 0, "steps": 0, "seconds": 0.0, "cpu": 0.0, "kinds": Counter(), "ok": Counter(),
        "errors": Counter(), "events": Counter(), "gas": {}, "props": Counter(), "full_compares": 0}


def reset_fast() -> None:
    FAST.update(examples=0, steps=0, seconds=0.0, cpu=0.0, full_compares=0, gas={})
    for key in ("kinds", "ok", "errors", "events", "props"):
        FAST[key] = Counter()


def _gas(label: str, used: int) -> None:
    g = FAST["gas"].get(label)
    if g is None:
        FAST["gas"][label] = [used, used, used, 1]  # min, max, sum, count
    else:
        g[0], g[1], g[2], g[3] = min(g[0], used), max(g[1], used), g[2] + used, g[3] + 1


# ---------------------------------------------------------------------------- Ape/web3 stand-ins


class _CallError(Exception):
    """What web3 raises for a reverted eth_call: `.data` is the revert data as hex."""

    def __init__(self, data: bytes):
        super().__init__("execution reverted")
        self.data = "0x" + data.hex()


def receipt_dict(r: Receipt) -> dict:
    return {"status": r.status, "blockNumber": r.block_number, "gasUsed": r.gas_used,
            "logs": [{"address": lg.address, "topics": lg.topics, "data": lg.data} for lg in r.logs]}


class FastEth:
    """The part of `web3.eth` chain_harness uses, answered by the fast chain."""

    def __init__(self, fc: FastChain):
        self.fc = fc

    def get_block(self, which):
        fc = self.fc
        if which == "latest" or which == fc.block_number:
            return {"number": fc.block_number, "timestamp": fc.timestamp}
        raise KeyError(f"block {which}: the fast chain keeps the head only")

    def send_transaction(self, tx) -> Receipt:
        return self.fc.transact(str(tx["from"]).lower(), str(tx["to"]).lower(), bytes(tx["data"]), gas=tx.get("gas"))

    def wait_for_transaction_receipt(self, receipt: Receipt, **_) -> dict:
        return receipt_dict(receipt)

    def call(self, tx, *_):
        try:
            return self.fc.call(str(tx.get("from") or self.fc.default_sender).lower(), str(tx["to"]).lower(),
                                bytes(tx["data"]))
        except Revert as e:
            raise _CallError(e.data) from None


class FastApeChain:
    """The part of Ape's `chain` chain_harness uses: the pending timestamp, snapshots, provider.web3."""

    def __init__(self, fc: FastChain):
        self.fc = fc
        self.provider = SimpleNamespace(web3=SimpleNamespace(eth=FastEth(fc)))

    @property
    def pending_timestamp(self) -> int:
        return self.fc.pending_timestamp

    @pending_timestamp.setter
    def pending_timestamp(self, value: int) -> None:
        self.fc.pending_timestamp = value

    def snapshot(self):
        return self.fc.snapshot()

    def restore(self, token) -> None:
        self.fc.revert(token)


def build_fast_env(traders: int, prefund: dict, warmup=(), *, exact_gas: bool = False):
    """chain_harness.build_env on a fresh FastChain: the test mnemonic's accounts (accounts[0] deploys,
    accounts[1..traders] trade), the same deployment, funding, approvals and warm-up as the Ape fuzzers."""
    fc = FastChain(exact_gas=exact_gas)
    addrs = mnemonic_accounts(traders + 1)
    for a in addrs:
        fc.add_account(a)
    fc.default_sender = addrs[0]
    accounts = [Account(fc, a) for a in addrs]
    project = Project(fc)
    with ape_project(project):
        env = build_env(accounts, FastApeChain(fc), project, traders, prefund, warmup)
    env.fc = fc
    env.base_model = fast_copy(env.base_model)  # copies of it (every example's, every trial's) are FastModels
    return env


# ---------------------------------------------------------------------------- lean views


def _kinds(t: str) -> str:
    """One letter per 32-byte word of a static ABI type: i = signed, u = unsigned or bool, a = address."""
    if t.startswith("("):
        parts, depth, cur = [], 0, ""
        for ch in t[1:-1]:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += ch == "("
            depth -= ch == ")"
            cur += ch
        parts.append(cur)
        return "".join(_kinds(x) for x in parts)
    if t.startswith("int"):
        return "i"
    if t.startswith("uint") or t == "bool":
        return "u"
    if t == "address":
        return "a"
    raise ValueError(f"lean views decode static value types only, not {t}")


def _word_decoder(kinds: str):
    """Decode a static return value: one letter per 32-byte word, i = int, u = uint/bool, a = address."""
    def decode(raw: bytes) -> tuple:
        out = []
        for i, k in enumerate(kinds):
            w = raw[32 * i:32 * i + 32]
            if k == "a":
                out.append("0x" + w[12:].hex())
            else:
                out.append(int.from_bytes(w, "big", signed=k == "i"))
        return tuple(out)
    return decode


_DECODERS: dict[tuple, object] = {}  # (target, selector) -> decoder
_CALLDATA: dict[tuple, bytes] = {}


def _calldata(sig: str, args: tuple) -> bytes:
    key = (sig, args)
    data = _CALLDATA.get(key)
    if data is None:
        body = b"".join((int(a, 16) if isinstance(a, str) else a % 2**256).to_bytes(32, "big") for a in args)
        data = _CALLDATA[key] = _selector(sig) + body
    return data


def _encode_batch(targets: list[str], datas: list[bytes]) -> bytes:
    """BatchCaller.batch(address[], bytes[]) calldata, by hand (static words and padded byte strings)."""
    n = len(targets)
    w = lambda v: v.to_bytes(32, "big")  # noqa: E731
    head = _BATCH + w(64) + w(64 + 32 + 32 * n)
    addrs = w(n) + b"".join(bytes(12) + bytes.fromhex(t[2:]) for t in targets)
    offsets, bodies, pos = [], [], 32 * n
    for d in datas:
        offsets.append(w(pos))
        padded = d + bytes(-len(d) % 32)
        bodies.append(w(len(d)) + padded)
        pos += 32 + len(padded)
    return head + addrs + w(n) + b"".join(offsets) + b"".join(bodies)


def _decode_bytes_array(raw: bytes) -> list[bytes]:
    base = int.from_bytes(raw[0:32], "big")
    n = int.from_bytes(raw[base:base + 32], "big")
    start = base + 32
    out = []
    for i in range(n):
        off = start + int.from_bytes(raw[start + 32 * i:start + 32 * i + 32], "big")
        length = int.from_bytes(raw[off:off + 32], "big")
        out.append(raw[off + 32:off + 32 + length])
    return out


_BATCH = _selector("batch(address[],bytes[])")


# ---------------------------------------------------------------------------- the runner


class FastRunner(ConcentrationSteps, Runner):
    """chain_harness.Runner on the fast chain: same steps (with helpers.differential's concentration step), same
    per-step event checks, lean views."""

    def __init__(self, env, model):
        super().__init__(env, model)
        self.fc: FastChain = env.fc
        self.receipt: Receipt | None = None
        self.token = env.system.collateral.address
        self.batcher = env.batch.address
        self.caller = self.addr[0]
        self.props = Properties(self)
        s = env.system
        self.types = {s.vault.address: "Vault", s.clearing_house.address: "ClearingHouse",
                      s.liquidation.address: "LiquidationEngine", s.pool.address: "LiquidityPool",
                      s.amm.address: "AmmController", s.collateral.address: "MockERC20"}

    def next_timestamp(self) -> int:
        return self.fc.timestamp + 1 + self.jump

    def send(self, sender: str, target: str, data: bytes):
        r = self.fc.transact(sender.lower(), target.lower(), data, gas=5_000_000)
        self.receipt = r
        self.last_receipt = d = receipt_dict(r)  # (for ConcentrationSteps's event check)
        if r.status == 1:
            return d, None
        return d, self.env.errors.decode(r.revert_data)

    def probe(self, sender: str, target: str, data: bytes):
        try:
            return True, self.fc.call(sender.lower(), target.lower(), data)
        except Revert as e:
            return False, self.env.errors.decode(e.data)

    def compare(self, accts, markets=MARKETS, full: bool = False, auctions=(), lps=()) -> None:
        if full:
            FAST["full_compares"] += 1
            return super().compare(accts, markets, True, auctions, lps)
        self.lean_check(accts, markets, auctions, lps)

    # -------------------------------------------------------------- lean comparison

    def lean_views(self, now: int, accts, markets, auctions, lps, wide: bool = False) -> list:
        """(label, target, calldata, model thunk) of the views a step can have moved: the
        globals, the markets and accounts it touched (an account's positions in the touched markets), the
        auctions and LPs it touched. `wide` (the end of an example): every market, both positions of every
        account given, its health views, fundingState, tradersExitPnl and LP requests as well."""
        m = self.model
        vault, ch, pool, engine = self.vault, self.ch, self.pool, self.engine
        out = [
            ("poolBalance", vault, _calldata("poolBalance()", ()), m.pool_balance),
            ("insuranceFund", vault, _calldata("insuranceFund()", ()), m.insurance_fund),
            ("pendingBadDebt", vault, _calldata("pendingBadDebt()", ()), m.pending_bad_debt),
            ("token balance", self.token, _calldata("balanceOf(address)", (vault,)), lambda: m.token_balance),
            ("pool.navWad", pool, _calldata("navWad()", ()), lambda: m.pool_nav(now)),
            ("pool.totalSupply", pool, _calldata("totalSupply()", ()), lambda: m.pool_supply),
            ("liveNotional", engine, _calldata("liveNotional()", ()), lambda: m.live_notional),
            ("auctionCount", engine, _calldata("auctionCount()", ()), lambda: m.auction_count),
        ]
        if wide:
            markets = MARKETS
            out.append(("tradersExitPnl", ch, _calldata("tradersExitPnl()", ()),
                        lambda: m.traders_exit_pnl(now)))
        amm = self.amm
        for mid in sorted(markets):
            out.append((f"marketState({mid})", ch, _calldata("marketState(uint32)", (mid,)),
                        lambda mid=mid: m.market_state(mid, now)))
            out.append((f"concentration({mid})", amm, _calldata("concentration(uint32)", (mid,)),
                        lambda mid=mid: concentration_of(m, mid)))
            out.append((f"pegPrice({mid})", amm, _calldata("pegPrice(uint32)", (mid,)),
                        lambda mid=mid: m.peg_price(mid)))
            if wide:
                out.append((f"fundingState({mid})", ch, _calldata("fundingState(uint32)", (mid,)),
                            lambda mid=mid: m.funding_state(mid, now)))
        for t, sub in sorted(accts):
            o = self.addr[t]
            tag = f"trader{t}/{sub}"
            out.append((f"collateral {tag}", vault, _calldata("collateral(address,uint32)", (o, sub)),
                        lambda o=o, sub=sub: m.collateral(o, sub)))
            out.append((f"openMarkets {tag}", vault, _calldata("openMarkets(address,uint32)", (o, sub)),
                        lambda o=o, sub=sub: m.open_markets(o, sub)))
            out.append((f"shortfallOf {tag}", vault, _calldata("shortfallOf(address,uint32)", (o, sub)),
                        lambda o=o, sub=sub: m.shortfall_of(o, sub)))
            for mid in sorted(markets):
                out.append((f"position {tag} market {mid}", ch,
                            _calldata("position(address,uint32,uint32)", (o, sub, mid)),
                            lambda o=o, sub=sub, mid=mid: m.position(o, sub, mid, now)))
            if wide:
                for label, sig, fn in (
                        ("accountValue", "accountValue(address,uint32)", m.account_value),
                        ("freeCollateral", "freeCollateral(address,uint32)", m.free_collateral),
                        ("marginRequirements", "marginRequirements(address,uint32)", m.margin_requirements),
                        ("liquidationState", "liquidationState(address,uint32)", m.liquidation_state)):
                    out.append((f"{label} {tag}", vault, _calldata(sig, (o, sub)),
                                lambda o=o, sub=sub, fn=fn: fn(o, sub, now)))
        for i in sorted(auctions):
            out.append((f"auction({i})", engine, _calldata("auction(uint256)", (i,)),
                        lambda i=i: m.auction(i)))
        for t in sorted(lps):
            o = self.addr[t]
            out.append((f"pool.balanceOf trader{t}", pool, _calldata("balanceOf(address)", (o,)),
                        lambda o=o: m.pool_balance_of(o)))
            if wide:
                out.append((f"pool.withdrawRequest trader{t}", pool, _calldata("withdrawRequest(address)", (o,)),
                            lambda o=o: (lambda r: (r.shares, r.unlock_at) if r else (0, 0))(m.pool_requests.get(o))))
        return out

    def decoder(self, target: str, selector: bytes):
        """The word decoder of a view's return value, from the build's ABI of the contract at `target` (so a
        field added to a struct is compared as soon as the contracts are rebuilt)."""
        key = (target, selector)
        dec = _DECODERS.get(key)
        if dec is None:
            ct = self.fc.artifacts[self.types[target]]
            (fn,) = [f for f in ct.functions.values() if f.selector == selector]
            dec = _DECODERS[key] = _word_decoder("".join(_kinds(t) for t in fn.outputs))
        return dec

    def lean_check(self, accts, markets, auctions=(), lps=(), wide: bool = False) -> None:
        now = self.fc.timestamp
        views = self.lean_views(now, accts, markets, auctions, lps, wide)
        expected, batch = [], []
        for v in views:
            try:
                value = v[3]()
                expected.append(tuple(_norm(x) for x in value) if isinstance(value, tuple) else (_norm(value),))
                batch.append(v)
            except ModelRevert as e:
                self._expect_revert(v, ("revert",) + _model_error(e), now)
        raw = self.fc.call(self.caller, self.batcher, _encode_batch([v[1] for v in batch], [v[2] for v in batch]))
        for v, want, r in zip(batch, expected, _decode_bytes_array(raw)):
            got = self.decoder(v[1], v[2][:4])(r)
            if got != want:
                raise AssertionError(f"{v[0]} at t={now}: chain {got} vs model {want}\n" + self.trace())

    def _expect_revert(self, v, want, now) -> None:
        ok, out = self.probe(self.caller, v[1], v[2])
        assert not ok, f"{v[0]} at t={now}: model reverts {want[1:]} but chain answered\n" + self.trace()
        assert ("revert",) + out == want, f"{v[0]} at t={now}: chain reverts {out} vs model {want[1:]}\n" + self.trace()


# ---------------------------------------------------------------------------- exploit properties


class Properties:
    """Cheap exploit properties, after every step (counted in FAST["props"]):

    - attacker pair: while only the pair trades (and time passes), the index, the vAMM's depth and peg
      stay as they were when both were last flat, nobody else acts and nothing is liquidated, the pair
      never ends a round (both flat again) with more collateral than it started it with;
    - a trade moves the pool's NAV by its pool fee (plus the insurance part while the recorded shortfalls
      exceed the insurance fund) within NAV_WEI wei (helpers.stateful's F3);
    - the insurance fund only falls by the bad debt it pays (BadDebt's fromInsurance) and the keeper
      bounties of under-water kicks (KeeperBounty), and a resolved
      account is left with no negative collateral unless it still holds positions;
    - a free position can always be closed: with a valid index and no pause, an eth_call of
      closePosition at any price (no slippage limit) goes through (one position per step, in turn).
    """

    def __init__(self, runner: FastRunner, attackers=(), probe_every: int = 1):
        self.r = runner
        self.attackers = tuple(attackers)
        self.round = None  # [collateral of the pair, funding it settled since] while a round is valid
        self.turn = 0
        self.probe_every = probe_every  # the close probe runs on every n-th step
        self.steps = 0

    def set_attackers(self, attackers) -> None:
        self.attackers = tuple(attackers)
        self.round = None

    def before(self, step: tuple, T: int) -> dict:
        m = self.r.model
        pre = {"insurance": m.insurance_fund_wad, "bad_debts": len(m.bad_debt), "bounties": len(m.keeper_bounties)}
        if step[0] in TRADES:
            pre["nav"] = m.pool_nav(T)
            pre["uncovered"] = m.uncovered_bad_debt()
        return pre

    def after(self, step: tuple, T: int, pre: dict) -> None:
        r, m, kind = self.r, self.r.model, step[0]
        ok = r.last_error is None
        if ok and kind in TRADES:
            res = r.last_result
            drift = m.pool_nav(T) - pre["nav"] - (res.fee - res.to_insurance) - min(res.to_insurance, pre["uncovered"])
            assert -NAV_WEI <= drift <= NAV_WEI, f"{step} moved the pool's NAV by {drift} wei beyond its fee\n" + r.trace()
            FAST["props"]["trade NAV == pool fee"] += 1
        new = m.bad_debt[pre["bad_debts"]:]
        # What the fund may pay: bad debt, and the bounty for kicking an account that pays its keeper nothing.
        paid = sum(entry[3] for entry in new) + sum(amount for _, amount in m.keeper_bounties[pre["bounties"]:])
        assert m.insurance_fund_wad >= pre["insurance"] - paid, (
            f"{step}: the insurance fund fell by {pre['insurance'] - m.insurance_fund_wad}, bad debt and bounties paid {paid}\n"
            + r.trace())
        for owner, sub, *_ in new:
            acct = m.accounts[(owner, sub)]
            assert acct.collateral >= 0 or acct.open_markets, "a resolved account was left negative\n" + r.trace()
        FAST["props"]["insurance pays bad debt only"] += 1
        if new:
            FAST["props"]["bad debts resolved"] += len(new)
        self._attackers(step)
        self.steps += 1
        if self.steps % self.probe_every == 0:
            self._close_probe()

    def _attackers(self, step: tuple) -> None:
        """A round starts when both attackers are flat; it stays valid while only they trade (on their
        cross accounts) and time passes. When both are flat again, their collateral plus the funding their
        trades settled (funding is a transfer from the other side, not a gain from the vAMM) must not
        exceed what they had at the start."""
        if len(self.attackers) < 2:
            return
        r, m, kind = self.r, self.r.model, step[0]
        owners = [r.addr[a] for a in self.attackers]
        pair_only = kind == "time" or (kind in ("open", "close", "reduce") and step[1] in self.attackers
                                       and step[2] == 0)
        if not pair_only:
            self.round = None  # someone else acted or the world moved: no claim about this round
        elif self.round is not None and r.last_error is None and kind != "time":
            self.round[1] += r.last_result.funding  # paid (positive) or received (negative) by the pair
        flat = not any(m.open_markets(o, s) for o in owners for s in (0, 1, 2))
        if not flat:
            return
        total = sum(m.collateral(o, 0) for o in owners)
        if self.round is not None:
            start, funding = self.round
            assert total + funding <= start, (
                f"attacker pair gained {total + funding - start} wei (funding aside) at a constant index\n"
                + r.trace())
            if total != start:
                FAST["props"]["attacker rounds closed"] += 1
        self.round = [total, 0]

    def _close_probe(self) -> None:
        r, m = self.r, self.r.model
        if m.pause_level:
            return
        free = [(k, p) for k, p in m.positions.items() if p.size != p.auctioned]
        if not free:
            return
        self.turn += 1
        (mid, owner, sub), p = sorted(free, key=lambda kp: (kp[0][0], kp[0][1], kp[0][2]))[self.turn % len(free)]
        now = r.fc.timestamp
        try:
            m.index_price(mid, now)
        except ModelRevert:
            return
        limit = 0 if p.size - p.auctioned > 0 else MAX_UINT
        data = _calldata("closePosition(uint32,uint32,uint256,uint256)", (sub, mid, limit, now + 3600))
        ok, out = r.probe(owner, r.ch, data)
        if not ok and out[0] == "PegStale":
            # The one refusal a close may meet: the stale-peg rule holds a trade in the direction the next repeg
            # rewards (ClearingHouseTradeRules._checkPeg), reduces included; the trader leaves after a repeg (anyone's).
            # It must be exactly the rule: a tolerance set, the model's peg and index, stale in this direction.
            mk = m.markets[mid]
            index = m.index_price(mid, now)
            peg = m._peg(mk.x, mk.y, mk.long_open_interest - mk.short_open_interest)
            buys = p.size - p.auctioned < 0
            assert out[1] == (mid, peg, index) and peg_holds(peg, index, mk.peg_tolerance_bps, buys), (
                f"PegStale on a close without the rule's condition: {out}\n" + r.trace())
            FAST["props"]["closes held by the stale-peg rule"] += 1
            return
        if not ok and out[0] in REDUCE_REFUSALS:
            # A close filled worse than the index needs the account's health: refused below maintenance
            # (ReduceBelowMaintenance) or on a stale feed elsewhere; exactly when, and as, the model refuses it.
            trial = fast_copy(m)
            try:
                trial.close_position(owner, sub, mid, limit, now, now + 3600)
                expected = None
            except ModelRevert as e:
                expected = _model_error(e)
            assert tuple(out) == expected, f"the close's refusal {out} is not the model's {expected}\n" + r.trace()
            FAST["props"]["closes refused below maintenance"] += 1
            return
        assert ok, f"closing a free position of {owner}/{sub} in market {mid} at any price reverted: {out}\n" + r.trace()
        FAST["props"]["free positions closed (eth_call)"] += 1


# ---------------------------------------------------------------------------- calldata


_SIGS: dict[str, tuple] = {}
_STATIC = ("uint", "int", "address", "bool", "bytes32")


def fast_encode(sig: str, args: list) -> bytes:
    """chain_harness._encode, byte for byte, without eth_abi's per-call overhead for static arguments
    (unsigned and signed integers, addresses, bools); anything else goes to eth_abi."""
    spec = _SIGS.get(sig)
    if spec is None:
        types = chain_harness._split_types(sig[sig.index("(") + 1:-1])
        static = all(t.startswith(_STATIC) and "[" not in t and "(" not in t for t in types)
        spec = _SIGS[sig] = (_selector(sig), types, static)
    sel, types, static = spec
    if not static:
        return sel + abi_encode(types, args)
    out = [sel]
    for t, a in zip(types, args):
        if t == "address":
            out.append(bytes(12) + bytes.fromhex(str(a)[2:]))
        elif t == "bytes32":
            out.append(bytes(a).ljust(32, b"\0"))
        else:
            v = int(a)
            if t.startswith("uint") and v < 0 or t.startswith("int") and not -2**255 <= v < 2**255:
                return sel + abi_encode(types, args)  # let eth_abi raise its error
            out.append((v % 2**256).to_bytes(32, "big"))
    return b"".join(out)


class fast_calldata:
    """Inside the block, chain_harness's step builders encode through `fast_encode` (same bytes)."""

    def __enter__(self):
        self.saved = chain_harness._encode
        chain_harness._encode = fast_encode

    def __exit__(self, *exc):
        chain_harness._encode = self.saved


# ---------------------------------------------------------------------------- one step, one example


def fast_step(runner: FastRunner, step: tuple) -> None:
    """One step on the fast chain and in the model, its lean views, the properties, the counters."""
    kind = step[0]
    T = runner.next_timestamp() if kind != "time" else None
    pre = runner.props.before(step, T) if T is not None else {"insurance": runner.model.insurance_fund_wad,
                                                               "bad_debts": len(runner.model.bad_debt),
                                                               "bounties": len(runner.model.keeper_bounties)}
    with fast_calldata():
        runner.step(step)
    FAST["kinds"][kind] += 1
    if kind != "time":
        runner.lean_check(runner.touched, runner.touched_markets, runner.touched_auctions, runner.touched_lps)
        if runner.last_error is None:
            label = kind
            if kind == "redo" and isinstance(runner.last_result, Cancelled):
                label = "redo (cancelled)"
            if kind in ("syncdepth", "repeg") and runner.model.effective_amplification(step[1]) != WAD:
                FAST["ok"][f"{kind} (amplified)"] += 1  # under a concentration in force
            FAST["ok"][label] += 1
            rc = runner.receipt
            _gas(label, rc.gas_used)
            for lg in rc.logs:
                FAST["events"][_EVENT_NAMES.get(lg.topics[0], "other") if lg.topics else "anonymous"] += 1
        else:
            FAST["errors"][runner.last_error[0]] += 1
            _gas(f"{kind} (reverted)", runner.receipt.gas_used)
    runner.props.after(step, T if T is not None else runner.fc.timestamp, pre)
    FAST["steps"] += 1


_EVENT_NAMES: dict = {}


def run_example(env, steps, *, attackers=(), full_every: int = 1, probe_every: int = 1) -> FastRunner:
    """One example from the warmed-up snapshot: every step with its lean views and the properties, then
    (after any pending time steps) the wide lean comparison of everything the example touched; one
    example in `full_every` (by a hash of its steps) also chain_harness's full comparison (every view the
    Ape fuzzers compare) before and after. The chain is restored afterwards."""
    if not _EVENT_NAMES:
        _EVENT_NAMES.update({topic: ev.name for topic, ev in env.fc.artifacts.events.items()})
    fc = env.fc
    token = fc.snapshot()
    start, cpu = time.perf_counter(), time.process_time()
    # which examples get the full comparison depends on the steps alone, so a replay checks the same
    full = bool(full_every) and zlib.crc32(repr(steps).encode()) % full_every == 0
    try:
        runner = FastRunner(env, fast_copy(env.base_model))
        runner.props.set_attackers(attackers)
        runner.props.probe_every = probe_every
        if full:
            runner.compare((), MARKETS, full=True)
        for step in steps:
            fast_step(runner, step)
        if runner.jump:  # time steps not yet applied to a block
            fast_step(runner, ("poke", 1))
        auctions = range(1, runner.model.auction_count + 2)
        runner.lean_check(runner.seen, MARKETS, auctions, runner.lps, wide=True)
        if full:
            runner.compare(runner.seen, MARKETS, full=True)
        return runner
    finally:
        FAST["seconds"] += time.perf_counter() - start
        FAST["cpu"] += time.process_time() - cpu
        FAST["examples"] += 1
        fc.revert(token)


def _signature(exc: AssertionError) -> str:
    """What a failure is, apart from its numbers: the first line of its message without digits."""
    return re.sub(r"\d+", "#", str(exc).split("\n", 1)[0])[:200]


def failure_of(env, steps, **kw):
    try:
        run_example(env, steps, **kw)
    except AssertionError as e:
        return _signature(e)
    return None


def minimize(env, steps: list, **kw) -> list:
    """A shorter step list that fails the same way (by `_signature`): remove runs of steps, halving their
    length down to single steps, as long as the failure stays (delta debugging). Every trial runs with
    the full comparison on."""
    kw = {**kw, "full_every": 1}
    want = failure_of(env, steps, **kw)
    if want is None:
        return steps
    size = max(len(steps) // 2, 1)
    while True:
        i, removed = 0, False
        while i < len(steps):
            trial = steps[:i] + steps[i + size:]
            if trial and failure_of(env, trial, **kw) == want:
                steps, removed = trial, True
            else:
                i += size
        if size == 1 and not removed:
            return steps
        size = max(size // 2, 1) if not removed else size


# ---------------------------------------------------------------------------- report


def report(profile: str) -> str:
    s = FAST
    rate = s["steps"] / s["seconds"] if s["seconds"] else 0.0
    kinds = ", ".join(f"{k} {v} ({s['ok'].get(k, 0)} ok)" for k, v in sorted(s["kinds"].items()))
    ok_extra = ", ".join(f"{k} {v}" for k, v in sorted(s["ok"].items()) if k not in s["kinds"])
    gas = "; ".join(f"{k} {g[0]}..{g[1]} (mean {g[2] // g[3]})" for k, g in sorted(s["gas"].items()))
    events = ", ".join(f"{k} {v}" for k, v in sorted(s["events"].items()))
    ok, ev = s["ok"], s["events"]
    summary = (f"{sum(ok[k] for k in TRADES)} trades, {ok['kick']} kicks, {ok['take']} takes, {ok['redo']} redos, "
               f"{ok['redo (cancelled)'] + ok['cancel']} cancels, {ok['backstop']} backstops, {ev['BadDebt']} bad-debt "
               f"resolutions ({ok['baddebt']} by resolveBadDebt), "
               f"{sum(ok[k] for k in ('lpdeposit', 'lprequest', 'lpredeem', 'lpwithdraw'))} pool flows "
               f"({ok['lpdeposit']} deposits, {ok['lprequest']} requests, {ok['lpredeem']} redeems, "
               f"{ok['lpwithdraw']} withdrawals), {ok['syncdepth']} depth syncs, {ok['repeg']} repegs, "
               f"{ok['concentrate']} concentrations set ({ok['syncdepth (amplified)']} depth syncs and "
               f"{ok['repeg (amplified)']} repegs under one in force), "
               f"{sum(s['errors'].values())} reverts")
    txs = s["steps"] - s["kinds"]["time"]
    return (f"fast tier ({profile} profile): {s['examples']} examples, {s['steps']} steps ({txs} transactions, "
            f"{s['kinds']['time']} time steps) in {s['seconds']:.1f} s "
            f"= {rate:.0f} steps/s ({s['steps'] / s['cpu'] if s['cpu'] else 0:.0f} per CPU second), "
            f"{s['full_compares']} full comparisons\n"
            f"  exercised: {summary}\n"
            f"  steps by kind (went through): {kinds}{'; ' + ok_extra if ok_extra else ''}\n"
            f"  reverts by error: {dict(sorted(s['errors'].items()))}\n"
            f"  events: {events}\n"
            f"  properties checked: {dict(sorted(s['props'].items()))}\n"
            f"  gas per transaction (min..max): {gas}")
