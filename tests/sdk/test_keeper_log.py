"""The keeper's log (`vperp.keeper`, docs/keeper.md): what it waits for, what each take made, the bad debt
it saw; and that logging never changes what it does.

Each test drives `Keeper.run_once` over a deployment file's `Client.system` (what `ape run keeper` runs)
with block timestamps set explicitly: the auction's `ready_at` is checked to the second (one block before
it the keeper waits, at it the keeper takes), the take's PnL against the chain's own figures.
"""
from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from vperp.client import Client, build_record, seconds_to_discount, write_record
from vperp.keeper import AuctionWait, BadDebtSeen, Keeper, TakeLog

from vperp.units import WAD
USDC = 10**6
ETH = 1


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@pytest.fixture(scope="module")
def path(system, chain, tmp_path_factory):
    p = tmp_path_factory.mktemp("keeper-log") / "local.json"
    write_record(p, build_record(system, system.config, chain, 1))
    return p


def _client(path, account, deposit=None):
    c = Client.from_deployment(path, account=account)
    if deposit:
        c.collateral.mint(account, deposit * USDC, sender=account)
        c.deposit(deposit)
    return c


def _crash(system, chain, trader_client, base, price):
    trader_client.open("ETH", base, slippage_bps=100)
    chain.pending_timestamp += 5
    system.set_price("ETH", price)


def _kinds(actions) -> list[str]:
    """What the keeper did, funding pokes aside (they fall due with the quarter windows)."""
    return [a.kind for a in actions if a.kind != "poke"]


def _quiet_head(chain, client, t: int) -> None:
    """Make block `t` the head with both markets accrued in its quarter window: a keeper pass that reads it
    has no poke due (t and t + 1 in the same quarter), so it reads exactly the block at `t`."""
    chain.pending_timestamp = t - 1
    for mid in client.market_ids.values():
        client.clearing_house.pokeFunding(mid, sender=client.account)
    assert chain.blocks.head.timestamp == t


def _keeper(path, account, deposit=100_000, bps=100):
    c = _client(path, account, deposit)
    # The auction log is timed to the block; the peg upkeep (a repeg once the index has moved 2 %) has its own
    # test (test_peg_follow.py::test_keeper_repegs_when_the_peg_is_past_the_threshold).
    k = Keeper(c.system, account, min_take_discount=bps * 10**14, follow_peg=False)
    k._scanned_to = c.start_block - 1
    return k, c


