"""Helpers of the funding tests (tests/clearinghouse/test_funding.py, test_funding_review.py): the listing's funding
parameters, the skew term recomputed from the views (docs/funding.md), a fresh feed across long waits, and the
model of the session deployment checked against the chain."""
from helpers.chain_harness import deployment_model
from vperp.funding import WAD, tdiv
from vperp.units import FUNDING_WINDOW_HOURS

W = FUNDING_WINDOW_HOURS  # the funding window [h]: its TWAPs and mean skew run from the observation W hours back

BIG = 2**255
CAP = 10**15
V = 5 * 10**14
TAU = 2 * 3600  # DEFAULT_SMOOTHING_TAU, the listing default
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


def skew_bps(ch, market_id=1):
    """ClearingHouseStorage._skewBps recomputed from the views: (long - short) x 1e4 / base reserve, in bps,
    truncated toward zero and clamped to +-1e4; 0 while the skew term is off."""
    if ch.skewFunding(market_id).ratePpm == 0:
        return 0
    st = ch.marketState(market_id)
    return max(-10**4, min(10**4, tdiv((st.longOpenInterest - st.shortOpenInterest) * 10**4, st.baseReserve)))


def mean_skew_term(area, ppm, span):
    """The sampled target's skew term for a skew area [bps x s] over `span` s: trunc(area x ppm x 1e8 / span)
    [wad per hour] (bps x 1e-4 x ppm x 1e-6 x 1e18, one division)."""
    return tdiv(area * ppm * 10**8, span)


def repost_answer(system, chain, t, model=None):
    """Re-post ETH's feed answer, unchanged, in a block at `t` that touches no market: the feed stays fresh (the
    mock feeds' heartbeat is 24 h) in a test that runs over a funding window or more, and the index the market
    records, its index sum and the hourly observations are as without it. Mirrored in `model` when given."""
    oracle = system.markets["ETH"].oracle
    answer = oracle.latestRoundData()[1]
    chain.pending_timestamp = t
    tx = oracle.updateAnswer(answer, sender=system.deployer)
    assert tx.timestamp == t
    if model is not None:
        model.set_answer(1, answer, t)


def chain_model(system, ch, chain):
    """vperp.model.Model in the state the session deployment left (built as tests/helpers/chain_harness.py builds it),
    checked against the chain's market states."""
    model = deployment_model(system, system.deployer)
    now = chain.blocks.head.timestamp
    for i in (m.id for m in system.markets.values()):
        assert model.market_state(i, now) == tuple(ch.marketState(i))
    return model
