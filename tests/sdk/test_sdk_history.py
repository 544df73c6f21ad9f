"""Every account's history rebuilt from events alone (issue 14 item 4; docs/integrators.md, "Rebuilding
accounts from events"): `vperp.client.rebuild_accounts`, `position_changes` / `trade_causes`, the
`Settlement` record (PositionSettled) and `Trade.execution_price` / `Trade.flipped`.

One module-scoped story: LP capital, deposits, a withdraw, a margin transfer, orders by two traders in two
sub-accounts (open, increase, reduce, flip, close) with funding accruing between them (explicit timestamps,
funding poked in every quarter window), a kick with a partial then a full take by a keeper, an underwater
account taken whole (keeper bounty, bad debt), and a backstop. The tests rebuild from `Client.events()`
alone and compare with the chain to the wei; dropping any one event that moves a balance breaks it.
"""
from __future__ import annotations

import json
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest

from vperp.client import (
    BuilderApproval,
    BuilderFee,
    from_wad,
    RECORD_KINDS,
    BadDebt,
    Backstop,
    Client,
    ClientError,
    CollateralDeposit,
    CollateralWithdraw,
    EventFeed,
    LiquidationCharge,
    LpWithdraw,
    MarginTransfer,
    OtherEvent,
    Settlement,
    Take,
    Trade,
    build_record,
    position_changes,
    rebuild_accounts,
    trade_causes,
    write_record,
)

from vperp.units import WAD
ROOT = Path(__file__).resolve().parents[2]
USDC = 10**6
ETH, BTC = 1, 2


def w(x: Decimal) -> int:
    """A record's Decimal back to its WAD integer (exact)."""
    out = x * WAD
    assert out == out.to_integral_value()
    return int(out)


class Story:
    def __init__(self, path: Path):
        self.path = path
        self.r: dict = {}
        self.prices = {"ETH": 3000, "BTC": 60_000}
        self.owners: list[str] = []


