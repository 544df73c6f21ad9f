"""The SDK's helpers beyond trading (funding, liquidations, LP flows) and its event records and live feed
(`vperp.client`: docs/integrators.md, "Funding", "Liquidations", "Liquidity pool", "Events and live
subscriptions").

One module-scoped story drives every kind of event the five contracts emit through the SDK's own
helpers (LP deposit, request, redeem, withdraw, a depth sync, trades, funding samples, a kick, a partial
take, a redo, a cancel, an underwater account taken whole into bad debt, a backstop, a repeg); the tests
then read it back: every helper's returned record equals the feed's record of the same log, the feed
decodes every kind, and a feed stopped part way and restarted from its cursor file delivers exactly what
one uninterrupted read delivers. Timestamps are set explicitly (never the wall clock).
"""
from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
from ape.exceptions import ContractLogicError

from helpers.clock import next_hour
from vperp.client import (
    RECORD_KINDS,
    AuctionCancel,
    Backstop,
    BadDebt,
    ChainEvent,
    Client,
    ClientError,
    CollateralDeposit,
    DepthCharge,
    DepthSync,
    DepthSyncCost,
    EventFeed,
    FeedError,
    FundingSample,
    Kick,
    LiquidationCharge,
    LpDeposit,
    LpWithdraw,
    LpWithdrawRequest,
    OtherEvent,
    Redo,
    ReorgError,
    Repeg,
    ReservesChange,
    Shortfall,
    Take,
    Trade,
    auction_price,
    build_record,
    event_abis,
    taker_discount,
    write_record,
)
from vperp.funding import HOUR, evolve

from vperp.units import WAD
USDC = 10**6
ETH = 1
ROOT = Path(__file__).resolve().parents[2]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Story:
    """What the story did: the deployment file, its first and last block, and every helper's return."""

    def __init__(self, path: Path):
        self.path = path
        self.first = self.last = 0
        self.r: dict = {}
        self.prices = {"ETH": 3000, "BTC": 60_000}


