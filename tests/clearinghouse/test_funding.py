"""Funding on chain (docs/funding.md): sampling, smoothing, lazy accrual, zero-sum settlement, governance."""
import ape
import pytest

from helpers.clock import HOUR, next_hour
from helpers.funding import (BIG, CAP, PERIOD, TAU, V, W, chain_model, lift_cap, lift_fee, mean_skew_term, mul_div_up,
                             repost_answer, skew_bps, skew_term)
from helpers.trading import ETH_X0, ETH_Y0, Amm
from vperp.funding import WAD, clamp, evolve, tdiv


def sample_premium(system, ch, chain, trader, base, hold=False):
    """Trade `base` ETH at the first second of an hour, poke a funding window (W hours) later so the funding
    TWAPs hold only the post-trade price (a new target), and poke again 1,000 s later (the applied rate has moved
    toward it).

    Returns (spot after the trade, index). The trade is the market's first block of its hour: it writes that
    hour's observation before it moves the vAMM (and samples the flat history before it: target 0). W hours
    later that hour is the oldest of the last W a block touched, so its observation anchors the funding TWAPs:
    the mark TWAP equals the spot exactly, the index TWAP the index (the vAMM and the feed have not moved since;
    the feed re-posts its answer, unchanged, the second before the poke so that it is not stale).

    The hour after, the trade's hour has left the window: without `hold` the next sample is anchored at the
    sampling poke's hour, and its span (the seconds since that poke) is padded to the window at premium 0, so
    the target drops to about that span's share of the premium. With `hold` a poke also touches the hour after
    the trade (its first second), which anchors that next sample: it spans a whole window of the post-trade price
    too, so the target stays where the step set it for another hour. That poke samples the premium's first hour
    (padded: about 1/W of it), which the applied rate approaches for W - 1 hours before the step.
    """
    system.fund(trader, 1_000_000)
    h = next_hour(chain.pending_timestamp)
    chain.pending_timestamp = h
    ch.openPosition(0, 1, base, BIG, h + 60, sender=trader)
    if hold:
        repost_answer(system, chain, h + HOUR - 1)
        chain.pending_timestamp = h + HOUR
        ch.pokeFunding(1, sender=trader)
    repost_answer(system, chain, h + W * HOUR - 1)
    chain.pending_timestamp = h + W * HOUR
    ch.pokeFunding(1, sender=trader)
    chain.pending_timestamp += 1000
    ch.pokeFunding(1, sender=trader)
    st = ch.marketState(1)
    return st.quoteReserve * WAD // st.baseReserve, ch.indexPrice(1)


