"""The day-long funding window across gaps: after a day without blocks and after a listing (the review of
8347122, docs/funding.md "The rule" / "As built").

Findings 1 and 2 (fixed): the funding TWAPs and the mean skew ran from the oldest hour of the last day a block
touched, so after a day without blocks, and after a listing, the next hour's sample spanned only the seconds since
that block: a push held for one second was the whole sample and set the target to the cap (after a quiet day the
attacker's short netted +2,266.46 USD over the push's fees). Fix: a span shorter than the window is padded to the
whole window at premium 0 and skew 0 (mark and index at the last index). The first two tests run both attacks end
to end and now assert what holds: the push moves each sample's target by its seconds' share of the window, the
honest position pays no more than that share, and the attacker loses his fees.

Also checked: vperp.model mirrors _accrue / _fundingTwaps / _skewBps / fundingState to the wei over negative skews and
premiums, idle gaps (short, ~a day, over a day), a view in the block of a post-gap update, and depth syncs.
"""
import random

import ape

from helpers.clock import HOUR, next_hour
from helpers.funding import BIG, PERIOD, W, chain_model, mean_skew_term, mul_div_up, repost_answer, skew_bps
from helpers.trading import b32
from vperp.funding import WAD, tdiv

USD = WAD  # the quote is wad USD
WINDOW = W * HOUR  # the funding window [s]


def _touch_free_gap(system, chain, start, end):
    """Keep ETH's feed fresh (24 h heartbeat) from `start` to `end` without touching any market."""
    t = start
    while t + 20 * HOUR < end:
        t += 20 * HOUR
        repost_answer(system, chain, t)
    repost_answer(system, chain, end - 2)


def _seconds_share(push_spot, base_spot, index, bps, ppm, seconds):
    """The most a push held for `seconds` of a sample's window can move its target against the control's [wad per
    hour]: the push's premium over the control's mark, times seconds / window, over the funding period, plus its
    skew (bps, against none in the control) over the same share, plus 4 wei of rounding (the mark TWAP, the premium
    and the division by the period floor once each; an open and close leave the vAMM a few wei of quote off)."""
    premium = mul_div_up(push_spot - base_spot, WAD, index)
    return mul_div_up(premium, seconds, WINDOW * PERIOD) + mean_skew_term(bps * seconds, ppm, WINDOW) + 4


def _funding_bound(size, rate_bound, seconds, index, accruals):
    """The most `size` base can pay over `seconds` at an applied rate at most `rate_bound` above the control's:
    rate x time x index / (1 h x WAD) per base, rounded up, plus a wei per accrual (each floors the funding index)."""
    per_base = mul_div_up(rate_bound * seconds, index, HOUR * WAD) + accruals
    return mul_div_up(size, per_base, WAD)


