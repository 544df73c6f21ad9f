"""Keeper logic: poke funding when due, poke the circuit breaker, repeg, execute delayed orders, kick liquidatable
accounts, take, redo and backstop auctions.

One `Keeper.run_once()` is one pass over every market, every account that ever traded and every live
auction; it returns the actions taken (and sends them from the keeper's account). The keeper takes
auctions into its own cross account only when the discount is at least `min_take_discount` and its
free collateral covers the initial margin of what it takes; otherwise it leaves them to other takers.

Which market to kick on a cross account holding several: the engine's `bestMarketToKick` view, which
picks the market whose slice restores target health with the least notional moved (see
docs/liquidation.md).

The keeper's log (docs/keeper.md): every pass also records, in `Keeper.records` (and the last pass's in
`Keeper.pass_records`) and on the `vperp.keeper` Python logger,
- `AuctionWait`: each live auction it sees but does not take: its discount now, the threshold it waits
  for, and the first timestamp at which the auction reaches it at today's index (from the engine's curve,
  `discountAt`), or why it cannot take it (its free collateral);
- `TakeLog`: each take: price, size, the keeper's PnL on it at the index (what closing it at the index
  would realize, minus the take's fee and a close's taker fee) and the position it holds after;
- `BadDebtSeen`: the `BadDebt` and `ShortfallRecorded` events in the blocks the pass scanned.
- `BreakerLog`: each breaker that tripped or cleared, and each restriction the governor applied, in the
  keeper's own `pokeAll` of the circuit breaker (a governed deployment: `breaker` set; docs/governance.md).
Logging reads views only and never changes what the keeper does: a failure while logging is itself
logged (a warning) and the pass goes on.

With a `breaker` (the CircuitBreaker of a governed deployment), every pass calls its permissionless
`pokeAll()` after the funding pokes: the breakers are deterministic, but only a poke applies them. A poke
that reverts is logged (a warning) and the pass goes on: a breaker never stands between the keeper and a
liquidation.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal

from .client import from_wad, seconds_to_discount, transact

from .units import WAD
log = logging.getLogger("vperp.keeper")


@dataclass
class Action:
    kind: str  # "poke" | "breaker" | "repeg" | "execute" | "cancel-order" | "kick" | "take" | "redo" | "cancel" | "backstop" | "backstop-blocked"
    detail: dict
    gas: int

    def __str__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.kind}({fields}) gas={self.gas:,}"


@dataclass(frozen=True)
class AuctionWait:
    """A live auction the keeper saw and did not take, and what it waits for."""

    block: int  # the block the keeper read the auction at (the head then)
    seen_at: int  # its timestamp
    auction: int
    symbol: str
    owner: str
    subaccount: int
    size: Decimal  # remaining slice, signed like the liquidated position
    index_price: Decimal
    price: Decimal  # the auction's price now
    discount: Decimal  # the taker's discount now, a fraction (0.01 = 1 %), as the keeper measures it
    threshold: Decimal  # min_take_discount, a fraction
    ready_at: int | None  # first timestamp at which the discount reaches the threshold at this index; None: never
    reason: str  # "discount" (below the threshold) | "collateral" (worth taking, but free collateral covers none)

    def __str__(self) -> str:
        when = ("never before it expires" if self.ready_at is None
                else f"at t={self.ready_at} (in {max(self.ready_at - self.seen_at, 0)} s)")
        why = ("free collateral does not cover a take" if self.reason == "collateral"
               else f"waits for {self.threshold:.2%}, reached {when}")
        return (f"auction {self.auction} {self.symbol} {self.size} of {self.owner[:10]}/{self.subaccount}: "
                f"price {self.price:.2f}, index {self.index_price:.2f}, discount {self.discount:.4%}; {why}")


@dataclass(frozen=True)
class TakeLog:
    """A take by the keeper and what it made at the index."""

    block: int  # the take's block
    tx_hash: str
    auction: int
    symbol: str
    size: Decimal  # what the keeper's position changed by (a long slice makes it longer)
    price: Decimal
    index_price: Decimal  # at the take's block
    gross_pnl: Decimal  # floor/ceil(size x index) - what it paid (long) or received (short): closing at the index
    take_fee: Decimal  # the fee of the keeper's fill (PositionChanged.fee; 0 on this build)
    close_fee: Decimal  # takerFee x |size| x index: what a close on the vAMM at the index would charge
    pnl: Decimal  # gross_pnl - take_fee - close_fee
    position_size: Decimal  # the keeper's position in the market after the take
    position_open_notional: Decimal

    def __str__(self) -> str:
        return (f"took {self.size} {self.symbol} of auction {self.auction} at {self.price:.2f} (index "
                f"{self.index_price:.2f}): PnL at the index {self.pnl:,.2f} after fees; holds {self.position_size} "
                f"{self.symbol}, open notional {self.position_open_notional:,.2f}")


@dataclass(frozen=True)
class BadDebtSeen:
    """A `BadDebt` (loss realized: "bad-debt") or `ShortfallRecorded` that changed an account's estimate
    ("shortfall"; 0 = cleared) in the blocks a pass scanned."""

    block: int
    tx_hash: str
    kind: str  # "bad-debt" | "shortfall"
    owner: str
    subaccount: int
    amount: Decimal  # bad-debt: the loss; shortfall: the new estimate
    from_insurance: Decimal | None = None  # bad-debt only
    from_pool: Decimal | None = None  # bad-debt only
    total: Decimal | None = None  # shortfall only: the sum of all accounts' estimates

    def __str__(self) -> str:
        who = f"{self.owner[:10]}/{self.subaccount}"
        if self.kind == "bad-debt":
            return (f"bad debt {self.amount:,.2f} of {who} at block {self.block}: insurance paid "
                    f"{self.from_insurance:,.2f}, pool {self.from_pool:,.2f}")
        return f"shortfall estimate of {who} now {self.amount:,.2f} at block {self.block} (all accounts {self.total:,.2f})"


BREAKER_KINDS = ("index-move", "divergence", "insurance", "auctions", "skew")  # ICircuitBreaker.Kind, in order
NO_CAP = 2**96 - 1  # the breaker's "no cap" (type(uint96).max)


@dataclass(frozen=True)
class BreakerLog:
    """A `BreakerTripped` ("tripped"), `BreakerCleared` ("cleared") or `RestrictionApplied` ("restriction") in
    the keeper's own poke of the circuit breaker."""

    block: int
    tx_hash: str
    event: str  # "tripped" | "cleared" | "restriction"
    symbol: str
    breaker: str | None = None  # tripped/cleared: one of BREAKER_KINDS
    value: Decimal | None = None  # tripped: the measured value (a fraction, or WAD units for insurance/auctions/skew)
    threshold: Decimal | None = None  # tripped: what it was measured against
    until: int | None = None  # tripped: end of reduce-only (index-move, divergence), else None
    cap: Decimal | None = None  # restriction: per-side open-interest cap in base (None: no cap)
    reduce_only: bool | None = None  # restriction

    def __str__(self) -> str:
        if self.event == "tripped":
            until = f", reduce-only until t={self.until}" if self.until else ""
            return (f"breaker {self.breaker} TRIPPED on {self.symbol} at block {self.block}: {self.value:.6g} "
                    f"against {self.threshold:.6g}{until}")
        if self.event == "cleared":
            return f"breaker {self.breaker} cleared on {self.symbol} at block {self.block}"
        cap = "no cap" if self.cap is None else f"cap {self.cap:.6g} per side"
        return f"restriction of {self.symbol} now {cap}{', reduce-only' if self.reduce_only else ''} (block {self.block})"


