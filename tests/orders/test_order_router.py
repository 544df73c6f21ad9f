"""Delayed orders (OrderRouter; ClearingHouse.setOrderRouter / setDelayedOrders / delayedOrders; docs/orders.md).

On the concentrated deployment (`vperp.config.concentrated_config()`: ETH 100,000 x 300M at 3,000, taker fee 0.1 %,
repegThreshold 0.1 %, repeg every block, stale-peg rule 11 bps) with delayed orders ON for ETH and off for BTC,
deployed once for this module (each test runs on a snapshot of it). Every block time is set explicitly. The rules:

    ClearingHouse  a market with delayed orders on trades only when the router sends the trade: openPosition,
                   openPositionFor, openPositionWithBuilder and closePosition revert DelayedOrdersOnly(id) for any
                   other caller and change nothing; liquidations (kick, take) are not trades and are unaffected.
                   setOrderRouter / setDelayedOrders are owner-only (ZeroAddress, NoOrderRouter, UnknownMarket).
    commit         the owner (router approved as its Vault operator) sends the keeper fee (>= minKeeperFee) as
                   ETH; the order records the market feed's latest round id r; refusals: DeadlinePassed,
                   KeeperFeeTooLow, ParameterOutOfBounds("baseAmount") for |base| > int96 max, RouterNotApproved,
                   UnknownMarket (from the ClearingHouse); a refused commit stores nothing and keeps no ETH.
    status         Pending while the latest round is r (deadline passed: Lapsed, until = deadline);
                   Executable from round r + 1 until min(deadline, updatedAt(r + 1) + executionWindow), r + 1
                   read with getRoundData when later rounds followed it; Lapsed after, or with until 0 when
                   round r + 1 cannot be read (a phase change skipped it).
    execute        anyone, while Executable: the order is deleted, then `openPositionFor(owner, ...)` with its
                   size (0: minus the free part of the position), limit and deadline, in a try/catch; the caller
                   gets the keeper fee either way. The trade done: OrderExecuted(id, keeper, base, quote, fee,
                   keeperFee). The trade refused by the ClearingHouse (any revert: slippage, margin, a revoked
                   approval (NotOwnerOrOperator), nothing to close (ZeroSize), a stale peg, DelayedOrdersOnly
                   once the ClearingHouse has another router): the order is used up all the same, OrderFailed(id,
                   keeper, reason = the revert data, keeperFee), the call returns (0, 0, 0) and nothing else
                   moves; so an owner cannot keep its executable order back and bring it in once the window has
                   shown which way the next update goes: the first keeper ends it. The trade out of gas (less
                   than 1/16 of the gas at the try left after it): the whole execution reverts
                   InsufficientGas(gasSent) and the order stays. Pending: OrderNotReady(id, r); Lapsed:
                   OrderLapsed(id, until); executed, failed or cancelled: UnknownOrder.
    cancel         the owner while Pending, anyone once Lapsed, nobody while Executable (OrderExecutable); the
                   keeper fee goes back to the owner. Unknown, executed or cancelled ids: UnknownOrder.

The attack (tests/test_peg_follow.py::test_front_running_an_index_update): an attacker who sees a pending +j
oracle update buys 1M USD of ETH before it, a keeper repegs, it closes: +3,005.02 USD at j = +0.5 % with delayed
orders off. With them on, the direct buy is refused and an order committed before the update executes at the
repegged price (one executed before the repeg is used up, PegStale): the round trip pays its two fees. The hole
found while writing these (an owner blocking its own order to hold an option on the whole window: +3,005.02 USD
at +0.5 %) is closed by the use-it-up rule above: its test now shows the attacker losing the keeper fee. What the
owner keeps is the time between the round's update and the first keeper's execution. Every trade and repeg here
runs on the chain and in `vperp.model.Model` at the same block time (the router's trade is the model's
open_position for the owner; a failed execution changes neither), and the two are compared to the wei. The
measured figures are printed after the run (`orders: ...`).
"""
from __future__ import annotations

from dataclasses import replace

import pytest
from ape.exceptions import CustomError
from eth_abi import decode as abi_decode

