"""No test depends on wall-clock time (tests/helpers/clock.py, docs/testing.md).

Every block is BLOCK_TIME after the previous one whatever the wall clock does, and a timestamp a test
sets with `chain.pending_timestamp` is exactly the next block's. Without the mechanism in
tests/conftest.py:
- the real sleeps leak into the chain wherever the wall clock is ahead of it: on the embedded chain in a
  full run (each module starts from the session's snapshot, minutes old), on Anvil always (its clock is
  the wall clock plus an offset, and blocks mined within one second share a timestamp);
- the process's wall clock moved a day ahead (`time.time`, `datetime.datetime.now`: what eth-tester and
  py-evm read) makes the embedded chain jump a day, wherever its chain time is. Anvil is another
  process and keeps the real clock: there these tests check the steps, the sleeps the leak.
Checked: with `install_embedded_clock()` and `pin_block_time()` taken out of conftest.py, 4 of these
tests fail on the embedded chain run alone, 5 on Anvil.
"""
from __future__ import annotations

import datetime
import re
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers.clock import BLOCK_TIME, GENESIS_TIMESTAMP, provider_kind
from helpers.trading import ETH_ID, MAX_UINT, WAD
from vperp.units import DAY

SLEEP = 1.1  # seconds of wall clock: enough to cross a second boundary


@contextmanager
def wall_clock_ahead(seconds: int):
    """The process's wall clock `seconds` ahead, as on a machine that stalled that long."""
    real_time, real_datetime = time.time, datetime.datetime

    class Ahead(real_datetime):
        @classmethod
        def now(cls, tz=None):
            return real_datetime.fromtimestamp(real_time() + seconds, tz)

        @classmethod
        def utcnow(cls):
            return real_datetime.fromtimestamp(real_time() + seconds, datetime.timezone.utc).replace(tzinfo=None)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "time", lambda: real_time() + seconds)
        mp.setattr(datetime, "datetime", Ahead)
        assert datetime.datetime.now(datetime.timezone.utc).timestamp() >= real_time() + seconds - 1
        yield


def head_timestamps(chain, n: int) -> list[int]:
    head = chain.blocks.head.number
    return [chain.blocks[i].timestamp for i in range(head - n + 1, head + 1)]


def test_the_session_starts_on_the_pinned_clock(chain):
    if provider_kind(chain.provider) == "embedded":
        assert chain.blocks[0].timestamp == GENESIS_TIMESTAMP
    assert chain.pending_timestamp == chain.blocks.head.timestamp + BLOCK_TIME


def test_blocks_are_one_step_apart_across_wall_clock_sleeps(chain, deployer, alice):
    start = chain.blocks.head.timestamp
    chain.mine()
    time.sleep(SLEEP)
    deployer.transfer(alice, 1)  # py-evm dated this block when it mined the previous one, before the sleep
    time.sleep(SLEEP)
    assert chain.pending_timestamp == start + 3 * BLOCK_TIME
    tx = deployer.transfer(alice, 1)  # ... and this one after the sleep
    chain.mine()
    assert tx.timestamp == start + 3 * BLOCK_TIME
    assert head_timestamps(chain, 5) == [start + k * BLOCK_TIME for k in range(5)]


def test_a_wall_clock_a_day_ahead_does_not_reach_the_chain(chain, deployer, alice):
    start = chain.blocks.head.timestamp
    with wall_clock_ahead(DAY):
        chain.mine()  # its header was made before the clock moved
        chain.mine()  # made after: a day later if the chain read the wall clock
        tx = deployer.transfer(alice, 1)
        assert chain.pending_timestamp == start + 4 * BLOCK_TIME
    assert tx.timestamp == start + 3 * BLOCK_TIME
    assert head_timestamps(chain, 4) == [start + k * BLOCK_TIME for k in range(4)]


def test_pending_timestamp_pins_the_next_block_even_behind_the_wall_clock(chain, deployer, alice):
    with wall_clock_ahead(DAY):
        t = chain.pending_timestamp + 100
        chain.pending_timestamp = t  # eth-tester: mines an empty block at t - 1, then dates the next one
        assert chain.pending_timestamp == t
        tx = deployer.transfer(alice, 1)
        assert tx.timestamp == t
        assert chain.pending_timestamp == t + BLOCK_TIME
        chain.mine(deltatime=3600)
    assert chain.blocks.head.timestamp == t + BLOCK_TIME + 3600


def test_pending_funding_does_not_depend_on_the_wall_clock(system, ch, chain, alice, bob):
    """A long skews the vAMM, two pokes an hour apart set a funding rate; bob's short then owes or earns
    funding every second. Two more blocks after a sleep and with the wall clock a day ahead leave the
    same pending funding, at the same timestamps, as two more blocks without them. (Two: py-evm dates
    a block when it mines the one before, so only the second is dated under the moved clock.)"""
    system.fund(alice, 1_000_000)
    system.fund(bob, 1_000_000)
    ch.openPosition(0, ETH_ID, 100 * WAD, MAX_UINT, chain.pending_timestamp + 60, sender=alice)
    chain.pending_timestamp += 3600
    ch.pokeFunding(ETH_ID, sender=alice)
    chain.pending_timestamp += 1000
    ch.pokeFunding(ETH_ID, sender=alice)
    ch.openPosition(0, ETH_ID, -50 * WAD, 0, chain.pending_timestamp + 60, sender=bob)
    assert ch.marketState(ETH_ID).fundingRate != 0
    start, f0 = chain.blocks.head.timestamp, ch.position(bob, 0, ETH_ID).pendingFunding

    def two_more_blocks(wait: bool) -> tuple[list[int], int]:
        with chain.isolate():
            if wait:
                time.sleep(SLEEP)
                with wall_clock_ahead(DAY):
                    chain.mine()
                    chain.mine()
            else:
                chain.mine()
                chain.mine()
            return head_timestamps(chain, 2), ch.position(bob, 0, ETH_ID).pendingFunding

    undisturbed = two_more_blocks(wait=False)
    assert undisturbed[0] == [start + BLOCK_TIME, start + 2 * BLOCK_TIME]
    assert undisturbed[1] != f0  # funding accrues every second: a leaked second would show
    assert two_more_blocks(wait=True) == undisturbed


def test_no_test_sleeps_or_reads_the_wall_clock():
    """The rule, kept by every other test file: time on chain passes only by setting it.

    A line marked ``# waits for a process, not chain time`` (polling a node that is starting) is allowed."""
    here = Path(__file__).parent
    wall_clock = re.compile(r"\btime\.sleep\(|(?<![\w.])sleep\(|\btime\.time\(|\bdatetime\.(now|utcnow|today)\(|"
                            r"from time import")
    offenders = []
    for path in sorted(here.rglob("*.py")):
        if path.relative_to(here).as_posix() in ("test_determinism.py", "helpers/clock.py"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if wall_clock.search(line) and "# waits for a process, not chain time" not in line:
                offenders.append(f"{path.relative_to(here)}:{n}: {line.strip()}")
    assert offenders == []
