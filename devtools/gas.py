"""Gas table: every user-facing operation in the situation a user meets in production.

Every row is measured with funding active in every market (applied and target rates nonzero, funding
index nonzero, observation ring full; the target is re-sampled once an hour, so the set-up crosses hour
boundaries, and for the rows an hour after the last update every hour of the day-long funding window
saw a block), and says whether the market it touches was already updated in its block, updated in the
previous block, or last updated an hour ago. Positions are new or existing as the row says. Each
situation is asserted before the row is measured (`Situation`); a row whose situation does not hold
stops the run instead of printing a mislabelled figure.

Block time is pinned: every measured transaction is alone in its own block unless the row says it
shares one, at a timestamp set explicitly, one second after the previous block unless the row says
otherwise. (Anvil otherwise puts several blocks in one second, which skips the once-per-block market
update; the embedded chain otherwise follows the wall clock.) Gas is read from receipts.

The start is pinned too: the first block of the run is at START, a fixed timestamp (2037-12-20 00:00 UTC),
not a day after the wall clock. Some figures depend on where in time a row falls, and runs gave different
ones while the start followed the wall clock:
- the hour's place in the 25-slot ring of hourly observations: an hourly funding sample writes the hour's
  skew sum to `hourlySkew[h % 25]` and reads its anchor's from `hourlySkew[(h - 24) % 25]`; the sums are
  int32s, eight a storage word, so in 4 hours of 25 (h % 25 in 7, 15, 23, 24) the anchor's is in another
  word, a cold read (2,100 gas instead of 100). The "1 h since last update" rows swapped 2,000 gas from run
  to run for this. They are measured where the anchor's sum shares the written word, as in 21 hours of 25
  (`Situation.anchor_skew_warm`);
- the values the set-up leaves (its steps to the next quarter-window and hour are as long as the start's
  place in the hour makes them): a position's funding settlement rounds up (`WadMath.divUp`, 32 gas more)
  unless size x index change is an exact multiple of 1e18, and a value's zero bytes in calldata (a deadline,
  a number of shares) cost 4 gas instead of 16. With a fixed start every value is the same on every run.

`./run.sh gas` writes docs/gas.md and docs/gas.json; the 'previous' column is read from the JSON the
last run wrote (from docs/gas.md's figures when there is no JSON yet).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from vperp import chain_io
from vperp.config import default_config
from vperp.deployment import deploy

from vperp.units import FUNDING_WINDOW_HOURS, WAD  # the funding premium's TWAPs start at the hour this many hours back
BIG = 2**255
HOUR = 3600
DAY = 86_400
FUNDING_OBSERVATIONS = 25  # ClearingHouseStorage: hourly observation slots (and skew sums) per market
SKEWS_PER_SLOT = 8  # ClearingHouseStorage.hourlySkew: int32s, eight a storage word
# The start of the measured chain (2037-12-20 00:00 UTC): a whole number of days and of 25-hour rings, so
# every row falls at the same hour of the day and of the ring of hourly observations, and at the same
# values, on every run. It must stay ahead of the wall clock (see Clock); it is below 2^31.
START = 2_144_880_000
START_PERIOD = FUNDING_OBSERVATIONS * DAY  # both a day and FUNDING_OBSERVATIONS hours divide it
RING_FILL_QUARTERS = 9  # the 8-slot observation ring filled once, plus one: every later write is nonzero -> nonzero


@dataclass
class Row:
    name: str
    gas: int
    what: str
    was: str | None = None  # the previous table's name for this row, when it changed


class Clock:
    """Pinned block time. The next block is at `start` (START: a fixed timestamp, or on a chain already
    past it the next multiple of START_PERIOD after its head, at the same hour of the day and of the
    hourly ring), and every block is one second after its parent unless a timestamp is set: Anvil steps by
    1 s (`anvil_setBlockTimestampInterval`); on the embedded chain the start is at least a day ahead of the
    wall clock, where py-evm's `max(parent + 1, now)` is always `parent + 1`."""

    def __init__(self, chain, start: int = START):
        self.chain = chain
        name = chain.provider.name
        self.anvil = "foundry" in name or "anvil" in name
        if self.anvil:
            chain.provider.make_request("anvil_setBlockTimestampInterval", [1])
        t = -(-max(start, self.head() + 1) // START_PERIOD) * START_PERIOD
        if not self.anvil:
            assert t > time.time() + DAY, (f"the start {t} is less than a day ahead of the wall clock: the "
                                           "embedded chain would follow it (move START)")
        self.chain.pending_timestamp = t
        self.start = t

    def head(self) -> int:
        return self.chain.blocks.head.timestamp

    def at(self, t: int) -> None:
        """The next block is at `t` (later than the head)."""
        assert t > self.head(), (t, self.head())
        if t != self.chain.pending_timestamp:
            self.chain.pending_timestamp = t

    def next_quarter(self, quarter: int) -> int:
        """Move to the start of the next quarter-window; returns its timestamp."""
        t = (self.head() // quarter + 1) * quarter
        self.at(t)
        return t

    def deadline(self) -> int:
        return self.head() + 30 * 86_400

    def tx(self, fn, *args, dt: int = 1, **kw):
        """Send `fn(*args)` alone in a block exactly `dt` seconds after the head; returns the receipt."""
        t = self.head() + dt
        assert self.chain.pending_timestamp in (t, self.head() + 1), "the next block is not where the row expects"
        self.at(t)
        receipt = fn(*args, **kw)
        block = self.chain.blocks[receipt.block_number]
        assert block.timestamp == t, (block.timestamp, t)
        assert len(block.transactions) == 1, "a measured transaction shares its block"
        return receipt

    def same_block(self, calls, dt: int = 1):
        """Send every (fn, args, kw) of `calls` into one block `dt` seconds after the head, in order;
        returns the receipts."""
        t = self.head() + dt
        self.at(t)
        provider = self.chain.provider
        if self.anvil:
            provider.make_request("evm_setAutomine", [False])
            hashes = []
            try:
                for fn, args, kw in calls:
                    sender = kw["sender"]
                    tx = {"from": sender.address, "to": fn.contract.address,
                          "data": "0x" + bytes(fn.encode_input(*args)).hex(), "gas": hex(2_000_000)}
                    hashes.append(provider.make_request("eth_sendTransaction", [tx]))
                provider.make_request("evm_mine", [t])
            finally:
                provider.make_request("evm_setAutomine", [True])
        else:
            provider.auto_mine = False
            nonces: dict[str, int] = {}
            try:
                hashes = []
                for fn, args, kw in calls:
                    sender = kw["sender"]
                    nonce = nonces.get(sender.address, sender.nonce)
                    nonces[sender.address] = nonce + 1
                    hashes.append(fn(*args, **kw, nonce=nonce, gas=2_000_000).txn_hash)
                # eth-tester's own mine: the pending block at `t` with these transactions (Ape's chain.mine()
                # would first seal an empty block there and put them one second later).
                provider.tester.ethereum_tester.mine_blocks(1)
            finally:
                provider.auto_mine = True
        receipts = [provider.get_receipt(h) for h in hashes]
        block = self.chain.blocks[receipts[0].block_number]
        assert block.timestamp == t and len(block.transactions) == len(calls), (block.timestamp, t)
        assert all(r.block_number == receipts[0].block_number for r in receipts)
        assert all(not r.failed for r in receipts)
        return receipts


@dataclass
class Situation:
    """Asserts, before a row is measured, that the chain is in the situation its label names."""

    s: object
    clock: Clock
    checked: list = field(default_factory=list)
    start_block: int = -1  # FundingSampled logs are searched from here (default: the head when created)

    def __post_init__(self):
        if self.start_block < 0:
            self.start_block = self.clock.chain.blocks.head.number

    def funding_active_everywhere(self) -> None:
        ch = self.s.clearing_house
        for m in self.s.markets.values():
            st = ch.marketState(m.id)
            assert st.fundingRate != 0 and st.targetRate != 0, f"{m.symbol}: funding not active"
            assert st.cumulativeFunding != 0, f"{m.symbol}: funding index still 0"
        self.checked.append("funding")

    def last_update(self, market_id: int, *, ago: int | None = None, at_most: int | None = None,
                    at_least: int | None = None) -> None:
        """The market's last per-block update was `ago` seconds before the next block (0: in it)."""
        t = self.clock.chain.pending_timestamp
        last = self.s.clearing_house.marketState(market_id).lastUpdate
        if ago is not None:
            assert t - last == ago, (market_id, t - last, ago)
        if at_least is not None:
            assert t - last >= at_least, (market_id, t - last, at_least)
        if at_most is not None:
            assert t - last <= at_most, (market_id, t - last, at_most)

    def same_quarter(self, market_id: int, crosses: bool = False, new_hour: bool | None = None) -> None:
        """Whether the next block crosses into a new quarter-window (ring observation) and into a new hour
        (hourly observation and funding sample; by default the same answer as the quarter's)."""
        ch = self.s.clearing_house
        quarter = ch.marketParams(market_id).twapWindow // 4
        t = self.clock.chain.pending_timestamp
        last = ch.marketState(market_id).lastUpdate
        assert (t // quarter != last // quarter) == crosses, (market_id, t, last, crosses)
        new_hour = crosses if new_hour is None else new_hour
        assert (t // HOUR != last // HOUR) == new_hour, (market_id, t, last, "new hour", new_hour)

    def anchor_skew_warm(self) -> None:
        """The next block's hourly funding sample reads its anchor's skew sum (`hourlySkew[(h - 24) % 25]`, the
        hour FUNDING_WINDOW_HOURS back) from the storage word it has just written the hour's to
        (`hourlySkew[h % 25]`), as in 21 hours of 25. In the other four the anchor's sum is in the next word:
        a cold read, 2,000 gas more, at an hour of the ring the row's label does not name."""
        h = self.clock.chain.pending_timestamp // HOUR
        written, anchor = h % FUNDING_OBSERVATIONS, (h - FUNDING_WINDOW_HOURS) % FUNDING_OBSERVATIONS
        assert written // SKEWS_PER_SLOT == anchor // SKEWS_PER_SLOT, (
            f"hour {h}: the anchor's skew sum (slot {anchor}) is not in the word of the hour's (slot {written}): "
            "a cold read")

    def funding_window_full(self, market_id: int) -> None:
        """The next block's funding sample finds its day-long anchor at the first probe, as on a market that
        trades every hour: the market was updated in the hour FUNDING_WINDOW_HOURS before the next block's
        (the FundingSampled of that hour's first update, which wrote the hour's observation). On a younger
        or idle market the sample probes later hours first, one storage read each."""
        want = self.clock.chain.pending_timestamp // HOUR - FUNDING_WINDOW_HOURS
        first, end = self._first_block_at(want * HOUR), self._first_block_at((want + 1) * HOUR)
        logs = [] if first >= end else list(
            self.s.clearing_house.FundingSampled.range(first, end, search_topics={"marketId": market_id}))
        assert logs, (f"market {market_id}: not updated in hour {want}, {FUNDING_WINDOW_HOURS} h before the next "
                      f"block's: the funding sample would probe past it")

    def _first_block_at(self, t: int) -> int:
        """The first block since `start_block` with a timestamp at or after `t` (head + 1 if none)."""
        blocks = self.clock.chain.blocks
        lo, hi = self.start_block, blocks.head.number + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if blocks[mid].timestamp >= t:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def position(self, owner, market_id: int, sub: int = 0, *, exists: bool, sign: int = 0) -> None:
        size = self.s.clearing_house.position(owner, sub, market_id)[0]
        if exists:
            assert size != 0, f"{owner} holds no position in market {market_id}"
            if sign:
                assert (size > 0) == (sign > 0), (size, sign)
        else:
            assert size == 0, f"{owner} already holds {size} in market {market_id}"


def _touch(s, clock: Clock, keeper, ids) -> None:
    """A keeper's pokeFunding of each market, one block each: the markets were updated in earlier blocks."""
    for mid in ids:
        s.clearing_house.pokeFunding(mid, sender=keeper)


def _touch_batched(s, keeper, ids) -> None:
    """pokeFunding of each market in one transaction (a test BatchCaller): the hourly set-up of a day-long
    funding window in 25 transactions instead of one per market and hour. Set-up only: every measured row
    runs later, in its own block."""
    from ape import project

    batcher = getattr(s, "_gas_batcher", None)
    if batcher is None:
        batcher = project.BatchCaller.deploy(sender=keeper)
        s._gas_batcher = batcher
    ch = s.clearing_house
    batcher.batch([ch.address] * len(ids), [ch.pokeFunding.encode_input(mid) for mid in ids], sender=keeper)


PUSH = 20 * WAD  # a short that takes ETH's vAMM under the index for the reduce measured there


def _open(s, clock: Clock, who, sub: int, mid: int, size: int):
    """Open or change a position (setup). The funding index is nonzero at the open, so the position's
    funding snapshot is a nonzero -> nonzero write afterwards, as in production."""
    ch = s.clearing_house
    assert ch.marketState(mid).cumulativeFunding != 0, f"market {mid}: opening while the funding index is 0"
    limit = BIG if size > 0 else 0
    return ch.openPosition(sub, mid, size, limit, clock.deadline(), sender=who)


def refresh_feeds(s, clock: Clock) -> None:
    """Every feed older than half its heartbeat at the next block answers again at its price, as a live feed
    does at least once a heartbeat (a set-up of a day of hourly updates would otherwise outlive the mock
    feeds' answers from the deployment)."""
    now = clock.chain.pending_timestamp
    for m in s.markets.values():
        if now - m.oracle.latestTimestamp() > s.clearing_house.marketParams(m.id).heartbeat // 2:
            m.oracle.updateAnswer(m.oracle.latestRoundData()[1], sender=s.deployer)


def activate_funding(s, clock: Clock, maker, keeper, isolated: bool = False, hours: int = 1) -> None:
    """Make funding active in every market of `s`, as on a live deployment: the maker buys a little of
    every market (its vAMM ends 0.2 % above the index, so the premium is positive), then every market is
    poked at the start of RING_FILL_QUARTERS quarter-windows (the ring is full), at the start of each of
    the next `hours` hours (the target is sampled once an hour, by a market's first update in a new hour:
    nonzero; `hours=FUNDING_WINDOW_HOURS` also leaves an hourly observation in each of the 24 hours a
    later sample reads, as on a market that trades every hour), and at the start of the next
    quarter-window: the applied rate has moved toward the target and the funding index has accrued."""
    ch = s.clearing_house
    if not isolated:
        s.fund(maker, 1_000_000)
    for m in s.markets.values():
        sub = m.id if isolated else 0
        if isolated:
            s.fund(maker, 50_000, subaccount=sub)
        size = int(m.config.base_reserve * WAD) // 1000
        ch.openPosition(sub, m.id, size, BIG, clock.deadline(), sender=maker)
    quarter = min(ch.marketParams(m.id).twapWindow for m in s.markets.values()) // 4
    for _ in range(RING_FILL_QUARTERS):
        clock.next_quarter(quarter)
        _touch(s, clock, keeper, [m.id for m in s.markets.values()])
    for _ in range(hours):
        clock.next_quarter(HOUR)
        refresh_feeds(s, clock)
        _touch_batched(s, keeper, [m.id for m in s.markets.values()])
    clock.next_quarter(quarter)
    _touch(s, clock, keeper, [m.id for m in s.markets.values()])
    Situation(s, clock).funding_active_everywhere()


def _quarter(s, mid: int = 1) -> int:
    return s.clearing_house.marketParams(mid).twapWindow // 4


def _fresh_quarter(s, clock: Clock, keeper) -> None:
    """Start a new quarter-window and update every market in it, so the rows that follow (one second
    apart) stay in the same quarter as the markets' last updates: no row pays for a ring observation
    unless its label says so."""
    clock.next_quarter(_quarter(s))
    _touch(s, clock, keeper, [m.id for m in s.markets.values()])


FIRST_TOUCH = "market updated in the previous block (1 s earlier, same quarter-window)"
IN_BLOCK = "market already updated earlier in the same block"
HOUR_LATER = ("first update of the market in 1 h: pays the ring observation, the hourly observation and the "
              "funding sample (day-long TWAPs, anchor found at the first probe, its skew sum in the word just written)")


def measured_config():
    """The shipped markets (`default_config()`) with delayed orders off: the ClearingHouse's trade rows measure the
    trade `OrderRouter.executeOrder` makes on the shipped curve and funding, called directly; the order rows turn
    delayed orders on in ETH and measure the commit and the execution."""
    base = default_config()
    return base.with_markets(*(replace(m, delayed_orders=False) for m in base.markets))


def measure(accounts, chain, nav: bool = True) -> list[Row]:
    """Return the table's rows. Every row's situation is asserted before it is measured. `nav=False` leaves out
    the pool-NAV rows (three more deployments of 1, 5 and 20 markets, views only: nothing to assert about a
    situation; tests/test_gas_table.py runs without them)."""
    chain_io.skip_console_log_traces()  # gas used is read from the receipts; the console-log traces are not
    rows: list[Row] = []
    deployer, alice, bob, carol = accounts[0], accounts[1], accounts[2], accounts[3]
    maker, keeper, dave = accounts[7], accounts[8], accounts[9]
    clock = Clock(chain)

    # Ten markets so the cross-margin check can be measured at 1, 2, 5 and 10 markets held.
    base = measured_config()
    extra = [replace(base.markets[0], symbol=f"M{i}") for i in range(3, 11)]
    s = deploy(deployer, base.with_markets(*base.markets, *extra))
    ch, vault, usdc = s.clearing_house, s.vault, s.collateral
    sit = Situation(s, clock)
    # Every hour of the funding window touched: the "1 h since last update" rows' samples read one anchor.
    activate_funding(s, clock, maker, keeper, hours=FUNDING_WINDOW_HOURS)

    def row(name, tx, what, was=None):
        rows.append(Row(name, tx.gas_used, what, was))

    units = s.units(1_000_000)
    for who in (alice, bob, carol, dave):
        usdc.mint(who, units * 3, sender=who)
        usdc.approve(vault, units * 3, sender=who)

    _fresh_quarter(s, clock, keeper)
    sit.funding_active_everywhere()
    row("deposit (first, new account)", clock.tx(vault.deposit, 0, units, sender=alice),
        "Vault.deposit into an empty sub-account")
    row("deposit (existing balance)", clock.tx(vault.deposit, 0, units, sender=alice),
        "Vault.deposit into a funded sub-account")
    row("withdraw (no positions)", clock.tx(vault.withdraw, 0, s.units(1000), sender=alice),
        "Vault.withdraw, account holds no position")
    row("transferMargin (to new sub-account)", clock.tx(vault.transferMargin, 0, 1, 1000 * WAD, sender=alice),
        "cross -> isolated, no positions")
    for who in (bob, carol, dave):
        vault.deposit(0, units, sender=who)

    # ---- trading in ETH (market 1), funding active in all ten markets
    def trade(name, who, size, what, *, exists, was=None, close=False, ago=1, crosses=False):
        clock.at(ch.marketState(1).lastUpdate + ago)
        sit.funding_active_everywhere()
        sit.position(who, 1, exists=exists)
        sit.last_update(1, ago=ago)
        sit.same_quarter(1, crosses=crosses)
        if crosses:
            sit.funding_window_full(1)
            sit.anchor_skew_warm()
        if close:
            tx = clock.tx(ch.closePosition, 0, 1, 0, clock.deadline(), sender=who, dt=clock.chain.pending_timestamp - clock.head())
        else:
            limit = BIG if size > 0 else 0
            tx = clock.tx(ch.openPosition, 0, 1, size, limit, clock.deadline(), sender=who, dt=clock.chain.pending_timestamp - clock.head())
        row(name, tx, what, was)

    _fresh_quarter(s, clock, keeper)
    _touch(s, clock, keeper, [1])
    trade("openPosition (new position)", alice, WAD, f"first position of the account; {FIRST_TOUCH}",
          exists=False, was="openPosition (new position, warm market)")
    _touch(s, clock, keeper, [1])
    trade("openPosition (increase)", alice, WAD, f"same direction, position opened at a nonzero funding index; {FIRST_TOUCH}",
          exists=True)
    # The same increase as the second transaction of a block whose first one updated ETH.
    sit.funding_active_everywhere()
    sit.position(alice, 1, exists=True)
    sit.last_update(1, at_least=1)
    _, tx = clock.same_block([(ch.pokeFunding, (1,), {"sender": keeper}),
                              (ch.openPosition, (0, 1, WAD, BIG, clock.deadline()), {"sender": alice})])
    assert ch.marketState(1).lastUpdate == chain.blocks[tx.block_number].timestamp
    row("openPosition (increase, market updated in the block)", tx, f"same, {IN_BLOCK}")
    trade("openPosition (increase, 1 h since last update)", alice, WAD, f"same, {HOUR_LATER}",
          exists=True, ago=HOUR, crosses=True, was="openPosition (increase, funding active)")
    _fresh_quarter(s, clock, keeper)
    _touch(s, clock, keeper, [1])
    trade("openPosition (reduce)", alice, -WAD, f"a third of the position; {FIRST_TOUCH}", exists=True)
    # The same reduce into a vAMM another account pushed under the index: filled worse than the index, so the
    # maintenance check runs (ClearingHouseMargin._checkReduce: one margin summary over the markets held). The push is
    # unwound after it, so the rows below meet the vAMM they met before.
    _touch(s, clock, keeper, [1])
    pushed = 0
    while ch.quote(1, -WAD // 2)[0] * WAD - WAD // 2 * ch.indexPrice(1) >= 0:  # until the reduce fills under it
        _open(s, clock, bob, 0, 1, -PUSH)
        pushed += PUSH
        assert pushed <= 50 * PUSH, "the vAMM did not come under the index"
    _touch(s, clock, keeper, [1])
    assert ch.quote(1, -WAD // 2)[0] * WAD - WAD // 2 * ch.indexPrice(1) < 0, "the reduce fills under the index"
    trade("openPosition (reduce, filled under the index)", alice, -WAD // 2,
          f"half an ETH of the position into a vAMM pushed under the index: the maintenance check runs; {FIRST_TOUCH}",
          exists=True)
    _open(s, clock, bob, 0, 1, pushed)
    _touch(s, clock, keeper, [1])
    trade("closePosition", alice, 0, f"whole position; {FIRST_TOUCH}", exists=True, close=True)
    _open(s, clock, alice, 0, 1, WAD)
    _touch(s, clock, keeper, [1])
    trade("openPosition (flip long -> short)", alice, -3 * WAD, f"through zero in one call; {FIRST_TOUCH}",
          exists=True)
    _touch(s, clock, keeper, [1])
    sit.position(alice, 1, exists=True)
    sit.last_update(1, ago=1)
    row("withdraw (1 open position)", clock.tx(vault.withdraw, 0, s.units(1000), sender=alice),
        f"free-collateral check over one market; {FIRST_TOUCH}")

    # Cross-margin check over N markets held, funding active in all of them.
    _fresh_quarter(s, clock, keeper)
    held = 0
    for n in (1, 2, 5, 10):
        while held < n:
            held += 1
            _open(s, clock, carol, 0, held, WAD // 10 if held == 2 else WAD)
        _touch(s, clock, keeper, [1])
        sit.funding_active_everywhere()
        for mid in range(1, n + 1):
            sit.position(carol, mid, exists=True)
        for mid in range(2, n + 1):
            sit.last_update(mid, at_least=1)  # the other markets are not updated in this block
        trade(f"openPosition (increase) holding {n} market(s)", carol, WAD // 10,
              f"cross-margin check over every market held, funding active in each; {FIRST_TOUCH}, the others in earlier blocks",
              exists=True)
    # The same with every held market already updated in the block (each by an earlier transaction).
    sit.funding_active_everywhere()
    sit.position(carol, 10, exists=True)
    # One poker per market: the embedded chain takes one transaction per sender in a pending block.
    pokers = [accounts.generate_test_account() for _ in range(10)]
    for p in pokers:
        deployer.transfer(p, 10**18)
    calls = [(ch.pokeFunding, (mid,), {"sender": p}) for mid, p in zip(range(1, 11), pokers)]
    calls.append((ch.openPosition, (0, 1, WAD // 10, BIG, clock.deadline()), {"sender": carol}))
    tx = clock.same_block(calls)[-1]
    row("openPosition (increase) holding 10 market(s), all updated in the block", tx,
        "the same, every held market already updated earlier in the block")

    # Funding rows an hour after every market's last update: ETH's exactly an hour (a whole idle hour would run the
    # idle path, `_evolveIdle`: its own row, at the end).
    clock.at(ch.marketState(1).lastUpdate + HOUR)
    sit.funding_active_everywhere()
    sit.last_update(1, ago=HOUR)
    sit.same_quarter(1, crosses=True)
    sit.funding_window_full(1)
    sit.anchor_skew_warm()
    row("pokeFunding (1 h since last update)",
        clock.tx(ch.pokeFunding, 1, sender=keeper, dt=clock.chain.pending_timestamp - clock.head()),
        f"permissionless accrual; {HOUR_LATER}")
    _open(s, clock, bob, 0, 1, WAD)
    trade("closePosition (1 h since last update)", bob, 0, f"whole position, settles its funding; {HOUR_LATER}",
          exists=True, close=True, ago=HOUR, crosses=True, was="closePosition (funding active)")

    rows += _measure_pool(s, clock, sit, accounts, "10 markets", was_suffix=True)
    rows += _measure_liquidation(s, clock, sit, accounts)
    rows += _measure_repeg(s, clock, sit, accounts)

    # The pool with two markets, funding active in both.
    s2 = deploy(deployer, base)
    clock2 = clock
    activate_funding(s2, clock2, maker, keeper)
    rows += _measure_pool(s2, clock2, Situation(s2, clock2), accounts, "2 markets", was_suffix=False, lp_rows_only=True)
    if nav:
        rows += _measure_nav(accounts, clock)
    # Last, so no earlier row's block times move.
    rows += _measure_orders(s, clock, Situation(s, clock), accounts)
    rows += _measure_idle(s, clock, Situation(s, clock), accounts)
    return rows


def _measure_idle(s, clock, sit, accounts) -> list[Row]:
    """A poke after a whole hour without an update (the keeper missed an hourly poke): the accrual applies the old
    target to the end of its hour and this block's sample after it (ClearingHouseAccrual._evolveIdle: a second
    evolution of the rate)."""
    ch, keeper = s.clearing_house, accounts[8]
    last = ch.marketState(1).lastUpdate
    t = (last // HOUR + 2) * HOUR + 60  # a minute into the second hour after the last update's
    clock.at(t - 30)
    refresh_feeds(s, clock)
    clock.at(t)
    sit.funding_active_everywhere()
    sit.last_update(1, at_least=HOUR + 1)
    assert t // HOUR - last // HOUR == 2, "not a whole idle hour"
    sit.same_quarter(1, crosses=True)
    try:
        sit.funding_window_full(1)
        anchor = "anchor found at the first probe"
    except AssertionError:
        anchor = "anchor probed past: the market was not updated in the hour a day back"
    tx = clock.tx(ch.pokeFunding, 1, sender=keeper, dt=clock.chain.pending_timestamp - clock.head())
    return [Row("pokeFunding (a whole idle hour since last update)", tx.gas_used,
                "permissionless accrual two hour boundaries after the last update: the ring and hourly observations, "
                f"the funding sample ({anchor}) and the rate's motion in two parts (_evolveIdle)")]


def _measure_orders(s, clock, sit, accounts) -> list[Row]:
    """Delayed orders (docs/orders.md) in ETH with delayed orders on: a commit, then the feed's next round and the
    keeper's execution of an increase of an existing position."""
    ch, router, keeper, alice = s.clearing_house, s.router, accounts[8], accounts[1]
    deployer = accounts[0]
    refresh_feeds(s, clock)
    eth = s.markets["ETH"]
    # The feed at the peg (the repeg row left them apart): an order executes only at a peg within the tolerance.
    eth.oracle.updateAnswer(s.amm.pegPrice(1) // 10**(18 - eth.config.oracle_decimals), sender=deployer)
    ch.setPegTolerance(1, 300, sender=deployer)  # above the repeg threshold (the earlier 2 % one too)
    ch.setDelayedOrders(1, True, sender=deployer)
    s.vault.setOperator(router, True, sender=alice)
    fee = router.minKeeperFee()
    rows = []
    _touch(s, clock, keeper, [1])
    sit.funding_active_everywhere()
    sit.position(alice, 1, exists=True)
    held = ch.position(alice, 0, 1)[0]
    size = WAD if held > 0 else -WAD  # an increase, whichever side the earlier rows left
    tx = clock.tx(router.commitOrder, 0, 1, size, BIG if size > 0 else 0, clock.deadline(), sender=alice,
                  value=fee)
    rows.append(Row("commitOrder", tx.gas_used, "a delayed order to increase an existing ETH position; keeper fee in ETH"))
    eth.oracle.updateAnswer(eth.oracle.latestRoundData()[1], sender=deployer)  # the next round
    _touch(s, clock, keeper, [1])
    sit.funding_active_everywhere()
    sit.last_update(1, ago=1)
    tx = clock.tx(router.executeOrder, int(router.nextOrderId()) - 1, sender=keeper)
    rows.append(Row("executeOrder (increase, after the next oracle round)", tx.gas_used,
                    f"the keeper executes it: the trade, the order's deletion, the fee paid; {FIRST_TOUCH}"))
    return rows


def _measure_pool(s, clock, sit, accounts, label, was_suffix, lp_rows_only=False) -> list[Row]:
    """LP deposit / requestWithdraw / redeem (and depth sync) with funding active in every market."""
    rows = []
    pool, usdc, amm, ch = s.pool, s.collateral, s.amm, s.clearing_house
    lp, keeper = accounts[6], accounts[8]
    units = s.units(100_000)
    usdc.mint(lp, 2 * units, sender=lp)
    usdc.approve(pool, 2 * units, sender=lp)
    n = len(s.markets)
    where = f"NAV over {n} markets, each with open positions and funding active, none updated in the block"

    def check():
        sit.funding_active_everywhere()
        for m in s.markets.values():
            sit.last_update(m.id, at_least=1)
            assert ch.marketState(m.id).longOpenInterest > 0

    _fresh_quarter(s, clock, keeper)
    check()
    tx = clock.tx(pool.deposit, units, lp, sender=lp)
    if not lp_rows_only:
        rows.append(Row(f"pool deposit (first, new LP), {label}", tx.gas_used, f"ERC-4626 deposit; {where}",
                        "pool deposit (first, new LP)" if was_suffix else None))
    check()
    tx = clock.tx(pool.deposit, units, lp, sender=lp)
    rows.append(Row(f"pool deposit (existing LP), {label}", tx.gas_used, f"LP already holds shares; {where}",
                    "pool deposit (existing LP)" if was_suffix else None))
    shares = pool.balanceOf(lp) // 2
    tx = clock.tx(pool.requestWithdraw, shares, sender=lp)
    if not lp_rows_only:
        rows.append(Row("pool requestWithdraw", tx.gas_used, "step 1 of a withdrawal"))
    clock.at(clock.head() + pool.poolParams().withdrawCooldown)
    for m in s.markets.values():  # feeds refreshed at their price after the cooldown
        m.oracle.updateAnswer(m.oracle.latestRoundData()[1], sender=accounts[0])
    _fresh_quarter(s, clock, keeper)
    check()
    tx = clock.tx(pool.redeem, shares, lp, lp, sender=lp)
    rows.append(Row(f"pool redeem, {label}", tx.gas_used, f"step 2 after the cooldown: request, reserve and cash checks; {where}",
                    "pool redeem" if was_suffix else None))
    if not lp_rows_only:
        _touch(s, clock, keeper, [1])
        sit.last_update(1, ago=1)
        tx = clock.tx(amm.syncDepth, 1, sender=keeper)
        rows.append(Row("syncDepth", tx.gas_used, f"rescale one market's reserves to the pool (price kept); {FIRST_TOUCH}"))
    return rows


def _measure_liquidation(s, clock, sit, accounts) -> list[Row]:
    """kick, take (partial, full), redo and backstop on the ETH market after a 10 % index drop."""
    rows = []
    engine = s.liquidation
    deployer, bob, carol, keeper = accounts[0], accounts[2], accounts[3], accounts[8]
    victims = accounts[4:6]
    steady = accounts[6]  # kicked last: auctions already counted, and the account above water at the worst fill
    _fresh_quarter(s, clock, keeper)
    for v in victims:
        s.fund(v, 1_000)
        _open(s, clock, v, 0, 1, 3 * WAD)
    s.fund(steady, 1_300)
    _open(s, clock, steady, 0, 1, 3 * WAD)
    _open(s, clock, bob, 0, 1, WAD)  # the taker's own position, into which it takes
    for m in s.markets.values():  # ETH down 10 %; the other feeds refreshed at their price
        answer = m.oracle.latestRoundData()[1]
        m.oracle.updateAnswer(answer * 9 // 10 if m.id == 1 else answer, sender=deployer)
    _touch(s, clock, keeper, [1])
    sit.funding_active_everywhere()
    sit.position(victims[0], 1, exists=True)
    sit.last_update(1, ago=1)
    tx = clock.tx(engine.kick, victims[0], 0, 1, carol, sender=carol)
    assert s.vault.shortfallOf(victims[0], 0) > 0, "the first kick's account is under water at the worst fill"
    rows.append(Row("kick", tx.gas_used, "slice of a cross account's ETH long into the deployment's first auction; the "
                    "account under water at the worst fill: the insurance fund pays the keeper's bounty and a "
                    f"shortfall is recorded (first writes of the counter and the estimates); {FIRST_TOUCH}"))
    first = engine.auctionCount()
    size = engine.auction(first).size
    clock.at(clock.head() + 299)
    _touch(s, clock, keeper, [1])
    sit.funding_active_everywhere()
    sit.position(bob, 1, exists=True, sign=1)
    sit.last_update(1, ago=1)
    tx = clock.tx(engine.take, first, size // 2, BIG, 0, sender=bob)
    rows.append(Row("take (partial, into an existing position)", tx.gas_used,
                    f"half of the slice, 300 s into the auction, into the taker's existing long; {FIRST_TOUCH}",
                    "take (partial)"))
    _touch(s, clock, keeper, [1])
    sit.position(bob, 1, exists=True, sign=1)
    sit.last_update(1, ago=1)
    tx = clock.tx(engine.take, first, size, BIG, 0, sender=bob)
    rows.append(Row("take (full remainder, into an existing position)", tx.gas_used,
                    f"finishes the auction, into the taker's existing long; {FIRST_TOUCH}", "take (full remainder)"))
    _touch(s, clock, keeper, [1])
    engine.kick(victims[1], 0, 1, carol, sender=carol)
    second = engine.auctionCount()
    duration = engine.auctionParams(1).duration
    clock.at(clock.head() + duration + 1)
    _touch(s, clock, keeper, [1])
    sit.funding_active_everywhere()
    sit.last_update(1, ago=1)
    tx = clock.tx(engine.redo, second, carol, sender=carol)
    rows.append(Row("redo", tx.gas_used, f"restart an expired auction from the live index; tip paid; {FIRST_TOUCH}"))
    for _ in range(engine.liquidationParams().maxRedos - 1):
        clock.at(clock.head() + duration + 1)
        engine.redo(second, carol, sender=carol)
    clock.at(clock.head() + duration + 1)
    _touch(s, clock, keeper, [1])
    sit.funding_active_everywhere()
    sit.last_update(1, ago=1)
    tx = clock.tx(engine.backstop, second, sender=carol)
    rows.append(Row("backstop", tx.gas_used, f"close the remainder against the vAMM; {FIRST_TOUCH}"))
    _touch(s, clock, keeper, [1])
    sit.funding_active_everywhere()
    sit.position(steady, 1, exists=True)
    sit.last_update(1, ago=1)
    assert engine.auctionCount() > 0 and s.vault.isLiquidatable(steady, 0)
    tx = clock.tx(engine.kick, steady, 0, 1, carol, sender=carol)
    assert s.vault.shortfallOf(steady, 0) == 0, "the steady-state kick's account stays above water"
    rows.append(Row("kick (another auction, account above water)", tx.gas_used,
                    "slice of a cross account's ETH long into a new auction, auctions counted before; the account "
                    f"covers its worst fill: the keeper's reward and the penalty come out of its margin; {FIRST_TOUCH}"))
    return rows


def _measure_repeg(s, clock, sit, accounts) -> list[Row]:
    """Push the index away from the vAMM long enough for the TWAPs to diverge, then repeg."""
    ch, amm, keeper = s.clearing_house, s.amm, accounts[8]
    eth = s.markets["ETH"]
    eth.oracle.updateAnswer(eth.oracle.latestRoundData()[1] * 90 // 100, sender=accounts[0])
    clock.at(clock.head() + 10)
    ch.pokeFunding(1, sender=keeper)  # the TWAPs see the new index from here
    clock.at(clock.head() + HOUR)
    _fresh_quarter(s, clock, keeper)
    sit.funding_active_everywhere()
    sit.last_update(1, ago=len(s.markets))
    tx = clock.tx(amm.repeg, 1, sender=keeper)
    return [Row("repeg", tx.gas_used, "move one market's vAMM price toward the index (bounded); "
                "market updated earlier in the same quarter-window")]


def _measure_nav(accounts, clock) -> list[Row]:
    """The pool's NAV (a view, estimated as a call: includes the 21,000 base) with 1, 5, 20 markets."""
    rows = []
    deployer, trader, keeper = accounts[0], accounts[7], accounts[8]
    base = measured_config()
    for n in (1, 5, 20):
        markets = [replace(base.markets[0], symbol=f"N{i}") for i in range(n)]
        s = deploy(deployer, base.with_markets(*markets))
        # One isolated sub-account per market: an account may hold at most 16 markets, the pool has no limit.
        activate_funding(s, clock, trader, keeper, isolated=True)
        gas = s.pool.navWad.estimate_gas_cost(sender=trader)
        rows.append(Row(f"pool NAV with {n} market(s)", gas,
                        "navWad() as an eth_call estimate (incl. 21,000 base); one position per market, funding active in each"))
    return rows


# ---------------------------------------------------------------- previous figures and rendering

def read_previous(json_path: Path, md_path: Path | None = None) -> dict[str, int]:
    """The last run's figures by row name: docs/gas.json, or docs/gas.md's 'gas' column if no JSON."""
    if json_path.exists():
        return {r["name"]: r["gas"] for r in json.loads(json_path.read_text())["rows"]}
    prev: dict[str, int] = {}
    if md_path is not None and md_path.exists():
        for line in md_path.read_text().splitlines():
            if line.startswith("## Targets"):  # the targets table below the rows is not a measurement
                break
            m = re.match(r"\| (.+?) \| ([\d,]+) \|", line)
            if m:
                prev[m.group(1)] = int(m.group(2).replace(",", ""))
    return prev


def to_json(rows: list[Row], network: str) -> str:
    return json.dumps({"network": network, "rows": [
        {"name": r.name, "gas": r.gas, "what": r.what} for r in rows]}, indent=1) + "\n"


def _utc(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# Issue 16's targets (funding active everywhere) against the rows that measure them, and each floor: (operation, row or
# (row, row) for a difference, target, floor). Floors are counted from Anvil traces: `./run.sh ape run gas_trace
# --network ethereum:local:foundry --row NAME --ops` (devtools/gas_trace.py) prints the figures quoted here.
TARGETS = [
    ("open, new position", "openPosition (new position)", 145_000,
     "floor 129.6k: intrinsic 21.8k, 18 cold reads 37.8k (ten market slots, the feed's three, the position's two, "
     "the Vault's three), writes 60.8k (the position's two fresh slots 40k, seven rewrites 20.3k, five repeats "
     "0.5k), the event 3.9k, the feed and the Vault as cold contracts 5.2k. Above it: computation 26.7k, warm reads "
     "3.2k. Not met: 145k needs computation cut by more than half (the block's accrual and its funding math, the swap, "
     "the band, the margin check, the event's encoding) or one fresh slot fewer (size, notional and funding index in "
     "one word: narrower fields, a precision decision)"),
    ("increase", "openPosition (increase)", 127_000, "met (floor 95.4k, computation 27.3k)"),
    ("close (first trade in the block)", "closePosition", 115_000, "met (floor 88.3k, computation 22.2k)"),
    ("kick (another auction, account above water)", "kick (another auction, account above water)", 165_000,
     "floor 143.4k: intrinsic 22.1k, 25 cold reads 52.5k, writes 54.8k (the auction's two fresh slots 40k), logs "
     "5.8k, cold contracts 8.2k; computation 29.3k, warm reads 2.0k. Not met: 165k needs computation under 21.6k, or "
     "an auction in fewer fresh slots. Its two slots are fresh because auction ids run from 1 in sequence and "
     "`auction(id)` reads every auction, finished ones too (the external surface integrators use): reusing a "
     "finished auction's slots (-34k) would break one or the other. Done this phase: the costs, the bounty and the "
     "estimate in one Vault call that also checks the pause level, an unchanged estimate not rewritten (-7.7k), the "
     "engine's parameters in two slots instead of three (-2.1k)"),
    ("kick (first auction, account under water)", "kick", 165_000,
     "floor 203.3k, above the target: intrinsic 22.1k, 26 cold reads 54.6k, writes 109.1k (five fresh slots: the "
     "auction's two, the counter, the account's shortfall, the pending total), logs 9.2k, cold contracts 8.3k; "
     "computation 31.1k. Done: as the kick above (-7.7k)"),
    ("take (partial)", "take (partial, into an existing position)", 150_000,
     "floor 150.2k, above the target: intrinsic 21.7k, 29 cold reads 60.9k, writes 44.5k less 2.8k refunded, the "
     "two fills' four position events and the take's 17.2k, cold contracts 8.8k; computation 59.6k (27.0k of it in "
     "the settlement), warm reads 7.0k. By call: the index 13.5k (the feed's first read), the settlement 124.2k "
     "(two Vault settlements 15.0k and 8.2k), the owner's bad-debt step 30.9k (the estimate read, refreshed and "
     "recorded). Done: the minimum position size from the settlement instead of a marketParams call (-4.0k); this "
     "phase, the pause level from the settlement and the bad-debt step in one Vault call (-2.2k)"),
    ("take (full remainder)", "take (full remainder, into an existing position)", 150_000,
     "floor 130.8k: intrinsic 21.7k, 28 cold reads 58.8k, writes 44.7k less 22.0k refunded (the finished auction's "
     "and the owner's estimate cleared), logs 19.4k, cold contracts 8.2k; computation 45.4k, warm reads 5.8k. Not "
     "met: 150k needs computation under 19.2k. Done this phase: the pause level from the settlement, and the "
     "owner's markets, collateral and loss waterfall in one Vault call instead of three (-4.6k)"),
    ("pokeFunding", "pokeFunding (1 h since last update)", 65_000,
     "floor 72.5k, above the target: intrinsic 21.2k, 13 cold reads 27.3k (ten market slots with the anchor's "
     "hourly observation and skew word, the feed's three), writes 18.7k (the ring and hourly observations, cold, "
     "10k; three rewrites 8.7k), the event 2.7k, the feed 2.6k; computation 12.8k"),
    ("each extra market in a margin check", ("openPosition (increase) holding 2 market(s)",
                                              "openPosition (increase) holding 1 market(s)"), 20_000,
     "floor 25.7k, above the target: 11 cold reads 23.1k (the position's two slots; the market's oracle, ratios, "
     "accumulator, funding state, funding parameters and last-index slots; the feed's three), the feed as a cold "
     "contract 2.6k; computation 8.3k (the feed's answer, the funding accrued since the market's update)"),
    ("pool deposit, 2 markets", "pool deposit (existing LP), 2 markets", 150_000,
     "met (floor 119.3k: intrinsic 21.6k, 33 cold reads 69.3k, writes 17.4k less 9.6k refunded (the set-up's LP "
     "spends its whole token balance and allowance; one that keeps some pays them), logs 7.2k, cold contracts "
     "13.4k; computation 28.4k)"),
    ("pool redeem, 2 markets", "pool redeem, 2 markets", 150_000,
     "floor 147.2k: intrinsic 22.0k, 34 cold reads 71.4k (the valuation's 19, the feeds' six), writes 34.5k (the "
     "receiver's token balance created, 20k: the set-up's LP holds no tokens), logs 5.9k, cold contracts 13.3k; "
     "computation 31.6k (the valuation 16.6k of it). Met only with computation under 2.8k, which the valuation "
     "alone exceeds: not met. For a receiver holding tokens the floor is 130.1k and the redemption about 163.8k: "
     "150k needs computation under 20k. Done: the transient cache of the valuation dropped (-1.8k)"),
]


# What each target left unmet (its floor below it) would take: the paths the traces leave, with the rule each changes.
# `{key}` is the measured figure of UNMET_ROWS[key].
UNMET_ROWS = {"open": "openPosition (new position)", "kick": "kick (another auction, account above water)",
              "take": "take (full remainder, into an existing position)", "redeem": "pool redeem, 2 markets"}
UNMET = [
    "", "### The targets left unmet, and the rule each would change", "",
    "Four targets have their floor below them and are not met: open (new position), kick (account above water), take",
    "(full remainder) and pool redeem at two markets. What the traces leave for each changes a rule of the protocol",
    "rather than its code. None is taken; the table's figures are what the protocol costs under its present rules.",
    "",
    "- **Open, new position: {open} against 145,000.** A first trade writes the position's two slots fresh (40k)",
    "  because three of its fields are nonzero: size, open notional and funding index. One slot would hold them only",
    "  with narrower fields. Size needs 96 bits (it is bounded by `maxOpenInterest`) and the funding index 104 (the",
    "  market's own index is that wide), which leaves 56 bits for the open notional: 0.036 quote at wei precision.",
    "  The notional would have to be kept in units of 1e-6 quote and rounded at every trade, so every position's",
    "  profit and loss would move off the exact figure the model and the fuzzers check to the wei. That costs every",
    "  position precision to save 17.1k on its first trade only. The other path, computation under 15.4k (26.7k now),",
    "  finds nothing large to cut: `--functions` shows it spread over the block's accrual with its funding math, the",
    "  swap, the band, the margin check and the event's encoding.",
    "- **Kick, account above water: {kick} against 165,000.** Two code changes are known:",
    "  - the engine's address immutable in the ClearingHouse and the Vault (-4.2k: two cold reads); the deploy must",
    "    then predict the engine's address, and the one-time `setLiquidationEngine` wirings go;",
    "  - one ClearingHouse call for the account's margin summary and the kicked market's inputs (about -4k), which",
    "    needs ClearingHouse bytes (466 left under the 24,576-byte limit).",
    "  Together they reach about 167k, still above the target. The one cut that meets it is the auction's two fresh",
    "  slots (40k): a kick would reuse a finished auction's slots (about -34k, less the upkeep of a free list and of",
    "  a map from id to slot). `auction(id)` would then no longer report a finished auction's owner, market and",
    "  start, which the external surface reads for every id from 1. That is a change to the surface.",
    "- **Take, full remainder: {take} against 150,000.** The floor leaves 19.2k for computation; the take spends",
    "  45.4k. Of that, 26.7k is the ClearingHouse's settlement and 5.4k the Vault's two: the block's accrual, the",
    "  owner's position reduced and the taker's increased, both funding settlements, the aggregates and open",
    "  interest moved, and the taker's margin check. Most of the rest (7.8k) is the engine's: the auction's price on",
    "  its discount curve and the fill's checks; then the bad-debt step (2.6k). Each of these is",
    "  a rule ([specification.md](specification.md#11-invariants), invariants 2, 12 and 15: aggregates equal the",
    "  sums over positions on every path, the taker ends above its initial margin, an account left with no position",
    "  owes nothing). No path within the rules reaches the target.",
    "- **Pool redeem, 2 markets: {redeem} against 150,000.** The floor (147.2k, 20k of it the receiver's first token",
    "  balance) leaves 2.8k for computation; the valuation alone spends 16.6k. A redemption is priced off the NAV",
    "  of its own block, computed from both markets' reserves, open notionals and funding ([pool.md](pool.md)), so",
    "  that nobody can move the price an LP exits at between its valuation and its use. The only way under 2.8k is",
    "  a stored NAV, refreshed by others: an LP would then exit at a price it, or anyone, can time. For a receiver",
    "  that already holds tokens the floor is 130.1k and the redemption about 163.8k, 13.8k above the target with",
    "  the same valuation.",
    "",
    "So the table stands at the counted floors plus the computation each rule needs. A target met here would take a",
    "choice between these rules and the gas: a narrower open notional, finished auctions no longer readable by id, a",
    "stored NAV, or a target set at the floor plus its computation.",
]


def _targets(rows: list[Row]) -> list[str]:
    gas = {r.name: r.gas for r in rows}
    out = ["", "## Targets and floors", "",
           "The targets set for this table (funding active everywhere) and each one's floor, counted from Anvil traces",
           "(`./run.sh ape run gas_trace --network ethereum:local:foundry --row NAME --ops`, devtools/gas_trace.py):",
           "intrinsic gas, cold storage reads, writes less refunds, logs and cold contracts, what the operation does",
           "under its rules before any computation. A target below its floor needs the rules changed; one above it",
           "leaves the rest as a budget for computation, warm reads and transient storage. `--functions` adds each",
           "compiled function's own and total gas, which shows where that budget goes.", "",
           "| operation | target | now | floor |", "|---|---:|---:|---|"]
    for name, row, target, floor in TARGETS:
        if isinstance(row, tuple):
            if row[0] not in gas or row[1] not in gas:
                continue
            now = gas[row[0]] - gas[row[1]]
        elif row in gas:
            now = gas[row]
        else:
            continue
        out.append(f"| {name} | <= {target:,} | {now:,} | {floor} |")
    figures = {key: f"{gas[row]:,}" if row in gas else "(not measured)" for key, row in UNMET_ROWS.items()}
    return out + [line.format(**figures) for line in UNMET]


def render(rows: list[Row], previous: dict[str, int], network: str = "") -> str:
    out = [
        "# Gas table",
        "",
        "Produced by `./run.sh gas` (devtools/gas.py) on a fresh local deployment of the shipped markets with",
        "delayed orders off (`measured_config()`: the trade rows call the ClearingHouse directly, as the order",
        "router's `executeOrder` does; the two order rows turn delayed orders on in ETH) plus eight more ETH-like markets"
        + (f", on `{network}`" if network else "") + ". Every row measures the situation a user",
        "meets in production, and the script asserts it before measuring: funding active in every market",
        "(applied and target rates nonzero, funding index nonzero, observation ring full; for the rows an hour",
        "after the last update, a block in every hour of the day-long funding window), positions new or",
        "existing as labelled, and the market's last per-block update as labelled. Block time is pinned:",
        "each measured transaction is alone in its block (unless the row says it shares one), one second after",
        "the previous block unless the row says otherwise, at an explicit timestamp. The start is pinned: the",
        f"run's first block is at a fixed timestamp, {START:,} ({_utc(START)}, a whole number of days",
        "and of 25-hour rings of hourly observations), not a day after the wall clock, so every row falls at the",
        "same hour and finds the same values on every run; the rows an hour after the last update are at hours",
        "where the funding sample finds its anchor's skew sum in the storage word it writes (21 hours of 25; in",
        "the other four that read is a cold slot, 2,000 gas more). Gas from receipts. The feeds are the test",
        "MockAggregator: every row pays its `latestRoundData` per market read (a Chainlink proxy and aggregator",
        "cost about 2.6k more per read; the mock's own dispatch moved every read by +62 when it gained",
        "`getRoundData`).",
        "'previous' is the last run's figure (docs/gas.json); a row renamed since shows the figure of the",
        "row it replaces, measured in that row's situation.",
        "",
        "The same call costs more in some blocks than in others: in a market's first block of an hour (the rows",
        "\"1 h since last update\"), more after a whole hour without an update (the last row: the rate moves in two",
        "parts, and there the sample's search for its anchor, the hourly observation a day back, missed at its first",
        "probe and read on, 2.1k a slot), most where hours a day back went without a block (the search reads on past",
        "each; a market younger than a day finds the listing's observation at the first probe). An estimate answers",
        "for one block: a sender's gas limit is the estimate plus 120,000 per market the call reads",
        "([integrators.md](integrators.md#gas-limits); tests/sdk/test_gas_headroom.py measures the rise).",
        "",
        "The figures are this build's. solc's via-IR output for a contract can change with the set of sources in the",
        "compiler's input: two builds of the same sources whose inputs listed different sets of OpenZeppelin files",
        "gave ClearingHouses 9 bytes apart and a take 64 gas apart. Compare rows of one build.",
        "",
        "| operation | gas | previous | change | what is measured |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        prev = previous.get(r.name, previous.get(r.was) if r.was else None)
        change = "" if prev is None else f"{r.gas - prev:+,d}"
        out.append(f"| {r.name} | {r.gas:,} | {'' if prev is None else f'{prev:,}'} | {change} | {r.what} |")
    out += _targets(rows)
    return "\n".join(out) + "\n"