from helpers.chain_harness import deployment_model, print_report
from helpers.liquidation import kick_checked
from helpers.reverts import revert_data, selector
from helpers.trading import expect_revert, snapshot
from vperp.config import concentrated_config
from vperp.deployment import deploy
from vperp.units import WAD

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
    def fund(self, who, amount, approve: bool = True) -> None:
        units = self.s.fund(who, amount)
        self.model.deposit(who.address, 0, units)
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

    def commit(self, who, base: int, limit: int | None = None, deadline: int | None = None, mid: int = ETH,
               fee: int | None = None, gap: int = 1):
        """Commit an order; checks the event and the stored order. Returns (order id, receipt)."""
        t = self.at(gap)
        limit = (MAX_UINT if base > 0 else 0) if limit is None else limit
        deadline = t + 600 if deadline is None else deadline
        fee = self.fee if fee is None else fee
        oid, rnd, held = self.router.nextOrderId(), self.round(mid), self.router.balance
        tx = self.router.commitOrder(0, mid, base, limit, deadline, value=fee, sender=who)
        assert tx.timestamp == t
        (ev,) = tx.decode_logs(self.router.OrderCommitted)
        assert (ev.orderId, ev.owner, ev.subaccount, ev.marketId, ev.baseAmount, ev.quoteLimit, ev.deadline,
                ev.keeperFee, ev.committedRound) == (oid, who.address, 0, mid, base, limit, deadline, fee, rnd)
        assert tuple(self.router.order(oid)) == (who.address, 0, mid, t, base, rnd, fee,
                                                 min(limit, 2**224 - 1), min(deadline, 2**32 - 1))
        assert self.router.nextOrderId() == oid + 1 and self.router.balance == held + fee
        return oid, tx

    def execute(self, keeper, oid: int, gap: int = 1):
        """Execute order `oid` as `keeper`; the model trades for the owner at the same time. Checks the
        PositionChanged event against the model, OrderExecuted against it, the keeper fee paid and the order
        deleted. Returns the PositionChanged event."""
        o = self.router.order(oid)
        t = self.at(gap)
        if o.baseAmount == 0:
            want = self.model.close_position(o.owner, o.subaccount, o.marketId, o.quoteLimit, t, o.deadline)
        else:
            want = self.model.open_position(o.owner, o.subaccount, o.marketId, o.baseAmount, o.quoteLimit, t,
                                            o.deadline)
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
        return pc

    def fail(self, keeper, oid: int, error_cls, owners=(), gap: int = 1, **inputs):
        """Execute order `oid` as `keeper` where the ClearingHouse refuses the trade: the call succeeds (a static
        call first returns (0, 0, 0)), emits OrderFailed(oid, keeper, reason, keeperFee) and nothing else of the
        router's or the ClearingHouse's, `reason` decodes to `error_cls` with `inputs`; the keeper's ETH rises
        by the fee less its gas, the router's falls by the fee; the order is gone (status None, storage zero,
        a second execution reverts UnknownOrder); nothing else moved (trading state, pool, fund, the owners'
        collateral and positions, the other orders). The model is not touched. Returns the decoded inputs."""
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
        assert self.status(oid) == (NONE, 0) and tuple(self.router.order(oid)) == (ZERO, 0, 0, 0, 0, 0, 0, 0, 0)
        want = dict(before, held=before["held"] - o.keeperFee)
        want["stored"] = [(ZERO, 0, 0, 0, 0, 0, 0, 0, 0) if i == oid else s
                          for i, s in enumerate(before["stored"], start=1)]
        assert self.ledger(owners) == want
        self.at()
        with expect_revert(self.router.UnknownOrder, orderId=oid):
            self.router.executeOrder(oid, sender=keeper)
        return got

    # -------------------------------------------------------------- views
    def status(self, oid: int) -> tuple[int, int]:
        return tuple(self.router.orderStatus(oid))

    def ledger(self, owners=()) -> dict:
        """Everything a refused call must leave as it was (trading state, pool, fund, router)."""
        snap = snapshot(self.s, owners)
        snap.update(nav=self.pool.navWad(), orders=self.router.nextOrderId(), held=self.router.balance,
                    stored=[tuple(self.router.order(i)) for i in range(1, self.router.nextOrderId() + 1)],
                    peg=self.amm.pegPrice(ETH))
        return snap

    def check(self, owners=()) -> None:
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
            assert self.vault.collateral(o, 0) == m.collateral(o.address, 0)
            for mid in (ETH, BTC):
                assert tuple(self.ch.position(o, 0, mid)) == m.position(o.address, 0, mid, now)