def test_fundingstate_target_equals_premium_over_period_after_a_long_skews_the_vamm(system, ch, chain, alice, deployer):
    lift_cap(ch, deployer)  # the rule at a 0.1 %/h cap (a 0.9 % fee): the target below it
    spot, index = sample_premium(system, ch, chain, alice, 100 * WAD)
    assert spot > index
    applied, target, premium, mark_twap, index_twap, p1h, p8h = ch.fundingState(1)
    assert mark_twap == spot and index_twap == index
    expected_premium = (spot - index) * WAD // index  # positive: truncation == floor
    assert premium == expected_premium
    term = skew_term(ch)
    assert ch.skewFunding(1) == (2_000, term) and term > 0  # the listing default, on a 100 ETH net long
    # The target's skew term is the mean skew over the funding window: the trade was the first block of the
    # window's oldest hour, so the 100 ETH long (101 bps of the 9,900 base reserve, as every later block found it)
    # held over the whole span, whatever second the view runs at: area = bps x span.
    bps = skew_bps(ch)
    assert bps == 100 * 10**4 // 9_900 == 101
    span = W * HOUR  # any span: the same mean
    mean_term = mean_skew_term(bps * span, 2_000, span)
    assert mean_term == 101 * 2_000 * 10**8 < term  # bps-quantised, so a little below the exact term
    assert target == clamp(expected_premium // PERIOD + mean_term, CAP) < CAP
    assert 0 < applied <= target  # moving up toward the target, not past it
    assert p1h == evolve(applied, target, 3600, TAU, V)[0]
    assert p8h == evolve(applied, target, 8 * 3600, TAU, V)[0]
    assert applied < p1h < p8h <= target


def test_funding_state_is_neutral_on_a_fresh_market(ch):
    applied, target, premium, mark_twap, index_twap, p1h, p8h = ch.fundingState(2)
    assert (applied, target, premium, p1h, p8h) == (0, 0, 0, 0, 0)
    assert mark_twap == index_twap == 60_000 * WAD


def test_applied_rate_follows_the_kernel_between_pokes(system, ch, chain, alice):
    assert ch.fundingParams(1).smoothingTau == TAU  # the listing default the kernel runs with
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


def test_premium_step_moves_rate_at_most_velocity_per_hour(system, ch, chain, alice, deployer):
    """A +5 % step in one block (buy 250 of 10,000 virtual base: price x (10000/9750)^2), then a keeper's poke every
    hour, as production has them: each hour's sample counts one more hour of the step in the day-long mean, so the
    target climbs and reaches the cap (5 %/24 h > cap) within the window; between two pokes the applied rate moves
    toward it by at most the velocity x the time, never past the cap."""
    lift_cap(ch, deployer)  # the rule at a 0.1 %/h cap (a 0.9 % fee)
    system.fund(alice, 1_000_000)
    h = next_hour(chain.pending_timestamp)
    chain.pending_timestamp = h
    ch.openPosition(0, 1, 250 * WAD, BIG, h + 60, sender=alice)
    st = ch.marketState(1)
    prev_rate, prev_t, targets = st.fundingRate, st.lastUpdate, []
    for k in range(1, W + 1):
        repost_answer(system, chain, h + k * HOUR - 1)
        chain.pending_timestamp = h + k * HOUR
        tx = ch.pokeFunding(1, sender=alice)
        assert len(tx.events.filter(ch.FundingSampled)) == 1  # each hour's first block samples
        st = ch.marketState(1)
        assert 0 <= st.fundingRate - prev_rate <= V * (st.lastUpdate - prev_t) // 3600
        assert st.fundingRate <= st.targetRate <= CAP
        targets.append(st.targetRate)
        prev_rate, prev_t = st.fundingRate, st.lastUpdate
    assert all(a <= b for a, b in zip(targets, targets[1:])) and targets[0] < CAP // 4
    assert targets[-1] == CAP  # the step's premium / 24 is above the cap once enough of the window holds it


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
    lift_cap(ch, deployer)  # from a 0.1 %/h cap (a 0.9 % fee)
    # held, so that the sample the change's accrual takes (the next hour's first block) is the cap again
    sample_premium(system, ch, chain, alice, 250 * WAD, hold=True)
    chain.pending_timestamp += 3600
    new = (2 * 10**14, V, 0, TAU, PERIOD)
    tx = ch.setFundingParams(1, new, sender=deployer)
    st = ch.marketState(1)
    assert st.lastUpdate == tx.timestamp  # accrued at the old parameters up to the change
    (sample,) = tx.events.filter(ch.FundingSampled)  # the hour's first block: sampled at the old cap
    assert sample.targetRate == CAP
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
    lift_cap(ch, deployer, market=2)  # a baseline at most the cap: 0.1 %/h (a 0.9 % fee)
    ch.setFundingParams(2, (CAP, V, 10**13, TAU, PERIOD), sender=deployer)
    chain.pending_timestamp = next_hour(chain.pending_timestamp)  # the target is re-sampled by the hour's first block
    tx = ch.pokeFunding(2, sender=alice)
    (sample,) = tx.events.filter(ch.FundingSampled)
    assert sample.premium == 0 and sample.markTwap == sample.indexTwap  # the flat market: no premium
    assert sample.targetRate == ch.marketState(2).targetRate == 10**13


# ---------------------------------------------------------------------------- the hourly sample


def test_target_is_resampled_by_the_first_block_of_each_hour_from_the_funding_twaps(system, ch, chain, alice):
    """docs/funding.md: the target in force is re-sampled once an hour, by the market's first update in a new
    hour; pokes every quarter window inside the hour (each writes a ring observation) leave it, while the view
    shows the target the TWAPs imply by then. The sample is clamp(premium / 24 + skew term), the premium from the
    funding TWAPs and the skew term from the mean skew over the same span, about the funding window: here the
    market is younger, so from the listing, and the span is padded to the whole window at premium 0 and skew 0
    (mark and index at the span's mean index for the missing seconds; the 15-minute TWAPs of `twaps` play no part).
    Chain and vperp.model agree to the wei."""
    model = chain_model(system, ch, chain)
    tl = ch.marketState(1).lastUpdate  # the listing: price 3000, index 3000 since
    units = system.fund(alice, 1_000_000)
    model.deposit(alice.address, 0, units)
    amm = Amm(ETH_X0, ETH_Y0)
    assert amm.price == ch.spotPrice(1) == 3000 * WAD == ch.indexPrice(1)

    tx = ch.openPosition(0, 1, 100 * WAD, BIG, chain.pending_timestamp + 60, sender=alice)
    t_trade = tx.timestamp
    model.open_position(alice.address, 0, 1, 100 * WAD, BIG, t_trade, t_trade + 60)
    amm.trade(100 * WAD)
    spot, index = amm.price, 3000 * WAD
    assert ch.spotPrice(1) == spot
    assert ch.marketState(1).targetRate == 0  # nothing sampled the skew yet
    # the skew every later block finds: 100 ETH long on the 9,900 left in the base reserve, in bps (truncated);
    # the trade's own block found none (the skew sum grows by 0 up to it)
    bps = tdiv(100 * WAD * 10**4, amm.x)
    assert bps == skew_bps(ch) == 101

    def expected_sample(t):
        """(markTwap, indexTwap, premium, target) over [listing, t], padded to the window: 3000 and no skew until
        the trade, the spot and the 101 bps after, then the window's missing seconds at the last index (3000, the
        mark too) and no skew."""
        span = t - tl
        assert span < W * HOUR  # the window reaches back to the listing: padded
        pad = (W * HOUR - span) * index
        mark_twap = (3000 * WAD * (t_trade - tl) + spot * (t - t_trade) + pad) // (W * HOUR)
        assert (index * span + pad) // (W * HOUR) == index  # the index TWAP: the feed's 3000 throughout
        premium = tdiv((mark_twap - index) * WAD, index)
        term = mean_skew_term(0 * (t_trade - tl) + bps * (t - t_trade), 2_000, W * HOUR)
        assert 0 < term < bps * 2_000 * 10**8 * (t - t_trade) // (W * HOUR) + 1  # the skew's seconds' share
        return mark_twap, index, premium, clamp(tdiv(premium, PERIOD) + term, CAP)

    def poke(t):
        chain.pending_timestamp = t
        tx = ch.pokeFunding(1, sender=alice)
        model.poke_funding(1, t)
        assert tx.timestamp == t and model.market_state(1, t) == tuple(ch.marketState(1))
        return tx.events.filter(ch.FundingSampled)

    # The first block of the next hour samples the skew: a premium diluted over the window (the span since the
    # listing, padded at premium 0).
    h = next_hour(t_trade)
    (first,) = poke(h)
    mark1, index1, premium1, target1 = expected_sample(h)
    assert (first.markTwap, first.indexTwap, first.premium, first.targetRate) == (mark1, index1, premium1, target1)
    assert 0 < premium1 < tdiv((spot - index) * WAD, index) and target1 > 0
    assert ch.marketState(1).targetRate == model.markets[1].target == target1

    # Every quarter window of that hour: a poke, no sample; the target in force stays, the rate moves toward it.
    rate = ch.marketState(1).fundingRate
    for k in (1, 2, 3):
        assert poke(h + k * 900) == []
        st = ch.marketState(1)
        assert st.targetRate == model.markets[1].target == target1
        assert rate < st.fundingRate < target1
        rate = st.fundingRate
        implied = ch.fundingState(1)
        assert implied.targetRate == expected_sample(h + k * 900)[3] > target1  # what a sample would set now
        assert tuple(implied) == model.funding_state(1, h + k * 900)

    # The first block of the hour after: a new sample, from the TWAPs since the listing (not from the ring's).
    t2 = h + HOUR + 120
    (second,) = poke(t2)
    mark2, index2, premium2, target2 = expected_sample(t2)
    assert (second.markTwap, second.indexTwap, second.premium, second.targetRate) == (mark2, index2, premium2, target2)
    assert premium1 < premium2 and target1 < target2 < CAP
    assert second.appliedRate == ch.marketState(1).fundingRate == model.markets[1].rate
    assert ch.marketState(1).targetRate == model.markets[1].target == target2
    assert tuple(ch.twaps(1)) == (spot, index) != (mark2, index2)  # the 15-minute TWAPs hold only the spot


def test_funding_twaps_anchor_at_the_hourly_observation_a_window_back(system, ch, chain, alice, deployer):
    """Once the market is older than the funding window (W hours), the first block of an hour H takes the funding
    TWAPs from the hourly observation of hour H - W (the accumulator as that hour's first block left it) to now;
    when no block touched H - W, from the oldest hour after it that a block touched. Checked against the sums of
    the prices set here: every hour the feed moves, a poke is the market's first block of the hour (it records the
    new index) and a trade moves the vAMM (and Alice's position, the skew); one hour sees no block at all. The
    skew term is the mean skew over the same span, from the skew sum of the same hourly observation; a span shorter
    than the window (the anchor less than W hours back) is padded to it at premium 0 and skew 0, mark and index at
    the span's mean index. Chain and vperp.model agree to the wei."""
    eth = system.markets["ETH"]
    model = chain_model(system, ch, chain)
    st0 = ch.marketState(1)
    tl = st0.lastUpdate
    units = system.fund(alice, 1_000_000)
    model.deposit(alice.address, 0, units)
    amm = Amm(ETH_X0, ETH_Y0)
    assert amm.price == st0.spotPrice and st0.lastIndexPrice == 3000 * WAD
    assert st0.longOpenInterest == st0.shortOpenInterest == 0 and ch.skewFunding(1).ratePpm == 2_000
    size = 0  # Alice's position, the market's only one: long OI - short OI

    # The market's blocks and the feed's rounds: (timestamp, vAMM price after it, index from it on, skew after it in
    # bps). Between two of them the TWAP sums grow by the first's prices and the skew sum by its skew (what the
    # second finds); the hourly observation of an hour is the sums at its first block.
    blocks = [(tl, amm.price, 3000 * WAD, 0)]
    first_block = {tl // HOUR: tl}  # hour -> its first block (the listing's hour: the listing)

    def sums(a, b):
        mark = index = skew = 0
        for i, (t, p, q, s) in enumerate(blocks):
            end = blocks[i + 1][0] if i + 1 < len(blocks) else b
            lo, hi = max(t, a), min(end, b)
            if hi > lo:
                mark += p * (hi - lo)
                index += q * (hi - lo)
                skew += s * (hi - lo)
        return mark, index, skew

    window = W * HOUR

    def twaps(a, b, last_index):
        """The funding TWAPs over [a, b]; a span shorter than the window padded to it at premium 0 (mark and index
        at the span's mean index, one floor over the pad; `last_index`, the index the sampling block recorded, for an empty
        span)."""
        mark_sum, index_sum, _ = sums(a, b)
        span = b - a
        if span < window:
            pad = (window - span) * index_sum // span if span else window * last_index
            mark_sum, index_sum, span = mark_sum + pad, index_sum + pad, window
        return mark_sum // span, index_sum // span

    def skew_mean_term(a, b):
        return mean_skew_term(sums(a, b)[2], 2_000, max(b - a, window))  # the padding adds no skew

    def mine(tx, index_recorded):
        st = ch.marketState(1)
        assert st.spotPrice == amm.price and st.lastIndexPrice == index_recorded
        assert st.longOpenInterest - st.shortOpenInterest == size
        bps = tdiv(size * 10**4, amm.x)
        assert bps == skew_bps(ch)
        first_block.setdefault(tx.timestamp // HOUR, tx.timestamp)
        blocks.append((tx.timestamp, amm.price, index_recorded, bps))

    # The rule at a 0.1 %/h cap, which its taker fee must allow (0.9 %): every target below it. Both setters accrue
    # the market (at the recorded index, not the feed's), so both are market blocks.
    from helpers.governance import mp_tuple
    from vperp.model import FundingParams

    tx = ch.setMarketParams(1, mp_tuple(ch.marketParams(1), takerFee=9 * CAP), ch.insuranceFeeShare(1), sender=deployer)
    model.set_market_params(1, tx.timestamp, taker_fee=9 * CAP)
    mine(tx, 3000 * WAD)
    tx = ch.setFundingParams(1, (CAP, V, 0, TAU, PERIOD), sender=deployer)
    model.set_funding_params(1, FundingParams(CAP, V, 0, TAU, PERIOD), tx.timestamp)
    mine(tx, 3000 * WAD)

    h0 = next_hour(chain.pending_timestamp)
    skipped = h0 // HOUR + 3  # no block in this hour
    checked = {}
    padded = 0  # samples whose span was shorter than the window
    for k in range(W + 4):  # through the hour W after the one without a block (k = 3)
        hour = h0 // HOUR + k
        if hour == skipped:
            continue
        start = hour * HOUR
        price = 3000 + 7 * k * (-1) ** k  # the feed, in whole dollars
        answer = price * 10**8
        chain.pending_timestamp = start + 11 * k  # not always the hour's first second
        tx = eth.oracle.updateAnswer(answer, sender=deployer)
        model.set_answer(1, answer, tx.timestamp)
        prev = blocks[-1][0]  # the market's last block
        # The round counts from its own time (ClearingHouseAccrual._indexArea), not from the poke that records it:
        # in the sums it starts a span at the new index, the vAMM and the skew as the last block left them.
        blocks.append((tx.timestamp, blocks[-1][1], answer * 10**10, blocks[-1][3]))
        chain.pending_timestamp = start + 11 * k + 5
        tx = ch.pokeFunding(1, sender=alice)
        model.poke_funding(1, tx.timestamp)
        now = tx.timestamp
        (sample,) = tx.events.filter(ch.FundingSampled)  # the hour's first block samples
        # The anchor: the oldest of the last W hours that a block touched (the listing's counts).
        touched = [hh for hh in range(hour - W, hour) if hh in first_block]
        anchor = first_block[touched[0]] if touched else prev
        if hour - W > tl // HOUR:
            assert anchor == first_block.get(hour - W, first_block.get(hour - W + 1))  # older than the window
            checked[hour] = anchor
            later = first_block[min(hh for hh in touched if first_block[hh] > anchor)]
            assert (sample.markTwap, sample.indexTwap) != twaps(later, now, price * WAD)  # the anchor is told apart
            assert skew_mean_term(anchor, now) != skew_mean_term(later, now)  # for the skew sum too
        if now - anchor < window:
            padded += 1
        assert hour != skipped + W or now - anchor < window  # anchored an hour late: padded
        assert (sample.markTwap, sample.indexTwap) == twaps(anchor, now, price * WAD)
        premium = tdiv((sample.markTwap - sample.indexTwap) * WAD, sample.indexTwap)
        assert sample.premium == premium
        term = skew_mean_term(anchor, now)
        assert (term > 0) == (k > 0)  # Alice's net long since the first hour's trade
        assert sample.targetRate == clamp(tdiv(premium, PERIOD) + term, CAP)
        assert abs(sample.targetRate) < CAP  # not clamped: the skew term is seen to the wei
        assert model.market_state(1, now) == tuple(ch.marketState(1))
        mine(tx, price * WAD)
        # a trade later in the hour moves the vAMM (alternately up and down); it samples nothing
        base = (20 if k % 2 == 0 else -15) * WAD
        chain.pending_timestamp = now + 600
        tx = ch.openPosition(0, 1, base, BIG if base > 0 else 0, now + 660, sender=alice)
        model.open_position(alice.address, 0, 1, base, BIG if base > 0 else 0, tx.timestamp, now + 660)
        assert tx.events.filter(ch.FundingSampled) == []
        amm.trade(base)
        size += base
        mine(tx, price * WAD)
        assert model.market_state(1, tx.timestamp) == tuple(ch.marketState(1))
    # W hours back was touched (the anchor is that hour's first block) in every checked hour but one: W hours
    # after the hour without a block, the next hour's first block is the anchor.
    assert checked and all(anchor == first_block[hour - W] for hour, anchor in checked.items() if hour - W != skipped)
    assert checked[skipped + W] == first_block[skipped + 1]
    # padded: the first hours (the window reaches back to the listing, or to the last update), and the hour W after
    # the one without a block (its anchor, the next hour's first block, is less than W hours back)
    assert padded >= 2


# ---------------------------------------------------------------------------- the skew term: the window's mean


# The largest cap the listing's time constant allows (the taker fee at its 1 % bound, over 9 hours: 0.111 %/h), over a
# 72-hour period: a 300 ETH skew's premium (about 6 %, 0.087 %/h) and skew term stay inside it.
RAISED_CAP = 10**16 // 9
RAISED_PERIOD = 72
PPM = 2_000  # DEFAULT_SKEW_FUNDING_PPM


def raise_cap(ch, deployer, model=None):
    """The taker fee at its bound and setFundingParams with RAISED_CAP over RAISED_PERIOD (the listing's other
    defaults), so that a sample's target is never clamped and its skew term is seen to the wei; returns the
    setFundingParams block's timestamp (`lift_fee` first makes it the only block)."""
    return lift_cap(ch, deployer, RAISED_CAP, model=model, period=RAISED_PERIOD)


def skew_part(sample):
    """The skew term of a FundingSampled target that was not clamped (baseline 0): target - premium / RAISED_PERIOD."""
    assert abs(sample.targetRate) < RAISED_CAP
    return sample.targetRate - tdiv(sample.premium, RAISED_PERIOD)


def test_skew_term_is_the_time_weighted_mean_skew_of_the_window(system, ch, chain, alice, bob, deployer):
    """The sampled target's skew term is the mean of the skew over the funding window, each block's skew (in bps of
    the base reserve, as the block found the market) weighted by the seconds it held: no skew for the window's
    first hour, then a long, a net short (W - 7 hours of it), a larger net short and a smaller long (about the
    window's last two hours each), changed by trades at known seconds. trunc(sum(bps_i x dt_i) x ppm x 1e8 / span),
    computed here from the sizes traded and the reserves they leave; the premium from the vAMM prices. The feed
    re-posts its answer (unchanged) the second before each block of the market, so that it stays fresh over the
    window. Chain and vperp.model agree to the wei."""
    assert W >= 8  # room for the schedule below: the net short holds W - 7 hours
    model = chain_model(system, ch, chain)
    for who in (alice, bob):
        model.deposit(who.address, 0, system.fund(who, 1_000_000))
    st0 = ch.marketState(1)
    amm = Amm(ETH_X0, ETH_Y0)
    assert (st0.baseReserve, st0.spotPrice, st0.lastIndexPrice) == (amm.x, amm.price, 3000 * WAD)
    assert st0.longOpenInterest == st0.shortOpenInterest == 0 and ch.skewFunding(1).ratePpm == PPM

    lift_fee(ch, deployer, RAISED_CAP, model=model)  # first, so that raise_cap is one block
    h0 = next_hour(chain.pending_timestamp)
    chain.pending_timestamp = h0  # the first block of hour h0: its hourly observation anchors the sample below
    assert raise_cap(ch, deployer, model) == h0
    net = 0
    held = [(h0, 0, amm.price)]  # (from, skew in bps, vAMM price) after each block that changed them

    def trade(t, who, base, close=False):
        nonlocal net
        repost_answer(system, chain, t - 1, model)
        chain.pending_timestamp = t
        limit = BIG if base > 0 else 0
        if close:
            tx = ch.closePosition(0, 1, limit, t + 60, sender=who)
            model.close_position(who.address, 0, 1, limit, t, t + 60)
        else:
            tx = ch.openPosition(0, 1, base, limit, t + 60, sender=who)
            model.open_position(who.address, 0, 1, base, limit, t, t + 60)
        assert tx.timestamp == t
        amm.trade(base)
        net += base
        bps = tdiv(net * 10**4, amm.x)
        assert bps == skew_bps(ch) and ch.marketState(1).baseReserve == amm.x
        held.append((t, bps, amm.price))
        assert model.market_state(1, t) == tuple(ch.marketState(1))

    trade(h0 + HOUR + 300, alice, 300 * WAD)  # 300 / 9,700: 309 bps
    trade(h0 + 3 * HOUR + 1_234, bob, -500 * WAD)  # -200 / 10,200: -196 bps
    trade(h0 + (W - 4) * HOUR + 77, alice, -100 * WAD)  # -300 / 10,300: -291 bps
    trade(h0 + (W - 2) * HOUR + 2_000, bob, 500 * WAD, close=True)  # 200 / 9,800: 204 bps
    assert [b for _, b, _ in held] == [0, 309, -196, -291, 204]

    ts = h0 + W * HOUR + 42  # the first block of hour h0 + W samples over [h0, ts]
    repost_answer(system, chain, ts - 1, model)
    chain.pending_timestamp = ts
    tx = ch.pokeFunding(1, sender=alice)
    model.poke_funding(1, ts)
    (sample,) = tx.events.filter(ch.FundingSampled)
    span = ts - h0
    ends = [t for t, _, _ in held[1:]] + [ts]
    area = sum(bps * (end - t) for (t, bps, _), end in zip(held, ends))
    mark_twap = sum(p * (end - t) for (t, _, p), end in zip(held, ends)) // span
    assert area == (0 * (HOUR + 300) + 309 * (2 * HOUR + 934) - 196 * ((W - 7) * HOUR - 1_157)
                    - 291 * (2 * HOUR + 1_923) + 204 * (2 * HOUR - 1_958))
    term = mean_skew_term(area, PPM, span)
    assert (sample.markTwap, sample.indexTwap) == (mark_twap, 3000 * WAD)
    premium = tdiv((mark_twap - 3000 * WAD) * WAD, 3000 * WAD)
    assert sample.premium == premium
    assert sample.targetRate == tdiv(premium, RAISED_PERIOD) + term == ch.marketState(1).targetRate
    assert skew_part(sample) == term
    # neither a point sample of the skew (as the sampling block found it) nor the instantaneous term
    assert term not in (204 * PPM * 10**8, skew_term(ch))
    assert term < 0 < skew_bps(ch)  # net long at the sample, but the net shorts of hours 3 to W - 2 outweigh it
    # the model: the same sample, to the wei
    assert model.markets[1].target == sample.targetRate
    assert model.market_state(1, ts) == tuple(ch.marketState(1))
    assert model.funding_state(1, ts) == tuple(ch.fundingState(1))


def test_a_skew_flipped_around_the_hourly_sample_moves_the_target_by_its_seconds_share(
        system, ch, vault, chain, alice, bob, deployer):
    """The attack the point sample invited: on an honest net long market (Alice, 300 ETH) sampled hourly, Bob opens
    a large short (600 ETH) in the last block before the hour boundary, lets the hour's first block sample, and
    closes in the block after. The sample's skew term is the window's mean: Bob's flip counts for the second it
    held, so against a control run without him (same blocks otherwise, from an evm snapshot) the skew term moves by
    at most (his skew change in bps x 1 s / span) x ppm x 1e8 + 1 wei; the premium likewise takes his price for
    that second only. He paid the fees of the round trip. A point sample (the rule before) would have taken his
    whole flipped skew: the effect now is far below 1 % of that."""
    system.fund(alice, 1_000_000)
    system.fund(bob, 1_000_000)
    raise_cap(ch, deployer)
    h0 = next_hour(chain.pending_timestamp)
    chain.pending_timestamp = h0  # the first block of hour h0: the window's anchor W hours later
    ch.openPosition(0, 1, 300 * WAD, BIG, h0 + 60, sender=alice)
    honest_spot, index = ch.spotPrice(1), ch.indexPrice(1)
    honest_bps = skew_bps(ch)
    assert honest_bps == 300 * 10**4 // 9_700 == 309 and index == 3000 * WAD
    for k in range(1, W):  # sampled hourly; the feed re-posts its answer (unchanged) first, so it stays fresh
        repost_answer(system, chain, h0 + k * HOUR - 1)
        chain.pending_timestamp = h0 + k * HOUR
        assert len(ch.pokeFunding(1, sender=alice).events.filter(ch.FundingSampled)) == 1
    boundary = h0 + W * HOUR
    span = boundary - h0

    snap = chain.snapshot()
    chain.pending_timestamp = boundary  # control: the hour's first block samples the honest market
    (control,) = ch.pokeFunding(1, sender=alice).events.filter(ch.FundingSampled)
    # the honest long held over the whole window: its skew and its price, exactly
    assert (control.markTwap, control.indexTwap) == (honest_spot, index)
    assert skew_part(control) == mean_skew_term(honest_bps * span, PPM, span) == honest_bps * PPM * 10**8
    old_control = skew_term(ch)  # what the point sample took: the instantaneous term as the block found the market

    chain.restore(snap)
    collateral_before = vault.collateral(bob, 0)
    chain.pending_timestamp = boundary - 1  # the attacker's short, 1 s before the hour
    tx = ch.openPosition(0, 1, -600 * WAD, 0, boundary + 60, sender=bob)
    assert tx.events.filter(ch.FundingSampled) == []  # not the hour's first block: no sample
    attack_spot, attack_bps = ch.spotPrice(1), skew_bps(ch)
    assert attack_bps == tdiv(-300 * 10**4, 10_300) == -291  # flipped: net short
    old_attack = skew_term(ch)
    chain.pending_timestamp = boundary  # the hour's first block samples
    (attacked,) = ch.pokeFunding(1, sender=alice).events.filter(ch.FundingSampled)
    chain.pending_timestamp = boundary + 1  # the attacker closes in the next block
    tx = ch.closePosition(0, 1, BIG, boundary + 60, sender=bob)
    assert tx.events.filter(ch.FundingSampled) == []
    assert ch.marketState(1).targetRate == attacked.targetRate  # in force for the hour
    assert vault.collateral(bob, 0) < collateral_before  # the round trip's fees (and spread) came out of his margin

    seconds = 1  # the sampling block found Bob's skew, which held from boundary - 1
    shift = attack_bps - honest_bps  # his skew change, in bps
    # the skew term: the mean over the window, with his skew for its second
    attacked_term = skew_part(attacked)
    assert attacked_term == mean_skew_term(honest_bps * (span - seconds) + attack_bps * seconds, PPM, span)
    moved = attacked_term - skew_part(control)
    assert moved < 0 and abs(moved) <= abs(shift) * seconds * PPM * 10**8 // span + 1
    # the premium: his price for that second too
    assert attacked.markTwap == (honest_spot * (span - seconds) + attack_spot * seconds) // span
    premium_bound = mul_div_up(abs(attack_spot - honest_spot) * seconds // span + 1, WAD, index * RAISED_PERIOD) + 2
    assert abs(tdiv(attacked.premium, RAISED_PERIOD) - tdiv(control.premium, RAISED_PERIOD)) <= premium_bound
    effect = abs(attacked.targetRate - control.targetRate)
    assert 0 < effect <= abs(moved) + premium_bound
    # before: the point sample would have swapped the honest skew term for the attacker's, the whole flip
    old_effect = old_control - old_attack
    assert old_control == tdiv(300 * WAD * WAD * PPM, 9_700 * WAD * 10**6)
    assert old_attack == tdiv(-300 * WAD * WAD * PPM, 10_300 * WAD * 10**6)
    assert old_effect > 10**14  # about 0.012 %/h, a third of a day's funding on the notional every 24 h
    assert effect * 100 < old_effect  # below 1 % of it (far less: 1 s of a W-hour span, mostly the premium)
    assert abs(moved) * 10_000 < old_effect  # the skew term's own move: below 0.01 % of it


def test_turning_the_skew_term_on_phases_it_in_over_the_window(system, ch, chain, alice, deployer):
    """With the skew term off (ppm 0) the skew sum does not grow, whatever the positions: a market listed with it off
    (set to 0 before any position) and a 300 ETH long samples no skew term. Turned on (ppm 2,000) at t_on, the next
    sample's term counts only the seconds since t_on over its span, the funding window (W hours), and each hourly
    sample after counts more (the one anchored at t_on too: its span, shorter than the window, is padded at skew
    0), until the window starts after t_on and the term is the full mean skew. The feed re-posts its answer
    (unchanged) the second before each sample, so that it stays fresh. Chain and vperp.model agree to the wei."""
    model = chain_model(system, ch, chain)
    model.deposit(alice.address, 0, system.fund(alice, 1_000_000))
    assert ch.marketState(1).longOpenInterest == ch.marketState(1).shortOpenInterest == 0
    h0 = next_hour(chain.pending_timestamp)
    chain.pending_timestamp = h0
    tx = ch.setSkewFunding(1, 0, sender=deployer)  # off before any position, as if listed so
    model.set_skew_funding(1, 0, h0)
    assert tx.timestamp == h0 and ch.skewFunding(1) == (0, 0)
    raise_cap(ch, deployer, model)
    chain.pending_timestamp = h0 + 10
    ch.openPosition(0, 1, 300 * WAD, BIG, h0 + 70, sender=alice)
    model.open_position(alice.address, 0, 1, 300 * WAD, BIG, h0 + 10, h0 + 70)
    assert ch.skewFunding(1) == (0, 0) and skew_bps(ch) == 0  # off: no skew counted

    def sample(t, call=None, mirror=None):
        repost_answer(system, chain, t - 1, model)
        chain.pending_timestamp = t
        tx = call() if call else ch.pokeFunding(1, sender=alice)
        (mirror or (lambda: model.poke_funding(1, t)))()
        assert tx.timestamp == t
        assert model.market_state(1, t) == tuple(ch.marketState(1))
        (s,) = tx.events.filter(ch.FundingSampled)
        return s

    for k in range(1, W + 2):  # the term off: every hourly sample is the premium's alone
        s = sample(h0 + k * HOUR)
        assert skew_part(s) == 0 and s.premium > 0

    t_on = h0 + (W + 2) * HOUR + 100  # the term off for more than a window before it
    # setSkewFunding accrues (and, the hour's first block, samples) first, with the term still off
    s = sample(t_on, lambda: ch.setSkewFunding(1, PPM, sender=deployer), lambda: model.set_skew_funding(1, PPM, t_on))
    assert skew_part(s) == 0
    bps = tdiv(300 * WAD * 10**4, 9_700 * WAD)
    assert bps == skew_bps(ch) == 309
    term_now = skew_term(ch)
    assert ch.skewFunding(1) == (PPM, term_now) and term_now > 0  # the instantaneous term: at once
    full = bps * PPM * 10**8  # the mean over a window the skew held throughout

    terms = []
    for k in range(W + 3, 2 * W + 4):
        t = h0 + k * HOUR
        # the first block of the hour W back: its first second, but t_on in t_on's hour
        anchor = t_on if k - W == W + 2 else h0 + (k - W) * HOUR
        s = sample(t)
        # nothing before t_on; a span shorter than the window (from t_on) padded to it at skew 0
        expected = mean_skew_term(bps * (t - max(t_on, anchor)), PPM, max(t - anchor, W * HOUR))
        assert skew_part(s) == expected
        assert model.markets[1].target == s.targetRate
        terms.append(expected)
    # the next sample after t_on: its 3,500 s of a W-hour span, not the whole window's skew
    assert terms[0] == tdiv(bps * 3_500 * PPM * 10**8, W * HOUR) < full // W
    assert all(a < b for a, b in zip(terms, terms[1:]))  # phased in, hour by hour
    # anchored at t_on itself: W hours less the 100 s before t_on (the padding counts them at skew 0, as the term
    # off did); then the window starts after t_on: the full mean
    assert terms[-2] == tdiv(bps * (W * HOUR - 100) * PPM * 10**8, W * HOUR) < full
    assert terms[-1] == full


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
    With the term off the same hold pays nothing. Held for W + 8 hours: the mean skew reaches the whole term once
    the window holds only the position."""
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
        for h in range(1, W + 9):  # held W + 8 hours, the keeper poking hourly
            chain.pending_timestamp = t + h * HOUR
            system.set_price("ETH", ch.spotPrice(1) // 10**10 / 10**8)
            ch.pokeFunding(1, sender=alice)
        assert abs(ch.fundingState(1).premium) < 10**14  # the mark stayed at the index (rounding of the feed)
        paid[ppm] = ch.position(alice, 0, 1).pendingFunding
    assert abs(paid[0]) < paid[2_000] / 50  # without the term: next to nothing
    assert paid[2_000] > 0  # with it, the heavy side pays, long or short
    # 300 ETH against a base reserve of about 9,700 (long) or 10,300 (short): a skew of about 3 %, so a term of
    # about 0.006 %/h (0.14 % a day). The day-long mean phases it in (the window before the trade counts at skew 0,
    # padded for a market younger than the window): over the first day about half of it, less the smoothing's lag,
    # then the whole term for the last 8 hours: about 0.1 % of the notional.
    notional = 300 * ch.indexPrice(1)
    assert notional * 8 // 10**4 < paid[2_000] < notional * 14 // 10**4



@pytest.fixture(scope="module")
def plain(deployer):
    """The plain markets (`plain_config()`: the listing's funding, period 24 h, time constant 2 h, and the cap the
    listing derives from the 10 bps fee, the fee / 9 per hour: 0.0111 %/h; trades direct)."""
    from vperp.config import plain_config
    from vperp.deployment import deploy

    return deploy(deployer, plain_config())


@pytest.mark.parametrize("half_hours", [13, 15, 17, 24])
def test_the_listings_funding_closes_the_oscillation_on_the_plain_markets(plain, chain, accounts, deployer,
                                                                          half_hours):
    """The funding oscillation (docs/security.md "Fixed: the funding oscillation") on the plain markets, which keep
    the listing's funding: 300 ETH flipped every H hours, six times, alone in the market (the index held, a keeper's
    poke every hour), collects the rate its previous side built. At the listing's former 0.1 %/h cap the 17-hour
    flips gained +26,626.66 USD and the pool's NAV lost 28,788.61. Listed now at the fee / 9 per hour, every interval
    around the kernel's best (15 hours at a 2-hour time constant) loses, and the pool and the insurance fund gain
    what the attacker loses. The setting that opened it can no longer be set: the cap the leak needed is refused."""
    ch, vault, pool = plain.clearing_house, plain.vault, plain.pool
    f = ch.fundingParams(1)
    fee = ch.marketParams(1).takerFee
    assert f.maxFundingRate == fee // 9 == 111_111_111_111_111  # the listing's cap at its 2-hour time constant
    with ape.reverts(ch.ParameterOutOfBounds, name=b"maxFundingRate".ljust(32, b"\0"), value=10**15):
        ch.setFundingParams(1, (10**15, *tuple(f)[1:]), sender=deployer)  # the former listing cap
    who, keeper = accounts[3], accounts[4]
    plain.fund(who, 500_000, 0)
    start = (vault.collateral(who, 0), pool.navWad(), vault.insuranceFund())
    size, t = 300 * WAD, chain.blocks.head.timestamp

    def at(gap: int) -> int:
        nonlocal t
        t += gap
        chain.pending_timestamp = t
        return t

    def trade(base: int) -> None:
        ch.openPosition(0, 1, base, 2**256 - 1 if base > 0 else 0, at(1) + 600, sender=who)

    trade(size)
    for flip in range(6):
        for _ in range(half_hours):
            at(3600 - 2)
            plain.set_price("ETH", 3000)
            at(1)
            ch.pokeFunding(1, sender=keeper)
        if flip < 5:
            trade(-2 * size if flip % 2 == 0 else 2 * size)
    ch.closePosition(0, 1, 2**256 - 1, at(1) + 600, sender=who)  # the last side is short: the close buys
    gain, d_nav, d_ins = (b - a for a, b in zip(start, (vault.collateral(who, 0), pool.navWad(), vault.insuranceFund())))
    print(f"plain markets, 300 ETH flipped every {half_hours} h: attacker {gain / WAD:+,.2f} USD, pool NAV "
          f"{d_nav / WAD:+,.2f}, insurance {d_ins / WAD:+,.2f}")
    assert d_nav + d_ins == -gain  # closed: the pool's NAV is its cash, and only the attacker traded
    assert gain < 0 and d_nav > 0 and d_ins > 0
