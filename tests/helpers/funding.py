"""Helpers of the funding tests (tests/clearinghouse/test_funding.py, test_funding_gaps.py): the listing's funding
parameters, the skew term recomputed from the views (docs/funding.md), a fresh feed across long waits, and the
model of the session deployment checked against the chain."""
from helpers.chain_harness import deployment_model
from vperp.funding import WAD, tdiv
from vperp.units import FUNDING_WINDOW_HOURS

W = FUNDING_WINDOW_HOURS  # the funding window [h]: its TWAPs and mean skew run from the observation W hours back

BIG = 2**255
# The funding tests' cap: 0.1 %/h, the most a listing sets (DEFAULT_MAX_FUNDING_RATE); a market's own listing cap is its
# taker fee / 9 (0.0111 %/h at the session deployment's 10 bps), so a test that needs this one lifts it (`lift_cap`).
CAP = 10**15
V = 5 * 10**14
TAU = 2 * 3600  # DEFAULT_SMOOTHING_TAU, the listing default
PERIOD = 24


def mul_div_up(a, b, d):
    return -((-a * b) // d)


def skew_term(ch, market_id=1):
    """ClearingHouseAccrual._skewTerm recomputed from the views: ppm x 1e-6 x (long - short) / base reserve, truncated
    toward zero."""
    st = ch.marketState(market_id)
    ppm = ch.skewFunding(market_id).ratePpm
    net = st.longOpenInterest - st.shortOpenInterest
    q = abs(net) * WAD * ppm // (st.baseReserve * 10**6)
    return q if net >= 0 else -q


def skew_bps(ch, market_id=1):
    """ClearingHouseAccrual._skewBps recomputed from the views: (long - short) x 1e4 / base reserve, in bps,
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


def lift_cap(ch, deployer, cap: int = CAP, market: int = 1, model=None, period: int = PERIOD) -> int:
    """Give `market` the funding cap `cap` at the listing's other parameters (velocity V, no baseline, TAU, `period`):
    first its taker fee raised, if it must be, to the least that covers the bound's hours of the cap
    (ClearingHouseConfigurator._capFeeHours; everything else in MarketParams as it is), then setFundingParams. With
    `model`, the same two calls on it. Returns the setFundingParams block's timestamp."""
    from vperp.model import FundingParams

    lift_fee(ch, deployer, cap, market, model)
    params = (cap, V, 0, TAU, period)
    tx = ch.setFundingParams(market, params, sender=deployer)
    if model is not None:
        model.set_funding_params(market, FundingParams(*params), tx.timestamp)
    return tx.timestamp


def lift_fee(ch, deployer, cap: int, market: int = 1, model=None) -> None:
    """`lift_cap`'s first step alone: `market`'s taker fee raised, if it must be, to the least that allows `cap` at
    the listing's time constant (setMarketParams, the rest as it is; with `model`, on it too)."""
    from helpers.governance import mp_tuple
    from vperp.units import cap_fee_hours

    fee = cap * cap_fee_hours(TAU)
    p = ch.marketParams(market)
    if p.takerFee < fee:
        tx = ch.setMarketParams(market, mp_tuple(p, takerFee=fee), ch.insuranceFeeShare(market), sender=deployer)
        if model is not None:
            model.set_market_params(market, tx.timestamp, taker_fee=fee)