ZERO = "0x" + "00" * 20


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
    """The attacker sees a pending index update of +j. (a) The old attack: its direct 1M USD buy reverts
    DelayedOrdersOnly(ETH) (as do openPositionFor and openPositionWithBuilder) and changes nothing. (b) It commits
    the buy through the router before the update instead, twice (two identical orders, hoping one trades before
    the repeg): the update lands (the orders' first round); a keeper's execution of one of them before the repeg
    finds the peg more than 11 bps below the new index: the ClearingHouse refuses (PegStale(ETH, peg, index)), the
    order is used up (OrderFailed, the keeper paid), nothing else moves and the attacker's collateral is as it
    was. A keeper repegs (no position open: the repeg costs the pool nothing) and another executes the second
    order: the buy meets the new peg. The attacker's direct close reverts DelayedOrdersOnly; it commits a close,
    the feed publishes a new round at the same price, a keeper executes it. The attacker's Vault collateral falls
    by the two fees (and funding); pool NAV + insurance rise by as much; chain equals model to the wei
    throughout."""
    d = desk
    ch = d.ch
    d.fund(alice, 500_000)
    start = _wealth(d, alice)
    held = d.router.balance
    size = 1_000_000 * WAD // 3000
    index = 3000 * WAD * (10_000 + j_bps) // 10_000

    _direct_attack_refused(d, alice, size)  # (a)

    early, _ = d.commit(alice, size)  # (b) before the update
    oid, _ = d.commit(alice, size)
    assert d.status(early)[0] == d.status(oid)[0] == PENDING
    with expect_revert(d.router.OrderNotReady, orderId=oid, committedRound=d.round()):
        d.router.executeOrder(oid, sender=bob)
    d.set_index(index)  # the update the attacker saw coming
    stale = d.fail(bob, early, ch.PegStale, (alice,), marketId=ETH, peg=d.amm.pegPrice(ETH), indexPrice=index)
    assert stale["peg"] < index and _wealth(d, alice) == start  # used up, no trade: nothing gained
    assert d.status(oid)[0] == EXECUTABLE
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
    assert d.router.balance == held  # all three keeper fees paid out, nothing left behind
    report(request, f"front-running a +{j_bps / 100:.2f} % index update with delayed orders on ETH (before, "
                    f"delayed orders off: +0.15 % -503.18, +0.5 % +3,005.02; see the control below): direct "
                    f"buy refused; an order executed before the repeg used up (PegStale), no trade; through the "
                    f"router attacker {usd(gain)} USD (fees {fees / WAD:,.2f}, funding {usd(-funding)}), pool NAV "
                    f"{usd(d_nav)}, insurance {usd(d_ins)}, keeper fees 2 x {d.fee / 1e18:g} ETH (+1 x for the "
                    f"order used up)")


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


def test_a_close_order_with_nothing_to_close_is_used_up_and_pays_the_keeper(desk, alice, bob, carol):
    """A close order (base 0) executed when there is no position: the ClearingHouse refuses the trade (ZeroSize,
    nothing to close), and the order is used up all the same: OrderFailed with ZeroSize as its reason, the keeper
    paid the fee, the owner's collateral, the market and the pool as they were, the order gone (status None,
    storage zero; executing or cancelling it again, even once the window has passed: UnknownOrder)."""
    d = desk
    d.fund(alice, 100_000)
    oid, _ = d.commit(alice, 0)
    t1 = d.set_index(3000 * WAD)
    d.fail(bob, oid, d.ch.ZeroSize, (alice,))
    d.check((alice,))
    d.mine_at(t1 + d.router.executionWindow() + 1)
    assert d.status(oid) == (NONE, 0)
    d.at()
    with expect_revert(d.router.UnknownOrder, orderId=oid):
        d.router.cancelOrder(oid, sender=carol)


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
    anyone may cancel it."""
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
    balance = alice.balance
    d.router.cancelOrder(b, sender=carol)
    d.router.cancelOrder(a, sender=carol)
    assert alice.balance == balance + 2 * d.fee


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
    router is set (OrderRouterSet), on works. Setting a new router on the deployment hands it the market: the old
    router's orders can no longer trade: a pending one its owner cancels for the fee back; an executable one a
    keeper's execution uses up (OrderFailed, reason DelayedOrdersOnly(ETH), the keeper paid, nothing traded)."""
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
    d.set_index(3000 * WAD)
    assert d.status(oid)[0] == EXECUTABLE
    d.fail(bob, oid, ch.DelayedOrdersOnly, (alice,), marketId=ETH)
    assert d.router.balance == 0


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