@pytest.fixture(scope="module")
def story(system, chain, accounts):
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="vperp-sdk-")) / "local.json"
    write_record(path, build_record(system, system.config, chain, 1))
    deployer, alice, bob, carol, dave, erin, frank = (accounts[i] for i in range(7))
    s = Story(path)
    c = {a.address: Client.from_deployment(path, account=a) for a in (alice, bob, carol, dave, erin, frank)}
    ca, cb, cc, cd, ce, cf = (c[a.address] for a in (alice, bob, carol, dave, erin, frank))
    r = s.r

    def at(t: int, **prices) -> None:
        """Next block at `t`; every feed posts its price then (the mock feeds are refreshed, never stale)."""
        s.prices.update(prices)
        chain.pending_timestamp = t
        for sym, price in s.prices.items():
            system.set_price(sym, price)

    for who, amount in ((alice, 200_000), (bob, 100_000), (carol, 500_000), (dave, 1_000), (erin, 3_300),
                        (frank, 1_000)):
        system.collateral.mint(who, amount * USDC, sender=who)
    s.first = chain.blocks.head.number + 1
    t0 = (chain.pending_timestamp // 3600 + 1) * 3600

    # A. the pool: deposit, depth follows, a request, and after the cooldown a redeem and a withdraw
    at(t0)
    r["lp_deposit"] = ca.lp_deposit(100_000)
    system.amm.syncDepth(ETH, sender=alice)
    r["lp_request"] = ca.lp_request_withdraw()  # all of alice's shares
    r["request_cooling"] = ca.lp_request()
    at(r["lp_request"].unlock_at)
    r["lp_position"] = ca.lp_position()
    r["lp_redeem"] = ca.lp_redeem(10_000)
    r["lp_withdraw"] = ca.lp_withdraw(1_000)

    # B. traders: a long, a short, three leveraged longs that will be liquidated
    t = chain.pending_timestamp + 60
    at(t)
    for client, amount in ((cb, 50_000), (cc, 500_000), (cd, 1_000), (ce, 3_300), (cf, 1_000)):
        client.deposit(amount)
    r["open"] = cb.open("ETH", 5, slippage_bps=100)
    cb.open("BTC", -0.5, slippage_bps=100)
    cd.open("ETH", 3, slippage_bps=100)
    ce.open("ETH", 10, slippage_bps=100)
    cf.open("ETH", 3, slippage_bps=100)

    # C. funding samples: a poke at each of the next two hour boundaries (the target is re-sampled once an hour,
    # by the market's first block of the hour)
    r["samples"] = []
    first = next_hour(t)
    for t in (first, first + HOUR):
        at(t)
        r["samples"].append(cb.poke_funding("ETH"))

    # D. dave: kick at 2,800, a partial take once the discount reaches 1 %, a redo, a cancel
    at(t + 10, ETH=2_800)
    r["preview"] = cc.kick_preview(dave)
    r["kick"] = cc.kick(dave)
    aid = r["kick"].auction_id
    r["ready_at"] = cc.auction_ready_at(aid, 100)
    at(r["ready_at"])
    r["auction_at_ready"] = cc.auction(aid, min_discount_bps=100)
    r["take"] = cc.take(aid, max_base=(abs(r["kick"].size) / 2).quantize(Decimal("1e-18")), slippage_bps=0)
    duration = cc.auction_params("ETH").duration
    kicked_at = chain.blocks[r["kick"].block].timestamp
    at(kicked_at + duration + 1, ETH=2_700)  # expired by time; the index fell further, against dave
    r["redo"] = cc.redo(aid)
    at(chain.pending_timestamp + 5, ETH=3_000)
    r["cancel"] = cc.cancel(aid)

    # E. erin, underwater at 2,650: her whole position in one auction, taken whole: bad debt
    at(chain.pending_timestamp + 5, ETH=2_650)
    r["kick_erin"] = cc.kick(erin)
    r["take_erin"] = cc.take(r["kick_erin"].auction_id)

    # F. frank: kicked, nobody takes, no redos allowed: the backstop closes it on the vAMM
    p = system.liquidation.liquidationParams()
    system.liquidation.setLiquidationParams((p.targetHealth, p.chip, p.penalty, 0, p.tip, p.maxKeeperReward,
                                             p.maxAuctionNotional), sender=deployer)
    r["kick_frank"] = cc.kick(frank)
    # G. an hour with the vAMM above the index: the TWAPs part, the funding is sampled, then a repeg
    start = chain.pending_timestamp
    for k in range(1, 5):
        at(start + 900 * k)
        cb.poke_funding("ETH")
    r["backstop"] = cc.backstop(r["kick_frank"].auction_id)
    at(chain.pending_timestamp + 5)
    system.amm.repeg(ETH, sender=bob)
    r["close"] = cb.close("ETH", slippage_bps=500)
    # calm again: the index where the vAMM is, so LP flows are open (nothing left outside its band)
    at(chain.pending_timestamp + 5, ETH=int(system.clearing_house.marketState(ETH).spotPrice // WAD))
    cb.poke_funding("ETH")  # the market accrues at the new index (a gap: LP flows wait one TWAP window)
    s.last = chain.blocks.head.number
    s.clients = c
    return s


@pytest.fixture
def client(story, accounts):
    return Client.from_deployment(story.path, account=accounts[3])


def _by_position(records):
    return {(r.block, r.log_index): r for r in records}


# ============================================================================ records


def test_every_event_of_the_story_is_decoded_into_its_record(story, client):
    records = client.events(since_block=story.first, to_block=story.last)
    kinds = {type(r) for r in records}
    for kind in (Trade, FundingSample, ReservesChange, Kick, Take, Redo, AuctionCancel, Backstop, BadDebt, Shortfall,
                 LiquidationCharge, CollateralDeposit, LpDeposit, LpWithdraw, LpWithdrawRequest, DepthSync,
                 DepthSyncCost, DepthCharge, Repeg, OtherEvent):
        assert kind in kinds, kind.__name__
    for charge in (r for r in records if isinstance(r, DepthCharge)):  # the record is the event, in units
        sync = [r for r in records if isinstance(r, DepthSyncCost) and r.block == charge.block]
        assert sync and charge.symbol == sync[0].symbol
    assert records == sorted(records, key=lambda x: (x.block, x.log_index))
    # only the five contracts: the collateral token's own Transfer/Approval are not protocol events
    others = {(r.contract, r.event) for r in records if isinstance(r, OtherEvent)}
    assert all(name in ("Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController")
               for name, _ in others), others
    assert ("LiquidityPool", "Transfer") in others  # LP shares minted and burnt
    # bad debt: erin's whole position went to the taker below what her collateral covered
    (bad,) = [x for x in records if isinstance(x, BadDebt) and x.owner == story.r["kick_erin"].owner]
    assert bad.amount > 0 and bad.amount == bad.from_insurance + bad.from_pool
    assert bad.tx_hash == story.r["take_erin"].tx_hash
    shortfalls = [x for x in records if isinstance(x, Shortfall) and x.owner == bad.owner]
    assert shortfalls[0].shortfall > 0 and shortfalls[-1].shortfall == 0  # estimated at the kick, released


def test_helper_returns_are_the_feeds_records_of_the_same_logs(story, client):
    seen = _by_position(client.events(since_block=story.first, to_block=story.last))
    r = story.r
    for name in ("lp_deposit", "lp_request", "lp_redeem", "lp_withdraw", "open", "kick", "take", "redo", "cancel",
                 "kick_erin", "take_erin", "kick_frank", "backstop", "close"):
        record = r[name]
        assert isinstance(record, ChainEvent), name
        assert seen[(record.block, record.log_index)] == record, name
    for sample in r["samples"]:
        assert isinstance(sample, FundingSample) and seen[(sample.block, sample.log_index)] == sample


def test_auction_records_carry_owner_and_market_from_the_kick(story, client):
    r = story.r
    kick, take, redo, cancel = r["kick"], r["take"], r["redo"], r["cancel"]
    assert isinstance(redo, Redo) and isinstance(cancel, AuctionCancel)
    for rec in (take, redo, cancel):
        assert (rec.auction_id, rec.owner, rec.subaccount, rec.symbol, rec.market_id) == (
            kick.auction_id, kick.owner, kick.subaccount, "ETH", ETH)
    # a fresh client (empty cache) reads the same from auction(id)
    fresh = Client.from_deployment(story.path)
    (again,) = [x for x in fresh.events(since_block=take.block, to_block=take.block) if isinstance(x, Take)]
    assert again == take
    assert isinstance(r["backstop"], Backstop) and r["backstop"].owner == r["kick_frank"].owner
    assert r["backstop"].size == r["kick_frank"].size  # all of it fitted


def test_event_abis_cover_every_event_of_the_abi_files_once(client):
    names = set()
    # The five contracts and, when the deployment has one, the order router.
    for contract in ("Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController") + (
            ("OrderRouter",) if client.router is not None else ()):
        abi = json.loads((ROOT / "abi" / f"{contract}.json").read_text())
        names |= {e["name"] for e in abi if e["type"] == "event"}
    decoded = {abi.name for abi in client._event_abis}
    assert names == decoded
    selectors = [abi.selector for abi in client._event_abis]
    assert len(selectors) == len(set(selectors))
    assert {k.__name__ for k in RECORD_KINDS} >= {"Trade", "Kick", "Take", "BadDebt", "OtherEvent", "OrderCommit",
                                                 "OrderExecution", "OrderFailure", "OrderCancel", "OrderBounty"}
    assert client.router is not None and "CancelBountyPaid" in decoded
    assert event_abis([]) == []


# ============================================================================ funding


def test_funding_projection_rates_are_funding_states_to_the_wei(story, client, chain):
    ch = client.clearing_house
    applied, target, _, _, _, p1, p8 = ch.fundingState(ETH)
    one, eight = client.funding_projection("ETH", 1), client.funding_projection("ETH", 8)
    assert one.rate_at_horizon_pct_per_hour == Decimal(p1) / 10**16
    assert eight.rate_at_horizon_pct_per_hour == Decimal(p8) / 10**16
    assert one.applied_pct_per_hour == Decimal(applied) / 10**16 and one.target_pct_per_hour == Decimal(target) / 10**16
    fp = ch.fundingParams(ETH)
    _, area = evolve(applied, target, 8 * HOUR, fp.smoothingTau, fp.maxRateVelocity)
    index = ch.indexPrice(ETH)
    per_base = area * index // (HOUR * WAD)
    assert eight.funding_per_base * WAD == per_base and eight.index_price * WAD == index
    # carol holds the long she took: what it pays over 8 h, rounded up like the chain
    size, _, pending = ch.position(client.account, 0, ETH)
    assert size > 0
    assert eight.size * WAD == size and eight.pending_funding * WAD == pending
    assert eight.projected_payment * WAD == _ceil_div(size * per_base, WAD)
    assert eight.owed_at_horizon == eight.pending_funding + eight.projected_payment
    assert client.pending_funding("ETH") == eight.pending_funding
    # without an account: the market only
    market_only = Client.from_deployment(story.path).funding_projection("ETH", 8)
    assert market_only.size == 0 and market_only.projected_payment == 0
    assert market_only.funding_per_base == eight.funding_per_base


def test_funding_projection_matches_the_accrual_when_nothing_changes(story, accounts, chain):
    """Right after a poke that sampled a new target, with the index held: the pending funding an hour
    later is the pending funding now plus the projected payment (two roundings up against one: 1 wei)."""
    bob = accounts[2]
    c = Client.from_deployment(story.path, account=bob)
    c.open("BTC", -0.5, slippage_bps=100)  # bob's BTC short grows; the premium is what the story left
    t = next_hour(chain.pending_timestamp)  # the market's first block of an hour samples the target
    chain.pending_timestamp = t
    assert c.poke_funding("BTC") is not None  # a new sample: the target in force is the TWAPs' now
    state = c.clearing_house.marketState(2)
    projection = c.funding_projection("BTC", 1)
    assert projection.applied_pct_per_hour * 10**16 == state.fundingRate
    assert projection.target_pct_per_hour * 10**16 == state.targetRate
    chain.mine(timestamp=t + HOUR)  # an empty block an hour later; nothing re-samples the target
    later = c.pending_funding("BTC")
    assert abs(later - projection.owed_at_horizon) * WAD <= 1
    assert projection.projected_payment != 0


# ============================================================================ liquidations


def test_ready_at_is_the_first_second_the_discount_reaches_the_threshold(story, client, chain):
    r = story.r
    at_ready = r["auction_at_ready"]
    assert at_ready.ready_at == r["ready_at"] and at_ready.threshold_pct == 1
    assert at_ready.discount_pct >= 1  # read in the block at ready_at
    ap = client.liquidation.auctionParams(ETH)
    kick_time = chain.blocks[r["kick"].block].timestamp
    elapsed = r["ready_at"] - kick_time
    size, index = int(r["kick"].size * WAD), 2_800 * WAD

    def disc(e):
        return taker_discount(size, index, auction_price(size, index, client.liquidation.discountAt(ETH, e)))

    assert disc(elapsed) >= 10**16 > disc(elapsed - 1)
    assert 0 < elapsed < ap.duration
    assert client.discount_at("ETH", elapsed) == Decimal(client.liquidation.discountAt(ETH, elapsed)) / 10**16
    # the take paid the engine's price of its own block (its limit, slippage 0, was the price a block before)
    took = chain.blocks[r["take"].block].timestamp - kick_time
    assert took > elapsed
    assert r["take"].price * WAD == auction_price(size, index, client.liquidation.discountAt(ETH, took))


def test_auctions_lists_live_ones_with_ready_at(story, accounts, chain):
    """A fresh kick: `auctions(min_discount_bps)` gives each live auction its ready_at; a threshold above
    the curve's maximum is never reached (None)."""
    c = Client.from_deployment(story.path, account=accounts[3])
    dave = accounts[4]
    chain.pending_timestamp += 5
    for sym, price in (("ETH", 2_400), ("BTC", 60_000)):
        c.oracles[sym].updateAnswer(price * 10**8, sender=accounts[0])
    kick = c.kick(dave)
    live = {a.id: a for a in c.auctions(min_discount_bps=150)}
    a = live[kick.auction_id]
    assert (a.owner, a.symbol, a.size, a.start_index, a.redos, a.expired) == (dave.address, "ETH", kick.size, 2_400, 0,
                                                                              False)
    assert a.ready_at == c.auction_ready_at(kick.auction_id, 150) and a.ready_at > a.start_time
    assert c.auction(kick.auction_id, min_discount_bps=201).ready_at is None  # above the 2 % maximum
    assert all(x.size != 0 for x in live.values())
    finished = c.auction(story.r["kick_erin"].auction_id)
    assert finished.size == 0 and finished.price is None and not finished.expired


def test_take_limit_worsens_the_price_by_the_slippage(story, accounts, chain):
    c = Client.from_deployment(story.path, account=accounts[3])
    chain.pending_timestamp += 5
    for sym, price in (("ETH", 2_400), ("BTC", 60_000)):
        c.oracles[sym].updateAnswer(price * 10**8, sender=accounts[0])
    kick = c.kick(accounts[4])
    price = c.liquidation.auctionPrice(kick.auction_id)
    assert c.take_limit(kick.auction_id, 50) == _ceil_div(price * 10_050, 10_000)  # a long slice: pay at most
    nonce = accounts[3].nonce
    with pytest.raises(ContractLogicError) as err:  # a limit the auction cannot meet: the engine's named error
        c.take(kick.auction_id, limit_price=Decimal(price * 9 // 10) / WAD)
    assert "LimitPriceNotMet" in type(err.value).__name__ + str(err.value)
    assert accounts[3].nonce == nonce  # nothing was sent


def test_kick_and_cancel_refused_sdk_side_or_by_name(story, accounts):
    c = Client.from_deployment(story.path, account=accounts[3])
    nonce = accounts[3].nonce
    with pytest.raises(ClientError, match="is not liquidatable"):
        c.kick(accounts[2])  # bob is healthy
    with pytest.raises(ClientError, match="is not liquidatable"):
        c.kick_preview(accounts[2], symbol="ETH")
    with pytest.raises(ClientError, match="is finished"):
        c.take(story.r["kick_erin"].auction_id)
    with pytest.raises(ContractLogicError) as err:
        c.cancel(story.r["kick_erin"].auction_id)
    assert "AuctionFinished" in type(err.value).__name__ + str(err.value)
    assert accounts[3].nonce == nonce


# ============================================================================ LP flows


def test_lp_helpers_follow_the_request(story, accounts, chain):
    r = story.r
    dep, req, redeem, withdraw = r["lp_deposit"], r["lp_request"], r["lp_redeem"], r["lp_withdraw"]
    alice = accounts[1]
    assert (dep.sender, dep.owner, dep.assets) == (alice.address, alice.address, 100_000) and dep.shares > 0
    assert (req.owner, req.shares) == (alice.address, dep.shares)
    cooling = r["request_cooling"]
    assert cooling.status == "cooling" and cooling.unlock_at == req.unlock_at
    window = Client.from_deployment(story.path).pool.poolParams().withdrawWindow
    assert cooling.expires_at == req.unlock_at + window
    pos = r["lp_position"]
    assert pos.request.status == "open" and pos.shares == dep.shares and pos.max_redeem > 0
    assert abs(pos.share_price - 1) < Decimal("0.001") and pos.value > 0
    assert (redeem.owner, redeem.receiver, redeem.shares) == (alice.address, alice.address, 10_000) and redeem.assets > 0
    assert withdraw.assets == 1_000 and withdraw.shares > 0
    c = Client.from_deployment(story.path, account=alice)
    left = c.lp_request()
    assert left.shares == dep.shares - 10_000 - withdraw.shares  # each exit spends the request
    chain.pending_timestamp = left.expires_at + 1
    for sym, price in story.prices.items():  # fresh feeds (a stale one would suspend LP flows)
        c.oracles[sym].updateAnswer(price * 10**8, sender=accounts[0])
    assert c.lp_request().status == "expired" and c.lp_max_redeem() == 0 and c.lp_max_withdraw() == 0
    nonce = alice.nonce
    with pytest.raises(ClientError, match="nothing redeemable now.*request expired"):
        c.lp_redeem()
    with pytest.raises(ContractLogicError) as err:
        c.lp_withdraw(10)
    assert "WithdrawWindowExpired" in type(err.value).__name__ + str(err.value)
    assert alice.nonce == nonce
    assert Client.from_deployment(story.path).lp_request(accounts[8]).status == "none"


# ============================================================================ bad input


BAD_CALLS = [
    ("funding_projection", ("ETH",), {"hours": 0}, "hours must be in"),
    ("funding_projection", ("ETH",), {"hours": 1.5}, "hours must be an integer"),
    ("funding_projection", ("DOGE",), {}, "unknown market 'DOGE'"),
    ("pending_funding", ("ETH",), {"sub": -1}, "sub must be in"),
    ("pending_funding", ("ETH",), {"owner": "0xabc"}, "owner must be an address"),
    ("funding_projection", ("ETH",), {"owner": 7}, "owner must be an address"),
    ("discount_at", ("ETH", -1), {}, "elapsed must be in"),
    ("auction", (0,), {}, "unknown auction 0"),
    ("auction", (10**6,), {}, "unknown auction 1000000"),
    ("auction", ("1",), {}, "auction_id must be an integer"),
    ("auction", (1,), {"min_discount_bps": 10_000}, "min_discount_bps must be an integer in"),
    ("auctions", (), {"min_discount_bps": -1}, "min_discount_bps must be an integer in"),
    ("kick", ("0x0000000000000000000000000000000000000000",), {}, "owner must not be the zero address"),
    ("kick", ("not an address",), {}, "owner must be an address"),
    ("kick", ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8",), {"sub": 2**32}, "sub must be in"),
    ("kick_preview", ("0x70997970C51812dc3A010C7d01b50e0d17dc79C8",), {"symbol": "DOGE"}, "unknown market 'DOGE'"),
    ("take", (1,), {"max_base": 0}, "max_base must be positive"),
    ("take", (1,), {"max_base": "1e-19"}, "max_base must be a finite number with at most 18 decimals"),
    ("take", (1,), {"max_base": "lots"}, "max_base must be a finite number"),
    ("take", (1,), {"slippage_bps": 10_000}, "slippage_bps must be an integer in"),
    ("take", (1,), {"limit_price": -1}, "limit_price must be positive"),
    ("take", (1,), {"sub": True}, "sub must be an integer"),
    ("take_limit", (1,), {"slippage_bps": 0.5}, "slippage_bps must be an integer in"),
    ("redo", (1,), {"keeper": "0x0000000000000000000000000000000000000000"}, "keeper must not be the zero address"),
    ("cancel", (-3,), {}, "unknown auction -3"),
    ("backstop", (None,), {}, "auction_id must be an integer"),
    ("lp_deposit", (0,), {}, "amount must be positive"),
    ("lp_deposit", ("0.0000001",), {}, "more decimals than the collateral"),
    ("lp_deposit", (100,), {"receiver": "0x12"}, "receiver must be an address"),
    ("lp_request_withdraw", (0,), {}, "shares must be positive"),
    ("lp_request_withdraw", ("1e-13",), {}, "more decimals than the pool share"),
    ("lp_request_withdraw", ("nan",), {}, "shares must be a number"),
    ("lp_redeem", (-1,), {}, "shares must be positive"),
    ("lp_withdraw", ("x",), {}, "amount must be a number"),
    ("lp_request", ("0xnothex",), {}, "owner must be an address"),
    ("events", (), {"since_block": -1}, "since_block must be in"),
    ("events", (), {"kinds": (int,)}, "kinds must be record classes"),
]


@pytest.mark.parametrize("method,args,kwargs,message", BAD_CALLS, ids=[f"{m}-{i}" for i, (m, *_) in enumerate(BAD_CALLS)])
def test_bad_input_is_one_named_line_and_sends_nothing(story, accounts, chain, method, args, kwargs, message):
    carol = accounts[3]
    c = Client.from_deployment(story.path, account=carol)
    nonce, head = carol.nonce, chain.blocks.head.number
    with pytest.raises(ClientError) as err:
        getattr(c, method)(*args, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert carol.nonce == nonce and chain.blocks.head.number == head


def test_helpers_that_send_need_an_account(story):
    c = Client.from_deployment(story.path)
    for call in (lambda: c.kick("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"), lambda: c.take(1),
                 lambda: c.redo(1), lambda: c.cancel(1), lambda: c.backstop(1), lambda: c.lp_deposit(1),
                 lambda: c.lp_request_withdraw(1), lambda: c.lp_redeem(1), lambda: c.lp_withdraw(1),
                 lambda: c.poke_funding("ETH"), lambda: c.lp_request()):
        with pytest.raises(ClientError, match="has no account"):
            call()


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_blocks": 0}, "batch_blocks must be in"),
    ({"confirmations": -1}, "confirmations must be in"),
    ({"start_block": "0"}, "start_block must be an integer"),
    ({"kinds": (dict,)}, "kinds must be record classes"),
])
def test_feed_bad_arguments(story, tmp_path, kwargs, message):
    with pytest.raises(ClientError, match=message):
        EventFeed(Client.from_deployment(story.path), cursor_file=tmp_path / "c.json", **kwargs)
    assert not (tmp_path / "c.json").exists()


# ============================================================================ the live feed


def test_feed_restarted_from_its_cursor_file_delivers_what_one_read_does(story, accounts, chain, tmp_path):
    cursor = tmp_path / "state" / "feed.json"
    # the first process: a few small batches, then it stops
    first = EventFeed(Client.from_deployment(story.path), cursor_file=cursor, start_block=story.first, batch_blocks=7)
    delivered = []
    for _ in range(4):
        delivered += first.poll()
    stopped_at = first.next_block
    assert delivered and stopped_at == story.first + 28
    saved = json.loads(cursor.read_text())
    assert saved["next_block"] == stopped_at and saved["last_block_hash"] == first._block_hash(stopped_at - 1)
    del first
    # while it is down the chain goes on
    bob = Client.from_deployment(story.path, account=accounts[2])
    chain.pending_timestamp += 30
    bob.open("BTC", 0.1, slippage_bps=100)
    bob.deposit(10)
    # a new process (a new Client too) resumes from the file, whatever start_block it is given
    second = EventFeed(Client.from_deployment(story.path), cursor_file=cursor, start_block=0, batch_blocks=50)
    assert second.next_block == stopped_at
    delivered += second.read_to_head()
    assert second.next_block == chain.blocks.head.number + 1 and second.poll() == []
    # one uninterrupted read, no cursor file
    whole = EventFeed(Client.from_deployment(story.path), start_block=story.first, batch_blocks=10_000).read_to_head()
    assert delivered == whole
    keys = [(x.block, x.log_index) for x in delivered]
    assert len(keys) == len(set(keys)) and keys == sorted(keys)
    assert isinstance(delivered[-1], CollateralDeposit)
    assert [x for x in delivered[-6:] if isinstance(x, Trade)][-1].base_delta == Decimal("0.1")


def test_feed_kinds_and_confirmations(story, tmp_path, chain):
    c = Client.from_deployment(story.path)
    takes = EventFeed(c, start_block=story.first, kinds=(Take, BadDebt)).read_to_head()
    assert {type(x) for x in takes} == {Take, BadDebt} and len([x for x in takes if isinstance(x, Take)]) == 2
    head = chain.blocks.head.number
    feed = EventFeed(c, start_block=head - 5, confirmations=3)
    feed.read_to_head()
    assert feed.next_block == head - 2  # the last three blocks wait for three more on top
    assert feed.poll() == []


def test_follow_delivers_a_batch_again_when_the_handler_fails(story, tmp_path):
    cursor = tmp_path / "feed.json"
    c = Client.from_deployment(story.path)
    feed = EventFeed(c, cursor_file=cursor, start_block=story.first, batch_blocks=1_000)
    seen = []

    def failing(record):
        if len(seen) == 5:
            raise RuntimeError("consumer crashed")
        seen.append(record)

    with pytest.raises(RuntimeError):
        feed.follow(failing, interval=0, polls=1)
    assert not cursor.exists() and feed.next_block == story.first  # nothing committed
    again, naps = [], []
    restarted = EventFeed(c, cursor_file=cursor, start_block=story.first, batch_blocks=1_000)
    handled = restarted.follow(again.append, interval=3, sleep=naps.append, polls=2)
    assert again[:5] == seen and handled == len(again) == len(c.events(since_block=story.first))
    assert naps == [3]  # caught up after the first poll: slept once between the two
    assert json.loads(cursor.read_text())["next_block"] == restarted.next_block


def test_cursor_file_is_written_atomically(story, tmp_path, monkeypatch):
    cursor = tmp_path / "feed.json"
    c = Client.from_deployment(story.path)
    feed = EventFeed(c, cursor_file=cursor, start_block=story.first, batch_blocks=5)
    feed.poll()
    before = cursor.read_text()
    next_block = feed.next_block

    def crash(*_):  # the process dies between writing the new file and renaming it over the old one
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        feed.poll()
    monkeypatch.undo()
    assert cursor.read_text() == before  # the old cursor, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.json"]  # no temporary file left behind
    resumed = EventFeed(c, cursor_file=cursor)
    assert resumed.next_block == next_block  # the batch whose commit failed is delivered again

    real_fsync = os.fsync

    def crash_after_half(fd):  # the new content is half written when the process dies
        os.ftruncate(fd, 10)
        raise OSError("killed")

    monkeypatch.setattr(os, "fsync", crash_after_half)
    with pytest.raises(OSError, match="killed"):
        resumed.poll()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert cursor.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["feed.json"]


def test_cursor_file_of_another_chain_or_deployment_or_garbage_is_refused(story, tmp_path):
    c = Client.from_deployment(story.path)
    cursor = tmp_path / "feed.json"
    EventFeed(c, cursor_file=cursor, start_block=story.first).poll()
    good = json.loads(cursor.read_text())
    for change, phrase in (({"genesis": "0x" + "11" * 32}, "another genesis"), ({"chain_id": 1}, "another chain id"),
                           ({"contracts": {**good["contracts"], "Vault": "0x" + "22" * 20}}, "another contracts"),
                           ({"format": "x"}, "not an EventFeed cursor"), ({"next_block": -4}, "malformed")):
        cursor.write_text(json.dumps({**good, **change}))
        with pytest.raises(FeedError, match=phrase) as err:
            EventFeed(c, cursor_file=cursor)
        assert "\n" not in str(err.value)
    cursor.write_text('{"format": "vperp-cur')
    with pytest.raises(FeedError, match="unreadable"):
        EventFeed(c, cursor_file=cursor)


def test_a_replaced_delivered_block_stops_the_feed(story, tmp_path):
    """A reorganisation is detected by the hash of the last delivered block (simulated: the file's hash is
    not the chain's); nothing is delivered and the cursor does not move."""
    c = Client.from_deployment(story.path)
    cursor = tmp_path / "feed.json"
    EventFeed(c, cursor_file=cursor, start_block=story.first, batch_blocks=3).poll()
    data = json.loads(cursor.read_text())
    cursor.write_text(json.dumps({**data, "last_block_hash": "0x" + "ab" * 32}))
    feed = EventFeed(c, cursor_file=cursor)
    with pytest.raises(ReorgError, match=f"block {data['next_block'] - 1}, the last this feed delivered"):
        feed.poll()
    assert feed.next_block == data["next_block"] and json.loads(cursor.read_text())["next_block"] == data["next_block"]
