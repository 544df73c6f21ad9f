"""The SDK's and the keeper's side of delayed orders (docs/orders.md): `Client.approve_router`, `commit_order`,
`commit_close`, `order`, `open_orders` (the market's queue), `execute_order`, `cancel_order`, `delayed_orders`, and the keeper's
`execute` step, on the shared deployment with delayed orders turned on for ETH. Every block time is set."""
from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

import pytest

from vperp.client import (Client, ClientError, OrderBounty, OrderCancel, OrderCommit, OrderExecution, OrderFailure,
                          Trade, build_record, write_record)
from vperp.keeper import Keeper


@pytest.fixture
def desk(system, chain, accounts):
    path = Path(tempfile.mkdtemp(prefix="vperp-orders-")) / "local.json"
    write_record(path, build_record(system, system.config, chain, 1))
    deployer, alice, bob = accounts[0], accounts[1], accounts[2]
    eth = system.markets["ETH"]
    chain.pending_timestamp = chain.pending_timestamp + 10
    # The feed at the peg: an order executes only at a peg within the tolerance of the index, either way.
    system.set_price("ETH", Decimal(system.amm.pegPrice(eth.id)) / 10**18)
    system.set_price("BTC", 60_000)
    system.clearing_house.setPegTolerance(eth.id, 300, sender=deployer)  # above the 2 % repeg threshold
    system.clearing_house.setDelayedOrders(eth.id, True, sender=deployer)
    system.fund(alice, 100_000)
    a, b = Client.from_deployment(path, account=alice), Client.from_deployment(path, account=bob)
    return system, chain, a, b


def _at(chain, dt: int = 1) -> int:
    """The next block `dt` seconds after the head; returns its time."""
    t = chain.blocks.head.timestamp + dt
    chain.pending_timestamp = t
    return t


def _next_round(system, chain, dt: int = 1) -> int:
    """The next block, `dt` seconds after the head: ETH's feed publishes a new round (same price)."""
    t = _at(chain, dt)
    feed = system.markets["ETH"].oracle
    feed.updateAnswer(feed.latestRoundData()[1], sender=system.deployer)
    return t


def test_an_order_through_the_sdk(desk):
    system, chain, a, b = desk
    ch, router = system.clearing_house, system.router
    assert a.delayed_orders("ETH") and not a.delayed_orders("BTC")
    _at(chain)
    head, held = chain.blocks.head.number, ch.position(a.account, 0, system.markets["ETH"].id)
    with pytest.raises(ClientError, match="ETH takes delayed orders only: use commit_order"):
        a.open("ETH", 1)  # a direct trade in a delayed market is refused before anything is sent
    with pytest.raises(ClientError, match="instead of close"):
        a.close("ETH")
    assert chain.blocks.head.number == head and ch.position(a.account, 0, system.markets["ETH"].id) == held
    with pytest.raises(ch.DelayedOrdersOnly):  # and the chain refuses it too
        ch.openPosition(0, system.markets["ETH"].id, 10**18, 2**255, chain.pending_timestamp + 60, sender=a.account)
    _at(chain)
    with pytest.raises(router.RouterNotApproved):
        a.commit_order("ETH", 1)  # the dry run names the refusal; nothing is sent
    assert router.nextOrderId() == 1
    _at(chain)
    a.approve_router()
    t = _at(chain)
    oid = a.commit_order("ETH", 1, slippage_bps=100)
    info = a.order(oid)
    assert (info.status, info.owner, info.symbol, info.base) == ("pending", a.account.address, "ETH", Decimal(1))
    assert info.keeper_fee_wei == router.minKeeperFee() and info.committed_at == t
    # The default deadline: when the feed goes stale without a round (its answer's time + the heartbeat), plus the
    # execution window: by then a round came or the feed is stale, and neither pays a bounty.
    heartbeat = system.clearing_house.marketParams(system.markets["ETH"].id).heartbeat
    updated_at = system.markets["ETH"].oracle.latestRoundData()[3]
    assert info.deadline == max(t, updated_at + heartbeat) + router.executionWindow() < t + heartbeat + 61
    assert info.cancel_bounty_wei == 0
    assert [o.order_id for o in a.open_orders("ETH")] == [oid] and a.open_orders("BTC") == []
    with pytest.raises(router.OrderNotReady):
        b.execute_order(oid)
    t = _next_round(system, chain, 4)
    assert a.order(oid).status == "executable" and a.order(oid).executable_until == t + 60
    _at(chain)
    trade = b.execute_order(oid)
    assert trade is not None and trade.base_delta == 1 and trade.owner == a.account.address
    assert a.position("ETH").size == 1 and a.open_orders("ETH") == []
    # A close order, executed by the keeper's pass.
    _at(chain)
    close_id = a.commit_close("ETH")
    assert a.order(close_id).close and a.order(close_id).base == -1  # the free part at the commit
    _next_round(system, chain)
    keeper = Keeper(system, b.account)
    _at(chain)
    actions = keeper.run_once(chain)
    assert [(x.kind, x.detail) for x in actions if x.kind == "execute"] == [("execute", {"order": close_id,
                                                                                      "failed": False})]
    assert a.position("ETH").size == 0 and a.order(close_id).status == "none"
    with pytest.raises(ClientError, match="no free ETH position"):
        a.commit_close("ETH")