def test_after_a_day_without_blocks_a_one_second_push_moves_the_target_by_its_seconds_share(
        system, ch, vault, chain, alice, bob):
    """Alice (honest) is long 1,000 ETH, Bob short 1,000 ETH: net zero, vAMM at the index, target ~0. Then no block
    touches ETH for a day (keeper down, or a feed outage: every touch reverts while the feed is stale). Bob is the
    first block after the gap, in the last second of hour H, and pushes the vAMM with a 120 ETH long (subaccount 1);
    he pokes at the first second of hour H + 1 and closes the push in the next block. The sample at H + 1 is anchored
    at Bob's block (the only hour of the last 24 a block touched): its span is 1 s, padded to the window at premium 0
    and skew 0, so his price and skew count for 1 s of a day. Against a control (same blocks, a poke instead of the
    push), every sample's target moves by at most the push's seconds' share (1 s, then the 2 s the push held for the
    12 hourly samples after), Alice's applied rate by no more, Alice pays no more than that share over the 12 hours,
    and Bob's short receives cents against the push's fees. Before the fix the sample at H + 1 was Bob's price alone:
    the target went to the cap for the hour and Bob netted +2,266.46 USD (the reviewer's run)."""
    for who in (alice, bob):
        system.fund(who, 2_000_000)
    system.fund(bob, 100_000, 1)
    h0 = next_hour(chain.pending_timestamp)
    for i in range(5):  # 200 ETH a trade (the 10 % band)
        chain.pending_timestamp = h0 + 10 + 2 * i
        ch.openPosition(0, 1, 200 * WAD, BIG, h0 + 100, sender=alice)
        chain.pending_timestamp = h0 + 11 + 2 * i
        ch.openPosition(0, 1, -200 * WAD, 0, h0 + 100, sender=bob)
    assert ch.marketState(1).baseReserve == 10_000 * WAD  # net zero
    ppm = ch.skewFunding(1).ratePpm
    assert ppm == 2_000 and ch.fundingParams(1).fundingPeriodHours == PERIOD

    t1 = h0 + 26 * HOUR - 1  # last second of hour H = h0 + 25: hours h0 + 1 .. H - 1 saw no block
    _touch_free_gap(system, chain, h0 + 19, t1)
    snap = chain.snapshot()

    def run(attack: bool):
        chain.pending_timestamp = t1
        if attack:
            tx = ch.openPosition(1, 1, 120 * WAD, BIG, t1 + 100, sender=bob)
        else:
            tx = ch.pokeFunding(1, sender=alice)
        assert tx.timestamp == t1
        (first,) = tx.events.filter(ch.FundingSampled)  # the gap's own sample (anchor = the pre-gap accumulator)
        spot, bps = ch.spotPrice(1), skew_bps(ch)  # as the next blocks find the market
        chain.pending_timestamp = t1 + 1
        (sample,) = ch.pokeFunding(1, sender=alice).events.filter(ch.FundingSampled)
        chain.pending_timestamp = t1 + 2
        if attack:
            ch.closePosition(1, 1, 0, t1 + 100, sender=bob)
        else:
            ch.pokeFunding(1, sender=alice)
        cf0 = ch.marketState(1).cumulativeFunding
        samples, rates = [sample], [ch.marketState(1).fundingRate]
        for k in range(1, 13):  # the keeper pokes every hour for 12 h (the feed re-posted first)
            repost_answer(system, chain, t1 + 1 + k * HOUR - 1)
            chain.pending_timestamp = t1 + 1 + k * HOUR
            (s,) = ch.pokeFunding(1, sender=alice).events.filter(ch.FundingSampled)
            samples.append(s)
            rates.append(ch.marketState(1).fundingRate)
        paid = ch.position(alice, 0, 1).pendingFunding
        received = -ch.position(bob, 0, 1).pendingFunding
        return first, spot, bps, samples, rates, ch.marketState(1).cumulativeFunding - cf0, paid, received

    c_first, c_spot, c_bps, control, c_rates, c_cf, c_paid, c_recv = run(False)
    chain.restore(snap)
    push_collateral = vault.collateral(bob, 1)
    a_first, a_spot, a_bps, attacked, a_rates, a_cf, a_paid, a_recv = run(True)
    fees = push_collateral - vault.collateral(bob, 1)  # the push's round trip: fees (and vAMM rounding, funding)
    index = ch.marketState(1).lastIndexPrice
    assert index == 3000 * WAD

    assert a_first.targetRate == c_first.targetRate  # the gap's sample is the same (only pre-block prices count)
    assert abs(control[0].targetRate) < 10**11  # honest: ~0 (vAMM at the index, no skew)
    assert c_bps == 0 and a_bps == tdiv(120 * 10**4, 9_880) == 121 and a_spot > c_spot * 1024 // 1000  # +2.4 %
    # (a) The sample at H + 1: 1 s of Bob's price and skew, padded to the window at the span's mean index (the
    # index throughout) and skew 0.
    assert control[0].markTwap == (c_spot + (WINDOW - 1) * index) // WINDOW
    assert attacked[0].markTwap == (a_spot + (WINDOW - 1) * index) // WINDOW
    assert attacked[0].indexTwap == control[0].indexTwap == index
    for s in (control[0], attacked[0]):
        assert s.premium == tdiv((s.markTwap - index) * WAD, index)
    assert attacked[0].targetRate - tdiv(attacked[0].premium, PERIOD) == mean_skew_term(a_bps, ppm, WINDOW)
    # every sample: at most the push's seconds' share (1 s at H + 1; then the 2 s it held, t1 to its close)
    bounds = [_seconds_share(a_spot, c_spot, index, a_bps, ppm, 1 if k == 0 else 2) for k in range(13)]
    for a, c, bound in zip(attacked, control, bounds):
        assert 0 < a.targetRate - c.targetRate <= bound
    cap = ch.fundingParams(1).maxFundingRate
    assert bounds[1] * 2_000 < cap  # below 0.05 % of the cap it set before (the listing's, the fee / 9)
    # (b) Alice's applied rate never above the control's by more than the largest share, nor her funding
    assert all(0 <= a - c <= bounds[1] for a, c in zip(a_rates, c_rates))
    extra_paid, extra_recv = a_paid - c_paid, a_recv - c_recv
    paid_bound = _funding_bound(1_000 * WAD, bounds[1], 12 * HOUR + 1, index, 14)
    assert 0 <= extra_paid <= paid_bound
    assert 0 <= a_cf - c_cf and extra_recv <= paid_bound  # Bob's short receives what Alice's long pays
    usd_paid, usd_recv, usd_fees = extra_paid / USD, extra_recv / USD, fees / USD  # the ledger is in wad
    print(f"\nextra funding Alice paid: ${usd_paid:,.2f} (bound ${paid_bound / USD:,.2f}); Bob's short received: "
          f"${usd_recv:,.2f}; push fees ${usd_fees:,.2f}; Bob net ${usd_recv - usd_fees:,.2f} "
          "(before the fix +$2,266.46)")
    assert usd_paid < 5 and fees > 300 * USD  # cents to dollars of funding against hundreds in fees
    assert extra_recv - fees <= 0  # the attack loses money