@pytest.fixture(scope="module")
def story(system, chain, accounts):
    path = Path(tempfile.mkdtemp(prefix="vperp-history-")) / "local.json"
    write_record(path, build_record(system, system.config, chain, 1))
    deployer, alice, bob, carol, dave, erin, frank = (accounts[i] for i in range(7))
    s = Story(path)
    s.owners = [a.address for a in (deployer, alice, bob, carol, dave, erin, frank)]
    ca, cb, cc, cd, ce, cf = (Client.from_deployment(path, account=a) for a in (alice, bob, carol, dave, erin, frank))
    r = s.r

    def at(t: int, **prices) -> None:
        """Next block at `t`; every feed posts its price then (never stale)."""
        s.prices.update(prices)
        chain.pending_timestamp = t
        for sym, price in s.prices.items():
            system.set_price(sym, price)

    for who, amount in ((alice, 100_000), (bob, 100_000), (carol, 500_000), (dave, 1_000), (erin, 3_300),
                        (frank, 1_000)):
        system.collateral.mint(who, amount * USDC, sender=who)
    t = (chain.pending_timestamp // 3600 + 1) * 3600
    at(t)
    ca.lp_deposit(100_000)
    system.amm.syncDepth(ETH, sender=alice)

    # money: deposits, a margin transfer to bob's isolated sub-account 1, a withdraw
    for client, amount in ((cb, 60_000), (cc, 500_000), (cd, 1_000), (ce, 3_300), (cf, 1_000)):
        client.deposit(amount)
    r["transfer"] = system.vault.transferMargin(0, 1, 10_000 * WAD, sender=bob)
    r["withdraw"] = cb.withdraw(5_000)

    def step(seconds=225):
        """A quarter TWAP window later, funding poked (the premium the trades made accrues)."""
        nonlocal t
        t += seconds
        at(t)
        cb.poke_funding("ETH")
        cb.poke_funding("BTC")

    # orders: bob's ETH long opened, increased, reduced, flipped short, closed; carol short; bob's BTC short
    step()
    r["open"] = cb.open("ETH", 5, slippage_bps=100)
    r["carol_open"] = cc.open("ETH", -2, slippage_bps=100)
    r["btc_open"] = cb.open("BTC", -0.2, slippage_bps=100, sub=1)
    cd.open("ETH", 3, slippage_bps=100)
    ce.open("ETH", 10, slippage_bps=100)
    cf.open("ETH", 3, slippage_bps=100)
    step()
    r["increase"] = cb.open("ETH", 3, slippage_bps=100)
    step()
    r["reduce"] = cb.open("ETH", -2, slippage_bps=100)
    step()
    r["flip"] = cb.open("ETH", -10, slippage_bps=200)
    step()

    # dave: kicked at 2,800; carol takes half once discounted, then the rest
    at(t + 10, ETH=2_800)
    r["kick"] = cc.kick(dave)
    aid = r["kick"].auction_id
    at(cc.auction_ready_at(aid, 100))
    r["take_half"] = cc.take(aid, max_base=(abs(r["kick"].size) / 2).quantize(Decimal("1e-18")), slippage_bps=0)
    at(chain.pending_timestamp + 30)
    r["take_rest"] = cc.take(aid, slippage_bps=50)

    # erin, under water at 2,650: kicked (a bounty from the insurance fund) and taken whole: bad debt
    at(chain.pending_timestamp + 5, ETH=2_650)
    r["kick_erin"] = cc.kick(erin)
    r["take_erin"] = cc.take(r["kick_erin"].auction_id)

    # frank: kicked, nobody takes, no redo allowed: the backstop closes it on the vAMM
    p = system.liquidation.liquidationParams()
    system.liquidation.setLiquidationParams((p.targetHealth, p.chip, p.penalty, 0, p.tip, p.maxKeeperReward,
                                             p.maxAuctionNotional), sender=deployer)
    r["kick_frank"] = cc.kick(frank)
    t = chain.pending_timestamp
    for _ in range(9):  # past the auction's 1,800 s, poking every quarter window
        step()
    r["backstop"] = cc.backstop(r["kick_frank"].auction_id)
    step()
    r["close"] = cb.close("ETH", slippage_bps=500)
    r["carol_reduce"] = cc.open("ETH", -1, slippage_bps=500)  # carol is long what she took: a sell reduces
    # carol trades through a front end (alice as the builder, 5 bps approved, 3 bps charged): the fee leaves
    # carol's collateral (the Vault's BuilderFeePaid) for alice's builder balance, outside every account
    cc.approve_builder_fee(alice.address, "0.0005")
    r["builder_trade"] = cc.open("ETH", -0.5, slippage_bps=500, builder=alice.address, builder_fee_rate="0.0003")
    step()
    s.last = chain.blocks.head.number
    s.client = Client.from_deployment(path)
    s.records = s.client.events()  # from the deployment's first block: everything, decoded
    return s


def _accounts_of(story) -> set[tuple[str, int]]:
    return {(o, sub) for o in story.owners for sub in (0, 1)}


def _rebuilt_matches_chain(story, rebuilt) -> list[str]:
    """Every mismatch between the rebuild and the chain, for the story's accounts (sub-accounts 0 and 1)
    and every account the rebuild knows."""
    vault, ch = story.client.vault, story.client.clearing_house
    bad = []
    for key in sorted(_accounts_of(story) | set(rebuilt)):
        owner, sub = key
        a = rebuilt.get(key)
        coll = a.collateral_wad if a else 0
        if coll != vault.collateral(owner, sub):
            bad.append(f"{owner}/{sub} collateral {coll} != {vault.collateral(owner, sub)}")
        for mid in (ETH, BTC):
            size, on, _ = ch.position(owner, sub, mid)
            got = a.position(mid) if a else None
            have = (w(got.size), w(got.open_notional)) if got else (0, 0)
            if have != (size, on):
                bad.append(f"{owner}/{sub} market {mid} {have} != {(size, on)}")
    return bad


# ============================================================================ the record


def test_position_settled_is_decoded_into_settlement(story):
    assert Settlement in RECORD_KINDS and Trade in RECORD_KINDS and OtherEvent in RECORD_KINDS
    settled = [x for x in story.records if isinstance(x, Settlement)]
    assert {x.cause for x in settled} == {"auction_fill", "auction_take", "backstop"}
    assert not [x for x in story.records if isinstance(x, OtherEvent) and x.event == "PositionSettled"]
    (back,) = [x for x in settled if x.cause == "backstop"]
    assert back.tx_hash == story.r["backstop"].tx_hash and back.owner == story.r["kick_frank"].owner
    assert back.symbol == "ETH" and back.market_id == ETH
    # the feed filters on it like any other kind
    only = story.client.events(kinds=(Settlement,))
    assert only == settled


# ============================================================================ positions and collateral


def test_rebuild_equals_the_chain_to_the_wei_for_every_account(story):
    rebuilt = rebuild_accounts(story.records)
    assert _rebuilt_matches_chain(story, rebuilt) == []
    # the story really moved every kind of balance
    kinds = {e.kind for a in rebuilt.values() for e in a.ledger}
    assert kinds >= {"deposit", "withdraw", "transfer_in", "transfer_out", "trade", "flip", "auction_fill",
                     "auction_take", "backstop", "liquidation_charge", "keeper_reward", "keeper_bounty", "bad_debt"}
    bob, erin = story.owners[2], story.owners[5]
    assert rebuilt[(bob, 1)].collateral_wad != 0 and rebuilt[(bob, 1)].position(BTC).size < 0
    assert rebuilt[(erin, 0)].bad_debt > 0 and rebuilt[(erin, 0)].collateral_wad == 0
    # funding was settled by the orders (the rebuild had to count it)
    assert any(c.trade.funding_paid != 0 for a in rebuilt.values() for c in a.changes)
    for a in rebuilt.values():  # the ledger is the collateral, entry by entry
        assert sum(w(e.amount) for e in a.ledger) == a.collateral_wad and a.collateral * WAD == a.collateral_wad


def test_rebuild_batch_by_batch_from_the_feed_equals_one_pass(story):
    """An indexer on `EventFeed`: small batches (whole blocks) continue one rebuild to the same result."""
    feed = EventFeed(story.client, start_block=story.client.start_block, batch_blocks=5)
    accounts: dict = {}
    while feed.next_block <= story.last:
        batch = [x for x in feed.poll() if x.block <= story.last]
        assert rebuild_accounts(batch, accounts) is accounts
    one = rebuild_accounts([x for x in story.records if x.block <= story.last])
    assert set(accounts) == set(one)
    for key, a in one.items():
        b = accounts[key]
        assert (b.collateral_wad, b.positions, b.changes, b.ledger, b.shortfall, b.bad_debt) == (
            a.collateral_wad, a.positions, a.changes, a.ledger, a.shortfall, a.bad_debt), key


@pytest.mark.parametrize("kind", [CollateralDeposit, CollateralWithdraw, MarginTransfer, Trade, LiquidationCharge,
                                  "KeeperBounty", BadDebt])
def test_dropping_one_balance_event_breaks_the_rebuild(story, kind):
    def matches(x):
        if kind == "KeeperBounty":
            return isinstance(x, OtherEvent) and x.event == "KeeperBounty"
        if kind is Trade:  # an order's (a liquidation's would leave its Settlement orphaned: see below)
            return isinstance(x, Trade) and x.fee > 0
        return isinstance(x, kind)

    i = next(i for i, x in enumerate(story.records) if matches(x))
    fewer = story.records[:i] + story.records[i + 1:]
    assert _rebuilt_matches_chain(story, rebuild_accounts(fewer)) != []


def test_a_liquidation_trade_without_its_settlement_or_the_reverse_is_caught(story):
    records = story.records
    i = next(i for i, x in enumerate(records) if isinstance(x, Settlement))
    with pytest.raises(ClientError, match="follows no Trade"):
        rebuild_accounts(records[:i - 1] + records[i:])  # the Trade dropped, its Settlement left
    causes = dict(((t.tx_hash, t.log_index), c) for t, c in trade_causes(records[:i] + records[i + 1:]))
    t = records[i - 1]
    assert causes[(t.tx_hash, t.log_index)] in ("trade", "flip")  # the Settlement dropped: taken for an order


# ============================================================================ causes and prices


def test_every_liquidation_change_is_paired_with_its_cause_and_the_take_price(story):
    changes = position_changes(story.records)
    takes = {x.tx_hash: x for x in story.records if isinstance(x, Take)}
    backstops = {x.tx_hash: x for x in story.records if isinstance(x, Backstop)}
    r = story.r
    by_tx: dict[str, list] = {}
    for c in changes:
        by_tx.setdefault(c.trade.tx_hash, []).append(c)
    for name in ("take_half", "take_rest", "take_erin"):
        take = r[name]
        fill, taker = by_tx[take.tx_hash]
        assert (fill.cause, taker.cause) == ("auction_fill", "auction_take")
        assert (fill.trade.owner, fill.trade.subaccount) == (take.owner, take.subaccount)
        assert (taker.trade.owner, taker.trade.subaccount) == (take.taker, take.taker_subaccount)
        assert fill.price == taker.price == take.price == takes[take.tx_hash].price
        assert fill.trade.fee == taker.trade.fee == 0
        # the quote is base x price, rounded against each side
        base, price = w(abs(fill.trade.base_delta)), w(take.price)
        down, up = base * price // WAD, -(-base * price // WAD)
        assert {w(abs(fill.trade.quote_delta)), w(abs(taker.trade.quote_delta))} <= {down, up}
        assert fill.trade.base_delta == -taker.trade.base_delta and abs(fill.trade.base_delta) == take.amount
    (back,) = by_tx[r["backstop"].tx_hash]
    assert back.cause == "backstop" and back.settlement.cause == "backstop"
    assert back.price == back.trade.execution_price  # |quote| / |base| rounded down, the chain's own figure
    assert back.trade.quote_delta == backstops[back.trade.tx_hash].quote
    assert back.trade.base_delta == -r["backstop"].size
    # carol, short 2 when she took, crossed zero on a take: still the taker's side, and `flipped` says so
    assert any(c.cause == "auction_take" and c.trade.flipped for c in changes)
    liquidations = [c for c in changes if c.settlement is not None]
    assert len(liquidations) == 7 == len([x for x in story.records if isinstance(x, Settlement)])


def test_every_order_has_its_execution_price_and_flips_are_named(story):
    changes = position_changes(story.records)
    orders = [c for c in changes if c.settlement is None]
    assert orders and all(c.trade.fee > 0 for c in orders)
    for c in orders:
        q, b = w(abs(c.trade.quote_delta)), w(abs(c.trade.base_delta))
        assert w(c.price) == w(c.trade.execution_price) == q * WAD // b
        before, after = w(c.trade.new_size) - w(c.trade.base_delta), w(c.trade.new_size)
        assert c.trade.previous_size * WAD == before
        assert (c.cause == "flip") == (before * after < 0) == c.trade.flipped
    by_tx = {c.trade.tx_hash: c for c in orders}
    r = story.r
    assert by_tx[r["flip"].tx_hash].cause == "flip"
    assert by_tx[r["flip"].tx_hash].trade.new_size == -4
    for name in ("open", "increase", "reduce", "close", "carol_open", "btc_open", "carol_reduce"):
        assert by_tx[r[name].tx_hash].cause == "trade", name
    assert by_tx[r["close"].tx_hash].trade.new_size == 0
    # a helper's record is the feed's (the properties come with it)
    assert by_tx[r["open"].tx_hash].trade == r["open"]
    assert [c for c in trade_causes(story.records)] == [(c.trade, c.cause) for c in changes]


# ============================================================================ protocol ledgers


def _protocol_ledgers(story, share_of) -> tuple[int, int]:
    """(insurance fund, pool balance) rebuilt from the records, with each market's insurance share of
    the taker fee given by `share_of(market_id)` [wad]."""
    insurance = pool = 0
    for x in story.records:
        if isinstance(x, Trade):
            fee = w(x.fee)
            to_insurance = fee * share_of(x.market_id) // WAD
            insurance += to_insurance
            pool += w(x.funding_paid) - w(x.realized_pnl) + fee - to_insurance
        elif isinstance(x, LiquidationCharge):
            insurance += w(x.penalty)
        elif isinstance(x, BadDebt):
            insurance -= w(x.from_insurance)
            pool -= w(x.from_pool)
        elif isinstance(x, OtherEvent) and x.contract == "Vault":
            if x.event == "KeeperBounty":
                insurance -= x.args["amount"]
            elif x.event == "InsuranceFunded":
                insurance += x.args["amountWad"]
            elif x.event == "PoolFunded":
                pool += x.args["amountWad"]
        elif isinstance(x, LpWithdraw):  # Vault.withdrawPool emits nothing; the pool's ERC-4626 Withdraw says it
            pool -= w(x.assets)  # token units x 10^(18 - decimals)
    return insurance, pool


def test_insurance_fund_and_pool_balance_rebuild_given_the_fee_share(story):
    """With each market's insurance share of the taker fee read from the chain (the one figure no event
    carries), the insurance fund and the pool's balance rebuild to the wei."""
    ch, vault = story.client.clearing_house, story.client.vault
    insurance, pool = _protocol_ledgers(story, lambda mid: ch.insuranceFeeShare(mid))
    assert (insurance, pool) == (vault.insuranceFund(), vault.poolBalance())


def test_insurance_fund_and_pool_balance_rebuild_from_events_alone(story):
    """The insurance share of each taker fee comes from `InsuranceFeeShareSet` (emitted at listing and on every
    parameter change), the fee from `PositionChanged`: with them the insurance fund and the pool's balance
    rebuild to the wei, no chain read."""
    shares = {}
    for x in story.records:
        if isinstance(x, OtherEvent) and (x.contract, x.event) == ("ClearingHouse", "InsuranceFeeShareSet"):
            shares[x.args["marketId"]] = x.args["insuranceFeeShare"]
    assert shares, "no InsuranceFeeShareSet in the story"
    insurance, pool = _protocol_ledgers(story, lambda mid: shares[mid])
    vault = story.client.vault
    assert (insurance, pool) == (vault.insuranceFund(), vault.poolBalance())


# ============================================================================ the documented example


def test_the_documented_rebuild_example_runs(story, accounts, capsys):
    """docs/integrators.md, "Rebuilding accounts from events": its Python block runs as written (bob)."""
    import re

    text = (ROOT / "docs" / "integrators.md").read_text()
    section = text[text.index("### Rebuilding accounts from events"):]
    code = re.search(r"```python\n(.*?)\n```", section, re.S).group(1)
    c = Client.from_deployment(story.path, account=accounts[2])
    namespace = {"c": c}
    exec(compile(code, "docs/integrators.md (Rebuilding accounts from events)", "exec"), namespace)
    me = namespace["me"]
    assert me.collateral_wad == c.vault.collateral(accounts[2], 0)
    assert [ch.cause for ch in me.changes if ch.trade.symbol == "ETH"] == ["trade", "trade", "trade", "flip", "trade"]
    out = capsys.readouterr().out
    assert "flip" in out and "deposit" in out and "transfer_out" in out


def from_wad_int(x: Decimal) -> int:
    return int(x * WAD)


def test_a_builder_fee_is_a_ledger_move_of_the_trader(story):
    """The story's builder trade: one Vault BuilderFeePaid; the rebuild books it on carol's account as a
    `builder_fee` move of exactly its amount (without it carol's collateral would not match the chain)."""
    paid = [x for x in story.records if isinstance(x, BuilderFee)]
    assert len(paid) == 1 and paid[0].amount > 0 and paid[0].subaccount == 0
    (approval,) = [x for x in story.records if isinstance(x, BuilderApproval)]
    assert (approval.owner, approval.builder, approval.max_fee_rate) == (paid[0].owner, paid[0].builder, Decimal("0.0005"))
    # the trade it was charged on is in the same transaction, by the same owner
    assert [t.owner for t in story.records if isinstance(t, Trade) and t.tx_hash == paid[0].tx_hash] == [paid[0].owner]
    assert not [x for x in story.records if isinstance(x, OtherEvent) and x.event.startswith("BuilderFee")]
    carol = rebuild_accounts(story.records)[(str(paid[0].owner), 0)]
    moves = [m for m in carol.ledger if m.kind == "builder_fee"]
    assert len(moves) == 1 and moves[0].amount == -paid[0].amount
    assert story.client.vault.builderFees(paid[0].builder) == from_wad_int(paid[0].amount)
