"""Tests written for mutants that survived the mutation campaign (docs/mutation.md): each names the mutant
it kills. Block timestamps are set explicitly (tests/helpers/clock.py); nothing reads the wall clock."""
from helpers.clock import HOUR, next_hour
from helpers.funding import lift_fee
from vperp.funding import WAD, evolve

CAP = 10**15
V = 5 * 10**14
TAU = 4 * 3600
PERIOD = 24
BTC = 2  # the flat market: no trade ever moves its vAMM, so its mark TWAP equals its index TWAP


def test_update_decays_a_nonzero_rate_toward_a_zero_target_between_samples(ch, chain, deployer, alice):
    """Kills 9f5e912ed3 (ClearingHouseAccrual._accrue: `fs.rate == 0 && fs.target == 0 && !newObservation` ->
    `fs.rate != 0 && ...`; the guard now also needs `!newHour`): with a rate still applied, a zero target and
    neither a new quarter nor a new hour, the per-block update must keep moving the rate toward the target and
    accruing the funding index; the mutant returns early. The target is re-sampled by the first block of each
    hour, so the samples here are at hour boundaries (each also the first second of a quarter)."""
    quarter = ch.marketParams(BTC).twapWindow // 4
    assert HOUR % quarter == 0
    # a baseline rate gives the flat market a target, and the rate builds up toward it (at a 0.1 %/h cap, which the
    # taker fee must allow)
    lift_fee(ch, deployer, CAP, market=BTC)
    ch.setFundingParams(BTC, (CAP, V, 10**13, TAU, PERIOD), sender=deployer)
    h = next_hour(chain.pending_timestamp)
    chain.pending_timestamp = h
    ch.pokeFunding(BTC, sender=alice)
    assert ch.marketState(BTC).targetRate == 10**13
    chain.pending_timestamp = h + 2 * HOUR
    ch.pokeFunding(BTC, sender=alice)
    # the baseline removed: the next hour's sample of a zero premium makes the target zero
    ch.setFundingParams(BTC, (CAP, V, 0, TAU, PERIOD), sender=deployer)
    first = next_hour(ch.marketState(BTC).lastUpdate)  # first second of the next hour (and of a quarter)
    chain.pending_timestamp = first
    ch.pokeFunding(BTC, sender=alice)
    st = ch.marketState(BTC)
    assert st.lastUpdate == first and st.targetRate == 0 and st.fundingRate > 0

    dt = min(60, quarter - 1)  # still inside that quarter and that hour: no new observation, no sample
    chain.pending_timestamp = first + dt
    ch.pokeFunding(BTC, sender=alice)
    after = ch.marketState(BTC)
    rate, area = evolve(st.fundingRate, 0, dt, TAU, V)
    assert after.lastUpdate == first + dt
    assert after.fundingRate == rate < st.fundingRate
    assert area > 0 and after.cumulativeFunding - st.cumulativeFunding == area * st.lastIndexPrice // (3600 * WAD)


def test_reader_max_trade_size_answers_a_sell_when_the_band_reaches_zero(system):
    """Kills 052a623699 (PerpReader._bandGuess: `limit != 0 && x * y / limit < ...` -> `||`): with the vAMM
    at more than twice the index, a sell's price limit (index - max(band, distance)) is zero, and the guess
    must be skipped rather than divide by it; the view answers, within the absolute open-interest room."""
    ch, reader, m = system.clearing_house, system.reader, system.markets["ETH"]
    st = ch.marketState(m.id)
    spot = st.quoteReserve * WAD // st.baseReserve
    index = 1_400 * WAD
    assert spot > 2 * index  # the distance before (spot - index) exceeds the index itself
    m.oracle.updateAnswer(index // 10**10, sender=system.deployer)  # an 8-decimal feed
    assert ch.indexPrice(m.id) == index
    b = reader.maxTradeSize(m.id, False)
    room = ch.marketParams(m.id).maxOpenInterest - st.shortOpenInterest
    assert 0 < b <= room
