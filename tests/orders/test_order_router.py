"""Delayed orders (OrderRouter; ClearingHouse.setOrderRouter / setDelayedOrders / delayedOrders; docs/orders.md).

On the concentrated deployment (`vperp.config.concentrated_config()`: ETH 100,000 x 300M at 3,000, taker fee 0.1 %,
repegThreshold 0.1 %, repeg every block, stale-peg rule 11 bps) with delayed orders ON for ETH and off for BTC,
deployed once for this module (each test runs on a snapshot of it). Every block time is set explicitly. The rules:

    ClearingHouse  a market with delayed orders on trades only when the router sends the trade: openPosition,
                   openPositionFor, openPositionWithBuilder and closePosition revert DelayedOrdersOnly(id) for any
                   other caller and change nothing; liquidations (kick, take) are not trades and are unaffected.
                   The router's trade there needs the peg within the stale-peg tolerance of the index in EITHER
                   direction (PegStale(id, peg, index)), so its executor cannot choose the stale peg over the
                   repegged one. setOrderRouter / setDelayedOrders are owner-only (ZeroAddress, NoOrderRouter,
                   UnknownMarket); turning delayed orders on needs a tolerance, and a tolerance of 0 is refused
                   while they are on (PegToleranceRequired(id)); the model (set_delayed_orders) mirrors both.
    commit         the owner (router approved as its Vault operator) sends the keeper fee (>= minKeeperFee) as
                   ETH; the order records the market feed's latest round id r and joins the back of its market's
                   queue (queue(id) = (head, tail); Order.prev / next); base 0 is a close: stored as minus the
                   free part now with close = true (none: NothingToClose(owner, sub, id)); the limit and deadline
                   are stored saturated (uint160, uint32) and OrderCommitted carries them and `close`; refusals:
                   DeadlinePassed, KeeperFeeTooLow, ParameterOutOfBounds("baseAmount") for |base| > int96 max,
                   RouterNotApproved, NotCurrentRouter(current) once the ClearingHouse has another router,
                   UnknownMarket (from the ClearingHouse); a refused commit stores nothing and keeps no ETH.
    status         Pending while the latest round is r (deadline passed: Lapsed, until = deadline);
                   Executable from round r + 1 until min(deadline, updatedAt(r + 1) + executionWindow), r + 1
                   read with getRoundData when later rounds followed it; Lapsed after, or with until 0 when
                   round r + 1 cannot be read (a phase change skipped it) or the feed does not answer at all.
    execute        anyone, while Executable, and only the market's head (else NotFirstInQueue(id, head), nothing
                   changed): the order is unlinked and deleted, then `openPositionFor(owner, ...)` with its size
                   (a close: the free part now, at most the size committed, the limit scaled with mulDiv, rounded
                   for the owner; none left on its side: size 0), limit and deadline, in a try/catch; the caller
                   gets the keeper fee. The trade done: OrderExecuted(id, keeper, base, quote, fee, keeperFee).
                   The trade refused with PegStale, Paused or DelayedOrdersOnly (nothing the owner can cause):
                   the whole call reverts with that error and the order stays (Desk.hold). Any other refusal
                   (slippage, margin, a revoked approval (NotOwnerOrOperator), nothing to close (ZeroSize)): the
                   order is used up all the same, OrderFailed(id, keeper, reason = the revert data, keeperFee),
                   the call returns (0, 0, 0) and nothing else moves (Desk.fail); so an owner cannot keep its
                   executable order back and bring it in once the window has shown which way the next update goes.
                   The trade out of gas (less than 1/16 of the gas at the try left after it): the whole execution
                   reverts InsufficientGas(gasSent) and the order stays. Pending: OrderNotReady(id, r); Lapsed:
                   OrderLapsed(id, until); executed, failed or cancelled: UnknownOrder.
    cancel         the owner while Pending, anyone once Lapsed, nobody while Executable (OrderExecutable); the
                   keeper fee goes back to the owner; the order leaves its queue wherever it is (a lapsed head
                   must be cancelled before the next order executes). Unknown, executed or cancelled: UnknownOrder.

The attack (tests/amm/test_peg_follow.py::test_front_running_an_index_update): an attacker who sees a pending +j
oracle update buys 1M USD of ETH before it, a keeper repegs, it closes: +3,005.02 USD at j = +0.5 % with delayed
orders off. With them on, the direct buy is refused and an order committed before the update cannot execute
before the repeg (PegStale, the order kept), then executes at the repegged price: the round trip pays its two
fees. The hole found while writing these (an owner blocking its own order to hold an option on the whole window:
+3,005.02 USD at +0.5 %) is closed by the use-it-up rule: its test shows the attacker losing the keeper fee. The
attacker review's findings (section G): the executor picking the stale peg (now held both ways: an honest sell
against an up-move is no longer filled at the stale price), the executor ordering a round's orders to sandwich a
victim (+13,600.74 USD on a 1,000 ETH buy with 50 bps, replayed on the model; FIFO now: the attacker loses), a
close order's limit bypassed by a grown free part (now at most the committed size, the limit scaled), the queue's
mechanics, the tolerance rule and a dead feed. What the owner keeps is the time between the round's update and the
first keeper's execution. Every trade and repeg here runs on the chain and in `vperp.model.Model` at the same block
time (the router's trade is the model's open_position for the owner; a failed or held execution changes neither),
and the two are compared to the wei. The measured figures are printed after the run (`orders: ...`).
"""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from ape.exceptions import CustomError
from eth_abi import decode as abi_decode

from helpers.chain_harness import deployment_model, print_report
from helpers.liquidation import kick_checked
from helpers.reverts import revert_data, selector
from helpers.trading import expect_revert, snapshot
from vperp.config import concentrated_config, default_config
from vperp.deployment import deploy
from vperp.units import WAD
from eth_utils import keccak

MAX_UINT = 2**256 - 1
INT96_MAX = 2**95 - 1
ETH = 1
BTC = 2
FEED = 10**10  # WAD per unit of the 8-decimal feed's answer
NONE, PENDING, EXECUTABLE, LAPSED = 0, 1, 2, 3  # IOrderRouter.Status


def usd(v: int) -> str:
    return f"{v / WAD:+,.2f}"


def report(request, line: str) -> None:
    print_report(request, "orders: " + line)