def test_cancel_and_a_refused_trade_through_the_sdk(desk):
    """Also the records `events` decodes from the router's events: OrderCommit, OrderCancel, OrderFailure (the
    refusal named)."""
    system, chain, a, b = desk
    router = system.router
    first = chain.blocks.head.number + 1
    _at(chain)
    a.approve_router()
    _at(chain)
    oid = a.commit_order("ETH", -1)
    with pytest.raises(router.NotOrderOwner):
        b.cancel_order(oid)
    _at(chain)
    balance = a.account.balance
    tx = a.cancel_order(oid)
    assert a.account.balance == balance + system.router.minKeeperFee() - tx.gas_used * tx.gas_price
    assert a.order(oid).status == "none"
    # A trade the ClearingHouse refuses (the approval revoked after the commit) uses the order up.
    _at(chain)
    oid = a.commit_order("ETH", 1)
    _at(chain)
    a.approve_router(False)
    _next_round(system, chain)
    _at(chain)
    assert b.execute_order(oid) is None
    assert a.order(oid).status == "none" and a.position("ETH").size == 0
    with pytest.raises(ClientError, match="order_id"):
        a.order(0)
    fee = int(router.minKeeperFee())
    records = a.events(since_block=first, kinds=(OrderCommit, OrderCancel, OrderFailure, OrderExecution))
    assert [type(r) for r in records] == [OrderCommit, OrderCancel, OrderCommit, OrderFailure]
    c1, cancel, c2, failure = records
    assert (c1.owner, c1.symbol, c1.base, c1.close, c1.keeper_fee_wei) == (a.account.address, "ETH", -1, False, fee)
    assert (cancel.order_id, cancel.caller, cancel.refunded_wei) == (c1.order_id, a.account.address, fee)
    assert (failure.order_id, failure.keeper, failure.error, failure.keeper_fee_wei) == (
        c2.order_id, b.account.address, "NotOwnerOrOperator", fee)
    assert failure.reason.startswith("0x") and len(failure.reason) > 10


