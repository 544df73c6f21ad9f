"""Funding on chain (docs/funding.md): sampling, smoothing, lazy accrual, zero-sum settlement, governance."""
import ape
import pytest

from vperp.funding import WAD, clamp, evolve

BIG = 2**255
CAP = 10**15
V = 5 * 10**14
TAU = 4 * 3600
PERIOD = 24


def mul_div_up(a, b, d):
    return -((-a * b) // d)


def skew_term(ch, market_id=1):
    """ClearingHouseStorage._skewTerm recomputed from the views: ppm x 1e-6 x (long - short) / base reserve, truncated
    toward zero."""
    st = ch.marketState(market_id)
    ppm = ch.skewFunding(market_id).ratePpm
    net = st.longOpenInterest - st.shortOpenInterest
    q = abs(net) * WAD * ppm // (st.baseReserve * 10**6)
    return q if net >= 0 else -q


def sample_premium(system, ch, chain, trader, base):
    """Trade `base` ETH, then poke twice so the TWAP window holds only the post-trade price.

    Returns (spot after the trade, index). After the second poke the mark TWAP equals the spot
    exactly: the anchor is the observation written by the first poke, and the vAMM has not moved since.
    """
    system.fund(trader, 1_000_000)
    ch.openPosition(0, 1, base, BIG, chain.pending_timestamp + 60, sender=trader)
    chain.pending_timestamp += 2 * 3600
    ch.pokeFunding(1, sender=trader)
    chain.pending_timestamp += 1000
    ch.pokeFunding(1, sender=trader)
    st = ch.marketState(1)
    return st.quoteReserve * WAD // st.baseReserve, ch.indexPrice(1)


def test_fundingstate_target_equals_premium_over_period_after_a_long_skews_the_vamm(system, ch, chain, alice):
    spot, index = sample_premium(system, ch, chain, alice, 100 * WAD)
    assert spot > index
    applied, target, premium, mark_twap, index_twap, p1h, p8h = ch.fundingState(1)
    assert mark_twap == spot and index_twap == index
    expected_premium = (spot - index) * WAD // index  # positive: truncation == floor
    assert premium == expected_premium
    term = skew_term(ch)
    assert ch.skewFunding(1) == (2_000, term) and term > 0  # the listing default, on a 100 ETH net long
    assert target == clamp(expected_premium // PERIOD + term, CAP)
    assert 0 < applied <= target  # moving up toward the target, not past it
    assert p1h == evolve(applied, target, 3600, TAU, V)[0]
    assert p8h == evolve(applied, target, 8 * 3600, TAU, V)[0]
    assert applied < p1h < p8h <= target


def test_funding_state_is_neutral_on_a_fresh_market(ch):
    applied, target, premium, mark_twap, index_twap, p1h, p8h = ch.fundingState(2)
    assert (applied, target, premium, p1h, p8h) == (0, 0, 0, 0, 0)
    assert mark_twap == index_twap == 60_000 * WAD


def test_applied_rate_follows_the_kernel_between_pokes(system, ch, chain, alice):
    sample_premium(system, ch, chain, alice, 100 * WAD)
    st = ch.marketState(1)
    r0, target = st.fundingRate, st.targetRate
    chain.pending_timestamp += 3600
    ch.pokeFunding(1, sender=alice)
    st2 = ch.marketState(1)
    dt = st2.lastUpdate - st.lastUpdate
    assert st2.fundingRate == evolve(r0, target, dt, TAU, V)[0]
    # The index accrued by rate area x index / (1 h x WAD), rounded down.
    _, area = evolve(r0, target, dt, TAU, V)
    assert st2.cumulativeFunding - st.cumulativeFunding == (area * st.lastIndexPrice) // (3600 * WAD)


def test_premium_step_moves_rate_at_most_velocity_per_hour(system, ch, chain, alice):
    # ~+5 % in one block: buy 250 of 10,000 virtual base -> price x (10000/9750)^2.
    sample_premium(system, ch, chain, alice, 250 * WAD)
    st = ch.marketState(1)
    assert st.targetRate == CAP  # 5 %/24 h > cap: clamped
    prev_rate, prev_t = st.fundingRate, st.lastUpdate
    for _ in range(6):
        chain.pending_timestamp += 900
        ch.pokeFunding(1, sender=alice)
        st = ch.marketState(1)
        assert 0 <= st.fundingRate - prev_rate <= V * (st.lastUpdate - prev_t) // 3600
        assert st.fundingRate <= CAP
        prev_rate, prev_t = st.fundingRate, st.lastUpdate


def test_longs_pay_shorts_receive_and_the_imbalance_goes_to_the_pool(system, ch, vault, chain, alice, bob):
    system.fund(bob, 1_000_000)
    sample_premium(system, ch, chain, alice, 100 * WAD)
    ch.openPosition(0, 1, -50 * WAD, 0, chain.pending_timestamp + 60, sender=bob)
    cf_bob_open = ch.marketState(1).cumulativeFunding
    cf_alice_open = None  # alice opened before sampling; her snapshot is the index at her trade
    chain.pending_timestamp += 6 * 3600
    ch.pokeFunding(1, sender=alice)
    cf = ch.marketState(1).cumulativeFunding
    assert cf > cf_bob_open  # positive rate: the index grows, longs owe
    a = ch.position(alice, 0, 1)
    b = ch.position(bob, 0, 1)
    assert a.pendingFunding > 0 and b.pendingFunding < 0
    assert b.pendingFunding == mul_div_up(-50 * WAD, cf - cf_bob_open, WAD)

    total_before = sum(vault.collateral(x, 0) for x in (alice, bob)) + vault.poolBalance() + vault.insuranceFund()
    pool_before = vault.poolBalance()
    txa = ch.closePosition(0, 1, 0, chain.pending_timestamp + 60, sender=alice)
    txb = ch.closePosition(0, 1, BIG, chain.pending_timestamp + 60, sender=bob)
    paid = [tx.events.filter(ch.PositionChanged)[0].fundingPaid for tx in (txa, txb)]
    assert paid[0] > 0 > paid[1]
    assert sum(paid) > 0  # net long: the pool receives the imbalance
    total_after = sum(vault.collateral(x, 0) for x in (alice, bob)) + vault.poolBalance() + vault.insuranceFund()
    assert total_after == total_before  # funding, PnL and fees only move money: sum is exactly zero
    assert vault.poolBalance() != pool_before
    del cf_alice_open


def test_two_pokes_in_one_block_equal_one(system, ch, chain, alice, project, deployer):
    sample_premium(system, ch, chain, alice, 100 * WAD)
    batch = project.BatchCaller.deploy(sender=deployer)
    poke = ch.pokeFunding.encode_input(1)
    when = chain.pending_timestamp + 3600
    sid = chain.snapshot()
    chain.pending_timestamp = when
    batch.batch([ch.address], [poke], sender=alice)
    once = ch.marketState(1)
    chain.restore(sid)
    chain.pending_timestamp = when
    batch.batch([ch.address, ch.address], [poke, poke], sender=alice)
    twice = ch.marketState(1)
    assert tuple(once) == tuple(twice)
    assert once.lastUpdate == when


def test_position_opened_and_closed_in_one_block_pays_no_funding(system, ch, vault, usdc, chain, alice, project, deployer):
    sample_premium(system, ch, chain, alice, 100 * WAD)
    chain.pending_timestamp += 3600
    assert ch.fundingState(1).appliedRate > 0
    batch = project.BatchCaller.deploy(sender=deployer)
    units = system.units(100_000)
    usdc.mint(deployer, units, sender=deployer)
    usdc.approve(vault, units, sender=deployer)
    vault.depositFor(batch, 0, units, sender=deployer)
    deadline = chain.pending_timestamp + 600
    tx = batch.batch(
        [ch.address, ch.address],
        [ch.openPosition.encode_input(0, 1, 10 * WAD, BIG, deadline), ch.closePosition.encode_input(0, 1, 0, deadline)],
        sender=deployer,
    )
    events = tx.events.filter(ch.PositionChanged)
    assert [e.fundingPaid for e in events] == [0, 0]
    assert ch.position(batch, 0, 1).size == 0


def test_pending_funding_counts_in_account_value(system, ch, vault, chain, alice):
    sample_premium(system, ch, chain, alice, 100 * WAD)
    chain.pending_timestamp += 8 * 3600
    ch.pokeFunding(1, sender=alice)
    size, open_notional, pending = ch.position(alice, 0, 1)
    assert pending > 0
    index = ch.indexPrice(1)
    upnl = (size * index) // WAD - open_notional
    assert vault.accountValue(alice, 0) == vault.collateral(alice, 0) + upnl - pending


def test_set_funding_params_accrues_first_then_clamps_to_new_cap(system, ch, chain, alice, deployer):
    sample_premium(system, ch, chain, alice, 250 * WAD)
    chain.pending_timestamp += 3600
    new = (2 * 10**14, V, 0, TAU, PERIOD)
    tx = ch.setFundingParams(1, new, sender=deployer)
    st = ch.marketState(1)
    assert st.lastUpdate == tx.timestamp  # accrued at the old parameters up to the change
    assert st.fundingRate <= 2 * 10**14 and st.targetRate == 2 * 10**14
    assert tuple(ch.fundingParams(1)) == new
    assert tx.events.filter(ch.FundingParamsSet)[0].marketId == 1


@pytest.mark.parametrize(
    "params, name",
    [
        ((10**16 + 1, V, 0, TAU, PERIOD), b"maxFundingRate"),
        ((CAP, 10**9, 0, TAU, PERIOD), b"maxRateVelocity"),
        ((CAP, V, 0, 59, PERIOD), b"smoothingTau"),
        ((CAP, V, 0, TAU, 0), b"fundingPeriodHours"),
        ((CAP, V, CAP + 1, TAU, PERIOD), b"baselineRate"),
    ],
)
def test_set_funding_params_rejects_out_of_bounds(ch, deployer, params, name):
    before = tuple(ch.fundingParams(1))
    with ape.reverts(ch.ParameterOutOfBounds):
        ch.setFundingParams(1, params, sender=deployer)
    assert tuple(ch.fundingParams(1)) == before


def test_set_funding_params_only_owner(ch, alice):
    with ape.reverts(ch.OwnableUnauthorizedAccount):
        ch.setFundingParams(1, (CAP, V, 0, TAU, PERIOD), sender=alice)


def test_poke_funding_unknown_market(ch, alice):
    with ape.reverts(ch.UnknownMarket):
        ch.pokeFunding(3, sender=alice)
    with ape.reverts(ch.UnknownMarket):
        ch.fundingState(0)


def test_poke_funding_reverts_on_stale_oracle(system, ch, chain, alice):
    before = tuple(ch.marketState(1))
    chain.pending_timestamp += 86_400 + 10
    with ape.reverts():
        ch.pokeFunding(1, sender=alice)
    assert tuple(ch.marketState(1))[:5] == before[:5]


def test_baseline_rate_adds_to_target_with_flat_premium(ch, chain, deployer, alice):
    ch.setFundingParams(2, (CAP, V, 10**13, TAU, PERIOD), sender=deployer)
    chain.pending_timestamp += 1000
    ch.pokeFunding(2, sender=alice)
    assert ch.marketState(2).targetRate == 10**13


# ---------------------------------------------------------------------------- the skew term


def test_skew_funding_setter_bounds_owner_and_accrual(system, ch, chain, alice, deployer):
    """setSkewFunding: owner only, 0..10,000 ppm (ParameterOutOfBounds one above, nothing changes), accrues
    first, emits SkewFundingSet; 0 turns the term off."""
    with ape.reverts(ch.OwnableUnauthorizedAccount, account=alice.address):
        ch.setSkewFunding(1, 1_000, sender=alice)
    with ape.reverts(ch.ParameterOutOfBounds, name=b"skewFundingPpm".ljust(32, b"\0"), value=10_001):
        ch.setSkewFunding(1, 10_001, sender=deployer)
    with ape.reverts(ch.UnknownMarket, marketId=9):
        ch.setSkewFunding(9, 1_000, sender=deployer)
    assert ch.skewFunding(1).ratePpm == 2_000
    chain.pending_timestamp += 600
    tx = ch.setSkewFunding(1, 10_000, sender=deployer)
    assert ch.marketState(1).lastUpdate == tx.timestamp  # accrued first
    assert [(e.marketId, e.ratePpm) for e in tx.decode_logs(ch.SkewFundingSet)] == [(1, 10_000)]
    ch.setSkewFunding(1, 0, sender=deployer)
    assert ch.skewFunding(1) == (0, 0)


@pytest.mark.parametrize("side", [1, -1], ids=["net long", "net short"])
def test_the_skew_term_charges_the_heavy_side_with_the_mark_at_the_index(system, ch, chain, alice, deployer, side):
    """A net position whose mark has been brought back to the index (a repeg, or arbitrage) pays no premium
    funding, but the skew term still charges it: the pool, which carries the net position, is paid for it.
    With the term off the same hold pays nothing."""
    from vperp.units import HOUR
    paid = {}
    snap = chain.snapshot()
    for ppm in (0, 2_000):
        chain.restore(snap)
        snap = chain.snapshot()
        ch.setSkewFunding(1, ppm, sender=deployer)
        system.fund(alice, 1_000_000)
        ch.openPosition(0, 1, side * 300 * WAD, BIG if side > 0 else 0, chain.pending_timestamp + 60, sender=alice)
        system.set_price("ETH", ch.spotPrice(1) // 10**10 / 10**8)  # the index follows: no premium
        ch.pokeFunding(1, sender=alice)  # and the market records it at once
        t = chain.pending_timestamp
        for h in range(1, 25):
            chain.pending_timestamp = t + h * HOUR
            system.set_price("ETH", ch.spotPrice(1) // 10**10 / 10**8)
            ch.pokeFunding(1, sender=alice)
        assert abs(ch.fundingState(1).premium) < 10**14  # the mark stayed at the index (rounding of the feed)
        paid[ppm] = ch.position(alice, 0, 1).pendingFunding
    assert abs(paid[0]) < paid[2_000] / 50  # without the term: next to nothing
    assert paid[2_000] > 0  # with it, the heavy side pays, long or short
    # 300 ETH against a base reserve of about 9,700 (long) or 10,300 (short): a skew of about 3 %, so a term of
    # about 0.006 %/h (0.14 % a day), which the smoothing reaches within hours: about 0.1 % of the notional.
    notional = 300 * ch.indexPrice(1)
    assert notional * 8 // 10**4 < paid[2_000] < notional * 14 // 10**4