class Desk:
    """The chain and the model side by side, with the router. Every transaction goes into a block whose time is
    set explicitly (`at`); the model applies the same action at that time."""

    def __init__(self, system, deployer, chain):
        self.s, self.chain, self.deployer = system, chain, deployer
        self.ch, self.amm, self.pool, self.vault = system.clearing_house, system.amm, system.pool, system.vault
        self.router = system.router
        self.fee = self.router.minKeeperFee()
        self.model = deployment_model(system, deployer)
        self.check()

    # -------------------------------------------------------------- time
    def at(self, gap: int = 1) -> int:
        t = self.chain.blocks.head.timestamp + gap
        self.chain.pending_timestamp = t
        return t

    def mine_at(self, t: int) -> None:
        """Make `t` the head block's time (views such as orderStatus run at it): an empty block at `t`, unless a
        refused call was just mined there (the embedded chain mines a reverting transaction)."""
        if self.now < t:
            self.chain.pending_timestamp = t
            self.chain.mine()
        assert self.now == t

    @property
    def now(self) -> int:
        return self.chain.blocks.head.timestamp

    # -------------------------------------------------------------- actions
    def fund(self, who, amount, approve: bool = True, sub: int = 0) -> None:
        units = self.s.fund(who, amount, sub)
        self.model.deposit(who.address, sub, units)
        if approve:
            self.vault.setOperator(self.router, True, sender=who)

    def round(self, mid: int = ETH) -> int:
        return self.s.markets["ETH" if mid == ETH else "BTC"].oracle.latestRound()

    def set_index(self, price_wad: int, gap: int = 1, mid: int = ETH) -> int:
        """A new feed round at `price_wad`; returns its block time."""
        assert price_wad % FEED == 0
        t = self.at(gap)
        tx = self.s.markets["ETH" if mid == ETH else "BTC"].oracle.updateAnswer(price_wad // FEED,
                                                                              sender=self.deployer)
        assert tx.timestamp == t
        self.model.set_answer(mid, price_wad // FEED, t)
        return t

    def repeg(self, who, gap: int = 1):
        t = self.at(gap)
        tx = self.amm.repeg(ETH, sender=who)
        assert tx.timestamp == t
        price1, cost = self.model.repeg(ETH, t)
        (ev,) = tx.decode_logs(self.amm.Repeg)
        assert (ev.priceAfter, ev.cost) == (price1, cost)
        return ev

    def free(self, who, sub: int = 0, mid: int = ETH) -> int:
        """What a close order commits: minus the free part of the position (what is not in an auction)."""
        return self.ch.auctionedSize(who, sub, mid) - self.ch.position(who, sub, mid).size

    def commit(self, who, base: int, limit: int | None = None, deadline: int | None = None, mid: int = ETH,
               fee: int | None = None, gap: int = 1, sub: int = 0):
        """Commit an order (base 0: a close, stored as minus the free part with close = true); checks the event,
        the stored order (appended to its market's queue: prev = the old tail, the old tail's next = it).
        Returns (order id, receipt)."""
        t = self.at(gap)
        close, stored_base = base == 0, base if base else self.free(who, sub, mid)
        limit = (MAX_UINT if stored_base > 0 else 0) if limit is None else limit  # default: no limit
        deadline = t + 600 if deadline is None else deadline
        fee = self.fee if fee is None else fee
        oid, rnd, held = self.router.nextOrderId(), self.round(mid), self.router.balance
        head, tail = self.queue(mid)
        tx = self.router.commitOrder(sub, mid, base, limit, deadline, value=fee, sender=who)
        assert tx.timestamp == t
        stored_limit, stored_deadline = min(limit, 2**160 - 1), min(deadline, 2**32 - 1)
        (ev,) = tx.decode_logs(self.router.OrderCommitted)
        assert (ev.orderId, ev.owner, ev.subaccount, ev.marketId, ev.baseAmount, ev.close, ev.quoteLimit,
                ev.deadline, ev.keeperFee, ev.committedRound) == (
            oid, who.address, sub, mid, stored_base, close, stored_limit, stored_deadline, fee, rnd)
        assert tuple(self.router.order(oid)) == (who.address, sub, mid, t, stored_base, rnd, fee, close,
                                                 stored_limit, stored_deadline, tail, 0)
        assert self.queue(mid) == (head or oid, oid)
        if tail:
            assert self.router.order(tail).next == oid
        assert self.router.nextOrderId() == oid + 1 and self.router.balance == held + fee
        return oid, tx

    def trade_of(self, o) -> tuple[int, int]:
        """The size and limit order `o` trades now: its own, or for a close the free part (at most the size
        committed, the limit scaled to it, rounded for the owner; 0 when none of it is left on its side)."""
        amount, limit = o.baseAmount, o.quoteLimit
        if o.close:
            free = self.free(o.owner, o.subaccount, o.marketId)
            if free == 0 or (free > 0) != (amount > 0):
                return 0, limit
            if abs(free) < abs(amount):
                num = limit * abs(free)
                limit = -(-num // abs(amount)) if amount < 0 else num // abs(amount)
                amount = free
        return amount, limit

    def execute(self, keeper, oid: int, gap: int = 1):
        """Execute order `oid` (its market's head) as `keeper`; the model trades for the owner at the same time
        (a close: Desk.trade_of). Checks the PositionChanged event against the model, OrderExecuted against it,
        the keeper fee paid, the order deleted and the queue advanced. Returns the PositionChanged event."""
        o = self.router.order(oid)
        head, tail = self.queue(o.marketId)
        assert head == oid and o.prev == 0
        amount, limit = self.trade_of(o)
        t = self.at(gap)
        want = self.model.open_position(o.owner, o.subaccount, o.marketId, amount, limit, t, o.deadline)
        held, balance = self.router.balance, keeper.balance
        tx = self.router.executeOrder(oid, sender=keeper)
        assert tx.timestamp == t
        (pc,) = tx.decode_logs(self.ch.PositionChanged)
        assert (pc.owner, pc.marketId, pc.baseDelta, pc.quoteDelta, pc.fee, pc.realizedPnl, pc.fundingPaid,
                pc.newSize, pc.newOpenNotional, pc.priceAfter) == (
            o.owner, o.marketId, want.base, want.quote, want.fee, want.realized_pnl, want.funding, want.new_size,
            want.new_open_notional, want.price_after)
        (ev,) = tx.decode_logs(self.router.OrderExecuted)
        assert (ev.orderId, ev.keeper, ev.base, ev.quote, ev.fee, ev.keeperFee) == (
            oid, keeper.address, pc.baseDelta, pc.quoteDelta, pc.fee, o.keeperFee)
        assert self.router.balance == held - o.keeperFee
        assert keeper.balance == balance + o.keeperFee - gas_cost(tx)
        assert self.router.orderStatus(oid) == (NONE, 0) and self.router.order(oid).owner == ZERO
        assert self.queue(o.marketId) == ((o.next, tail) if o.next else (0, 0))
        if o.next:
            assert self.router.order(o.next).prev == 0
        return pc

    def fail(self, keeper, oid: int, error_cls, owners=(), gap: int = 1, **inputs):
        """Execute order `oid` as `keeper` where the ClearingHouse refuses the trade: the call succeeds (a static
        call first returns (0, 0, 0)), emits OrderFailed(oid, keeper, reason, keeperFee) and nothing else of the
        router's or the ClearingHouse's, `reason` decodes to `error_cls` with `inputs`; the keeper's ETH rises
        by the fee less its gas, the router's falls by the fee; the order is gone (status None, storage zero,
        unlinked from its queue, a second execution reverts UnknownOrder); nothing else moved (trading state,
        pool, fund, the owners' collateral and positions, the other orders). The model is not touched. Returns
        the decoded inputs."""
        o = self.router.order(oid)
        assert o.owner != ZERO
        owners = tuple(owners)
        before = self.ledger(owners)
        balance = keeper.balance
        t = self.at(gap)
        assert tuple(self.router.executeOrder.call(oid, sender=keeper)) == (0, 0, 0)
        tx = self.router.executeOrder(oid, sender=keeper)
        assert tx.timestamp == t
        assert tx.decode_logs(self.router.OrderExecuted) == [] and tx.decode_logs(self.ch.PositionChanged) == []
        (ev,) = tx.decode_logs(self.router.OrderFailed)
        assert (ev.orderId, ev.keeper, ev.keeperFee) == (oid, keeper.address, o.keeperFee)
        got = decode_error(error_cls, bytes(ev.reason))
        for key, want in inputs.items():
            if hasattr(want, "address"):
                want, got[key] = want.address.lower(), got[key].lower()
            assert got[key] == want, (error_cls.abi.name, key, got[key], want)
        assert keeper.balance == balance + o.keeperFee - gas_cost(tx)
        assert self.status(oid) == (NONE, 0) and tuple(self.router.order(oid)) == EMPTY
        assert self.ledger(owners) == dict(before, held=before["held"] - o.keeperFee,
                                           **_unlinked(before, oid))
        self.at()
        with expect_revert(self.router.UnknownOrder, orderId=oid):
            self.router.executeOrder(oid, sender=keeper)
        return got

    def hold(self, keeper, oid: int, error_cls, owners=(), gap: int = 1, **inputs) -> None:
        """Execute order `oid` as `keeper` where the ClearingHouse refuses the trade with a refusal that keeps the
        order (PegStale, Paused, DelayedOrdersOnly): the whole call reverts with that error, and nothing changes
        (the order, its status and window, its queue, the fees held, the trading state; the keeper pays its
        gas only)."""
        owners = tuple(owners)
        before, status = self.ledger(owners), self.status(oid)
        balance = keeper.balance
        self.at(gap)
        with expect_revert(error_cls, **inputs) as info:
            self.router.executeOrder(oid, sender=keeper)
        assert self.ledger(owners) == before and self.status(oid) == status
        assert keeper.balance == balance - gas_cost(info.value.txn)

    # -------------------------------------------------------------- views
    def status(self, oid: int) -> tuple[int, int]:
        return tuple(self.router.orderStatus(oid))

    def queue(self, mid: int = ETH) -> tuple[int, int]:
        return tuple(self.router.queue(mid))

    def ledger(self, owners=(), subs=(0,)) -> dict:
        """Everything a refused call must leave as it was (trading state, pool, fund, router, queues)."""
        snap = snapshot(self.s, owners, subs)
        snap.update(nav=self.pool.navWad(), orders=self.router.nextOrderId(), held=self.router.balance,
                    stored=[tuple(self.router.order(i)) for i in range(1, self.router.nextOrderId() + 1)],
                    queues=[self.queue(mid) for mid in (ETH, BTC)], peg=self.amm.pegPrice(ETH))
        return snap

    def check(self, owners=(), subs=(0,)) -> None:
        """Chain equals model, to the wei, at the head block's time."""
        now, m, ch, amm = self.now, self.model, self.ch, self.amm
        for mid in (ETH, BTC):
            assert tuple(ch.marketState(mid)) == m.market_state(mid, now), mid
            assert amm.pegPrice(mid) == m.peg_price(mid)
            assert amm.netExitValue(mid) == m.net_exit_value(mid)
        assert self.pool.navWad() == m.pool_nav(now)
        assert self.vault.poolBalance() == m.pool_balance_wad
        assert self.vault.insuranceFund() == m.insurance_fund_wad
        for o in owners:
            for sub in subs:
                assert self.vault.collateral(o, sub) == m.collateral(o.address, sub)
                for mid in (ETH, BTC):
                    assert tuple(self.ch.position(o, sub, mid)) == m.position(o.address, sub, mid, now)


ZERO = "0x" + "00" * 20
EMPTY = (ZERO, 0, 0, 0, 0, 0, 0, False, 0, 0, 0, 0)  # IOrderRouter.Order, deleted
PREV, NEXT = 10, 11  # IOrderRouter.Order's queue links, by position


def _unlinked(ledger: dict, oid: int) -> dict:
    """The `stored` and `queues` entries of Desk.ledger once order `oid` is removed from its market's queue: the
    order zeroed, its neighbours linked to each other, the queue's head or tail moved past it."""
    stored = [list(s) for s in ledger["stored"]]
    o = stored[oid - 1]
    prev, nxt, mid = o[PREV], o[NEXT], o[2]
    queues = list(ledger["queues"])
    head, tail = queues[mid - 1]
    if prev:
        stored[prev - 1][NEXT] = nxt
    else:
        head = nxt
    if nxt:
        stored[nxt - 1][PREV] = prev
    else:
        tail = prev
    queues[mid - 1] = (head, tail)
    stored[oid - 1] = list(EMPTY)
    return {"stored": [tuple(s) for s in stored], "queues": queues}


def gas_cost(tx) -> int:
    return tx.gas_used * tx.gas_price


def decode_error(error_cls, data: bytes) -> dict:
    """The inputs of custom error `error_cls` (an Ape error class, e.g. `ch.ZeroSize`) encoded in `data` (an
    OrderFailed reason); the selector must be the error's."""
    abi = error_cls.abi
    types = [i.canonical_type for i in abi.inputs]
    sel = selector(f"{abi.name}({','.join(types)})")
    assert data[:4] == sel, f"expected {abi.name} ({sel.hex()}), got {data[:4].hex()} ({data.hex()})"
    return dict(zip([i.name for i in abi.inputs], abi_decode(types, data[4:])))


@pytest.fixture(scope="module")
def deep(project, deployer, alice, bob, carol):
    """The concentrated deployment with delayed orders on for ETH (MarketConfig.delayed_orders), once for this
    module; a BatchCaller for the liquidation helpers' reads."""
    cfg = concentrated_config()
    cfg = cfg.with_markets(*(replace(m, delayed_orders=m.symbol == "ETH") for m in cfg.markets))
    s = deploy(deployer, cfg)
    s.extra["batcher"] = project.BatchCaller.deploy(sender=deployer)
    return s


@pytest.fixture
def desk(deep, deployer, chain):
    return Desk(deep, deployer, chain)


# ---------------------------------------------------------------------------- A. the attack


def _wealth(d: Desk, who) -> tuple[int, int, int]:
    return d.vault.collateral(who, 0), d.pool.navWad(), d.vault.insuranceFund()


def _direct_attack_refused(d: Desk, who, size: int) -> None:
    """Every direct trade entry point reverts DelayedOrdersOnly(ETH) and changes nothing."""
    ch = d.ch
    before = d.ledger((who,))
    t = d.at()
    for call in (lambda: ch.openPosition(0, ETH, size, MAX_UINT, t + 60, sender=who),
                 lambda: ch.openPositionFor(who, 0, ETH, size, MAX_UINT, t + 60, sender=who),
                 lambda: ch.openPositionWithBuilder(0, ETH, size, MAX_UINT, t + 60, ZERO, 0, sender=who)):
        with expect_revert(ch.DelayedOrdersOnly, marketId=ETH):
            call()
    assert d.ledger((who,)) == before


@pytest.mark.parametrize("j_bps", [15, 50], ids=["+0.15 %", "+0.5 %"])
def test_front_running_an_index_update_through_the_router_pays_the_fees(desk, request, alice, bob, carol, j_bps):
    _front_run_through_the_router(desk, request, alice, bob, carol, j_bps)


@pytest.fixture(scope="module")
def shipped(deployer):
    """The shipped deployment (`default_config()`: the concentrated curve at 15 bps, the 3 h funding period at a 12 h
    time constant, delayed orders on in both markets)."""
    return deploy(deployer, default_config())


@pytest.mark.parametrize("j_bps", [15, 50], ids=["+0.15 %", "+0.5 %"])
def test_front_running_an_index_update_on_the_shipped_markets_pays_the_fees(shipped, chain, deployer, request, alice,
                                                                            bob, carol, j_bps):
    """The same attack, end to end, on the shipped deployment: refused directly, held at the stale peg, and through
    the router after the repeg it pays its two 15 bps fees to the pool and the insurance fund."""
    _front_run_through_the_router(Desk(shipped, deployer, chain), request, alice, bob, carol, j_bps, "shipped markets")


def _front_run_through_the_router(desk, request, alice, bob, carol, j_bps, setting="ETH"):
    """The attacker sees a pending index update of +j. (a) The old attack: its direct 1M USD buy reverts
    DelayedOrdersOnly(ETH) (as do openPositionFor and openPositionWithBuilder) and changes nothing. (b) It commits
    the buy through the router before the update instead: the update lands (the order's first round); a keeper's
    execution before the repeg finds the peg more than 11 bps below the new index: the ClearingHouse refuses
    (PegStale(ETH, peg, index)) and the whole execution reverts: the order stays (Executable, same window), no
    fee paid, nothing moved, the attacker's collateral as it was. A keeper repegs (no position open: the repeg
    costs the pool nothing) and the same order executes: the buy meets the new peg. The attacker's direct close
    reverts DelayedOrdersOnly; it commits a close (stored as the free part, -size, close = true), the feed
    publishes a new round at the same price, a keeper executes it. The attacker's Vault collateral falls by the
    two fees (and funding); pool NAV + insurance rise by as much; chain equals model to the wei throughout."""
    d = desk
    ch = d.ch
    d.fund(alice, 500_000)
    start = _wealth(d, alice)
    held = d.router.balance
    size = 1_000_000 * WAD // 3000
    index = 3000 * WAD * (10_000 + j_bps) // 10_000

    _direct_attack_refused(d, alice, size)  # (a)

    oid, _ = d.commit(alice, size)  # (b) before the update
    assert d.status(oid)[0] == PENDING
    with expect_revert(d.router.OrderNotReady, orderId=oid, committedRound=d.round()):
        d.router.executeOrder(oid, sender=bob)
    t1 = d.set_index(index)  # the update the attacker saw coming
    assert d.status(oid) == (EXECUTABLE, t1 + d.router.executionWindow())
    stale_peg = d.amm.pegPrice(ETH)
    assert stale_peg < index
    d.hold(bob, oid, ch.PegStale, (alice,), marketId=ETH, peg=stale_peg, indexPrice=index)
    assert _wealth(d, alice) == start  # kept, no trade: nothing gained
    rep = d.repeg(carol)
    assert rep.cost == 0 and abs(d.amm.pegPrice(ETH) - index) <= 2
    opened = d.execute(bob, oid)
    assert opened.baseDelta == size
    d.check((alice,))

    before = d.ledger((alice,))
    d.at()
    with expect_revert(ch.DelayedOrdersOnly, marketId=ETH):
        ch.closePosition(0, ETH, 0, d.now + 60, sender=alice)
    assert d.ledger((alice,)) == before
    close_id, _ = d.commit(alice, 0)
    assert d.router.order(close_id).baseAmount == -size and d.router.order(close_id).close
    d.set_index(index)  # the next round, same price
    closed = d.execute(bob, close_id)
    assert closed.baseDelta == -size and closed.newSize == 0
    d.check((alice,))

    c1, nav1, ins1 = _wealth(d, alice)
    gain, d_nav, d_ins = c1 - start[0], nav1 - start[1], ins1 - start[2]
    fees = opened.fee + closed.fee
    funding = opened.fundingPaid + closed.fundingPaid
    realized = opened.realizedPnl + closed.realizedPnl
    assert gain == realized - fees - funding
    assert gain < 0  # the attacker only paid
    assert -gain >= fees - 10  # the round trip at one price realizes nothing but the swaps' rounding (and funding)
    assert d_nav + d_ins == -gain >= 0  # nothing left open: the pool's NAV is its cash
    st = ch.marketState(ETH)
    assert st.longOpenInterest == st.shortOpenInterest == 0
    assert d.router.balance == held  # both keeper fees paid out, nothing left behind
    report(request, f"front-running a +{j_bps / 100:.2f} % index update with delayed orders on {setting} (before, "
                    f"delayed orders off: +0.15 % -503.18, +0.5 % +3,005.02; see the control below): direct "
                    f"buy refused; the execution before the repeg reverted PegStale and kept the order; through "
                    f"the router attacker {usd(gain)} USD (fees {fees / WAD:,.2f}, funding {usd(-funding)}), pool "
                    f"NAV {usd(d_nav)}, insurance {usd(d_ins)}, keeper fees 2 x {d.fee / 1e18:g} ETH")


@pytest.mark.parametrize("j_bps", [15, 50], ids=["+0.15 %", "+0.5 %"])
def test_control_with_delayed_orders_off_the_direct_attack_still_pays(desk, request, deployer, alice, bob, j_bps):
    """The control: the same deployment with delayed orders turned off for ETH (setDelayedOrders(ETH, false) by the
    owner) is the setting of test_peg_follow's attack: the direct buy, the update, the repeg, the close. At +0.5 %
    the attacker gains (what the guard above takes away); at +0.15 % (below two taker fees) it loses."""
    d = desk
    ch = d.ch
    tx = ch.setDelayedOrders(ETH, False, sender=deployer)
    assert [(e.marketId, e.on) for e in tx.decode_logs(ch.DelayedOrdersSet)] == [(ETH, False)]
    assert ch.delayedOrders(ETH) is False
    d.fund(alice, 500_000, approve=False)
    start = _wealth(d, alice)
    size = 1_000_000 * WAD // 3000
    index = 3000 * WAD * (10_000 + j_bps) // 10_000
    for base, limit in ((size, MAX_UINT), (None, 0)):
        t = d.at()
        if base is None:
            tx = ch.closePosition(0, ETH, limit, t + 60, sender=alice)
            want = d.model.close_position(alice.address, 0, ETH, limit, t, t + 60)
        else:
            tx = ch.openPosition(0, ETH, base, limit, t + 60, sender=alice)
            want = d.model.open_position(alice.address, 0, ETH, base, limit, t, t + 60)
            d.set_index(index)
            rep = d.repeg(bob)
        (pc,) = tx.decode_logs(ch.PositionChanged)
        assert (pc.baseDelta, pc.quoteDelta, pc.fee, pc.realizedPnl) == (want.base, want.quote, want.fee,
                                                                         want.realized_pnl)
    d.check((alice,))
    c1, nav1, ins1 = _wealth(d, alice)
    gain, d_nav, d_ins = c1 - start[0], nav1 - start[1], ins1 - start[2]
    assert d_nav + d_ins == -gain
    if j_bps == 50:
        assert gain > 0 and rep.cost > 0
    else:
        assert gain < 0
    report(request, f"control, delayed orders off, +{j_bps / 100:.2f} %: direct attacker {usd(gain)} USD, pool NAV "
                    f"{usd(d_nav)}, insurance {usd(d_ins)} (repeg cost {rep.cost / WAD:,.2f})")


# ---------------------------------------------------------------------------- B. the honest path


def test_an_order_executes_after_the_next_round_at_the_price_a_direct_trade_would_get(desk, alice, bob):
    """Commit a 10 ETH buy (event, stored order, the fee held by the router); the next round (same price);
    the order now trades exactly what quote() said just before the execution: base, quote and fee in
    PositionChanged and OrderExecuted agree, the keeper's ETH balance rises by the fee less its gas, the router's
    falls by the fee, the model (a direct open_position at that time) agrees to the wei. A close order (base 0)
    then closes the free part: size 0, the whole open notional realized."""
    d = desk
    d.fund(alice, 100_000)
    oid, _ = d.commit(alice, 10 * WAD)
    assert d.status(oid) == (PENDING, d.router.order(oid).deadline)
    t1 = d.set_index(3000 * WAD)
    assert d.status(oid) == (EXECUTABLE, t1 + d.router.executionWindow())
    q, price_after = d.ch.quote(ETH, 10 * WAD)
    taker_fee = d.ch.marketParams(ETH).takerFee
    pc = d.execute(bob, oid)
    assert (pc.baseDelta, pc.quoteDelta, pc.priceAfter) == (10 * WAD, q, price_after)
    assert pc.fee == -q * taker_fee // WAD or pc.fee == (-q * taker_fee + WAD - 1) // WAD
    assert tuple(d.ch.position(alice, 0, ETH))[:2] == (10 * WAD, -q)
    d.check((alice,))
    with expect_revert(d.router.UnknownOrder, orderId=oid):  # executed: gone
        d.router.executeOrder(oid, sender=bob)

    close_id, _ = d.commit(alice, 0)
    d.set_index(3000 * WAD)
    pc = d.execute(bob, close_id)
    assert pc.baseDelta == -10 * WAD and pc.newSize == 0 and pc.newOpenNotional == 0
    assert tuple(d.ch.position(alice, 0, ETH))[:2] == (0, 0)
    d.check((alice,))


def test_a_close_order_whose_free_part_is_gone_or_turned_is_used_up_and_pays_the_keeper(desk, alice, bob, carol):
    """A close order (base 0) needs a free position at the commit: none reverts NothingToClose(owner, 0, ETH) and
    stores nothing. Alice holds 1 ETH long; she commits a 1 ETH sell, then a close (stored as -1 ETH, close =
    true), then a 2 ETH sell and a second close (-1 ETH), in that queue. The next round: the sell executes (size
    0), the first close finds no free part: the ClearingHouse refuses the trade (ZeroSize), and the order is used
    up all the same: OrderFailed with ZeroSize as its reason, the keeper paid the fee, the owner's collateral, the
    market and the pool as they were, the order gone (status None, storage zero; executing or cancelling it
    again, even once the window has passed: UnknownOrder). The 2 ETH sell executes (size -2 ETH): the second
    close, committed to sell, finds a free part on the other side (a short): it is not its to trade: ZeroSize,
    used up, the short left as it is."""
    d = desk
    d.fund(alice, 100_000)
    before = d.ledger((alice,))
    t = d.at()
    with expect_revert(d.router.NothingToClose, owner=alice, subaccount=0, marketId=ETH):
        d.router.commitOrder(0, ETH, 0, 0, t + 60, value=d.fee, sender=alice)
    assert d.ledger((alice,)) == before
    long_id, _ = d.commit(alice, WAD)
    d.set_index(3000 * WAD)
    d.execute(bob, long_id)
    sell, _ = d.commit(alice, -WAD)
    gone, _ = d.commit(alice, 0)
    flip, _ = d.commit(alice, -2 * WAD)
    turned, _ = d.commit(alice, 0)
    assert d.router.order(gone).baseAmount == d.router.order(turned).baseAmount == -WAD
    t1 = d.set_index(3000 * WAD)
    d.execute(bob, sell)
    d.fail(bob, gone, d.ch.ZeroSize, (alice,))
    d.execute(bob, flip)
    assert d.ch.position(alice, 0, ETH).size == -2 * WAD
    d.fail(carol, turned, d.ch.ZeroSize, (alice,))
    assert d.ch.position(alice, 0, ETH).size == -2 * WAD and d.queue() == (0, 0)
    d.check((alice,))
    d.mine_at(t1 + d.router.executionWindow() + 1)
    assert d.status(gone) == (NONE, 0)
    d.at()
    with expect_revert(d.router.UnknownOrder, orderId=gone):
        d.router.cancelOrder(gone, sender=carol)


def test_a_market_without_delayed_orders_trades_directly_and_through_the_router(desk, deployer, alice, bob):
    """BTC (delayed orders off): a direct openPosition trades; a router order trades too after BTC's next round.
    Turning delayed orders on for BTC (owner) makes the direct trade revert DelayedOrdersOnly(BTC); off again,
    it trades."""
    d = desk
    ch = d.ch
    assert (ch.delayedOrders(ETH), ch.delayedOrders(BTC)) == (True, False)
    assert ch.orderRouter() == d.router.address
    assert (d.router.clearingHouse(), d.router.vault()) == (ch.address, d.vault.address)
    d.fund(alice, 100_000)
    t = d.at()
    tx = ch.openPosition(0, BTC, WAD // 10, MAX_UINT, t + 60, sender=alice)
    want = d.model.open_position(alice.address, 0, BTC, WAD // 10, MAX_UINT, t, t + 60)
    (pc,) = tx.decode_logs(ch.PositionChanged)
    assert (pc.baseDelta, pc.quoteDelta, pc.fee) == (want.base, want.quote, want.fee)
    oid, _ = d.commit(alice, WAD // 10, mid=BTC)
    d.set_index(d.model.markets[BTC].answer * FEED, mid=BTC)
    d.execute(bob, oid)
    assert ch.position(alice, 0, BTC).size == WAD // 5
    d.check((alice,))

    tx = ch.setDelayedOrders(BTC, True, sender=deployer)
    assert [(e.marketId, e.on) for e in tx.decode_logs(ch.DelayedOrdersSet)] == [(BTC, True)]
    before = d.ledger((alice,))
    t = d.at()
    with expect_revert(ch.DelayedOrdersOnly, marketId=BTC):
        ch.closePosition(0, BTC, 0, t + 60, sender=alice)
    assert d.ledger((alice,)) == before
    ch.setDelayedOrders(BTC, False, sender=deployer)
    t = d.at()
    tx = ch.closePosition(0, BTC, 0, t + 60, sender=alice)
    want = d.model.close_position(alice.address, 0, BTC, 0, t, t + 60)
    (pc,) = tx.decode_logs(ch.PositionChanged)
    assert (pc.baseDelta, pc.quoteDelta, pc.newSize) == (want.base, want.quote, 0)
    d.check((alice,))


# ---------------------------------------------------------------------------- C. the status machine


def test_pending_only_the_owner_cancels_and_gets_the_fee_back(desk, alice, bob):
    """Pending: execute reverts OrderNotReady(id, round); a non-owner's cancel reverts NotOrderOwner(caller,
    owner); the owner's cancel refunds the fee (its balance rises by fee - gas), emits OrderCancelled and deletes
    the order (a second cancel: UnknownOrder)."""
    d = desk
    d.fund(alice, 10_000)
    fee = 3 * d.fee
    oid, _ = d.commit(alice, WAD, fee=fee)
    rnd = d.round()
    before = d.ledger((alice,))
    with expect_revert(d.router.OrderNotReady, orderId=oid, committedRound=rnd):
        d.router.executeOrder(oid, sender=bob)
    with expect_revert(d.router.NotOrderOwner, caller=bob, owner=alice):
        d.router.cancelOrder(oid, sender=bob)
    assert d.ledger((alice,)) == before
    balance = alice.balance
    tx = d.router.cancelOrder(oid, sender=alice)
    assert alice.balance == balance + fee - gas_cost(tx)
    assert d.router.balance == before["held"] - fee
    (ev,) = tx.decode_logs(d.router.OrderCancelled)
    assert (ev.orderId, ev.caller, ev.keeperFeeRefunded) == (oid, alice.address, fee)
    assert d.status(oid) == (NONE, 0) and d.router.order(oid).owner == ZERO
    with expect_revert(d.router.UnknownOrder, orderId=oid):
        d.router.cancelOrder(oid, sender=alice)


def test_executable_nobody_cancels_and_the_window_closes_at_first_round_plus_window(desk, alice, bob, carol):
    """Two orders committed in the same round. The next round at t1 makes both executable until t1 + window:
    the owner's cancel reverts OrderExecutable, so does anyone's. One executes at exactly t1 + window; the other,
    a second later, reverts OrderLapsed(id, t1 + window), is Lapsed in the view, and anyone may cancel it: the fee
    goes to the owner, not the caller."""
    d = desk
    d.fund(alice, 100_000)
    a, _ = d.commit(alice, WAD)
    b, _ = d.commit(alice, -WAD)
    t1 = d.set_index(3000 * WAD)
    until = t1 + d.router.executionWindow()
    for oid in (a, b):
        assert d.status(oid) == (EXECUTABLE, until)
        for who in (alice, carol):
            with expect_revert(d.router.OrderExecutable, orderId=oid):
                d.router.cancelOrder(oid, sender=who)
    d.execute(bob, a, gap=until - d.now)
    assert d.now == until
    before = d.ledger((alice,))
    d.at()
    with expect_revert(d.router.OrderLapsed, orderId=b, executableUntil=until):
        d.router.executeOrder(b, sender=bob)
    assert d.ledger((alice,)) == before
    d.mine_at(until + 1)
    assert d.status(b) == (LAPSED, until)
    balance, carol_balance = alice.balance, carol.balance
    tx = d.router.cancelOrder(b, sender=carol)
    assert alice.balance == balance + d.fee and carol.balance == carol_balance - gas_cost(tx)
    d.check((alice,))


def test_a_deadline_caps_the_window_and_a_pending_order_past_it_lapses(desk, alice, bob, carol):
    """An order whose deadline comes before the window's end is executable only until the deadline; one still
    pending when its deadline passes is Lapsed (until = deadline): execute reverts OrderLapsed(id, deadline), and
    anyone may cancel it. The one that was executable goes back to its owner's fee (`cancelBounty` 0: a keeper
    could have executed it); the one that never was pays its fee to the canceller (`cancelBounty` = the fee)."""
    d = desk
    d.fund(alice, 100_000)
    t0 = d.now + 1
    a, _ = d.commit(alice, WAD, deadline=t0 + 20)
    t1 = d.set_index(3000 * WAD, gap=5)
    assert d.status(a) == (EXECUTABLE, t0 + 20) and t0 + 20 < t1 + d.router.executionWindow()
    d.mine_at(t0 + 21)
    assert d.status(a) == (LAPSED, t0 + 20)
    with expect_revert(d.router.OrderLapsed, orderId=a, executableUntil=t0 + 20):
        d.router.executeOrder(a, sender=bob)

    t2 = d.now + 1
    b, _ = d.commit(alice, WAD, deadline=t2 + 5)
    assert d.status(b) == (PENDING, t2 + 5)
    d.mine_at(t2 + 6)
    assert d.status(b) == (LAPSED, t2 + 5)
    with expect_revert(d.router.OrderLapsed, orderId=b, executableUntil=t2 + 5):
        d.router.executeOrder(b, sender=bob)
    assert d.router.cancelBounty(a) == 0 and d.router.cancelBounty(b) == d.fee
    balance, carol_balance = alice.balance, carol.balance
    tx_b = d.router.cancelOrder(b, sender=carol)
    tx_a = d.router.cancelOrder(a, sender=carol)
    assert alice.balance == balance + d.fee
    assert carol.balance == carol_balance + d.fee - gas_cost(tx_a) - gas_cost(tx_b)
    (ev,) = tx_b.decode_logs(d.router.OrderCancelled)
    assert (ev.orderId, ev.caller, ev.keeperFeeRefunded) == (b, carol.address, 0)
    (ev,) = tx_b.decode_logs(d.router.CancelBountyPaid)
    assert (ev.orderId, ev.caller, ev.amount) == (b, carol.address, d.fee)
    (ev,) = tx_a.decode_logs(d.router.OrderCancelled)
    assert (ev.orderId, ev.caller, ev.keeperFeeRefunded) == (a, carol.address, d.fee)
    assert tx_a.decode_logs(d.router.CancelBountyPaid) == []
    assert d.router.cancelBounty(a) == d.router.cancelBounty(b) == 0  # gone: nothing to pay


def test_later_rounds_do_not_extend_the_window(desk, alice, bob):
    """Rounds r + 1 at t1 and r + 2 at t1 + 30: the window is measured from r + 1 (read with getRoundData), so
    the order is executable until t1 + window, not t1 + 30 + window; a second later it has lapsed."""
    d = desk
    d.fund(alice, 100_000)
    oid, _ = d.commit(alice, WAD)
    t1 = d.set_index(3000 * WAD)
    d.set_index(3000 * WAD, gap=30)
    until = t1 + d.router.executionWindow()
    assert d.status(oid) == (EXECUTABLE, until)
    d.mine_at(until + 1)
    assert d.status(oid) == (LAPSED, until)
    with expect_revert(d.router.OrderLapsed, orderId=oid, executableUntil=until):
        d.router.executeOrder(oid, sender=bob)


def test_a_skipped_first_round_lapses_the_order(desk, deployer, alice, bob, carol):
    """The feed's round id jumps from r to r + 2 (a phase change: round r + 1 was never written, getRoundData
    reverts): the order is Lapsed with until 0, execute reverts OrderLapsed(id, 0), anyone may cancel and the
    owner gets the fee. A first round stamped before the commit (a replaced feed) lapses the order too."""
    d = desk
    feed = d.s.markets["ETH"].oracle
    d.fund(alice, 100_000)
    oid, _ = d.commit(alice, WAD)
    r = d.round()
    t = d.at()
    feed.updateRoundData(r + 2, 3000 * 10**8, t, 0, sender=deployer)
    assert d.status(oid) == (LAPSED, 0)
    with expect_revert(d.router.OrderLapsed, orderId=oid, executableUntil=0):
        d.router.executeOrder(oid, sender=bob)
    balance = alice.balance
    d.router.cancelOrder(oid, sender=carol)
    assert alice.balance == balance + d.fee

    oid2, tx = d.commit(alice, WAD)
    r = d.round()
    t = d.at()
    feed.updateRoundData(r + 1, 3000 * 10**8, tx.timestamp - 1, 0, sender=deployer)
    assert d.status(oid2) == (LAPSED, 0)


def test_an_execution_the_clearing_house_refuses_uses_the_order_up_and_pays_the_keeper(desk, alice, bob, carol):
    """Orders whose trade the ClearingHouse refuses, each executed by a keeper in the window: the call succeeds,
    OrderFailed carries the refusal as its reason, the keeper gets the fee, the order is gone (a second execution:
    UnknownOrder) and nothing else moved (Desk.fail). A buy limited to one wei less than the quote:
    SlippageExceeded(quote, limit). A buy far beyond the owner's margin: InsufficientMargin(owner, 0, free
    collateral < 0). The owner revoking the router's approval: NotOwnerOrOperator(router, owner); re-approving does
    not bring the order back (UnknownOrder); an order committed after the re-approval executes at the next round.
    The other orders are untouched by each failure (their storage is part of the ledger Desk.fail compares)."""
    d = desk
    d.fund(alice, 100_000)
    q, _ = d.ch.quote(ETH, WAD)
    tight, _ = d.commit(alice, WAD, limit=-q - 1)
    big, _ = d.commit(alice, 1_000 * WAD)
    oid, _ = d.commit(alice, WAD)
    d.set_index(3000 * WAD)
    assert d.ch.quote(ETH, WAD)[0] == q
    d.fail(bob, tight, d.ch.SlippageExceeded, (alice,), quote=q, quoteLimit=-q - 1)
    margin = d.fail(carol, big, d.ch.InsufficientMargin, (alice,), owner=alice, subaccount=0)
    assert margin["freeCollateral"] < 0
    d.vault.setOperator(d.router, False, sender=alice)
    d.fail(bob, oid, d.ch.NotOwnerOrOperator, (alice,), caller=d.router, owner=alice)
    d.vault.setOperator(d.router, True, sender=alice)
    d.at()
    with expect_revert(d.router.UnknownOrder, orderId=oid):
        d.router.executeOrder(oid, sender=alice)
    again, _ = d.commit(alice, WAD)
    d.set_index(3000 * WAD)
    d.execute(bob, again)
    d.check((alice,))


def test_an_execution_with_too_little_gas_for_the_trade_reverts_insufficient_gas_and_leaves_the_order(
        desk, alice, bob):
    """A keeper sends the execution of a valid 1 ETH buy with a gas limit (90k, 120k, 150k) that gets the router
    past its checks to the trade but is too little for the trade (about 190k): the trade runs out of gas, the
    router is left with less than 1/16 of the gas it had at the try, and the whole execution reverts
    InsufficientGas(gasSent) (the gas left at the try, below the limit sent): nothing changes (the order stays
    Executable with the same window, no fee paid; the keeper pays its gas). A later execution with enough gas
    (Ape's estimate) trades normally. On this chain (py-evm, Cancun gas rules; measured when this was written)
    the limits that revert InsufficientGas run from about 72k to 197k; below, the router itself runs out before
    the trade (a plain out-of-gas revert); just above, the trade succeeds and the router runs out emitting or
    paying (also a plain revert, the order stays); no limit made a valid trade end in OrderFailed (scanned from
    40k in 10k steps, and in 50-gas steps near the upper edge)."""
    d = desk
    d.fund(alice, 100_000)
    oid, _ = d.commit(alice, WAD)
    t1 = d.set_index(3000 * WAD)
    until = t1 + d.router.executionWindow()
    before = d.ledger((alice,))
    for limit in (90_000, 120_000, 150_000):
        balance = bob.balance
        d.at()
        with expect_revert(d.router.InsufficientGas) as info:
            d.router.executeOrder(oid, sender=bob, gas=limit)
        exc = info.value  # Ape leaves it undecoded when the data holds a quote byte (helpers.reverts)
        sent = (dict(exc.inputs) if isinstance(exc, CustomError)
                else decode_error(d.router.InsufficientGas, revert_data(exc)))["gasSent"]
        assert 0 < sent < limit
        assert d.ledger((alice,)) == before and d.status(oid) == (EXECUTABLE, until)
        failed = info.value.txn
        assert failed.gas_used <= limit and bob.balance == balance - gas_cost(failed)  # its gas, no fee
    d.execute(bob, oid)
    d.check((alice,))


# ---------------------------------------------------------------------------- D. bad input


def _router_state(d: Desk) -> tuple:
    n = d.router.nextOrderId()
    return n, d.router.balance, tuple(d.router.order(n))


def test_a_refused_commit_stores_nothing_and_keeps_no_ether(desk, alice, bob, carol):
    """Each refusal a named error, and nothing changed (next order id, the router's ETH, the next slot's
    storage): a deadline already passed (DeadlinePassed(deadline, now)),
    a fee one wei under the minimum (KeeperFeeTooLow), |base| one over int96's max either way and int256's
    minimum (ParameterOutOfBounds("baseAmount", |base|)), a sender that has not approved the router
    (RouterNotApproved), an unlisted market (the ClearingHouse's UnknownMarket); unknown ids to execute and
    cancel (UnknownOrder). |base| = int96 max either way commits."""
    d = desk
    r = d.router
    d.fund(alice, 10_000)
    d.fund(carol, 10_000, approve=False)
    before = _router_state(d)
    t = d.at()
    with expect_revert(r.DeadlinePassed, deadline=t - 1, timestamp=t):
        r.commitOrder(0, ETH, WAD, MAX_UINT, t - 1, value=d.fee, sender=alice)
    with expect_revert(r.KeeperFeeTooLow, sent=d.fee - 1, minimum=d.fee):
        r.commitOrder(0, ETH, WAD, MAX_UINT, t + 60, value=d.fee - 1, sender=alice)
    for base in (INT96_MAX + 1, -INT96_MAX - 1, -2**255, 2**255 - 1):
        with expect_revert(r.ParameterOutOfBounds, name=b"baseAmount".ljust(32, b"\0"), value=abs(base)):
            r.commitOrder(0, ETH, base, MAX_UINT, t + 60, value=d.fee, sender=alice)
    with expect_revert(r.RouterNotApproved, owner=carol):
        r.commitOrder(0, ETH, WAD, MAX_UINT, t + 60, value=d.fee, sender=carol)
    with expect_revert(d.ch.UnknownMarket, marketId=3):
        r.commitOrder(0, 3, WAD, MAX_UINT, t + 60, value=d.fee, sender=alice)
    n = r.nextOrderId()
    for oid in (0, n, 2**256 - 1):
        with expect_revert(r.UnknownOrder, orderId=oid):
            r.executeOrder(oid, sender=bob)
        with expect_revert(r.UnknownOrder, orderId=oid):
            r.cancelOrder(oid, sender=alice)
        assert r.orderStatus(oid) == (NONE, 0)
    assert _router_state(d) == before
    for base in (INT96_MAX, -INT96_MAX):  # the bounds themselves commit (the trade would be refused later)
        d.commit(alice, base, deadline=2**40)  # a deadline past uint32 saturates in storage


def test_the_router_constructor_bounds(project, desk, deployer):
    """minKeeperFee in [0, 0.1 ether], executionWindow in [12, 3600] (ParameterOutOfBounds(name, value) one past
    either end; both ends deploy); a zero ClearingHouse: ZeroAddress. The deployed router's parameters are the
    config's (0.0001 ETH, 60 s)."""
    ch = desk.ch
    r = desk.router
    assert (r.minKeeperFee(), r.executionWindow()) == (10**14, 60)
    assert (r.MAX_MIN_KEEPER_FEE(), r.MIN_EXECUTION_WINDOW(), r.MAX_EXECUTION_WINDOW()) == (10**17, 12, 3600)
    for fee, window, name, value in ((10**17 + 1, 60, "minKeeperFee", 10**17 + 1),
                                     (0, 11, "executionWindow", 11), (0, 3601, "executionWindow", 3601)):
        with expect_revert(project.OrderRouter.ParameterOutOfBounds, name=name.encode().ljust(32, b"\0"),
                           value=value):
            project.OrderRouter.deploy(ch, fee, window, sender=deployer)
    with expect_revert(project.OrderRouter.ZeroAddress):
        project.OrderRouter.deploy(ZERO, 0, 60, sender=deployer)
    for fee, window in ((10**17, 12), (0, 3600)):
        other = project.OrderRouter.deploy(ch, fee, window, sender=deployer)
        assert (other.minKeeperFee(), other.executionWindow(), other.nextOrderId()) == (fee, window, 1)


def test_clearing_house_setters_owner_only_bounded_and_a_new_router_takes_over(project, desk, deployer, alice,
                                                                               bob, carol):
    """setOrderRouter and setDelayedOrders: a non-owner reverts OwnableUnauthorizedAccount; setOrderRouter(0)
    ZeroAddress; setDelayedOrders on an unlisted market UnknownMarket; nothing changes. On a fresh ClearingHouse
    (no router: orderRouter() is zero) turning delayed orders on reverts NoOrderRouter, off is allowed; once a
    router is set (OrderRouterSet), on still needs a peg tolerance (the listing sets none: PegToleranceRequired(1),
    nothing changed); with one (11 bps) it works. Setting a new router on the deployment hands it the market: the
    old router takes no new order (NotCurrentRouter(new router)) and its orders can no longer trade: a pending one
    its owner cancels for the fee back; an executable one a keeper's execution cannot use up (the refusal,
    DelayedOrdersOnly(ETH), is not its owner's doing: the call reverts, the order stays, no fee paid); once it
    lapses anyone cancels it and the fee goes back to its owner."""
    d = desk
    ch = d.ch
    d.fund(alice, 100_000)
    oid, _ = d.commit(alice, WAD)
    kept, _ = d.commit(alice, -WAD)
    state = (ch.orderRouter(), ch.delayedOrders(ETH), ch.delayedOrders(BTC))
    for call in (lambda: ch.setOrderRouter(carol, sender=carol),
                 lambda: ch.setDelayedOrders(BTC, True, sender=carol),
                 lambda: ch.setDelayedOrders(ETH, False, sender=alice)):
        with expect_revert(ch.OwnableUnauthorizedAccount):
            call()
    with expect_revert(ch.ZeroAddress):
        ch.setOrderRouter(ZERO, sender=deployer)
    for on in (True, False):
        with expect_revert(ch.UnknownMarket, marketId=3):
            ch.setDelayedOrders(3, on, sender=deployer)
    assert (ch.orderRouter(), ch.delayedOrders(ETH), ch.delayedOrders(BTC)) == state
    with expect_revert(ch.UnknownMarket, marketId=3):
        ch.delayedOrders(3)

    # A fresh ClearingHouse: no router yet.
    from helpers.governance import mp_tuple

    fresh = project.ClearingHouse.deploy(d.vault, deployer, sender=deployer)
    feed = project.MockAggregator.deploy(8, 3000 * 10**8, "ETH / USD", sender=deployer)
    fresh.listMarket(b"ETH".ljust(32, b"\0"), mp_tuple(ch.marketParams(ETH), oracle=feed.address),
                     ch.insuranceFeeShare(ETH), 10_000 * WAD, sender=deployer)
    assert fresh.orderRouter() == ZERO and fresh.delayedOrders(1) is False
    with expect_revert(fresh.NoOrderRouter):
        fresh.setDelayedOrders(1, True, sender=deployer)
    fresh.setDelayedOrders(1, False, sender=deployer)
    tx = fresh.setOrderRouter(bob, sender=deployer)
    assert [e.router for e in tx.decode_logs(fresh.OrderRouterSet)] == [bob.address]
    assert fresh.pegTolerance(1) == 0  # listing sets none: delayed orders need one
    with expect_revert(fresh.PegToleranceRequired, marketId=1):
        fresh.setDelayedOrders(1, True, sender=deployer)
    assert fresh.delayedOrders(1) is False
    fresh.setPegTolerance(1, 11, sender=deployer)
    fresh.setDelayedOrders(1, True, sender=deployer)
    assert fresh.orderRouter() == bob.address and fresh.delayedOrders(1) is True

    # The deployment's router replaced: the old router's order cannot trade any more.
    tx = ch.setOrderRouter(carol, sender=deployer)
    assert [e.router for e in tx.decode_logs(ch.OrderRouterSet)] == [carol.address]
    assert d.status(kept)[0] == PENDING
    balance = alice.balance
    d.at()
    tx = d.router.cancelOrder(kept, sender=alice)
    assert alice.balance == balance + d.fee - gas_cost(tx) and d.status(kept) == (NONE, 0)
    t = d.at()
    with expect_revert(d.router.NotCurrentRouter, current=carol):  # no new order in the old router
        d.router.commitOrder(0, ETH, WAD, MAX_UINT, t + 60, value=d.fee, sender=alice)
    t1 = d.set_index(3000 * WAD)
    until = t1 + d.router.executionWindow()
    assert d.status(oid) == (EXECUTABLE, until)
    d.hold(bob, oid, ch.DelayedOrdersOnly, (alice,), marketId=ETH)  # kept: its owner did not cause it
    d.mine_at(until + 1)
    assert d.status(oid) == (LAPSED, until)
    balance = alice.balance
    d.router.cancelOrder(oid, sender=bob)
    assert alice.balance == balance + d.fee and d.router.balance == 0 and d.queue() == (0, 0)


# ---------------------------------------------------------------------------- E. liquidation


def test_liquidation_still_works_in_a_delayed_market(chain, desk, alice, bob):
    """A 100 ETH long opened through the router on 31,000 USD, the index down to 2,800: kick (checked against the
    documented slice model by helpers.liquidation.kick_checked) and take are not trades: both work with delayed
    orders on, and the taker gets its position in ETH without the router."""
    d = desk
    d.fund(alice, 31_000)
    d.fund(bob, 200_000)
    oid, _ = d.commit(alice, 100 * WAD)
    d.set_index(3000 * WAD)
    d.execute(bob, oid)
    d.set_index(2800 * WAD)
    assert d.vault.isLiquidatable(alice, 0)
    d.at()
    aid, m, _ = kick_checked(d.s, chain, alice, ETH, bob, bob)
    assert m.size > 0
    d.at(60)
    tx = d.s.liquidation.take(aid, m.size, MAX_UINT, 0, sender=bob)
    (take,) = tx.decode_logs(d.s.liquidation.Take)
    assert d.ch.position(bob, 0, ETH).size == take.amount > 0
    assert d.ch.position(alice, 0, ETH).size == 100 * WAD - take.amount


# ---------------------------------------------------------------------------- found while writing these


def test_an_owner_who_blocks_its_own_order_loses_it_to_the_first_keeper(desk, request, alice, bob, carol):
    """Found while writing these, and fixed in OrderRouter.executeOrder. Before the fix an execution the
    ClearingHouse refused reverted and left the order: the owner could keep its own executable order unexecutable
    (revoke the router's Vault approval), watch the window, and bring the order back once it showed which way the
    next update went: 20 s into the 60 s window, with a +0.5 % update pending, it re-approved and executed the
    order itself before the update, a keeper repegged, the close went through the router at the next round:
    +3,005.02 USD from the pool, what the direct attack took (had nothing useful shown, the order would have
    lapsed and a cancel refunded the whole fee: the option cost gas only). Now a refused trade uses the order up.
    The attacker commits a 1M USD long and at once revokes the approval; the next round (same price) makes the
    order executable; the honest keeper's execution in the window's first block uses it up (OrderFailed, reason
    NotOwnerOrOperator(router, attacker), the keeper paid). 20 s later the attacker sees the +0.5 % update
    pending and re-approves: executing the order reverts UnknownOrder. The update lands, a keeper repegs (no
    position open: cost 0). The attacker's collateral is unchanged (no trade) and it lost the keeper fee; pool NAV
    and insurance are unchanged; chain equals model to the wei."""
    d = desk
    d.fund(alice, 500_000)
    start = _wealth(d, alice)
    size = 1_000_000 * WAD // 3000
    index = 3000 * WAD * 10_050 // 10_000
    oid, _ = d.commit(alice, size)
    d.vault.setOperator(d.router, False, sender=alice)
    t1 = d.set_index(3000 * WAD)  # round r + 1: the window opens
    assert d.status(oid) == (EXECUTABLE, t1 + d.router.executionWindow())
    # the honest keeper, in the window's first block (t1 + 1: Desk.fail checks the block time)
    d.fail(bob, oid, d.ch.NotOwnerOrOperator, (alice,), caller=d.router, owner=alice)
    d.at(20)
    d.vault.setOperator(d.router, True, sender=alice)  # the update is pending: in (same block on a real chain)
    d.at()
    with expect_revert(d.router.UnknownOrder, orderId=oid):
        d.router.executeOrder(oid, sender=alice)
    d.set_index(index)
    rep = d.repeg(carol)
    assert rep.cost == 0
    d.check((alice,))
    c1, nav1, ins1 = _wealth(d, alice)
    gain, d_nav, d_ins = c1 - start[0], nav1 - start[1], ins1 - start[2]
    assert gain <= 0 and d_nav >= 0 and d_ins >= 0
    assert d.ch.position(alice, 0, ETH).size == 0 and d.router.balance == 0  # no trade; the fee went to the keeper
    report(request, f"owner-blocked order, +0.5 % update seen 20 s into the {d.router.executionWindow()} s window: "
                    f"before the fix attacker +3,005.02 USD; now the first keeper uses the order up: attacker "
                    f"{usd(gain)} USD and the keeper fee ({d.fee / 1e18:g} ETH) lost, pool NAV {usd(d_nav)}, "
                    f"insurance {usd(d_ins)} (repeg cost {rep.cost / WAD:,.2f})")


# ---------------------------------------------------------------------------- G. the attacker review's findings


def _collateral(d: Desk, who, subs=(0,)) -> int:
    return sum(d.vault.collateral(who, sub) for sub in subs)


def test_review_the_executor_cannot_pick_the_stale_peg(desk, request, alice, bob, carol, dave):
    """Finding 1 (the executor chose between the stale peg and the repegged one). An honest seller (dave) commits a
    10 ETH sell, then the attacker (alice) a 1M USD buy; the feed updates +0.5 %. Before any repeg: dave's sell,
    the queue's head, is against the move, which the old one-directional rule let through at the stale peg (the
    peg more than 11 bps below the index blocked only buys): now its execution reverts PegStale(ETH, peg, index)
    and keeps it (dave is no longer filled at the stale price); the attacker executing its own buy first:
    NotFirstInQueue(buy, sell); nothing moved. A keeper repegs; the attacker still cannot go first; dave's sell
    executes at the fresh peg (more than the stale quote), then the attacker's buy. Both close through the router
    at the next round (same price). The attacker's collateral falls (fees only); pool NAV + insurance rise by what
    the two traders lost; chain equals model to the wei."""
    d = desk
    ch = d.ch
    d.fund(alice, 500_000)
    d.fund(dave, 100_000)
    start_a, start_d = _collateral(d, alice), _collateral(d, dave)
    _, nav0, ins0 = _wealth(d, alice)
    size = 1_000_000 * WAD // 3000
    index = 3000 * WAD * 10_050 // 10_000
    sell, _ = d.commit(dave, -10 * WAD)
    buy, _ = d.commit(alice, size)
    t1 = d.set_index(index)
    stale_peg = d.amm.pegPrice(ETH)
    tol = ch.pegTolerance(ETH)
    assert index > stale_peg + index * tol // 10_000  # stale: below the band (the old rule held buys only)
    stale_q = ch.quote(ETH, -10 * WAD)[0]  # what dave would have received at the stale peg
    d.hold(bob, sell, ch.PegStale, (alice, dave), marketId=ETH, peg=stale_peg, indexPrice=index)
    before = d.ledger((alice, dave))
    d.at()
    with expect_revert(d.router.NotFirstInQueue, orderId=buy, head=sell):
        d.router.executeOrder(buy, sender=alice)
    assert d.ledger((alice, dave)) == before
    assert d.status(sell) == d.status(buy) == (EXECUTABLE, t1 + d.router.executionWindow())
    d.repeg(carol)
    d.at()
    with expect_revert(d.router.NotFirstInQueue, orderId=buy, head=sell):
        d.router.executeOrder(buy, sender=alice)
    fresh_q = ch.quote(ETH, -10 * WAD)[0]
    sold = d.execute(bob, sell)
    assert sold.quoteDelta == fresh_q > stale_q
    opened = d.execute(alice, buy)  # the attacker may execute its own order, once it is the head, at the fresh peg
    assert opened.baseDelta == size
    a_close, _ = d.commit(alice, 0)
    d_close, _ = d.commit(dave, 0)
    d.set_index(index)
    closed = d.execute(bob, a_close)
    d.execute(bob, d_close)
    d.check((alice, dave))
    gain_a, gain_d = _collateral(d, alice) - start_a, _collateral(d, dave) - start_d
    _, nav1, ins1 = _wealth(d, alice)
    d_nav, d_ins = nav1 - nav0, ins1 - ins0
    assert gain_a <= 0 and -gain_a >= opened.fee + closed.fee - 10 ** 6
    assert d_nav + d_ins == -(gain_a + gain_d) >= 0 and d_ins >= 0
    report(request, f"executor picks the stale peg, +0.50 %: before the fix the honest 10 ETH sell (against the move) "
                    f"was fillable at the stale peg for {stale_q / WAD:,.2f} USD, the attacker-executor's choice; now "
                    f"held (PegStale) until the repeg, filled at {fresh_q / WAD:,.2f} "
                    f"(+{(fresh_q - stale_q) / WAD:,.2f} for the seller); attacker's own 1M USD buy executed before "
                    f"the repeg: held too; round trip attacker {usd(gain_a)} USD (fees only), pool NAV {usd(d_nav)}, "
                    f"insurance {usd(d_ins)}")


def _victim_limit(d: Desk, base: int, bps: int) -> int:
    """The SDK's limit (vperp.client.Client.quote_limit): the quote view worsened by `bps`."""
    q, _ = d.ch.quote(ETH, base)
    return -(q * (10_000 + bps) // 10_000) if base > 0 else max(q * (10_000 - bps) // 10_000, 0)


def _front_size(d: Desk, victim_base: int, limit: int) -> int:
    """The largest buy (in whole ETH) ahead of the victim's that leaves its limit met (the vAMM's path: a buy of
    x then v costs quote(x + v) - quote(x)): the sandwich the executor could build before the queue."""
    lo, hi = 0, 10_000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        paid = d.model.quote(ETH, (mid * WAD) + victim_base)[0] - d.model.quote(ETH, mid * WAD)[0]
        if -paid <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo * WAD


def test_review_the_executor_cannot_order_a_round_to_sandwich(desk, request, alice, bob, dave):
    """Finding 2 (the executor chose the order in which a round's orders met the vAMM). The victim (dave) commits a
    1,000 ETH buy with the SDK's 50 bps limit (the quote view worsened by 50 bps); the attacker, reacting to the
    public commit, commits a buy on sub-account 1 and a sell of the same size on sub-account 2 (the size the
    victim's limit allows in front of it). Before the fix the executor ran attacker buy, victim, attacker sell:
    the figure is replayed on a copy of the model (the same trades at the same time). Now, at the next round (same
    price, no repeg needed), the attacker executing its buy or its sell first: NotFirstInQueue(id, victim), nothing
    changed. The queue runs victim, attacker buy, attacker sell: the victim pays exactly the quote view just before
    its execution (a lone execution), and the attacker's wealth across both sub-accounts (its collateral plus the
    two legs' quotes: the long and the short cancel at any mark) falls by the fees and the spread it crossed."""
    d = desk
    v = 1_000 * WAD
    d.fund(dave, 1_000_000)
    d.fund(alice, 1_000_000, sub=1)
    d.fund(alice, 1_000_000, approve=False, sub=2)
    start = _collateral(d, alice, (1, 2))
    limit = _victim_limit(d, v, 50)
    victim, _ = d.commit(dave, v, limit=limit)
    x = _front_size(d, v, limit)
    assert x > 0
    a_buy, _ = d.commit(alice, x, sub=1)
    a_sell, _ = d.commit(alice, -x, sub=2)
    assert d.queue() == (victim, a_sell)
    t1 = d.set_index(3000 * WAD)

    # Before the fix: the executor's order, replayed on a copy of the model at the execution's time.
    old = copy.deepcopy(d.model)
    t = t1 + 1
    r1 = old.open_position(alice.address, 1, ETH, x, MAX_UINT, t, t + 600)
    rv = old.open_position(dave.address, 0, ETH, v, limit, t, t + 600)
    r2 = old.open_position(alice.address, 2, ETH, -x, 0, t, t + 600)
    old_gain = r1.quote + r2.quote - r1.fee - r2.fee
    assert old_gain > 0 and -rv.quote <= limit

    before = d.ledger((alice, dave), subs=(0, 1, 2))
    for oid in (a_buy, a_sell):
        d.at()
        with expect_revert(d.router.NotFirstInQueue, orderId=oid, head=victim):
            d.router.executeOrder(oid, sender=alice)
    assert d.ledger((alice, dave), subs=(0, 1, 2)) == before
    lone = d.ch.quote(ETH, v)[0]
    pv = d.execute(bob, victim)
    assert pv.quoteDelta == lone and -lone <= limit
    p1 = d.execute(alice, a_buy)
    p2 = d.execute(alice, a_sell)
    assert p1.baseDelta == x and p2.baseDelta == -x
    d.check((alice, dave), subs=(0, 1, 2))
    gain = _collateral(d, alice, (1, 2)) - start + p1.quoteDelta + p2.quoteDelta
    assert gain <= 0
    report(request, f"sandwich by execution order, 1,000 ETH victim buy with 50 bps: before the fix (executor runs "
                    f"attacker buy {x / WAD:,.0f} ETH, victim, attacker sell) attacker {usd(old_gain)} USD, victim "
                    f"paid {-rv.quote / WAD:,.2f}; now FIFO: victim paid {-pv.quoteDelta / WAD:,.2f} (= the lone "
                    f"quote, {(pv.quoteDelta - rv.quote) / WAD:,.2f} saved), attacker {usd(gain)} USD")


def test_review_a_close_order_trades_at_most_what_it_was_committed_for(desk, request, alice, bob, carol):
    """Finding 4 (a close's absolute limit could be bypassed when the free size grew after the commit). A close
    (base 0) is stored as minus the free part at the commit (close = true); at execution it trades the free part
    then, at most that, the limit scaled to it with Math.mulDiv, rounded for the owner. Alice, 10 ETH long, commits
    a 4 ETH sell, then a close of the 10 (limit L, quoted for 10: below the quote of selling 10 now), then a 9 ETH
    buy, then a second close (stored -10: the free part is still 10). The next round: the sell executes (free part
    6); the first close trades 6 against ceil(L x 6 / 10): L is chosen (from a copy of the model: the quote q6 of
    selling 6 after the 4) so that this is q6 + 1 while the floor would be q6: SlippageExceeded(q6, q6 + 1), so the
    limit is scaled and rounded up (a sell receives at least the committed price); used up. The buy executes
    (free part 15); the second close sells only the committed 10 (5 ETH left). The mirror for a short: -10 ETH,
    a 4 ETH buy, then a close (+10, limit L' above the quote of buying 10 now); at execution 6 against
    floor(L' x 6 / 10), chosen to be the price of buying 6 less one wei (the ceiling would be the price):
    SlippageExceeded(-p6, p6 - 1). A close on a sub-account with no position: NothingToClose, nothing stored."""
    d = desk
    ch = d.ch
    d.fund(alice, 300_000)
    o, _ = d.commit(alice, 10 * WAD)
    d.set_index(3000 * WAD)
    d.execute(bob, o)

    sell, _ = d.commit(alice, -4 * WAD)
    sim = copy.deepcopy(d.model)
    t = d.now + 20
    sim.open_position(alice.address, 0, ETH, -4 * WAD, 0, t, t + 600)
    q6 = sim.quote(ETH, -6 * WAD)[0]
    limit = q6 * 10 // 6 + 1  # ceil(limit x 6 / 10) = q6 + 1, floor = q6
    assert limit * 6 // 10 == q6 and -(-limit * 6 // 10) == q6 + 1
    assert limit < ch.quote(ETH, -10 * WAD)[0]  # the 10 ETH close would meet it at the commit
    shrunk, _ = d.commit(alice, 0, limit=limit)
    grow, _ = d.commit(alice, 9 * WAD)
    grown, _ = d.commit(alice, 0)
    assert d.router.order(shrunk).baseAmount == d.router.order(grown).baseAmount == -10 * WAD
    d.set_index(3000 * WAD)
    d.execute(bob, sell)
    assert ch.quote(ETH, -6 * WAD)[0] == q6
    d.fail(bob, shrunk, ch.SlippageExceeded, (alice,), quote=q6, quoteLimit=q6 + 1)
    d.execute(bob, grow)
    assert ch.position(alice, 0, ETH).size == 15 * WAD
    pc = d.execute(bob, grown)
    assert pc.baseDelta == -10 * WAD and pc.newSize == 5 * WAD
    d.check((alice,))

    flip, _ = d.commit(alice, -15 * WAD)
    d.set_index(3000 * WAD)
    d.execute(bob, flip)
    assert ch.position(alice, 0, ETH).size == -10 * WAD
    buy, _ = d.commit(alice, 4 * WAD)
    sim = copy.deepcopy(d.model)
    t = d.now + 20
    sim.open_position(alice.address, 0, ETH, 4 * WAD, MAX_UINT, t, t + 600)
    p6 = -sim.quote(ETH, 6 * WAD)[0]
    limit = (p6 * 10 - 1) // 6  # floor(limit x 6 / 10) = p6 - 1, ceil = p6
    assert limit * 6 // 10 == p6 - 1 and -(-limit * 6 // 10) == p6
    assert limit > -ch.quote(ETH, 10 * WAD)[0]
    cover, _ = d.commit(alice, 0, limit=limit)
    assert d.router.order(cover).baseAmount == 10 * WAD and d.router.order(cover).close
    t = d.at()
    with expect_revert(d.router.NothingToClose, owner=alice, subaccount=1, marketId=ETH):
        d.router.commitOrder(1, ETH, 0, 0, t + 60, value=d.fee, sender=alice)
    d.set_index(3000 * WAD)
    d.execute(bob, buy)
    d.fail(carol, cover, ch.SlippageExceeded, (alice,), quote=-p6, quoteLimit=p6 - 1)
    assert ch.position(alice, 0, ETH).size == -6 * WAD
    d.check((alice,))
    report(request, "close order: the free part shrank 10 -> 6: the limit scaled to ceil(L x 6/10) (exact, "
                    "SlippageExceeded at q6 + 1; a short's floor at p6 - 1); grew 10 -> 15: the close sold the "
                    "committed 10 only (before the fix: the whole free part against the absolute limit)")


def test_review_fifo_queue_mechanics(desk, alice, bob, carol, dave):
    """Each market's open orders form a queue, oldest first (queue(id) = (head, tail), Order.prev / next). Four ETH
    orders by two owners: the links in commit order. Cancels (owners, pending) from the middle, then the head,
    then the tail relink the rest. A BTC order has its own queue and executes whatever ETH's head is. Executing a
    later ETH order while the head is executable, then while it has lapsed: NotFirstInQueue(id, head), nothing
    changed. Anyone cancels the lapsed head (the fee to its owner); the next executes; the queue is empty."""
    d = desk
    d.fund(alice, 100_000)
    d.fund(dave, 100_000)
    o1, _ = d.commit(alice, WAD)
    o2, _ = d.commit(dave, -WAD)
    o3, tx3 = d.commit(alice, 2 * WAD, deadline=d.now + 30)
    o4, _ = d.commit(dave, WAD)
    links = lambda oid: (d.router.order(oid).prev, d.router.order(oid).next)  # noqa: E731
    assert d.queue() == (o1, o4) and d.queue(BTC) == (0, 0)
    assert [links(i) for i in (o1, o2, o3, o4)] == [(0, o2), (o1, o3), (o2, o4), (o3, 0)]
    for oid, owner, queue, want in ((o2, dave, (o1, o4), [(o1, 0, o3), (o3, o1, o4), (o4, o3, 0)]),
                                    (o1, alice, (o3, o4), [(o3, 0, o4), (o4, o3, 0)]),
                                    (o4, dave, (o3, o3), [(o3, 0, 0)])):
        d.at()
        d.router.cancelOrder(oid, sender=owner)
        assert d.queue() == queue and [(i, *links(i)) for i, _, _ in want] == want
        assert tuple(d.router.order(oid)) == EMPTY
    o5, _ = d.commit(dave, -WAD)
    btc, _ = d.commit(alice, WAD // 10, mid=BTC)
    assert d.queue() == (o3, o5) and d.queue(BTC) == (btc, btc) and links(o5) == (o3, 0)
    d.set_index(3000 * WAD)
    deadline = d.router.order(o3).deadline
    assert deadline == tx3.timestamp + 29
    assert d.status(o3) == (EXECUTABLE, deadline) and d.status(o5)[0] == EXECUTABLE
    before = d.ledger((alice, dave))
    d.at()
    with expect_revert(d.router.NotFirstInQueue, orderId=o5, head=o3):
        d.router.executeOrder(o5, sender=bob)
    assert d.ledger((alice, dave)) == before
    d.set_index(d.model.markets[BTC].answer * FEED, mid=BTC)
    d.execute(bob, btc)  # BTC's queue is its own
    assert d.queue(BTC) == (0, 0)
    d.mine_at(deadline + 1)
    assert d.status(o3) == (LAPSED, deadline) and d.status(o5)[0] == EXECUTABLE
    before = d.ledger((alice, dave))
    d.at()
    with expect_revert(d.router.NotFirstInQueue, orderId=o5, head=o3):
        d.router.executeOrder(o5, sender=bob)
    assert d.ledger((alice, dave)) == before
    balance = alice.balance
    d.at()
    d.router.cancelOrder(o3, sender=carol)
    assert alice.balance == balance + d.fee and d.queue() == (o5, o5) and links(o5) == (0, 0)
    d.execute(bob, o5)
    assert d.queue() == (0, 0)
    d.check((alice, dave))


def test_review_delayed_orders_need_a_peg_tolerance_and_a_dead_feed_lets_anyone_cancel(desk, deployer, alice,
                                                                                        bob, carol):
    """PegToleranceRequired: BTC (delayed orders off, 11 bps) set to tolerance 0, then turned on: reverts
    PegToleranceRequired(BTC), nothing changed (the model refuses the same); with 11 bps it turns on; then
    setPegTolerance(id, 0) reverts PegToleranceRequired for BTC and ETH (both on), the tolerance kept. A dead
    feed: governance replaces ETH's oracle (setMarketParams) by a contract without latestRoundData (the collateral
    token: it has decimals()): an open order reads as Lapsed (until 0), execute reverts OrderLapsed(id, 0), anyone
    cancels it and the fee goes back to its owner; a new commit in that market reverts."""
    import ape

    from helpers.governance import mp_tuple
    from vperp.model.base import ModelRevert

    d = desk
    ch = d.ch
    assert ch.pegTolerance(BTC) == 11 and ch.delayedOrders(BTC) is False
    ch.setPegTolerance(BTC, 0, sender=deployer)
    d.model.set_peg_tolerance(BTC, 0)
    before = d.ledger()
    with expect_revert(ch.PegToleranceRequired, marketId=BTC):
        ch.setDelayedOrders(BTC, True, sender=deployer)
    with pytest.raises(ModelRevert, match="PegToleranceRequired"):
        d.model.set_delayed_orders(BTC, True)
    assert ch.delayedOrders(BTC) is False and d.ledger() == before
    ch.setPegTolerance(BTC, 11, sender=deployer)
    d.model.set_peg_tolerance(BTC, 11)
    ch.setDelayedOrders(BTC, True, sender=deployer)
    d.model.set_delayed_orders(BTC, True)
    for mid in (BTC, ETH):
        with expect_revert(ch.PegToleranceRequired, marketId=mid):
            ch.setPegTolerance(mid, 0, sender=deployer)
        with pytest.raises(ModelRevert, match="PegToleranceRequired"):
            d.model.set_peg_tolerance(mid, 0)
        assert ch.pegTolerance(mid) == 11 and ch.delayedOrders(mid) is True
    d.check()

    d.fund(alice, 100_000)
    oid, _ = d.commit(alice, WAD)
    d.at()
    ch.setMarketParams(ETH, mp_tuple(ch.marketParams(ETH), oracle=d.s.collateral.address),
                       ch.insuranceFeeShare(ETH), sender=deployer)
    assert d.status(oid) == (LAPSED, 0)
    d.at()
    with expect_revert(d.router.OrderLapsed, orderId=oid, executableUntil=0):
        d.router.executeOrder(oid, sender=bob)
    balance = alice.balance
    d.at()
    d.router.cancelOrder(oid, sender=carol)
    assert alice.balance == balance + d.fee and d.queue() == (0, 0) and d.router.balance == 0
    d.at()
    with ape.reverts():
        d.router.commitOrder(0, ETH, WAD, MAX_UINT, d.now + 60, value=d.fee, sender=alice)


# ---------------------------------------------------------------------------- found by the final review


def test_an_owner_that_refuses_eth_cannot_hold_the_queue_with_a_lapsed_order(desk, project, deployer, alice, bob):
    """A contract owner whose every ETH receipt reverts commits an order that lapses at the head of ETH's queue
    (its deadline is the second of the next round: executable for that second only, so its fee is its owner's
    on a cancel, not a bounty). The cancel used to push the fee to the owner and revert with it
    (EtherTransferFailed), so nothing could remove the order and every later order reverted NotFirstInQueue: the
    market's only way to trade was blocked for a commit and one fee. Now the cancel credits the refused fee
    (`RefundCredited`, `refunds(owner)`), the order leaves the queue and the next executes; the owner claims the
    credit to another address (`claimRefund`), once (`NothingToClaim` after)."""
    d = desk
    rejecter = project.MockEtherRejecter.deploy(sender=deployer)
    d.s.fund(deployer, 10_000)
    units = d.s.units(10_000)
    d.s.collateral.mint(rejecter, units, sender=deployer)
    r, v = d.router, d.vault
    rejecter.act(d.s.collateral, d.s.collateral.approve.encode_input(v, units), sender=deployer)
    rejecter.act(v, v.deposit.encode_input(0, units), sender=deployer)
    rejecter.act(v, v.setOperator.encode_input(r, True), sender=deployer)
    d.fund(alice, 100_000)
    t = d.at()
    data = r.commitOrder.encode_input(0, ETH, WAD, MAX_UINT, t + 2)  # the deadline: the next round's second
    rejecter.act(r, data, value=d.fee, sender=deployer)
    blocker = r.nextOrderId() - 1
    honest, _ = d.commit(alice, WAD)
    assert d.queue() == (blocker, honest)
    assert d.set_index(3000 * WAD) == t + 2  # the next round: both executable, the blocker for this second only
    d.mine_at(t + 3)
    assert d.status(blocker) == (LAPSED, t + 2) and d.status(honest)[0] == EXECUTABLE
    assert r.cancelBounty(blocker) == 0
    d.at()
    with expect_revert(r.NotFirstInQueue, orderId=honest, head=blocker):
        r.executeOrder(honest, sender=bob)
    d.at()
    held = r.balance
    tx = r.cancelOrder(blocker, sender=bob)  # anyone: the refund to the owner fails, it is credited
    (credited,) = tx.decode_logs(r.RefundCredited)
    assert (credited.owner, credited.amount) == (rejecter.address, d.fee)
    assert r.refunds(rejecter) == d.fee and r.balance == held  # still held, now as a credit
    assert d.queue() == (honest, honest)
    d.execute(bob, honest)  # the queue moves on
    d.check((alice,))
    d.at()
    with pytest.raises(Exception) as refused:  # claimed to an address that refuses it: CallFailed(EtherTransferFailed)
        rejecter.act(r, r.claimRefund.encode_input(rejecter), sender=deployer)
    selector = keccak(text="EtherTransferFailed(address,uint256)")[:4]
    assert selector + bytes(12) + bytes.fromhex(rejecter.address[2:]) + d.fee.to_bytes(32, "big") in bytes(
        refused.value.inputs["reason"])
    assert r.refunds(rejecter) == d.fee and r.balance == held - d.fee  # the credit stands
    d.at()
    before = bob.balance
    rejecter.act(r, r.claimRefund.encode_input(bob), sender=deployer)
    assert bob.balance == before + d.fee and r.refunds(rejecter) == 0 and r.balance == held - 2 * d.fee  # and the executed fee
    d.at()
    with pytest.raises(Exception) as refused:  # a second claim: CallFailed(NothingToClaim(rejecter)) through the mock
        rejecter.act(r, r.claimRefund.encode_input(bob), sender=deployer)
    selector = keccak(text="NothingToClaim(address)")[:4]
    assert selector + bytes(12) + bytes.fromhex(rejecter.address[2:]) in bytes(refused.value.inputs["reason"])
    assert bob.balance == before + d.fee and r.balance == held - 2 * d.fee
    d.at()
    with expect_revert(r.NothingToClaim, owner=alice):
        r.claimRefund(alice, sender=alice)


def test_a_keeper_that_refuses_its_fee_cannot_execute_and_the_order_waits_for_another(desk, project, deployer, alice,
                                                                                     bob):
    """The keeper fee is pushed to the executor, and a push that fails reverts the whole execution
    (`EtherTransferFailed`): a keeper contract that cannot take ETH leaves the order, the queue, the owner's position
    and the router's balance exactly as they were, and any other keeper executes it."""
    d = desk
    keeper = project.MockEtherRejecter.deploy(sender=deployer)
    d.fund(alice, 100_000)
    oid, _ = d.commit(alice, WAD)
    d.set_index(3000 * WAD)  # the next round: executable
    d.at()
    before = d.ledger((alice,))
    with pytest.raises(Exception) as refused:  # CallFailed(EtherTransferFailed(keeper, fee)) through the mock
        keeper.act(d.router, d.router.executeOrder.encode_input(oid), sender=deployer)
    selector = keccak(text="EtherTransferFailed(address,uint256)")[:4]
    assert selector + bytes(12) + bytes.fromhex(keeper.address[2:]) + d.fee.to_bytes(32, "big") in bytes(
        refused.value.inputs["reason"])
    assert d.ledger((alice,)) == before and d.queue() == (oid, oid)
    d.execute(bob, oid)
    d.check((alice,))


# ---------------------------------------------------------------------------- H. orders committed to lapse


def test_orders_committed_to_lapse_at_the_head_cost_their_fees_and_pay_the_keeper_who_clears_them(
        desk, request, alice, bob, carol):
    """The griefing attack: an attacker commits orders that can never execute (each with a deadline of its own
    block, so it lapses before the next round) at the head of ETH's queue, ahead of an honest order. The honest
    order cannot execute until someone cancels each of them (NotFirstInQueue). Before, the cancel sent each fee
    back to the attacker: the attack cost it only the commits' gas, and cost the keeper the cancels' gas. Now an
    order past its deadline, with the feed still on the round of its commit and fresh, pays its fee to whoever
    cancels it (`cancelBounty`, CancelBountyPaid): the keeper's pass, which clears a lapsed head as soon as it
    sees one, takes the three fees. The owner may still take its own fee back by cancelling first (the fourth),
    and once the next round is out a lapsed order refunds its owner whoever cancels it (the fifth: bounty 0;
    the bounty is judged on the latest round alone, see the review test below)."""
    d = desk
    r = d.router
    n = 3
    d.fund(alice, 100_000)
    d.fund(carol, 100_000)
    blockers = [d.commit(carol, WAD, deadline=d.now + 1)[0] for _ in range(n + 2)]  # each: its own block's time
    honest, _ = d.commit(alice, WAD)
    for oid in blockers:  # past their deadlines already, the feed on the round of their commit: each a bounty
        assert d.status(oid)[0] == LAPSED and r.cancelBounty(oid) == d.fee
    assert d.status(honest)[0] == PENDING and r.cancelBounty(honest) == 0
    attacker_before, keeper_before, held = carol.balance, bob.balance, r.balance
    gas = units = 0
    for oid in blockers[:n]:
        d.at()
        tx = r.cancelOrder(oid, sender=bob)
        gas, units = gas + gas_cost(tx), units + tx.gas_used
        (ev,) = tx.decode_logs(r.CancelBountyPaid)
        assert (ev.orderId, ev.caller, ev.amount) == (oid, bob.address, d.fee)
        (ev,) = tx.decode_logs(r.OrderCancelled)
        assert (ev.orderId, ev.caller, ev.keeperFeeRefunded) == (oid, bob.address, 0)
        assert tx.decode_logs(r.RefundCredited) == [] and r.cancelBounty(oid) == 0
    assert bob.balance == keeper_before + n * d.fee - gas
    assert carol.balance == attacker_before and r.balance == held - n * d.fee and r.refunds(carol) == 0
    # The owner cancels its own missed order: its fee comes back (no bounty to itself).
    d.at()
    tx = r.cancelOrder(blockers[n], sender=carol)
    assert carol.balance == attacker_before + d.fee - gas_cost(tx) and tx.decode_logs(r.CancelBountyPaid) == []
    (ev,) = tx.decode_logs(r.OrderCancelled)
    assert (ev.orderId, ev.caller, ev.keeperFeeRefunded) == (blockers[n], carol.address, d.fee)
    # The next round: the last blocker is no longer judged a miss; its cancel refunds the attacker.
    d.set_index(3000 * WAD)
    last = blockers[n + 1]
    assert d.status(last)[0] == LAPSED and r.cancelBounty(last) == 0
    d.at()
    with expect_revert(r.NotFirstInQueue, orderId=honest, head=last):
        r.executeOrder(honest, sender=bob)
    before = carol.balance
    d.at()
    tx = r.cancelOrder(last, sender=bob)
    assert carol.balance == before + d.fee and tx.decode_logs(r.CancelBountyPaid) == []
    assert d.queue() == (honest, honest)
    d.execute(bob, honest)  # the honest order was only delayed
    d.check((alice, carol))
    report(request, f"{n} orders committed to lapse at the head, cleared before the next round: the attacker lost "
                    f"{n} fees, {n * d.fee / 10**18:.4f} ETH (before: 0, every fee refunded); the keeper was paid "
                    f"them for {n} cancels of {units // n:,} gas each")


def test_review_the_bounty_is_judged_on_a_fresh_feed_still_at_the_round_of_the_commit(desk, project, deployer,
                                                                                      alice, bob):
    """The attacker review of the bounty found three ways a refund could become a bounty when the first version
    judged a miss by the first round's recorded time; each is now a refund (`cancelBounty` 0):
    a feed that stalled (no round, but stale by the market's heartbeat when the deadline has passed), a feed
    replaced by one whose round ids are lower (an executable order read as pending again), and a first round
    stamped after the deadline (the order stays executable until its deadline, as before the bounty)."""
    from helpers.governance import mp_tuple

    d = desk
    r, ch = d.router, d.ch
    heartbeat = ch.marketParams(ETH).heartbeat
    d.fund(alice, 100_000)
    # A stalled feed: the deadline passes while the feed is fresh (a bounty), then the feed goes stale (a refund).
    oid, _ = d.commit(alice, WAD, deadline=d.now + 10)
    d.mine_at(d.now + 11)
    assert d.status(oid)[0] == LAPSED and r.cancelBounty(oid) == d.fee
    latest_at = d.s.markets["ETH"].oracle.latestRoundData()[3]
    d.mine_at(latest_at + heartbeat + 1)
    assert d.status(oid)[0] == LAPSED and r.cancelBounty(oid) == 0
    balance = alice.balance
    d.at()
    r.cancelOrder(oid, sender=bob)
    assert alice.balance == balance + d.fee
    d.set_index(3000 * WAD)  # the feed fresh again

    # A first round stamped after the deadline: executable until the deadline, no bounty.
    feed = d.s.markets["ETH"].oracle
    oid, tx = d.commit(alice, WAD, deadline=d.now + 601)
    deadline = tx.timestamp + 600
    d.at()
    feed.updateRoundData(d.round() + 1, 3000 * 10**8, deadline + 5, 0, sender=deployer)
    assert d.status(oid) == (EXECUTABLE, deadline) and r.cancelBounty(oid) == 0
    d.at()
    with expect_revert(r.OrderExecutable, orderId=oid):
        r.cancelOrder(oid, sender=bob)
    d.mine_at(deadline + 1)
    assert d.status(oid) == (LAPSED, deadline) and r.cancelBounty(oid) == 0
    d.at()
    r.cancelOrder(oid, sender=bob)

    # A feed replaced by one with lower round ids: an executable order reads pending again; past its deadline it
    # refunds (the ids went backwards: not the round of its commit).
    oid, _ = d.commit(alice, WAD)
    d.set_index(3000 * WAD)
    assert d.status(oid)[0] == EXECUTABLE
    fresh = project.MockAggregator.deploy(8, 3000 * 10**8, "ETH / USD", sender=deployer)
    d.at()
    ch.setMarketParams(ETH, mp_tuple(ch.marketParams(ETH), oracle=fresh.address), ch.insuranceFeeShare(ETH),
                       sender=deployer)
    o = r.order(oid)
    assert fresh.latestRound() < o.committedRound and d.status(oid) == (PENDING, o.deadline)
    d.mine_at(o.deadline + 1)
    assert d.status(oid)[0] == LAPSED and r.cancelBounty(oid) == 0
    balance = alice.balance
    d.at()
    tx = r.cancelOrder(oid, sender=bob)
    assert alice.balance == balance + d.fee and tx.decode_logs(r.CancelBountyPaid) == []


def test_cancel_bounty_is_zero_for_unknown_pending_and_dead_feed_orders(desk, deployer, alice, bob):
    """`cancelBounty` is 0 for an order that does not exist, a pending one before its deadline, and one that lapsed
    because its feed stopped answering (until 0: nobody's choice; a keeper's cancel refunds the owner)."""
    from helpers.governance import mp_tuple

    d = desk
    r = d.router
    assert r.cancelBounty(0) == 0 and r.cancelBounty(10**6) == 0
    d.fund(alice, 100_000)
    oid, _ = d.commit(alice, WAD)
    assert d.status(oid)[0] == PENDING and r.cancelBounty(oid) == 0
    d.at()
    d.ch.setMarketParams(ETH, mp_tuple(d.ch.marketParams(ETH), oracle=d.s.collateral.address),
                         d.ch.insuranceFeeShare(ETH), sender=deployer)
    assert d.status(oid) == (LAPSED, 0) and r.cancelBounty(oid) == 0
    balance = alice.balance
    d.at()
    tx = r.cancelOrder(oid, sender=bob)
    assert alice.balance == balance + d.fee and tx.decode_logs(r.CancelBountyPaid) == []


def _oscillate(d: Desk, who, keeper, size: int, half_hours: int, cycles: int, pokes: bool = True):
    """The funding oscillation: `who` holds +size for `half_hours`, flips to -size for as long, `cycles` times,
    then closes; every hour a new feed round at the same price and (with `pokes`) a keeper's pokeFunding, so the only
    thing that moves funding is the attacker's own position. Returns (attacker's collateral change, pool NAV change,
    insurance change) [wad]; chain equals model to the wei throughout."""
    ch = d.ch
    d.fund(who, 500_000)
    start = _wealth(d, who)
    price = 3000 * WAD

    def trade(base: int) -> None:
        oid, _ = d.commit(who, base)
        d.set_index(price)
        d.execute(keeper, oid)

    def hour() -> None:
        d.set_index(price, gap=3600 - 1)
        t = d.at()
        if pokes:
            ch.pokeFunding(ETH, sender=keeper)
            d.model.poke_funding(ETH, t)

    trade(size)
    for c in range(2 * cycles):
        for _ in range(half_hours):
            hour()
        if c < 2 * cycles - 1:
            trade(-2 * size if c % 2 == 0 else 2 * size)
    trade(0)
    d.check((who,))
    end = _wealth(d, who)
    return end[0] - start[0], end[1] - start[1], end[2] - start[2]



@pytest.mark.parametrize("size_eth,half_hours", [(300, 24), (900, 24), (300, 27), (300, 30)],
                         ids=["300 ETH daily", "900 ETH daily", "300 ETH every 27 h", "300 ETH every 30 h"])
def test_the_funding_oscillation_pays_less_than_its_fees_on_the_shipped_markets(shipped, chain, deployer, request,
                                                                              alice, bob, size_eth, half_hours):
    """Funding follows a day-long mean through a 12-hour time constant, so it lags a position: an attacker alone in
    the market holds +size, flips to -size after `half_hours`, and back, three times (six days at daily flips), then
    closes; only its own position moves the premium (the index holds, a keeper pokes every hour). On each side it
    is paid the rate its previous side built, from the pool, the counterparty of its position. Under the shipped
    cap (0.025 %/h, the 15 bps fee / 6: the largest the contract allows at a 12-hour time constant) that pay is less
    than the flips' fees (27 hours is the steady state's best interval, `vperp.funding_compare.oscillation`): the
    attacker loses, and the pool and the insurance fund gain what it loses. At the 0.1 %/h cap the shipped markets
    had before, the same flips gained 16,581.74 USD over the six days with 300 ETH (about 900k USD), the pool's NAV
    losing 19,821.76; with 900 ETH, 50,975.88 (docs/security.md "Fixed: the funding oscillation"): that cap, and any
    one wei above the fee's bound, is now refused. Chain equals model to the wei throughout."""
    d = Desk(shipped, deployer, chain)
    f = d.ch.fundingParams(ETH)
    assert f.maxFundingRate == 25 * 10**13 == d.ch.marketParams(ETH).takerFee // 6  # the shipped cap, at the bound
    for cap in (10**15, f.maxFundingRate + 1):
        with expect_revert(d.ch.ParameterOutOfBounds, name=b"maxFundingRate".ljust(32, b"\0"), value=cap):
            d.ch.setFundingParams(ETH, (cap, *tuple(f)[1:]), sender=deployer)
    gain, d_nav, d_ins = _oscillate(d, alice, bob, size_eth * WAD, half_hours, 3)
    report(request, f"funding oscillation, {size_eth} ETH, flips every {half_hours} h, shipped cap: attacker "
                    f"{gain / WAD:+,.2f} USD, pool NAV {d_nav / WAD:+,.2f}, insurance fund {d_ins / WAD:+,.2f}")
    assert d_nav + d_ins == -gain  # nothing left open: the pool's NAV is its cash, and only the attacker traded
    assert gain < 0 and d_nav > 0 and d_ins > 0


@pytest.mark.parametrize("pokes", [True, False], ids=["keeper pokes hourly", "no keeper"])
def test_without_hourly_samples_the_oscillation_still_pays_less_than_its_fees(shipped, chain, deployer, request,
                                                                             alice, bob, pokes):
    """The funding bound's assumption made the contract's (docs/security.md "Fixed: the funding oscillation"): the
    target is re-sampled only by a block that touches the market, the first of each hour. With nobody but the
    attacker touching it, each flip's block sampled the side it left, and that target held the whole 48-hour side:
    300 ETH flipped so gained +8,483.88 USD, the pool's NAV -10,643.90. Now an accrual that finds a whole idle hour
    applies the old target only to the end of its hour and this block's sample from there
    (ClearingHouseAccrual._evolveIdle): with no keeper the flips lose more than with one. Chain equals model to
    the wei."""
    d = Desk(shipped, deployer, chain)
    gain, d_nav, d_ins = _oscillate(d, alice, bob, 300 * WAD, 48, 2, pokes=pokes)
    report(request, f"funding oscillation, 300 ETH, flips every 48 h, {'hourly pokes' if pokes else 'no pokes'}: "
                    f"attacker {gain / WAD:+,.2f} USD, pool NAV {d_nav / WAD:+,.2f}, insurance fund {d_ins / WAD:+,.2f}")
    assert d_nav + d_ins == -gain
    assert gain < 0 and d_nav > 0 and d_ins > 0