def test_the_keeper_clears_a_never_executable_head_for_its_fee_and_refunds_a_lapsed_one(desk):
    """Two lapsed orders at the head of ETH's queue in turn: one whose deadline passed with the feed still on the
    round of its commit (a miss: `OrderInfo.cancel_bounty_wei` is its fee, and the keeper's pass, which clears a
    lapsed head as soon as it sees it, is paid it: the action's `bounty_wei`), then one that was executable and
    lapsed after its window (bounty 0: the keeper's cancel sends the fee back to its owner). Behind it an order
    committed after the round executes in the same pass."""
    system, chain, a, b = desk
    router = system.router
    fee = int(router.minKeeperFee())
    keeper = Keeper(system, b.account)
    _at(chain)
    a.approve_router()
    _at(chain)
    missed = a.commit_order("ETH", 1, deadline_seconds=1)  # lapses at the next second, no round before it
    _at(chain)
    lapsing = a.commit_order("ETH", 1)
    _at(chain)
    chain.mine()  # a block past the deadline of `missed` (the views read the head block)
    assert a.order(missed).status == "lapsed" and a.order(missed).cancel_bounty_wei == fee
    assert a.order(lapsing).status == "pending" and a.order(lapsing).cancel_bounty_wei == 0
    _at(chain)
    actions = [x for x in keeper.run_once(chain) if x.kind in ("cancel-order", "execute")]
    assert [(x.kind, x.detail) for x in actions] == [
        ("cancel-order", {"order": missed, "market": "ETH", "bounty_wei": fee})]  # then the pending head stops it
    t = _next_round(system, chain, 5)
    assert a.order(lapsing).status == "executable" and a.order(lapsing).cancel_bounty_wei == 0
    _at(chain)
    fresh = a.commit_order("ETH", 1)
    _next_round(system, chain, t + 61 - chain.blocks.head.timestamp)  # past the window of `lapsing`
    assert a.order(lapsing).status == "lapsed" and a.order(lapsing).cancel_bounty_wei == 0
    owner_before = a.account.balance
    _at(chain)
    actions = [x for x in keeper.run_once(chain) if x.kind in ("cancel-order", "execute")]
    assert [(x.kind, x.detail) for x in actions] == [
        ("cancel-order", {"order": lapsing, "market": "ETH", "bounty_wei": 0}),
        ("execute", {"order": fresh, "failed": False})]
    assert a.account.balance == owner_before + fee  # the lapsed order's fee; the missed one's went to the keeper
    assert a.open_orders("ETH") == [] and a.position("ETH").size == 1
    # The records of the router's events: the bounty next to its cancel, the execution next to its trade.
    records = a.events(kinds=(OrderBounty, OrderCancel, OrderExecution, Trade))
    (bounty,) = [r for r in records if isinstance(r, OrderBounty)]
    assert (bounty.order_id, bounty.caller, bounty.amount_wei) == (missed, b.account.address, fee)
    cancels = {r.order_id: r for r in records if isinstance(r, OrderCancel)}
    assert cancels[missed].refunded_wei == 0 and cancels[missed].tx_hash == bounty.tx_hash
    assert cancels[lapsing].refunded_wei == fee
    (done,) = [r for r in records if isinstance(r, OrderExecution)]
    (trade,) = [r for r in records if isinstance(r, Trade) and r.tx_hash == done.tx_hash]
    assert (done.order_id, done.keeper, done.base, done.keeper_fee_wei) == (fresh, b.account.address, 1, fee)
    assert (trade.base_delta, trade.quote_delta, trade.fee) == (done.base, done.quote, done.fee)


def test_the_keeper_clears_missed_orders_behind_a_pending_head_while_they_pay(desk):
    """A pending order at the head of ETH's queue (deadline far off), two orders behind it whose deadlines have
    passed with the feed still on the round of their commit (each pays its canceller), and a pending one after
    them: the keeper's pass cancels the two (each `cancel-order` with its `bounty_wei`) and leaves the pending
    ones. Without the walk (`clear_missed_orders=False`, as the simulator runs it) nothing is sent."""
    system, chain, a, b = desk
    router = system.router
    fee = int(router.minKeeperFee())
    _at(chain)
    a.approve_router()
    _at(chain)
    head = a.commit_order("ETH", 1)
    missed = []
    for _ in range(2):
        _at(chain)
        missed.append(a.commit_order("ETH", 1, deadline_seconds=1))
    _at(chain)
    tail = a.commit_order("ETH", 1)
    _at(chain)
    chain.mine()
    assert [a.order(o).status for o in (head, *missed, tail)] == ["pending", "lapsed", "lapsed", "pending"]
    assert [a.order(o).cancel_bounty_wei for o in missed] == [fee, fee]
    _at(chain)
    quiet = Keeper(system, b.account, clear_missed_orders=False)
    assert [x for x in quiet.run_once(chain) if x.kind in ("cancel-order", "execute")] == []
    _at(chain)
    actions = [x for x in Keeper(system, b.account).run_once(chain) if x.kind in ("cancel-order", "execute")]
    assert [(x.kind, x.detail) for x in actions] == [
        ("cancel-order", {"order": oid, "market": "ETH", "bounty_wei": fee}) for oid in missed]
    assert [o.order_id for o in a.open_orders("ETH")] == [head, tail]