def _hex(h) -> str:
    return h if isinstance(h, str) else "0x" + bytes(h).hex()


def repeg_due(peg: int, index: int, last: int, now: int, threshold: int, interval: int) -> bool:
    """Whether `AmmController.repeg` would act at `now`: past the repeg interval (at least the next block) and
    the peg more than `threshold` [wad] from the index (the contract's RepegTooSoon / RepegNotNeeded)."""
    if last != 0 and now < last + max(interval, 1):
        return False
    return index != 0 and abs(peg - index) * WAD // index > threshold


@dataclass
class Keeper:
    system: object
    account: object
    min_take_discount: int = WAD // 100  # take once the auction price is >= 1 % better than the index
    take_margin_buffer: int = 12 * WAD // 10  # keep free collateral >= 1.2 x the taken slice's initial margin
    accounts: set = field(default_factory=set)  # (owner, subaccount) seen trading
    _scanned_to: int = -1
    _log_scanned_to: int | None = None  # the bad-debt log's own cursor: advances only when its scan succeeded
    max_records: int = 10_000  # `records` keeps the newest this many
    records: deque = field(default=None)  # AuctionWait | TakeLog | BadDebtSeen, oldest first
    pass_records: list = field(default_factory=list)  # the last pass's
    _shortfalls: dict = field(default_factory=dict)  # (owner, subaccount) -> last shortfall seen [wad]
    _ready_cache: dict = field(default_factory=dict)  # (market, side, index, threshold, params) -> seconds | None
    breaker: object = None  # the CircuitBreaker of a governed deployment: `pokeAll` every pass (None: not governed)
    follow_peg: bool = True  # repeg every market whose peg is more than its repegThreshold from the index
    execute_orders: bool = True  # execute every executable delayed order (OrderRouter; paid its keeper fee)
    max_orders_per_pass: int = 50  # delayed orders executed or cancelled per pass, at most
    # Behind a pending head, cancel every order that pays its fee to the canceller now (`cancelBounty`: past its
    # deadline, the feed still on the round of its commit): paid while it lasts, and such an order would otherwise
    # reach the head after the next round and refund its owner (docs/orders.md). One view call per order behind a
    # pending head; off where no order can miss its round (the simulator's deadlines outlast the feed's gaps).
    clear_missed_orders: bool = True

    def __post_init__(self) -> None:
        if self.records is None:
            self.records = deque(maxlen=self.max_records)
        if self.breaker is None:  # a System handed to governance by vperp.deployment.deploy_governed
            gov = getattr(self.system, "extra", {}).get("governance")
            self.breaker = getattr(gov, "breaker", None)

    @property
    def _markets(self) -> int:
        """The gas headroom's market count (`vperp.client.transact`): every market of the deployment."""
        return len(self.system.markets)

    # ---------------------------------------------------------------- discovery

    def discover(self, chain) -> None:
        """Add every (owner, subaccount) that traded since the last scan (PositionChanged logs), and log the
        bad debt of the same blocks."""
        head = chain.blocks.head.number
        start = self._scanned_to + 1
        if start > head:
            return
        for log_ in self.system.clearing_house.PositionChanged.range(start, head + 1):
            self.accounts.add((log_.owner, int(log_.subaccount)))
        # The log keeps its own cursor: a failed scan (a node error) is retried over the same blocks next pass
        # instead of losing their BadDebt and shortfall records; the accounts' discovery above never waits on it.
        log_start = start if self._log_scanned_to is None else self._log_scanned_to + 1
        if self._guarded("bad debt", self._scan_bad_debt, log_start, head):
            self._log_scanned_to = head
        elif self._log_scanned_to is None:
            self._log_scanned_to = start - 1
        self._scanned_to = head

    # ---------------------------------------------------------------- one pass

    def run_once(self, chain) -> list[Action]:
        self.pass_records = []
        self._chain = chain
        self.discover(chain)
        actions: list[Action] = []
        actions += self._poke_due(chain)
        actions += self._poke_breaker()
        if self.follow_peg:
            actions += self._repeg_due(chain)
        actions += self._kick_liquidatable()
        actions += self._service_auctions()
        if self.execute_orders:  # after the repeg (an order meets the peg the new round set) and the liquidations
            actions += self._execute_orders()
        return actions

    def run_orders(self) -> list[Action]:
        """The delayed-order part of a pass alone (`_execute_orders`; nothing when `execute_orders` is off), for a
        caller that runs it right after an oracle round and its repeg, apart from the rest of its pass (the
        simulator, docs/simulator.md)."""
        return self._execute_orders() if self.execute_orders else []

    # ---------------------------------------------------------------- the log

    def _record(self, record) -> None:
        self.records.append(record)
        self.pass_records.append(record)
        warn = ((isinstance(record, BadDebtSeen) and record.kind == "bad-debt")
                or (isinstance(record, BreakerLog) and record.event == "tripped"))
        log.log(logging.WARNING if warn else logging.INFO, "%s", record)

    def _guarded(self, what: str, fn, *args):
        """Run a logging step; any failure is logged and swallowed, so the log never changes what the keeper
        does (a view that reverts while logging must not abort the pass)."""
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - logging must not change the keeper's decisions
            log.warning("keeper log: could not record %s: %s: %s", what, type(e).__name__, e)
            return None

    def _scan_bad_debt(self, start: int, head: int) -> bool:
        vault = self.system.vault
        found = []
        for ev in vault.BadDebt.range(start, head + 1):
            found.append((int(ev.block_number), int(ev.log_index), BadDebtSeen(
                block=int(ev.block_number), tx_hash=_hex(ev.transaction_hash), kind="bad-debt", owner=ev.owner,
                subaccount=int(ev.subaccount), amount=from_wad(ev.amount), from_insurance=from_wad(ev.fromInsurance),
                from_pool=from_wad(ev.fromPool))))
        shortfalls = dict(self._shortfalls)  # committed only when the whole scan succeeded (it may be retried)
        for ev in vault.ShortfallRecorded.range(start, head + 1):
            key = (ev.owner, int(ev.subaccount))
            if int(ev.shortfall) == shortfalls.get(key, 0):
                continue  # what this keeper already saw (the Vault emits nothing for an unchanged estimate)
            shortfalls[key] = int(ev.shortfall)
            found.append((int(ev.block_number), int(ev.log_index), BadDebtSeen(
                block=int(ev.block_number), tx_hash=_hex(ev.transaction_hash), kind="shortfall", owner=ev.owner,
                subaccount=int(ev.subaccount), amount=from_wad(ev.shortfall), total=from_wad(ev.total))))
        self._shortfalls = shortfalls
        for _, _, record in sorted(found, key=lambda f: (f[0], f[1])):
            self._record(record)
        return True

    def _log_wait(self, aid: int, a, index: int, price: int, discount: int, reason: str) -> None:
        engine = self.system.liquidation
        mid, size = int(a.marketId), int(a.size)
        ready_at = None
        if reason == "discount":
            params = tuple(int(x) for x in tuple(engine.auctionParams(mid)))
            key = (mid, size > 0, index, self.min_take_discount, params)
            if key not in self._ready_cache:
                if len(self._ready_cache) > 1_000:
                    self._ready_cache.clear()
                self._ready_cache[key] = seconds_to_discount(engine, mid, size, index, self.min_take_discount, params[1])
            elapsed = self._ready_cache[key]
            ready_at = None if elapsed is None else int(a.startTime) + elapsed
        head = self._chain.blocks.head  # the block the auction's price was just read at
        self._record(AuctionWait(
            block=int(head.number), seen_at=int(head.timestamp), auction=aid, symbol=self._symbol(mid), owner=a.owner, subaccount=int(a.subaccount),
            size=from_wad(size), index_price=from_wad(index), price=from_wad(price), discount=from_wad(discount),
            threshold=from_wad(self.min_take_discount), ready_at=ready_at, reason=reason))

    def _log_take(self, tx, ev, a, detail: dict) -> None:
        ch = self.system.clearing_house
        mid = int(a.marketId)
        me = self.account.address
        fills = [f for f in tx.decode_logs(ch.PositionChanged) if f.owner == me and int(f.marketId) == mid]
        fill = fills[-1]
        amount, price = int(ev.amount), int(ev.price)
        index = int(ch.indexPrice(mid))
        if int(a.size) > 0:  # a long slice: the keeper bought at `price`, rounded up (what it paid)
            size, gross = amount, amount * index // WAD - (-(-amount * price // WAD))
        else:  # a short slice: the keeper sold at `price`, rounded down (what it received)
            size, gross = -amount, amount * price // WAD - (-(-amount * index // WAD))
        fee = int(fill.fee)
        close_fee = -(-(amount * index // WAD) * int(ch.marketParams(mid).takerFee) // WAD)
        pnl = gross - fee - close_fee
        record = TakeLog(
            block=int(tx.block_number), tx_hash=_hex(tx.txn_hash), auction=int(ev.auctionId), symbol=self._symbol(mid),
            size=from_wad(size), price=from_wad(price), index_price=from_wad(index), gross_pnl=from_wad(gross),
            take_fee=from_wad(fee), close_fee=from_wad(close_fee), pnl=from_wad(pnl),
            position_size=from_wad(fill.newSize), position_open_notional=from_wad(fill.newOpenNotional))
        detail["pnl"] = round(float(record.pnl), 2)
        detail["holds"] = float(record.position_size)
        self._record(record)

    def _symbol(self, market_id: int) -> str:
        for sym, m in self.system.markets.items():
            if int(m.id) == int(market_id):
                return sym
        return str(market_id)

    def _poke_due(self, chain) -> list[Action]:
        out = []
        ch = self.system.clearing_house
        now = chain.pending_timestamp
        for sym, m in self.system.markets.items():
            st = ch.marketState(m.id)
            quarter = ch.marketParams(m.id).twapWindow // 4
            if now // quarter != st.lastUpdate // quarter:
                tx = transact(self.system.funding.pokeFunding, m.id, sender=self.account, markets=self._markets)
                out.append(Action("poke", {"market": sym}, tx.gas_used))
        return out

    def _repeg_due(self, chain) -> list[Action]:
        """`AmmController.repeg` for every market whose peg (`pegPrice`) is more than its `repegThreshold` from
        the index, once per block (docs/pool.md "Repeg"). A repeg the contract refuses (a market without a depth
        rule, one already moved this block, a stale oracle) is logged and skipped: upkeep never stands between
        the keeper and a liquidation. A peg its guard holds (`pegHeldUntil`, docs/governance.md "Peg guard") is
        not tried."""
        from ape.exceptions import ApeException

        amm = getattr(self.system, "amm", None)
        if amm is None:
            return []
        out = []
        ch = self.system.clearing_house
        now = chain.pending_timestamp
        for sym, m in self.system.markets.items():
            try:
                p = amm.ammParams(m.id)
                if p.depthRatio == 0:
                    continue
                if not repeg_due(amm.pegPrice(m.id), ch.indexPrice(m.id), amm.lastRepeg(m.id), now,
                                 int(p.repegThreshold), int(p.repegInterval)):
                    continue
                if now < amm.pegHeldUntil(m.id):  # a peg guard holds it (the contract would refuse PegHeld)
                    continue
                tx = transact(amm.repeg, m.id, sender=self.account, markets=self._markets)
            except ApeException as e:
                log.info("keeper: repeg of %s skipped: %s: %s", sym, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                continue
            out.append(Action("repeg", {"market": sym}, tx.gas_used))
        return out

    def _execute_orders(self) -> list[Action]:
        """Delayed orders (docs/orders.md), each market's queue oldest first, at most `max_orders_per_pass`: an
        executable head is executed (`OrderRouter.executeOrder`; a trade the ClearingHouse refuses uses the order up,
        `OrderFailed`, the fee paid all the same: the action says `failed=True`), a lapsed head is cancelled (its fee
        goes back to its owner, or to the keeper for an order past its deadline with the feed fresh and still on the
        round of its commit: the action's `bounty_wei`) so the orders behind it can run, a pending head ends the
        market's turn. An execution the chain refuses (a stale peg the repeg could not clear yet, a pause) is logged
        and tried next pass. Behind a pending head, the orders that pay their canceller are cancelled
        (`clear_missed_orders`)."""
        from ape.exceptions import ApeException

        router = getattr(self.system, "router", None)
        if router is None:
            return []
        out: list[Action] = []
        for sym, m in self.system.markets.items():
            while len(out) < self.max_orders_per_pass:
                head, _ = router.queue(m.id)
                head = int(head)
                if head == 0:
                    break
                status, _ = router.orderStatus(head)
                status = int(status)
                if status == 1:  # pending: no newer oracle round yet (nor for the orders behind it)
                    if self.clear_missed_orders:
                        out += self._clear_missed(router, sym, head, self.max_orders_per_pass - len(out))
                    break
                try:
                    if status == 3:  # lapsed: a missed one pays its fee to the canceller (cancelBounty)
                        out.append(self._cancel_order(router, head, sym))
                        continue
                    tx = transact(router.executeOrder, head, sender=self.account, markets=self._markets)
                except ApeException as e:
                    log.info("keeper: order %d not executed: %s: %s", head, type(e).__name__,
                             str(e).splitlines()[0] if str(e) else "")
                    break
                failed = [ev for ev in tx.decode_logs(router.OrderFailed) if ev.contract_address == router.address]
                out.append(Action("execute", {"order": head, "failed": bool(failed)}, tx.gas_used))
        return out

    def _clear_missed(self, router, sym: str, head: int, budget: int) -> list[Action]:
        """Cancel the orders behind pending `head` whose cancel pays this keeper their fee (`cancelBounty` > 0), at
        most `budget`; each a `cancel-order` action with its `bounty_wei`."""
        from ape.exceptions import ApeException

        out: list[Action] = []
        oid = int(router.order(head).next)
        while oid and len(out) < budget:
            following = int(router.order(oid).next)
            if int(router.cancelBounty(oid)) > 0:
                try:
                    out.append(self._cancel_order(router, oid, sym))
                except ApeException as e:  # someone cleared it first, or the round came: nothing lost
                    log.info("keeper: order %d not cancelled: %s", oid, type(e).__name__)
            oid = following
        return out

    def _cancel_order(self, router, oid: int, sym: str) -> Action:
        """Cancel lapsed order `oid`: a `cancel-order` action with the bounty it paid this keeper (0: refunded)."""
        tx = transact(router.cancelOrder, oid, sender=self.account, markets=self._markets)
        paid = [ev for ev in tx.decode_logs(router.CancelBountyPaid) if ev.contract_address == router.address]
        return Action("cancel-order", {"order": oid, "market": sym, "bounty_wei": int(paid[0].amount) if paid else 0},
                      tx.gas_used)

    def _poke_breaker(self) -> list[Action]:
        """`pokeAll()` of the circuit breaker, when there is one; its trips, clears and restrictions logged."""
        if self.breaker is None:
            return []
        from ape.exceptions import ApeException

        try:
            tx = transact(self.breaker.pokeAll, sender=self.account, markets=self._markets)
        except ApeException as e:  # never let the breaker stand between the keeper and a liquidation
            log.warning("keeper: breaker pokeAll failed: %s: %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return [Action("breaker-failed", {"error": type(e).__name__}, 0)]
        detail = self._guarded("the breaker's events", self._log_breaker, tx) or {}
        return [Action("breaker", detail, tx.gas_used)]

    def _log_breaker(self, tx) -> dict:
        b = self.breaker
        block, tx_hash = int(tx.block_number), _hex(tx.txn_hash)
        tripped, cleared = [], []
        for ev in tx.decode_logs([b.BreakerTripped, b.BreakerCleared, b.RestrictionApplied]):
            sym = self._symbol(int(ev.marketId))
            if ev.event_name == "RestrictionApplied":
                cap = int(ev.capBase)
                self._record(BreakerLog(block, tx_hash, "restriction", sym,
                                        cap=None if cap == NO_CAP else from_wad(cap), reduce_only=bool(ev.reduceOnly)))
                continue
            kind = BREAKER_KINDS[int(ev.kind)]
            if ev.event_name == "BreakerTripped":
                tripped.append(f"{sym}:{kind}")
                self._record(BreakerLog(block, tx_hash, "tripped", sym, kind, from_wad(ev.value), from_wad(ev.threshold),
                                        int(ev.until) or None))
            else:
                cleared.append(f"{sym}:{kind}")
                self._record(BreakerLog(block, tx_hash, "cleared", sym, kind))
        return {k: v for k, v in (("tripped", ",".join(tripped)), ("cleared", ",".join(cleared))) if v}

    def _kick_liquidatable(self) -> list[Action]:
        out = []
        vault, engine = self.system.vault, self.system.liquidation
        for owner, sub in sorted(self.accounts):
            while vault.isLiquidatable(owner, sub):
                market = engine.bestMarketToKick(owner, sub)
                if market == 0:
                    break
                tx = transact(engine.kick, owner, sub, market, self.account, sender=self.account, markets=self._markets)
                ev = tx.decode_logs(engine.Kick)[0]
                out.append(Action("kick", {"auction": ev.auctionId, "owner": owner[:10], "sub": sub,
                                           "market": market, "size": ev.size / WAD,
                                           "reward": round(ev.keeperReward / WAD, 2),
                                           "penalty": round(ev.penalty / WAD, 2)}, tx.gas_used))
        return out

    def _service_auctions(self) -> list[Action]:
        out = []
        engine, ch, vault = self.system.liquidation, self.system.clearing_house, self.system.vault
        max_redos = engine.liquidationParams().maxRedos
        for aid in range(1, engine.auctionCount() + 1):
            a = engine.auction(aid)
            if a.size == 0:
                continue
            if engine.isExpired(aid):
                if a.redos < max_redos:
                    # A recovered account's auction is cancelled by the redo, unpaid.
                    tx = transact(engine.redo, aid, self.account, sender=self.account, markets=self._markets)
                    if tx.decode_logs(engine.AuctionCancelled):
                        out.append(Action("cancel", {"auction": aid}, tx.gas_used))
                    else:
                        out.append(Action("redo", {"auction": aid, "redos": a.redos + 1}, tx.gas_used))
                else:
                    out.append(self._backstop(aid, a))
                continue
            index = ch.indexPrice(a.marketId)
            price = engine.auctionPrice(aid)
            discount = (index - price) * WAD // index if a.size > 0 else (price - index) * WAD // index
            if discount < self.min_take_discount:
                self._guarded(f"auction {aid}", self._log_wait, aid, a, index, price, discount, "discount")
                continue
            amount = self._affordable(a, index, vault, ch)
            if amount == 0:
                self._guarded(f"auction {aid}", self._log_wait, aid, a, index, price, discount, "collateral")
                continue
            limit = price  # exactly the quoted price: no worse than what we decided on
            tx = transact(engine.take, aid, amount, limit, 0, sender=self.account, markets=self._markets)
            ev = tx.decode_logs(engine.Take)[0]
            detail = {"auction": aid, "amount": ev.amount / WAD, "price": round(ev.price / WAD, 2),
                      "discount": f"{discount / WAD:.2%}"}
            self._guarded(f"the take of auction {aid}", self._log_take, tx, ev, a, detail)
            out.append(Action("take", detail, tx.gas_used))
        return out

    def _backstop(self, aid: int, a) -> Action:
        """Backstop as much as the band and the auction's last price allow; when nothing fits now
        (BackstopBlocked: the vAMM is too far on the owner's wrong side) try again next pass."""
        from ape.exceptions import ContractLogicError

        engine = self.system.liquidation
        try:
            tx = transact(engine.backstop, aid, sender=self.account, markets=self._markets)
        except ContractLogicError as e:
            if type(e).__name__ != "BackstopBlocked":
                raise
            return Action("backstop-blocked", {"auction": aid, "size": a.size / WAD}, 0)
        ev = tx.decode_logs(engine.Backstop)[0]
        return Action("backstop", {"auction": aid, "size": ev.size / WAD,
                                   "left": engine.auction(aid).size / WAD}, tx.gas_used)

    def _affordable(self, a, index: int, vault, ch) -> int:
        """Base the keeper can take with its free collateral (0 if below the market's minimum)."""
        free = vault.freeCollateral(self.account, 0)
        if free <= 0:
            return 0
        imr = ch.marketParams(a.marketId).imr
        per_base = index * imr // WAD * self.take_margin_buffer // WAD
        amount = min(abs(a.size), free * WAD // per_base)
        minimum = ch.marketParams(a.marketId).minPositionSize
        remaining = abs(a.size)
        if amount < remaining and (amount < minimum or remaining - amount < minimum):
            return 0
        return amount
