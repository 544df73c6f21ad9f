"""The gas table (devtools/gas.py) measures what its labels say.

`measure` asserts each row's situation before measuring it (funding active in every market, the
position new or existing, the market's last update in the block / the previous block / an hour ago,
the quarter-window and the hour crossed or not, the funding sample's day-long anchor found at its
first probe, each measured transaction alone in its block at the timestamp it expects). The first test runs the whole table, so a change that breaks a situation fails here; the
others show the checks catch the mislabels the table once had.
"""
import pytest

from vperp.deployment import deploy
from devtools.gas import (FUNDING_WINDOW_HOURS, HOUR, START, START_PERIOD, WAD, Clock, Situation, _open,
                       activate_funding, measure, measured_config, refresh_feeds)


def test_gas_table_rows_measure_their_labelled_situations(accounts, chain):
    rows = measure(accounts, chain, nav=False)  # the NAV rows are views of three more deployments: nothing to assert
    names = [r.name for r in rows]
    assert len(names) == len(set(names)), "two rows share a name"
    for expected in ("openPosition (increase)", "openPosition (increase, market updated in the block)",
                     "openPosition (increase, 1 h since last update)", "take (partial, into an existing position)",
                     "openPosition (increase) holding 10 market(s)", "pool deposit (existing LP), 2 markets",
                     "pool deposit (existing LP), 10 markets", "pool redeem, 2 markets", "pool redeem, 10 markets"):
        assert expected in names
    gas = {r.name: r.gas for r in rows}
    # Shape checks that hold whatever the code costs: an increase whose market was already updated in
    # the block skips the per-block update; each market held adds to the cross-margin check; the pool's
    # flows grow with the markets they value.
    assert gas["openPosition (increase, market updated in the block)"] < gas["openPosition (increase)"]
    assert gas["openPosition (increase) holding 10 market(s), all updated in the block"] < \
        gas["openPosition (increase) holding 10 market(s)"]
    assert gas["pool redeem, 2 markets"] < gas["pool redeem, 10 markets"]
    assert gas["pool deposit (existing LP), 2 markets"] < gas["pool deposit (existing LP), 10 markets"]


@pytest.fixture
def fresh(accounts, chain):
    clock = Clock(chain)
    s = deploy(accounts[0], measured_config())
    return s, clock, Situation(s, clock)


def test_situation_rejects_funding_that_is_not_active(fresh):
    s, clock, sit = fresh
    with pytest.raises(AssertionError, match="funding not active"):
        sit.funding_active_everywhere()


def test_situation_rejects_a_position_opened_at_a_zero_funding_index(fresh, accounts):
    # The old "increase, funding active" row paid a zero -> nonzero funding snapshot for this reason.
    s, clock, sit = fresh
    s.fund(accounts[1], 10_000)
    with pytest.raises(AssertionError, match="funding index is 0"):
        _open(s, clock, accounts[1], 0, 1, WAD)


def test_situation_rejects_a_take_into_a_position_the_taker_does_not_hold(fresh, accounts):
    # The old "take (partial)" row said "into the taker's existing position" after the taker had closed it.
    s, clock, sit = fresh
    activate_funding(s, clock, accounts[7], accounts[8])
    sit.funding_active_everywhere()
    with pytest.raises(AssertionError, match="holds no position"):
        sit.position(accounts[2], 1, exists=True)
    s.fund(accounts[2], 10_000)
    _open(s, clock, accounts[2], 0, 1, WAD)
    sit.position(accounts[2], 1, exists=True, sign=1)
    with pytest.raises(AssertionError):
        sit.position(accounts[2], 1, exists=True, sign=-1)


def test_situation_checks_the_last_update_and_the_block_time(fresh, accounts, chain):
    s, clock, sit = fresh
    activate_funding(s, clock, accounts[7], accounts[8])
    s.clearing_house.pokeFunding(1, sender=accounts[8])
    sit.last_update(1, ago=1)
    with pytest.raises(AssertionError):
        sit.last_update(1, ago=HOUR)
    sit.same_quarter(1, crosses=False)
    clock.at(clock.head() + HOUR)
    sit.last_update(1, ago=HOUR)
    sit.same_quarter(1, crosses=True)
    tx = clock.tx(s.clearing_house.pokeFunding, 1, sender=accounts[8], dt=HOUR)
    assert chain.blocks[tx.block_number].timestamp == s.clearing_house.marketState(1).lastUpdate
    # Two transactions in one block, one second after the head.
    before = clock.head()
    first, second = clock.same_block([(s.clearing_house.pokeFunding, (1,), {"sender": accounts[8]}),
                                      (s.clearing_house.pokeFunding, (2,), {"sender": accounts[7]})])
    assert first.block_number == second.block_number
    assert chain.blocks[first.block_number].timestamp == before + 1


def test_situation_checks_the_funding_window(fresh, accounts):
    # An hourly funding sample in a market younger than the day-long window probes hour after hour for its
    # anchor (a storage read each): the "1 h since last update" rows are measured where the first probe finds
    # it, as on a market that trades every hour.
    s, clock, sit = fresh
    activate_funding(s, clock, accounts[7], accounts[8])
    clock.at(clock.head() + HOUR)
    with pytest.raises(AssertionError, match="probe past it"):
        sit.funding_window_full(1)
    for _ in range(FUNDING_WINDOW_HOURS - 1):  # a block in each of the next 23 hours
        refresh_feeds(s, clock)
        s.clearing_house.pokeFunding(1, sender=accounts[8])
        clock.at(clock.head() + HOUR)
    sit.funding_window_full(1)
    sit.same_quarter(1, crosses=True)


def test_clock_starts_at_the_pinned_start_and_the_rows_check_the_hour_of_the_hourly_ring(fresh):
    # The "1 h since last update" rows swapped 2,000 gas between runs while the start followed the wall clock:
    # the hourly funding sample writes the hour's skew sum to hourlySkew[h % 25] and reads its anchor's from
    # hourlySkew[(h - 24) % 25], int32s eight a storage word; in hours 7, 15, 23 and 24 of the ring that read is
    # in the next word, a cold slot.
    s, clock, sit = fresh
    assert clock.start >= START and clock.start % START_PERIOD == 0
    hour = clock.head() // HOUR
    for ring_hour, warm in ((2, True), (7, False), (8, True), (15, False), (16, True), (23, False), (24, False),
                            (0, True)):
        hour += 1 + (ring_hour - hour - 1) % 25
        clock.at(hour * HOUR)
        if warm:
            sit.anchor_skew_warm()
        else:
            with pytest.raises(AssertionError, match="cold read"):
                sit.anchor_skew_warm()