def test_keeper_logs_the_wait_with_its_ready_time_then_the_take_and_its_pnl(system, path, chain, accounts, caplog):
    dave, keeper_account = accounts[4], accounts[3]
    _crash(system, chain, _client(path, dave, 1_000), 3, 2_800)
    keeper, kc = _keeper(path, keeper_account)
    caplog.set_level(logging.INFO, logger="vperp.keeper")
    # Kick at a time that puts the auction's 1 % second in the middle of a quarter window (no poke due near it).
    engine, quarter = kc.liquidation, kc.clearing_house.marketParams(ETH).twapWindow // 4
    e = seconds_to_discount(engine, ETH, 1, 2_800 * WAD, 10**16, engine.auctionParams(ETH).duration)
    kick_at = chain.pending_timestamp + 2 * quarter
    kick_at += (quarter // 2 - (kick_at + e)) % quarter
    chain.pending_timestamp = kick_at
    kick = kc.kick(dave)
    aid = kick.auction_id

    actions = keeper.run_once(chain)  # sees the fresh auction at no discount
    assert _kinds(actions) == []
    (wait,) = keeper.pass_records
    assert isinstance(wait, AuctionWait) and wait.reason == "discount" and wait.auction == aid
    assert (wait.symbol, wait.owner, wait.index_price, wait.threshold) == ("ETH", dave.address, 2_800, Decimal("0.01"))
    assert wait.discount < Decimal("0.01") and wait.price == kc.auction(aid).price
    ready_at = kc.auction_ready_at(aid, 100)
    assert wait.ready_at == ready_at and ready_at > kc.auction(aid).start_time
    assert f"waits for 1.00%, reached at t={ready_at}" in caplog.text

    assert ready_at == kick_at + e and ready_at % quarter == quarter // 2

    _quiet_head(chain, kc, ready_at - 1)  # one second early: still waiting, the same estimate
    assert keeper.run_once(chain) == []
    (wait2,) = keeper.pass_records
    assert wait2.ready_at == ready_at and wait2.discount < Decimal("0.01") and wait2.discount > wait.discount
    assert (wait2.block, wait2.seen_at) == (chain.blocks.head.number, ready_at - 1) and "(in 1 s)" in str(wait2)
    assert wait2.price * WAD == kc.liquidation.auctionPrice(aid)  # the price of the block it read

    chain.mine(timestamp=ready_at)  # the keeper reads the block at ready_at: the discount is there
    actions = keeper.run_once(chain)
    assert _kinds(actions) == ["take"]
    (took,) = keeper.pass_records
    assert isinstance(took, TakeLog) and took.auction == aid and took.symbol == "ETH"
    (ev,) = kc.liquidation.Take.range(took.block, took.block + 1)
    amount, price, index = int(ev.amount), int(ev.price), 2_800 * WAD
    assert (took.size * WAD, took.price * WAD, took.index_price * WAD) == (amount, price, index)  # a long slice
    gross = amount * index // WAD - _ceil_div(amount * price, WAD)
    close_fee = _ceil_div(amount * index // WAD * kc.clearing_house.marketParams(ETH).takerFee, WAD)
    assert took.gross_pnl * WAD == gross and took.take_fee == 0 and took.close_fee * WAD == close_fee
    assert took.pnl * WAD == gross - close_fee and took.pnl > 0
    size, notional, _ = kc.clearing_house.position(keeper_account, 0, ETH)
    assert (took.position_size * WAD, took.position_open_notional * WAD) == (size, notional)
    assert actions[-1].detail["pnl"] == round(float(took.pnl), 2) and actions[-1].detail["holds"] == float(took.size)
    assert "took " in caplog.text and "PnL at the index" in caplog.text
    assert list(keeper.records) == [wait, wait2, took]  # every pass's records, oldest first


def test_keeper_logs_an_auction_it_cannot_afford(system, path, chain, accounts):
    dave, keeper_account = accounts[4], accounts[5]
    _crash(system, chain, _client(path, dave, 1_000), 3, 2_800)
    aid = _client(path, accounts[6]).kick(dave).auction_id  # another keeper kicks (and keeps the reward)
    keeper, kc = _keeper(path, keeper_account, deposit=1)  # 1 USDC: margin for less than the minimum size
    chain.mine(timestamp=kc.auction_ready_at(aid, 100) + 60)
    assert _kinds(keeper.run_once(chain)) == []
    (wait,) = keeper.pass_records
    assert wait.reason == "collateral" and wait.discount >= Decimal("0.01") and wait.ready_at is None
    assert "free collateral does not cover a take" in str(wait)


def test_keeper_logs_bad_debt_and_shortfall_in_the_blocks_it_scans(system, path, chain, accounts, caplog):
    erin, keeper_account = accounts[5], accounts[3]
    _crash(system, chain, _client(path, erin, 3_300), 10, 2_650)  # underwater: a whole-position auction
    keeper, kc = _keeper(path, keeper_account)
    caplog.set_level(logging.INFO, logger="vperp.keeper")
    keeper.run_once(chain)  # the kick records a shortfall estimate (seen by the next scan)
    aid = kc.auctions()[0].id
    chain.mine(timestamp=kc.auction_ready_at(aid, 100))
    actions = keeper.run_once(chain)
    assert _kinds(actions) == ["take"]
    estimate = [r for r in keeper.pass_records if isinstance(r, BadDebtSeen)]
    assert [(r.kind, r.owner) for r in estimate] == [("shortfall", erin.address)] and estimate[0].amount > 0
    keeper.run_once(chain)  # the take's own block: the loss realized, the estimate released
    seen = [r for r in keeper.pass_records if isinstance(r, BadDebtSeen)]
    assert [r.kind for r in seen] == ["shortfall", "bad-debt"]
    released, bad = seen
    assert released.amount == 0 and released.total == 0
    (ev,) = kc.vault.BadDebt.range(bad.block, bad.block + 1)
    assert (bad.owner, bad.subaccount, bad.amount * WAD, bad.from_insurance * WAD, bad.from_pool * WAD) == (
        erin.address, 0, ev.amount, ev.fromInsurance, ev.fromPool)
    assert bad.tx_hash == [r for r in keeper.records if isinstance(r, TakeLog)][0].tx_hash
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "bad debt" in warnings[0].getMessage()
    keeper.run_once(chain)
    assert not [r for r in keeper.pass_records if isinstance(r, BadDebtSeen)]  # each block scanned once


def test_a_failed_bad_debt_scan_is_retried_over_the_same_blocks(system, path, chain, accounts, monkeypatch):
    """The log's own cursor: when the scan fails (a node error while reading the logs), the next pass reads the
    same blocks again, so their shortfall and bad-debt records are late, not lost; account discovery goes on."""
    erin, keeper_account = accounts[5], accounts[3]
    _crash(system, chain, _client(path, erin, 3_300), 10, 2_650)
    keeper, kc = _keeper(path, keeper_account)
    keeper.run_once(chain)  # kicks: the shortfall estimate is recorded in this pass's blocks
    aid = kc.auctions()[0].id
    chain.mine(timestamp=kc.auction_ready_at(aid, 100))
    real = Keeper._scan_bad_debt

    def node_down(self, start, head):
        raise ConnectionError("node down")

    monkeypatch.setattr(Keeper, "_scan_bad_debt", node_down)
    keeper.run_once(chain)  # takes the auction; the scan of the kick's blocks fails
    assert not [r for r in keeper.pass_records if isinstance(r, BadDebtSeen)]
    assert (erin.address, 0) in keeper.accounts
    monkeypatch.setattr(Keeper, "_scan_bad_debt", real)
    keeper.run_once(chain)  # the same blocks again, and the take's
    seen = [r for r in keeper.pass_records if isinstance(r, BadDebtSeen)]
    assert [r.kind for r in seen] == ["shortfall", "shortfall", "bad-debt"], seen
    assert seen[0].amount > 0 and seen[1].amount == 0


def test_logging_never_changes_what_the_keeper_does(system, path, chain, accounts, monkeypatch, caplog):
    """The same passes twice from one snapshot: once logging, once with every logging step failing. The
    actions (kinds, auctions, amounts, prices, gas) are the same; the failures are warnings."""
    dave, erin = accounts[4], accounts[5]
    _client(path, dave, 1_000).open("ETH", 3, slippage_bps=100)
    _crash(system, chain, _client(path, erin, 3_300), 10, 2_700)
    snapshot = chain.snapshot()
    start = chain.pending_timestamp

    def passes(account) -> list[tuple]:
        keeper, kc = _keeper(path, account)
        out = []
        for t in (start + 10, start + 200, start + 400, start + 1_000):
            chain.mine(timestamp=t)
            out += [(a.kind, {k: v for k, v in a.detail.items() if k not in ("pnl", "holds")}, a.gas)
                    for a in keeper.run_once(chain)]
        return out, keeper

    logged, keeper = passes(accounts[3])
    assert {type(r) for r in keeper.records} >= {AuctionWait, TakeLog}
    chain.restore(snapshot)

    def broken(*_):
        raise RuntimeError("log sink down")

    for name in ("_log_wait", "_log_take", "_scan_bad_debt"):
        monkeypatch.setattr(Keeper, name, broken)
    caplog.set_level(logging.WARNING, logger="vperp.keeper")
    unlogged, keeper = passes(accounts[3])
    assert unlogged == logged and any(kind == "take" for kind, _, _ in logged)
    assert not keeper.records and "log sink down" in caplog.text