def test_a_push_in_the_last_seconds_after_a_listing_moves_the_first_target_by_its_seconds_share(
        system, ch, vault, chain, deployer, alice, bob):
    """The first sample of a new market runs from the listing: a listing executed (by anyone: the timelock's executor
    role is open) at HH:59:58, Bob's 250 ETH push (subaccount 1) at HH:59:59 and a poke at the hour give a 2 s span
    with the push for half of it, padded to the window at premium 0 and skew 0: the target moves by the push's 1 s
    share of a day, where the control (a poke instead of the push) samples 0; before the fix it went to the cap. Bob
    closes the push the second after, Alice (honest) opens 1,000 ETH long and Bob 1,000 ETH short for the hour the
    sample is in force, and the keeper pokes hourly for 12 h: every sample moves by at most the push's seconds'
    share (the 2 s it held), Alice pays no more than that share, and Bob's short receives less than his fees."""
    system.fund(alice, 2_000_000)
    system.fund(bob, 2_000_000)
    system.fund(bob, 300_000, 1)
    mc = system.markets["ETH"].config
    oracle = system.markets["ETH"].oracle
    h = next_hour(chain.pending_timestamp) + HOUR
    repost_answer(system, chain, h - 3)
    snap = chain.snapshot()

    def run(push: bool):
        chain.pending_timestamp = h - 2
        tx = ch.listMarket(b32("ETH2"), mc.to_params(oracle.address), 0, 10_000 * WAD, sender=deployer)
        (listed,) = tx.events.filter(ch.MarketListed)
        mid = listed.marketId
        chain.pending_timestamp = h - 1
        if push:
            tx = ch.openPosition(1, mid, 250 * WAD, BIG, h + 100, sender=bob)
        else:
            tx = ch.pokeFunding(mid, sender=alice)
        assert tx.timestamp == h - 1
        spot, bps = ch.spotPrice(mid), skew_bps(ch, mid)
        chain.pending_timestamp = h
        (sample,) = ch.pokeFunding(mid, sender=alice).events.filter(ch.FundingSampled)
        chain.pending_timestamp = h + 1
        if push:
            ch.closePosition(1, mid, 0, h + 100, sender=bob)
        else:
            ch.pokeFunding(mid, sender=alice)
        for i in range(5):  # the honest long and the attacker's short, 200 ETH a trade (the 10 % band)
            chain.pending_timestamp = h + 2 + 2 * i
            ch.openPosition(0, mid, 200 * WAD, BIG, h + 100, sender=alice)
            chain.pending_timestamp = h + 3 + 2 * i
            ch.openPosition(0, mid, -200 * WAD, 0, h + 100, sender=bob)
        assert ch.marketState(mid).baseReserve == 10_000 * WAD  # net zero
        samples, rates = [sample], [ch.marketState(mid).fundingRate]
        for k in range(1, 13):  # the keeper pokes every hour for 12 h (the feed re-posted first)
            repost_answer(system, chain, h + k * HOUR - 1)
            chain.pending_timestamp = h + k * HOUR
            (s,) = ch.pokeFunding(mid, sender=alice).events.filter(ch.FundingSampled)
            samples.append(s)
            rates.append(ch.marketState(mid).fundingRate)
        paid = ch.position(alice, 0, mid).pendingFunding
        received = -ch.position(bob, 0, mid).pendingFunding
        return mid, spot, bps, samples, rates, paid, received

    mid, c_spot, c_bps, control, c_rates, c_paid, c_recv = run(False)
    chain.restore(snap)
    push_collateral = vault.collateral(bob, 1)
    a_mid, a_spot, a_bps, attacked, a_rates, a_paid, a_recv = run(True)
    fees = push_collateral - vault.collateral(bob, 1)  # the push's round trip: fees (and vAMM rounding, funding)
    assert a_mid == mid
    index = ch.marketState(mid).lastIndexPrice
    ppm = ch.skewFunding(mid).ratePpm
    assert index == 3000 * WAD and ppm == 2_000 and ch.fundingParams(mid).fundingPeriodHours == PERIOD
    assert c_spot == index and c_bps == 0 and a_bps == tdiv(250 * 10**4, 9_750) == 256

    # (a) The first sample: the listing's price for 1 s, Bob's (or the control's) for 1 s, padded at the span's mean
    # index (the index throughout).
    assert control[0].targetRate == 0 and control[0].markTwap == control[0].indexTwap == index
    assert attacked[0].markTwap == (index + a_spot + (WINDOW - 2) * index) // WINDOW
    assert attacked[0].indexTwap == index
    assert attacked[0].premium == tdiv((attacked[0].markTwap - index) * WAD, index)
    assert attacked[0].targetRate - tdiv(attacked[0].premium, PERIOD) == mean_skew_term(a_bps, ppm, WINDOW)
    bounds = [_seconds_share(a_spot, c_spot, index, a_bps, ppm, 1 if k == 0 else 2) for k in range(13)]
    for a, c, bound in zip(attacked, control, bounds):
        assert 0 < a.targetRate - c.targetRate <= bound
    assert bounds[1] * 2_000 < ch.fundingParams(mid).maxFundingRate  # the sample's target before the fix: the cap
    # (b) the honest long's applied rate and funding, the attacker's net
    assert all(0 <= a - c <= bounds[1] for a, c in zip(a_rates, c_rates))
    extra_paid, extra_recv = a_paid - c_paid, a_recv - c_recv
    paid_bound = _funding_bound(1_000 * WAD, bounds[1], 12 * HOUR, index, 14)
    assert 0 <= extra_paid <= paid_bound and extra_recv <= paid_bound
    usd_paid, usd_recv, usd_fees = extra_paid / USD, extra_recv / USD, fees / USD
    print(f"\nextra funding Alice paid: ${usd_paid:,.2f} (bound ${paid_bound / USD:,.2f}); Bob's short received: "
          f"${usd_recv:,.2f}; push fees ${usd_fees:,.2f}; Bob net ${usd_recv - usd_fees:,.2f}")
    assert usd_paid < 5 and fees > 1_000 * USD
    assert extra_recv - fees <= 0  # the attack loses money


# ---------------------------------------------------------------------------- model vs chain


def test_model_matches_the_chain_over_gaps_negative_skews_and_depth_syncs(system, ch, chain, alice, bob, carol):
    """Random trades (both signs, net long and net short), index moves, pokes, depth syncs after pool deposits, and
    gaps of seconds, hours, ~23 h, 24 h and over a day; after every block the model's marketState and fundingState
    equal the chain's, and every FundingSampled target equals the model's."""
    model = chain_model(system, ch, chain)
    traders = (alice, bob, carol)
    for who in traders:
        model.deposit(who.address, 0, system.fund(who, 3_000_000))
    oracle = system.markets["ETH"].oracle
    answer = oracle.latestRoundData()[1]
    rng = random.Random(8347122)
    t = next_hour(chain.pending_timestamp) + 17
    gaps = [1, 7, 600, 3_599, 3_600, 3_601, 2 * HOUR + 5, 23 * HOUR + 1_800, 24 * HOUR, 26 * HOUR + 33, 90]
    checked = samples = syncs = refused = 0
    for step in range(120):
        gap = gaps[step % len(gaps)] if step % 3 == 0 else rng.choice([1, 60, 900, 1_800, 3_000])
        if gap > 20 * HOUR:
            repost_answer(system, chain, t + gap - 1, model)
        t += gap
        action = rng.random()
        chain.pending_timestamp = t
        if action < 0.12:
            answer = answer * rng.randint(990, 1010) // 1000
            tx = oracle.updateAnswer(answer, sender=system.deployer)
            model.set_answer(1, answer, t)
            # the view in a block that touches no market
        elif action < 0.35:
            tx = ch.pokeFunding(1, sender=alice)
            model.poke_funding(1, t)
        elif action < 0.42 and step > 5:
            try:
                expected = model.sync_depth(1, t)
            except Exception:  # noqa: BLE001 (the chain must refuse the same way)
                with ape.reverts():
                    system.amm.syncDepth(1, sender=alice)
                refused += 1
                continue
            tx = system.amm.syncDepth(1, sender=alice)
            syncs += 1
            assert expected is not None
        else:
            who = rng.choice(traders)
            base = rng.choice([-1, 1]) * rng.randint(1, 400) * WAD // rng.choice([1, 3, 7])
            limit = BIG if base > 0 else 0
            try:
                model.open_position(who.address, 0, 1, base, limit, t, t + 60)
            except Exception:  # noqa: BLE001
                with ape.reverts():
                    ch.openPosition(0, 1, base, limit, t + 60, sender=who)
                refused += 1
                continue
            tx = ch.openPosition(0, 1, base, limit, t + 60, sender=who)
        assert tx.timestamp == t
        for s in tx.events.filter(ch.FundingSampled):
            assert s.targetRate == model.markets[1].target
            samples += 1
        assert model.market_state(1, t) == tuple(ch.marketState(1)), step
        assert model.funding_state(1, t) == tuple(ch.fundingState(1)), step
        checked += 1
    # Deterministic tail: a net short (negative skew, skew area not a multiple of the span), a gap over a day, the
    # view in the post-gap block (no anchor in the window: span 0, padded to the window: neutral inputs), then the
    # next hour's first block, whose anchor is the post-gap block's hourly slot with anchor.timestamp ==
    # prev.timestamp (skewNow x span).
    st = ch.marketState(1)
    net = st.longOpenInterest - st.shortOpenInterest
    remaining = -net - 37 * WAD - 1  # leaves a net short of 37 ETH + 1 wei
    while remaining:
        base = max(-150 * WAD, min(150 * WAD, remaining))  # within the band
        remaining -= base
        who = bob if base < 0 else alice
        limit = 0 if base < 0 else BIG
        t += 60
        chain.pending_timestamp = t
        model.open_position(who.address, 0, 1, base, limit, t, t + 60)
        ch.openPosition(0, 1, base, limit, t + 60, sender=who)
    assert model.market_state(1, t) == tuple(ch.marketState(1))
    t = next_hour(t + 25 * HOUR) + 1_234
    repost_answer(system, chain, t - 1, model)
    chain.pending_timestamp = t
    model.poke_funding(1, t)
    ch.pokeFunding(1, sender=alice)
    view = tuple(ch.fundingState(1))
    assert view == model.funding_state(1, t)
    # span 0, padded to the whole window at the last index (an empty span has no mean) and skew 0: neutral
    assert view[2] == 0 and view[3] == view[4] == ch.marketState(1).lastIndexPrice
    t = next_hour(t) + 7
    chain.pending_timestamp = t
    model.poke_funding(1, t)
    (s,) = ch.pokeFunding(1, sender=alice).events.filter(ch.FundingSampled)
    assert s.targetRate == model.markets[1].target < 0
    assert model.market_state(1, t) == tuple(ch.marketState(1))
    assert model.funding_state(1, t) == tuple(ch.fundingState(1))
    m = model.markets[1]
    print(f"\n{checked} blocks checked, {samples} samples, {syncs} depth syncs, {refused} refused; final skew sum {m.skew_cumulative}, target {m.target}")
    assert samples > 20 and syncs > 0
